"""Cleaning a queue: the periodic pass that requeues what dead consumers left behind.

:func:`clean` runs at most once per :data:`CLEAN_INTERVAL` per queue across
processes (the queue's ``cleaned`` stamp, :func:`ddmq.settings.read_cleaned`)
unless forced.  It promotes the due delayed messages (forced, so it also
prunes old ``.due/`` markers, see :mod:`ddmq.delayed`), settles every claim
in ``work/`` whose lease has expired (by more than the ``clock_skew``
setting) as a nack with reason "expired", removes ``.tmp`` files older than
:data:`STALE_TEMP_AGE` (a dead writer's leftovers) and records the time.
"""

from __future__ import annotations

from . import history, names, protocol, settings
from .log import log

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from .broker import broker
    from .queue import Queue

CLEAN_INTERVAL = 60        # seconds between two cleanings of a queue, unless forced
STALE_TEMP_AGE = 3600      # seconds after which a .tmp file is a dead writer's leftover


def clean(b: broker, q: Queue, force: bool = False) -> bool:
    """Clean the Queue ``q`` of broker ``b``; return True, or False if it was too soon."""
    conf = q.settings
    now: float = b.clock()
    if not force:
        if now - q.last_cleaned < CLEAN_INTERVAL:
            return False
        # Another process may have cleaned since we last looked.
        q.last_cleaned = max(q.last_cleaned, settings.read_cleaned(q.dir))
        if now - q.last_cleaned < CLEAN_INTERVAL:
            return False
    q.last_cleaned = now
    log.info("Cleaning queue %s", q.name)
    b._promote_due(q, force=True)
    for work in protocol.list_folder(q.work_dir):
        parsed = names.parse_work_name(work)
        if parsed and parsed[0] + conf["clock_skew"] < now:
            b._settle(q, work, requeue=None, reason=history.EXPIRED)
    protocol.remove_stale_temp_files(q.dir, now - STALE_TEMP_AGE - conf["clock_skew"])
    try:
        settings.write_cleaned(q.dir, now, q.umask)
    except OSError as exc:
        raise protocol.storage_error(exc, "record the cleaning of", q.dir) from None
    return True
