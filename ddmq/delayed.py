"""Delayed messages: kept apart from waiting ones, promoted when due.

A message published with a delay, or requeued with a retry delay, waits in
``<queue>/delayed/`` under a name whose first field is its due time
(:func:`ddmq.names.delayed_name`), so "is anything due?" is a comparison of
names, and no consumer lists that folder while it scans for waiting
messages: consume cost does not grow with the number of delayed messages.

Each broker keeps, per queue, a :class:`DelayedIndex`: the earliest due
time seen in ``delayed/`` and the folder's modification time at that
listing.  A consume looks at ``delayed/`` only

* when that earliest due time has passed, or
* at most once per :data:`CHECK_INTERVAL` (1 s), with one ``stat``, and
  lists it only if its modification time changed since the last listing
  (another process delayed or promoted a message), or
* when the last listing is older than :data:`RELIST_INTERVAL` (30 s), in
  case a network filesystem's cached attributes hid a change.

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

import os
import time

from .names import DELAYED_NAME, SECONDS_DIGITS, ready_sort_key
from .protocol import retry_stale

CHECK_INTERVAL = 1.0     # seconds between two looks (one stat) at delayed/
RELIST_INTERVAL = 30.0   # seconds after which delayed/ is listed even if it looks unchanged


class DelayedIndex:
    """What one process knows about one queue's ``delayed/`` folder."""

    def __init__(self, folder):
        self.folder = folder
        self.next_due = None       # earliest due second in the last listing; None: none seen
        self._checked = None       # time.monotonic() of the last look
        self._listed = None        # time.monotonic() of the last listing
        self._stamp = None         # (mtime_ns, inode) of the folder at the last listing

    def due(self, now, force=False):
        """Return the names in ``delayed/`` due at epoch time ``now``, in due order.

        Returns [] without touching the disk unless a look is due, as
        described above; ``force`` always lists.
        """
        mono = time.monotonic()
        if not force and (self.next_due is None or now < self.next_due):
            if self._checked is not None and mono - self._checked < CHECK_INTERVAL:
                return []
            self._checked = mono
            if (self._listed is not None and self._stamp == self._folder_stamp()
                    and mono - self._listed < RELIST_INTERVAL):
                return []
        return self._list(now, mono)

    def _folder_stamp(self):
        try:
            status = os.stat(self.folder)
        except OSError:
            return None   # no delayed/ yet (or gone): nothing delayed
        return status.st_mtime_ns, status.st_ino

    def _list(self, now, mono):
        stamp = self._folder_stamp()   # before listing: a change during it shows next time
        try:
            # RACE: on a network filesystem a folder can answer ESTALE for a
            # moment (another client replaced an entry); a fresh lookup works.
            entries = retry_stale(os.listdir, self.folder)
        except FileNotFoundError:
            entries = []
        self._checked = self._listed = mono
        self._stamp = stamp
        # A name whose first 10 digits are at most now sorts before now + 1.
        limit = "{:0{}d}".format(int(now) + 1, SECONDS_DIGITS)
        # Due order, then (within one second, whatever the random nonces)
        # the serving order they had when delayed: FIFO survives a delay.
        due = sorted((name for name in entries if name < limit and DELAYED_NAME.match(name)),
                     key=_due_order)
        later = [name for name in entries if name >= limit]
        first = min(later) if later else None
        if first is not None and not DELAYED_NAME.match(first):
            later = [name for name in later if DELAYED_NAME.match(name)]
            first = min(later) if later else None
        self.next_due = int(first[:SECONDS_DIGITS]) if first is not None else None
        return due

    def note(self, due):
        """Note a message this process just delayed until epoch second ``due``."""
        if self.next_due is None or due < self.next_due:
            self.next_due = due


def _due_order(name):
    return name[:SECONDS_DIGITS], ready_sort_key(DELAYED_NAME.match(name).group(2))
