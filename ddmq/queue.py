"""One queue of a root: its folders, merged settings, scanner and cleaning state.

A :class:`Queue` is what the broker keeps per queue name.  It owns the
paths of the queue's folders (so no caller builds them its own way), the
settings of the cascade merged for this queue, the scanner that picks the
next waiting message, and the time this process last knew the queue to be
cleaned.  It holds no file handles and changes nothing on disk itself:
every move of a message file still goes through :mod:`ddmq.protocol`.

One broker may be used from several threads: the scanner, the only state
that changes with every consume, is used under :attr:`Queue.lock`, so the
threads of one process share its candidates instead of racing for them.
"""

from __future__ import annotations

from _thread import allocate_lock  # not threading: its import costs every command ~1 ms

from . import fs, protocol
from .delayed import DelayedIndex
from .scanner import ReadyScanner

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional

    from .settings import Settings


class Queue:
    """The state one broker keeps about one queue (name checked by the caller)."""

    def __init__(self, root: str, name: str, settings: Settings) -> None:
        self.name = name
        # Hot paths join "<dir>/<name>" (names never hold a separator).
        self.dir = root + "/" + name
        self.work_dir = self.dir + "/" + protocol.WORK_DIR
        #: What this process knows of the delayed messages (see :mod:`ddmq.delayed`).
        self.delayed = DelayedIndex(self.dir)
        self.settings = settings
        #: True once a settings file changed: the next use merges the settings again.
        self.stale = False
        #: The queue's ``umask`` setting as an int, None if unset: what protocol's creators take.
        self.umask = fs.parse_umask(settings["umask"])
        #: Epoch time this queue was last cleaned, as far as this process knows.
        self.last_cleaned: float = settings["cleaned"]
        #: Held while a thread uses the scanner (claims and reads are done outside it).
        self.lock = allocate_lock()
        self._scanner: Optional[ReadyScanner] = None

    def __repr__(self) -> str:
        return "Queue({!r}, {!r})".format(self.name, self.dir)

    @property
    def scanner(self) -> ReadyScanner:
        """The :class:`~ddmq.scanner.ReadyScanner` of this queue, made on first use."""
        if self._scanner is None:
            with self.lock:
                if self._scanner is None:
                    self._scanner = ReadyScanner(self.dir)
        return self._scanner

    def offer(self, ready: str) -> None:
        """Tell this process's consumer about a message it just made ready (if it has one)."""
        if self._scanner is not None:
            with self.lock:
                self._scanner.add(ready)

    def reload(self, settings: Settings) -> None:
        """Take freshly merged ``settings``, keeping the scanner and the cleaning state."""
        self.settings = settings
        self.stale = False
        self.umask = fs.parse_umask(settings["umask"])
        self.last_cleaned = max(self.last_cleaned, settings["cleaned"])
