"""Working through a queue: an iterator, a context manager and a pool of threads.

From the least to the most done for the caller (the broker's
:meth:`~ddmq.broker.messages`, :meth:`~ddmq.broker.processing` and
:meth:`~ddmq.broker.work` delegate here)::

    for msg in b.messages('jobs', wait=60):      # ends after 60 s with nothing to claim
        handle(msg.message)
        b.ack(msg)                                # the caller settles each message

    with b.processing('jobs', wait=ddmq.FOREVER) as msg:
        handle(msg.message)                       # acked if the block ends normally,
                                                  # nacked (and re-raised) if it raises

    b.work('jobs', handle_msg, jobs=4, idle_exit=60)   # -> {"acked": .., "nacked": .., "lost": ..}

``wait`` is what :meth:`~ddmq.broker.consume` takes: seconds to wait for
each next message, or ``ddmq.FOREVER``; None (the default) does not wait,
so ``messages`` then stops as soon as the queue is empty.

Outcomes.  A message handled by ``processing`` or ``work`` ends *acked*
(the work succeeded), *nacked* (it raised; the message is requeued or
dropped as its and its queue's ``requeue`` and ``requeue_limit`` say) or
*lost*: its lease expired and another process took it, or the ack or nack
failed, so it is, or will be, delivered again; the result of that work must
be treated as a possible duplicate.  While a block or ``func`` runs, a
:class:`~ddmq.lease.Renewer` renews the message's lease from a background
thread (``heartbeat=True``), so work may take far longer than the
message's timeout; without it a lease that expires is taken by the next
cleaner.  A renewal that finds the lease lost stops renewing and makes the
outcome *lost* without attempting the ack.

Threads.  A broker may be shared by threads for ``publish``, ``consume``
(waiting too), ``ack``, ``nack``, ``touch`` and the three helpers here: the
threads then share the broker's candidates, each claim going to one of them
(see :mod:`ddmq.queue`).  A message object belongs to the thread that
consumed it; inside ``processing`` or ``func`` do not settle or touch it
yourself (the heartbeat renames it; the end of the block settles it).
"""

from __future__ import annotations

import threading
import time

from .errors import DdmqError, InvalidInputError, LeaseLostError
from .lease import Renewer
from .log import log
from .publishing import check_optional_int
from .wait import FOREVER, STOP_LATENCY, check_wait

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from types import TracebackType
    from typing import Callable, Final, Iterator, Literal, TypedDict

    from .broker import broker as Broker
    from .lease import Lease
    from .message import message as Message
    from .wait import StopEvent

    #: What ``work`` runs for each message; what it returns is ignored, raising nacks.
    Handler = Callable[[Message], object]
    #: How the handling of one message ended.
    Outcome = Literal["acked", "nacked", "lost"]

    class WorkCounts(TypedDict):
        """What ``work`` returns: how many messages ended each way."""

        acked: int
        nacked: int
        lost: int

ACKED: Final = "acked"
NACKED: Final = "nacked"
LOST: Final = "lost"


def messages(broker: Broker, queue: str, wait: float | None = None,
             max_messages: int | None = None, stop: StopEvent | None = None) -> Iterator[Message]:
    """Return an iterator over messages consumed from ``queue``; see broker.messages."""
    wait = check_wait(wait)
    check_optional_int("max_messages", max_messages)
    broker.get_settings(queue)  # a bad or missing queue fails here, not at the first next()
    return _iterate(broker, queue, wait, max_messages, stop)


def _iterate(broker: Broker, queue: str, wait: float | None, max_messages: int | None,
             stop: StopEvent | None) -> Iterator[Message]:
    taken = 0
    while max_messages is None or taken < max_messages:
        msg = broker.consume(queue, wait=wait, stop=stop)
        if msg is None:
            return
        taken += 1
        yield msg


class Processing:
    """The context manager of :meth:`ddmq.broker.processing`.

    ``with`` gives the consumed message, or None if none came within
    ``wait`` (the block then runs with None and nothing is settled).  After
    the block, :attr:`outcome` is ``"acked"``, ``"nacked"``, ``"lost"`` or
    None (no message).  A block that ended normally but whose message was
    lost raises :class:`~ddmq.errors.LeaseLostError`: its work may be done
    twice.  A block that raised has its exception re-raised after the nack.
    """

    def __init__(self, broker: Broker, queue: str, wait: float | None = None,
                 heartbeat: bool = True, stop: StopEvent | None = None) -> None:
        self.broker = broker
        self.queue = queue
        self.wait = check_wait(wait)
        broker.get_settings(queue)
        self.heartbeat = heartbeat
        self.stop = stop
        self.msg: Message | None = None
        self.outcome: Outcome | None = None
        self._renewer: Renewer | None = None
        self._lease: Lease | None = None

    def __enter__(self) -> Message | None:
        self.msg = self.broker.consume(self.queue, wait=self.wait, stop=self.stop)
        if self.msg is not None and self.heartbeat:
            self._renewer = Renewer()
            self._lease = self._renewer.hold(self.broker, self.msg)
        return self.msg

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> Literal[False]:
        if self.msg is None:
            return False
        try:
            self.outcome = settle(self.broker, self.msg, kind is None, self._renewer, self._lease,
                                  kind is not None and not issubclass(kind, Exception))
        finally:
            if self._renewer is not None:
                self._renewer.close()
        if self.outcome == LOST and kind is None:
            raise LeaseLostError("the work on message {} of queue {!r} is done but its lease was "
                                 "lost: another process took it, so it may run again".format(
                                     self.msg.id, self.queue), "lost")
        return False


def settle(broker: Broker, msg: Message, ok: bool, renewer: Renewer | None = None,
           lease: Lease | None = None, interrupted: bool = False) -> Outcome:
    """End the lease renewals of ``msg``, then ack it (``ok``) or nack it; return the outcome.

    An ``interrupted`` task (Ctrl-C, SystemExit) did not fail: its message
    is requeued at once, whatever the settings say.  The outcome is ACKED,
    NACKED or LOST (the renewals lost the lease, or the message was gone
    when settled).
    """
    if lease is not None:
        assert renewer is not None, "a lease comes from its renewer"
        if not renewer.release(lease):
            return LOST
    if ok:
        done = broker.ack(msg)
    elif interrupted:
        done = broker.nack(msg, requeue=True, delay=0)
    else:
        done = broker.nack(msg)
    if not done:
        return LOST
    return ACKED if ok else NACKED


def work(broker: Broker, queue: str, func: Handler, jobs: int = 1,
         max_messages: int | None = None, idle_exit: float | None = None, heartbeat: bool = True,
         stop: StopEvent | None = None) -> WorkCounts:
    """Run ``func(msg)`` for the messages of ``queue``; see broker.work.  Return the counts."""
    if not callable(func):
        raise InvalidInputError("func must be callable, not {!r}".format(func), "invalid")
    if not (isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1):
        raise InvalidInputError("jobs must be an integer >= 1, not {!r}".format(jobs), "invalid")
    check_optional_int("max_messages", max_messages)
    idle_exit = check_wait(idle_exit)
    if idle_exit == FOREVER:
        idle_exit = None
    broker.get_settings(queue)
    return _Pool(broker, queue, func, jobs, max_messages, idle_exit, heartbeat, stop).run()


class _Pool:
    """The threads of one :func:`work` call and what they share."""

    def __init__(self, broker: Broker, queue: str, func: Handler, jobs: int,
                 max_messages: int | None, idle_exit: float | None, heartbeat: bool,
                 stop: StopEvent | None) -> None:
        self.broker = broker
        self.queue = queue
        self.func = func
        self.jobs = jobs
        self.max_messages = max_messages
        self.idle_exit = idle_exit
        self.renewer = Renewer() if heartbeat else None
        self.ended = threading.Event()      # set when the pool itself decides to end
        self.halt: StopEvent = self.ended if stop is None else _Either(self.ended, stop)
        self.lock = threading.Lock()
        self.counts: WorkCounts = {ACKED: 0, NACKED: 0, LOST: 0}
        self.taken = 0          # messages claimed
        self.pending = 0        # consumes in progress (each may claim one)
        self.running = 0        # funcs running
        self.last_busy = time.monotonic()
        self.error: BaseException | None = None  # the first exception that ended a thread

    def run(self) -> WorkCounts:
        try:
            if self.jobs == 1:
                self._guarded()  # in the caller's thread: Ctrl-C reaches func, which is nacked
            else:
                threads = [threading.Thread(target=self._guarded, name="ddmq-work-{}".format(i),
                                            daemon=True) for i in range(self.jobs)]
                for thread in threads:
                    thread.start()
                try:
                    _join(threads)
                except KeyboardInterrupt:
                    # Take no new messages; let the running ones finish and settle.
                    # A second Ctrl-C leaves at once (their leases then expire).
                    self.ended.set()
                    _join(threads)
                    raise
        finally:
            if self.renewer is not None:
                self.renewer.close()
        if self.error is not None:
            raise self.error
        return self.counts.copy()

    def _guarded(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            with self.lock:
                if self.error is None:
                    self.error = exc
            self.ended.set()

    def _loop(self) -> None:
        while not self.halt.is_set() and self._reserve():
            try:
                msg = self.broker.consume(self.queue, wait=self._wait_time(), stop=self.halt)
            except BaseException:
                with self.lock:
                    self.pending -= 1
                raise
            with self.lock:
                self.pending -= 1
                if msg is not None:
                    self.taken += 1
                    self.running += 1
            if msg is None:
                self._end_if_idle()
                continue
            try:
                self._run_one(msg)
            finally:
                with self.lock:
                    self.running -= 1
                    self.last_busy = time.monotonic()

    def _reserve(self) -> bool:
        """Count a consume about to start; False once max_messages are claimed or claiming."""
        with self.lock:
            if self.max_messages is not None and self.taken + self.pending >= self.max_messages:
                return False
            self.pending += 1
            return True

    def _wait_time(self) -> float:
        if self.idle_exit is None:
            return FOREVER
        with self.lock:
            if self.running:
                return self.idle_exit
            return max(0.0, self.last_busy + self.idle_exit - time.monotonic())

    def _end_if_idle(self) -> None:
        if self.idle_exit is None:
            return
        with self.lock:
            if not self.running and time.monotonic() - self.last_busy >= self.idle_exit:
                self.ended.set()

    def _run_one(self, msg: Message) -> None:
        lease = self.renewer.hold(self.broker, msg) if self.renewer is not None else None
        interrupted: BaseException | None = None
        try:
            self.func(msg)
            ok = True
        except Exception:
            _log_failure(msg)
            ok = False
        except BaseException as exc:  # Ctrl-C, SystemExit: requeue at once, then leave
            interrupted, ok = exc, False
        try:
            outcome = settle(self.broker, msg, ok, self.renewer, lease, interrupted is not None)
        except DdmqError as exc:
            log.warning("Could not settle message %s of %s (it will be delivered again): %s",
                        msg.id, self.queue, exc)
            outcome = LOST
        with self.lock:
            self.counts[outcome] += 1
        if interrupted is not None:
            raise interrupted


class _Either:
    """A stop event that is set when either of two events is (for broker.consume's ``stop``)."""

    def __init__(self, first: threading.Event, second: StopEvent) -> None:
        self.first = first
        self.second = second

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()

    def wait(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.first.wait(min(left, STOP_LATENCY))
        return True


def _join(threads: list[threading.Thread]) -> None:
    # join() with a timeout, so that Ctrl-C reaches the calling thread meanwhile.
    for thread in threads:
        while thread.is_alive():
            thread.join(0.25)


def _log_failure(msg: Message) -> None:
    logger = log.get()
    if logger is not None:
        logger.warning("Task of message %s of %s failed; nacking it", msg.id, msg.queue,
                       exc_info=True)
