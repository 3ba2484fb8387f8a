"""Benchmarks of the message-lifecycle features (issue 9), as ratios measured in one run.

    .venv/bin/python -m benchmarks.lifecycle --dir /mnt/ddmq-bench [--n 10000]
                                             [--delayed 100000] [--repeat 3]

* ``delayed``: consume+ack of ``n`` messages with ``--delayed`` delayed
  messages (due in a day) in the queue, against the same with none.
* ``history``: consume+ack of ``n`` messages whose files carry every
  delivery-history and dead-letter field, against 1.0 files without them.
* ``promotion``: ``n`` messages fall due at once while 2 consumer processes
  compete to promote and consume them; each must be delivered once.

Each timing runs in a fresh process, the two sides of a ratio alternate,
and each figure is the median of ``--repeat`` runs.  Use a fresh, idle
local filesystem (say a loop-mounted ext4).
"""

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)

#: The keys of a ddmq 1.0 message file.
V1_FIELDS = ("queue", "message", "timeout", "id", "priority", "queue_number", "filename",
             "requeue", "requeue_prio", "requeue_counter", "requeue_limit")


def _child(*args):
    """Run this module in a fresh process with ``args``; return its JSON answer."""
    env = dict(os.environ, PYTHONPATH=CHECKOUT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "benchmarks.lifecycle", "--child"] + list(args),
                         env=env, check=True, capture_output=True, text=True, cwd=CHECKOUT)
    return json.loads(out.stdout)


def child_drain(root, log=None):
    """Consume+ack everything in queue q; return the seconds taken (and log ids)."""
    import ddmq

    b = ddmq.broker(root)
    ids = []
    started = time.perf_counter()
    while True:
        msg = b.consume("q", skip_cleaning=True)
        if msg is None:
            break
        ids.append(msg.id)
        b.ack(msg, skip_cleaning=True)
    seconds = time.perf_counter() - started
    if log:
        with open(log, "w") as handle:
            handle.write("\n".join(ids))
    return {"seconds": seconds, "count": len(ids)}


def child_promote(root, log, due):
    """Wait for messages falling due at ``due``, consume+ack until none left; log ids."""
    import ddmq

    b = ddmq.broker(root)
    ids = []
    while True:
        msg = b.consume("q", skip_cleaning=True)
        if msg is None:
            if time.time() > due + 0.5 and not b.get_delayed_list("q") \
                    and not b.get_message_list("q")[0]:
                break
            time.sleep(0.01)
            continue
        ids.append(msg.id)
        b.ack(msg, skip_cleaning=True)
    with open(log, "w") as handle:
        handle.write("\n".join(ids))
    return {"count": len(ids)}


def _fill(root, n, history=False):
    import ddmq

    b = ddmq.broker(root, create=True)
    sent = b.publish_many("q", ["x" * 100] * n, skip_cleaning=True)
    for msg in sent:
        path = os.path.join(root, msg.filename)
        with open(path) as handle:
            fields = json.load(handle)
        if history:
            fields.update(delivery_count=3, first_delivered_at=fields["published_at"] + 1,
                          last_delivered_at=fields["published_at"] + 60,
                          last_nack_reason="exit status 1: " + "e" * 100, dead_letter="dlq",
                          dead_lettered_from="other", dead_lettered_at=fields["published_at"],
                          dead_lettered_reason="requeue limit 3 reached",
                          not_before=fields["published_at"] + 30)
        else:
            fields = {key: fields[key] for key in V1_FIELDS}
        with open(path, "w") as handle:
            json.dump(fields, handle)


def bench_delayed(base, n, delayed, repeat):
    import ddmq

    with_root, without_root = os.path.join(base, "with"), os.path.join(base, "without")
    b = ddmq.broker(with_root, create=True)
    for start in range(0, delayed, 10000):
        b.publish_many("q", ["later"] * min(10000, delayed - start), delay=86400,
                       skip_cleaning=True)
    ddmq.broker(without_root, create=True).create_queue("q")
    times = collections.defaultdict(list)
    for _ in range(repeat):
        for label, root in (("none", without_root), ("delayed", with_root)):
            ddmq.broker(root).publish_many("q", ["x" * 100] * n, skip_cleaning=True)
            result = _child("drain", root)
            assert result["count"] == n, result
            times[label].append(result["seconds"] / n)
    assert len(ddmq.broker(with_root).get_delayed_list("q")) == delayed
    return times


def bench_history(base, n, repeat):
    times = collections.defaultdict(list)
    for run in range(repeat):
        for label, history in (("1.0 files", False), ("full history", True)):
            root = os.path.join(base, "history-{}-{}".format(run, int(history)))
            _fill(root, n, history)
            result = _child("drain", root)
            assert result["count"] == n, result
            times[label].append(result["seconds"] / n)
            shutil.rmtree(root)
    return times


def bench_promotion(base, n):
    import ddmq

    root = os.path.join(base, "promotion")
    b = ddmq.broker(root, create=True)
    due = time.time() + 5
    ids = {msg.id for msg in b.publish_many("q", ["x"] * n, not_before=due, skip_cleaning=True)}
    logs = [os.path.join(base, "promote-{}.log".format(i)) for i in range(2)]
    env = dict(os.environ, PYTHONPATH=CHECKOUT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.lifecycle", "--child", "promote",
                               root, log, repr(due)], env=env, cwd=CHECKOUT,
                              stdout=subprocess.DEVNULL) for log in logs]
    for proc in procs:
        proc.wait()
    seconds = time.time() - due
    seen = collections.Counter()
    per_process = []
    for log in logs:
        with open(log) as handle:
            got = [line for line in handle.read().split("\n") if line]
        per_process.append(len(got))
        seen.update(got)
    return {"messages": n, "delivered": sum(seen.values()), "distinct": len(seen),
            "all_published_delivered": set(seen) == ids,
            "delivered_twice": sum(1 for count in seen.values() if count > 1),
            "per_process": per_process, "seconds_after_due": round(seconds, 2)}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        command, args = argv[1], argv[2:]
        if command == "drain":
            result = child_drain(*args)
        else:
            result = child_promote(args[0], args[1], float(args[2]))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="a fresh folder on the filesystem to test")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--delayed", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="delayed,history,promotion")
    args = parser.parse_args(argv)
    base = os.path.join(args.dir, "ddmq-lifecycle-{}".format(os.getpid()))
    os.makedirs(base)
    report = {}
    try:
        if "delayed" in args.only:
            times = bench_delayed(base, args.n, args.delayed, args.repeat)
            report["delayed"] = _ratio(times, "none", "delayed", 1.1)
        if "history" in args.only:
            times = bench_history(base, args.n, args.repeat)
            report["history"] = _ratio(times, "1.0 files", "full history", 1.05)
        if "promotion" in args.only:
            report["promotion"] = bench_promotion(base, args.n)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


def _ratio(times, base_label, label, target):
    base, other = statistics.median(times[base_label]), statistics.median(times[label])
    return {base_label + " us/msg": round(base * 1e6, 1), label + " us/msg": round(other * 1e6, 1),
            "ratio": round(other / base, 3), "target": target, "met": other / base <= target,
            "runs": {key: [round(v * 1e6, 1) for v in values] for key, values in times.items()}}


if __name__ == "__main__":
    sys.exit(main())
