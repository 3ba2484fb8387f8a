"""Peek: the waiting messages of a queue in serving order, read in place, never claimed.

A peek lists the queue folder as a consumer's scan does, keeping only the
best names (:func:`ddmq.scanner.best_ready_names`, so memory stays bounded
by the number asked for, whatever the depth), and reads each file where it
is (:func:`ddmq.protocol.read_ready`): nothing is renamed, nothing written,
so consumers never notice a peek.

RACE: a consumer may claim a message between the listing and the read; the
file is then gone and the peek moves on to the next name, so it never
returns a message twice nor a partial one.  When taken names leave fewer
than ``n`` messages, the folder is listed again for twice as many names,
and only names after the last one shown are read.  A message claimed while
it is being read may still be shown: a peek is a snapshot, not a claim.

A file that is not a valid message is never moved (that is a consumer's
job, which owns the file once it has claimed it): it is returned as a
stand-in :class:`~ddmq.message.message` with ``corrupt`` True, its
``filename`` and the ``id``, ``priority`` and ``queue_number`` of its name,
and ``message`` None.  It takes a place among the ``n``, as it does in the
serving order.
"""

from __future__ import annotations

from .message import from_file, locate, message
from .names import READY_NAME, ready_sort_key
from .protocol import read_ready, retry_stale
from .scanner import best_ready_names

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Optional

    from .names import ReadyKey


def peek(queue_dir: str, queue: str, n: int) -> list[message]:
    """Return up to ``n`` waiting messages of ``queue`` (folder ``queue_dir``) in serving order."""
    found: list[message] = []
    last: Optional[ReadyKey] = None
    limit = n
    while True:
        names = retry_stale(best_ready_names, queue_dir, limit)
        for name in names:
            key = ready_sort_key(name)
            assert key is not None   # best_ready_names gives waiting names only
            if last is not None and key <= last:
                continue  # shown already, or passed over as taken
            last = key
            try:
                data = read_ready(queue_dir, name)
            except FileNotFoundError:
                continue  # RACE: consumed or purged since the listing
            found.append(_message(data, queue, name))
            if len(found) == n:
                return found
        if len(names) < limit:
            return found  # the folder holds no more waiting names
        limit *= 2


def _message(data: bytes, queue: str, name: str) -> message:
    msg = from_file(data)
    if msg is None:
        match = READY_NAME.match(name)
        assert match is not None   # a waiting name
        priority, number, msg_id = match.groups()
        msg = message(queue=queue, id=msg_id, priority=int(priority), queue_number=number)
        msg.corrupt = True
    locate(msg, queue, name)
    msg.filename = name
    return msg
