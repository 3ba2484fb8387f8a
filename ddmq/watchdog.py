"""The watchdog of ``ddmq work``: a command must not outlive a worker that was killed.

A worker starts one watchdog as the leader of a process group of its own
and starts every command in that group (``os.posix_spawn`` with
``setpgroup``, which keeps a spawn at about 1 ms; asking the kernel for a
parent-death signal would need a ``preexec_fn``, hence a full fork, about
4 ms).  The watchdog holds the read end of a pipe whose only writer is the
worker, and reads it until it ends:

* ``d`` then the end: the worker stopped in order, its commands are reaped;
  exit and leave the group alone.
* ``k`` then the end: the worker gave up on commands it has killed; kill what
  is left of the group (their children) at once.
* the end alone: the worker died (SIGKILL, a crash): send the group SIGTERM,
  give it ``argv[1]`` seconds, then SIGKILL.  Their messages stay claimed and
  are delivered again once their leases expire, so nothing may still run.

The watchdog ignores SIGINT, SIGTERM, SIGHUP and SIGQUIT (the worker starts
it with them blocked, and passes a shutdown signal on to the group, which
includes the watchdog), so only the end of the pipe, or SIGKILL, ends it.
It is run as a script, with only the standard library.
"""

from __future__ import annotations

import os
import signal
import sys
import time

IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def main(argv: list[str]) -> int:
    for signum in IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    delay = float(argv[1]) if len(argv) > 1 else 2.0
    last = b""
    while True:
        try:
            chunk = os.read(0, 64)
        except InterruptedError:
            continue
        if not chunk:
            break
        last = chunk[-1:]
    if last == b"d":
        return 0
    if last != b"k":
        os.killpg(0, signal.SIGTERM)
        time.sleep(delay)
    os.killpg(0, signal.SIGKILL)  # the watchdog is in the group too: this ends it
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
