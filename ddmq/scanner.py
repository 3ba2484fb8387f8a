"""Which waiting message to try next, without listing the queue for every consume.

A consumer keeps the best waiting names of its last scan in memory and tries
them in serving order.  A queue folder is scanned again when

* every candidate has been tried (claimed by us or taken by others), or
* the last scan is older than the *refresh interval*:
  ``max(MIN_REFRESH, REFRESH_FACTOR * duration of the last scan)``.

So a newly published message — say one of higher priority than everything
waiting — is served within one refresh interval: 1 s for queues whose scan
takes under 50 ms (about 100,000 waiting messages on a local disk), and
about 20 scan times beyond that, which keeps the cost of rescanning under 5%
of a busy consumer's time.  A scan keeps at most :data:`SCAN_LIMIT` names,
so a consumer's memory is bounded whatever the depth of the queue, and it
never answers "empty" unless a fresh scan found nothing.
"""

import heapq
import os
import time

from .names import ready_sort_key

SCAN_LIMIT = 50_000      # names kept from one scan: bounds memory on deep queues
MIN_REFRESH = 1.0        # seconds: the refresh interval of ordinary queues
REFRESH_FACTOR = 20      # deep queues: rescan after this many scan durations


class ReadyScanner:
    """The serving-order candidates of one queue folder, refreshed as documented above."""

    def __init__(self, queue_dir):
        self.queue_dir = queue_dir
        self._candidates = []
        self._next = 0
        self._scanned_at = None
        self._refresh_interval = MIN_REFRESH

    def next_candidate(self):
        """Return the next waiting name to try, or None if a fresh scan finds no message."""
        stale = (self._scanned_at is None
                 or time.monotonic() - self._scanned_at > self._refresh_interval)
        if self._next >= len(self._candidates) or stale:
            self.scan()
            if not self._candidates:
                return None
        name = self._candidates[self._next]
        self._next += 1
        return name

    def add(self, name):
        """Make the waiting ``name``, just written by this process, a candidate in serving order."""
        # Our own publishes and requeues need no rescan to be seen: a nacked
        # message requeued at priority 0 is served next by this same broker.
        key = ready_sort_key(name)
        low, high = self._next, len(self._candidates)
        if key is None or low >= high:
            return  # no candidates left: the next call rescans anyway
        while low < high:
            middle = (low + high) // 2
            if ready_sort_key(self._candidates[middle]) < key:
                low = middle + 1
            else:
                high = middle
        # After the last candidate it may belong behind names the scan did
        # not keep (SCAN_LIMIT): leave it to the next scan.
        if low < len(self._candidates):
            self._candidates.insert(low, name)

    def scan(self):
        """List the queue folder and keep the best :data:`SCAN_LIMIT` names in serving order."""
        started = time.monotonic()
        with os.scandir(self.queue_dir) as entries:
            keys = filter(None, map(ready_sort_key, (entry.name for entry in entries)))
            best = heapq.nsmallest(SCAN_LIMIT, keys)
        self._candidates = [key[-1] for key in best]
        self._next = 0
        self._scanned_at = time.monotonic()
        self._refresh_interval = max(MIN_REFRESH, REFRESH_FACTOR * (self._scanned_at - started))
