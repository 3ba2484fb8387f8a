"""The broker: the public API of one ddmq root directory.

>>> import ddmq
>>> b = ddmq.broker('/tmp/ddmq', create=True)
>>> b.publish('jobs', 'Hello World!')          # doctest: +SKIP
>>> msg = b.consume('jobs')                     # doctest: +SKIP
>>> b.ack(msg)                                  # doctest: +SKIP

A root holds a ``ddmq.yaml`` and one folder per queue; every change to a
message file goes through :mod:`ddmq.protocol`, whose docstring describes the
on-disk states and the single filesystem operation that moves a message
between them.  Methods and defaults follow the original ddmq 0.9.14 API.
"""

from __future__ import annotations

import os
import stat
import sys
import time

from . import (__version__, admin, delayed, fs, history, housekeeping, names, protocol,
               publishing, settings, settling)
from . import wait as waiting
from .errors import (CodecError, ConfigError, DdmqError, InvalidInputError, LeaseLostError,
                     MessageNotFoundError, PermissionDeniedError, QueueNotFoundError, RootError,
                     StorageError)
from .clock import FilesystemClock
from .message import Codec, from_file, locate, message
from .log import log
from .queue import Queue

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    import logging
    from typing import Any, Callable, Iterable, Iterator, Literal, overload

    from .consuming import Handler, Processing, WorkCounts
    from .message import PayloadCodec
    from .message import message as Message
    from .settings import Settings
    from .stats import Figures
    from .wait import StopEvent

    #: A path given by the caller: text or an ``os.PathLike``.
    StrPath = str | os.PathLike[str]
    #: The work-file names of consumed messages, as ack and nack take them: one or a sequence.
    WorkNames = str | list[str] | tuple[str, ...]

__all__ = ["broker", "DdmqError"]



TAKE_OVER_GRACE = settling.TAKE_OVER_GRACE


def _wants_cleaning(clean: bool, skip_cleaning: bool | None) -> bool:
    # Upstream later renamed clean=True to skip_cleaning=False; accept both.
    return clean if skip_cleaning is None else not skip_cleaning


class broker:
    """Interact with the queues of one ddmq root directory.

    ``create=True`` creates and initiates the root, and any queue used,
    when missing.  ``verbose`` and ``debug`` log INFO or DEBUG messages of
    the ``ddmq`` logger to stderr.  ``clock`` is the function that tells the
    time (epoch seconds) for leases; tests inject a shifted one.  Without
    it, the root's ``clock`` setting picks it (see :mod:`ddmq.clock`).
    ``codec`` is an object with ``encode(value)``, returning bytes or a JSON
    value to store, and ``decode(stored)``, returning the value (see
    :class:`ddmq.message.Codec`); failures raise CodecError.  ``umask`` (an
    octal string such as ``"007"``, or an integer) is written as the
    ``umask`` setting of a root this broker creates, and applied to it; a
    root that exists must already have that setting (ConfigError).
    """

    def __init__(self, root: StrPath, create: bool = False, verbose: bool = False,
                 debug: bool = False, clock: Callable[[], float] | None = None,
                 codec: PayloadCodec | None = None, umask: str | int | None = None) -> None:
        if debug or verbose:
            _log_to_stderr(debug)
        if not isinstance(root, (str, os.PathLike)) or not os.fspath(root):
            raise InvalidInputError("root must be a directory path, not {!r}".format(root), "invalid")
        if not fs.valid_umask(umask):
            raise InvalidInputError('umask must be an octal string such as "007" or an integer '
                                    "0..511 (0o777), not {!r}".format(umask), "invalid")
        self.root = os.fspath(root)
        self.create = create
        self.clock = clock or time.time
        self.codec = codec
        self._codec = None if codec is None else Codec(codec)
        self.default_settings = dict(settings.DEFAULTS)
        self.global_settings: Settings = {}
        #: The root's ``umask`` setting as an int (None: the process's umask applies).
        self.umask = fs.parse_umask(umask)
        self._queues: dict[str, Queue] = {}        # name -> Queue, for the queues this broker has used
        config = os.path.join(self.root, settings.CONFIG_NAME)
        if not self._is_initiated(config):
            if not create:
                if not os.path.isdir(self.root):
                    raise RootError("root folder {} is missing".format(self.root), "missing")
                raise RootError("root folder {} is not initiated (no {})".format(
                    self.root, settings.CONFIG_NAME), "uninitiated")
            log.info("Initiating root folder %s", self.root)
            self.create_folder(self.root)
            text = admin.ROOT_CONFIG_TEXT
            if self.umask is not None:
                text += "umask: '{:03o}'\n".format(self.umask)
            admin.write_new_config(config, text, self.umask)
        self.global_settings = dict(self.default_settings, **self._read_config(config))
        root_umask = fs.parse_umask(self.global_settings["umask"])
        if umask is not None and root_umask != self.umask:
            raise ConfigError("root {} already exists with umask {}, not {}; change its "
                              "ddmq.yaml to change it (existing files keep their modes)".format(
                                  self.root, _octal(root_umask), _octal(self.umask)), "config")
        self.umask = root_umask
        if clock is None and self.global_settings["clock"] == "filesystem":
            self.clock = FilesystemClock(self.root, self.umask)

    def __repr__(self) -> str:
        shown = ("create", "default_settings", "global_settings", "queue_settings", "root")
        return "\n".join("{} = {}".format(key, getattr(self, key)) for key in shown)

    @property
    def queue_settings(self) -> dict[str, Settings]:
        """The merged settings of each queue this broker has loaded, by queue name."""
        return {name: queue.settings for name, queue in self._queues.items()
                if not queue.stale}

    # Settings

    def get_config_file(self, queue: str = "") -> Settings:
        """Return the settings in the config file of ``queue``, or of the root if empty."""
        return self._read_config(self._config_path(queue))

    def get_settings(self, queue: str) -> Settings:
        """Return the settings of ``queue``: defaults, root and queue files merged (cached).

        A missing queue is created if the broker was made with ``create=True``,
        else QueueNotFoundError is raised.
        """
        return self._queue(queue).settings

    def update_settings_file(self, queue: str = "", package: Settings | None = None) -> None:
        """Update the config file of ``queue`` (the root's if empty) with the dict ``package``."""
        if package is None:
            package = {}  # the original's default: rewrite the file unchanged
        if not isinstance(package, dict) or not all(isinstance(key, str) for key in package):
            raise InvalidInputError("package must be a dict of settings with names as keys",
                                    "invalid")
        if queue and package.get("dead_letter") == queue:
            raise InvalidInputError("queue {!r} cannot be its own dead-letter queue".format(queue),
                                    "invalid")
        path = self._config_path(queue)
        current = self._read_config(path)
        current.update(package)
        umask = current.get("umask", self.global_settings["umask"]) if queue else \
            current.get("umask")
        settings.check(current, path)
        try:
            settings.write(path, current, fs.parse_umask(umask))
        except OSError as exc:
            raise protocol.storage_error(exc, "write", path,
                                         [(os.path.dirname(path), "write")]) from None
        # Merged again at next use; the scanners and cleaning state stay.
        if not queue:
            self.global_settings = dict(self.default_settings, **current)
        for name, loaded in self._queues.items():
            if not queue or name == queue:
                loaded.stale = True

    # Queues

    def check_dir(self, path: str, only_conf: bool = False) -> bool:
        """Return True if ``path`` holds a ddmq.yaml (and, unless ``only_conf``, a work folder)."""
        return admin.is_queue_dir(path, only_conf)

    def create_folder(self, path: str) -> None:
        """Create the folder ``path`` and its parents (an existing folder is fine).

        New folders get the root's ``umask`` setting.
        """
        admin.make_folder(path, self.umask)

    def create_queue(self, queue: str) -> bool:
        """Create ``queue`` (an existing queue is left as it is); return True."""
        queue_dir = self._path(queue)
        log.info("Creating queue %s", queue)
        admin.create_queue(queue_dir, self.umask)
        return True

    def delete_queue(self, queue: str) -> bool:
        """Delete ``queue`` with all its messages and its topic subscriptions; return True.

        Refuses, changing nothing, if the queue folder holds files ddmq did
        not write there.
        """
        from . import topics  # not at the top: start-up time of plain commands

        queue_dir = self._existing_queue_dir(queue)
        log.info("Deleting queue %s", queue)
        admin.delete_queue(queue, queue_dir, self.root)
        self._forget(queue)
        for topic in topics.forget_queue(self.root, queue):
            log.info("Unsubscribed deleted queue %s from topic %s", queue, topic)
        return True

    def purge_queue(self, queue: str) -> list[int]:
        """Delete every message of ``queue``; return [waiting deleted, claimed deleted].

        Delayed messages are deleted too and counted as waiting.
        """
        queue_dir = self._existing_queue_dir(queue)
        log.info("Purging queue %s", queue)
        return admin.purge_queue(queue_dir)

    def list_queues(self) -> list[str]:
        """Return the sorted names of the queues in the root."""
        return admin.list_queues(self.root)

    def get_message_list(self, queue: str) -> tuple[list[str], list[str]]:
        """Return two lists: the waiting messages in serving order, and the claimed ones."""
        queue_dir = self._existing_queue_dir(queue)
        waiting = sorted(filter(None, map(names.ready_sort_key, _listdir(queue_dir))))
        work = _listdir(os.path.join(queue_dir, protocol.WORK_DIR))
        return [key[-1] for key in waiting], sorted(n for n in work if names.WORK_NAME.match(n))

    def get_delayed_list(self, queue: str) -> list[str]:
        """Return the delayed messages of ``queue`` (file names in ``delayed/``), soonest due first.

        Names whose due time has passed are waiting to be promoted by the
        next consume or clean.
        """
        delayed_dir = os.path.join(self._existing_queue_dir(queue), protocol.DELAYED_DIR)
        return sorted(name for name in _listdir(delayed_dir) if names.DELAYED_NAME.match(name))

    if TYPE_CHECKING:  # the overloads: one queue's figures, or every queue's by name
        @overload
        def stats(self, queue: str, since: float | None = None) -> Figures: ...

        @overload
        def stats(self, queue: None = None,
                  since: float | None = None) -> dict[str, Figures]: ...

    def stats(self, queue: str | None = None,
              since: float | None = None) -> Figures | dict[str, Figures]:
        """Return the figures of ``queue`` as a dict, or of every queue as {name: dict}.

        Counted from directory listings and file names only, never reading
        a message file (see :mod:`ddmq.stats` for each figure): waiting,
        in_flight, expired, work, delayed, quarantined, dead_lettered,
        oldest_waiting_age, oldest_claim_age, oldest_lease_expiry.  With
        ``since`` (an epoch time) also ``published_since``: the messages
        published after it that are still in the queue, for rates.
        """
        if queue is None:
            return {name: self._stats(name, since) for name in self.list_queues()}
        return self._stats(queue, since)

    def _stats(self, queue: str, since: float | None = None) -> Figures:
        from . import stats  # not at the top: start-up time of plain commands

        q = self._queue(queue)
        dead = q.settings.get("dead_letter")
        dead_dir = self._path(dead) if isinstance(dead, str) and names.QUEUE_NAME.match(dead) \
            else None
        return stats.queue_stats(q.dir, q.settings, self.clock(), dead_dir, since)

    def get_queue_number(self) -> str:
        """Return a new queue number: the epoch time without its decimal point, 19 digits."""
        return names.new_queue_number()

    # Messages

    def publish(self, queue: str, msg_text: object = None, priority: int | None = None,
                clean: bool = True, requeue: bool | None = None, requeue_prio: int | None = None,
                timeout: float | None = None, requeue_counter: int = 0,
                requeue_limit: int | None = None, skip_cleaning: bool | None = None,
                message: object = None, dead_letter: str | None = None,
                delay: float | None = None, not_before: float | None = None) -> Message:
        """Publish a message to ``queue`` and return a copy of it.

        ``priority`` defaults to the queue's setting; ``requeue``,
        ``requeue_prio``, ``timeout`` and ``requeue_limit`` left as None follow
        the queue's settings when the message is nacked or expires.
        ``message`` is accepted as another name for ``msg_text``.  The
        payload is a JSON value or bytes (stored as base64, returned as
        bytes), or whatever the broker's codec encodes.  ``dead_letter`` is
        the message's own dead-letter queue (default: the queue's
        ``dead_letter`` setting).  ``delay`` (seconds) or ``not_before``
        (epoch seconds; not both) keep the message invisible to consumers
        until then: it waits in the queue's ``delayed/`` folder and its
        ``filename`` is ``<queue>/delayed/<name>``.
        """
        text = msg_text if msg_text is not None else message
        return self._publish(queue, [text], _wants_cleaning(clean, skip_cleaning),
                             priority=priority, requeue=requeue, requeue_prio=requeue_prio,
                             timeout=timeout, requeue_counter=requeue_counter,
                             requeue_limit=requeue_limit, dead_letter=dead_letter, delay=delay,
                             not_before=not_before)[0]

    def publish_many(self, queue: str, texts: Iterable[object], priority: int | None = None,
                     clean: bool = True, requeue: bool | None = None,
                     requeue_prio: int | None = None, timeout: float | None = None,
                     requeue_counter: int = 0, requeue_limit: int | None = None,
                     skip_cleaning: bool | None = None, dead_letter: str | None = None,
                     delay: float | None = None, not_before: float | None = None
                     ) -> list[Message]:
        """Publish every text of the iterable ``texts`` to ``queue``, in order; return the messages.

        Takes the options of :meth:`publish`, which apply to every message;
        the queue, the options and the cleaning interval are checked once for
        the whole batch, and every payload is encoded before the first file
        is written (one that cannot be stored publishes none).  Each message
        is then published on its own, as by :meth:`publish` (a batch is not
        atomic): if writing one fails, the ones before it stay published and
        the error is raised.
        """
        if isinstance(texts, (str, bytes)):
            raise InvalidInputError("texts must be an iterable of message texts, not one text",
                                    "invalid")
        return self._publish(queue, list(texts), _wants_cleaning(clean, skip_cleaning),
                             priority=priority, requeue=requeue, requeue_prio=requeue_prio,
                             timeout=timeout, requeue_counter=requeue_counter,
                             requeue_limit=requeue_limit, dead_letter=dead_letter, delay=delay,
                             not_before=not_before)

    def _publish(self, queue: str, texts: list[object], clean: bool,
                 **options: Any) -> list[Message]:
        """Publish each of ``texts`` with the message fields ``options`` (see ddmq.publishing)."""
        return publishing.publish(self._queue(queue), texts, options, self.clock(), self._codec,
                                  self._clean_before if clean else None)

    # Topics (see ddmq.topics)

    def subscribe(self, topic: str, queue: str) -> bool:
        """Subscribe ``queue`` to ``topic``: it gets a copy of every later publish to it.

        A missing queue is created if the broker was made with
        ``create=True``, else QueueNotFoundError is raised.  Returns True, or
        False if the queue was subscribed already.
        """
        from . import topics  # not at the top: start-up time of plain commands

        names.check_topic_name(topic)
        self._queue(queue)
        return topics.subscribe(self.root, topic, queue, self.umask)

    def unsubscribe(self, topic: str, queue: str) -> bool:
        """Unsubscribe ``queue`` from ``topic``; return True, or False if it was not subscribed.

        The queue keeps the messages it has; later publishes skip it.
        """
        from . import topics

        return topics.unsubscribe(self.root, topic, queue)

    def subscriptions(self, topic: str | None = None) -> dict[str, list[str]]:
        """Return ``{topic: [queue, ...]}``, sorted: every topic's subscribers, or ``topic``'s."""
        from . import topics

        chosen = topics.topics(self.root) if topic is None else [topic]
        return {name: topics.subscribers(self.root, name) for name in chosen}

    def publish_topic(self, topic: str, msg_text: object = None, priority: int | None = None,
                      clean: bool = True, requeue: bool | None = None,
                      requeue_prio: int | None = None, timeout: float | None = None,
                      requeue_counter: int = 0, requeue_limit: int | None = None,
                      skip_cleaning: bool | None = None, message: object = None,
                      dead_letter: str | None = None) -> list[Message]:
        """Publish a message to every queue subscribed to ``topic``; return the messages.

        Takes the options of :meth:`publish`; each queue gets one copy with
        its own id and file name (one message object per queue, in queue
        name order; an empty list if nobody is subscribed).  ``priority``
        defaults to each queue's setting.  The queues are those subscribed
        when the call lists the topic; each is checked (or created, with
        ``create=True``) before anything is written.  The file is written
        once and hard-linked into the queues (copied where the filesystem
        refuses links).  Not atomic across queues: if writing one copy
        fails, the copies before it stay published and the error is raised.
        """
        from . import topics

        names.check_topic_name(topic)
        text = msg_text if msg_text is not None else message
        options = dict(priority=priority, requeue=requeue, requeue_prio=requeue_prio,
                       timeout=timeout, requeue_counter=requeue_counter,
                       requeue_limit=requeue_limit, dead_letter=dead_letter)
        return topics.publish(self.root, topic, "" if text is None else text, options,
                              self._queue, self.clock(), self._codec,
                              self._clean_before if _wants_cleaning(clean, skip_cleaning) else None)

    if TYPE_CHECKING:  # the overloads: what n=1 returns, for type checkers
        @overload
        def consume(self, queue: str, n: Literal[1] = 1, clean: bool = True,
                    skip_cleaning: bool | None = None, wait: float | None = None,
                    stop: StopEvent | None = None) -> Message | None: ...

        @overload
        def consume(self, queue: str, n: int, clean: bool = True,
                    skip_cleaning: bool | None = None, wait: float | None = None,
                    stop: StopEvent | None = None) -> Message | list[Message] | None: ...

    def consume(self, queue: str, n: int = 1, clean: bool = True,
                skip_cleaning: bool | None = None, wait: float | None = None,
                stop: StopEvent | None = None) -> Message | list[Message] | None:
        """Consume up to ``n`` messages from ``queue``, in serving order.

        Each is claimed into the work folder with its expiry in its name
        (``message.filename``).  Returns one message or None if ``n`` is 1,
        else a list (possibly empty).  With ``wait`` (seconds, or
        :data:`ddmq.FOREVER`) an empty queue is watched until a message can
        be claimed or ``wait`` seconds have passed (see :mod:`ddmq.wait`);
        the messages then claimable, at least one and at most ``n``, are
        returned at once.  ``stop`` (a ``threading.Event``) ends a wait
        early, returning nothing, within 0.1 s of being set.
        With a codec, a payload it cannot decode raises CodecError; that
        message stays claimed (``exc.filename``; it expires and is requeued
        as any other), and the messages claimed before it in this call are
        in ``exc.messages``.
        """
        q = self._queue(queue)
        if not publishing.is_int(n) or n < 1:
            raise InvalidInputError("n must be an integer >= 1, not {!r}".format(n), "invalid")
        wait = waiting.check_wait(wait)
        cleaning = _wants_cleaning(clean, skip_cleaning)
        if cleaning:
            self._clean_before(q)
        self._promote_due(q)
        consumed = self._claim(q, n)
        if not consumed and wait and not (stop is not None and stop.is_set()):
            def attempt() -> list[Message]:
                if cleaning:
                    self._clean_before(q)  # a long wait still requeues expired messages
                self._promote_due(q)       # and still serves delayed messages once due
                return self._claim(q, n)

            consumed = waiting.wait_for(attempt, wait, q.dir, q.settings["poll_interval"], stop)
        if consumed:
            now = self.clock()
            for msg in consumed:
                history.delivered(msg, now)  # in memory only: a claim writes no file
        log.debug("Consumed %d message(s) from %s", len(consumed), queue)
        if n == 1:
            return consumed[0] if consumed else None
        return consumed

    def _promote_due(self, q: Queue, force: bool = False) -> int:
        """Make the due delayed messages of the Queue ``q`` waiting (see :mod:`ddmq.delayed`)."""
        return delayed.promote_due(q, self.clock(), TAKE_OVER_GRACE, force)

    def messages(self, queue: str, wait: float | None = None, max_messages: int | None = None,
                 stop: StopEvent | None = None) -> Iterator[Message]:
        """Return an iterator over messages consumed from ``queue`` one at a time; the caller acks.

        Each step is ``consume(queue, wait=wait, stop=stop)``; the iteration
        ends when that finds nothing (with ``wait`` None, as soon as the
        queue is empty; with ``ddmq.FOREVER``, never, unless ``stop`` is set)
        or after ``max_messages``.  See :mod:`ddmq.consuming`.
        """
        from . import consuming  # not at the top: start-up time of plain commands

        return consuming.messages(self, queue, wait, max_messages, stop)

    def processing(self, queue: str, wait: float | None = None, heartbeat: bool = True,
                   stop: StopEvent | None = None) -> Processing:
        """Return a context manager giving one consumed message (or None if none came in time).

        The message is acked when the ``with`` block ends normally and
        nacked when it raises (the exception goes on); meanwhile, with
        ``heartbeat``, its lease is renewed from a background thread.  A
        message lost despite that makes a normal end raise
        :class:`~ddmq.errors.LeaseLostError`.  See :mod:`ddmq.consuming`.
        """
        from . import consuming

        return consuming.Processing(self, queue, wait, heartbeat, stop)

    def work(self, queue: str, func: Handler, jobs: int = 1,
             max_messages: int | None = None, idle_exit: float | None = None,
             heartbeat: bool = True, stop: StopEvent | None = None) -> WorkCounts:
        """Run ``func(msg)`` for each message of ``queue`` in ``jobs`` threads; return the counts.

        A message is acked when ``func`` returns, nacked when it raises, its
        lease renewed meanwhile (``heartbeat``).  Stops after
        ``max_messages`` messages, or once nothing could be claimed for
        ``idle_exit`` seconds while nothing ran, or when ``stop`` (an
        Event) is set; without any of them it waits forever.  Returns
        ``{"acked": n, "nacked": m, "lost": k}``.  See :mod:`ddmq.consuming`.
        """
        from . import consuming

        return consuming.work(self, queue, func, jobs, max_messages, idle_exit, heartbeat, stop)

    def _claim(self, q: Queue, n: int) -> list[Message]:
        """Claim and read up to ``n`` waiting messages of the Queue ``q``; return them."""
        conf, scanner = q.settings, q.scanner
        consumed: list[Message] = []
        lost: set[str] = set()
        relisted = 0
        while len(consumed) < n:
            try:
                with q.lock:
                    ready = scanner.next_candidate()
            except FileNotFoundError:
                raise QueueNotFoundError("queue folder {} disappeared".format(q.dir),
                                         "no_queue") from None
            except OSError as exc:
                raise protocol.storage_error(exc, "list", q.dir, [(q.dir, "read")]) from None
            if ready is None:
                break
            if ready in lost:
                # RACE: a rescan lists a name we lost: names are never reused,
                # so a network filesystem is still showing a moved file.  Skip
                # it, and stop once such ghosts are all a rescan finds.
                relisted += 1
                if relisted > len(lost):
                    break
                continue
            work = protocol.claim(q.dir, ready, self.clock() + conf["message_timeout"],
                                  conf["fsync"])
            if work is None:
                lost.add(ready)
                with q.lock:
                    scanner.lost()  # RACE: another consumer claimed it first
                continue
            msg = self._read_owned(q, work)
            if msg is None:
                continue
            if msg.timeout is not None and msg.timeout != conf["message_timeout"]:
                work = protocol.take_over(q.dir, work, self.clock() + msg.timeout,
                                          conf["fsync"])
                if work is None:
                    continue  # RACE: our default lease had already expired and was taken
            msg.filename = work
            if self._codec is not None:
                self._decode(msg, consumed)  # the message stays claimed if it fails
            consumed.append(msg)
        if lost and not consumed:
            # Every try lost: other consumers, or our work/ folder is gone
            # (then every rename fails, and a waiting consume must not spin).
            self._check_queue_folder(q)
        return consumed

    def _decode(self, msg: Message, before: Iterable[Message]) -> None:
        """Apply the codec to ``msg``; a CodecError names it and carries the ``before`` messages."""
        if self._codec is None:
            return
        try:
            self._codec.decode(msg)
        except CodecError as exc:
            exc.filename, exc.messages = msg.filename, list(before)
            raise

    if TYPE_CHECKING:  # the overloads: what n=1 returns, for type checkers
        @overload
        def pop(self, queue: str, n: Literal[1] = 1, clean: bool = True,
                skip_cleaning: bool | None = None, wait: float | None = None) -> Message | None: ...

        @overload
        def pop(self, queue: str, n: int, clean: bool = True, skip_cleaning: bool | None = None,
                wait: float | None = None) -> Message | list[Message] | None: ...

    def pop(self, queue: str, n: int = 1, clean: bool = True, skip_cleaning: bool | None = None,
            wait: float | None = None) -> Message | list[Message] | None:
        """Consume up to ``n`` messages and delete them at once: at-most-once delivery.

        Takes the arguments of :meth:`consume` and returns the same (one
        message or None if ``n`` is 1, else a list), but each message is
        deleted from ``work/`` right after its claim, so it is never
        delivered again: a process that dies after the claim, before it
        has done its work, loses the message.  That is the contract; use
        :meth:`consume` and :meth:`ack` for at-least-once.
        """
        try:
            popped = self.consume(queue, n, clean, skip_cleaning, wait)
        except CodecError as exc:
            # The messages popped before the failing one are delivered with
            # the error; the failing one stays claimed (see consume).
            exc.messages = self._delete_popped(queue, exc.messages)
            raise
        if isinstance(popped, list):
            return self._delete_popped(queue, popped)
        kept = self._delete_popped(queue, [popped]) if popped else []
        return kept[0] if kept else None

    def _delete_popped(self, queue: str, msgs: Iterable[Message]) -> list[Message]:
        q = self._queue(queue)
        kept = []
        for msg in msgs:
            assert msg.filename is not None, "consume names the claim of each message"
            if protocol.remove(q.work_dir, msg.filename, q.settings["fsync"]):
                kept.append(msg)
            else:
                # RACE: its lease expired already and another process took it:
                # it is theirs to deliver, so not ours (at most once).
                log.warning("Not popped: %s/work/%s was taken by another process",
                            queue, msg.filename)
        return kept

    if TYPE_CHECKING:  # the overloads: what n=1 returns, for type checkers
        @overload
        def peek(self, queue: str, n: Literal[1] = 1) -> Message | None: ...

        @overload
        def peek(self, queue: str, n: int) -> Message | list[Message] | None: ...

    def peek(self, queue: str, n: int = 1) -> Message | list[Message] | None:
        """Return up to ``n`` waiting messages of ``queue`` in serving order, without claiming them.

        Returns one message or None if ``n`` is 1, else a list (possibly
        empty), as :meth:`consume` does; each ``filename`` is the waiting
        file's name.  Nothing on disk changes.  A message a consumer takes
        meanwhile is skipped.  A file that is not a valid message is
        reported, never moved: it is returned as a stand-in message with
        ``corrupt`` True and ``message`` None (see :mod:`ddmq.peek`), and a
        warning is logged.
        """
        from . import peek as peeking  # not at the top: start-up time of plain commands

        q = self._queue(queue)
        if not publishing.is_int(n) or n < 1:
            raise InvalidInputError("n must be an integer >= 1, not {!r}".format(n), "invalid")
        try:
            peeked = peeking.peek(q.dir, queue, n)
        except FileNotFoundError:
            raise QueueNotFoundError("queue folder {} disappeared".format(q.dir),
                                     "no_queue") from None
        except OSError as exc:
            raise protocol.storage_error(exc, "list", q.dir) from None
        for index, msg in enumerate(peeked):
            if msg.corrupt:
                log.warning("Message file %s/%s is corrupt (left in place)", queue, msg.filename)
            elif self._codec is not None:
                self._decode(msg, peeked[:index])
        if n == 1:
            return peeked[0] if peeked else None
        return peeked

    def ack(self, queue: str | Message, msg_files: WorkNames | None = None,
            requeue: bool | None = None, clean: bool = True,
            skip_cleaning: bool | None = None) -> list[str]:
        """Acknowledge consumed messages: delete them (or requeue them if ``requeue`` is True).

        ``queue`` is a queue name with ``msg_files`` one work-file name or a
        list of them, or a consumed message object.  Returns the names acked;
        a message whose lease expired and was taken by another process is
        not among them.
        """
        queue, msg_files = self._work_files(queue, msg_files)
        q = self._queue(queue)
        if _wants_cleaning(clean, skip_cleaning):
            self._clean_before(q)
        acked = []
        for work in msg_files:
            if requeue:
                done = self._settle(q, work, requeue=True)
            else:
                done = protocol.remove(q.work_dir, work, q.settings["fsync"])
            if done:
                acked.append(work)
            else:
                self._check_queue_folder(q)
                log.warning("Not acked: %s/%s is gone; its lease expired and another process "
                            "took it, so it will be delivered again", queue, work)
        return acked

    def nack(self, queue: str | Message, msg_files: WorkNames | None = None,
             requeue: bool | None = None, clean: bool = True,
             skip_cleaning: bool | None = None, reason: str | None = None,
             delay: float | None = None) -> list[str]:
        """Negatively acknowledge consumed messages: requeue or delete them.

        ``requeue`` True forces a requeue, False a delete; None follows the
        message's and the queue's ``requeue`` and ``requeue_limit``.  Takes the
        same message arguments as :meth:`ack`; returns the names nacked.
        ``reason`` (text, cut to 4096 characters) is recorded in each
        message as its ``last_nack_reason``.  A requeued message is not
        served again for ``delay`` seconds (default: the queue's
        ``requeue_delay`` with its backoff, see :func:`ddmq.settle.retry_delay`).
        """
        publishing.check_delay(delay, self.clock())
        try:
            reason = history.check_reason(reason)
        except TypeError as exc:
            raise InvalidInputError(str(exc), "invalid") from None
        queue, msg_files = self._work_files(queue, msg_files)
        q = self._queue(queue)
        if _wants_cleaning(clean, skip_cleaning):
            self._clean_before(q)
        nacked = []
        for work in msg_files:
            if self._settle(q, work, requeue, reason, delay):
                nacked.append(work)
            else:
                self._check_queue_folder(q)
                log.warning("Not nacked: %s/%s is gone; its lease expired and another process "
                            "took it", queue, work)
        return nacked

    def touch(self, queue: str | Message, msg_file: str | None = None,
              timeout: float | None = None) -> str:
        """Renew the lease of a consumed message this process holds; return its new work name.

        ``queue`` and ``msg_file`` name the message as for :meth:`ack`, or
        ``queue`` is the consumed message object, whose ``filename`` then
        follows the new name.  The new lease expires ``timeout`` seconds from
        now: by default the message's own timeout, else the queue's
        ``message_timeout`` (given a bare name, the message file is read to
        learn its timeout).  The renewal is one rename
        to a fresh lease, so if a cleaner or another process takes the
        message at the same moment exactly one of the two wins; the loser
        here gets :class:`~ddmq.errors.LeaseLostError` (a
        MessageNotFoundError), and the message will be, or has been,
        delivered again.
        """
        msg = queue if isinstance(queue, message) else None
        queue, msg_files = self._work_files(queue, msg_file)
        if len(msg_files) != 1:
            raise InvalidInputError("touch renews one message at a time", "invalid")
        publishing.check_optional_seconds("timeout", timeout)
        q = self._queue(queue)
        if timeout is None:
            own = msg.timeout if msg is not None else self._own_timeout(q, msg_files[0])
            timeout = q.settings["message_timeout"] if own is None else own
        new = protocol.take_over(q.dir, msg_files[0], self.clock() + timeout,
                                 q.settings["fsync"])
        if new is None:
            self._check_queue_folder(q)
            raise LeaseLostError("cannot renew the lease of {}/work/{}: it is gone (acked, or "
                                 "its lease expired and another process took it)".format(
                                     queue, msg_files[0]), "lost")
        if msg is not None:
            msg.filename = new
        return new

    def release(self, queue: str | Message, msg_file: str | None = None) -> bool:
        """Give a consumed message back unchanged, to be served again at once; return True.

        For work that was claimed but never done (a worker stopping before
        it started the command): one rename back to the message's waiting
        name, so it keeps its place in the queue, its file, its
        ``requeue_counter`` and its history, as if never claimed.  Takes the
        message arguments of :meth:`touch`.  Returns False if its lease had
        expired and another process took it.
        """
        queue, works = self._work_files(queue, msg_file)
        if len(works) != 1:
            raise InvalidInputError("release gives back one message at a time", "invalid")
        q = self._queue(queue)
        if not protocol.release(q.dir, works[0], q.settings["fsync"]):
            self._check_queue_folder(q)
            return False
        q.offer(_ready_of(works[0]))
        return True

    def _own_timeout(self, q: Queue, work: str) -> float | None:
        """Return the timeout field of the claimed message ``work`` (None: unset, unreadable, gone)."""
        try:
            found = from_file(protocol.read_claimed(q.dir, work))
        except FileNotFoundError:
            return None  # gone: the rename that follows says so
        return found.timeout if found is not None else None

    def requeue_message(self, path: StrPath | Message | None,
                        msg: Message | None = None) -> bool:
        """Requeue the consumed message at ``path`` (a work-file path or message); return True."""
        queue, directory, name = self._resolve(msg if path is None else path)
        if directory != protocol.WORK_DIR:
            raise InvalidInputError("{} is not a consumed message".format(name), "invalid")
        if not self._settle(self._queue(queue), name, requeue=True):
            raise MessageNotFoundError("message {}/work/{} is gone".format(queue, name), "not_found")
        return True

    def clean(self, queue: str, force: bool = False) -> bool:
        """Requeue or delete the expired messages of ``queue``'s work folder.

        Runs at most once per 60 s per queue (across processes, through the
        queue's ``cleaned`` stamp) unless ``force``.  Returns True if it
        cleaned, False if it was too soon.
        """
        return self._clean(self._queue(queue), force)

    def _clean(self, q: Queue, force: bool = False) -> bool:
        return housekeeping.clean(self, q, force)

    def _clean_before(self, q: Queue) -> None:
        """Clean ``queue`` before another operation, which a failed cleaning must not block.

        On a full or read-only disk the "cleaned" stamp or a requeue cannot be
        written; the expired messages stay claimed and are cleaned later.
        """
        if self.clock() - q.last_cleaned < housekeeping.CLEAN_INTERVAL:
            return  # the common case: checked within the interval, nothing to do
        try:
            self._clean(q)
        except StorageError as exc:
            log.warning("Could not clean queue %s: %s", q.name, exc)

    def clean_all(self) -> None:
        """Clean every queue in the root."""
        for queue in self.list_queues():
            self.clean(queue)

    def get_message(self, path: StrPath | Message) -> Message:
        """Return the message at ``path``: a path to a waiting or consumed message file."""
        queue, directory, name = self._resolve(path)
        full = os.path.join(self.root, queue, directory, name)
        try:
            with open(full, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            if protocol.lost_race(exc):
                raise MessageNotFoundError("no message {}".format(full), "not_found") from None
            raise protocol.storage_error(exc, "read", full, [(full, "read")]) from None
        msg = from_file(data)
        if msg is None:
            raise DdmqError("message file {} is corrupt".format(full), "corrupt")
        parsed = names.parse_work_name(name)
        locate(msg, queue, parsed[1] if parsed else name)
        msg.filename = name
        if self._codec is not None:
            self._decode(msg, [])
        return msg

    def delete_message(self, path: StrPath | Message) -> bool:
        """Delete the message at ``path`` (a path or a message object); return True."""
        queue, directory, name = self._resolve(path)
        self._existing_queue_dir(queue)  # never create a queue just to find it empty
        conf = self._queue(queue).settings
        if not protocol.remove(os.path.join(self.root, queue, directory), name, conf["fsync"]):
            raise MessageNotFoundError("no message {}/{}".format(queue, name), "not_found")
        return True

    def version(self) -> str:
        """Return the ddmq version."""
        return __version__

    # Helpers

    def _settle(self, q: Queue, work: str, requeue: bool | None, reason: str | None = None,
                delay: float | None = None) -> bool:
        """Take over the claimed message ``work`` of the Queue ``q`` and settle it (see
        :mod:`ddmq.settling`); return False if another process took it first."""
        return settling.settle(self, q, work, requeue, reason, delay)

    def redrive(self, dead_queue: str, to: str | None = None,
                n: int | None = None) -> list[Message]:
        """Send the waiting messages of ``dead_queue`` back to where they came from; return them.

        Each goes to the queue it was dead-lettered from (or to ``to``),
        with its ``requeue_counter`` reset to 0; at most ``n`` messages
        (default: those waiting when the call starts).  Each move is a
        claim followed by a publish into the target and the removal of the
        claim, so concurrent consumers of the dead-letter queue never get a
        message that is redriven, and a crash leaves a copy in both queues,
        never in neither.  A message with no known source (and no ``to``)
        stays in ``dead_queue``.  See :mod:`ddmq.deadletter`.
        """
        from . import deadletter  # not at the top: start-up time of plain commands

        return deadletter.redrive(self, dead_queue, to, n)

    def _read_owned(self, q: Queue, work: str) -> Message | None:
        """Read a message we own; quarantine it and return None if it is corrupt or gone."""
        try:
            data = protocol.read_claimed(q.dir, work)
        except FileNotFoundError:
            return None  # RACE: a stale-cache ack elsewhere removed it; it is settled
        except PermissionDeniedError as exc:
            if not protocol.release(q.dir, work, q.settings["fsync"]):  # unread, it waits again
                raise
            ready = q.dir + "/" + _ready_of(work)
            raise fs.permission_error(exc, "read (left waiting)", ready,
                                      [(ready, "read")]) from None
        msg = from_file(data)
        if msg is None:
            where = protocol.quarantine(q.dir, work, q.settings["fsync"], q.umask)
            log.warning("Message file %s/work/%s is corrupt; moved to %s", q.name, work, where)
            return None
        return locate(msg, q.name, _ready_of(work))

    def _check_queue_folder(self, q: Queue) -> None:
        """Raise QueueNotFoundError if the folder of the Queue ``q`` (or the root) was removed."""
        if not admin.is_kind(q.work_dir, stat.S_ISDIR):  # ESTALE retried: not "gone"
            raise QueueNotFoundError("queue folder {} disappeared".format(q.dir), "no_queue")

    def _work_files(self, queue: str | Message,
                    msg_files: WorkNames | None) -> tuple[str, list[str]]:
        """Return (queue, [work names]) from ack/nack arguments, validating every name first."""
        if isinstance(queue, message):
            given, msg_files = queue.queue, queue.filename
        else:
            given = queue
        name = names.check_queue_name(given)
        if msg_files is None or msg_files == []:
            raise InvalidInputError("no message file names given for queue {!r}".format(name),
                                    "invalid")
        works = list(msg_files) if isinstance(msg_files, (list, tuple)) else [msg_files]
        for work in works:
            if not isinstance(work, str) or not names.WORK_NAME.match(work):
                raise InvalidInputError(
                    "{!r} is not the name of a consumed message in queue {!r} (expected "
                    "<expiry>.<priority>.<number>.ddmq<id>, no folders)".format(work, name),
                    "invalid")
        return name, works

    def _resolve(self, path: StrPath | Message | None) -> tuple[str, str, str]:
        """Return (queue, '' or 'work', name) for a message path or object inside this root."""
        if isinstance(path, message):
            if not path.filename or not path.queue:
                raise InvalidInputError("message has no queue or file name", "invalid")
            name = os.path.basename(path.filename)
            folder = os.path.basename(os.path.dirname(path.filename))
            if folder != protocol.DELAYED_DIR:
                folder = protocol.WORK_DIR if names.WORK_NAME.match(name) else ""
            path = os.path.join(path.queue, folder, name)
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidInputError("expected a message path, not {!r}".format(path), "invalid")
        path = os.fspath(path)
        root = os.path.realpath(self.root)
        tries = [path] if os.path.isabs(path) else [os.path.join(self.root, path), path]
        for candidate in tries:
            name = os.path.basename(candidate)
            parent = os.path.realpath(os.path.dirname(candidate))
            if names.WORK_NAME.match(name) and os.path.basename(parent) == protocol.WORK_DIR:
                queue_dir, directory = os.path.dirname(parent), protocol.WORK_DIR
            elif (names.DELAYED_NAME.match(name)
                  and os.path.basename(parent) == protocol.DELAYED_DIR):
                queue_dir, directory = os.path.dirname(parent), protocol.DELAYED_DIR
            elif names.READY_NAME.match(name):
                queue_dir, directory = parent, ""
            else:
                continue
            queue = os.path.basename(queue_dir)
            if os.path.dirname(queue_dir) == root and names.QUEUE_NAME.match(queue):
                return queue, directory, name
        raise InvalidInputError("{!r} is not a message file of a queue in {}".format(
            path, self.root), "invalid")

    def _path(self, queue: str) -> str:
        """Return the folder of ``queue``, checking the name."""
        return os.path.join(self.root, names.check_queue_name(queue))

    def _queue(self, name: str) -> Queue:
        """Return the Queue object of ``name`` with its settings merged (cached).

        A missing queue is created if the broker was made with ``create=True``,
        else QueueNotFoundError is raised.
        """
        try:
            q = self._queues[name]
        except (KeyError, TypeError):
            q = None
        if q is not None and not q.stale:
            return q
        path = self._path(name)
        if not self._is_queue(path):
            if not self.create:
                raise QueueNotFoundError("queue {!r} does not exist in {}".format(
                    name, self.root), "no_queue")
            self.create_queue(name)
        merged = dict(self.global_settings,
                      **self._read_config(os.path.join(path, settings.CONFIG_NAME)))
        merged["cleaned"] = max(merged["cleaned"], settings.read_cleaned(path))
        if q is None:
            # setdefault: two threads that load a queue at once share one Queue.
            q = self._queues.setdefault(name, Queue(self.root, name, merged))
        else:
            q.reload(merged)
        return q

    def _existing_queue_dir(self, queue: str) -> str:
        queue_dir = self._path(queue)
        if not self._is_queue(queue_dir):
            raise QueueNotFoundError("queue {!r} does not exist in {}".format(queue, self.root),
                                     "no_queue")
        return queue_dir

    def _config_path(self, queue: str) -> str:
        if queue:
            return os.path.join(self._path(queue), settings.CONFIG_NAME)
        return os.path.join(self.root, settings.CONFIG_NAME)

    def _read_config(self, path: str) -> Settings:
        try:
            return settings.read(path)
        except FileNotFoundError:
            raise ConfigError("config file {} is missing".format(path), "config") from None

    def _is_initiated(self, config: str) -> bool:
        """Return True if the root's ``config`` file exists; a refused look is an error."""
        try:
            return stat.S_ISREG(protocol.retry_stale(os.stat, config).st_mode)
        except PermissionError as exc:
            raise protocol.storage_error(exc, "open root", self.root, [(config, "read")]) from None
        except (OSError, ValueError):
            return False

    def _is_queue(self, path: str) -> bool:
        """Return :meth:`check_dir` of the queue folder ``path``; a refused look is an error."""
        try:
            os.stat(os.path.join(path, settings.CONFIG_NAME))
        except PermissionError as exc:
            raise protocol.storage_error(exc, "open queue", path, [(path, "search")]) from None
        except (OSError, ValueError):
            pass
        return self.check_dir(path)

    def _forget(self, queue: str) -> None:
        self._queues.pop(queue, None)


def _ready_of(work: str) -> str:
    """Return the waiting name inside the name of a claim this process made (so a valid one)."""
    parsed = names.parse_work_name(work)
    return parsed[1] if parsed else work


def _octal(umask: int | None) -> str:
    return "null" if umask is None else "{:03o}".format(umask)


_listdir = protocol.list_folder


_stderr_handler: logging.Handler | None = None


def _log_to_stderr(debug: bool) -> None:
    global _stderr_handler
    import logging

    logger = log.get()
    assert logger is not None, "logging is imported: the ddmq logger exists"
    level = logging.DEBUG if debug else logging.INFO
    if _stderr_handler is None:
        _stderr_handler = logging.StreamHandler(sys.stderr)
        _stderr_handler.setFormatter(logging.Formatter("ddmq %(levelname)s: %(message)s"))
        logger.addHandler(_stderr_handler)
    logger.setLevel(min(level, logger.level or level))
