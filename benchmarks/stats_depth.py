"""Benchmark broker.stats on a deep queue against one listing of the queue and its work/.

Run from the checkout, on a fresh local filesystem::

    .venv/bin/python -m benchmarks.stats_depth --dir /mnt/ddmq-bench [--depth 100000]
                                               [--claimed 1000] [--repeat 5]

The queue is filled with empty files under valid message names (``stats``
reads names only, never contents, so the contents do not change what is
measured): ``--depth`` waiting and ``--claimed`` claimed.  Each figure is
the median of ``--repeat`` runs, cache warm (one untimed run first), and
is shown as a ratio to the floor ``os.listdir(queue) + os.listdir(work/)``
measured in the same run, interleaved with it.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import ddmq  # noqa: E402
from ddmq import names  # noqa: E402


def fill(root, depth, claimed):
    b = ddmq.broker(root, create=True)
    b.create_queue("deep")
    queue_dir = os.path.join(root, "deep")
    expiry = time.time() + 3600
    for i in range(depth + claimed):
        ready = names.ready_name(999, names.new_queue_number(), "{:032x}".format(i))
        path = (os.path.join(queue_dir, ready) if i < depth else
                os.path.join(queue_dir, "work", names.work_name(names.new_lease(expiry), ready)))
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    return b, queue_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--depth", type=int, default=100_000)
    parser.add_argument("--claimed", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="ddmq-stats-", dir=args.dir)
    try:
        started = time.perf_counter()
        b, queue_dir = fill(os.path.join(root, "r"), args.depth, args.claimed)
        filled = time.perf_counter() - started
        work_dir = os.path.join(queue_dir, "work")

        def floor():
            os.listdir(queue_dir)
            os.listdir(work_dir)

        def stats():
            return b.stats("deep")

        figures = stats()
        assert (figures["waiting"], figures["work"]) == (args.depth, args.claimed), figures
        floor()
        floors, times = [], []
        for _ in range(args.repeat):
            for func, into in ((floor, floors), (stats, times)):
                t = time.perf_counter()
                func()
                into.append(time.perf_counter() - t)
        f, s = statistics.median(floors), statistics.median(times)
        print("depth {} waiting + {} claimed (filled in {:.0f} s), median of {}".format(
            args.depth, args.claimed, filled, args.repeat))
        print("  listdir(queue) + listdir(work): {:.4f} s".format(f))
        print("  broker.stats('deep'):           {:.4f} s  = {:.2f}x the listings".format(s, s / f))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
