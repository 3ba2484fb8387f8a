"""Dead-letter queues: where given-up messages go, and redrive, which sends them back.

Dead-lettering.  When :func:`ddmq.settle.decide` says a settled message is
given up (its requeue limit reached) and its queue names a dead-letter queue
(the ``dead_letter_queue`` setting), :func:`dead_letter` moves the message,
which the settler owns under a take-over name, into that queue as a READY
file under its current ready name, recording ``dead_lettered_from``,
``dead_lettered_at`` and ``dead_lettered_reason``; the dead-letter queue is
created if missing, so no message is lost for want of it.

Redrive.  Each waiting message of the dead-letter queue is first *claimed* there, as a
consumer would (one rename to a lease of our own), so a consumer of the
dead-letter queue and a redrive never both get one message.  The owner
then publishes it into its target queue as a fresh READY file (a new queue
number, the same id, ``requeue_counter`` 0, no due time) and removes its
claim: a crash in between leaves a copy in both queues, never in neither.
The target is ``to`` or the queue the message was dead-lettered from; a
message with neither, or whose source queue no longer exists, is put back
into the dead-letter queue unchanged (a fresh READY name of its own).
"""

from __future__ import annotations

from . import names, protocol
from .errors import InvalidInputError, QueueNotFoundError
from .log import log
from .message import to_file

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional

    from .broker import broker
    from .message import message
    from .queue import Queue
    from .settle import Decision


def dead_letter(b: broker, q: Queue, owned: str, msg: message, decision: Decision) -> None:
    """Move the owned message ``msg`` of the Queue ``q`` (claimed as ``owned``) to its DLQ."""
    assert decision.queue is not None   # a DEAD_LETTER decision names the queue
    target = dead_letter_queue(b, decision.queue)
    # Its current ready name, not a fresh one: if a crash between the
    # two steps of the move makes another process move it again, the
    # second copy replaces the first instead of adding a duplicate.
    parsed = names.parse_work_name(owned)
    assert parsed is not None   # the name of our take-over
    ready = parsed[1]
    msg.dead_lettered_from, msg.dead_lettered_at = q.name, b.clock()
    msg.dead_lettered_reason = decision.reason
    msg.queue, msg.filename = target.name, target.name + "/" + ready
    log.info("Dead-lettering %s/%s to %s (%s)", q.name, owned, target.name, decision.reason)
    protocol.move(q.dir, owned, target.dir, ready, to_file(msg),
                  q.settings["fsync"] or target.settings["fsync"], target.umask)
    target.offer(ready)


def dead_letter_queue(b: broker, name: str) -> Queue:
    """Return the Queue of the dead-letter queue ``name`` of broker ``b``, created if missing."""
    q: Queue
    try:
        q = b._queue(name)
    except QueueNotFoundError:
        b.create_queue(name)  # the setting asks for it: never lose a message for want of it
        q = b._queue(name)
    return q


def redrive(b: broker, dead_queue: str, to: Optional[str] = None,
            n: Optional[int] = None) -> list[message]:
    """Move up to ``n`` waiting messages of ``dead_queue`` (broker ``b``); return them, moved."""
    dq: Queue = b._queue(dead_queue)
    if n is not None and not (type(n) is int and n >= 1):
        raise InvalidInputError("n must be an integer >= 1 or None, not {!r}".format(n), "invalid")
    if to is not None:
        names.check_queue_name(to)
        if to == dead_queue:
            raise InvalidInputError("cannot redrive queue {!r} into itself".format(to), "invalid")
        b._queue(to)  # a missing target is an error now, before any message moves
    if n is None:
        n = len(b.get_message_list(dead_queue)[0])
    moved: list[message] = []
    for _ in range(n):  # put-back messages count too, so each is tried once
        claimed: list[message] = b._claim(dq, 1)
        if not claimed:
            break
        msg = claimed[0]
        work = msg.filename
        assert work is not None and msg.id is not None   # claimed: its work name; read: an id
        # The priority of its name, which it is served by: the file's field is
        # never checked, and the new name (a path) must not be built from it.
        msg.priority = priority = _priority_of(work)
        target = _target(b, to or msg.dead_lettered_from, dead_queue)
        fsync = dq.settings["fsync"]
        msg.queue_number = names.new_queue_number()
        if target is None:
            ready = names.ready_name(priority, msg.queue_number, msg.id)
            protocol.requeue(dq.dir, work, ready, to_file(msg), fsync, dq.umask)
            dq.offer(ready)
            continue
        msg.queue, msg.requeue_counter = target.name, 0
        ready = names.ready_name(priority, msg.queue_number, msg.id)
        msg.filename = target.name + "/" + ready
        protocol.move(dq.dir, work, target.dir, ready, to_file(msg),
                      fsync or target.settings["fsync"], target.umask)
        target.offer(ready)
        moved.append(msg)
    return moved


def _priority_of(work: str) -> int:
    """Return the priority in the name ``work`` of a claimed message."""
    parsed = names.parse_work_name(work)
    key = names.ready_sort_key(parsed[1]) if parsed is not None else None
    assert key is not None   # a work name the broker made
    return key[0]


def _target(b: broker, name: Optional[str], dead_queue: str) -> Optional[Queue]:
    """Return the Queue to redrive to, or None to keep the message where it is."""
    if name is None or name == dead_queue:
        return None
    try:
        q: Queue = b._queue(name)
    except QueueNotFoundError:
        return None
    return q
