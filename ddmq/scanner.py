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
of a busy consumer's time.  Messages this process publishes or requeues
itself are taken into the candidates at once (:meth:`ReadyScanner.add`).
A scan keeps at most :data:`SCAN_LIMIT` names, so a consumer's memory is
bounded whatever the depth of the queue, and it never answers "empty"
unless a fresh scan found nothing.

Several consumers of one queue read the same names in the same order.  A
consumer that loses a race for a candidate skips ahead a random number (up
to :data:`SKIP_SPAN`) of candidates *of the same priority*, so consumers
spread out over the queue instead of all fighting for its head.  A lone
consumer never loses a race, so it serves strictly in order; with several,
a message may be served up to :data:`SKIP_SPAN` places out of its FIFO
order within its priority, and never before a message of better priority
that the consumer knows of.  A name skipped by every consumer is tried at
the next scan.
"""

import bisect
import itertools
import os
import random
import time

from .names import ready_sort_key

SCAN_LIMIT = 50_000      # names kept from one scan: bounds memory on deep queues
MIN_REFRESH = 1.0        # seconds: the refresh interval of ordinary queues
REFRESH_FACTOR = 20      # deep queues: rescan after this many scan durations
SKIP_SPAN = 32           # candidates a consumer may skip after losing a race


class ReadyScanner:
    """The serving-order candidates of one queue folder, refreshed as documented above."""

    def __init__(self, queue_dir):
        self.queue_dir = queue_dir
        self._keys = []          # ready_sort_key() of each candidate, in serving order
        self._next = 0
        self._scanned_at = None
        self._refresh_interval = MIN_REFRESH

    def next_candidate(self):
        """Return the next waiting name to try, or None if a fresh scan finds no message."""
        if (self._next >= len(self._keys)
                or time.monotonic() - self._scanned_at > self._refresh_interval):
            self.scan()
            if not self._keys:
                return None
        key = self._keys[self._next]
        self._next += 1
        return key[-1]

    def lost(self):
        """Note that the last candidate went to another consumer: skip ahead in its priority."""
        keys, start = self._keys, self._next
        if start >= len(keys) or keys[start][0] != keys[start - 1][0]:
            return
        end = bisect.bisect_left(keys, (keys[start][0] + 1,), start,
                                 min(len(keys), start + SKIP_SPAN))
        self._next = start + random.randrange(end - start)

    def add(self, name):
        """Make the waiting ``name``, just written by this process, a candidate in serving order."""
        # Our own publishes and requeues need no rescan to be seen: a nacked
        # message requeued at priority 0 is served next by this same broker.
        # A name after the last candidate may belong behind names the scan
        # did not keep (SCAN_LIMIT): it is left to the next scan.
        key = ready_sort_key(name)
        keys = self._keys
        if key is None or self._next >= len(keys) or key > keys[-1]:
            return
        keys.insert(bisect.bisect_left(keys, key, self._next), key)

    def scan(self):
        """List the queue folder and keep the best :data:`SCAN_LIMIT` names in serving order."""
        started = time.monotonic()
        with os.scandir(self.queue_dir) as entries:
            keys = filter(None, map(ready_sort_key, (entry.name for entry in entries)))
            # Sort in chunks and keep the best: C-speed sorting, bounded memory.
            best = sorted(itertools.islice(keys, SCAN_LIMIT))
            while True:
                chunk = list(itertools.islice(keys, SCAN_LIMIT))
                if not chunk:
                    break
                best += chunk
                best.sort()
                del best[SCAN_LIMIT:]
        self._keys = best
        self._next = 0
        self._scanned_at = time.monotonic()
        self._refresh_interval = max(MIN_REFRESH, REFRESH_FACTOR * (self._scanned_at - started))
