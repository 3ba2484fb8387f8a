"""Benchmark waiting consume: latency from publish to a waiting consumer, and idle CPU.

Run from the checkout::

    .venv/bin/python -m benchmarks.waiting --dir /mnt/ddmq-bench [--consumer-dir /other/mount]
                                           [--n 200] [--gap 0.2] [--idle 10] [--json out.json]

A consumer process loops on ``consume(wait=FOREVER)`` and acks; a publisher
process publishes ``--n`` messages, one at a time, each a random 0..``--gap``
seconds after the consumer took the previous one.  The latency is from
``publish`` returning (publisher) to ``consume`` returning (consumer), both
read from the system-wide monotonic clock.  ``--consumer-dir`` lets the
consumer see the same root through another mount (the GlusterFS rig: two
client mounts).  Idle: a consumer waits ``--idle`` seconds on an empty
queue; its user+sys CPU time (getrusage) over that wait.  Both run with
inotify and with ``DDMQ_INOTIFY=0``.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
sys.path.insert(0, CHECKOUT)

from benchmarks.run import describe_filesystem, describe_machine, table  # noqa: E402

CONSUMER = """
import json, resource, sys, time
import ddmq
root, n, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
b = ddmq.broker(root)
if idle:
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    assert b.consume("q", wait=idle) is None
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"cpu_s": cpu, "wall_s": time.monotonic() - started}), flush=True)
    sys.exit()
print("ready", flush=True)
for _ in range(n):
    msg = b.consume("q", wait=ddmq.FOREVER)
    got = time.monotonic()
    b.ack(msg)
    print(json.dumps([int(msg.message), got]), flush=True)
"""


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def latency(pub_root, con_root, n, gap, env):
    import ddmq

    b = ddmq.broker(pub_root)
    consumer = subprocess.Popen([sys.executable, "-c", CONSUMER, con_root, str(n), "0"],
                                stdout=subprocess.PIPE, text=True, env=env)
    assert consumer.stdout.readline().strip() == "ready"
    delays = []
    for seq in range(n):
        time.sleep(random.uniform(0, gap))
        b.publish("q", str(seq))
        published = time.monotonic()
        got_seq, got = json.loads(consumer.stdout.readline())
        assert got_seq == seq
        delays.append(got - published)
    consumer.wait()
    return delays


def idle_cpu(root, seconds, env):
    out = subprocess.run([sys.executable, "-c", CONSUMER, root, "0", str(seconds)],
                         stdout=subprocess.PIPE, text=True, env=env, check=True).stdout
    return json.loads(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where the publisher's root goes")
    parser.add_argument("--consumer-dir", default=None,
                        help="the same folder as --dir seen through another mount")
    parser.add_argument("--n", type=int, default=200, help="messages (200)")
    parser.add_argument("--gap", type=float, default=0.2, help="max random pause (0.2 s)")
    parser.add_argument("--idle", type=float, default=10, help="idle wait seconds (10)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    import ddmq

    parent = args.dir or tempfile.mkdtemp(prefix="ddmq-wait-")
    name = "ddmq-wait-bench-{}".format(os.getpid())
    pub_root = os.path.join(parent, name)
    con_root = os.path.join(args.consumer_dir, name) if args.consumer_dir else pub_root
    ddmq.broker(pub_root, create=True).create_queue("q")
    deadline = time.monotonic() + 10
    while not os.path.isdir(os.path.join(con_root, "q", "work")):
        assert time.monotonic() < deadline, "the consumer's mount never showed the root"
        time.sleep(0.05)
    rows = []
    try:
        for path in ("inotify", "poll"):
            env = dict(os.environ, DDMQ_INOTIFY="1" if path == "inotify" else "0",
                       PYTHONPATH=CHECKOUT)
            delays = latency(pub_root, con_root, args.n, args.gap, env)
            idle = idle_cpu(con_root, args.idle, env)
            rows.append({"path": path, "n": args.n,
                         "p50_ms": statistics.median(delays) * 1000,
                         "p99_ms": percentile(delays, 99) * 1000,
                         "max_ms": max(delays) * 1000,
                         "idle_cpu_pct": 100 * idle["cpu_s"] / idle["wall_s"]})
    finally:
        shutil.rmtree(pub_root, ignore_errors=True)
        if not args.dir:
            shutil.rmtree(parent, ignore_errors=True)
    report = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": describe_machine(), "filesystem": describe_filesystem(pub_root),
              "consumer_filesystem": describe_filesystem(con_root),
              "command": " ".join(["python -m benchmarks.waiting"] + (argv or sys.argv[1:])),
              "rows": rows}
    print("ddmq waiting-consume benchmark  " + report["when"])
    print("machine: {machine}\npublisher: {filesystem}\nconsumer: {consumer_filesystem}\n"
          "command: {command}\n".format(**report))
    print(table("Waiting consume: publish returning -> waiting consume returning; idle CPU",
                ["wake-up", "N", "p50 ms", "p99 ms", "max ms", "idle CPU % of a core"],
                [[r["path"], r["n"], "{:.2f}".format(r["p50_ms"]), "{:.2f}".format(r["p99_ms"]),
                  "{:.1f}".format(r["max_ms"]), "{:.3f}".format(r["idle_cpu_pct"])]
                 for r in rows]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
