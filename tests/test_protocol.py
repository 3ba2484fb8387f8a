"""The claim protocol: atomic publish, races, crashes between steps, quarantine."""

import errno
import json
import logging
import os
import re
import time

import pytest

import ddmq
from ddmq import names, protocol, scanner
from ddmq.errors import StorageError

from conftest import read_json, snapshot


def queue_dir(b, queue="q"):
    return os.path.join(b.root, queue)


def listing(b, folder, queue="q"):
    path = os.path.join(b.root, queue, folder)
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def write_raw(path, data):
    with open(path, "wb") as handle:
        handle.write(data)


# Publish: WRITING -> READY


def test_publish_renames_a_complete_file_into_view(b, monkeypatch):
    b.create_queue("q")
    seen = []
    real_rename = os.rename

    def checking_rename(source, destination):
        if names.READY_NAME.match(os.path.basename(destination)):
            # At the moment of the rename the name is still invisible and
            # the private file is already complete.
            assert not os.path.exists(destination)
            assert os.path.basename(os.path.dirname(source)) == protocol.TEMP_DIR
            with open(source, "rb") as handle:
                seen.append(json.loads(handle.read().decode("utf-8"))["message"])
        return real_rename(source, destination)

    monkeypatch.setattr(os, "rename", checking_rename)
    big = "x" * 3_000_000
    b.publish("q", big)
    assert seen == [big]
    assert listing(b, ".tmp") == []


def test_a_failed_write_leaves_no_message_and_no_temporary_file(b, monkeypatch):
    b.create_queue("q")
    before = snapshot(b.root)
    real_write = os.write

    def failing_write(fd, data):
        real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(StorageError) as info:
        b.publish("q", "x" * 1000, clean=False)
    assert "No space left" in str(info.value)
    monkeypatch.undo()
    assert snapshot(b.root) == before


def test_a_writer_killed_before_its_rename_leaves_only_a_private_file(b, monkeypatch):
    b.create_queue("q")

    def dying_rename(source, destination):
        raise KeyboardInterrupt  # stands in for the process dying here

    monkeypatch.setattr(os, "rename", dying_rename)
    with pytest.raises(KeyboardInterrupt):
        b.publish("q", "never visible", clean=False)
    monkeypatch.undo()
    assert len(listing(b, ".tmp")) == 1
    assert b.get_message_list("q") == ([], [])
    assert b.consume("q") is None


def test_publish_into_a_legacy_queue_creates_its_private_folder(legacy):
    legacy.queue("q")
    b = ddmq.broker(legacy.path)
    b.publish("q", "m")
    assert os.path.isdir(os.path.join(legacy.path, "q", ".tmp"))
    assert b.consume("q").message == "m"


# Claim: READY -> CLAIMED, and lost races


def test_a_consumer_that_loses_every_race_returns_none(b):
    for i in range(6):
        b.publish("q", str(i))
    slow = ddmq.broker(b.root)
    assert slow.consume("q").message == "0"  # its scan now lists five more
    fast = ddmq.broker(b.root)
    assert len(fast.consume("q", n=10)) == 5
    assert slow.consume("q") is None
    assert slow.consume("q", n=3) == []


def test_a_consumer_that_loses_some_races_takes_the_rest(b):
    sent = [b.publish("q", str(i)).id for i in range(7)]
    slow = ddmq.broker(b.root)
    assert slow.consume("q").id == sent[0]
    fast = ddmq.broker(b.root)
    taken = [msg.id for msg in fast.consume("q", n=3)]
    assert taken == sent[1:4]
    # Order may differ: a consumer that loses races skips ahead (scanner docs).
    assert sorted(msg.id for msg in slow.consume("q", n=6)) == sorted(sent[4:])


def test_claim_of_a_gone_name_returns_none(b):
    sent = b.publish("q", "m")
    ready = sent.filename.split("/")[1]
    first = protocol.claim(queue_dir(b), ready, time.time() + 60)
    assert first is not None and names.parse_work_name(first)[1] == ready
    assert protocol.claim(queue_dir(b), ready, time.time() + 60) is None


@pytest.mark.parametrize("code", [errno.ENOENT, errno.ESTALE])
def test_a_rename_lost_to_another_process_is_not_an_error(b, monkeypatch, code):
    b.publish("q", "m")

    def losing_rename(source, destination):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "rename", losing_rename)
    assert b.consume("q") is None
    monkeypatch.undo()
    assert len(b.get_message_list("q")[0]) == 1


def test_a_rename_that_reports_enoent_but_succeeded_is_a_claim(b, monkeypatch):
    # NFS: the retransmitted rename fails although the first attempt worked.
    b.publish("q", "m")
    real_rename = os.rename

    def retransmitted_rename(source, destination):
        real_rename(source, destination)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    monkeypatch.setattr(os, "rename", retransmitted_rename)
    msg = b.consume("q", clean=False)
    monkeypatch.undo()
    assert msg is not None and msg.message == "m"
    assert b.get_message_list("q")[1] == [msg.filename]


def test_a_refused_rename_is_a_storage_error_and_loses_nothing(b, monkeypatch):
    b.publish("q", "m")
    before = snapshot(b.root)

    def refusing_rename(source, destination):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "rename", refusing_rename)
    with pytest.raises(StorageError) as info:
        b.consume("q", clean=False)
    assert "Permission denied" in str(info.value)
    monkeypatch.undo()
    assert snapshot(b.root) == before


# CLAIMED -> CLAIMED, gone, READY: takeovers and their races


def test_take_over_of_a_gone_message_returns_none(b):
    b.publish("q", "m")
    msg = b.consume("q")
    new = protocol.take_over(queue_dir(b), msg.filename, time.time() + 60)
    assert new is not None and new != msg.filename
    assert protocol.take_over(queue_dir(b), msg.filename, time.time() + 60) is None


def test_remove_of_a_gone_file_returns_false(b):
    b.publish("q", "m")
    msg = b.consume("q")
    work = os.path.join(queue_dir(b), "work")
    assert protocol.remove(work, msg.filename) is True
    assert protocol.remove(work, msg.filename) is False


def test_an_ack_after_the_lease_was_taken_over_returns_nothing(b):
    b.publish("q", "m")
    msg = b.consume("q")
    other = ddmq.broker(b.root)
    assert other.nack("q", msg.filename) == [msg.filename]
    assert b.ack(msg) == []
    assert other.consume("q").id == msg.id, "the message is not lost"


def test_a_requeue_killed_between_its_steps_duplicates_and_never_loses(b, monkeypatch):
    sent = b.publish("q", "m")
    msg = b.consume("q")
    real_unlink = os.unlink

    def dying_unlink(path, *args, **kwargs):
        if os.path.basename(os.path.dirname(path)) == "work":
            raise KeyboardInterrupt  # killed after publishing the requeued copy
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", dying_unlink)
    with pytest.raises(KeyboardInterrupt):
        b.nack(msg, clean=False)
    monkeypatch.undo()
    ready, work = b.get_message_list("q")
    assert len(ready) == 1 and ready[0].endswith(sent.id)
    assert len(work) == 1 and work[0].endswith(sent.id)
    expiry = names.parse_work_name(work[0])[0]
    assert expiry > time.time(), "the cleaner's grace lease: no one else takes it yet"
    later = ddmq.broker(b.root, clock=lambda: expiry + 1)
    later.clean("q", force=True)
    ids = [m.id for m in later.consume("q", n=5)]
    assert ids == [sent.id, sent.id], "delivered again: a duplicate, not a loss"


def test_a_cleaner_killed_after_its_takeover_leaves_a_later_redelivery(b, monkeypatch):
    b.publish("q", "m")
    msg = b.consume("q")
    now = names.parse_work_name(msg.filename)[0] + 1
    cleaner = ddmq.broker(b.root, clock=lambda: now)
    real_open = os.open

    def dying_open(path, *args, **kwargs):
        if protocol.TEMP_DIR in str(path):
            raise KeyboardInterrupt  # killed after the takeover, before the requeue
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", dying_open)
    with pytest.raises(KeyboardInterrupt):
        cleaner.clean("q", force=True)
    monkeypatch.undo()
    [work] = b.get_message_list("q")[1]
    assert work != msg.filename and work.endswith(msg.id)
    after_grace = ddmq.broker(b.root, clock=lambda: names.parse_work_name(work)[0] + 1)
    after_grace.clean("q", force=True)
    assert after_grace.consume("q").id == msg.id


def test_two_cleaners_requeue_an_expired_message_once(b):
    b.publish("q", "m")
    msg = b.consume("q")
    now = names.parse_work_name(msg.filename)[0] + 1
    first = ddmq.broker(b.root, clock=lambda: now)
    second = ddmq.broker(b.root, clock=lambda: now)
    # Both list work/ before either acts: the second's takeover must lose.
    work = os.listdir(os.path.join(queue_dir(b), "work"))
    real_listdir = os.listdir
    assert first.clean("q", force=True)
    os.listdir = lambda path: work if path.endswith("work") else real_listdir(path)
    try:
        assert second.clean("q", force=True)
    finally:
        os.listdir = real_listdir
    ready, claimed = b.get_message_list("q")
    assert len(ready) == 1 and claimed == []


# Quarantine: CLAIMED -> CORRUPT

CORRUPT = [
    ("not json", b"this is not json"),
    ("empty", b""),
    ("truncated", b'{"message": "half'),
    ("bad utf-8", b'{"message": "\xff\xfe"}'),
    ("latin-1", '{"message": "caf\u00e9"}'.encode("latin-1")),
    ("not an object", b'["message"]'),
    ("no message key", b'{"id": "abc"}'),
    ("bad counter", b'{"message": "m", "requeue_counter": "three"}'),
]


@pytest.mark.parametrize("label, data", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_files_are_quarantined_and_consumption_continues(b, caplog, label, data):
    b.publish("q", "before", priority=1)
    b.publish("q", "after", priority=3)
    bad = names.ready_name(2, names.new_queue_number(), "c0ffee")
    write_raw(os.path.join(queue_dir(b), bad), data)
    with caplog.at_level(logging.WARNING, logger="ddmq"):
        got = b.consume("q", n=5)
    assert [msg.message for msg in got] == ["before", "after"]
    [quarantined] = listing(b, ".quarantine")
    assert quarantined.endswith(bad)
    with open(os.path.join(queue_dir(b), ".quarantine", quarantined), "rb") as handle:
        assert handle.read() == data, "kept as it was, for a human to look at"
    assert "corrupt" in caplog.text and bad in caplog.text
    assert b.get_message_list("q") == ([], sorted(m.filename for m in got))
    assert b.list_queues() == ["q"], "the quarantine is not a queue"


def test_a_single_corrupt_file_gives_none_not_an_error(b):
    b.create_queue("q")
    write_raw(os.path.join(queue_dir(b), names.ready_name(1, "1", "bad")), b"\x00\x01")
    assert b.consume("q") is None
    assert len(listing(b, ".quarantine")) == 1


def test_an_expired_corrupt_file_is_quarantined_by_clean(b):
    b.create_queue("q")
    work = names.work_name("1000000000", names.ready_name(1, "1", "bad"))
    write_raw(os.path.join(queue_dir(b), "work", work), b"{")
    assert b.clean("q", force=True)
    assert listing(b, "work") == []
    assert len(listing(b, ".quarantine")) == 1
    assert b.get_message_list("q") == ([], [])


def test_quarantine_in_a_legacy_queue(legacy):
    legacy.queue("q")
    legacy.message("q", "good", queue_number="2")
    write_raw(os.path.join(legacy.path, "q", "999.1.ddmq" + "b" * 32), b"")
    b = ddmq.broker(legacy.path)
    assert b.consume("q").message == "good"
    assert len(os.listdir(os.path.join(legacy.path, "q", ".quarantine"))) == 1


HOSTILE_FIELDS = [
    ("id with a path", {"id": "../../escape"}),
    ("empty id", {"id": ""}),
    ("numeric id", {"id": 5}),
    ("requeue_prio text", {"requeue_prio": "top"}),
    ("negative requeue_prio", {"requeue_prio": -1}),
    ("requeue_limit text", {"requeue_limit": "many"}),
    ("negative counter", {"requeue_counter": -1}),
    ("timeout text", {"timeout": "soon"}),
    ("negative timeout", {"timeout": -5}),
    ("requeue text", {"requeue": "yes"}),
]


@pytest.mark.parametrize("label, fields", HOSTILE_FIELDS, ids=[h[0] for h in HOSTILE_FIELDS])
def test_messages_with_unusable_fields_are_quarantined_not_requeued_astray(b, tmp_path, label,
                                                                           fields):
    b.publish("q", "good", priority=5)
    package = {"message": "m", "id": "abc123", "requeue_counter": 0, "requeue": True}
    package.update(fields)
    bad = names.ready_name(1, names.new_queue_number(), "abc123")
    write_raw(os.path.join(queue_dir(b), bad), json.dumps(package).encode())
    got = b.consume("q", n=5)
    for msg in got:
        b.nack(msg)
    ready = b.get_message_list("q")[0]
    assert [b.get_message(os.path.join("q", name)).message for name in ready] == ["good"]
    assert len(listing(b, ".quarantine")) == 1
    assert sorted(os.listdir(b.root)) == ["ddmq.yaml", "q"]
    assert sorted(os.listdir(str(tmp_path))) == ["ddmq"]


# Names: nothing but messages matches the message patterns


def test_nothing_but_messages_matches_the_message_patterns(b, monkeypatch, tmp_path):
    # A host name that looks like a message name must not make temp files look like one.
    fields = list(os.uname())
    fields[1] = "999.1.ddmq0"  # nodename
    hostile = type(os.uname())(fields)
    monkeypatch.setattr(os, "uname", lambda: hostile)
    monkeypatch.setattr(protocol, "_writer_prefix", None)
    clock_now = [time.time()]
    b = ddmq.broker(str(tmp_path / "r"), create=True, clock=lambda: clock_now[0])
    b.update_settings_file("", {"priority": 5})
    for i in range(4):
        b.publish("q", str(i))
    b.nack(b.consume("q"))
    b.consume("q")
    write_raw(os.path.join(b.root, "q", names.ready_name(0, "1", "ff")), b"corrupt")
    assert ddmq.broker(b.root).consume("q").message == "1"
    clock_now[0] += 700
    b.clean("q", force=True)
    b.update_settings_file("q", {"message_timeout": 5})
    # A writer that died mid-publish leaves a private file behind.
    monkeypatch.setattr(os, "rename", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        b.publish("q", "lost in .tmp", clean=False)
    monkeypatch.undo()
    # A root on the filesystem's clock writes a probe file into the root.
    b.update_settings_file("", {"clock": "filesystem"})
    ddmq.broker(b.root).clean("q", force=True)
    assert listing(b, ".tmp") and listing(b, ".quarantine")
    assert any(name.startswith(".") for name in os.listdir(b.root))
    for folder, dirs, files in os.walk(b.root):
        where = os.path.relpath(folder, b.root)
        for name in files + dirs:
            if names.READY_NAME.match(name):
                assert where == "q", (where, name)
                assert "message" in read_json(os.path.join(folder, name))
            if names.WORK_NAME.match(name):
                assert where in ("q/work", "q/.quarantine"), (where, name)
            if where in ("q/.tmp",) or name.endswith(".tmp"):
                assert names.ready_sort_key(name) is None
                assert names.parse_work_name(name) is None
    assert b.list_queues() == ["q"]


def test_private_folders_are_hidden_and_never_queue_names():
    for folder in (protocol.TEMP_DIR, protocol.QUARANTINE_DIR):
        assert folder.startswith(".")
        assert not names.QUEUE_NAME.match(folder)


def test_settings_temporary_names_match_no_pattern(b, monkeypatch):
    seen = []
    real_replace = os.replace

    def spying_replace(source, destination):
        seen.append(os.path.basename(source))
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", spying_replace)
    b.create_queue("q")
    b.update_settings_file("q", {"priority": 1})
    assert seen
    for name in seen:
        assert name.startswith(".")
        assert not names.READY_NAME.match(name) and not names.WORK_NAME.match(name)


# The scanner's refresh bound


def test_another_process_publish_is_seen_within_the_refresh_interval(b, monkeypatch):
    monkeypatch.setattr(scanner, "MIN_REFRESH", 0.2)
    for i in range(3):
        b.publish("q", "low{}".format(i), priority=9)
    consumer = ddmq.broker(b.root)
    assert consumer.consume("q").message == "low0"
    b.publish("q", "urgent", priority=0)  # by another broker: unknown to the consumer's scan
    time.sleep(0.3)
    assert consumer.consume("q").message == "urgent"


def test_this_broker_sees_its_own_publish_at_once(b):
    for i in range(3):
        b.publish("q", "low{}".format(i), priority=9)
    assert b.consume("q").message == "low0"
    b.publish("q", "urgent", priority=0)
    b.publish("q", "middle", priority=5)
    b.publish("q", "last", priority=20)
    assert [m.message for m in b.consume("q", n=5)] == ["urgent", "middle", "low1", "low2", "last"]


def test_an_empty_answer_comes_from_a_fresh_scan(b):
    b.publish("q", "first")
    consumer = ddmq.broker(b.root)
    assert consumer.consume("q").message == "first"
    ddmq.broker(b.root).publish("q", "second")  # another process, straight after
    assert consumer.consume("q").message == "second"


def test_the_scan_limit_bounds_the_candidates_kept(b, monkeypatch):
    monkeypatch.setattr(scanner, "SCAN_LIMIT", 5)
    sent = [b.publish("q", str(i), priority=i % 3) for i in range(20)]
    consumer = ddmq.broker(b.root)
    got = consumer.consume("q", n=20)
    expected = sorted(sent, key=lambda m: (m.priority, m.queue_number))
    assert [m.id for m in got] == [m.id for m in expected]


@pytest.mark.parametrize("limit", [3, 50_000])
def test_scans_serve_legacy_and_new_names_of_every_width_in_order(legacy, monkeypatch, limit):
    monkeypatch.setattr(scanner, "SCAN_LIMIT", limit)
    legacy.queue("q")
    for priority, number in [(10, "15386383781"), (9, "1538638378"), (100, "2"),
                             (10, "153863837805"), (9, "15386383785"), (0, "10")]:
        legacy.message("q", "{}/{}".format(priority, number), priority=priority,
                       queue_number=number)
    b = ddmq.broker(legacy.path)
    for priority in (100, 10, 9, 1000, 0):
        b.publish("q", "{}/new".format(priority), priority=priority)
    got = [m.message for m in ddmq.broker(legacy.path).consume("q", n=20)]
    assert got == ["0/10", "0/new", "9/1538638378", "9/15386383785", "9/new",
                   "10/153863837805", "10/15386383781", "10/new", "100/2", "100/new", "1000/new"]


def test_leases_in_work_names_are_unique_per_claim(b):
    b.publish("q", "m")
    leases = set()
    for _ in range(20):
        msg = b.consume("q")
        leases.add(msg.filename.split(".")[0])
        b.nack(msg)
    assert len(leases) == 20
    assert all(re.fullmatch(r"\d{19}", lease) for lease in leases)


def test_a_scan_that_meets_a_stale_folder_handle_retries(b, monkeypatch):
    b.publish("q", "waiting")
    real_scandir, calls = os.scandir, []

    def stale_once(path):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ESTALE, "Stale file handle", path)
        return real_scandir(path)

    monkeypatch.setattr("ddmq.scanner.os.scandir", stale_once)
    assert ddmq.broker(b.root).consume("q").message == "waiting"
    assert len(calls) == 2
