"""Benchmark: publishing to a topic with N subscribers against one plain publish.

    python -m benchmarks.topics DIR [--n 2000] [--subscribers 4] [--repeat 5]

DIR should be on the filesystem to measure (a fresh loop-mounted ext4 for
the figures in docs/performance.rst).  Each round publishes ``n`` messages
with :meth:`ddmq.broker.publish` to one queue and ``n`` with
:meth:`ddmq.broker.publish_topic` to a topic with ``subscribers`` queues,
each in a fresh root, alternating, and reports the median time per call of
each and their ratio (the target: at most 2x); then the same for the
commands ``ddmq publish`` and ``ddmq publish --topic``, start-up included.  The topic is also timed
with hard links refused (os.link raising EXDEV: one copy per queue), the
fallback for filesystems without links.  Absolute times depend on the
machine; the ratios, measured in one run, are what to compare.
"""

import argparse
import errno
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import ddmq  # noqa: E402


def _fresh(base, label):
    path = os.path.join(base, label)
    shutil.rmtree(path, ignore_errors=True)
    return ddmq.broker(path, create=True)


def time_plain(base, n):
    b = _fresh(base, "plain")
    b.publish("q", "warm-up")
    start = time.perf_counter()
    for i in range(n):
        b.publish("q", {"i": i, "text": "x" * 100})
    return (time.perf_counter() - start) / n


def time_topic(base, n, subscribers, label="topic"):
    b = _fresh(base, label)
    for k in range(subscribers):
        b.subscribe("t", "q{}".format(k))
    b.publish_topic("t", "warm-up")
    start = time.perf_counter()
    for i in range(n):
        b.publish_topic("t", {"i": i, "text": "x" * 100})
    return (time.perf_counter() - start) / n


def time_topic_copies(base, n, subscribers):
    real = os.link

    def refuse(*args, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    os.link = refuse
    try:
        return time_topic(base, n, subscribers, "copies")
    finally:
        os.link = real


def time_commands(base, subscribers, runs):
    """Return the median seconds of ``ddmq publish`` and of ``ddmq publish --topic``, interleaved."""
    import subprocess

    ddmq_cli = [sys.executable, "-m", "ddmq"]
    b = _fresh(base, "cli")
    for k in range(subscribers):
        b.subscribe("t", "q{}".format(k))
    commands = {"plain": ddmq_cli + ["publish", b.root, "q0", "hello"],
                "topic": ddmq_cli + ["publish", "-s", "--topic", "t", b.root, "hello"]}
    times = {key: [] for key in commands}
    for _ in range(runs):
        for key, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    runs = {"plain": [], "topic": [], "copies": []}
    for _ in range(args.repeat):
        runs["plain"].append(time_plain(args.dir, args.n))
        runs["topic"].append(time_topic(args.dir, args.n, args.subscribers))
        runs["copies"].append(time_topic_copies(args.dir, args.n, args.subscribers))
    plain = statistics.median(runs["plain"])
    print("filesystem: {}; {} publishes per run, {} runs, {} subscribers".format(
        args.dir, args.n, args.repeat, args.subscribers))
    for key, label in (("plain", "publish, one queue"),
                       ("topic", "publish_topic, hard links"),
                       ("copies", "publish_topic, copies (links refused)")):
        value = statistics.median(runs[key])
        print("{:40s} {:8.1f} us/call  {:5.2f}x plain".format(label, value * 1e6, value / plain))
    cli = time_commands(args.dir, args.subscribers, args.repeat * 6)
    print("{:40s} {:8.1f} ms/command".format("ddmq publish (command)", cli["plain"] * 1e3))
    print("{:40s} {:8.1f} ms/command  {:5.2f}x plain".format(
        "ddmq publish --topic (command)", cli["topic"] * 1e3, cli["topic"] / cli["plain"]))
    for label in ("plain", "topic", "copies", "cli"):
        shutil.rmtree(os.path.join(args.dir, label), ignore_errors=True)


if __name__ == "__main__":
    main()
