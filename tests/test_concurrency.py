"""Several processes on one queue: exactly once, redelivery after SIGKILL, no partial reads."""

import collections
import hashlib
import json
import multiprocessing
import os
import random
import signal
import time

import pytest

import ddmq
from ddmq import names

CTX = multiprocessing.get_context("fork")


@pytest.fixture
def procs():
    """Collect started processes; kill whatever is still alive when the test ends."""
    started = []
    yield started
    for proc in started:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)


def start(procs, target, *args):
    proc = CTX.Process(target=target, args=args, daemon=True)
    proc.start()
    procs.append(proc)
    return proc


def save(path, data):
    with open(path, "w") as handle:
        json.dump(data, handle)


def load(path):
    with open(path) as handle:
        return json.load(handle)


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


# Workers: they run in forked children and report through files.


def produce(root, index, count, out):
    b = ddmq.broker(root)
    save(out, [b.publish("q", {"producer": index, "n": i}, clean=False).id
               for i in range(count)])


def consume_until_done(root, done, out):
    b = ddmq.broker(root)
    got = []
    while True:
        batch = b.consume("q", n=random.choice([1, 5]), clean=False)
        batch = [batch] if isinstance(batch, ddmq.message) else (batch or [])
        if not batch:
            if done.is_set():
                # Producers are finished: an empty answer from a fresh scan
                # now means every message left is claimed by someone else.
                batch = b.consume("q", n=50, clean=False)
                if not batch:
                    break
            else:
                time.sleep(0.005)
                continue
        for msg in batch:
            got.append(msg.id)
        assert b.ack("q", [msg.filename for msg in batch], clean=False) == \
            [msg.filename for msg in batch]
    save(out, got)


def claim_and_hang(root, conn):
    msg = ddmq.broker(root).consume("q")
    conn.send((msg.id, msg.filename))
    time.sleep(120)


def clean_then_consume(root, conn):
    b = ddmq.broker(root)
    cleaned = b.clean("q", force=True)
    msg = b.consume("q", clean=False)
    conn.send((cleaned, msg.id if msg else None, msg.requeue_counter if msg else None))
    if msg:
        b.ack(msg)


def publish_big_forever(root, seed):
    b = ddmq.broker(root)
    rng = random.Random(seed)
    while True:
        payload = rng.getrandbits(8 * rng.randrange(50_000, 400_000)).to_bytes(
            400_000, "little").hex()
        b.publish("q", {"payload": payload, "sha": digest(payload)}, clean=False)


def verify_until_done(root, done, out):
    b = ddmq.broker(root)
    intact = broken = 0
    while True:
        msg = b.consume("q", clean=False)
        if msg is None:
            if done.is_set() and b.consume("q", n=1, clean=False) is None:
                break
            time.sleep(0.01)
            continue
        body = msg.message
        if isinstance(body, dict) and digest(body.get("payload", "")) == body.get("sha"):
            intact += 1
        else:
            broken += 1
        b.ack(msg, clean=False)
    save(out, {"intact": intact, "broken": broken})


def clean_at(root, shift, barrier):
    b = ddmq.broker(root, clock=lambda: time.time() + shift)
    barrier.wait(30)
    b.clean("q", force=True)


# Tests


def test_four_producers_three_consumers_every_message_exactly_once(b, tmp_path, procs):
    b.create_queue("q")
    per_producer = 600
    done = CTX.Event()
    consumers = [start(procs, consume_until_done, b.root, done, str(tmp_path / "c{}".format(i)))
                 for i in range(3)]
    producers = [start(procs, produce, b.root, i, per_producer, str(tmp_path / "p{}".format(i)))
                 for i in range(4)]
    for proc in producers:
        proc.join(60)
        assert proc.exitcode == 0
    done.set()
    for proc in consumers:
        proc.join(60)
        assert proc.exitcode == 0
    published = [i for p in range(4) for i in load(str(tmp_path / "p{}".format(p)))]
    consumed = [i for c in range(3) for i in load(str(tmp_path / "c{}".format(c)))]
    assert len(published) == len(set(published)) == 4 * per_producer
    counts = collections.Counter(consumed)
    assert [i for i, n in counts.items() if n > 1] == [], "duplicates"
    assert set(published) - set(consumed) == set(), "lost"
    assert set(consumed) == set(published)
    assert b.get_message_list("q") == ([], [])
    assert not os.path.exists(os.path.join(b.root, "q", ".quarantine"))


def test_a_consumer_killed_before_its_ack_has_its_message_redelivered(b, procs):
    b.create_queue("q")
    b.update_settings_file("q", {"message_timeout": 1})
    sent = b.publish("q", "work to redo")
    receiver, sender = CTX.Pipe(False)
    victim = start(procs, claim_and_hang, b.root, sender)
    assert receiver.poll(30)
    msg_id, work = receiver.recv()
    assert msg_id == sent.id
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    assert victim.exitcode == -signal.SIGKILL
    assert b.get_message_list("q") == ([], [work])
    assert ddmq.broker(b.root).consume("q") is None, "claimed and not expired: not served"

    expiry = names.parse_work_name(work)[0]
    time.sleep(max(0.0, expiry - time.time()) + 1.1)
    start(procs, clean_then_consume, b.root, sender)
    assert receiver.poll(30)
    cleaned, again, counter = receiver.recv()
    assert cleaned is True
    assert (again, counter) == (sent.id, 1)


def test_producers_killed_mid_publish_never_leave_a_corrupt_message(b, tmp_path, procs):
    b.create_queue("q")
    done = CTX.Event()
    checkers = [start(procs, verify_until_done, b.root, done, str(tmp_path / "v{}".format(i)))
                for i in range(2)]
    rng = random.Random(7)
    kills = 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        producers = [start(procs, publish_big_forever, b.root, rng.random()) for _ in range(3)]
        time.sleep(rng.uniform(0.05, 0.4))
        for proc in producers:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
            kills += 1
    done.set()
    for proc in checkers:
        proc.join(60)
        assert proc.exitcode == 0
    results = [load(str(tmp_path / "v{}".format(i))) for i in range(2)]
    assert sum(r["broken"] for r in results) == 0
    assert sum(r["intact"] for r in results) >= 5, "the producers did publish"
    assert kills >= 15
    assert not os.path.exists(os.path.join(b.root, "q", ".quarantine"))
    assert b.get_message_list("q") == ([], [])
    # What the killed writers left is private and removed once stale.
    leftovers = os.listdir(os.path.join(b.root, "q", ".tmp"))
    assert all(names.ready_sort_key(name) is None for name in leftovers)
    ddmq.broker(b.root, clock=lambda: time.time() + 7200).clean("q", force=True)
    assert os.listdir(os.path.join(b.root, "q", ".tmp")) == []


def test_concurrent_cleaners_requeue_each_expired_message_exactly_once(b, procs):
    b.create_queue("q")
    for round_number in range(3):
        sent = [b.publish("q", i, clean=False).id for i in range(150)]
        assert len(b.consume("q", n=150, clean=False)) == 150
        barrier = CTX.Barrier(4)
        cleaners = [start(procs, clean_at, b.root, 1000 * (round_number + 1), barrier)
                    for _ in range(4)]
        for proc in cleaners:
            proc.join(60)
            assert proc.exitcode == 0
        ready, work = b.get_message_list("q")
        assert work == []
        ids = [names.READY_NAME.match(name).group(3) for name in ready]
        assert sorted(ids) == sorted(sent), "each requeued once: no loss, no copy"
        again = b.consume("q", n=200, clean=False)
        assert sorted(m.id for m in again) == sorted(sent)
        assert {m.requeue_counter for m in again} == {1}
        b.ack("q", [m.filename for m in again], clean=False)
