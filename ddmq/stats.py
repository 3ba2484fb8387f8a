"""What a queue holds, counted from directory listings and file names alone.

:func:`queue_stats` lists a queue folder, its ``work/``, ``.quarantine/`` and
(if it exists) ``delayed/`` folder, and the folder of its dead-letter queue,
and reads nothing else: no message file is opened and no file is stat'ed, so
the cost is that of the listings (see ``docs/performance.rst``).  The
figures, in the order :data:`FIELDS` gives them:

``waiting``
    READY messages (names of the ready grammar in the queue folder).
``in_flight``
    CLAIMED messages whose lease is still valid.
``expired``
    CLAIMED messages whose lease expired (``expiry + clock_skew < now``)
    and that no cleaner has requeued or dropped yet.
``work``
    ``in_flight + expired``: every claimed file, the count 0.9.14 showed.
``delayed``
    entries of ``<queue>/delayed/`` (0 when the folder does not exist).
``quarantined``
    entries of ``<queue>/.quarantine/``: corrupt files set aside.
``dead_lettered``
    waiting messages of the queue named by the ``dead_letter`` setting
    (0 without the setting, or while that queue does not exist).
``oldest_waiting_age``
    seconds since the oldest waiting message was published (or last
    requeued: a requeue gives it a new queue number), from its queue
    number, in whole seconds; None when nothing waits.
``oldest_lease_expiry``
    the earliest lease expiry among claimed messages, epoch seconds (None
    without claims).  It is read from the name; a lease is renewed by
    ``touch`` and by a take-over.
``oldest_claim_age``
    ``now - (oldest_lease_expiry - message_timeout)``: the seconds since
    that claim (or its last renewal), *assuming* it used the queue's
    ``message_timeout`` (a name holds the expiry, not the timeout, so a
    message published with its own ``timeout`` is shown as if it had the
    queue's).  None without claims.

Queue numbers and leases both start with 10 digits of epoch seconds (see
:mod:`ddmq.names`), so one regular expression over the joined listing finds
every message and its seconds in a single pass of C code, which is what
keeps a count of a million names within about twice the time of listing
them.
"""

from __future__ import annotations

import re

from . import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional, TypedDict

    from typing_extensions import NotRequired   # typing's own from Python 3.11

    from .settings import Settings

    class Figures(TypedDict):
        """The figures of one queue (see above); None where a figure has no value."""

        waiting: int
        in_flight: int
        expired: int
        work: int
        delayed: int
        quarantined: int
        dead_lettered: int
        oldest_waiting_age: Optional[int]
        oldest_claim_age: Optional[int]
        oldest_lease_expiry: Optional[int]
        published_since: NotRequired[int]   # with since= only

#: The figures of one queue, in the order they are shown.
FIELDS = ("waiting", "in_flight", "expired", "work", "delayed", "quarantined", "dead_lettered",
          "oldest_waiting_age", "oldest_claim_age", "oldest_lease_expiry")

# One line per name; these match whole lines of "\n".join(listing), as
# names.READY_NAME and names.WORK_NAME match whole names.
# ([0-9], not \d: ASCII digits only, and measurably faster.)
_READY_SECONDS = re.compile(r"^[0-9]+\.([0-9]{10})[0-9]*\.ddmq[A-Za-z0-9]+$", re.M).findall
_WORK_LEASE = re.compile(r"^([0-9]{10})[0-9]*\.[0-9]+\.[0-9]+\.ddmq[A-Za-z0-9]+$", re.M).findall


_listdir = protocol.list_folder


def _joined(path: str) -> str:
    """Return the names in folder ``path``, one per line (a foreign name holding a newline is left out)."""
    listing = _listdir(path)
    text = "\n".join(listing)
    if text.count("\n") != max(0, len(listing) - 1):
        # No message name holds a newline; a foreign one must not pass for a message.
        text = "\n".join(name for name in listing if "\n" not in name)
    return text


def waiting_seconds(queue_dir: str) -> list[str]:
    """Return the epoch seconds (10-digit strings) of the waiting messages' queue numbers."""
    return _READY_SECONDS(_joined(queue_dir))


def queue_stats(queue_dir: str, settings: Settings, now: float, dead_letter_dir: Optional[str] = None,
                since: Optional[float] = None) -> Figures:
    """Return the figures of the queue in ``queue_dir`` (see above) as a dict.

    ``settings`` are the queue's merged settings (``message_timeout`` and
    ``clock_skew`` are used), ``now`` the broker's time, ``dead_letter_dir``
    the folder of the dead-letter queue, if any.  With ``since`` (epoch
    seconds), the dict also holds ``published_since``: the messages, waiting
    or claimed, whose queue number is later than ``since`` (what a watcher
    uses to tell publishes from acks between two looks).
    """
    ready_text = _joined(queue_dir)
    work_text = _joined(queue_dir + "/" + protocol.WORK_DIR)
    ready = _READY_SECONDS(ready_text)
    leases = _WORK_LEASE(work_text)
    skew = settings.get("clock_skew") or 0
    # Leases hold 10-digit seconds: comparing them as strings compares them as numbers.
    valid_from = "{:010d}".format(max(0, int(now - skew)))
    expired = sum(1 for lease in leases if lease < valid_from)
    oldest_ready = min(ready) if ready else None
    oldest_lease = int(min(leases)) if leases else None
    timeout = settings.get("message_timeout") or 0
    figures: Figures = {
        "waiting": len(ready),
        "in_flight": len(leases) - expired,
        "expired": expired,
        "work": len(leases),
        "delayed": len(_listdir(queue_dir + "/" + protocol.DELAYED_DIR)),
        "quarantined": len(_listdir(queue_dir + "/" + protocol.QUARANTINE_DIR)),
        "dead_lettered": len(waiting_seconds(dead_letter_dir)) if dead_letter_dir else 0,
        "oldest_waiting_age": None if oldest_ready is None else max(0, int(now) - int(oldest_ready)),
        "oldest_claim_age": (None if oldest_lease is None
                             else max(0, int(now) - (oldest_lease - int(timeout)))),
        "oldest_lease_expiry": oldest_lease,
    }
    if since is not None:
        figures["published_since"] = _published_since(ready_text, work_text, since)
    return figures


_WORK_NUMBER = re.compile(r"^[0-9]+\.[0-9]+\.([0-9]+)\.ddmq[A-Za-z0-9]+$", re.M).findall
_READY_NUMBER = re.compile(r"^[0-9]+\.([0-9]+)\.ddmq[A-Za-z0-9]+$", re.M).findall


def _published_since(ready_text: str, work_text: str, since: float) -> int:
    """Count the messages, waiting or claimed, with a queue number later than epoch ``since``."""
    numbers = _READY_NUMBER(ready_text) + _WORK_NUMBER(work_text)
    # A queue number is its time's digits without the point: seconds first, 10 digits.
    count = 0
    for number in numbers:
        if float(number[:10] + "." + number[10:]) > since:
            count += 1
    return count
