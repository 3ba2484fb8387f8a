"""Where "now" comes from: the clock that decides when a lease has expired.

A lease is written by one host (the expiry in a claimed file's name) and
judged by another (a cleaner's "now"), so the two clocks must agree to within
the ``clock_skew`` setting.  A root's ``clock`` setting picks the clock:

* ``local`` (default): this host's ``time.time()``.  Hosts must keep their
  clocks in step (NTP) to within ``clock_skew``.
* ``filesystem``: the time the shared filesystem stamps on a file.  The
  broker writes a probe file in the root (``.ddmq-clock``) and reads back
  its modification time, once a minute, and adds the measured offset to the
  local clock in between.  On NFS the server stamps the write, so
  every host reads the same clock whatever its own says.  On GlusterFS (and
  other FUSE filesystems) and local disks the timestamp comes from the
  client's own clock, so this mode changes nothing there: use ``clock_skew``.
"""

from __future__ import annotations

import os
import time

from . import fs
from .errors import StorageError

PROBE_NAME = ".ddmq-clock"   # hidden: never a queue name or a message name
PROBE_INTERVAL = 60.0        # seconds between two probes of the filesystem's clock

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional


class FilesystemClock:
    """Return the filesystem's idea of the current epoch time when called."""

    def __init__(self, root: str, umask: Optional[int] = None,
                 interval: float = PROBE_INTERVAL) -> None:
        self.path = os.path.join(root, PROBE_NAME)
        self.umask = umask   # the root's umask setting, for the probe file
        self.interval = interval
        self._offset = 0.0
        self._probed_at: Optional[float] = None

    def __call__(self) -> float:
        if self._probed_at is None or time.monotonic() - self._probed_at > self.interval:
            self._offset = self.probe()
            self._probed_at = time.monotonic()
        return time.time() + self._offset

    def probe(self) -> float:
        """Write the probe file; return its new timestamp minus the local time of the write."""
        try:
            before = time.time()
            # A write is stamped by the kernel or the NFS server that performs
            # it (utime(path, None) would do on NFS too, but some libraries
            # that shift a process's clock also rewrite that call).
            fd = fs.open_file(self.path, self.umask, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                os.write(fd, b"ddmq clock probe\n")
            finally:
                os.close(fd)
            after = time.time()
            stamped = os.stat(self.path).st_mtime_ns / 1e9
        except PermissionError as exc:
            raise fs.permission_error(exc, "probe the filesystem's clock with", self.path,
                                      [(os.path.dirname(self.path), "write"),
                                       (self.path, "write")]) from None
        except OSError as exc:
            raise StorageError("cannot read the filesystem's clock from {}: {}".format(
                self.path, exc.strerror or exc), "io") from None
        return stamped - (before + after) / 2
