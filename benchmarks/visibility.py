"""Measure how soon a message published on one host is consumed on another.

Start the echo on one host, then the probe on another, with the same root
folder on the shared filesystem (as each host mounts it)::

    hostB$ python3 -m benchmarks.visibility echo /shared/ddmq-probe
    hostA$ python3 -m benchmarks.visibility probe /shared/ddmq-probe -n 100

The probe publishes a message to the queue ``ping`` and waits for the echo
to consume it and publish it back to ``pong``; it times each round trip
with its own clock alone (the hosts' clocks need not agree) and prints
statistics of half the round trip: the delay from a publish on one host to
its consume on the other, the filesystem's visibility delay included.  Run
both sides on one host, in one local folder, for ddmq's own share of it.
Both sides wait with ``poll_interval`` set to ``--poll`` on the two queues,
so the delay is measured to within about that much.  The root should be a
folder of its own: the probe empties ``ping`` and ``pong`` first.
"""

import argparse
import statistics
import sys
import time

import ddmq

QUEUES = ("ping", "pong")
STOP = "stop"


def open_root(root, poll):
    """Return a broker of ``root`` whose ping and pong queues poll every ``poll`` seconds."""
    b = ddmq.broker(root, create=True)
    for queue in QUEUES:
        b.create_queue(queue)
        b.update_settings_file(queue, {"poll_interval": poll})
    return b


def echo(b, timeout):
    """Send every ping back as a pong until the probe says stop; return an error or None."""
    while True:
        msg = b.consume("ping", wait=timeout, skip_cleaning=True)
        if msg is None:
            return "no ping for {} s".format(timeout)
        b.ack(msg, skip_cleaning=True)
        if msg.message == STOP:
            return None
        b.publish("pong", msg.message, skip_cleaning=True)


def probe(b, n, timeout):
    """Time ``n`` round trips; return the one-way delays in seconds (half of each)."""
    for queue in QUEUES:
        b.purge_queue(queue)
    delays = []
    try:
        for number in range(n):
            sent = time.monotonic()
            b.publish("ping", number, skip_cleaning=True)
            msg = b.consume("pong", wait=timeout, skip_cleaning=True)
            back = time.monotonic()
            if msg is None:
                raise SystemExit("no pong for {} s: is the echo running on this root?".format(
                    timeout))
            b.ack(msg, skip_cleaning=True)
            if msg.message != number:
                raise SystemExit("pong {!r} for ping {}: is another probe running?".format(
                    msg.message, number))
            delays.append((back - sent) / 2)
    finally:
        b.publish("ping", STOP, skip_cleaning=True)
    return delays


def summary(delays):
    """Return one line of statistics of ``delays`` (seconds), in milliseconds."""
    ordered = sorted(delays)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return ("one-way delay over {} round trips: min {:.1f} ms, median {:.1f} ms, 90% {:.1f} ms, "
            "max {:.1f} ms".format(len(ordered), 1000 * ordered[0],
                                   1000 * statistics.median(ordered), 1000 * p90,
                                   1000 * ordered[-1]))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.visibility",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=("echo", "probe"))
    parser.add_argument("root", help="a folder of its own on the shared filesystem")
    parser.add_argument("-n", type=int, default=100, help="round trips (probe; default 100)")
    parser.add_argument("--poll", type=float, default=0.005,
                        help="poll_interval of the two queues, seconds (default 0.005)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds to wait for each message (default 600)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n must be at least 1")
    b = open_root(args.root, args.poll)
    if args.role == "echo":
        error = echo(b, args.timeout)
        if error:
            sys.exit(error)
        return
    print(summary(probe(b, args.n, args.timeout)))


if __name__ == "__main__":
    main()
