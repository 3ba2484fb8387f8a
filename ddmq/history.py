"""Delivery history: what a message file records about its deliveries.

A claim is a rename, so nothing can be written into a message file when it
is delivered; a requeue (or a dead-letter move) rewrites the file anyway.
So the file holds the history of the deliveries that *ended* (nacked or
expired) and a consumer adds the delivery in progress in memory:

* ``published_at``: when the message was published (epoch seconds).
* ``delivery_count``: deliveries so far; on a consumed message, this one
  included.
* ``first_delivered_at``, ``last_delivered_at``: when the first and the
  last delivery began.  A consumer knows the exact time; a process that
  settles a delivery later (a nack by file name, a cleaner) reads it from
  the claim's lease, ``expiry - timeout``: exact to the second, or the
  time of the last renewal if the lease was renewed with ``touch``.
* ``last_nack_reason``: the text given to the last ``nack(reason=...)``,
  or ``"lease expired"`` when the last delivery ran out of time.

Messages written before these fields existed have None in each, read as
"no delivery yet" (``delivery_count`` 0).
"""

from __future__ import annotations

import math

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional

    from .message import message

EXPIRED = "lease expired"      # the last_nack_reason of a delivery whose lease ran out
REASON_LIMIT = 4096            # characters of a reason kept; the rest is cut


def delivered(msg: message, began: float) -> None:
    """Count a delivery of ``msg`` that began at epoch time ``began``."""
    msg.delivery_count = (msg.delivery_count or 0) + 1
    msg.last_delivered_at = began
    if msg.first_delivered_at is None:
        msg.first_delivered_at = began


def ended(msg: message, expiry: float, timeout: float, now: float,
          reason: Optional[str]) -> None:
    """Record in ``msg`` (read from its file) the delivery a settle ends, before the rewrite.

    ``expiry`` is the lease of the claim being settled, ``timeout`` the
    lease length it was given; ``reason`` becomes ``last_nack_reason``.
    """
    began = expiry - timeout if math.isfinite(timeout) and expiry - timeout <= now else now
    delivered(msg, max(0, began))
    msg.last_nack_reason = reason


def check_reason(reason: object) -> Optional[str]:
    """Return ``reason`` cut to REASON_LIMIT characters; None stays None; raise TypeError otherwise."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise TypeError("reason must be a string or None, not {!r}".format(reason))
    return reason[:REASON_LIMIT]
