"""Heartbeats: keeping the leases of messages being worked on from expiring.

A consumed message expires ``timeout`` seconds after its claim (the
message's own ``timeout``, else its queue's ``message_timeout``); a cleaner
then requeues it for another consumer.  Work that may take longer renews the
lease with :meth:`ddmq.broker.touch`, one rename to a fresh lease, and a
:class:`Renewer` does that from one background thread for every message it
holds.

When.  A lease's expiry is stored in whole seconds, rounded down, so a lease
of T seconds lasts between T - 1 and T.  A held message is renewed every
``min(T / 3, (T - 1) / 2)`` seconds (at least :data:`MIN_INTERVAL`): a late
or failed renewal still leaves time for the next one.  A renewal that fails
for a passing reason (a filesystem error) is retried after at most
:data:`RETRY_INTERVAL`.

Lost.  If a renewal finds that another process took the message (its lease
had expired and a cleaner requeued it, or it was acked elsewhere), the
rename fails, :class:`~ddmq.errors.LeaseLostError` is kept in
:attr:`Lease.lost` and the message is renewed no more: it is, or will be,
delivered again, so the holder must not ack it as if nothing happened.

Renewal and settling never overlap: :meth:`Renewer.release` waits for a
renewal of that message in progress and ends its renewals, so the caller
then acks or nacks the message under its current name.  Each renewal
updates the message object's ``filename``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

from .errors import DdmqError, LeaseLostError, QueueNotFoundError
from .log import log

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from .broker import broker as Broker
    from .message import message as Message

MIN_INTERVAL = 0.05    # seconds: the shortest time between two renewals of one message
RETRY_INTERVAL = 1.0   # seconds: the longest wait before retrying a renewal that failed


def renew_interval(lease_seconds: float) -> float:
    """Return how often to renew a lease of ``lease_seconds`` (see the module docstring)."""
    return max(MIN_INTERVAL, min(lease_seconds / 3, (lease_seconds - 1) / 2))


class Lease:
    """A message a :class:`Renewer` holds: renewed until released."""

    def __init__(self, broker: Broker, msg: Message, timeout: float | None,
                 interval: float) -> None:
        self.broker = broker
        self.msg = msg
        self.timeout = timeout     # None: the message's own timeout, else the queue's
        self.interval = interval
        #: None, or the error that lost the lease (LeaseLostError, QueueNotFoundError).
        self.lost: LeaseLostError | QueueNotFoundError | None = None
        #: How many times the lease was renewed.
        self.held = True
        self.lock = threading.Lock()   # held during a renewal, and by release()


class Renewer:
    """Renew the leases of held messages from one background thread (started on first use)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        # A heap of (monotonic due time, tie-breaker, Lease).
        self._due: list[tuple[float, int, Lease]] = []
        self._order = itertools.count()
        self._released = 0              # released leases still in the heap
        self._thread: threading.Thread | None = None
        self._closed = False

    def __enter__(self) -> Renewer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def hold(self, broker: Broker, msg: Message, timeout: float | None = None,
             interval: float | None = None) -> Lease:
        """Start renewing the consumed ``msg`` of ``broker``; return its :class:`Lease`.

        ``timeout`` is the length of each new lease (default: the message's
        own timeout, else its queue's ``message_timeout``); ``interval`` the
        time between renewals (default: see the module docstring).
        """
        seconds: float
        if timeout is not None:
            seconds = timeout
        elif msg.timeout is not None:
            seconds = msg.timeout
        else:
            assert msg.queue is not None, "a consumed message names its queue"
            seconds = broker.get_settings(msg.queue)["message_timeout"]
        lease = Lease(broker, msg, timeout, interval or renew_interval(seconds))
        with self._cond:
            if self._closed:
                raise DdmqError("this Renewer is closed", "closed")
            self._push(lease, lease.interval)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ddmq-lease-renewer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        return lease

    def release(self, lease: Lease) -> bool:
        """Stop renewing ``lease`` (waiting for a renewal in progress); return True if still held.

        False means the lease was lost (see :attr:`Lease.lost`): the message
        must not be acked as done.
        """
        with lease.lock:
            lease.held = False
        with self._cond:
            self._released += 1
            if self._released > 64 and self._released * 2 > len(self._due):
                # Settled leases wait in the heap until they would be due; on a
                # long lease that is many of them: drop them now and then.
                self._due = [entry for entry in self._due if entry[2].held]
                heapq.heapify(self._due)
                self._released = 0
        return lease.lost is None

    def close(self) -> None:
        """Stop the renewals and the thread (leases still held expire as usual)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _push(self, lease: Lease, delay: float) -> None:
        heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), lease))

    def _run(self) -> None:
        while True:
            with self._cond:
                lease: Lease | None = None
                while lease is None:
                    if self._closed:
                        return
                    while self._due and not self._due[0][2].held:
                        heapq.heappop(self._due)
                        self._released = max(0, self._released - 1)
                    timeout: float | None = None
                    if self._due:
                        timeout = self._due[0][0] - time.monotonic()
                        if timeout <= 0:
                            lease = heapq.heappop(self._due)[2]
                            break
                    self._cond.wait(timeout)
            delay = self._renew(lease)
            if delay is not None:
                with self._cond:
                    self._push(lease, delay)

    def _renew(self, lease: Lease) -> float | None:
        """Renew ``lease`` once; return the delay until the next renewal, or None for no more."""
        with lease.lock:
            if not lease.held:
                return None
            try:
                lease.broker.touch(lease.msg, timeout=lease.timeout)
            except (LeaseLostError, QueueNotFoundError) as exc:
                lease.lost = exc
                log.warning("Lease lost: %s", exc)
                return None
            except DdmqError as exc:
                log.warning("Could not renew the lease of %s/work/%s (retrying): %s",
                            lease.msg.queue, lease.msg.filename, exc)
                return min(lease.interval, RETRY_INTERVAL)
            return lease.interval
