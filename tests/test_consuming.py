"""The worker API (messages, processing, work), lease heartbeats and touch, with real processes."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ddmq
from ddmq.errors import LeaseLostError

_SCRIPT = os.path.join(os.path.dirname(sys.executable), "ddmq")
DDMQ = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "ddmq"]


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "ddmq")
    ddmq.broker(root, create=True).create_queue("q")
    return root


def cleaner(root, seconds):
    """Start a process that force-cleans queue q every 0.2 s for ``seconds``."""
    code = textwrap.dedent("""
        import sys, time
        import ddmq
        b = ddmq.broker(sys.argv[1])
        end = time.monotonic() + float(sys.argv[2])
        while time.monotonic() < end:
            b.clean("q", force=True)
            time.sleep(0.2)
    """)
    return subprocess.Popen([sys.executable, "-c", code, root, str(seconds)])


def test_messages_iterates_until_the_wait_runs_out(root):
    b = ddmq.broker(root)
    b.publish_many("q", ["a", "b", "c"])
    started = time.monotonic()
    got = []
    for msg in b.messages("q", wait=0.5):
        got.append(msg.message)
        b.ack(msg)
    assert got == ["a", "b", "c"] and time.monotonic() - started >= 0.5
    assert b.get_message_list("q") == ([], [])


def test_messages_without_wait_drains_and_max_messages_stops(root):
    b = ddmq.broker(root)
    b.publish_many("q", ["a", "b", "c"])
    assert [m.message for m in b.messages("q", max_messages=2)] == ["a", "b"]
    assert len(b.get_message_list("q")[0]) == 1  # the caller acks: two still claimed
    with pytest.raises(ddmq.DdmqError):
        b.messages("nope")


def test_processing_acks_on_success_and_yields_none_when_nothing_came(root):
    b = ddmq.broker(root)
    b.publish("q", "x")
    p = b.processing("q")
    with p as msg:
        assert msg.message == "x"
    assert p.outcome == "acked" and b.get_message_list("q") == ([], [])
    p = b.processing("q", wait=0.2)
    with p as msg:
        assert msg is None
    assert p.outcome is None


def test_processing_nacks_and_reraises_on_exception(root):
    b = ddmq.broker(root)
    b.publish("q", "x")
    p = b.processing("q")
    with pytest.raises(ZeroDivisionError):
        with p:
            raise ZeroDivisionError("division by zero")
    assert p.outcome == "nacked"
    [again] = [m for m in b.messages("q")]
    assert again.message == "x" and again.requeue_counter == 1


def test_heartbeat_keeps_a_block_longer_than_message_timeout_alive_with_a_cleaner(root):
    b = ddmq.broker(root)
    b.update_settings_file("q", {"message_timeout": 3})
    b.publish("q", "long")
    clean = cleaner(root, 9)
    p = b.processing("q")
    with p as msg:
        first = msg.filename
        time.sleep(8)           # well over the 3 s lease, cleaned every 0.2 s meanwhile
        assert msg.filename != first
        assert ddmq.broker(root).get_message_list("q") == ([], [msg.filename])
    clean.wait(timeout=60)
    assert p.outcome == "acked"
    assert b.get_message_list("q") == ([], [])


def test_a_lost_lease_makes_the_end_of_the_block_raise_and_skips_the_ack(root):
    b = ddmq.broker(root)
    b.update_settings_file("q", {"message_timeout": 3})
    b.publish("q", "x")
    p = b.processing("q")
    with pytest.raises(LeaseLostError):
        with p as msg:
            # Another process takes the message over (as a cleaner would an expired one).
            subprocess.run(DDMQ + ["nack", "-r", root, "q", msg.filename], check=True,
                           capture_output=True)
            time.sleep(2.5)     # the next heartbeat finds it gone
    assert p.outcome == "lost"
    assert len(b.get_message_list("q")[0]) == 1, "the requeued copy must stay"


def test_work_counts_acks_and_nacks_and_stops_when_idle(root):
    b = ddmq.broker(root)
    b.publish_many("q", [str(i) for i in range(40)], requeue=False)
    seen = []

    def task(msg):
        seen.append(msg.message)
        if int(msg.message) % 10 == 0:
            raise ValueError("task failed")

    assert b.work("q", task, jobs=3, idle_exit=0.5) == {"acked": 36, "nacked": 4, "lost": 0}
    assert sorted(seen, key=int) == [str(i) for i in range(40)]
    assert b.get_message_list("q") == ([], [])


def test_work_max_messages_and_two_jobs_run_at_once(root):
    b = ddmq.broker(root)
    b.publish_many("q", [str(i) for i in range(10)])
    running, peak, lock = [0], [0], threading.Lock()

    def task(msg):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1

    assert b.work("q", task, jobs=2, max_messages=4) == {"acked": 4, "nacked": 0, "lost": 0}
    assert peak[0] == 2
    assert len(b.get_message_list("q")[0]) == 6


def test_work_heartbeat_outlives_message_timeout_with_a_cleaner(root):
    b = ddmq.broker(root)
    b.update_settings_file("q", {"message_timeout": 3})
    b.publish_many("q", ["a", "b"])
    clean = cleaner(root, 8)
    runs = []
    counts = b.work("q", lambda m: (runs.append(m.message), time.sleep(6)), jobs=2, idle_exit=0.5)
    clean.wait(timeout=60)
    assert counts == {"acked": 2, "nacked": 0, "lost": 0} and sorted(runs) == ["a", "b"]


def test_work_stop_event_ends_a_forever_wait(root):
    b = ddmq.broker(root)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert b.work("q", lambda m: None, jobs=2, stop=stop) == {"acked": 0, "nacked": 0, "lost": 0}


def test_cli_touch_prints_the_new_name_and_a_lost_lease_is_status_4(root):
    b = ddmq.broker(root)
    b.publish("q", "x")
    msg = b.consume("q")
    done = subprocess.run(DDMQ + ["touch", "-t", "100", root, "q", msg.filename],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    new = done.stdout.strip()
    assert b.get_message_list("q")[1] == [new] and new != msg.filename
    assert abs(int(new[:10]) - (time.time() + 100)) < 5
    done = subprocess.run(DDMQ + ["touch", root, "q", msg.filename], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 4 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "cannot renew" in done.stderr


RACER = textwrap.dedent("""
    import json, random, sys
    import ddmq
    from ddmq.errors import LeaseLostError
    root, role = sys.argv[1], sys.argv[2]
    b = ddmq.broker(root)
    names = json.loads(sys.stdin.readline())
    print("ready", flush=True)
    sys.stdin.readline()
    won = []
    if role == "touch":
        random.shuffle(names)
        for name in names:
            try:
                won.append(b.touch("q", name, timeout=600))
            except LeaseLostError:
                pass
    else:
        b.clean("q", force=True)
    print(json.dumps(won), flush=True)
""")


def test_touch_racing_a_forced_clean_has_exactly_one_winner_per_message(root):
    b = ddmq.broker(root)
    b.update_settings_file("q", {"message_timeout": 0})
    total = 1000
    b.publish_many("q", [str(i) for i in range(total)])
    claimed = b.consume("q", n=total)
    ids = {m.id: m.message for m in claimed}
    time.sleep(1.2)  # every lease expired: the cleaner wants them all
    procs = [subprocess.Popen([sys.executable, "-c", RACER, root, role], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for role in ("touch", "clean")]
    for proc in procs:
        proc.stdin.write(json.dumps([m.filename for m in claimed]) + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    touched = json.loads(procs[0].communicate(timeout=120)[0])
    procs[1].communicate(timeout=120)
    waiting, work = b.get_message_list("q")
    assert sorted(work) == sorted(touched), "a touch that won keeps the message claimed"
    touch_ids = {name.rsplit("ddmq", 1)[1] for name in touched}
    clean_ids = {name.rsplit("ddmq", 1)[1] for name in waiting}
    print("touch won {}, clean won {}".format(len(touch_ids), len(clean_ids)))
    assert not touch_ids & clean_ids
    assert touch_ids | clean_ids == set(ids)
    assert len(touched) + len(waiting) == total


def test_processing_interrupted_by_ctrl_c_requeues_at_once(root):
    b = ddmq.broker(root)
    b.update_settings_file("q", {"requeue_delay": 300})   # for failures, not interruptions
    b.publish("q", "job")
    with pytest.raises(KeyboardInterrupt):
        with b.processing("q") as msg:
            raise KeyboardInterrupt
    assert b.get_delayed_list("q") == []
    again = b.consume("q")
    assert again is not None and again.id == msg.id
