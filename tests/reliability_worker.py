"""Worker processes and bookkeeping for the reliability tests (stress, chaos, multi-host).

Run as a script, a worker is one producer, consumer or cleaner process::

    python reliability_worker.py produce  --root R --queue Q --log F --prefix p0 --start 0 --count 500
    python reliability_worker.py consume  --root R --queue Q --log F --stop-file S [--action nack]
    python reliability_worker.py clean    --root R --queue Q --log F --barrier B

Every worker appends one line per event to its own log file with a plain
``os.write`` (no fsync: a SIGKILLed process loses nothing it has written, and
the tests never crash the machine).  The lines are::

    B <key>                      producer: about to publish <key>
    P <key>                      producer: publish of <key> returned
    C <key> <work> <counter> ok  consumer: claimed and read <key> (BAD if the payload is damaged)
    a <key> <work>               consumer: about to ack
    A <key> <work> ok|lost       consumer: ack returned (lost: the lease had been taken)
    N <key> <work>               consumer: about to nack
    n <key> <work> ok|lost       consumer: nack returned
    R <id>                       requeued the message with this id (cleaner, nack)
    D <id>                       about to delete the message with this id (limit reached)
    X                            the worker finished normally

The test reads all logs back with :func:`read_logs` and reconciles them with
:func:`reconcile`, which knows which deliveries were cut short by a SIGKILL
(a C line with no A/n line after it in the same log), and whether the kill
came before the ack or nack began (no a/N line): such a message must come back.
"""

import argparse
import collections
import hashlib
import logging
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import ddmq  # noqa: E402


def payload(key, size):
    """Return a message text for ``key`` that carries its own checksum."""
    filler = "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(size))
    return "{}|{}|{}".format(key, filler, _digest(key, filler))


def check_payload(text):
    """Return the key of a message text if its checksum holds, else None."""
    try:
        key, filler, digest = text.split("|")
    except (AttributeError, ValueError):
        return None
    return key if digest == _digest(key, filler) else None


def _digest(key, filler):
    return hashlib.sha256((key + filler).encode()).hexdigest()[:16]


class EventLog:
    """An append-only log of one worker: one ``os.write`` per line, no buffering, no fsync."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, *fields):
        os.write(self.fd, (" ".join(str(f) for f in fields) + "\n").encode())


class _SettleRecorder(logging.Handler):
    """Turn the broker's "Requeuing ..." and "Deleting ..." log records into R and D lines."""

    def __init__(self, events):
        super().__init__(logging.INFO)
        self.events = events

    def emit(self, record):
        if record.msg.startswith("Requeuing"):
            self.events.write("R", record.args[2].rsplit("ddmq", 1)[1])
        elif record.msg.startswith("Deleting %s/%s"):
            self.events.write("D", record.args[1].rsplit("ddmq", 1)[1])


def _record_settling(events):
    logger = logging.getLogger("ddmq")
    for handler in list(logger.handlers):
        if isinstance(handler, _SettleRecorder):
            logger.removeHandler(handler)
    logger.addHandler(_SettleRecorder(events))
    logger.setLevel(logging.INFO)


def _broker(args):
    offset = args.clock_offset
    clock = (lambda: time.time() + offset) if offset else None
    return ddmq.broker(args.root, clock=clock)


def produce(args):
    events = EventLog(args.log)
    b = _broker(args)
    for index in range(args.start, args.start + args.count):
        key = "{}-{}".format(args.prefix, index)
        events.write("B", key)
        b.publish(args.queue, payload(key, random.randint(args.size_min, args.size_max)),
                  priority=random.choice(args.priorities))
        events.write("P", key)
        if args.delay:
            time.sleep(random.uniform(0, 2 * args.delay))
    events.write("X")


def consume(args):
    events = EventLog(args.log)
    _record_settling(events)
    b = _broker(args)
    last_clean = time.monotonic()
    while True:
        if args.clean_every and time.monotonic() - last_clean > args.clean_every:
            b.clean(args.queue, force=True)
            last_clean = time.monotonic()
        if not handle_one(b, args.queue, events, args.action, args.delay):
            if os.path.exists(args.stop_file):
                break
            time.sleep(0.02)
    events.write("X")


def handle_one(b, queue, events, action="ack", delay=0):
    """Consume one message, log it, ack or nack it; return False if the queue was empty."""
    msg = b.consume(queue)
    if msg is None:
        return False
    key = check_payload(msg.message)
    events.write("C", key or "?", msg.filename, msg.requeue_counter,
                 "ok" if key else "BAD:" + repr(msg.message)[:60].replace(" ", "_"))
    if delay:
        time.sleep(random.uniform(0, delay))
    if action == "ack":
        events.write("a", key, msg.filename)
        events.write("A", key, msg.filename, "ok" if b.ack(msg) else "lost")
    else:
        events.write("N", key, msg.filename)
        events.write("n", key, msg.filename, "ok" if b.nack(msg) else "lost")
    return True


def sweep(root, queue, log_path, action="ack", clock_offset=10 ** 5):
    """Requeue every claimed message as if long expired, then drain the queue; log as a consumer.

    Run after every other worker has stopped: whatever is still in ``work/``
    then belongs to a killed consumer.
    """
    events = EventLog(log_path)
    _record_settling(events)
    b = ddmq.broker(root, clock=lambda: time.time() + clock_offset)
    while True:
        b.clean(queue, force=True)
        while handle_one(b, queue, events, action):
            pass
        waiting, claimed = b.get_message_list(queue)
        if not waiting and not claimed:
            break
    events.write("X")


def clean(args):
    events = EventLog(args.log)
    _record_settling(events)
    b = _broker(args)
    b.get_settings(args.queue)
    while args.barrier and not os.path.exists(args.barrier):
        time.sleep(0.001)
    for _ in range(args.repeat):
        b.clean(args.queue, force=True)
    events.write("X")


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["produce", "consume", "clean"])
    parser.add_argument("--root", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--clock-offset", type=float, default=0)
    parser.add_argument("--prefix", default="p")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--size-min", type=int, default=20)
    parser.add_argument("--size-max", type=int, default=400)
    parser.add_argument("--priorities", type=lambda s: [int(p) for p in s.split(",")],
                        default=[999])
    parser.add_argument("--stop-file", default="")
    parser.add_argument("--action", choices=["ack", "nack"], default="ack")
    parser.add_argument("--delay", type=float, default=0)
    parser.add_argument("--clean-every", type=float, default=0)
    parser.add_argument("--barrier", default="")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    {"produce": produce, "consume": consume, "clean": clean}[args.role](args)


# Test-side helpers: starting, killing and counting workers.

LONG = os.environ.get("DDMQ_LONG", "") not in ("", "0")


def scale(ci, long):
    """Return the size of a scenario: ``long`` with DDMQ_LONG=1, else ``ci``."""
    return long if LONG else ci


class Fleet:
    """The worker processes of one test run, each with its own event log and stderr file."""

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.procs = []        # (name, Popen, log path, stderr path)
        self.killed = set()    # pids this fleet SIGKILLed
        self._serial = 0

    def start(self, role, name, *options):
        """Start one worker; ``options`` are its command-line options after the role."""
        import subprocess

        self._serial += 1
        stem = os.path.join(self.directory, "{}.{}".format(name, self._serial))
        err = open(stem + ".err", "wb")
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), role, "--log",
                                 stem + ".log"] + [str(o) for o in options], stderr=err)
        err.close()
        self.procs.append((name, proc, stem + ".log", stem + ".err"))
        return proc

    def live(self, name_prefix=""):
        return [entry for entry in self.procs
                if entry[1].poll() is None and entry[0].startswith(name_prefix)]

    def kill(self, proc):
        import signal

        self.killed.add(proc.pid)
        try:
            proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def wait(self, name_prefix="", timeout=600):
        """Wait for the workers whose name starts with ``name_prefix``; kill them at the deadline."""
        deadline = time.monotonic() + timeout
        for name, proc, _, _ in self.procs:
            if name.startswith(name_prefix):
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except Exception:
                    proc.kill()
                    proc.wait()
                    raise AssertionError("worker {} did not finish in time".format(name)) from None

    def crashes(self):
        """Return the stderr of every worker that exited unsuccessfully without being killed."""
        found = []
        for name, proc, _, err in self.procs:
            proc.wait()
            with open(err, errors="replace") as handle:
                text = handle.read()
            if proc.pid not in self.killed and (proc.returncode != 0 or "Traceback" in text):
                found.append("{} (exit {}): {}".format(name, proc.returncode, text[-2000:]))
        return found

    def logs(self, extra=()):
        return read_logs([entry[2] for entry in self.procs if os.path.exists(entry[2])]
                         + list(extra))

    def next_start(self, name):
        """Return the first index the producer ``name`` has not begun yet (for a restart)."""
        begun = -1
        for entry_name, _, log, _ in self.procs:
            if entry_name == name and os.path.exists(log):
                with open(log) as handle:
                    for line in handle.read().splitlines():
                        if line.startswith("B "):
                            begun = max(begun, int(line.rsplit("-", 1)[1]))
        return begun + 1


# Bookkeeping: what the tests read back.

Delivery = collections.namedtuple("Delivery",
                                  "log key work counter intact settling finished acked")


class Logs:
    """Everything the workers of one run logged, indexed for reconciliation."""

    def __init__(self):
        self.begun = set()
        self.published = set()
        self.deliveries = collections.defaultdict(list)   # key -> [Delivery]
        self.requeued = collections.Counter()             # message id -> R lines
        self.deleted = collections.Counter()              # message id -> D lines
        self.finished_logs = set()                        # logs that end with X


def read_logs(paths):
    """Parse the event logs at ``paths`` into a :class:`Logs`."""
    logs = Logs()
    for path in paths:
        open_claims = {}
        with open(path) as handle:
            lines = handle.read().splitlines()
        for line in lines:
            fields = line.split(" ")
            kind = fields[0]
            if kind == "B":
                logs.begun.add(fields[1])
            elif kind == "P":
                logs.published.add(fields[1])
            elif kind == "C":
                open_claims[fields[2]] = Delivery(path, fields[1], fields[2], int(fields[3]),
                                                  fields[4] == "ok", False, False, False)
            elif kind in ("a", "N"):
                open_claims[fields[2]] = open_claims[fields[2]]._replace(settling=True)
            elif kind in "An":
                claim = open_claims.pop(fields[2])
                logs.deliveries[claim.key].append(
                    claim._replace(finished=True, acked=fields[3] == "ok"))
            elif kind == "R":
                logs.requeued[fields[1]] += 1
            elif kind == "D":
                logs.deleted[fields[1]] += 1
            elif kind == "X":
                logs.finished_logs.add(path)
        for claim in open_claims.values():
            logs.deliveries[claim.key].append(claim)
    return logs


Result = collections.namedtuple(
    "Result", "published begun delivered deliveries duplicates unexplained lost damaged phantoms")


def reconcile(logs):
    """Count what happened to every message, for an ack-everything run.

    A duplicate is a delivery beyond the first of one key; it is explained
    when every delivery of that key but one was cut short (no ack logged).
    """
    all_deliveries = [d for ds in logs.deliveries.values() for d in ds]
    duplicates = unexplained = 0
    for ds in logs.deliveries.values():
        if len(ds) > 1:
            duplicates += len(ds) - 1
            if sum(d.finished and d.acked for d in ds) > 1 or sum(d.finished for d in ds) > 1:
                unexplained += 1
    delivered = set(logs.deliveries)
    return Result(
        published=len(logs.published), begun=len(logs.begun), delivered=len(delivered),
        deliveries=len(all_deliveries), duplicates=duplicates, unexplained=unexplained,
        lost=len(logs.published - delivered),
        damaged=sum(not d.intact for d in all_deliveries),
        phantoms=len(delivered - logs.begun))


if __name__ == "__main__":
    main()
