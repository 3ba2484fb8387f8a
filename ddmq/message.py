"""The message class and the message file format: the one code that knows it.

A message file holds one JSON object, UTF-8 encoded, with the keys in
:data:`FIELDS`, and two more written only when they are needed:

``message_encoding``
    ``"base64"`` when the payload is bytes: ``message`` then holds their
    standard base64 text (RFC 4648 alphabet, with padding, one line).
``message_codec``
    the name of the broker codec that encoded the payload
    (:class:`Codec`); only a broker with that codec decodes it.
``topic``
    the topic the message was published to (:mod:`ddmq.topics`).  One
    such file may be hard-linked into several queues, so its ``id``,
    ``queue``, ``filename``, ``priority`` and ``queue_number`` are those of
    one copy only: a reader takes them from the copy's file name and
    folder instead (:func:`locate`).

A plain JSON payload is written exactly as the original ddmq 0.9.14 wrote
it.  0.9.14 ignores the keys it does not know, so it reads a bytes payload
as its base64 text.  Files written by 0.9.14 have the keys of
:data:`FIELDS`, except that the original stored a custom requeue priority
as an integer in ``requeue``; :meth:`message.json2msg` reads that form too.
:func:`to_file` and :func:`from_file` are the writer and the reader of
every message file.
"""

from __future__ import annotations

import json
import numbers

from .errors import CodecError, InvalidInputError
from .names import MESSAGE_ID, QUEUE_NAME, READY_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Any, Mapping, Optional, Protocol, Union

    from typing_extensions import Self   # typing's own from Python 3.11

    #: A message's fields by key, as in its file (decoded JSON values).
    Fields = dict[str, Any]

    class PayloadCodec(Protocol):
        """What a broker's ``codec`` must have (an optional ``name`` too): see :class:`Codec`."""

        def encode(self, value: Any) -> Any: ...

        def decode(self, stored: Any) -> Any: ...

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

TOPIC_KEY = "topic"                 # the topic a message was published to
ENCODING_KEY = "message_encoding"   # how "message" encodes a payload JSON cannot hold
CODEC_KEY = "message_codec"         # the name of the codec that encoded the payload
BASE64 = "base64"
_BINARY = (bytes, bytearray, memoryview)


class message:
    """One message: its payload, its place in a queue and its per-message settings.

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

    ``topic`` is the topic the message was published to, or None.

    ``codec`` is the name of the codec that encoded the payload on disk,
    or None.  ``corrupt`` is True only for the stand-in that
    :meth:`ddmq.broker.peek` returns for an unreadable file.
    """

    codec: Optional[str] = None
    corrupt = False
    topic: Optional[str] = None

    def __init__(self, queue: Optional[str] = None, message: Any = None,
                 timeout: Optional[float] = None, id: Optional[str] = None,
                 priority: Optional[int] = None, queue_number: Optional[str] = None,
                 filename: Optional[str] = None, requeue: Optional[bool] = None,
                 requeue_counter: Optional[int] = None, requeue_limit: Optional[int] = None,
                 requeue_prio: Optional[int] = None, published_at: Optional[float] = None,
                 delivery_count: Optional[int] = None, first_delivered_at: Optional[float] = None,
                 last_delivered_at: Optional[float] = None, last_nack_reason: Optional[str] = None,
                 dead_letter: Optional[str] = None, dead_lettered_from: Optional[str] = None,
                 dead_lettered_at: Optional[float] = None, dead_lettered_reason: Optional[str] = None,
                 not_before: Optional[float] = None) -> None:
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

    def __repr__(self) -> str:
        return "\n".join("{} = {}".format(key, getattr(self, key)) for key in sorted(FIELDS))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, message):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def to_dict(self) -> Fields:
        """Return the message's fields as a plain dict."""
        return {key: getattr(self, key) for key in FIELDS}

    @classmethod
    def json2msg(cls, package: Union[str, bytes, bytearray, Mapping[str, Any]]) -> Self:
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
        if _FIELD_SET.issuperset(package):
            msg.__dict__.update(package)  # the usual case, a message file: one C call
        else:
            msg.update(package)
            _unpack(msg, package)
        # The original stored a custom requeue priority as an int in "requeue".
        if type(msg.requeue) is int:
            if msg.requeue_prio is None:
                msg.requeue_prio = msg.requeue
            msg.requeue = True
        if msg.requeue_counter is None:
            msg.requeue_counter = 0
        return msg

    def msg2json(self) -> str:
        """Convert the message object to a JSON string: the text of its file."""
        return to_file(self).decode("utf-8")

    def update(self, package: Mapping[str, Any]) -> None:
        """Update the message with the fields in ``package`` (a dict); unknown keys are ignored."""
        if _FIELD_SET.issuperset(package):
            self.__dict__.update(package)
            return
        for key, value in package.items():
            if key in _FIELD_SET:
                setattr(self, key, value)


def to_file(msg: message) -> bytes:
    """Return the bytes of the file of the message ``msg`` (keys in :data:`FIELDS` order).

    Raises InvalidInputError if the payload is neither bytes nor a JSON value.
    """
    fields = msg.to_dict()
    payload = fields["message"]
    if type(payload) is not str and isinstance(payload, _BINARY):
        fields["message"], fields[ENCODING_KEY] = json_payload(payload)
    if msg.codec is not None:
        fields[CODEC_KEY] = msg.codec
    if msg.topic is not None:
        fields[TOPIC_KEY] = msg.topic
    try:
        return json.dumps(fields).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidInputError("message payload cannot be stored: it must be bytes or a JSON "
                                "value ({})".format(exc), "invalid") from None


def from_file(data: bytes) -> Optional[message]:
    """Return the message in the file contents ``data``, or None if it is not a valid message.

    Valid means: a UTF-8 JSON object with a ``message`` key, a known
    ``message_encoding`` if any, and fields a requeue can use (it builds a
    file name from them and compares and adds them, so a hostile or damaged
    value must not crash a cleaner, nor send a message under a name no
    consumer lists, or outside its queue).
    """
    try:
        package = json.loads(data.decode("utf-8"))
        if not isinstance(package, dict) or "message" not in package:
            return None
        msg = message.json2msg(package)
    except ValueError:  # also UnicodeDecodeError and InvalidInputError
        return None
    if not (isinstance(msg.id, str) and MESSAGE_ID.match(msg.id)
            and _is_count(msg.requeue_counter)
            and msg.requeue in (None, True, False)
            and (msg.requeue_prio is None or _is_count(msg.requeue_prio))
            and (msg.requeue_limit is None or _is_count(msg.requeue_limit))
            and (msg.timeout is None or (isinstance(msg.timeout, numbers.Real)
                                         and not isinstance(msg.timeout, bool)
                                         and msg.timeout >= 0))):
        return None
    # History fields: absent (None) in older files; checked only when present.
    if msg.delivery_count is not None and not _is_count(msg.delivery_count):
        return None
    for when in (msg.published_at, msg.first_delivered_at, msg.last_delivered_at,
                 msg.dead_lettered_at):
        if when is not None and not _is_time(when):
            return None
    for text in (msg.last_nack_reason, msg.dead_lettered_reason):
        if text is not None and type(text) is not str:
            return None
    if msg.not_before is not None and not _is_time(msg.not_before):
        return None
    # Dead-letter fields: a requeue or redrive builds a folder path from them.
    for queue in (msg.dead_letter, msg.dead_lettered_from, msg.topic):
        if queue is not None and not (type(queue) is str and QUEUE_NAME.match(queue)):
            return None
    return msg


def locate(msg: message, queue: str, ready: str) -> message:
    """Give ``msg``, read from the waiting name ``ready`` (or its work name's) of ``queue``, its place.

    Sets ``queue``; for a message published to a topic, whose file may be
    shared by hard links with other queues' copies, also the ``id``,
    ``priority`` and ``queue_number`` of the name, which are this copy's
    own.  An ordinary message's file holds the same values already.
    """
    msg.queue = queue
    if msg.topic is not None:
        match = READY_NAME.match(ready)
        assert match is not None   # the caller read the file under this name
        priority, msg.queue_number, msg.id = match.groups()
        msg.priority = int(priority)
    return msg


_INFINITY = float("inf")


def _is_time(value: object) -> bool:
    # Only decoded JSON values come here: a number is an int or a float (a bool's type is bool).
    return (type(value) is int or type(value) is float) and 0 <= value < _INFINITY


def json_payload(payload: Union[bytes, bytearray, memoryview]) -> tuple[str, str]:
    """Return ``(JSON text, "base64")`` for the bytes ``payload``: how files and records hold it."""
    import binascii  # here, not at the top: most messages are text

    return binascii.b2a_base64(payload, newline=False).decode("ascii"), BASE64


def _unpack(msg: message, package: Mapping[str, Any]) -> None:
    """Decode a payload stored with ``message_encoding``, note its ``message_codec``."""
    encoding = package.get(ENCODING_KEY)
    if encoding is not None:
        if encoding != BASE64 or not isinstance(msg.message, str):
            raise InvalidInputError("unknown message_encoding {!r}".format(encoding), "invalid")
        import base64

        try:
            msg.message = base64.b64decode(msg.message, validate=True)
        except ValueError as exc:  # binascii.Error, or text that is not ASCII
            raise InvalidInputError("message is not valid base64: {}".format(exc),
                                    "invalid") from None
    topic = package.get(TOPIC_KEY)
    if topic is not None:
        msg.topic = topic  # checked by from_file, with the other names
    codec = package.get(CODEC_KEY)
    if codec is not None:
        if not isinstance(codec, str):
            raise InvalidInputError("message_codec must be a name, not {!r}".format(codec),
                                    "invalid")
        msg.codec = codec


def _is_count(value: object) -> bool:
    # Only decoded JSON values come here: an integer is an int (a bool's type is bool),
    # so no ABC check, which costs ~0.5 us and would run several times per message.
    return type(value) is int and value >= 0


class Codec:
    """A user's payload codec, checked once, its failures raised as CodecError.

    ``obj.encode(value)`` returns what is stored: bytes or a JSON value;
    ``obj.decode(stored)`` returns the value.  ``obj.name`` (default: the
    qualified name of its class) is recorded in each file it encoded, so it
    decodes only those: a plain JSON message (from a broker without a
    codec, or from 0.9.14) is returned as stored.
    """

    def __init__(self, obj: PayloadCodec) -> None:
        for method in ("encode", "decode"):
            if not callable(getattr(obj, method, None)):
                raise InvalidInputError("a codec needs encode() and decode() methods; {!r} has "
                                        "no {}()".format(obj, method), "invalid")
        name = getattr(obj, "name", None)
        if name is None:
            name = "{}.{}".format(type(obj).__module__, type(obj).__qualname__)
        if not isinstance(name, str) or not name:
            raise InvalidInputError("a codec's name must be a non-empty string, not {!r}".format(
                name), "invalid")
        self.obj = obj
        self.name = name

    def encode(self, value: Any) -> Any:
        """Return the stored form of the payload ``value``."""
        try:
            return self.obj.encode(value)
        except Exception as exc:  # user code: any failure is the codec's
            raise CodecError("codec {} cannot encode {}: {}: {}".format(
                self.name, _short(value), type(exc).__name__, exc), "codec") from exc

    def decode(self, msg: message) -> None:
        """Decode ``msg.message`` in place if this codec encoded it; raise CodecError if it fails."""
        if msg.codec is None:
            return
        if msg.codec != self.name:
            raise CodecError("message {} of queue {} was encoded by codec {}, not by this "
                             "broker's codec {}".format(msg.id, msg.queue, msg.codec, self.name),
                             "codec")
        try:
            msg.message = self.obj.decode(msg.message)
        except Exception as exc:  # user code: any failure is the codec's
            raise CodecError("codec {} cannot decode message {} of queue {}: {}: {}".format(
                self.name, msg.id, msg.queue, type(exc).__name__, exc), "codec") from exc


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
