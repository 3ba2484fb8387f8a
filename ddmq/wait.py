"""Waiting for a message: poll with a capped backoff, woken early by inotify.

A waiting consume must work on every shared filesystem, and no network
filesystem tells one client about another client's renames, so waiting is
polling: look (one claim attempt, which lists the folder only when the
scanner has no candidate left), sleep, look again.  The pauses start at
:data:`FIRST_PAUSE` and double up to the queue's ``poll_interval`` setting
(1 s by default), so a message published during a long wait is claimed
within about ``poll_interval`` plus the filesystem's own visibility delay,
and an idle consumer looks at its queue about once per ``poll_interval``
(no busy loop; an empty folder's listing is a few microseconds).

On Linux a waiter also watches the queue folder with inotify (through
``ctypes``: no dependency) and wakes as soon as a file is renamed into it,
which on a local filesystem brings the delay down to the time of one
claim.  inotify only reports changes made through this kernel, so on NFS,
Lustre, GPFS or GlusterFS it covers writers on the same host and the poll
covers the rest; if inotify is unavailable the poll alone remains.  Set
the environment variable ``DDMQ_INOTIFY=0`` to turn it off.
"""

import math
import os
import select
import time

FOREVER = math.inf   # wait=FOREVER: wait until a message comes
FIRST_PAUSE = 0.005  # seconds before the second look; doubled each time up to poll_interval

# From <sys/inotify.h>.
_IN_CREATE = 0x100
_IN_MOVED_TO = 0x80
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC


def wait_for(attempt, seconds, folder, poll_interval, clock=time.monotonic):
    """Call ``attempt()`` until it returns something true or ``seconds`` have passed.

    Returns the last result of ``attempt`` (the first true one, or the
    false one of the last look).  ``folder`` is watched to wake early;
    ``poll_interval`` caps the pause between two looks.
    """
    deadline = clock() + seconds
    pause = FIRST_PAUSE
    with _Watch(folder) as watch:
        while True:
            result = attempt()
            left = deadline - clock()
            if result or left <= 0:
                return result
            watch.sleep(min(pause, left))
            pause = min(2 * pause, poll_interval)


class _Watch:
    """An inotify watch on one folder, or nothing where inotify cannot be had."""

    def __init__(self, folder):
        self.fd = _inotify_watch(folder)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def sleep(self, seconds):
        """Sleep ``seconds``, or less if a file arrived in the folder meanwhile."""
        if self.fd is None:
            time.sleep(seconds)
            return
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if ready:
            try:
                while os.read(self.fd, 65536):
                    pass  # drain: the events themselves say nothing the next look won't
            except BlockingIOError:
                pass


_libc = None


def _inotify_watch(folder):
    """Return an inotify descriptor watching ``folder`` for arrivals, or None."""
    global _libc
    if os.environ.get("DDMQ_INOTIFY", "1") == "0" or not hasattr(os, "uname") \
            or os.uname().sysname != "Linux":
        return None
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    if _libc.inotify_add_watch(fd, os.fsencode(folder), _IN_MOVED_TO | _IN_CREATE) < 0:
        os.close(fd)  # a folder gone or not watchable (some FUSE mounts): poll only
        return None
    return fd
