"""The message class: one message and its JSON form on disk.

A message file holds one JSON object with the keys in :data:`FIELDS`.  Files
written by the original ddmq 0.9.14 have the same keys, except that the
original stored a custom requeue priority as an integer in ``requeue``;
:meth:`message.json2msg` reads that form too.
"""

import json

from .errors import InvalidInputError

#: The keys of a message file, in the order they are written.
FIELDS = (
    "queue",
    "message",
    "timeout",
    "id",
    "priority",
    "queue_number",
    "filename",
    "requeue",
    "requeue_prio",
    "requeue_counter",
    "requeue_limit",
    # Added after 1.0 (older files lack them; 0.9.14 ignores them).
    "published_at",
    "delivery_count",
    "first_delivered_at",
    "last_delivered_at",
    "last_nack_reason",
    "dead_letter",
    "dead_lettered_from",
    "dead_lettered_at",
    "dead_lettered_reason",
    "not_before",
)
_FIELD_SET = frozenset(FIELDS)


class message:
    """One message: its text, its place in a queue and its per-message settings.

    ``timeout``, ``requeue``, ``requeue_prio`` and ``requeue_limit`` left as
    ``None`` mean "use the queue's setting".  After a consume, ``filename`` is
    the name of the claimed file in the queue's ``work/`` folder: the name
    that ``ack`` and ``nack`` take.

    Delivery history (see :mod:`ddmq.history`): ``published_at`` (epoch
    seconds), ``delivery_count``, ``first_delivered_at`` and
    ``last_delivered_at`` (when a delivery began) and ``last_nack_reason``;
    None in messages written before they existed.

    ``dead_letter`` is the message's own dead-letter queue (None: the
    queue's setting).  A message moved to a dead-letter queue carries
    ``dead_lettered_from`` (its queue), ``dead_lettered_at`` (epoch
    seconds) and ``dead_lettered_reason``.  ``not_before`` is the epoch
    time before which it was not to be served (a publish or retry delay).
    """

    def __init__(self, queue=None, message=None, timeout=None, id=None, priority=None,
                 queue_number=None, filename=None, requeue=None, requeue_counter=None,
                 requeue_limit=None, requeue_prio=None, published_at=None, delivery_count=None,
                 first_delivered_at=None, last_delivered_at=None, last_nack_reason=None,
                 dead_letter=None, dead_lettered_from=None, dead_lettered_at=None,
                 dead_lettered_reason=None, not_before=None):
        self.queue = queue
        self.message = message
        self.timeout = timeout
        self.id = id
        self.priority = priority
        self.queue_number = queue_number
        self.filename = filename
        self.requeue = requeue
        self.requeue_prio = requeue_prio
        self.requeue_counter = requeue_counter
        self.requeue_limit = requeue_limit
        self.published_at = published_at
        self.delivery_count = delivery_count
        self.first_delivered_at = first_delivered_at
        self.last_delivered_at = last_delivered_at
        self.last_nack_reason = last_nack_reason
        self.dead_letter = dead_letter
        self.dead_lettered_from = dead_lettered_from
        self.dead_lettered_at = dead_lettered_at
        self.dead_lettered_reason = dead_lettered_reason
        self.not_before = not_before

    def __repr__(self):
        return "\n".join("{} = {}".format(key, getattr(self, key)) for key in sorted(FIELDS))

    def __eq__(self, other):
        if not isinstance(other, message):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def to_dict(self):
        """Return the message's fields as a plain dict."""
        return {key: getattr(self, key) for key in FIELDS}

    @classmethod
    def json2msg(cls, package):
        """Convert a JSON object (a ``str``, ``bytes`` or decoded ``dict``) to a message object."""
        if isinstance(package, (str, bytes, bytearray)):
            try:
                package = json.loads(package)
            except ValueError as exc:
                raise InvalidInputError("message is not valid JSON: {}".format(exc), "invalid") from None
        if not isinstance(package, dict):
            raise InvalidInputError("a message must be a JSON object, not {}".format(
                type(package).__name__), "invalid")
        msg = cls()
        msg.update(package)
        # The original stored a custom requeue priority as an int in "requeue".
        if type(msg.requeue) is int:
            if msg.requeue_prio is None:
                msg.requeue_prio = msg.requeue
            msg.requeue = True
        if msg.requeue_counter is None:
            msg.requeue_counter = 0
        return msg

    def msg2json(self):
        """Convert the message object to a JSON string."""
        return json.dumps(self.to_dict())

    def update(self, package):
        """Update the message with the fields in ``package`` (a dict); unknown keys are ignored."""
        if _FIELD_SET.issuperset(package):
            self.__dict__.update(package)  # the usual case, a message file: one C call
            return
        for key, value in package.items():
            if key in _FIELD_SET:
                setattr(self, key, value)
