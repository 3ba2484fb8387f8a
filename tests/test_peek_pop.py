"""broker.peek and broker.pop, and ``ddmq peek`` / ``ddmq pop``: API, CLI and real processes."""

import json
import multiprocessing
import os
import signal
import threading
import time

import pytest
import yaml

import ddmq
from ddmq import peek as peek_module
from ddmq import protocol

from conftest import snapshot
from test_cli import fails, ok, run
from test_multihost import roots  # noqa: F401 (the fixture of the three GlusterFS mounts)

CTX = multiprocessing.get_context("fork")


def publish(b, texts, queue="q", **options):
    return [b.publish(queue, text, **options) for text in texts]


def queue_dir(b, queue="q"):
    return os.path.join(b.root, queue)


def write_corrupt(b, name, data, queue="q"):
    path = os.path.join(queue_dir(b, queue), name)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


CORRUPT_NAME = "0.1000000000000000000.ddmq" + "c" * 32


# peek through the API

def test_peek_returns_waiting_messages_in_serving_order_without_claiming(b):
    publish(b, ["low"], priority=5)
    publish(b, ["high", "high too"], priority=1)
    publish(b, [{"json": [1, 2]}], priority=3)
    before = snapshot(b.root)
    first = b.peek("q")
    assert first.message == "high" and first.queue == "q"
    assert first.filename == b.get_message_list("q")[0][0]
    peeked = b.peek("q", n=10)
    assert [m.message for m in peeked] == ["high", "high too", {"json": [1, 2]}, "low"]
    assert [m.filename for m in peeked] == b.get_message_list("q")[0]
    assert b.peek("q", n=2) == peeked[:2]
    assert snapshot(b.root) == before  # nothing claimed, moved or written
    # What peek showed is what consume then serves.
    assert [b.consume("q").id for _ in range(4)] == [m.id for m in peeked]


def test_peek_of_an_empty_queue(b):
    b.create_queue("q")
    assert b.peek("q") is None
    assert b.peek("q", n=3) == []


def test_peek_bad_input_changes_nothing(b):
    publish(b, ["x"])
    before = snapshot(b.root)
    for n in (0, -1, 1.5, "2", True, None):
        with pytest.raises(ddmq.errors.InvalidInputError):
            b.peek("q", n=n)
    with pytest.raises(ddmq.errors.InvalidInputError):
        b.peek("../q")
    with pytest.raises(ddmq.errors.QueueNotFoundError):
        ddmq.broker(b.root).peek("nope")
    assert snapshot(b.root) == before


def test_a_peeked_message_names_its_waiting_file(b):
    msgs = publish(b, ["a", "b"])
    shown = b.peek("q")
    assert b.delete_message(shown)  # a peeked message names its waiting file
    assert [m.id for m in b.peek("q", n=5)] == [msgs[1].id]


def test_peek_skips_messages_taken_between_listing_and_reading(b, monkeypatch):
    msgs = publish(b, ["m{}".format(i) for i in range(6)])
    other = ddmq.broker(b.root)
    real = peek_module.best_ready_names

    listings = []

    def list_then_lose_the_first_three(folder, limit):
        names = real(folder, limit)
        listings.append(limit)
        if len(listings) == 1:  # the first listing is already out of date
            assert len(other.consume("q", n=3, clean=False)) == 3
        return names

    monkeypatch.setattr(peek_module, "best_ready_names", list_then_lose_the_first_three)
    peeked = b.peek("q", n=2)
    assert [m.message for m in peeked] == ["m3", "m4"]
    assert listings == [2, 4]  # both listed names were taken: listed again, for twice as many
    assert len(b.get_message_list("q")[1]) == 3  # only the other broker's claims
    assert [m.id for m in msgs[3:]] == [m.id for m in ddmq.broker(b.root).peek("q", n=9)]


def test_peek_memory_is_bounded_by_n_not_by_depth(b, monkeypatch):
    b.publish_many("q", ["m{}".format(i) for i in range(3000)])
    limits = []
    real = peek_module.best_ready_names

    def spy(folder, limit):
        names = real(folder, limit)
        limits.append((limit, len(names)))
        return names

    monkeypatch.setattr(peek_module, "best_ready_names", spy)
    assert [m.message for m in b.peek("q", n=3)] == ["m0", "m1", "m2"]
    assert limits == [(3, 3)]


def test_peek_reports_a_corrupt_file_and_never_moves_it(b, caplog):
    publish(b, ["after"])
    path = write_corrupt(b, CORRUPT_NAME, b"{not json")
    before = snapshot(b.root)
    with caplog.at_level("WARNING", logger="ddmq"):
        first, second = b.peek("q", n=2)
    assert first.corrupt and first.message is None and first.filename == CORRUPT_NAME
    assert (first.id, first.priority, first.queue) == ("c" * 32, 0, "q")
    assert second.message == "after" and not second.corrupt
    assert any("corrupt" in record.getMessage() and CORRUPT_NAME in record.getMessage()
               for record in caplog.records)
    assert b.peek("q").corrupt  # it keeps its place in the serving order
    assert snapshot(b.root) == before and os.path.exists(path)
    # A consumer, which owns the file once it has claimed it, quarantines it.
    assert b.consume("q").message == "after"
    assert not os.path.exists(path)
    assert os.listdir(os.path.join(queue_dir(b), ".quarantine")) != []


@pytest.mark.parametrize("entry", ["folder", "symlink", "fifo"])
def test_peek_never_follows_or_blocks_on_a_foreign_entry(b, entry, tmp_path):
    b.create_queue("q")
    path = os.path.join(queue_dir(b), CORRUPT_NAME)
    if entry == "folder":
        os.mkdir(path)
    elif entry == "symlink":
        target = tmp_path / "secret"
        target.write_text(json.dumps({"message": "secret", "id": "a" * 32}))
        os.symlink(str(target), path)
    else:
        os.mkfifo(path)
    msg = b.peek("q")
    assert msg.corrupt and msg.filename == CORRUPT_NAME
    assert os.path.lexists(path)


def _consume_all(root, out, stop_after):
    b = ddmq.broker(root)
    got, idle = [], time.monotonic()
    while time.monotonic() - idle < stop_after:
        msgs = b.consume("q", n=5, clean=False)
        for msg in msgs:
            got.append(msg.id)
            b.ack(msg, clean=False)
        if msgs:
            idle = time.monotonic()
    with open(out, "w") as handle:
        json.dump(got, handle)


def check_peeked(peeked, order):
    """Assert a peek of the m<i> messages published in ``order`` while they drain; return ids."""
    seen = [m.id for m in peeked]
    assert len(set(seen)) == len(seen)  # never one message twice
    assert all(not m.corrupt and m.message == "m{}".format(order[m.id]) for m in peeked)
    positions = [order[msg_id] for msg_id in seen]
    assert positions == sorted(positions)  # serving order, taken ones skipped
    return seen


def stop(procs):
    for proc in procs:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)


def consumed_ids(outs):
    """Return every id the _consume_all processes wrote to the files ``outs``."""
    got = []
    for out in outs:
        with open(out) as handle:
            got += json.load(handle)
    return got


def test_peek_while_consumer_processes_drain_the_queue(b, tmp_path):
    ids = [m.id for m in b.publish_many("q", ["m{}".format(i) for i in range(3000)])]
    order = {msg_id: index for index, msg_id in enumerate(ids)}
    outs = [str(tmp_path / "got{}".format(i)) for i in range(2)]
    procs = [CTX.Process(target=_consume_all, args=(b.root, out, 1.0), daemon=True)
             for out in outs]
    for proc in procs:
        proc.start()
    peeker = ddmq.broker(b.root)
    peeks = 0
    try:
        while any(proc.is_alive() for proc in procs):
            peeked = peeker.peek("q", n=50)
            peeks += 1
            check_peeked(peeked, order)
    finally:
        stop(procs)
    got = consumed_ids(outs)
    assert sorted(got) == sorted(ids)  # peek claimed nothing: every message consumed once
    assert peeks > 1
    assert b.get_message_list("q") == ([], [])


# pop through the API

def test_pop_claims_and_deletes_in_one_call(b):
    msgs = publish(b, ["a", "b", "c", b"\x00bytes"])
    first = b.pop("q")
    assert first.message == "a" and first.id == msgs[0].id
    assert b.get_message_list("q") == ([m.filename.split("/")[1] for m in msgs[1:]], [])
    rest = b.pop("q", n=5)
    assert [m.message for m in rest] == ["b", "c", b"\x00bytes"]
    assert b.get_message_list("q") == ([], [])
    assert b.pop("q") is None and b.pop("q", n=2) == []
    assert b.ack(first) == []  # already gone: nothing to acknowledge


def test_pop_is_at_most_once_a_popped_message_never_comes_back(b):
    publish(b, ["once"], requeue=True, timeout=0)
    assert b.pop("q").message == "once"
    b.clean("q", force=True)  # an expired claim would be requeued: there is none
    assert b.consume("q") is None and b.get_message_list("q") == ([], [])


def test_pop_bad_input_changes_nothing(b):
    publish(b, ["x"])
    before = snapshot(b.root)
    for kwargs in ({"n": 0}, {"n": "1"}, {"wait": -1}, {"wait": "1"}):
        with pytest.raises(ddmq.errors.InvalidInputError):
            b.pop("q", **kwargs)
    assert snapshot(b.root) == before


def test_pop_waits_like_consume(b):
    b.create_queue("q")
    timer = threading.Timer(0.3, ddmq.broker(b.root).publish, ("q", "late"))
    timer.start()
    try:
        msg = b.pop("q", wait=5)
    finally:
        timer.join()
    assert msg.message == "late" and b.get_message_list("q") == ([], [])
    assert b.pop("q", wait=0.05) is None


def test_pop_leaves_out_a_message_another_process_took_meanwhile(b, monkeypatch):
    publish(b, ["a", "b"])
    real = protocol.remove
    calls = []

    def lose_the_first(directory, name, fsync=False):
        calls.append(name)
        if len(calls) == 1:
            real(directory, name, fsync)  # as if a cleaner had taken it over and acked
            return False
        return real(directory, name, fsync)

    monkeypatch.setattr(protocol, "remove", lose_the_first)
    assert [m.message for m in b.pop("q", n=2)] == ["b"]


# The command line

@pytest.fixture
def croot(tmp_path):
    root = str(tmp_path / "cli")
    ok("create", "-f", "-s", root, "q")
    return root


def test_cli_peek_formats_and_changes_nothing(croot):
    ok("publish", "-s", "-p", "2", croot, "q", "second")
    ok("publish", "-s", "-p", "1", croot, "q", "first")
    before = snapshot(croot)
    plain = ok("peek", croot, "q")
    fields = dict(line.split(" = ", 1) for line in plain.splitlines())
    assert fields["message"] == "first"
    assert fields["filename"] == ddmq.broker(croot).get_message_list("q")[0][0]
    lines = json.loads(ok("peek", "-n", "5", "--format", "json", croot, "q"))
    assert [m["message"] for m in lines] == ["first", "second"]
    docs = yaml.safe_load(ok("peek", "-n", "2", "--format", "yaml", croot, "q"))
    assert docs == lines
    assert snapshot(croot) == before


def test_cli_peek_empty_exits_3_and_reports_corrupt_files(croot):
    result = run("peek", croot, "q")
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == "ddmq peek: no message in queue 'q'\n"
    assert run("peek", "-s", croot, "q").stderr == ""
    path = os.path.join(croot, "q", CORRUPT_NAME)
    with open(path, "wb") as handle:
        handle.write(b"\xff\xfe")
    before = snapshot(croot)
    result = run("peek", "--format", "json", croot, "q")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"queue": "q", "filename": CORRUPT_NAME, "corrupt": True}
    assert "warning" in result.stderr and CORRUPT_NAME in result.stderr
    assert snapshot(croot) == before


def test_cli_peek_bad_input(croot):
    assert "must be an integer >= 1" in fails(2, "peek", "-n", "0", croot, "q")
    assert "'nope' does not exist" in fails(1, "peek", croot, "nope")


def test_cli_pop(croot):
    for text in ("a", "b", "c"):
        ok("publish", "-s", croot, "q", text)
    out = ok("pop", croot, "q")
    assert dict(line.split(" = ", 1) for line in out.splitlines())["message"] == "a"
    lines = json.loads(ok("pop", "-n", "5", "--format", "json", croot, "q"))
    assert [m["message"] for m in lines] == ["b", "c"]
    assert ddmq.broker(croot).get_message_list("q") == ([], [])
    result = run("pop", croot, "q")
    assert (result.returncode, result.stdout, result.stderr) == (
        3, "", "ddmq pop: no message in queue 'q'\n")
    assert run("pop", "-f", str(os.path.join(croot, "new")), "q").returncode == 3
    assert "'nope' does not exist" in fails(1, "pop", croot, "nope")


def test_cli_peek_and_pop_in_ddmq_json(croot):
    ok("publish", "-s", croot, "q", "packaged")
    out = ok("json", json.dumps({"command": "peek", "root": croot, "queue": "q",
                                 "format": "json"}))
    assert json.loads(out)["message"] == "packaged"
    out = ok("json", json.dumps({"command": "pop", "root": croot, "queue": "q", "n": 2,
                                 "format": "json"}))
    assert [msg["message"] for msg in json.loads(out)] == ["packaged"]
    assert ddmq.broker(croot).get_message_list("q") == ([], [])


# Three GlusterFS mounts: consumers on two "hosts", a peeker on the third

def test_peek_on_one_mount_while_consumers_on_two_others_drain_the_queue(roots, tmp_path):
    b = ddmq.broker(roots["a"])
    ids = [m.id for m in b.publish_many("q", ["m{}".format(i) for i in range(600)])]
    order = {msg_id: index for index, msg_id in enumerate(ids)}
    outs = {letter: str(tmp_path / ("got-" + letter)) for letter in "ab"}
    procs = [CTX.Process(target=_consume_all, args=(roots[letter], out, 3.0), daemon=True)
             for letter, out in outs.items()]
    for proc in procs:
        proc.start()
    peeker = ddmq.broker(roots["c"])
    shown = set()
    try:
        while any(proc.is_alive() for proc in procs):
            peeked = peeker.peek("q", n=20)
            shown.update(check_peeked(peeked, order))
    finally:
        stop(procs)
    got = consumed_ids(outs.values())
    assert sorted(got) == sorted(ids)  # each consumed exactly once: the peeks took nothing
    assert shown  # the peeker saw messages while they were being consumed
    assert not os.path.exists(os.path.join(roots["a"], "q", ".quarantine"))
