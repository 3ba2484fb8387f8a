"""Delayed messages: kept apart from waiting ones, promoted when due.

A message published with a delay, or requeued with a retry delay, waits in
``<queue>/delayed/`` under a name whose first field is its due time
(:func:`ddmq.names.delayed_name`), so "is anything due?" is a comparison of
names, and no consumer lists that folder while it scans for waiting
messages: consume cost does not grow with the number of delayed messages.

Even one listing of ``delayed/`` per process would cost a short-lived
consumer more than its messages when 100,000 wait there, so every name is
first *marked*: ``<queue>/.due/<minute>``, an empty file named by the first
second of the minute it is due in (:func:`ddmq.protocol.mark_due`).  That
folder holds one file per minute that has delayed messages, and a
``clean`` removes markers of minutes long past that hold none.

Each broker keeps, per queue, a :class:`DelayedIndex`: the earliest due
time it knows and the modification time of ``.due/`` when it last looked.
A consume lists ``delayed/`` only when that earliest due time has passed;
otherwise, at most once per :data:`CHECK_INTERVAL` (1 s), it stats
``.due/`` and, if it changed (or on its first look), lists the markers to
learn the earliest due minute; every :data:`RELIST_INTERVAL` (30 s) it
lists ``delayed/`` anyway, in case a network filesystem's cached
attributes hid a change or a marker was removed under a slow publisher.

A due message is promoted by whichever consumer or cleaner gets there first
(:func:`ddmq.protocol.promote`: two renames to names only the promoter
chose, so exactly one promoter wins).  The bound: a due message is served
within about 1 s (the due time's rounding up to a whole second) plus
``CHECK_INTERVAL`` of its due time by any consumer that is consuming or
waiting on its queue then, or by a ``clean``; a message delayed by another
process whose due time is earlier than every one this process knew is seen
at the next check that finds the folder changed (at most
``RELIST_INTERVAL`` where folder times lag).  Nobody promotes messages of a
queue that nobody uses: they are promoted at its next consume or clean.
"""

from __future__ import annotations

import os
import time

from .log import log
from .names import DELAYED_NAME, SECONDS_DIGITS, ready_sort_key
from .protocol import (DELAYED_DIR, DUE_DIR, MARK_SECONDS, list_folder, promote, remove_due_marks)

CHECK_INTERVAL = 1.0     # seconds between two looks (one stat) at .due/
RELIST_INTERVAL = 30.0   # seconds after which delayed/ is listed even if it looks unchanged
_UNSEEN = object()

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional

    from .names import ReadyKey
    from .queue import Queue

    #: What identifies one state of a folder: (mtime_ns, inode).
    Stamp = tuple[int, int]


def _stamp(folder: str) -> Optional[Stamp]:
    try:
        status = os.stat(folder)
    except OSError:
        return None   # no .due/ yet (or gone): nothing delayed
    return status.st_mtime_ns, status.st_ino


class DelayedIndex:
    """What one process knows about one queue's ``delayed/`` folder (and its ``.due/`` markers)."""

    def __init__(self, queue_dir: str) -> None:
        self.folder = queue_dir + "/" + DELAYED_DIR
        self.marks = queue_dir + "/" + DUE_DIR
        self.next_due: Optional[int] = None   # earliest due second known; None: none known
        #: The marker minutes of the names in the last listing of delayed/.
        self.marked: set[int] = set()
        self._checked: Optional[float] = None   # time.monotonic() of the last look
        self._listed: Optional[float] = None    # time.monotonic() of the last listing (or first look)
        self._stamp: object = _UNSEEN   # (mtime_ns, inode) of .due/ at the last look, or None

    def due(self, now: float, force: bool = False) -> list[str]:
        """Return the names in ``delayed/`` due at epoch time ``now``, in due order.

        Returns [] without touching the disk unless a look is due, as
        described above; ``force`` always lists.
        """
        mono = time.monotonic()
        if force or (self.next_due is not None and now >= self.next_due):
            return self._list(now, mono)
        if self._checked is not None and mono - self._checked < CHECK_INTERVAL:
            return []
        self._checked = mono
        if self._listed is None:
            self._listed = mono   # the markers stand in for a first listing
        elif mono - self._listed >= RELIST_INTERVAL:
            return self._list(now, mono)
        stamp = _stamp(self.marks)
        if stamp == self._stamp:
            return []
        self._stamp = stamp
        earliest = self._earliest_mark()
        if earliest is not None and earliest <= now:
            return self._list(now, mono)
        self.next_due = earliest
        return []

    def _earliest_mark(self) -> Optional[int]:
        marks = list_folder(self.marks)
        minutes = [int(mark) for mark in marks if mark.isdigit()]
        return min(minutes) if minutes else None

    def _list(self, now: float, mono: float) -> list[str]:
        self._stamp = _stamp(self.marks)   # before listing: a change during it shows next time
        entries = [name for name in list_folder(self.folder) if DELAYED_NAME.match(name)]
        self._checked = self._listed = mono
        # A name whose first 10 digits are at most now sorts before now + 1.
        limit = "{:0{}d}".format(int(now) + 1, SECONDS_DIGITS)
        # Due order, then (within one second, whatever the random nonces)
        # the serving order they had when delayed: FIFO survives a delay.
        due = sorted((name for name in entries if name < limit), key=_due_order)
        later = [name for name in entries if name >= limit]
        self.next_due = int(min(later)[:SECONDS_DIGITS]) if later else None
        self.marked = {int(name[:SECONDS_DIGITS]) // MARK_SECONDS * MARK_SECONDS
                       for name in entries}
        return due

    def note(self, due: int) -> None:
        """Note a message this process just delayed until epoch second ``due``."""
        if self.next_due is None or due < self.next_due:
            self.next_due = due


def _due_order(name: str) -> tuple[str, ReadyKey]:
    match = DELAYED_NAME.match(name)
    assert match is not None   # listed through DELAYED_NAME
    key = ready_sort_key(match.group(2))
    assert key is not None     # DELAYED_NAME holds a waiting message's name
    return name[:SECONDS_DIGITS], key


def promote_due(q: Queue, now: float, grace: float, force: bool = False) -> int:
    """Make the due delayed messages of the Queue ``q`` waiting at epoch time ``now``.

    ``grace`` (seconds) is the lease a promoter holds a message under while
    it moves it; ``force`` (a cleaning) always lists ``delayed/`` and
    removes the markers of minutes long past.  Returns how many it promoted.
    """
    due = q.delayed.due(now, force)
    if force:
        # Markers of minutes long past that hold no delayed name: a
        # publisher cannot still be delaying a message into them.
        remove_due_marks(q.dir, q.delayed.marked, now - grace * 10 - q.settings["clock_skew"])
    if not due:
        return 0
    lease = now + grace + q.settings["clock_skew"]
    promoted = 0
    for name in due:
        ready = promote(q.dir, name, lease, q.settings["fsync"], q.umask)
        if ready is not None:
            q.offer(ready)
            promoted += 1
    log.debug("Promoted %d due message(s) of %s", promoted, q.name)
    return promoted
