"""Chaos: producers, consumers and cleaners killed with SIGKILL at random, and racing cleaners.

Every worker logs what it does (see ``reliability_worker``), so the test
knows which deliveries a kill cut short: only those may be delivered again.
CI sizes are small; ``DDMQ_LONG=1`` runs the long versions.
"""

import collections
import os
import random
import time

import pytest

import ddmq
from reliability_worker import Fleet, reconcile, scale, sweep

PRODUCERS = 4
CONSUMERS = 3


def _queue(tmp_path, **queue_settings):
    root = str(tmp_path / "root")
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    if queue_settings:
        b.update_settings_file("q", queue_settings)
    return root, b


def _run_with_kills(fleet, root, total, stop, consumer_options, kill_interval, seconds):
    """Run producers and consumers; SIGKILL a random one every ``kill_interval`` s and restart it.

    Producers publish at a pace that makes the run last about ``seconds``.
    """
    per = total // PRODUCERS
    pace = seconds / per

    def start_producer(name):
        start = fleet.next_start(name)
        if start < per:
            fleet.start("produce", name, "--root", root, "--queue", "q", "--prefix", name,
                        "--start", start, "--count", per - start, "--priorities", "1,5,999",
                        "--delay", pace)

    def start_consumer(name):
        fleet.start("consume", name, "--root", root, "--queue", "q", "--stop-file", stop,
                    *consumer_options)

    for p in range(PRODUCERS):
        start_producer("p{}".format(p))
    for c in range(CONSUMERS):
        start_consumer("c{}".format(c))
    kills = collections.Counter()
    rng = random.Random(os.getpid())
    while fleet.live("p"):
        time.sleep(rng.uniform(0.2, 2) * kill_interval)
        victims = fleet.live()
        if not victims:
            break
        name, proc, _, _ = rng.choice(victims)
        fleet.kill(proc)
        kills[name[0]] += 1
        (start_producer if name.startswith("p") else start_consumer)(name)
    open(stop, "w").close()
    fleet.wait("c", timeout=120)
    return kills


@pytest.mark.timeout(scale(240, 3600))
def test_random_sigkill_loses_nothing_and_duplicates_only_cut_short_deliveries(tmp_path):
    total = scale(6_000, 60_000)
    root, b = _queue(tmp_path)
    fleet = Fleet(str(tmp_path / "logs"))
    kills = _run_with_kills(fleet, root, total, str(tmp_path / "stop"),
                            ["--delay", "0.012"], kill_interval=0.25,
                            seconds=scale(20, 300))
    sweep_log = str(tmp_path / "logs" / "sweep.log")
    sweep(root, "q", sweep_log)

    assert fleet.crashes() == []
    logs = fleet.logs([sweep_log])
    result = reconcile(logs)
    cut_short = sum(not d.finished for ds in logs.deliveries.values() for d in ds)
    print("kills", dict(kills), "cut short", cut_short, result)
    assert kills["p"] > 0 and kills["c"] > 0
    assert result.lost == 0
    assert result.damaged == 0
    assert result.phantoms == 0
    assert result.unexplained == 0
    assert result.duplicates <= cut_short
    # A consumer killed before its ack began leaves a message that must come back.
    for ds in logs.deliveries.values():
        for d in ds:
            if not d.settling:
                assert any(other.work != d.work for other in ds), ("never redelivered", d)
    assert result.published >= total - PRODUCERS * kills["p"]
    assert b.get_message_list("q") == ([], [])
    assert os.listdir(os.path.join(root, "q", ".tmp")) == []   # killed writers' files cleaned


@pytest.mark.timeout(scale(120, 1200))
def test_racing_cleaners_requeue_each_expired_message_exactly_once(tmp_path):
    count = scale(400, 4_000)
    cleaners = 4
    root, b = _queue(tmp_path)
    for i in range(count):
        b.publish("q", "m{}".format(i))
    # Claimed by a consumer whose clock was 1000 s behind: every lease is already expired.
    past = ddmq.broker(root, clock=lambda: time.time() - 1000)
    ids = {msg.id for msg in past.consume("q", n=count)}
    assert len(ids) == count

    fleet = Fleet(str(tmp_path / "logs"))
    barrier, stop = str(tmp_path / "go"), str(tmp_path / "stop")
    for i in range(cleaners):
        fleet.start("clean", "cleaner{}".format(i), "--root", root, "--queue", "q",
                    "--barrier", barrier, "--repeat", 3)
    for i in range(2):
        fleet.start("consume", "consumer{}".format(i), "--root", root, "--queue", "q",
                    "--stop-file", stop)
    time.sleep(1.5)   # let every cleaner start and wait at the barrier
    open(barrier, "w").close()
    fleet.wait("cleaner", timeout=60)
    open(stop, "w").close()
    fleet.wait("consumer", timeout=60)

    assert fleet.crashes() == []
    logs = fleet.logs()
    assert set(logs.requeued) == ids
    assert set(logs.requeued.values()) == {1}
    racers = sum(1 for _, _, log, _ in fleet.procs
                 if log in logs.finished_logs and "cleaner" in log
                 and any(line.startswith("R ") for line in open(log)))
    print("cleaners that requeued something:", racers)
    delivered = collections.Counter()
    for key_deliveries in logs.deliveries.values():
        for d in key_deliveries:
            assert d.finished and d.acked
            delivered[d.key] += 1
    assert b.get_message_list("q") == ([], [])


@pytest.mark.timeout(scale(240, 3600))
def test_requeue_limit_holds_under_chaos(tmp_path):
    total = scale(1_200, 12_000)
    limit = 2
    root, b = _queue(tmp_path, requeue_limit=limit)
    fleet = Fleet(str(tmp_path / "logs"))
    kills = _run_with_kills(fleet, root, total, str(tmp_path / "stop"),
                            ["--action", "nack", "--delay", "0.012"], kill_interval=0.25,
                            seconds=scale(15, 200))
    sweep_log = str(tmp_path / "logs" / "sweep.log")
    sweep(root, "q", sweep_log, action="nack")

    assert fleet.crashes() == []
    logs = fleet.logs([sweep_log])
    assert logs.published - set(logs.deliveries) == set()
    deliveries = sum(len(ds) for ds in logs.deliveries.values())
    over = 0
    for key, ds in logs.deliveries.items():
        assert all(d.intact for d in ds)
        counters = collections.Counter(d.counter for d in ds)
        assert max(counters) <= limit, (key, ds)
        for counter, times in counters.items():
            # A copy appears only where a nack or requeue was cut short before
            # it removed the claimed file: once per cut-short delivery below.
            forks = sum(1 for d in ds if not d.finished and d.counter < counter)
            assert times <= 1 + forks, (key, ds)
        over += max(0, len(ds) - (limit + 1))
        # Every message ended deleted at its limit (by a nack or a clean), whether or
        # not its last delivery was logged: a kill inside consume() leaves none.
        assert logs.deleted[ds[0].work.rsplit("ddmq", 1)[1]] >= 1, (key, ds)
    print("kills", dict(kills), "messages", len(logs.deliveries), "deliveries", deliveries,
          "beyond limit+1 (forked by kills)", over)
    assert kills["c"] > 0
    assert b.get_message_list("q") == ([], [])
