"""Topics: subscriptions as files, one copy per subscribed queue, links or copies, many processes."""

import errno
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import ddmq
from ddmq.errors import InvalidInputError, QueueNotFoundError

from conftest import rig_paths, snapshot
from test_cli import fails, ok


def records(out):
    """Return the records of a --format json output: one document, or one per line."""
    try:
        parsed = json.loads(out)
    except ValueError:
        return [json.loads(line) for line in out.splitlines()]
    return parsed if isinstance(parsed, list) else [parsed]


def drain(b, queue):
    """Consume and ack every message of ``queue``; return them."""
    got = []
    while True:
        msgs = b.consume(queue, n=100)
        if not msgs:
            return got
        b.ack(queue, [m.filename for m in msgs])
        got += msgs


def ready_files(root, queue):
    folder = os.path.join(root, queue)
    return sorted(n for n in os.listdir(folder) if ddmq.names.READY_NAME.match(n))


# API

def test_subscribe_is_one_file_per_subscription(b, root):
    for queue in ("a", "b"):
        assert b.subscribe("news", queue) is True
    assert b.subscribe("news", "a") is False   # already subscribed: nothing changes
    assert b.subscribe("sport", "b") is True
    assert sorted(os.listdir(os.path.join(root, ".topics", "news"))) == ["a", "b"]
    assert b.subscriptions() == {"news": ["a", "b"], "sport": ["b"]}
    assert b.subscriptions("news") == {"news": ["a", "b"]}
    assert b.subscriptions("nobody") == {"nobody": []}
    assert b.list_queues() == ["a", "b"]       # .topics is not a queue
    assert b.unsubscribe("news", "a") is True
    assert b.unsubscribe("news", "a") is False
    assert b.subscriptions() == {"news": ["b"], "sport": ["b"]}


def test_subscribing_a_missing_queue_creates_it_only_if_the_broker_may(b, root):
    b.subscribe("news", "made")
    assert "made" in b.list_queues()
    strict = ddmq.broker(root)
    before = snapshot(root)
    with pytest.raises(QueueNotFoundError):
        strict.subscribe("news", "missing")
    assert snapshot(root) == before


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".topics", "a b", None, 3])
def test_bad_topic_and_queue_names_change_nothing(b, root, bad):
    b.create_queue("q")
    before = snapshot(root)
    for call in (lambda: b.subscribe(bad, "q"), lambda: b.subscribe("t", bad),
                 lambda: b.unsubscribe(bad, "q"), lambda: b.unsubscribe("t", bad),
                 lambda: b.subscriptions("../x" if bad is None else bad),  # None: all topics
                 lambda: b.publish_topic(bad, "x")):
        with pytest.raises(InvalidInputError):
            call()
    assert snapshot(root) == before


def test_every_subscriber_gets_one_copy_with_its_own_id(b, root):
    for queue in ("a", "b", "c"):
        b.subscribe("news", queue)
    b.create_queue("other")
    msgs = b.publish_topic("news", {"n": 1}, priority=4, requeue=True)
    assert [m.queue for m in msgs] == ["a", "b", "c"]
    assert len({m.id for m in msgs}) == 3
    assert all(m.topic == "news" and m.priority == 4 for m in msgs)
    assert ready_files(root, "other") == []
    inodes = set()
    for m in msgs:
        assert ready_files(root, m.queue) == [m.filename.split("/")[1]]
        status = os.stat(os.path.join(root, m.filename))
        assert status.st_nlink == 3    # one file, three names
        inodes.add(status.st_ino)
    assert len(inodes) == 1
    assert not os.listdir(os.path.join(root, "c", ".tmp"))   # the temp name is gone
    peeked = b.peek("b")
    assert (peeked.id, peeked.queue, peeked.filename) == (msgs[1].id, "b",
                                                          msgs[1].filename.split("/")[1])
    for m in msgs:
        got = b.consume(m.queue)
        assert (got.id, got.queue, got.message, got.topic) == (m.id, m.queue, {"n": 1}, "news")
        assert got.filename.endswith(m.id)
        path = os.path.join(root, m.queue, "work", got.filename)
        assert b.get_message(path).id == m.id


def test_an_ack_or_requeue_of_one_copy_leaves_the_others_alone(b, root):
    for queue in ("a", "b", "c"):
        b.subscribe("news", queue)
    msgs = b.publish_topic("news", "payload", requeue=True)
    got_a = b.consume("a")
    assert b.ack(got_a) == [got_a.filename]
    got_b = b.consume("b")
    b.nack(got_b, reason="try again")          # rewrites b's copy only
    assert ready_files(root, "a") == []
    # a's name was acked and b's claimed name replaced by a file of its own: c's is left.
    assert os.stat(os.path.join(root, msgs[2].filename)).st_nlink == 1
    again = b.consume("b")
    assert (again.id, again.requeue_counter, again.last_nack_reason) == (msgs[1].id, 1,
                                                                          "try again")
    got_c = b.consume("c")
    assert (got_c.id, got_c.message, got_c.requeue_counter) == (msgs[2].id, "payload", 0)


def test_a_queue_subscribed_later_gets_only_later_messages(b):
    b.subscribe("news", "early")
    b.publish_topic("news", "first")
    b.subscribe("news", "late")
    b.publish_topic("news", "second")
    b.unsubscribe("news", "early")
    b.publish_topic("news", "third")
    assert [m.message for m in drain(b, "early")] == ["first", "second"]
    assert [m.message for m in drain(b, "late")] == ["second", "third"]


def test_no_subscriber_publishes_nothing(b, root):
    b.create_queue("q")
    before = snapshot(root)
    assert b.publish_topic("empty", "x") == []
    assert snapshot(root) == before


def test_deleting_a_queue_removes_its_subscriptions(b, root):
    for topic in ("news", "alerts"):
        for queue in ("a", "b"):
            b.subscribe(topic, queue)
    b.delete_queue("b")
    assert b.subscriptions() == {"alerts": ["a"], "news": ["a"]}
    strict = ddmq.broker(root)
    assert [m.queue for m in strict.publish_topic("news", "x")] == ["a"]
    assert not os.path.exists(os.path.join(root, "b"))   # not made again by the publish


def test_a_subscriber_removed_without_ddmq_fails_the_publish_before_anything_is_written(b, root):
    for queue in ("a", "b"):
        b.subscribe("news", queue)
    shutil.rmtree(os.path.join(root, "b"))
    strict = ddmq.broker(root)
    before = snapshot(root)
    with pytest.raises(QueueNotFoundError, match="subscribed to topic 'news'.*unsubscribe"):
        strict.publish_topic("news", "x")
    assert snapshot(root) == before
    with pytest.raises(InvalidInputError):
        b.publish_topic("news", "x", dead_letter="a")   # a's own dead-letter queue
    assert snapshot(root) == before


def test_per_queue_default_priority_and_bytes_payload(b, root):
    b.subscribe("news", "a")
    b.subscribe("news", "b")
    b.update_settings_file("b", {"priority": 7})
    msgs = b.publish_topic("news", b"\x00\xff")
    assert [m.priority for m in msgs] == [999, 7]
    for m in msgs:
        got = b.consume(m.queue)
        assert (got.message, got.priority, got.id) == (b"\x00\xff", m.priority, m.id)


def test_ordinary_messages_are_written_as_before(b, root):
    msg = b.publish("q", "plain")
    with open(os.path.join(root, msg.filename), "rb") as handle:
        assert "topic" not in json.loads(handle.read())


@pytest.mark.parametrize("code", [errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK])
def test_a_filesystem_without_links_gets_a_copy_per_queue(b, root, monkeypatch, code):
    for queue in ("a", "b", "c"):
        b.subscribe("news", queue)

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", refuse)
    msgs = b.publish_topic("news", {"copied": True})
    inodes = {os.stat(os.path.join(root, m.filename)).st_ino for m in msgs}
    assert len(inodes) == 3
    assert all(os.stat(os.path.join(root, m.filename)).st_nlink == 1 for m in msgs)
    for queue in ("a", "b", "c"):
        assert not os.listdir(os.path.join(root, queue, ".tmp"))
        got = drain(b, queue)
        assert [(m.message, m.queue) for m in got] == [({"copied": True}, queue)]


def test_another_link_error_is_a_storage_error_and_leaves_no_temp_file(b, root, monkeypatch):
    for queue in ("a", "b"):
        b.subscribe("news", queue)

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "link", broken)
    with pytest.raises(ddmq.errors.StorageError, match="publish into"):
        b.publish_topic("news", "x")
    assert not os.listdir(os.path.join(root, "b", ".tmp"))
    assert ready_files(root, "a") == ready_files(root, "b") == []


def test_a_hostile_topic_field_is_a_corrupt_file(b, root):
    b.create_queue("q")
    msg = b.publish("q", "x")
    path = os.path.join(root, msg.filename)
    with open(path) as handle:
        fields = json.load(handle)
    fields["topic"] = "../../etc"
    with open(path, "w") as handle:
        json.dump(fields, handle)
    assert b.consume("q") is None   # quarantined
    assert os.listdir(os.path.join(root, "q", ".quarantine"))


# CLI

def test_cli_subscribe_publish_and_unsubscribe(tmp_path):
    root = str(tmp_path / "r")
    ok("create", "-f", root, "a,b,c")
    assert "subscribed queue a to topic t" in ok("subscribe", root, "t", "a,b")
    assert "already" in ok("subscribe", root, "t", "a")
    before = snapshot(root)
    assert "does not exist" in fails(1, "subscribe", root, "t", "c,zz")
    assert snapshot(root) == before            # c not subscribed either
    ok("subscribe", "-f", root, "t", "zz")
    listed = records(ok("subscriptions", "--format", "json", root))
    assert listed == [{"topic": "t", "queue": q} for q in ("a", "b", "zz")]
    assert ok("subscriptions", root, "t").split("\n")[0] == "t a"
    out = records(ok("publish", "--topic", "t", "--format", "json", "-p", "3", root,
                     "hello world"))
    assert [(r["queue"], r["topic"], r["priority"]) for r in out] == [
        ("a", "t", 3), ("b", "t", 3), ("zz", "t", 3)]
    assert "unsubscribed" in ok("unsubscribe", root, "t", "zz")
    assert "was not subscribed" in ok("unsubscribe", root, "t", "zz")
    record, = records(ok("consume", "--format", "json", root, "b"))
    assert (record["id"], record["message"]) == (out[1]["id"], "hello world")
    packaged = json.dumps({"command": "publish", "root": root, "topic": "t", "message": "js"})
    ok("json", packaged)
    assert [len(ready_files(root, q)) for q in ("a", "b", "zz")] == [2, 1, 1]


def test_cli_publish_topic_from_a_file_and_bad_arguments(tmp_path):
    root = str(tmp_path / "r")
    ok("subscribe", "-f", root, "t", "a")
    payload = tmp_path / "p.bin"
    payload.write_bytes(b"\x01\x02")
    ok("publish", "--topic", "t", root, "--file", str(payload))
    before = snapshot(root)
    assert "not both" in fails(2, "publish", "--topic", "t", root, "a", "text")
    assert "invalid topic name" in fails(2, "publish", "--topic", "../x", root, "text")
    assert "invalid topic name" in fails(2, "subscribe", root, "a/b", "a")
    assert "required" in fails(2, "publish", "--topic", "t", root)
    assert "invalid queue name" in fails(2, "publish", root, "no/queue", "text")
    assert snapshot(root) == before
    b = ddmq.broker(root)
    assert b.consume("a").message == b"\x01\x02"


# Many processes

PRODUCER = r"""
import sys, time, ddmq
root, name, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
b = ddmq.broker(root)
while not __import__("os").path.exists(start):
    time.sleep(0.01)
for i in range(count):
    b.publish_topic("t", {"p": name, "i": i})
    time.sleep(0.002)   # spread the run over the subscription changes
"""


@pytest.mark.timeout(120)
def test_two_producers_while_subscriptions_change(b, root, tmp_path):
    per = 500
    for queue in ("a", "b", "c", "leaving"):
        b.subscribe("t", queue)
    b.create_queue("joining")
    start = str(tmp_path / "start")
    producers = [subprocess.Popen([sys.executable, "-c", PRODUCER, root, name, str(per), start])
                 for name in ("x", "y")]
    open(start, "w").close()
    deadline = time.monotonic() + 60

    def wait_for(depth):
        while len(ready_files(root, "a")) < depth:
            assert time.monotonic() < deadline, "producers stalled"
            time.sleep(0.005)

    wait_for(250)
    b.subscribe("t", "joining")
    wait_for(600)
    b.unsubscribe("t", "leaving")
    for producer in producers:
        assert producer.wait(60) == 0
    expected = {(p, i) for p in "xy" for i in range(per)}
    all_ids = []
    for queue in ("a", "b", "c", "joining", "leaving"):
        got = drain(b, queue)
        keys = [(m.message["p"], m.message["i"]) for m in got]
        assert len(keys) == len(set(keys)), "duplicates in " + queue
        all_ids += [m.id for m in got]
        assert all(m.queue == queue and m.topic == "t" for m in got)
        if queue in ("a", "b", "c"):
            assert set(keys) == expected, queue
            continue
        # Each producer publishes in order: the joining queue got a suffix of
        # its messages, the leaving queue a prefix, and neither all of them.
        for p in "xy":
            numbers = sorted(i for q, i in keys if q == p)
            assert 0 < len(numbers) < per, (queue, p, len(numbers))
            wanted = range(per - len(numbers), per) if queue == "joining" else range(len(numbers))
            assert numbers == list(wanted), (queue, p)
    assert len(all_ids) == len(set(all_ids))   # every copy has its own id


# Three GlusterFS mounts

@pytest.fixture
def dfs_roots():
    for paths in rig_paths("ddmq-topics-"):
        ddmq.broker(paths["a"], create=True)
        yield paths


@pytest.mark.timeout(180)
def test_topics_across_three_glusterfs_mounts(dfs_roots):
    brokers = {letter: ddmq.broker(path) for letter, path in dfs_roots.items()}
    for letter, queue in zip("abc", ("qa", "qb", "qc")):
        brokers[letter].create_queue(queue)
        assert brokers[letter].subscribe("t", queue)
    deadline = time.monotonic() + 10
    for bk in brokers.values():   # every mount sees the three subscriptions
        while bk.subscriptions("t") != {"t": ["qa", "qb", "qc"]}:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    published = {}
    for letter, bk in brokers.items():
        for i in range(20):
            for m in bk.publish_topic("t", {"from": letter, "i": i}):
                published[m.id] = (m.queue, letter, i)
    assert len(published) == 180
    got = {}
    deadline = time.monotonic() + 60
    while len(got) < 180 and time.monotonic() < deadline:
        for bk in brokers.values():   # every mount consumes from every queue
            for queue in ("qa", "qb", "qc"):
                for m in bk.consume(queue, n=7):
                    assert m.id not in got, "delivered twice"
                    got[m.id] = (m.queue, m.message["from"], m.message["i"])
                    assert bk.ack(m) == [m.filename]
    assert got == published
    # Unsubscribing on one mount is seen by a publisher on another.
    assert brokers["b"].unsubscribe("t", "qa")
    deadline = time.monotonic() + 10
    while brokers["c"].subscriptions("t") != {"t": ["qb", "qc"]}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [m.queue for m in brokers["c"].publish_topic("t", "last")] == ["qb", "qc"]


@pytest.mark.parametrize("command", ["subscribe", "unsubscribe", "subscriptions"])
def test_topic_commands_have_help_and_need_a_root(command):
    assert ok(command, "-h").startswith("usage: ddmq " + command)
    assert "required" in fails(2, command)
