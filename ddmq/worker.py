"""Run a command for every message of a queue: the engine of ``ddmq work``.

A :class:`CommandWorker` claims messages with :meth:`broker.consume`, starts
one command per message with ``os.posix_spawn`` (never through a shell: the
message text is one argument, or the command's stdin), renews each lease
with :meth:`broker.touch` while its command runs, and settles the message by
the command's fate: exit status 0 is an :meth:`~broker.ack`, anything else a
:meth:`~broker.nack` through :meth:`CommandWorker._nack`, the one place that
nacks.  It uses the public broker API only.

One thread does it all: a selector waits on the commands' stderr pipes (each
is passed through and its last lines kept for the failure reason), their
stdin pipes, and a wake-up pipe that SIGCHLD and the shutdown signals write
to; between two waits it reaps, renews leases, enforces timeouts and claims
more.  With nothing running it waits in ``consume(wait=...)`` instead, in
slices of at most :data:`WAIT_SLICE` so that a signal is acted on soon.

Every command runs in the process group of a watchdog (:mod:`ddmq.watchdog`)
that kills the group if the worker dies without stopping it in order.

Shutdown (SIGTERM, SIGINT, SIGHUP): claim nothing more, pass the signal on
to the commands' process group, let them run for ``grace`` seconds, then
kill what still runs and requeue its message at once.  A second signal
skips the rest of the grace period.  A message whose command the shutdown
interrupted is requeued whatever its settings say: it did not fail.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time

from . import names
from .lease import RETRY_INTERVAL, renew_interval
from .log import log
from .errors import CommandError, DdmqError, InvalidInputError, LeaseLostError, StorageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from types import FrameType
    from typing import Callable, Literal, Sequence, TextIO, TypedDict

    from typing_extensions import Unpack

    from .broker import broker as Broker
    from .message import message as Message

    #: What a signal handler may be, as signal.signal takes and returns it.
    SignalHandler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None
    #: The kinds of event a CommandWorker reports to its ``on_event``.
    EventKind = Literal["done", "failed", "interrupted", "lost", "lease_lost", "stopping",
                        "tick"]

    class EventRecord(TypedDict, total=False):
        """An event's fields: a task's ("stopping": signal, running, grace; "tick": none)."""

        id: str
        filename: str
        delivery: int
        pid: int | None
        exit: int | None
        signal: str | None
        seconds: float
        reason: str | None
        running: int
        grace: float

    class TaskCounts(TypedDict):
        """How many tasks ended each way."""

        done: int
        failed: int
        interrupted: int
        lost: int

    class Summary(TaskCounts):
        """What :meth:`CommandWorker.run` returns."""

        seconds: float
        stopped_by: str | None

    class Status(TaskCounts):
        """What :meth:`CommandWorker.status` returns."""

        running: int
        waiting: int | None
        rate: float | None
        eta: float | None

FIRST_BACKOFF = 0.005   # seconds before looking again at a queue found empty while tasks run
WAIT_SLICE = 1.0        # longest blocking consume when idle: how late an idle worker sees a signal
KILL_DELAY = 5.0        # seconds from SIGTERM to SIGKILL for a command past --task-timeout
WATCHDOG_DELAY = 2.0    # the same, for commands of a worker that died (see ddmq.watchdog)
STDERR_TAIL = 4096      # bytes of a command's stderr kept for its failure reason
REASON_LINES = 5        # lines of that stderr that go into the reason
WAITING_EVERY = 2.0     # seconds between two counts of the waiting messages for status()
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
JOBLOG_HEADER = "MessageId\tHost\tStarttime\tJobRuntime\tExitval\tSignal\tDelivery\n"

_WATCHDOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watchdog.py")
# Python ignores SIGPIPE (and SIGXFSZ); a command expects the default.
_SIGDEF = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name))


def find_command(name: str) -> str:
    """Return the path of the executable ``name``, searched on PATH unless it holds a ``/``.

    Raises CommandError, saying why, if it cannot be run.
    """
    if not name:
        raise CommandError("no command given", "command")
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(folder or ".", name)
                      for folder in os.environ.get("PATH", os.defpath).split(os.pathsep)]
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    if "/" not in name:
        raise CommandError("command {!r} not found on PATH".format(name), "command")
    if not os.path.exists(name):
        raise CommandError("command {!r} does not exist".format(name), "command")
    raise CommandError("command {!r} is not an executable file".format(name), "command")


def _claimed(msg: Message) -> tuple[str, str]:
    """Return the id and work-file name of a message that consume returned (both always set)."""
    assert msg.id is not None and msg.filename is not None
    return msg.id, msg.filename


class Task:
    """One command running for one claimed message."""

    def __init__(self, msg: Message, pid: int, started: float, delivery: int, stderr_fd: int,
                 stdin_fd: int | None, stdin_data: bytes) -> None:
        self.msg = msg
        self.pid = pid
        self.started = started              # time.monotonic()
        self.start_time = time.time()       # for the joblog
        self.delivery = delivery
        self.stderr_fd = stderr_fd
        self.stdin_fd = stdin_fd
        self.stdin_data = stdin_data        # bytes not yet written to the command's stdin
        self.tail = b""
        self.next_touch: float | None = None
        self.deadline: float | None = None  # --task-timeout
        self.kill_at: float | None = None   # SIGKILL after a timeout's SIGTERM
        self.timed_out = False
        self.interrupted: int | None = None  # the shutdown signal passed on to it
        self.lost = False                   # its lease could not be renewed
        self.abandoned: str | None = None   # why the worker killed it on stopping

    def record(self, **fields: Unpack[EventRecord]) -> EventRecord:
        """Return the task as an event record (a dict) with ``fields`` added."""
        msg_id, filename = _claimed(self.msg)
        return {"id": msg_id, "filename": filename, "delivery": self.delivery,
                "pid": self.pid, **fields}


class CommandWorker:
    """Run ``command`` (an argv list) once for each message of ``queue``.

    In the arguments after the first, ``{}`` is replaced by the message text
    (bytes as they are, a text that is neither bytes nor a string as JSON);
    with no ``{}`` the text is the command's standard input.  ``jobs``
    commands run at once.  The worker stops after ``max_messages`` messages,
    once the queue has had nothing to claim for ``idle_exit`` seconds with
    nothing running and no delayed message (a failed task's retry) due
    within ``idle_exit`` seconds, or on SIGTERM/SIGINT/SIGHUP; without any,
    it waits for messages forever.
    ``task_timeout`` seconds after its start a command is sent SIGTERM (and
    SIGKILL :data:`KILL_DELAY` s later) and its message nacked.  A message
    that failed and was retried ``retries`` times already is given up on
    its next failure (default: as the message's and the queue's
    ``requeue_limit`` say).  ``grace``
    is the shutdown grace period (see the module docstring).  ``joblog`` is
    a file path that gets one tab-separated line per task.

    ``on_event(kind, record)`` is called with ``kind`` one of "done",
    "failed", "interrupted", "lost" (a task ended), "lease_lost", "stopping"
    and "tick" (every ``tick`` seconds, if given).  ``on_stderr(data)``
    receives the commands' standard error (default: written to fd 2).
    :meth:`run` must be called from the main thread: it handles signals.
    """

    def __init__(self, broker: Broker, queue: str, command: Sequence[str], jobs: int = 1,
                 max_messages: int | None = None, idle_exit: float | None = None,
                 task_timeout: float | None = None, retries: int | None = None,
                 grace: float = 10.0, joblog: str | None = None,
                 on_event: Callable[[EventKind, EventRecord], object] | None = None,
                 on_stderr: Callable[[bytes], object] | None = None,
                 tick: float | None = None) -> None:
        if not command:
            raise InvalidInputError("no command given", "invalid")
        if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
            raise InvalidInputError("jobs must be an integer >= 1, not {!r}".format(jobs),
                                    "invalid")
        if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool)
                                    or retries < 0):
            raise InvalidInputError("retries must be an integer >= 0, not {!r}".format(retries),
                                    "invalid")
        self.broker = broker
        self.queue = queue
        self.command = list(command)
        self.jobs = jobs
        self.max_messages = max_messages
        self.idle_exit = idle_exit
        self.task_timeout = task_timeout
        self.retries = retries
        self.grace = grace
        self.joblog_path = joblog
        self.on_event: Callable[[EventKind, EventRecord], object] = (
            on_event or (lambda kind, record: None))
        self.on_stderr: Callable[[bytes], object] = on_stderr or _write_stderr
        self.tick = tick
        self.counts: TaskCounts = {"done": 0, "failed": 0, "interrupted": 0, "lost": 0}
        self.running: dict[int, Task] = {}  # pid -> Task
        self.claimed = 0
        self.stop_signal: int | None = None  # the first shutdown signal
        self.stop_now = False              # a second one came
        self.fatal: CommandError | None = None  # a CommandError that stops the worker
        self.idle = False                  # --idle-exit reached
        self._signals: list[int] = []
        # stderr fd -> Task, or None once its task ended
        self._streams: dict[int, Task | None] = {}
        self._selector: selectors.BaseSelector   # set by run()
        self._watchdog: _Watchdog | None = None
        self._joblog: TextIO | None = None
        # (count, monotonic time of the count)
        self._waiting: tuple[int | None, float] = (None, 0.0)
        self._first_start: float | None = None
        self._backoff = FIRST_BACKOFF
        self._next_claim = 0.0
        self._last_activity = time.monotonic()
        self._tick_at = 0.0

    # The run.

    def run(self) -> Summary:
        """Run until there is nothing more to do; return the summary record (a dict).

        Raises CommandError before claiming anything if the command cannot be
        run, and DdmqError if the queue cannot be used.
        """
        if threading.current_thread() is not threading.main_thread():
            raise InvalidInputError("a CommandWorker must run in the main thread", "invalid")
        self._path = find_command(self.command[0])
        self._placeholder = any("{}" in arg for arg in self.command[1:])
        settings = self.broker.get_settings(self.queue)
        self._default_lease: float = settings["message_timeout"]
        self._poll_cap: float = settings["poll_interval"]
        self._env = dict(os.environ, DDMQ_ROOT=os.path.abspath(self.broker.root),
                         DDMQ_QUEUE=self.queue)
        self._open_joblog()
        started = self._last_activity = time.monotonic()
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._selector = selectors.DefaultSelector()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._selector.register(wake_r, selectors.EVENT_READ)
        self._wake_r = wake_r
        previous = self._install_signals(wake_w)
        orderly = False
        try:
            self._watchdog = _Watchdog()
            self._loop()
            # After a shutdown signal, what is left in the group (children of the
            # commands) goes too; after a normal end it is the commands' business.
            orderly = not self.running and self.stop_signal is None
        finally:
            try:
                if self.running:
                    self._abandon(list(self.running.values()), "the worker stopped on an error")
            finally:
                self._watchdog_close(orderly)
                self._restore_signals(previous)
                for fd in list(self._streams):
                    self._close_stream(fd)
                self._selector.close()
                for fd in (wake_r, wake_w, self._devnull):
                    os.close(fd)
                if self._joblog is not None:
                    self._joblog.close()
        if self.fatal is not None:
            raise self.fatal
        return {**self.counts, "seconds": time.monotonic() - started,
                "stopped_by": signal.Signals(self.stop_signal).name if self.stop_signal else None}

    def _loop(self) -> None:
        grace_end: float | None = None
        while True:
            if self._signals:
                self._handle_signals()
                if self.stop_signal is not None and grace_end is None:
                    grace_end = time.monotonic() + self.grace
            if self.running and (self.stop_now or (grace_end is not None
                                                   and time.monotonic() >= grace_end)):
                self._abandon(list(self.running.values()),
                              "still running when the worker stopped")
            self._claim()
            if not self.running:
                if not self._may_claim():
                    return
                continue
            timeout = self._next_timer() - time.monotonic()
            if grace_end is not None:
                timeout = min(timeout, grace_end - time.monotonic())
            self._wait(max(0.0, min(timeout, WAIT_SLICE)))
            self._reap()
            self._timers(time.monotonic())

    def _may_claim(self) -> bool:
        return (self.stop_signal is None and self.fatal is None and not self.idle
                and (self.max_messages is None or self.claimed < self.max_messages))

    # Claiming and starting.

    def _claim(self) -> None:
        free = self.jobs - len(self.running)
        if free <= 0 or not self._may_claim():
            return
        now = time.monotonic()
        if self.max_messages is not None:
            free = min(free, self.max_messages - self.claimed)
        if self.running:
            if now < self._next_claim:
                return
            wait: float | None = None
        else:
            wait = WAIT_SLICE
            if self.idle_exit is not None:
                left = self.idle_exit - (now - self._last_activity)
                wait = min(wait, left) if left > 0 else None
        msgs: list[Message] = []
        try:
            if free == 1:  # n=1 answers a message or None, not a list
                msg = self.broker.consume(self.queue, wait=wait)
                if msg is not None:
                    msgs = [msg]
            else:
                got = self.broker.consume(self.queue, n=free, wait=wait)
                assert isinstance(got, list), "n > 1 answers a list"
                msgs = got
        except StorageError as exc:
            log.warning("Could not claim from %s: %s", self.queue, exc)
            time.sleep(self._poll_cap if not self.running else 0)
        if not msgs:
            self._backoff = min(2 * self._backoff, self._poll_cap)
            self._next_claim = time.monotonic() + self._backoff
            if not self.running and self.idle_exit is not None and (
                    time.monotonic() - self._last_activity >= self.idle_exit) \
                    and not self._delayed_due_within(self.idle_exit):
                self.idle = True
            return
        self._backoff = FIRST_BACKOFF
        self._next_claim = 0.0
        self._last_activity = time.monotonic()
        self.claimed += len(msgs)
        if self._signals:
            self._handle_signals()  # one came while we waited: these must not start
        for msg in msgs:
            if self.stop_signal is not None or self.fatal is not None:
                self._release(msg)
                self.claimed -= 1
            else:
                self._start(msg)

    def _delayed_due_within(self, seconds: float) -> bool:
        """Return True if a delayed message (a failed task's retry) is due within ``seconds``.

        An idle worker waits for such a retry rather than leave it to nobody.
        """
        try:
            soonest = self.broker.get_delayed_list(self.queue)[:1]
        except DdmqError:
            return False  # the idle exit goes ahead; the claim loop reports real trouble
        parsed = names.parse_delayed_name(soonest[0]) if soonest else None
        return parsed is not None and parsed[0] - self.broker.clock() <= seconds

    def _start(self, msg: Message) -> None:
        """Start the command for the claimed ``msg``; nack it if that is impossible."""
        payload = msg.message
        if isinstance(payload, bytes):
            text = os.fsdecode(payload)  # spawn encodes an argument back to these very bytes
        else:
            text = payload if isinstance(payload, str) else json.dumps(payload)
        delivery = (msg.requeue_counter or 0) + 1
        msg_id, filename = _claimed(msg)
        env = dict(self._env, DDMQ_MESSAGE_ID=msg_id, DDMQ_WORK_FILE=filename,
                   DDMQ_DELIVERY=str(delivery))
        if self._placeholder:
            argv = self.command[:1] + [arg.replace("{}", text) for arg in self.command[1:]]
            stdin_r: int | None = None
            stdin_w: int | None = None
            data = b""
        else:
            argv = self.command
            stdin_r, stdin_w = os.pipe()
            if isinstance(payload, bytes):
                data = payload
            else:
                data = text.encode("utf-8", "surrogateescape")
        err_r, err_w = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, self._devnull if stdin_r is None else stdin_r, 0),
                   (os.POSIX_SPAWN_DUP2, err_w, 2)]
        assert self._watchdog is not None, "run() starts it before the first claim"
        error: OSError | ValueError | None = None
        try:
            pid = os.posix_spawn(self._path, argv, env, file_actions=actions,
                                 setpgroup=self._watchdog.pid, setsigdef=_SIGDEF)
        except (OSError, ValueError) as exc:
            error = exc
        for fd in (err_w, stdin_r):  # the command's ends: it has its own copies now
            if fd is not None:
                os.close(fd)
        if error is not None:
            for fd in (err_r, stdin_w):
                if fd is not None:
                    os.close(fd)
            self._start_failed(msg, error)
            return
        now = time.monotonic()
        if self._first_start is None:
            self._first_start = now
        task = Task(msg, pid, now, delivery, err_r, stdin_w, data)
        lease = msg.timeout if msg.timeout is not None else self._default_lease
        task.next_touch = now + renew_interval(lease)
        if self.task_timeout is not None:
            task.deadline = now + self.task_timeout
        self.running[pid] = task
        os.set_blocking(err_r, False)
        self._streams[err_r] = task
        self._selector.register(err_r, selectors.EVENT_READ)
        if stdin_w is not None:
            os.set_blocking(stdin_w, False)
            self._feed(task)

    def _start_failed(self, msg: Message, exc: OSError | ValueError) -> None:
        if isinstance(exc, ValueError) or getattr(exc, "errno", None) == errno.E2BIG:
            # This message's text cannot be an argument; the next one may be fine.
            why = "embedded NUL byte" if isinstance(exc, ValueError) else exc.strerror
            self._finish_failed(msg, "cannot start {}: the message text cannot be an argument "
                                     "({})".format(self.command[0], why))
            return
        # The command itself cannot run (replaced, or not a valid executable): every
        # message would fail alike, so stop, and give this one back untouched.
        self.fatal = CommandError("cannot run {!r}: {}".format(self.command[0], exc.strerror
                                                                or exc), "command")
        self._release(msg)
        self.claimed -= 1

    def _finish_failed(self, msg: Message, reason: str) -> None:
        self.counts["failed"] += 1
        delivery = (msg.requeue_counter or 0) + 1
        msg_id, filename = _claimed(msg)
        record: EventRecord = {"id": msg_id, "filename": filename, "delivery": delivery,
                               "pid": None, "exit": None, "signal": None, "seconds": 0.0,
                               "reason": reason}
        self._nack(msg, reason)
        self.on_event("failed", record)

    # Waiting for events.

    def _wait(self, timeout: float) -> None:
        for key, events in self._selector.select(timeout):
            fd = key.fd
            if fd == self._wake_r:
                try:
                    while os.read(fd, 512):
                        pass
                except BlockingIOError:
                    pass
            elif events & selectors.EVENT_WRITE:
                self._feed(key.data)
            else:
                self._read_stream(fd)

    def _read_stream(self, fd: int) -> bool | None:
        """Pass on what the command wrote to stderr, keeping its tail.

        Returns True if it read something, None if nothing is there now,
        False once the stream has ended (and is closed).
        """
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self._close_stream(fd)
            return False
        task = self._streams.get(fd)
        if task is not None:
            task.tail = (task.tail + data)[-STDERR_TAIL:]
        self.on_stderr(data)
        return True

    def _close_stream(self, fd: int) -> None:
        self._streams.pop(fd, None)
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            pass
        os.close(fd)

    def _feed(self, task: Task) -> None:
        """Write what is left of the message text to the command's stdin."""
        fd = task.stdin_fd
        assert fd is not None, "fed only while its stdin is open"
        try:
            while task.stdin_data:
                written = os.write(fd, task.stdin_data[:65536])
                task.stdin_data = task.stdin_data[written:]
        except BlockingIOError:
            events = selectors.EVENT_WRITE
            try:
                self._selector.modify(fd, events, task)
            except KeyError:
                self._selector.register(fd, events, task)
            return
        except OSError:
            pass  # EPIPE: the command exited, or closed stdin, without reading it all
        self._close_stdin(task)

    def _close_stdin(self, task: Task) -> None:
        if task.stdin_fd is None:
            return
        try:
            self._selector.unregister(task.stdin_fd)
        except KeyError:
            pass
        os.close(task.stdin_fd)
        task.stdin_fd = None

    # Ends of tasks.

    def _reap(self) -> None:
        for task in list(self.running.values()):
            try:
                pid, status = os.waitpid(task.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = task.pid, 255 << 8  # reaped by someone else: status unknown
            if pid:
                self._end(task, status)
        if self._watchdog is not None and self._watchdog.exited():
            log.warning("The watchdog of the worker on %s ended; starting a new one", self.queue)
            self._watchdog = _Watchdog()

    def _end(self, task: Task, status: int) -> None:
        """Settle the message of ``task``, whose command ended with wait ``status``."""
        del self.running[task.pid]
        while self._streams.get(task.stderr_fd) is task and self._read_stream(task.stderr_fd):
            pass  # the command is gone: all it wrote is in the pipe now
        if self._streams.get(task.stderr_fd) is task:
            self._streams[task.stderr_fd] = None  # a child of the command still holds it open
        self._close_stdin(task)
        now = time.monotonic()
        self._last_activity = now
        self._next_claim = 0.0
        code = os.waitstatus_to_exitcode(status)
        exit_status, signum = (code, None) if code >= 0 else (None, -code)
        seconds = now - task.started
        self._log_job(task, exit_status, signum, seconds)
        record = task.record(exit=exit_status, seconds=seconds,
                             signal=signal.Signals(signum).name if signum else None)
        if task.lost:
            self.counts["lost"] += 1
            self.on_event("lost", {**record, "reason": "its lease was lost; not settled"})
            return
        if code == 0 and not task.timed_out:
            if self._ack(task):
                self.counts["done"] += 1
                self.on_event("done", {**record, "reason": None})
            return
        reason = self._reason(task, exit_status, signum, seconds)
        kind: Literal["interrupted", "failed"]
        requeue: bool | None
        if (task.interrupted or task.abandoned) and not task.timed_out:
            kind, requeue = "interrupted", True
        else:
            kind, requeue = "failed", None
        self.counts[kind] += 1
        self._nack(task.msg, reason, requeue)
        self.on_event(kind, {**record, "reason": reason})

    def _reason(self, task: Task, exit_status: int | None, signum: int | None,
                seconds: float) -> str:
        """Return why the command of ``task`` failed: its fate, then its last stderr lines."""
        if task.timed_out:
            assert self.task_timeout is not None, "only a task timeout times a task out"
            what = "timed out after {:g} s (killed by {})".format(
                self.task_timeout, signal.Signals(signum).name if signum else "SIGTERM")
        elif signum:
            what = "killed by {}".format(signal.Signals(signum).name)
        else:
            what = "exit status {}".format(exit_status)
        if task.interrupted:
            what += " after the worker passed on {}".format(signal.Signals(task.interrupted).name)
        if task.abandoned:
            what += "; " + task.abandoned
        lines = task.tail.decode("utf-8", "replace").splitlines()[-REASON_LINES:]
        return "\n".join([what] + [line for line in lines if line.strip()])

    def _abandon(self, tasks: list[Task], why: str) -> None:
        """Kill the commands of ``tasks`` and requeue their messages now."""
        for task in tasks:
            try:
                os.kill(task.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for task in tasks:
            try:
                _, status = os.waitpid(task.pid, 0)
            except ChildProcessError:
                status = signal.SIGKILL
            task.abandoned = why
            self._end(task, status)

    # Settling: every ack and nack of the worker goes through these two.

    def _ack(self, task: Task) -> bool:
        try:
            acked = self.broker.ack(task.msg)
        except StorageError as exc:
            acked = []
            log.warning("Could not ack %s: %s", task.msg.filename, exc)
        if not acked:
            self.counts["lost"] += 1
            self.on_event("lost", task.record(reason="could not ack: its lease was lost"))
        return bool(acked)

    def _release(self, msg: Message) -> None:
        """Give back ``msg``, claimed but never started, unchanged (see broker.release)."""
        try:
            if self.broker.release(msg):
                return
        except StorageError as exc:
            log.warning("Could not give back %s: %s", msg.filename, exc)
            return
        log.warning("%s of queue %s was not given back (its lease was lost)", msg.filename,
                    self.queue)

    def _nack(self, msg: Message, reason: str, requeue: bool | None = None) -> bool:
        """Nack ``msg`` (requeued or dropped as its settings say, unless ``requeue``).

        A forced requeue (work interrupted, not failed) is served again at
        once: the queue's retry delay is for failures.  A failure of a
        message already retried ``retries`` times gives it up (dead-lettered
        or dropped, as the queue says).
        """
        if requeue is None and self.retries is not None \
                and (msg.requeue_counter or 0) >= self.retries:
            requeue = False
        try:
            done = self.broker.nack(msg, requeue=requeue, reason=reason,
                                    delay=0 if requeue else None)
        except StorageError as exc:
            done = []
            log.warning("Could not nack %s: %s", msg.filename, exc)
        if not done:
            log.warning("%s of queue %s was not nacked (its lease was lost); reason: %s",
                        msg.filename, self.queue, reason)
        return bool(done)

    # Timers: lease renewal, task timeouts, ticks.

    def _next_timer(self) -> float:
        when = [t for task in self.running.values()
                for t in (task.next_touch, task.deadline, task.kill_at) if t is not None]
        if len(self.running) < self.jobs and self._may_claim():
            when.append(self._next_claim)
        if self.tick:
            when.append(self._tick_at)
        return min(when) if when else time.monotonic() + WAIT_SLICE

    def _timers(self, now: float) -> None:
        for task in list(self.running.values()):
            if task.next_touch is not None and now >= task.next_touch and not task.lost:
                self._touch(task, now)
            if task.deadline is not None and now >= task.deadline and not task.timed_out:
                task.timed_out = True
                task.kill_at = now + KILL_DELAY
                _kill(task.pid, signal.SIGTERM)
            elif task.kill_at is not None and now >= task.kill_at:
                task.kill_at = None
                _kill(task.pid, signal.SIGKILL)
        if self.tick and now >= self._tick_at:
            self._tick_at = now + self.tick
            self.on_event("tick", {})

    def _touch(self, task: Task, now: float) -> None:
        try:
            self.broker.touch(task.msg)
        except LeaseLostError as exc:
            task.lost = True
            task.next_touch = None
            log.warning("Lease lost while running %s: %s", task.msg.id, exc)
            self.on_event("lease_lost", task.record(reason=str(exc)))
            return
        except StorageError as exc:
            log.warning("Could not renew the lease of %s: %s", task.msg.filename, exc)
            task.next_touch = now + RETRY_INTERVAL
            return
        lease = task.msg.timeout if task.msg.timeout is not None else self._default_lease
        task.next_touch = now + renew_interval(lease)

    # Signals.

    def _install_signals(self, wake_w: int) -> tuple[int, dict[int, SignalHandler]]:
        """Install the worker's handlers; return the wake-up fd and the handlers they replace."""
        wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        previous: dict[int, SignalHandler] = {
            signal.SIGCHLD: signal.signal(signal.SIGCHLD, _ignore_signal)}
        for signum in SHUTDOWN_SIGNALS:
            handler = signal.getsignal(signum)
            if signum == signal.SIGHUP and handler == signal.SIG_IGN:
                continue  # started under nohup: stay deaf to hangups
            previous[signum] = signal.signal(signum, self._on_signal)
        return wakeup, previous

    def _restore_signals(self, previous: tuple[int, dict[int, SignalHandler]]) -> None:
        wakeup, handlers = previous
        signal.set_wakeup_fd(wakeup)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if self.stop_signal is None:
                self.stop_signal = signum
                for task in self.running.values():
                    task.interrupted = signum
                assert self._watchdog is not None, "run() starts it before the first claim"
                self._watchdog.signal_group(signum)
                self.on_event("stopping", {"signal": signal.Signals(signum).name,
                                           "running": len(self.running), "grace": self.grace})
            else:
                self.stop_now = True

    def _watchdog_close(self, orderly: bool) -> None:
        if self._watchdog is not None:
            self._watchdog.close(orderly)
            self._watchdog = None

    # Reporting.

    def status(self) -> Status:
        """Return the counts of the run so far, the waiting messages, tasks/s and an ETA (s)."""
        now = time.monotonic()
        count, when = self._waiting
        if count is None or now - when >= WAITING_EVERY:
            try:
                count = len(self.broker.get_message_list(self.queue)[0])
            except DdmqError:
                count = None
            self._waiting = (count, time.monotonic())
        counts = self.counts
        finished = counts["done"] + counts["failed"] + counts["interrupted"] + counts["lost"]
        rate: float | None = None
        eta: float | None = None
        if self._first_start is not None and finished and now > self._first_start:
            rate = finished / (now - self._first_start)
            left = (count or 0) + len(self.running)
            if self.max_messages is not None:
                left = min(left, self.max_messages - finished)
            eta = left / rate
        return {**self.counts, "running": len(self.running), "waiting": count, "rate": rate,
                "eta": eta}

    def _open_joblog(self) -> None:
        if self.joblog_path is None:
            return
        try:
            self._joblog = open(self.joblog_path, "a", buffering=1, encoding="utf-8")
            if self._joblog.tell() == 0:
                self._joblog.write(JOBLOG_HEADER)
        except OSError as exc:
            raise StorageError("cannot write the joblog {}: {}".format(
                self.joblog_path, exc.strerror or exc), "io") from None
        self._host = socket.gethostname()

    def _log_job(self, task: Task, exit_status: int | None, signum: int | None,
                 seconds: float) -> None:
        if self._joblog is None:
            return
        # As GNU parallel's --joblog: Exitval 0 and the signal number for a killed command.
        self._joblog.write("{}\t{}\t{:.3f}\t{:.3f}\t{}\t{}\t{}\n".format(
            task.msg.id, self._host, task.start_time, seconds,
            exit_status if exit_status is not None else 0, signum or 0, task.delivery))


class _Watchdog:
    """The watchdog process (see :mod:`ddmq.watchdog`); its pid is the commands' process group."""

    def __init__(self) -> None:
        read_end, self.fd = os.pipe()
        try:
            # Started with the shutdown signals blocked: one that comes before the
            # watchdog has set them to "ignore" must not kill it.
            self.pid = os.posix_spawn(
                sys.executable, [sys.executable, "-S", "-I", _WATCHDOG, str(WATCHDOG_DELAY)],
                os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0)], setpgroup=0,
                setsigmask=SHUTDOWN_SIGNALS + (signal.SIGQUIT,), setsigdef=_SIGDEF)
        except OSError as exc:
            os.close(self.fd)
            raise CommandError("cannot start the watchdog ({}): {}".format(
                sys.executable, exc.strerror or exc), "command") from None
        finally:
            os.close(read_end)
        self.done = False

    def exited(self) -> bool:
        if self.done:
            return True
        pid, _ = os.waitpid(self.pid, os.WNOHANG)
        self.done = bool(pid)
        if self.done:
            os.close(self.fd)
        return self.done

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to every command (the watchdog ignores it)."""
        _kill(-self.pid, signum)

    def close(self, orderly: bool) -> None:
        """Stop the watchdog: quietly if ``orderly``, else killing what is left in the group."""
        if self.done:
            return
        try:
            os.write(self.fd, b"d" if orderly else b"k")
        except OSError:
            pass
        os.close(self.fd)
        self.done = True
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # it has just ended


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing: SIGCHLD only has to wake the selector."""


def _write_stderr(data: bytes) -> None:
    while data:
        try:
            data = data[os.write(2, data):]
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            return
