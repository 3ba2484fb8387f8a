"""The figures of :mod:`ddmq.stats` in the Prometheus text exposition format.

``ddmq view --format prometheus`` prints one gauge family per figure, with
the queue as the ``queue`` label, for node_exporter's textfile collector or
any scraper that reads the format (version 0.0.4)::

    # HELP ddmq_waiting_messages Messages waiting to be consumed.
    # TYPE ddmq_waiting_messages gauge
    ddmq_waiting_messages{queue="jobs"} 3

A figure that has no value (the age of the oldest waiting message of an
empty queue) has no sample: an absent series, not a made-up 0.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Iterable, Mapping

#: (figure, metric name, help text), in the order they are written.
METRICS = (
    ("waiting", "ddmq_waiting_messages", "Messages waiting to be consumed."),
    ("in_flight", "ddmq_in_flight_messages", "Consumed messages whose lease is still valid."),
    ("expired", "ddmq_expired_messages",
     "Consumed messages whose lease expired, not yet cleaned."),
    ("delayed", "ddmq_delayed_messages", "Messages published with a delay, not yet due."),
    ("quarantined", "ddmq_quarantined_messages", "Corrupt message files set aside."),
    ("dead_lettered", "ddmq_dead_lettered_messages",
     "Messages waiting in the queue's dead-letter queue."),
    ("oldest_waiting_age", "ddmq_oldest_waiting_age_seconds",
     "Seconds since the oldest waiting message was published or requeued."),
    ("oldest_claim_age", "ddmq_oldest_claim_age_seconds",
     "Seconds since the claim with the earliest lease expiry, assuming the queue's "
     "message_timeout."),
    ("oldest_lease_expiry", "ddmq_oldest_lease_expiry_timestamp_seconds",
     "Earliest lease expiry of the consumed messages, epoch seconds."),
)


def prometheus_text(records: Iterable[Mapping[str, object]]) -> str:
    """Return the exposition text of view's records ({"queue": name, figure: value, ...})."""
    lines = []
    for figure, metric, text in METRICS:
        lines.append("# HELP {} {}".format(metric, text))
        lines.append("# TYPE {} gauge".format(metric))
        for record in records:
            value = record.get(figure)
            if value is not None:
                # Queue names are letters, digits, '_' and '-': nothing to escape in a label.
                lines.append('{}{{queue="{}"}} {}'.format(metric, record["queue"], value))
    return "\n".join(lines) + "\n"
