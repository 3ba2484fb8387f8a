"""Multi-host: producers and consumers on three GlusterFS client mounts of one volume.

The rig (``bash /work/shared/dfs/up-gluster.sh``, as root) serves one volume on
127.0.0.1 and mounts it three times through independent FUSE clients, each
with its own caches: three "hosts" sharing one directory tree.  Without the
rig these tests skip, saying how to bring it up; with ``DDMQ_REQUIRE_DFS=1``
(set by ``.ci/run``) they fail instead, so CI never passes silently without
them.  CI size: 6,000 messages; ``DDMQ_LONG=1``: 21,000.
"""

import os
import random
import subprocess
import sys
import time

import pytest

import ddmq
from conftest import rig_paths
from reliability_worker import Fleet, reconcile, scale, sweep

@pytest.fixture
def roots():
    """Return {mount letter: path} of one fresh ddmq root seen through each of the three mounts."""
    for paths in rig_paths("ddmq-test-"):
        ddmq.broker(paths["a"], create=True).create_queue("q")
        yield paths


def _wait_until_seen(root, key, value, timeout=10):
    """Wait until a broker on ``root`` reads ``key: value`` in the root's ddmq.yaml."""
    deadline = time.monotonic() + timeout
    while ddmq.broker(root).get_config_file().get(key) != value:
        assert time.monotonic() < deadline, "{} never saw {}: {}".format(root, key, value)
        time.sleep(0.1)


def _wait_until_drained(b, queue, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b.get_message_list(queue) == ([], []):
            return True
        time.sleep(0.5)
    return False


@pytest.mark.timeout(scale(300, 3600))
def test_producers_and_consumers_on_three_mounts_exactly_once(roots, tmp_path):
    total = scale(6_000, 21_000)   # a multiple of 3 producers
    fleet = Fleet(str(tmp_path / "logs"))
    stop = str(tmp_path / "stop")
    per = total // 3
    for letter in "abc":
        fleet.start("produce", "producer-" + letter, "--root", roots[letter], "--queue", "q",
                    "--prefix", "p" + letter, "--start", 0, "--count", per,
                    "--priorities", "1,5,999")
    for letter in "abc":
        fleet.start("consume", "consumer-" + letter, "--root", roots[letter], "--queue", "q",
                    "--stop-file", stop)
    started = time.monotonic()
    fleet.wait("producer", timeout=scale(240, 3000))
    open(stop, "w").close()
    fleet.wait("consumer", timeout=120)
    elapsed = time.monotonic() - started

    assert fleet.crashes() == []
    logs = fleet.logs()
    result = reconcile(logs)
    by_mount = {letter: sum(1 for ds in logs.deliveries.values() for d in ds
                            if "consumer-" + letter in d.log) for letter in "abc"}
    print("{:.1f}s".format(elapsed), result, "delivered through each mount:", by_mount)
    assert result.published == total
    assert result.lost == 0
    assert result.duplicates == 0
    assert result.damaged == 0
    assert result.deliveries == total
    assert all(by_mount.values()), by_mount
    assert ddmq.broker(roots["b"]).get_message_list("q") == ([], [])


@pytest.mark.timeout(scale(300, 3600))
def test_consumers_killed_on_one_mount_are_redelivered_through_another(roots, tmp_path):
    total = scale(600, 6_000)
    timeout = 5
    b = ddmq.broker(roots["a"])
    # Set once, before any consumer runs, and waited for on every mount: another
    # mount reads a just-replaced ddmq.yaml as the old file for about a second.
    b.update_settings_file("", {"message_timeout": timeout})
    for letter in "abc":
        _wait_until_seen(roots[letter], "message_timeout", timeout)
    fleet = Fleet(str(tmp_path / "logs"))
    stop = str(tmp_path / "stop")
    fleet.start("produce", "producer-b", "--root", roots["b"], "--queue", "q", "--prefix", "pb",
                "--start", 0, "--count", total)
    # Slow consumers on mount a hold messages when they are killed.
    doomed = [fleet.start("consume", "consumer-a", "--root", roots["a"], "--queue", "q",
                          "--stop-file", stop, "--delay", "0.2") for _ in range(3)]
    for letter in "bc":
        fleet.start("consume", "consumer-" + letter, "--root", roots[letter], "--queue", "q",
                    "--stop-file", stop, "--clean-every", 1, "--delay", "0.01")
    _kill_while_holding_a_message(fleet, doomed, timeout=60)
    fleet.wait("producer", timeout=scale(240, 3000))
    assert _wait_until_drained(b, "q", timeout=scale(180, 1800)), b.get_message_list("q")
    open(stop, "w").close()
    fleet.wait("consumer", timeout=120)

    assert fleet.crashes() == []
    logs = fleet.logs()
    result = reconcile(logs)
    # Killed before their ack began: these must come back (a kill during an
    # ack may or may not have removed the message).
    cut_short = [d for ds in logs.deliveries.values() for d in ds
                 if "consumer-a" in d.log and not d.settling]
    redelivered_elsewhere = [
        d for d in cut_short
        if any(other.finished and other.acked and "consumer-a" not in other.log
               for other in logs.deliveries[d.key])]
    print(result, "held by killed consumers on mount a:", len(cut_short),
          "redelivered through b or c:", len(redelivered_elsewhere))
    assert cut_short, "the killed consumers held no message: the test proved nothing"
    assert len(redelivered_elsewhere) == len(cut_short)
    assert result.lost == 0
    assert result.damaged == 0
    assert result.unexplained == 0
    assert result.duplicates <= sum(not d.finished for ds in logs.deliveries.values() for d in ds)


def _kill_while_holding_a_message(fleet, procs, timeout):
    """SIGKILL each consumer in ``procs`` as soon as its log shows a claim it has not acked."""
    logs = {entry[1].pid: entry[2] for entry in fleet.procs}
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        for proc in list(alive):
            if not os.path.exists(logs[proc.pid]):
                continue   # not started yet
            with open(logs[proc.pid]) as handle:
                lines = handle.read().splitlines()
            if lines and lines[-1].startswith("C "):
                fleet.kill(proc)
                alive.remove(proc)
        time.sleep(0.01)
    for proc in alive:
        fleet.kill(proc)


def _settings_loop(root, seconds, write):
    """Run in a subprocess: rewrite or re-read the queue's ddmq.yaml for ``seconds``."""
    code = """
import sys, time
sys.path.insert(0, {src!r})
import ddmq
root, seconds, write = {root!r}, {seconds!r}, {write!r}
end = time.time() + seconds
n = 0
while time.time() < end:
    n += 1
    if write:
        ddmq.broker(root).update_settings_file("q", {{"cleaned": n}})
    else:
        b = ddmq.broker(root)
        b.get_config_file("q")
        b.get_settings("q")
print(n)
""".format(src=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), root=root,
           seconds=seconds, write=write)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.timeout(120)
def test_settings_replaced_on_one_mount_read_through_others(roots):
    # A file replaced by rename on one client is ESTALE for a moment on the others.
    procs = [_settings_loop(roots["a"], 8, True), _settings_loop(roots["b"], 8, False),
             _settings_loop(roots["c"], 8, False)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "Error" not in err, err[-2000:]


@pytest.mark.timeout(scale(180, 1200))
def test_cleaners_on_three_mounts_requeue_each_expired_message_once(roots, tmp_path):
    count = scale(300, 3_000)
    b = ddmq.broker(roots["a"])
    b.publish_many("q", ["m{}".format(i) for i in range(count)])
    # Claimed through mount a by a consumer whose clock was 1000 s behind: all expired.
    past = ddmq.broker(roots["a"], clock=lambda: time.time() - 1000)
    ids = {msg.id for msg in past.consume("q", n=count)}
    assert len(ids) == count
    fleet = Fleet(str(tmp_path / "logs"))
    barrier, stop = str(tmp_path / "go"), str(tmp_path / "stop")
    for letter in "abc":
        fleet.start("clean", "cleaner-" + letter, "--root", roots[letter], "--queue", "q",
                    "--barrier", barrier, "--repeat", 2)
        fleet.start("consume", "consumer-" + letter, "--root", roots[letter], "--queue", "q",
                    "--stop-file", stop)
    time.sleep(2)
    open(barrier, "w").close()
    fleet.wait("cleaner", timeout=scale(150, 1000))
    assert _wait_until_drained(b, "q", timeout=60), b.get_message_list("q")
    open(stop, "w").close()
    fleet.wait("consumer", timeout=60)

    assert fleet.crashes() == []
    logs = fleet.logs()
    by_cleaner = {letter: sum(1 for _, _, log, _ in fleet.procs if "cleaner-" + letter in log
                              for line in open(log) if line.startswith("R "))
                  for letter in "abc"}
    print("requeued by the cleaner on each mount:", by_cleaner)
    assert set(logs.requeued) == ids
    assert set(logs.requeued.values()) == {1}
    assert all(d.finished and d.acked for ds in logs.deliveries.values() for d in ds)
    assert sum(len(ds) for ds in logs.deliveries.values()) == count


@pytest.mark.timeout(scale(300, 3600))
def test_random_sigkill_on_three_mounts_loses_nothing(roots, tmp_path):
    total = scale(3_000, 20_001)
    seconds = scale(20, 150)
    per = total // 3
    fleet = Fleet(str(tmp_path / "logs"))
    stop = str(tmp_path / "stop")

    def start(name):
        letter = name[-1]
        if name.startswith("p"):
            first = fleet.next_start(name)
            if first < per:
                fleet.start("produce", name, "--root", roots[letter], "--queue", "q",
                            "--prefix", name, "--start", first, "--count", per - first,
                            "--delay", seconds / per)
        else:
            fleet.start("consume", name, "--root", roots[letter], "--queue", "q",
                        "--stop-file", stop, "--delay", "0.02")

    for letter in "abc":
        start("p-" + letter)
        start("c-" + letter)
    kills = 0
    rng = random.Random()
    while fleet.live("p"):
        time.sleep(rng.uniform(0.1, 0.8))
        name, proc, _, _ = rng.choice(fleet.live() or [(None, None, None, None)])
        if proc is None:
            break
        fleet.kill(proc)
        kills += 1
        start(name)
    open(stop, "w").close()
    fleet.wait("c", timeout=120)
    sweep_log = str(tmp_path / "logs" / "sweep.log")
    sweep(roots["b"], "q", sweep_log)

    assert fleet.crashes() == []
    logs = fleet.logs([sweep_log])
    result = reconcile(logs)
    print("kills", kills, result)
    assert kills > 0
    assert result.lost == 0
    assert result.damaged == 0
    assert result.phantoms == 0
    assert result.unexplained == 0
    for ds in logs.deliveries.values():
        for d in ds:
            if not d.settling:
                assert any(other.work != d.work for other in ds), ("never redelivered", d)
    assert ddmq.broker(roots["c"]).get_message_list("q") == ([], [])
