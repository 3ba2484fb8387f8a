"""Dead letters under SIGKILL, and redrive beside concurrent consumers: every message counted."""

import collections
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import ddmq
from ddmq.message import to_file
import lifecycle_worker

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lifecycle_worker.py")


def _start(root, queue, log, stop, clean_every=0):
    return subprocess.Popen([sys.executable, WORKER, root, queue, log, stop, str(clean_every)],
                            stderr=subprocess.DEVNULL)


def _acked(paths):
    """Return a Counter of (queue, id) lines in the ack logs."""
    found = collections.Counter()
    for path in paths:
        if os.path.exists(path):
            with open(path) as handle:
                found.update(tuple(line.split()) for line in handle if line.count(" ") == 1)
    return found


def _drain_as_if_expired(root, queue, log_path):
    """With a clock far ahead, requeue every claim left by killed workers and settle the rest."""
    b = ddmq.broker(root, clock=lambda: time.time() + 10 ** 5)
    with open(log_path, "a") as log:
        while True:
            b.clean(queue, force=True)
            while lifecycle_worker.handle(b, queue, log):
                pass
            if b.get_message_list(queue) == ([], []):
                return


@pytest.mark.timeout(300)
def test_sigkilled_consumers_of_failing_messages_end_each_acked_or_dead_lettered(tmp_path):
    root, stop = str(tmp_path / "root"), str(tmp_path / "stop")
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    b.update_settings_file("q", {"dead_letter": "dlq", "requeue_limit": 2,
                                 "message_timeout": 1})
    sent = {}
    for i in range(240):
        text = ("bad-{}" if i % 3 == 0 else "good-{}").format(i)
        sent[b.publish("q", text).id] = text
    logs = [str(tmp_path / "log{}".format(i)) for i in range(3)]
    workers = [_start(root, "q", log, stop, clean_every=0.3) for log in logs]
    rng, kills = random.Random(9), 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 0.4))
        victim = rng.randrange(len(workers))
        workers[victim].send_signal(signal.SIGKILL)
        workers[victim].wait()
        kills += 1
        workers[victim] = _start(root, "q", logs[victim], stop, clean_every=0.3)
    open(stop, "w").close()
    for worker in workers:
        worker.wait(timeout=120)
    _drain_as_if_expired(root, "q", logs[0])

    acked = {msg_id for _, msg_id in _acked(logs)}
    dead = collections.Counter()
    for msg in b.consume("dlq", n=10 ** 4) or []:
        dead[msg.id] += 1
        assert msg.dead_lettered_from == "q"
    assert kills > 5
    # A kill between a requeue's publish and its unlink leaves two copies, as
    # the protocol promises (duplicate, never lose); so a message may be
    # dead-lettered twice, but only as often as a kill could explain.
    assert sum(count - 1 for count in dead.values()) <= kills
    assert acked | set(dead) == set(sent)                  # none lost
    assert not acked & {i for i, text in sent.items() if text.startswith("bad")}
    assert {i for i, text in sent.items() if text.startswith("bad")} <= set(dead)
    assert len(sent) == len(acked) + len(dead) - len(acked & set(dead))
    assert b.get_message_list("q") == ([], [])


@pytest.mark.timeout(300)
def test_redrive_beside_consumers_of_both_queues_moves_each_message_once(tmp_path):
    root, stop = str(tmp_path / "root"), str(tmp_path / "stop")
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    b.create_queue("dlq")
    ids = set()
    for i in range(300):
        msg = b.publish("dlq", "good-{}".format(i))
        ids.add(msg.id)
    # Give each a source, as a dead-letter move would have.
    for name in b.get_message_list("dlq")[0]:
        path = os.path.join(root, "dlq", name)
        msg = b.get_message(path)
        msg.dead_lettered_from = "q"
        with open(path, "wb") as handle:
            handle.write(to_file(msg))
    logs = {queue: str(tmp_path / ("log-" + queue)) for queue in ("q", "dlq")}
    workers = [_start(root, "q", logs["q"], stop), _start(root, "dlq", logs["dlq"], stop)]
    deadline = time.monotonic() + 30
    while not os.path.exists(logs["dlq"]) or not os.path.getsize(logs["dlq"]):
        assert time.monotonic() < deadline, "the dead-letter consumer never started"
        time.sleep(0.01)
    moved = []
    while b.get_message_list("dlq")[0]:
        moved += b.redrive("dlq", n=7)
    open(stop, "w").close()
    for worker in workers:
        worker.wait(timeout=120)
    seen = _acked(logs.values())
    assert max(seen.values()) == 1
    assert {msg_id for _, msg_id in seen} == ids           # each consumed exactly once
    assert {msg.id for msg in moved} == {msg_id for queue, msg_id in seen if queue == "q"}
    assert moved                                           # both sides got some
    assert any(queue == "dlq" for queue, _ in seen)
