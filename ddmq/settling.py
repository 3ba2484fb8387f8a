"""Settling a claimed message: the I/O behind ack, nack, requeue and an expired lease.

The settler first *takes over* the claim (one rename to a work name of its
own under a short lease, :func:`ddmq.protocol.take_over`), so exactly one
of several settlers wins; it reads the message, records how its attempt
ended (:mod:`ddmq.history`), asks the pure :func:`ddmq.settle.decide` what
to do, and does it: move it to a dead-letter queue (:mod:`ddmq.deadletter`),
delete it, requeue it delayed (its retry delay, :mod:`ddmq.delayed`) or
requeue it waiting under a fresh queue number.
"""

from __future__ import annotations

import math

from . import history, names, protocol, settle as decision_rules
from .errors import PermissionDeniedError
from .log import log
from .message import to_file

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional

    from .broker import broker
    from .message import message
    from .queue import Queue

TAKE_OVER_GRACE = 60       # seconds a cleaner or nacker holds a message while requeuing it


def settle(b: broker, q: Queue, work: str, requeue: Optional[bool], reason: Optional[str] = None,
           delay: Optional[float] = None) -> bool:
    """Take over the claimed message ``work`` of the Queue ``q`` (broker ``b``) and settle it.

    ``requeue`` True or False forces the choice; None follows the
    message's settings and its requeue limit (see :mod:`ddmq.settle`).
    ``reason`` is recorded as the message's ``last_nack_reason``;
    ``delay`` (seconds) overrides the queue's retry delay.  Returns
    False if another process took the message first.
    """
    conf = q.settings
    owned = protocol.take_over(q.dir, work, b.clock() + TAKE_OVER_GRACE + conf["clock_skew"],
                               conf["fsync"])
    if owned is None:
        return False
    msg: Optional[message] = b._read_owned(q, owned)
    if msg is None:
        return True  # quarantined: nothing left to requeue
    timeout = msg.timeout if msg.timeout is not None else conf["message_timeout"]
    parsed = names.parse_work_name(work)
    assert parsed is not None   # the broker checks the work names it is given
    history.ended(msg, parsed[0], timeout, b.clock(), reason)
    decision = decision_rules.decide(msg, conf, requeue, q.name, delay)
    if decision.action == decision_rules.DEAD_LETTER:
        from . import deadletter  # not at the top: start-up time of plain commands

        deadletter.dead_letter(b, q, owned, msg, decision)
        return True
    if decision.action == decision_rules.DROP:
        log.info("Deleting %s/%s (not requeued)", q.name, work)
        protocol.remove(q.work_dir, owned, conf["fsync"])
        return True
    counter, priority = msg.requeue_counter, decision.priority
    # A message read from its file has a count and an id; a REQUEUE decision, a priority.
    assert counter is not None and msg.id is not None and priority is not None
    msg.requeue_counter = counter + 1
    msg.priority = priority
    msg.queue_number = names.new_queue_number()
    ready = names.ready_name(priority, msg.queue_number, msg.id)
    if decision.delay:
        msg.not_before = min(b.clock() + decision.delay, names.LAST_SECOND)
        due = math.ceil(msg.not_before)
        delayed = names.delayed_name(due, ready)
        msg.filename = "{}/{}/{}".format(q.name, protocol.DELAYED_DIR, delayed)
        log.info("Requeuing %s/%s as %s, due in %.3f s", q.name, work, delayed,
                 decision.delay)
        protocol.requeue_delayed(q.dir, owned, delayed, to_file(msg),
                                 conf["fsync"], q.umask)
        q.delayed.note(due)
        return True
    msg.filename = "{}/{}".format(q.name, ready)
    log.info("Requeuing %s/%s as %s", q.name, work, ready)
    try:
        protocol.requeue(q.dir, owned, ready, to_file(msg), conf["fsync"], q.umask)
    except PermissionDeniedError:
        # We may rename in work/ but not write the new file: put the
        # message back under the lease it had, as if never touched.
        protocol.take_back(q.dir, owned, work, conf["fsync"])
        raise
    q.offer(ready)
    return True
