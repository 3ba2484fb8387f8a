"""Waiting consume: ``consume(wait=...)`` and ``ddmq consume --wait``, in real processes.

Every waiting test runs twice: with the inotify wake-up, and with
``DDMQ_INOTIFY=0`` (the poll alone, as on a network filesystem).  Time
bounds are generous: they catch "never woke up" or "waited the whole wait",
not speed (the benchmark measures that).
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ddmq
from ddmq.errors import InvalidInputError, QueueNotFoundError

HERE = os.path.dirname(os.path.abspath(__file__))
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "ddmq")
DDMQ = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "ddmq"]


@pytest.fixture(params=["inotify", "poll"])
def path(request, monkeypatch):
    """Which wake-up path the waiters use: this process's and its children's environment."""
    monkeypatch.setenv("DDMQ_INOTIFY", "1" if request.param == "inotify" else "0")
    return request.param


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "ddmq")
    ddmq.broker(root, create=True).create_queue("q")
    return root


def publisher(root, text, delay):
    """Start a process that publishes ``text`` after ``delay`` s and prints when publish returned."""
    code = textwrap.dedent("""
        import sys, time
        import ddmq
        b = ddmq.broker(sys.argv[1])
        time.sleep(float(sys.argv[3]))
        b.publish("q", sys.argv[2])
        print(time.time(), flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", code, root, text, str(delay)],
                            stdout=subprocess.PIPE, text=True)


def test_the_inotify_path_really_has_a_watch(root, path):
    from ddmq import wait

    with wait._Watch(os.path.join(root, "q")) as watch:
        assert (watch.fd is not None) == (path == "inotify")


def test_cli_wait_returns_a_message_published_by_another_process(root, path):
    started = time.time()
    consumer = subprocess.Popen(DDMQ + ["consume", "--wait", "30", "--format", "json", root, "q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = publisher(root, "late", 1.0)
    out, err = consumer.communicate(timeout=60)
    returned = time.time()
    published = float(pub.communicate(timeout=60)[0])
    assert consumer.returncode == 0, err
    assert '"message": "late"' in out
    assert published - started >= 1.0
    # Within the second after the publish (poll_interval is 1 s), with room for a loaded
    # machine; a waiter that never woke would have taken the whole 30 s.
    assert returned - published < 3.0, returned - published
    assert ddmq.broker(root).get_message_list("q")[0] == []


def test_api_wait_returns_a_message_published_by_another_process(root, path):
    b = ddmq.broker(root)
    pub = publisher(root, "late", 1.0)
    msg = b.consume("q", wait=30)
    returned = time.time()
    published = float(pub.communicate(timeout=60)[0])
    assert msg is not None and msg.message == "late"
    assert returned - published < 3.0, returned - published
    assert b.ack(msg) == [msg.filename]


def test_cli_wait_on_an_empty_queue_returns_after_the_wait_with_status_3(root, path):
    started = time.monotonic()
    done = subprocess.run(DDMQ + ["consume", "--wait", "1.5", root, "q"], capture_output=True,
                          text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr == "ddmq consume: no message in queue 'q' after waiting 1.5 s\n"
    assert 1.5 <= elapsed < 15, elapsed


def test_api_wait_on_an_empty_queue_returns_none_or_an_empty_list(root, path):
    b = ddmq.broker(root)
    started = time.monotonic()
    assert b.consume("q", wait=0.5) is None
    assert b.consume("q", n=3, wait=0.5) == []
    assert 1.0 <= time.monotonic() - started < 10


def test_wait_with_n_returns_what_can_be_claimed_once_one_can(root, path):
    b = ddmq.broker(root)
    code = "import ddmq, sys, time; time.sleep(0.5); ddmq.broker(sys.argv[1]).publish_many('q', ['a', 'b'])"
    pub = subprocess.Popen([sys.executable, "-c", code, root])
    got = b.consume("q", n=5, wait=30)
    pub.wait(timeout=60)
    # Both arrive from one process within microseconds; a look may see one or both.
    got += b.consume("q", n=5)
    assert sorted(m.message for m in got) == ["a", "b"]


def test_cli_forever_wait_is_ended_quietly_by_ctrl_c(root, path):
    consumer = subprocess.Popen(DDMQ + ["consume", "--wait", "forever", root, "q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert consumer.poll() is None, "a forever wait returned on an empty queue"
    consumer.send_signal(signal.SIGINT)
    out, err = consumer.communicate(timeout=30)
    assert (consumer.returncode, out, err) == (130, "", "")


def test_cli_forever_wait_takes_a_message_published_later(root, path):
    consumer = subprocess.Popen(DDMQ + ["consume", "-w", "forever", root, "q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    publisher(root, "x", 2.5).wait(timeout=60)
    out, err = consumer.communicate(timeout=30)
    assert consumer.returncode == 0 and "message = x" in out, err


def test_a_queue_removed_during_a_wait_is_an_error_not_a_hang(root, path):
    b = ddmq.broker(root)
    code = "import ddmq, sys, time; time.sleep(0.5); ddmq.broker(sys.argv[1]).delete_queue('q')"
    remover = subprocess.Popen([sys.executable, "-c", code, root])
    started = time.monotonic()
    with pytest.raises(QueueNotFoundError):
        b.consume("q", wait=60)
    assert time.monotonic() - started < 15
    remover.wait(timeout=60)


def test_cli_reports_a_queue_removed_during_a_wait_in_one_line(root, path):
    consumer = subprocess.Popen(DDMQ + ["consume", "--wait", "60", root, "q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    ddmq.broker(root).delete_queue("q")
    out, err = consumer.communicate(timeout=30)
    assert consumer.returncode == 1 and out == ""
    assert err.count("\n") == 1 and "disappeared" in err and "Traceback" not in err


def test_a_stop_event_ends_a_wait_early(root, path):
    b = ddmq.broker(root)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    assert b.consume("q", wait=ddmq.FOREVER, stop=stop) is None
    assert time.monotonic() - started < 5


def test_a_wait_also_requeues_expired_messages_and_takes_them(root, path, monkeypatch):
    # A long wait goes on cleaning the queue (at most once a minute), so a
    # message whose consumer died comes back to the waiter.
    b = ddmq.broker(root)
    b.update_settings_file("q", {"message_timeout": 0})
    b.publish("q", "orphan")
    dead = ddmq.broker(root).consume("q")
    assert dead is not None
    monkeypatch.setattr(sys.modules["ddmq.housekeeping"], "CLEAN_INTERVAL", 0.5)
    waiter = ddmq.broker(root)
    msg = waiter.consume("q", wait=30)
    assert msg is not None and msg.message == "orphan" and msg.requeue_counter == 1


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("-inf"), True, False, "5", [1],
                                 -10 ** 400])
def test_bad_wait_values_are_refused_before_anything_changes(root, bad):
    b = ddmq.broker(root)
    b.publish("q", "keep")
    with pytest.raises(InvalidInputError, match="wait must be"):
        b.consume("q", wait=bad)
    assert len(b.get_message_list("q")[0]) == 1


def test_a_wait_too_large_for_a_float_means_forever(root):
    b = ddmq.broker(root)
    b.publish("q", "x")
    assert b.consume("q", wait=10 ** 400).message == "x"
    assert ddmq.wait.check_wait(10 ** 400) == ddmq.FOREVER


@pytest.mark.parametrize("value", ["-1", "nan", "soon", "", "-inf"])
def test_cli_bad_wait_is_a_usage_error(root, value):
    done = subprocess.run(DDMQ + ["consume", "--wait", value, root, "q"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "--wait" in done.stderr and done.stderr.count("\n") == 1


def test_wait_zero_does_not_wait(root):
    started = time.monotonic()
    assert ddmq.broker(root).consume("q", wait=0) is None
    assert time.monotonic() - started < 0.5


def test_one_broker_shared_by_threads_delivers_each_message_once(root, path):
    b = ddmq.broker(root)
    total, threads = 2000, 4
    got = [[] for _ in range(threads)]

    def consumer(mine):
        while True:
            msg = b.consume("q", wait=2)
            if msg is None:
                return
            mine.append(msg.message)
            assert b.ack(msg) == [msg.filename]

    def producer(start):
        b.publish_many("q", [str(i) for i in range(start, total, 2)])

    workers = [threading.Thread(target=consumer, args=(got[i],)) for i in range(threads)]
    workers += [threading.Thread(target=producer, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    seen = [text for mine in got for text in mine]
    assert sorted(seen, key=int) == [str(i) for i in range(total)]
    assert b.get_message_list("q") == ([], [])


def test_inotify_wakes_a_waiter_on_a_topic_copy_delivered_by_hard_link(root, monkeypatch):
    monkeypatch.setenv("DDMQ_INOTIFY", "1")
    b = ddmq.broker(root)
    b.update_settings_file("", {"poll_interval": 30})   # only inotify can wake it in time
    b.create_queue("r")
    for queue in ("q", "r"):
        b.subscribe("news", queue)
    # publish_linked links the file into every queue but the last (which gets the
    # rename): queue "q" sees only a link, an IN_CREATE.
    code = ("import sys, time, ddmq; time.sleep(11); "
            "ddmq.broker(sys.argv[1]).publish_topic('news', 'x', clean=False)")
    pub = subprocess.Popen([sys.executable, "-c", code, root])
    started = time.time()
    msg = ddmq.broker(root).consume("q", wait=20)
    took = time.time() - started
    pub.wait(timeout=30)
    assert msg is not None and msg.message == "x"
    # The poll's backoff looks at about 10.2 s and 20.4 s: only inotify wakes it
    # soon after the publish at about 11 s.
    assert took < 18, took
