"""One benchmark worker process: times one scenario and prints its result as JSON.

Run by :mod:`benchmarks.run`, never imported by it: every measurement runs
in a fresh process, so import costs, caches and peak memory belong to the
scenario alone.  This file is run as a script (``python worker.py ...``) so
that ``import ddmq`` finds whichever ddmq the interpreter has: this
checkout (``run.py`` puts it on ``PYTHONPATH``) or the original 0.9.14 in
its own virtual environment.

Implementations (``--impl``):

``raw``       the floor: plain ``os`` calls, no library.  Publish writes a
              private temp file and renames it into the queue folder; consume
              renames it into ``work/``, reads it and unlinks it.
``ddmq``      this checkout's library.
``original``  ddmq 0.9.14 (from its own virtual environment).

Payloads are ``<10-digit sequence number>`` padded to ``--size`` bytes, so
every consumer can report which messages it got and the parent checks that
each came back exactly once.
"""

import argparse
import json
import os
import resource
import sys
import time

QUEUE = "bench"


def payload(seq, size):
    """Return the unique text of message number ``seq``, ``size`` characters long."""
    head = "{:010d}".format(seq)
    return head + "x" * max(0, size - len(head))


def seq_of(text):
    return int(text[:10])


class Raw:
    """The floor: a file-per-message queue in plain os calls, nothing else."""

    def __init__(self, root, fsync=False):
        self.queue_dir = os.path.join(root, QUEUE)
        self.temp_dir = os.path.join(self.queue_dir, ".tmp")
        self.work_dir = os.path.join(self.queue_dir, "work")
        self.fsync = fsync
        for path in (self.temp_dir, self.work_dir):
            os.makedirs(path, exist_ok=True)
        self.published = 0
        self.names = []
        self.position = 0

    def _sync_dir(self, path):
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def publish(self, seq, text):
        name = "{:019d}.{}".format(seq, os.getpid())
        temp = os.path.join(self.temp_dir, name)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, text.encode())
        if self.fsync:
            os.fsync(fd)
        os.close(fd)
        os.rename(temp, os.path.join(self.queue_dir, name))
        if self.fsync:
            self._sync_dir(self.queue_dir)

    def list_waiting(self, start=0, step=1):
        """Learn the waiting names once (one listing, not timed per message)."""
        names = sorted(n for n in os.listdir(self.queue_dir) if n[0].isdigit())
        self.names = names[start::step] + [n for i, n in enumerate(names) if i % step != start]

    def consume_ack(self):
        """Claim, read and delete the next waiting message; None when there is none."""
        while self.position < len(self.names):
            name = self.names[self.position]
            self.position += 1
            work = os.path.join(self.work_dir, name)
            try:
                os.rename(os.path.join(self.queue_dir, name), work)
            except FileNotFoundError:
                continue  # another raw consumer took it
            if self.fsync:  # both folders, as ddmq does
                self._sync_dir(self.work_dir)
                self._sync_dir(self.queue_dir)
            with open(work, "rb") as handle:
                text = handle.read().decode()
            os.unlink(work)
            if self.fsync:
                self._sync_dir(self.work_dir)
            return text
        return None


class Library:
    """ddmq (this checkout or the original) behind the same three calls as Raw."""

    def __init__(self, root, fsync=False, batch=1):
        import ddmq

        self.broker = ddmq.broker(root, create=True)
        if not os.path.isdir(os.path.join(root, QUEUE)):
            self.broker.create_queue(QUEUE)
        if fsync:
            self.broker.update_settings_file(QUEUE, {"fsync": True})
        self.batch = batch
        self.pending = []
        self.errors = 0

    def publish_all(self, texts):
        if self.batch > 1 and hasattr(self.broker, "publish_many"):
            for start in range(0, len(texts), self.batch):
                self.broker.publish_many(QUEUE, texts[start:start + self.batch])
        else:
            for text in texts:
                self.broker.publish(QUEUE, text)

    def consume_ack(self):
        """Consume, then ack, the next message and return its text; None when empty."""
        if self.batch > 1:
            if not self.pending:
                msgs = self.broker.consume(QUEUE, n=self.batch)
                if not msgs:
                    return None
                self.broker.ack(QUEUE, [m.filename for m in msgs])
                self.pending = [m.message for m in reversed(msgs)]
            return self.pending.pop()
        try:
            msg = self.broker.consume(QUEUE)
        except Exception:  # the original crashes when it loses a race
            self.errors += 1
            return ""
        if msg is None:
            return None
        try:
            self.broker.ack(msg)
        except Exception:
            self.errors += 1
        return msg.message


def make(impl, root, fsync=False, batch=1):
    if impl == "raw":
        return Raw(root, fsync)
    return Library(root, fsync, batch)


def publish_all(queue, texts):
    if isinstance(queue, Raw):
        for seq, text in enumerate(texts):
            queue.publish(seq, text)
    else:
        queue.publish_all(texts)


def peak_rss_mb():
    """Return this process's peak resident memory in MB.

    VmHWM, not getrusage(): Linux carries ru_maxrss over an exec, so a
    worker would report the peak of the parent it was forked from.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def waiting_count(root):
    queue_dir = os.path.join(root, QUEUE)
    return sum(1 for name in os.listdir(queue_dir) if name[:1].isdigit())


def drain(queue, root, limit=None):
    """Consume+ack until empty (or ``limit``); return (sequence numbers, spurious empties)."""
    got = []
    spurious = 0
    if isinstance(queue, Raw):
        queue.list_waiting()
    while limit is None or len(got) < limit:
        text = queue.consume_ack()
        if text is None:
            # "Empty" while messages still wait is a spurious answer: count it, go on.
            if waiting_count(root) and spurious < 1000:
                spurious += 1
                if isinstance(queue, Raw):
                    queue.list_waiting()
                continue
            break
        if text:
            got.append(seq_of(text))
    return got, spurious


def cmd_roundtrip(args):
    queue = make(args.impl, args.dir, args.fsync, args.batch)
    texts = [payload(seq, args.size) for seq in range(args.n)]
    started = time.perf_counter()
    publish_all(queue, texts)
    published = time.perf_counter()
    got, spurious = drain(queue, args.dir)
    done = time.perf_counter()
    return {"publish_s": published - started, "consume_s": done - published,
            "total_s": done - started, "got": got, "spurious": spurious,
            "errors": getattr(queue, "errors", 0), "rss_mb": peak_rss_mb()}


def cmd_fill(args):
    """Publish ``--n`` messages, in chunks (a million texts would not fit a small machine)."""
    queue = make(args.impl, args.dir, batch=1000)
    started = time.perf_counter()
    for first in range(0, args.n, 10_000):
        texts = [payload(seq, args.size) for seq in range(first, min(args.n, first + 10_000))]
        if isinstance(queue, Raw):
            for seq, text in enumerate(texts, first):
                queue.publish(seq, text)
        else:
            queue.publish_all(texts)
    return {"publish_s": time.perf_counter() - started}


def cmd_consume(args):
    queue = make(args.impl, args.dir)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    got, spurious = drain(queue, args.dir, args.n)
    elapsed = time.perf_counter() - started
    return {"consume_s": elapsed, "got": got, "spurious": spurious,
            "errors": getattr(queue, "errors", 0), "rss_mb": peak_rss_mb(),
            "rss_start_mb": rss_before}


def cmd_drain(args):
    """One of several consumers: wait for "go" on stdin, then drain the queue."""
    queue = make(args.impl, args.dir)
    if isinstance(queue, Raw):
        queue.list_waiting(args.index, args.of)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    started = time.monotonic()
    got, spurious = drain_listed(queue, args.dir)
    return {"start": started, "end": time.monotonic(), "got": got, "spurious": spurious,
            "errors": getattr(queue, "errors", 0), "rss_mb": peak_rss_mb()}


def drain_listed(queue, root):
    if not isinstance(queue, Raw):
        return drain(queue, root)
    got = []
    while True:
        text = queue.consume_ack()
        if text is None:
            return got, 0
        got.append(seq_of(text))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["roundtrip", "fill", "consume", "drain"])
    parser.add_argument("--impl", choices=["raw", "ddmq", "original"], required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--fsync", action="store_true")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--of", type=int, default=1)
    args = parser.parse_args()
    result = globals()["cmd_" + args.command](args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
