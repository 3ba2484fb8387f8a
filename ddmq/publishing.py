"""Publishing: check a publish's options once, build each message, write it.

:meth:`ddmq.broker.publish` and :meth:`~ddmq.broker.publish_many` come
here with the queue's :class:`~ddmq.queue.Queue`; :mod:`ddmq.topics` uses
the same checks and the same message builder for the copies of a topic
publish.  The order is the promise of a batch: every option is checked and
every payload encoded before the first file is written (or the queue is
cleaned), so bad input changes nothing; then each message is published on
its own (a batch is not atomic).  Writing a file is
:func:`ddmq.protocol.publish` (or :func:`~ddmq.protocol.delay` for a
message not yet due).
"""

from __future__ import annotations

import math
import numbers
import os

from . import names, protocol
from .errors import CodecError, InvalidInputError
from .log import log
from .message import message, to_file

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Any, Callable, Optional, TypeGuard

    from .message import Codec
    from .queue import Queue

    #: The per-message fields of a publish (priority, timeout, requeue, ...), by name.
    Options = dict[str, Any]
    #: A message, the name of its waiting file and the bytes of that file.
    Prepared = tuple[message, str, bytes]


def is_int(value: object) -> TypeGuard[int]:
    """Return True if ``value`` is an integer and not a bool."""
    # type() first: the ABC check costs ~0.5 us and runs several times per message.
    return type(value) is int or (isinstance(value, numbers.Integral)
                                  and not isinstance(value, bool))


def _is_seconds(value: object) -> TypeGuard[float]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value) >= 0


def check_optional_int(name: str, value: object) -> None:
    """Raise InvalidInputError unless ``value`` is None or an integer >= 0."""
    if value is not None and not (is_int(value) and value >= 0):
        raise InvalidInputError("{} must be an integer >= 0, not {!r}".format(name, value), "invalid")


def check_optional_seconds(name: str, value: object) -> None:
    """Raise InvalidInputError unless ``value`` is None or a number of seconds >= 0."""
    if value is not None and not _is_seconds(value):
        raise InvalidInputError("{} must be a number of seconds >= 0, not {!r}".format(
            name, value), "invalid")


def check_delay(delay: object, now: float, what: str = "delay") -> Optional[float]:
    """Return ``delay`` if it is None or seconds >= 0 ending in a name's range; else raise.

    The error is an InvalidInputError naming ``what``.
    """
    if delay is None:
        return None
    if not _is_seconds(delay):
        raise InvalidInputError("{} must be a number of seconds >= 0, not {!r}".format(
            what, delay), "invalid")
    names.check_due(now + delay, what)
    return delay


def not_before(delay: object, epoch: object, now: float) -> Optional[float]:
    """Return the epoch time before which a new message is not served (None: at once).

    ``delay`` (seconds from ``now``) and ``epoch`` (an epoch time) are the
    two ways to say it; giving both is an error.
    """
    if delay is not None and epoch is not None:
        raise InvalidInputError("give delay or not_before, not both", "invalid")
    if delay is not None:
        seconds = check_delay(delay, now)
        return now + seconds if seconds else None
    if epoch is None:
        return None
    if not _is_seconds(epoch):
        raise InvalidInputError("not_before must be an epoch time in seconds >= 0, not "
                                "{!r}".format(epoch), "invalid")
    names.check_due(epoch, "not_before")
    return epoch


def check_options(queue: str, options: Options) -> None:
    """Raise InvalidInputError if a per-message option of a publish to ``queue`` is bad."""
    for key in ("priority", "requeue_prio", "requeue_limit", "requeue_counter"):
        check_optional_int(key, options[key])
    check_optional_seconds("timeout", options["timeout"])
    dead_letter = options.get("dead_letter")
    if dead_letter is not None:
        names.check_queue_name(dead_letter)
        if dead_letter == queue:
            raise InvalidInputError("queue {!r} cannot be its own dead-letter queue".format(queue),
                                    "invalid")
    if options["requeue"] is not None and not isinstance(options["requeue"], bool):
        raise InvalidInputError("requeue must be True, False or None, not {!r}".format(
            options["requeue"]), "invalid")


# A version 4 uuid: random bits, with the version and variant bits set as uuid4() does.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_id() -> str:
    """Return a new message id: a random uuid4 as 32 hex digits (as uuid.uuid4().hex)."""
    return "{:032x}".format(int.from_bytes(os.urandom(16), "big") & _UUID4_CLEAR | _UUID4_SET)


def new_message(queue: str, payload: object, options: Options, now: float,
                codec: Optional[Codec] = None, topic: Optional[str] = None) -> Prepared:
    """Return a new message, its waiting file name and the bytes of its file.

    ``options`` holds the per-message fields (priority, timeout, ...);
    ``now`` is the time of publication; ``codec`` (a
    :class:`~ddmq.message.Codec`, or None) encodes ``payload``; ``topic``
    is the topic it is published to, if any.
    """
    msg_id = new_id()
    number = names.new_queue_number()
    ready = names.ready_name(options["priority"], number, msg_id)
    msg = message(queue=queue, message=payload, id=msg_id, queue_number=number,
                  filename=queue + "/" + ready, published_at=now, delivery_count=0,
                  **options)
    msg.topic = topic
    if codec is None:
        return msg, ready, to_file(msg)
    msg.message, msg.codec = codec.encode(payload), codec.name
    try:
        data = to_file(msg)
    except InvalidInputError as exc:
        raise CodecError("codec {} returned a value that cannot be stored: {}".format(
            codec.name, exc), "codec") from None
    msg.message = payload  # the caller's copy holds what it published
    return msg, ready, data


def publish(q: Queue, texts: list[object], options: Options, now: float,
            codec: Optional[Codec] = None,
            before_write: Optional[Callable[[Queue], None]] = None) -> list[message]:
    """Publish each of ``texts`` to the queue ``q``, in order; return the messages.

    ``options`` are the message fields of :meth:`ddmq.broker.publish`
    (``delay`` and ``not_before`` among them); a ``priority`` of None takes
    the queue's.  ``before_write(q)`` (the broker's cleaning) runs once
    every message is built, before the first file is written.
    """
    options = dict(options)
    if options["priority"] is None:
        options["priority"] = q.settings["priority"]
    check_options(q.name, options)
    due_at = options["not_before"] = not_before(options.pop("delay"), options["not_before"], now)
    due = math.ceil(due_at) if due_at is not None and due_at > now else None
    files = [new_message(q.name, "" if text is None else text, options, now, codec)
             for text in texts]
    if before_write is not None:
        before_write(q)
    fsync = q.settings["fsync"]
    published = []
    for msg, ready, data in files:
        if due is None:
            protocol.publish(q.dir, ready, data, fsync, q.umask)
            q.offer(ready)
        else:
            delayed = names.delayed_name(due, ready)
            protocol.delay(q.dir, delayed, data, fsync, q.umask)
            msg.filename = "{}/{}/{}".format(q.name, protocol.DELAYED_DIR, delayed)
            q.delayed.note(due)
        published.append(msg)
    log.debug("Published %d message(s) to %s", len(published), q.name)
    return published
