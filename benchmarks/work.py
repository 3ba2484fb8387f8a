"""Benchmark ``ddmq work -j 2 -- true`` against ``xargs -P 2 -n 1 true`` and GNU parallel.

Run from the checkout::

    .venv/bin/python -m benchmarks.work --dir /mnt/ddmq-bench [--n 2000] [--repeat 3]

All three run ``true`` once per item, two at a time, over the same N items;
ddmq's items are N messages published beforehand (not timed).  Each figure is
the median wall time of ``--repeat`` runs, also given as a ratio to xargs (the
fork/exec floor).  Without GNU parallel its row says "not installed".
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.run import CHECKOUT, describe_filesystem, describe_machine, table


def timed(argv, **kwargs):
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    if done.returncode != 0:
        raise RuntimeError("{} failed with status {}".format(argv[0], done.returncode))
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to run (default: a temp folder)")
    parser.add_argument("--n", type=int, default=2000, help="items (2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (3)")
    args = parser.parse_args(argv)
    sys.path.insert(0, CHECKOUT)
    import ddmq

    base = tempfile.mkdtemp(prefix="ddmq-bench-work-", dir=args.dir)
    items = [str(i) for i in range(args.n)]
    env = dict(os.environ, PYTHONPATH=CHECKOUT)
    times = {"ddmq work -j 2": [], "xargs -P 2 -n 1": [], "parallel -j 2": []}
    parallel = shutil.which("parallel")
    try:
        for run in range(args.repeat):
            root = os.path.join(base, "run{}".format(run))
            ddmq.broker(root, create=True).publish_many("q", items)
            times["ddmq work -j 2"].append(timed(
                [sys.executable, "-m", "ddmq", "work", "-j", "2", "--idle-exit", "0", "-s",
                 root, "q", "--", "true"], env=env))
            times["xargs -P 2 -n 1"].append(_xargs(items))
            if parallel:
                times["parallel -j 2"].append(timed([parallel, "-j", "2", "true", ":::"] + items))
            shutil.rmtree(root)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    floor = statistics.median(times["xargs -P 2 -n 1"])
    lines = []
    for name, values in times.items():
        if not values:
            lines.append([name, args.n, "-", "-", "-", "not installed (skipped)"])
            continue
        wall = statistics.median(values)
        lines.append([name, args.n, "{:.3f}".format(wall), "{:,.0f}".format(args.n / wall),
                      "{:.2f}x".format(wall / floor), ""])
    print("machine: {}; filesystem: {}".format(describe_machine(), describe_filesystem(
        args.dir or tempfile.gettempdir())))
    print(table("Run `true` once per item, 2 at a time (median wall s)",
                ["runner", "N", "wall", "tasks/s", "vs xargs", "note"], lines))
    return 0


def _xargs(items):
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", "2", "-n", "1", "true"], input="\n".join(items).encode(),
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
