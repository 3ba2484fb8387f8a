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

Several consumers of one queue read the same names in the same order, and
two busy ones would otherwise take turns at the head: each claim, one race
lost.  A consumer that loses a race right after winning one (a competitor
is working beside it) skips ahead a random number (up to
:data:`SKIP_SPAN`) of candidates *of the same priority*, so consumers spread
out over the queue.  A consumer that loses without having won (its
candidates were taken while it was busy or idle) moves on, in order, to the
first candidate still waiting, found with a few ``lstat`` calls rather than
one lost rename per taken name.  A lone consumer never loses a race,
so it serves strictly in order; with several, a message may be served up to
:data:`SKIP_SPAN` places out of its FIFO order within its priority (a skip
never crosses into another priority).  A name skipped by every consumer, or
passed over inside a run of taken ones, is tried at the next scan.
"""

from __future__ import annotations

import itertools
import os
import re
import time

from .names import ready_sort_key
from .protocol import retry_stale

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional

    from .names import ReadyKey

SCAN_LIMIT = 50_000      # names kept from one scan: bounds memory on deep queues
MIN_REFRESH = 1.0        # seconds: the refresh interval of ordinary queues
REFRESH_FACTOR = 20      # deep queues: rescan after this many scan durations
SKIP_SPAN = 64           # candidates a consumer may skip after losing a race

# The names this version writes: a priority without leading zeros and a
# 19-digit queue number.  Among them, serving order is the order of
# (length of the priority, name) -- plain string sorting, much cheaper than
# building a ready_sort_key() for each of the thousands of names of a scan.
_CANONICAL = re.compile(r"(?:0|[1-9][0-9]*)\.[0-9]{19}\.ddmq[A-Za-z0-9]+\Z").match


class ReadyScanner:
    """The serving-order candidates of one queue folder, refreshed as documented above."""

    def __init__(self, queue_dir: str) -> None:
        self.queue_dir = queue_dir
        self._names: list[str] = []               # the candidates, in serving order
        self._last_key: Optional[ReadyKey] = None  # ready_sort_key() of the last candidate
        self._next = 0
        self._tried = 0          # candidates returned since the last lost race
        self._scanned_at = 0.0   # time.monotonic() of the last scan (none yet: _names is empty)
        self._refresh_interval = MIN_REFRESH

    def next_candidate(self) -> Optional[str]:
        """Return the next waiting name to try, or None if a fresh scan finds no message."""
        if (self._next >= len(self._names)
                or time.monotonic() - self._scanned_at > self._refresh_interval):
            self.scan()
            if not self._names:
                return None
        name = self._names[self._next]
        self._next += 1
        self._tried += 1
        return name

    def lost(self) -> None:
        """Note that the last candidate went to another consumer, and move on past its work."""
        beside, self._tried = self._tried > 1, 0
        if not beside:
            self._skip_taken()
            return
        names, start = self._names, self._next
        if not 0 < start <= len(names):
            return  # another thread of this process rescanned since it took the candidate
        priority = _priority(names[start - 1])
        end, limit = start, min(len(names), start + SKIP_SPAN)
        while end < limit and _priority(names[end]) == priority:
            end += 1
        if end > start:
            import random  # here, not at the top: most processes never lose a race

            self._next = start + random.randrange(end - start)

    def _skip_taken(self) -> None:
        # Our candidates were taken while we were idle, most likely a run of
        # them by a consumer ahead of us: find the first that is still
        # waiting by galloping and bisecting with lstat (cheap lookups),
        # instead of losing a rename race (which serializes on the
        # filesystem) for every taken name.  A waiting name inside the
        # taken run may be passed over: it is tried at the next scan.
        names, low = self._names, self._next
        if low >= len(names) or self._waiting(names[low]):
            return
        step, high = 1, -1
        while high < 0:
            probe = low + step
            if probe >= len(names):
                high = len(names)
            elif self._waiting(names[probe]):
                high = probe
            else:
                low, step = probe, step * 2
        while high - low > 1:  # names[low] is taken, names[high] waiting (or the end)
            middle = (low + high) // 2
            if self._waiting(names[middle]):
                high = middle
            else:
                low = middle
        self._next = high

    def _waiting(self, name: str) -> bool:
        return os.path.lexists(self.queue_dir + "/" + name)

    def add(self, name: str) -> None:
        """Make the waiting ``name``, just written by this process, a candidate in serving order."""
        # Our own publishes and requeues need no rescan to be seen: a nacked
        # message requeued at priority 0 is served next by this same broker.
        # A name after the last candidate may belong behind names the scan
        # did not keep (SCAN_LIMIT): it is left to the next scan.
        key = ready_sort_key(name)
        names = self._names
        last = self._last_key
        if key is None or last is None or self._next >= len(names) or key > last:
            return
        low, high = self._next, len(names)
        while low < high:
            middle = (low + high) // 2
            if _sort_key(names[middle]) < key:
                low = middle + 1
            else:
                high = middle
        names.insert(low, name)

    def scan(self) -> None:
        """List the queue folder and keep the best :data:`SCAN_LIMIT` names in serving order."""
        started = time.monotonic()
        # RACE: on a network filesystem a folder can answer ESTALE for a
        # moment (another client replaced an entry); a fresh lookup works.
        self._names = retry_stale(best_ready_names, self.queue_dir, SCAN_LIMIT)
        self._last_key = _sort_key(self._names[-1]) if self._names else None
        self._next = 0
        self._scanned_at = time.monotonic()
        self._refresh_interval = max(MIN_REFRESH, REFRESH_FACTOR * (self._scanned_at - started))


def best_ready_names(queue_dir: str, limit: int) -> list[str]:
    """Return the first ``limit`` waiting names in ``queue_dir``, in serving order.

    Memory stays bounded: whenever ``2 * limit`` names are held, only the
    best ``limit`` are kept.
    """
    by_width: dict[int, list[str]] = {}   # canonical names, by the width of their priority
    others: list[ReadyKey] = []           # ready_sort_key() of the other waiting names (legacy)
    held = 0
    with os.scandir(queue_dir) as entries:
        for entry in entries:
            name = entry.name
            if _CANONICAL(name):
                width = name.index(".")
                try:
                    by_width[width].append(name)
                except KeyError:
                    by_width[width] = [name]
            else:
                key = ready_sort_key(name)
                if key is None:
                    continue  # not a waiting message: ddmq.yaml, work/, .tmp/ ...
                others.append(key)
            held += 1
            if held >= 2 * limit:
                best = _best_canonical(by_width, limit)
                by_width = {width: list(names)
                            for width, names in itertools.groupby(best, _width)}
                others.sort()
                del others[limit:]
                held = len(best) + len(others)
    canonical = _best_canonical(by_width, limit)
    if not others:
        return canonical
    keys = sorted(others + [_sort_key(name) for name in canonical])
    return [key[-1] for key in keys[:limit]]


def _best_canonical(by_width: dict[int, list[str]], limit: int) -> list[str]:
    best: list[str] = []
    for width in sorted(by_width):
        names = by_width[width]
        names.sort()
        best += names[:limit - len(best)]
        if len(best) >= limit:
            break
    return best


def _width(name: str) -> int:
    return name.index(".")


def _priority(name: str) -> int:
    return int(name[:name.index(".")])


def _sort_key(name: str) -> ReadyKey:
    """Return the ready_sort_key() of ``name``, known to be a waiting message's name."""
    key = ready_sort_key(name)
    assert key is not None
    return key
