"""The settle decision: what becomes of a claimed message that is not acked.

A message that is nacked, or whose lease expired, is taken over by one
process (:mod:`ddmq.protocol`), read, and then *settled* as :func:`decide`
says: requeued (with a priority and a delay before it is served again),
moved to a dead-letter queue, or dropped.  This module only decides; it
does no I/O and reads no clock, so every rule of the cascade (explicit
argument, then the message's own field, then the queue's setting) is in
one place and testable on its own.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional

    from .message import message
    from .settings import Settings

REQUEUE = "requeue"
DEAD_LETTER = "dead_letter"
DROP = "drop"


class Decision:
    """One settle decision: ``action`` and what the action needs.

    ``priority`` and ``delay`` (seconds, 0 = serve at once) for REQUEUE;
    ``queue`` (the dead-letter queue) and ``reason`` for DEAD_LETTER.
    """

    __slots__ = ("action", "priority", "delay", "queue", "reason")

    def __init__(self, action: str, priority: Optional[int] = None, delay: float = 0,
                 queue: Optional[str] = None, reason: Optional[str] = None) -> None:
        self.action = action
        self.priority = priority
        self.delay = delay
        self.queue = queue
        self.reason = reason

    def __repr__(self) -> str:
        return "Decision({})".format(", ".join(
            "{}={!r}".format(key, getattr(self, key)) for key in self.__slots__))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and all(
            getattr(self, key) == getattr(other, key) for key in self.__slots__)


def retry_delay(msg: message, conf: Settings) -> float:
    """Return the seconds to wait before serving ``msg`` again after its next requeue.

    ``requeue_delay`` for the first requeue, ``requeue_backoff`` times
    longer for each one after, never more than ``requeue_delay_max``.
    """
    base = conf["requeue_delay"]
    if not base:
        return 0
    cap: float = conf["requeue_delay_max"]
    try:
        delay: float = base * conf["requeue_backoff"] ** msg.requeue_counter
    except OverflowError:
        delay = cap
    return min(delay, cap)


def decide(msg: message, conf: Settings, forced: Optional[bool] = None,
           queue: Optional[str] = None, delay: Optional[float] = None) -> Decision:
    """Return the :class:`Decision` for the owned, not acked message ``msg`` of ``queue``.

    ``conf`` is the queue's merged settings.  ``forced`` True requeues
    whatever the settings say, False gives the message up; None requeues
    if the message's ``requeue`` (or the queue's) is true and its
    ``requeue_counter`` is below its ``requeue_limit`` (or the queue's;
    none means no limit).  A message given up on goes to its
    ``dead_letter`` queue (or the queue's), unless that is ``queue``
    itself (a root-wide setting also reaches the dead-letter queue), else
    it is dropped.  A requeue waits ``delay`` seconds if given, else
    :func:`retry_delay`.
    """
    limit = msg.requeue_limit if msg.requeue_limit is not None else conf["requeue_limit"]
    if forced is None:
        wanted = msg.requeue if msg.requeue is not None else conf["requeue"]
        requeue = wanted and (limit is None or _requeue_counter(msg) < limit)
        why = "requeue limit {} reached".format(limit) if wanted else "requeue is off"
    else:
        requeue, why = forced, "nacked without requeue"
    if requeue:
        priority = msg.requeue_prio if msg.requeue_prio is not None else conf["requeue_prio"]
        return Decision(REQUEUE, priority=priority,
                        delay=retry_delay(msg, conf) if delay is None else delay)
    target = msg.dead_letter if msg.dead_letter is not None else conf.get("dead_letter")
    if target is not None and target != queue:
        return Decision(DEAD_LETTER, queue=target, reason=why)
    return Decision(DROP)


def _requeue_counter(msg: message) -> int:
    counter = msg.requeue_counter
    assert counter is not None   # json2msg gives every message read from a file a count
    return counter
