"""Waiting for a message: poll with a capped backoff, woken early by inotify.

A waiting consume must work on every shared filesystem, and no network
filesystem tells one client about another client's renames, so waiting is
polling: look (one claim attempt, which lists the folder only when the
scanner has no candidate left), sleep, look again.  The pauses start at
:data:`FIRST_PAUSE` and double up to the queue's ``poll_interval`` setting
(1 s by default): the looks come 0, 5, 15, 35, 75, ... ms after the wait
began, then once per ``poll_interval``.  So a message published during a
wait is claimed at most ``poll_interval`` after it became visible to this
host (plus one claim), and an idle consumer looks at its queue once per
``poll_interval``: no busy loop, and an empty folder's listing costs a few
microseconds.

On Linux a waiter also watches the queue folder with inotify (through
``ctypes``: no dependency) and wakes as soon as a file is renamed into it
(or, for writers that do not rename, closed after writing), which on a
local filesystem brings the delay down to the time of one claim.  inotify
reports only changes made through this kernel, so on NFS, Lustre, GPFS or
GlusterFS it covers writers on the same host and the poll covers the rest.
Where inotify cannot be had (another system, a filesystem that refuses a
watch, the per-user limit of inotify instances reached) the poll alone
remains.  The environment variable ``DDMQ_INOTIFY=0`` turns it off.

A queue folder removed or renamed during a wait wakes the waiter too (the
next look then raises :class:`~ddmq.errors.QueueNotFoundError`).  A wait
also ends early, answering nothing, once its ``stop`` event is set; that is
noticed within :data:`STOP_LATENCY`.
"""

from __future__ import annotations

import math
import numbers
import os
import select
import time

from .errors import InvalidInputError

FOREVER = math.inf   # wait=FOREVER: wait until a message comes
FIRST_PAUSE = 0.005  # seconds before the second look; doubled each time up to poll_interval
STOP_LATENCY = 0.1   # longest a set stop event goes unnoticed while an inotify watch sleeps

# From <sys/inotify.h>.
_IN_CLOSE_WRITE = 0x08
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100          # a hard link: how a topic publish reaches all but one queue
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_WATCHED = _IN_MOVED_TO | _IN_CREATE | _IN_CLOSE_WRITE | _IN_DELETE_SELF | _IN_MOVE_SELF

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from ctypes import CDLL
    from typing import Callable, Protocol, TypeVar

    _T = TypeVar("_T")

    class StopEvent(Protocol):
        """What a wait's ``stop`` must offer: a ``threading.Event`` has it."""

        def is_set(self) -> bool: ...

        def wait(self, timeout: float) -> bool: ...


def check_wait(wait: object) -> float | None:
    """Return ``wait`` as float seconds (:data:`FOREVER` for infinity), or None for no wait.

    Raise InvalidInputError for anything but None or a number >= 0 (a bool,
    NaN, a negative number or a string); a number too large for a float
    means forever.
    """
    if wait is None:
        return None
    if not isinstance(wait, numbers.Real) or isinstance(wait, bool):
        raise InvalidInputError("wait must be a number of seconds >= 0 or ddmq.FOREVER, "
                                "not {!r}".format(wait), "invalid")
    try:
        seconds = float(wait)
    except OverflowError:
        seconds = -FOREVER if wait < 0 else FOREVER  # only a huge number overflows: never 0
    if not seconds >= 0:  # also NaN
        raise InvalidInputError("wait must be a number of seconds >= 0 or ddmq.FOREVER, "
                                "not {!r}".format(wait), "invalid")
    return seconds


def wait_for(attempt: Callable[[], _T], seconds: float, folder: str, poll_interval: float,
             stop: StopEvent | None = None,
             clock: Callable[[], float] = time.monotonic) -> _T:
    """Call ``attempt()`` until it returns something true, ``seconds`` pass or ``stop`` is set.

    Returns the last result of ``attempt`` (the first true one, or the
    false one of the last look).  ``folder`` is watched to wake early;
    ``poll_interval`` caps the pause between two looks; ``stop`` is None or
    a ``threading.Event``.  The watch is set before the first look, so a
    message that arrives between a look and the sleep still wakes it.
    """
    deadline = clock() + seconds
    pause = FIRST_PAUSE
    with _Watch(folder) as watch:
        while True:
            result = attempt()
            left = deadline - clock()
            if result or left <= 0 or (stop is not None and stop.is_set()):
                return result
            watch.sleep(min(pause, left), stop)
            pause = min(2 * pause, poll_interval)


class _Watch:
    """An inotify watch on one folder, or nothing where inotify cannot be had."""

    def __init__(self, folder: str) -> None:
        self.fd = _inotify_watch(folder)
        self._poll: select.poll | None = None
        if self.fd is not None:
            # poll(), not select(): select() refuses descriptors above 1023,
            # which a busy process (many threads, pipes, files) may reach.
            self._poll = select.poll()
            self._poll.register(self.fd, select.POLLIN)

    def __enter__(self) -> _Watch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def sleep(self, seconds: float, stop: StopEvent | None = None) -> None:
        """Sleep ``seconds``, or less if a file arrived in the folder or ``stop`` was set."""
        fd, poll = self.fd, self._poll
        if fd is None or poll is None:
            if stop is None:
                time.sleep(seconds)
            else:
                stop.wait(seconds)
            return
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            slice_ = left if stop is None else min(left, STOP_LATENCY)
            if poll.poll(math.ceil(slice_ * 1000)):
                _drain(fd)
                return
            if stop is not None and stop.is_set():
                return


def _drain(fd: int) -> None:
    # The events themselves say nothing the next look won't.
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass


_libc: CDLL | None = None


def _inotify_watch(folder: str) -> int | None:
    """Return a non-blocking inotify descriptor watching ``folder`` for arrivals, or None."""
    global _libc
    if os.environ.get("DDMQ_INOTIFY", "1") == "0" or not hasattr(os, "uname") \
            or os.uname().sysname != "Linux":
        return None
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        fd: int = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None  # EMFILE: the per-user limit of inotify instances (128 by default)
    if _libc.inotify_add_watch(fd, os.fsencode(folder), _WATCHED) < 0:
        os.close(fd)  # a folder gone or not watchable (some FUSE mounts): poll only
        return None
    return fd
