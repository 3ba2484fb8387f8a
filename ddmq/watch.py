"""``ddmq view --watch``: the figures of the queues, refreshed until Ctrl-C.

Part of the command line (it writes to stdout); the figures come from
:meth:`ddmq.broker.stats`.  Between two refreshes, for each queue:

* ``publish_rate``: messages per second whose queue number is later than
  the previous refresh and that are still there (waiting or claimed); a
  requeue counts as a publish, as it gives the message a new queue number,
  and a message published and acked between two refreshes is not seen;
* ``ack_rate``: messages per second that left the queue (acked, dropped,
  dead-lettered, or the old file of a requeue):
  ``(before + published - now) / seconds``, where before and now are
  ``waiting + work``;
* ``eta``: seconds until the queue is empty at the current net rate
  (``waiting + work`` divided by ``ack_rate - publish_rate``), None while it
  does not shrink.

On a terminal the table is redrawn in place on the alternate screen, which
Ctrl-C leaves as it found it.  Otherwise (a pipe, a file) or with
``--format json``, each refresh is one JSON document on a line of its own:
``{"time": epoch, "queues": {name: figures}}``.
"""

from __future__ import annotations

import json
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Callable, Iterable, Optional

    from .broker import broker
    from .cli import Output
    from .stats import Figures

RATE_COLUMNS = (("publish_rate", "publish/s"), ("ack_rate", "ack/s"), ("eta", "empty_in"))

_ENTER = "\x1b[?1049h\x1b[?25l"   # the alternate screen, cursor hidden
_LEAVE = "\x1b[?25h\x1b[?1049l"   # cursor shown, the normal screen back
_HOME = "\x1b[H"
_CLEAR_BELOW = "\x1b[J"


def rates(before: Optional[Figures], after: Figures,
          seconds: float) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """Return (publish_rate, ack_rate, eta) of one queue between two figures ``seconds`` apart."""
    if before is None or seconds <= 0:
        return None, None, None
    published = after["published_since"]
    total_before = before["waiting"] + before["work"]
    total = after["waiting"] + after["work"]
    acked = max(0, total_before + published - total)
    publish_rate, ack_rate = published / seconds, acked / seconds
    drain = ack_rate - publish_rate
    eta = round(total / drain, 1) if drain > 0 else (0 if total == 0 else None)
    return round(publish_rate, 2), round(ack_rate, 2), eta


def run(b: broker, queues: Callable[[], Iterable[str]], interval: float, fmt: str) -> Output:
    """Refresh the figures of ``queues()`` every ``interval`` s until Ctrl-C; return an Output."""
    from .cli import Output, VIEW_COLUMNS, _by_queue, _render_table
    from .errors import QueueNotFoundError

    on_terminal = fmt == "table" and sys.stdout.isatty()
    previous: dict[str, Figures] = {}
    last: Optional[float] = None
    if on_terminal:
        sys.stdout.write(_ENTER)
    try:
        while True:
            now: float = b.clock()
            records: list[dict[str, object]] = []
            for queue in queues():
                try:
                    figures: Figures = b.stats(queue, since=last)
                except QueueNotFoundError:
                    continue  # deleted since it was listed: gone from the next refresh
                publish_rate, ack_rate, eta = rates(previous.get(queue), figures,
                                                    now - (last or now))
                previous[queue] = figures
                record = dict(queue=queue, **figures)
                record.pop("published_since", None)
                record.update(publish_rate=publish_rate, ack_rate=ack_rate, eta=eta)
                records.append(record)
            last = now
            if on_terminal:
                header = "ddmq view --watch {:g}  {}  (Ctrl-C to leave)\n".format(
                    interval, time.strftime("%H:%M:%S", time.localtime(now)))
                sys.stdout.write(_HOME + header + _render_table(
                    records, VIEW_COLUMNS + RATE_COLUMNS) + _CLEAR_BELOW)
            else:
                sys.stdout.write(json.dumps({"time": round(now, 3),
                                             "queues": _by_queue(records)}) + "\n")
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        if on_terminal:
            sys.stdout.write(_LEAVE)
            sys.stdout.flush()
    output = Output([], str)
    output.shown = True  # every refresh is already on stdout
    return output
