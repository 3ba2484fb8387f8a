"""The name grammar: queue names, message file names, queue numbers and leases.

A waiting message is named ``<priority>.<queue_number>.ddmq<id>``; a claimed
one, in the queue's ``work/`` folder, ``<lease>.<priority>.<queue_number>.ddmq<id>``.

* ``priority`` is an integer >= 0; lower is served first, compared as a number.
* ``queue_number`` is the epoch time with the decimal point removed: its first
  10 digits are seconds, the rest a fraction.  New numbers have exactly 19
  digits (nanoseconds) and strictly increase within a process; legacy numbers
  of any length are ordered by their time value too.
* ``id`` is 32 hex digits (a uuid4); it survives requeues.
* ``lease`` is the expiry time in epoch seconds (10 digits), followed by 9
  random digits that make every claim's destination name unique to its
  claimant.  A name with a bare 10-digit lease was written by the original ddmq.

A delayed message, in the queue's ``delayed/`` folder, is named
``<due><nonce>.<priority>.<queue_number>.ddmq<id>``: ``due`` is the epoch
second (10 digits) from which it may be served, ``nonce`` 9 random digits,
so names sort by due time and "is anything due" is a comparison of names.
A promoter claims a due message by renaming it to a name of the same form
whose due field is its own lease (now + grace) and whose nonce is new.

Nothing else ddmq writes matches these patterns: temporary files and
quarantined messages live in hidden folders (``.tmp/``, ``.quarantine/``).
"""

from __future__ import annotations

import re
import time

from .errors import InvalidInputError

QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")
READY_NAME = re.compile(r"(\d+)\.(\d+)\.ddmq([A-Za-z0-9]+)\Z")
WORK_NAME = re.compile(r"(\d+)\.(\d+\.\d+\.ddmq[A-Za-z0-9]+)\Z")
DELAYED_NAME = re.compile(r"(\d{10})\d{9}\.((\d+)\.\d+\.ddmq([A-Za-z0-9]+))\Z")
MESSAGE_ID = re.compile(r"[A-Za-z0-9]+\Z")

SECONDS_DIGITS = 10
_NONCE_LIMIT = 10 ** 9
LAST_SECOND = 10 ** SECONDS_DIGITS - 1   # the latest expiry a lease can hold (year 2286)
_last_queue_number = 0

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional

    #: The serving-order key of a waiting message: (priority, seconds, fraction, name).
    ReadyKey = tuple[int, int, str, str]


def check_queue_name(queue: object) -> str:
    """Return ``queue`` if it is a valid queue name, else raise InvalidInputError."""
    if not isinstance(queue, str) or not QUEUE_NAME.match(queue):
        raise InvalidInputError(
            "invalid queue name {!r}: use only letters, digits, '_' and '-'".format(queue),
            "invalid")
    return queue


def check_topic_name(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name (the grammar of queue names), else raise."""
    if not isinstance(topic, str) or not QUEUE_NAME.match(topic):
        raise InvalidInputError(
            "invalid topic name {!r}: use only letters, digits, '_' and '-'".format(topic),
            "invalid")
    return topic


def new_queue_number() -> str:
    """Return a fixed-width queue number, strictly greater than the last one of this process."""
    global _last_queue_number
    number = max(time.time_ns(), _last_queue_number + 1)
    _last_queue_number = number
    return "{:019d}".format(number)


def ready_name(priority: int, queue_number: str, msg_id: str) -> str:
    """Return the file name of a waiting message."""
    return "{}.{}.ddmq{}".format(priority, queue_number, msg_id)


def ready_sort_key(name: str) -> Optional[ReadyKey]:
    """Return the serving order key of a waiting message's name, or None if it is not one.

    Priority first, as a number; then the queue number's seconds as a number
    and its fraction digits as a string (a left-aligned fraction sorts as a
    string the way it sorts as a number, whatever its length); the name last
    breaks ties deterministically.
    """
    parts = name.split(".")
    if (len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit()
            or not parts[2].startswith("ddmq") or not READY_NAME.match(name)):
        return None
    number = parts[1]
    return (int(parts[0]), int(number[:SECONDS_DIGITS]), number[SECONDS_DIGITS:], name)


def new_lease(expiry: float) -> str:
    """Return a lease for a claim that expires at epoch time ``expiry``."""
    # A lease holds 10 digits of seconds: a later expiry (a huge or infinite
    # timeout) would read back as a date in 2001, so it gets the last one.
    expiry = min(expiry, LAST_SECOND)
    import random  # here, not at the top: `ddmq publish` never needs it (start-up time)

    return "{:010d}{:09d}".format(max(0, int(expiry)), random.randrange(_NONCE_LIMIT))


def delayed_name(due: float, ready: str) -> str:
    """Return the name in ``delayed/`` of the message ``ready`` due at epoch second ``due``."""
    import random  # here, not at the top: start-up time of plain commands

    return "{:010d}{:09d}.{}".format(min(int(due), LAST_SECOND), random.randrange(_NONCE_LIMIT),
                                     ready)


def parse_delayed_name(name: str) -> Optional[tuple[int, str]]:
    """Return ``(due_seconds, ready_name)`` of a delayed message's name, or None."""
    match = DELAYED_NAME.match(name)
    return (int(match.group(1)), match.group(2)) if match else None


def check_due(when: float, what: str = "delay") -> None:
    """Raise InvalidInputError unless ``when`` (epoch seconds) is finite and fits a name's 10 digits."""
    if not when <= LAST_SECOND:   # also NaN
        raise InvalidInputError("{} ends after the last time a file name can hold (epoch "
                                "{}): {!r}".format(what, LAST_SECOND, when), "invalid")


def work_name(lease: str, ready: str) -> str:
    """Return the name of a claimed message in ``work/``."""
    return "{}.{}".format(lease, ready)


def parse_work_name(name: str) -> Optional[tuple[int, str]]:
    """Return ``(expiry_seconds, ready_name)`` of a claimed message's name, or None."""
    match = WORK_NAME.match(name)
    if not match:
        return None
    lease = match.group(1)
    return int(lease[:SECONDS_DIGITS]), match.group(2)
