"""The broker API: every public method, its documented arguments and return values."""

import json
import os
import subprocess
import sys
import time

import pytest

import ddmq
from ddmq import errors, names
from ddmq.errors import (DdmqError, InvalidInputError, MessageNotFoundError, QueueNotFoundError,
                         RootError)

from conftest import read_json, snapshot


class Clock:
    """A settable clock for leases: ``clock.now += 700`` expires a default lease."""

    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def cb(root, clock):
    """Return a broker with a settable clock and a queue ``q``."""
    b = ddmq.broker(root, create=True, clock=clock)
    b.create_queue("q")
    return b


def work_dir(b, queue="q"):
    return os.path.join(b.root, queue, "work")


def waiting(b, queue="q"):
    return b.get_message_list(queue)[0]


def claimed(b, queue="q"):
    return b.get_message_list(queue)[1]


# Construction and the root


def test_create_true_initiates_a_missing_root(root):
    b = ddmq.broker(root, create=True)
    assert os.path.isfile(os.path.join(root, "ddmq.yaml"))
    assert b.root == root
    assert b.global_settings["priority"] == 999
    assert b.list_queues() == []


def test_a_missing_root_without_create_is_error_missing_and_creates_nothing(tmp_path):
    root = tmp_path / "absent"
    with pytest.raises(RootError) as info:
        ddmq.broker(str(root))
    assert info.value.error == "missing"
    assert str(root) in str(info.value)
    assert not root.exists()


def test_an_uninitiated_root_without_create_is_error_uninitiated_and_unchanged(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "data.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(RootError) as info:
        ddmq.broker(str(tmp_path / "plain"))
    assert info.value.error == "uninitiated"
    assert "ddmq.yaml" in str(info.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("root", [None, "", 5])
def test_a_root_that_is_not_a_path_is_invalid(root):
    with pytest.raises(InvalidInputError):
        ddmq.broker(root)


def test_an_existing_root_opens_without_create(b):
    b.publish("q", "m")
    again = ddmq.broker(b.root)
    assert again.consume("q").message == "m"


def test_pathlike_roots_are_accepted(tmp_path):
    b = ddmq.broker(tmp_path / "r", create=True)
    assert b.root == str(tmp_path / "r")


def test_repr_shows_the_documented_fields(b):
    lines = repr(b).splitlines()
    assert [line.split(" = ")[0] for line in lines] == [
        "create", "default_settings", "global_settings", "queue_settings", "root"]
    assert "root = {}".format(b.root) in lines


def test_verbose_logs_to_stderr(root):
    code = ("import ddmq; b = ddmq.broker({!r}, create=True, verbose=True); "
            "b.create_queue('q'); print('out')".format(root))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout == "out\n"
    assert "Creating queue q" in done.stderr


def test_ddmq_error_is_importable_where_documented():
    from ddmq.broker import DdmqError as from_broker
    assert from_broker is ddmq.DdmqError is DdmqError
    error = DdmqError("it broke", "oops")
    assert (error.message, error.error, str(error)) == ("it broke", "oops", "it broke")
    for name in ("RootError", "QueueNotFoundError", "InvalidInputError", "ConfigError",
                 "StorageError", "MessageNotFoundError"):
        assert issubclass(getattr(errors, name), DdmqError)


def test_version_is_the_package_version(b):
    assert b.version() == ddmq.__version__
    assert b.version().count(".") == 2


def test_get_ddmq_bin_path_is_the_executable_beside_this_python():
    import sysconfig

    path = ddmq.get_ddmq_bin_path()
    assert path == os.path.join(sysconfig.get_path("scripts"), "ddmq")
    assert os.path.isfile(path) and os.access(path, os.X_OK)


def test_get_ddmq_bin_path_falls_back_to_path_then_to_the_install_location(
        tmp_path, monkeypatch):
    import sysconfig

    empty = tmp_path / "scripts"
    empty.mkdir()
    monkeypatch.setattr(sysconfig, "get_path", lambda *args, **kwargs: str(empty))
    on_path = tmp_path / "elsewhere"
    on_path.mkdir()
    monkeypatch.setenv("PATH", str(on_path))
    assert ddmq.get_ddmq_bin_path() == str(empty / "ddmq")   # nowhere: where it would go
    script = on_path / "ddmq"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert ddmq.get_ddmq_bin_path() == str(script)


# Folders and queues


def test_create_folder_makes_parents_and_accepts_existing(b, tmp_path):
    path = str(tmp_path / "a" / "b" / "c")
    assert b.create_folder(path) is None
    assert os.path.isdir(path)
    b.create_folder(path)


def test_create_folder_on_a_file_is_a_storage_error(b, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(errors.StorageError):
        b.create_folder(str(tmp_path / "file" / "sub"))


def test_create_queue_makes_config_and_work_folder(b):
    assert b.create_queue("jobs") is True
    queue_dir = os.path.join(b.root, "jobs")
    assert os.path.isfile(os.path.join(queue_dir, "ddmq.yaml"))
    assert os.path.isdir(os.path.join(queue_dir, "work"))
    assert b.check_dir(queue_dir)
    assert b.list_queues() == ["jobs"]


def test_create_queue_keeps_an_existing_queue(b):
    b.publish("q", "kept")
    b.update_settings_file("q", {"priority": 4})
    assert b.create_queue("q") is True
    assert b.get_config_file("q")["priority"] == 4
    assert b.consume("q").message == "kept"


def test_check_dir(b, tmp_path):
    b.create_queue("q")
    assert b.check_dir(os.path.join(b.root, "q")) is True
    assert b.check_dir(b.root) is False, "the root has no work folder"
    assert b.check_dir(b.root, only_conf=True) is True
    assert b.check_dir(str(tmp_path)) is False
    assert b.check_dir(str(tmp_path / "nonexistent")) is False


def test_list_queues_lists_only_initiated_queue_folders_sorted(b):
    for queue in ("zeta", "alpha", "mid_1"):
        b.create_queue(queue)
    os.makedirs(os.path.join(b.root, "plain_dir"))
    os.makedirs(os.path.join(b.root, "bad name", "work"))
    open(os.path.join(b.root, "bad name", "ddmq.yaml"), "w").close()
    open(os.path.join(b.root, "a_file"), "w").close()
    assert b.list_queues() == ["alpha", "mid_1", "zeta"]


def test_delete_queue_removes_the_folder_and_its_messages(b):
    b.publish("q", "a")
    b.publish("q", "b")
    b.consume("q")
    assert b.delete_queue("q") is True
    assert not os.path.exists(os.path.join(b.root, "q"))
    assert b.list_queues() == []
    b.create_queue("q")
    assert b.consume("q") is None, "no stale state survives in the broker"


def test_delete_queue_of_a_missing_queue_is_queue_not_found(b):
    with pytest.raises(QueueNotFoundError) as info:
        b.delete_queue("nope")
    assert info.value.error == "no_queue"


@pytest.mark.parametrize("method", ["purge_queue", "get_message_list", "delete_queue",
                                    "get_config_file"])
def test_queue_methods_on_a_missing_queue_fail_without_creating_it(b, method):
    before = snapshot(b.root)
    with pytest.raises(DdmqError) as info:
        getattr(b, method)("nope")
    assert "nope" in str(info.value)
    assert snapshot(b.root) == before


def test_delete_queue_refuses_a_folder_with_foreign_files(b):
    b.publish("q", "m")
    with open(os.path.join(b.root, "q", "notes.txt"), "w") as handle:
        handle.write("someone's data")
    before = snapshot(b.root)
    with pytest.raises(DdmqError) as info:
        b.delete_queue("q")
    assert "notes.txt" in str(info.value)
    assert snapshot(b.root) == before


def test_purge_queue_returns_waiting_and_claimed_counts(b):
    for i in range(5):
        b.publish("q", str(i))
    b.consume("q", n=2)
    assert b.purge_queue("q") == [3, 2]
    assert b.get_message_list("q") == ([], [])
    assert b.check_dir(os.path.join(b.root, "q")), "folders and config stay"
    assert b.purge_queue("q") == [0, 0]


def test_get_message_list_gives_waiting_in_serving_order_and_claimed(b):
    low = b.publish("q", "low", priority=10)
    high = b.publish("q", "high", priority=9)
    taken = b.publish("q", "taken", priority=1)
    msg = b.consume("q")
    assert msg.id == taken.id
    ready, work = b.get_message_list("q")
    assert ready == [high.filename.split("/")[1], low.filename.split("/")[1]]
    assert work == [msg.filename]


def test_get_settings_of_a_missing_queue(b, root):
    with pytest.raises(QueueNotFoundError):
        ddmq.broker(root).get_settings("nope")
    assert not os.path.exists(os.path.join(root, "nope"))
    assert b.get_settings("nope")["priority"] == 999, "create=True creates it"
    assert b.list_queues() == ["nope"]


def test_get_config_file_of_root_and_queue(b):
    b.create_queue("q")
    b.update_settings_file("", {"priority": 1})
    b.update_settings_file("q", {"priority": 2})
    assert b.get_config_file() == {"priority": 1}
    assert b.get_config_file("") == {"priority": 1}
    assert b.get_config_file("q") == {"priority": 2}


@pytest.mark.parametrize("package", [{1: 2}, {None: 1}, {"ok": 1, ("a",): 2}])
def test_update_settings_file_rejects_keys_that_are_not_names(b, package):
    b.create_queue("q")
    before = snapshot(b.root)
    with pytest.raises(DdmqError):
        b.update_settings_file("q", package)
    assert snapshot(b.root) == before


def test_update_settings_file_without_package_keeps_the_file(b):
    b.update_settings_file("", {"priority": 1})
    b.update_settings_file("")
    assert b.get_config_file() == {"priority": 1}


# Publish


def test_publish_returns_a_copy_of_the_message_written(b):
    msg = b.publish("q", "Hello World!", priority=3, timeout=30, requeue_limit=2)
    assert isinstance(msg, ddmq.message)
    assert (msg.queue, msg.message, msg.priority, msg.timeout) == ("q", "Hello World!", 3, 30)
    assert (msg.requeue, msg.requeue_prio, msg.requeue_counter, msg.requeue_limit) == \
        (None, None, 0, 2)
    assert len(msg.id) == 32 and int(msg.id, 16) >= 0
    assert len(msg.queue_number) == 19
    assert msg.filename == "q/3.{}.ddmq{}".format(msg.queue_number, msg.id)
    on_disk = read_json(os.path.join(b.root, msg.filename))
    assert on_disk == json.loads(msg.msg2json())


def test_publish_keeps_any_json_message_intact(b):
    text = {"list": [1, 2.5, None, True], "unicode": "h\u00e9llo \u2603 \U0001F600", "nl": "a\nb"}
    b.publish("q", text)
    assert b.consume("q").message == text


def test_publish_accepts_message_as_another_name_for_msg_text(b):
    b.publish("q", message="via keyword")
    assert b.consume("q").message == "via keyword"


def test_publish_without_text_stores_an_empty_message(b):
    b.publish("q")
    assert b.consume("q").message == ""


def test_publish_to_a_missing_queue_without_create_is_queue_not_found(b, root):
    plain = ddmq.broker(root)
    with pytest.raises(QueueNotFoundError):
        plain.publish("nope", "m")
    assert not os.path.exists(os.path.join(root, "nope"))


def test_publish_of_unserialisable_text_is_invalid_and_writes_nothing(b):
    b.create_queue("q")
    before = snapshot(b.root)
    with pytest.raises(InvalidInputError):
        b.publish("q", object(), clean=False)
    assert snapshot(b.root) == before


def test_publish_many_publishes_in_order_with_shared_options(b):
    sent = b.publish_many("q", ["a", {"b": 1}, "c"], priority=4, requeue=False, timeout=30)
    assert [m.message for m in sent] == ["a", {"b": 1}, "c"]
    assert len({m.id for m in sent}) == 3
    got = b.consume("q", n=5)
    assert [m.id for m in got] == [m.id for m in sent]
    assert {(m.priority, m.requeue, m.timeout) for m in got} == {(4, False, 30)}
    assert b.publish_many("q", []) == []


@pytest.mark.parametrize("texts, keywords", [("one text", {}), (["a"], {"priority": -1}),
                                             (["a"], {"requeue": "no"})])
def test_publish_many_rejects_bad_input_without_changes(b, texts, keywords):
    b.create_queue("q")
    before = snapshot(b.root)
    with pytest.raises(InvalidInputError):
        b.publish_many("q", texts, **keywords)
    assert snapshot(b.root) == before


# Consume


def test_consume_one_returns_a_message_or_none(b):
    b.create_queue("q")
    assert b.consume("q") is None
    sent = b.publish("q", "m")
    msg = b.consume("q")
    assert isinstance(msg, ddmq.message)
    assert (msg.id, msg.message, msg.queue) == (sent.id, "m", "q")
    assert names.parse_work_name(msg.filename)[1] == sent.filename.split("/")[1]
    assert os.path.isfile(os.path.join(work_dir(b), msg.filename))
    assert waiting(b) == []
    assert b.consume("q") is None


def test_consume_n_returns_a_list(b):
    b.create_queue("q")
    assert b.consume("q", n=3) == []
    sent = [b.publish("q", str(i)).id for i in range(5)]
    first = b.consume("q", n=3)
    assert [msg.id for msg in first] == sent[:3]
    rest = b.consume("q", n=3)
    assert [msg.id for msg in rest] == sent[3:]
    assert len(claimed(b)) == 5


def test_consumed_lease_is_now_plus_timeout(cb, clock):
    cb.publish("q", "m")
    msg = cb.consume("q")
    assert names.parse_work_name(msg.filename)[0] == int(clock.now + 600)


@pytest.mark.parametrize("n", [0, -1, 1.5, "2", True, None])
def test_consume_rejects_a_bad_n(b, n):
    b.publish("q", "m")
    before = snapshot(b.root)
    with pytest.raises(InvalidInputError):
        b.consume("q", n=n)
    assert snapshot(b.root) == before


def test_consume_of_a_missing_queue_without_create_is_queue_not_found(b, root):
    with pytest.raises(QueueNotFoundError):
        ddmq.broker(root).consume("nope")


# Ack and nack


def test_ack_a_message_object(b):
    b.publish("q", "m")
    msg = b.consume("q")
    assert b.ack(msg) == [msg.filename]
    assert b.get_message_list("q") == ([], [])


def test_ack_a_queue_and_file_name(b):
    b.publish("q", "m")
    msg = b.consume("q")
    assert b.ack("q", msg.filename) == [msg.filename]
    assert claimed(b) == []


def test_ack_a_queue_and_list_of_names(b):
    for i in range(3):
        b.publish("q", str(i))
    msgs = b.consume("q", n=3)
    acked = b.ack("q", [msg.filename for msg in msgs])
    assert acked == [msg.filename for msg in msgs]
    assert claimed(b) == []


def test_ack_keyword_msg_files(b):
    b.publish("q", "m")
    msg = b.consume("q")
    assert b.ack(queue="q", msg_files=[msg.filename]) == [msg.filename]


def test_ack_twice_returns_nothing_the_second_time(b):
    b.publish("q", "m")
    msg = b.consume("q")
    b.ack(msg)
    assert b.ack(msg) == []


def test_ack_with_requeue_true_requeues(b):
    b.publish("q", "m", priority=5)
    msg = b.consume("q")
    assert b.ack(msg, requeue=True) == [msg.filename]
    again = b.consume("q")
    assert (again.id, again.priority, again.requeue_counter) == (msg.id, 0, 1)


def test_nack_requeues_by_default_keeping_the_id(b):
    sent = b.publish("q", "m", priority=5)
    msg = b.consume("q")
    assert b.nack(msg) == [msg.filename]
    assert claimed(b) == []
    again = b.consume("q")
    assert (again.id, again.message, again.priority, again.requeue_counter) == \
        (sent.id, "m", 0, 1)


def test_nack_with_requeue_false_deletes(b):
    b.publish("q", "m", requeue=True)
    msg = b.consume("q")
    assert b.nack("q", msg.filename, requeue=False) == [msg.filename]
    assert b.get_message_list("q") == ([], [])


def test_nack_with_requeue_true_overrides_the_message(b):
    b.publish("q", "m", requeue=False)
    msg = b.consume("q")
    b.nack("q", [msg.filename], requeue=True)
    assert b.consume("q").id == msg.id


def test_nack_respects_requeue_limit(b):
    b.publish("q", "m", requeue_limit=2)
    deliveries = []
    while True:
        msg = b.consume("q")
        if msg is None:
            break
        deliveries.append(msg.requeue_counter)
        assert b.nack(msg) == [msg.filename]
    assert deliveries == [0, 1, 2]
    assert b.get_message_list("q") == ([], [])


def test_nack_of_a_gone_message_returns_nothing(b):
    b.publish("q", "m")
    msg = b.consume("q")
    b.ack(msg)
    assert b.nack(msg) == []
    assert b.get_message_list("q") == ([], [])


def test_a_requeued_message_carries_its_new_name_and_counter_on_disk(b):
    b.publish("q", "m")
    b.nack(b.consume("q"))
    [ready] = waiting(b)
    on_disk = read_json(os.path.join(b.root, "q", ready))
    assert on_disk["filename"] == "q/" + ready
    assert on_disk["requeue_counter"] == 1
    assert on_disk["priority"] == 0


@pytest.mark.parametrize("method", ["ack", "nack"])
def test_ack_and_nack_of_a_published_but_unconsumed_message_is_invalid(b, method):
    msg = b.publish("q", "m")
    before = snapshot(b.root)
    with pytest.raises(InvalidInputError):
        getattr(b, method)(msg)
    assert snapshot(b.root) == before


# Cleaning


def expire(clock, seconds=601):
    clock.now += seconds


def test_clean_requeues_expired_messages(cb, clock):
    sent = cb.publish("q", "m", priority=7)
    cb.consume("q")
    assert cb.clean("q", force=True) is True
    assert waiting(cb) == [], "not expired yet"
    expire(clock)
    assert cb.clean("q", force=True) is True
    assert claimed(cb) == []
    [ready] = waiting(cb)
    assert ready.startswith("0.") and ready.endswith(sent.id)
    again = cb.consume("q")
    assert (again.id, again.requeue_counter) == (sent.id, 1)


def test_clean_runs_at_most_once_a_minute_unless_forced(cb, clock):
    assert cb.clean("q") is True
    assert cb.clean("q") is False
    assert cb.clean("q", force=True) is True
    expire(clock, 61)
    assert cb.clean("q") is True


def test_clean_records_when_it_ran_so_other_brokers_wait(cb, clock):
    config = open(os.path.join(cb.root, "q", "ddmq.yaml")).read()
    assert cb.clean("q") is True
    other = ddmq.broker(cb.root, clock=clock)
    assert other.get_settings("q")["cleaned"] == int(clock.now)
    # The stamp is kept beside ddmq.yaml, which a settings change alone rewrites.
    assert open(os.path.join(cb.root, "q", "ddmq.yaml")).read() == config
    assert other.clean("q") is False
    expire(clock, 61)
    assert other.clean("q") is True


def test_clean_deletes_expired_messages_that_must_not_be_requeued(cb, clock):
    cb.publish("q", "m", requeue=False)
    cb.consume("q")
    expire(clock)
    cb.clean("q", force=True)
    assert cb.get_message_list("q") == ([], [])


def test_clean_follows_the_queue_requeue_setting(cb, clock):
    cb.update_settings_file("q", {"requeue": False})
    cb.publish("q", "m")
    cb.consume("q")
    expire(clock)
    cb.clean("q", force=True)
    assert cb.get_message_list("q") == ([], [])


def test_clean_respects_requeue_limit_and_counter(cb, clock):
    cb.publish("q", "m", requeue_limit=1)
    cb.consume("q")
    expire(clock)
    cb.clean("q", force=True)
    assert cb.consume("q").requeue_counter == 1
    expire(clock)
    cb.clean("q", force=True)
    assert cb.get_message_list("q") == ([], [])


@pytest.mark.parametrize("timeout", [1e12, float("inf")])
def test_a_huge_timeout_means_a_lease_that_does_not_expire(cb, clock, timeout):
    cb.publish("q", "m", timeout=timeout)
    msg = cb.consume("q")
    assert msg.message == "m"
    expire(clock, 10 ** 6)
    cb.clean("q", force=True)
    assert cb.get_message_list("q") == ([], [msg.filename])


def test_clean_respects_a_per_message_timeout(cb, clock):
    cb.publish("q", "short", timeout=10)
    cb.publish("q", "default")
    cb.consume("q", n=2)
    expire(clock, 11)
    cb.clean("q", force=True)
    assert [cb.get_message(os.path.join(cb.root, "q", name)).message
            for name in waiting(cb)] == ["short"]
    assert len(claimed(cb)) == 1


def test_consume_and_publish_clean_first_unless_told_not_to(root, clock):
    # A fresh broker's first clean runs (the queue was never cleaned).
    for keywords, cleans in [({}, True), ({"clean": True}, True), ({"clean": False}, False),
                             ({"skip_cleaning": True}, False), ({"skip_cleaning": False}, True)]:
        for method in ("consume", "publish", "ack", "nack"):
            clock.now = time.time()
            b = ddmq.broker(root, create=True, clock=clock)
            b.purge_queue("q") if "q" in b.list_queues() else b.create_queue("q")
            stamp = os.path.join(root, "q", ".ddmq.yaml.cleaned")
            if os.path.exists(stamp):
                os.unlink(stamp)
            b.publish("q", "old", clean=False)
            old = b.consume("q", clean=False)
            b.publish("q", "other", clean=False)
            other = b.consume("q", clean=False)
            expire(clock)
            fresh = ddmq.broker(root, clock=clock)
            if method == "consume":
                fresh.consume("q", **keywords)
            elif method == "publish":
                fresh.publish("q", "new", **keywords)
            else:
                getattr(fresh, method)("q", other.filename, requeue=False, **keywords)
            requeued = any(name.endswith(old.id) for name in waiting(fresh)) or \
                any(name.endswith(old.id) and not name.startswith(old.filename[:10])
                    for name in claimed(fresh))
            assert requeued is cleans, (method, keywords)


def test_clean_all_cleans_every_queue(cb, clock):
    cb.create_queue("r")
    for queue in ("q", "r"):
        cb.publish(queue, "m", clean=False)
        cb.consume(queue, clean=False)
    expire(clock, 700)
    assert cb.clean_all() is None
    assert len(waiting(cb, "q")) == len(waiting(cb, "r")) == 1
    assert claimed(cb, "q") == claimed(cb, "r") == []


def test_clean_removes_dead_writers_temporary_files(cb, clock):
    temp = os.path.join(cb.root, "q", ".tmp", "host.1.abcd.1")
    with open(temp, "w") as handle:
        handle.write('{"message": "half')
    cb.clean("q", force=True)
    assert os.path.exists(temp), "young: its writer may still be busy"
    expire(clock, 3601 + 1)
    cb.clean("q", force=True)
    assert not os.path.exists(temp)


# Single messages by path


def test_get_message_by_relative_absolute_and_work_path(b):
    sent = b.publish("q", "m")
    assert b.get_message(sent.filename).id == sent.id
    absolute = os.path.join(b.root, sent.filename)
    got = b.get_message(absolute)
    assert (got.message, got.filename) == ("m", sent.filename.split("/")[1])
    msg = b.consume("q")
    got = b.get_message(os.path.join(b.root, "q", "work", msg.filename))
    assert (got.id, got.filename) == (sent.id, msg.filename)
    assert b.get_message(os.path.join("q", "work", msg.filename)).id == sent.id


def test_get_message_of_a_missing_file_is_not_found(b):
    sent = b.publish("q", "m")
    b.consume("q")
    with pytest.raises(MessageNotFoundError):
        b.get_message(sent.filename)


def test_get_message_of_a_corrupt_file_is_an_error(b):
    sent = b.publish("q", "m")
    with open(os.path.join(b.root, sent.filename), "w") as handle:
        handle.write("{trunc")
    with pytest.raises(DdmqError) as info:
        b.get_message(sent.filename)
    assert info.value.error == "corrupt"


def test_delete_message_by_path_and_by_object(b):
    first = b.publish("q", "a")
    second = b.publish("q", "b")
    assert b.delete_message(first.filename) is True
    assert b.delete_message(second) is True
    assert waiting(b) == []
    b.publish("q", "c")
    msg = b.consume("q")
    assert b.delete_message(msg) is True
    assert b.get_message_list("q") == ([], [])


def test_delete_message_of_a_missing_file_is_not_found(b):
    sent = b.publish("q", "a")
    b.delete_message(sent)
    with pytest.raises(MessageNotFoundError):
        b.delete_message(sent)


def test_requeue_message_by_path_and_object(b):
    b.publish("q", "a", priority=5)
    b.publish("q", "b", priority=5)
    first, second = b.consume("q", n=2)
    assert b.requeue_message(os.path.join(b.root, "q", "work", first.filename)) is True
    assert b.requeue_message(None, msg=second) is True
    assert claimed(b) == []
    assert [b.consume("q").requeue_counter for _ in range(2)] == [1, 1]


def test_requeue_message_of_a_waiting_message_is_invalid(b):
    sent = b.publish("q", "a")
    with pytest.raises(InvalidInputError):
        b.requeue_message(sent.filename)


def test_requeue_message_of_a_gone_message_is_not_found(b):
    b.publish("q", "a")
    msg = b.consume("q")
    b.ack(msg)
    with pytest.raises(MessageNotFoundError):
        b.requeue_message(os.path.join("q", "work", msg.filename))


# Bad input: a DdmqError with a useful message, and nothing on disk changes

BAD_QUEUES = ["../x", "a/b", "", None, "x y", "..", ".tmp", "q/work"]


def bad_queue_calls(queue):
    return {
        "publish": lambda b: b.publish(queue, "m"),
        "consume": lambda b: b.consume(queue),
        "consume_n": lambda b: b.consume(queue, n=2),
        "ack": lambda b: b.ack(queue, "1700000000.999.1.ddmq" + "a" * 32),
        "nack": lambda b: b.nack(queue, ["1700000000.999.1.ddmq" + "a" * 32]),
        "clean": lambda b: b.clean(queue, force=True),
        "create_queue": lambda b: b.create_queue(queue),
        "delete_queue": lambda b: b.delete_queue(queue),
        "purge_queue": lambda b: b.purge_queue(queue),
        "get_message_list": lambda b: b.get_message_list(queue),
        "get_settings": lambda b: b.get_settings(queue),
        "update_settings_file": lambda b: b.update_settings_file(queue, {"priority": 1}),
    }


@pytest.mark.parametrize("queue, method", [
    (queue, method) for queue in BAD_QUEUES + [["q"]] for method in sorted(bad_queue_calls(queue))
    # '' and None name the root's config file there, as in the original.
    if not (method == "update_settings_file" and queue in ("", None))])
def test_invalid_queue_names_are_rejected_without_changes(b, queue, method):
    b.publish("q", "m")
    b.consume("q")
    b.publish("q", "m2")
    before = snapshot(os.path.dirname(b.root))
    with pytest.raises(InvalidInputError) as info:
        bad_queue_calls(queue)[method](b)
    assert "queue name" in str(info.value)
    assert snapshot(os.path.dirname(b.root)) == before


@pytest.mark.parametrize("priority", [-1, 1.5, "1", True, False, [1], float("nan")])
def test_bad_priorities_are_rejected_without_changes(b, priority):
    b.create_queue("q")
    before = snapshot(b.root)
    with pytest.raises(InvalidInputError) as info:
        b.publish("q", "m", priority=priority)
    assert "priority" in str(info.value)
    assert snapshot(b.root) == before


@pytest.mark.parametrize("keyword, value", [
    ("requeue_prio", -1), ("requeue_prio", "0"), ("requeue_limit", -2), ("requeue_limit", 2.0),
    ("timeout", -1), ("timeout", "10"), ("requeue", "yes"), ("requeue", 1),
    ("requeue_counter", -1)])
def test_bad_publish_options_are_rejected_without_changes(b, keyword, value):
    b.create_queue("q")
    before = snapshot(b.root)
    with pytest.raises(InvalidInputError) as info:
        b.publish("q", "m", **{keyword: value})
    assert keyword in str(info.value)
    assert snapshot(b.root) == before


ID = "a" * 32
BAD_WORK_NAMES = ["../1700000000.999.1.ddmq" + ID, "work/1700000000.999.1.ddmq" + ID,
                  "/etc/passwd", "999.1.ddmq" + ID, "ddmq.yaml", "", "1700000000.999.1.ddmq",
                  "1700000000.999.1.ddmq" + ID + "/..", None, 5]


@pytest.mark.parametrize("name", BAD_WORK_NAMES)
@pytest.mark.parametrize("method", ["ack", "nack"])
def test_ack_and_nack_reject_names_that_are_not_claimed_messages(b, name, method):
    b.publish("q", "m")
    msg = b.consume("q")
    before = snapshot(os.path.dirname(b.root))
    for files in (name, [msg.filename, name]):
        with pytest.raises(InvalidInputError) as info:
            getattr(b, method)("q", files)
        assert "q" in str(info.value)
    assert snapshot(os.path.dirname(b.root)) == before


@pytest.mark.parametrize("method", ["ack", "nack"])
def test_ack_and_nack_without_names_are_invalid(b, method):
    b.create_queue("q")
    for files in (None, []):
        with pytest.raises(InvalidInputError):
            getattr(b, method)("q", files)


def outside_paths(b, tmp_path):
    """Return message-like paths that are not messages of a queue in ``b``'s root."""
    outside = tmp_path / "elsewhere"
    (outside / "work").mkdir(parents=True)
    ready = "999.1.ddmq" + ID
    (outside / ready).write_text('{"message": "not yours"}')
    (outside / "work" / ("1700000000." + ready)).write_text('{"message": "not yours"}')
    (tmp_path / ready).write_text('{"message": "not yours"}')
    return [str(outside / ready), str(outside / "work" / ("1700000000." + ready)),
            os.path.join(b.root, "..", "elsewhere", ready), os.path.join("..", "elsewhere", ready),
            os.path.join(b.root, "q", "..", "..", ready), os.path.join(b.root, ready),
            os.path.join(b.root, "q", "notes.txt"), os.path.join(b.root, "q", "ddmq.yaml"),
            os.path.join(b.root, "q", "work", ready), os.path.join(b.root, "q", "x", ready),
            "", None, 7]


@pytest.mark.parametrize("method", ["get_message", "delete_message", "requeue_message"])
def test_paths_outside_the_queues_are_rejected_without_changes(b, tmp_path, method):
    b.publish("q", "m")
    with open(os.path.join(b.root, "q", "notes.txt"), "w") as handle:
        handle.write("mine")
    paths = outside_paths(b, tmp_path)
    before = snapshot(tmp_path)
    for path in paths:
        with pytest.raises(InvalidInputError) as info:
            getattr(b, method)(path)
        assert "message" in str(info.value)
    assert snapshot(tmp_path) == before


def test_a_symlinked_queue_pointing_outside_the_root_is_rejected(b, tmp_path):
    (tmp_path / "outside").mkdir()
    ready = "999.1.ddmq" + ID
    (tmp_path / "outside" / ready).write_text('{"message": "not yours"}')
    os.symlink(str(tmp_path / "outside"), os.path.join(b.root, "link"))
    with pytest.raises(InvalidInputError):
        b.delete_message(os.path.join(b.root, "link", ready))
    assert (tmp_path / "outside" / ready).exists()


def test_delete_message_in_a_missing_queue_creates_nothing(b):
    before = snapshot(b.root)
    with pytest.raises(DdmqError):
        b.delete_message(os.path.join("nope", "999.1.ddmq" + ID))
    assert snapshot(b.root) == before


# Queues written by the original ddmq 0.9.14


def test_legacy_waiting_messages_are_consumed_and_acked(legacy):
    legacy.queue("queue_one")
    _, first = legacy.message("queue_one", "one", queue_number="1")
    _, second = legacy.message("queue_one", "two", queue_number="2")
    _, top = legacy.message("queue_one", "top", priority=10, queue_number="3")
    b = ddmq.broker(legacy.path)
    assert b.list_queues() == ["queue_one"]
    msgs = b.consume("queue_one", n=5)
    assert [(m.message, m.id) for m in msgs] == [("top", top), ("one", first), ("two", second)]
    assert sorted(b.ack("queue_one", [m.filename for m in msgs])) == \
        sorted(m.filename for m in msgs)
    assert b.get_message_list("queue_one") == ([], [])


def test_legacy_claimed_messages_are_acked_by_name(legacy):
    legacy.queue("q")
    work, _ = legacy.message("q", "m", queue_number="15386383781", expiry=time.time() + 600)
    b = ddmq.broker(legacy.path)
    assert b.get_message_list("q") == ([], [work])
    assert b.get_message(os.path.join("q", "work", work)).message == "m"
    assert b.ack("q", work) == [work]
    assert b.get_message_list("q") == ([], [])


def test_legacy_expired_messages_are_cleaned(legacy):
    legacy.queue("q")
    now = time.time()
    _, plain = legacy.message("q", "requeue", requeue=True, queue_number="1", expiry=now - 5)
    _, custom = legacy.message("q", "custom", requeue=7, queue_number="2", expiry=now - 5)
    legacy.message("q", "drop", requeue=False, queue_number="3", expiry=now - 5)
    _, live = legacy.message("q", "live", requeue=True, queue_number="4", expiry=now + 600)
    b = ddmq.broker(legacy.path)
    assert b.clean("q") is True
    ready, work = b.get_message_list("q")
    assert [name.split(".")[0] for name in ready] == ["0", "7"]
    assert ready[0].endswith(plain) and ready[1].endswith(custom)
    assert len(work) == 1 and work[0].endswith(live)
    msg = b.consume("q")
    assert (msg.message, msg.requeue_counter, msg.requeue) == ("requeue", 1, True)
    custom_msg = b.consume("q")
    assert (custom_msg.message, custom_msg.requeue_prio) == ("custom", 7)
    assert b.consume("q") is None


def test_legacy_requeue_limit_and_counter_are_honoured(legacy):
    legacy.queue("q")
    legacy.message("q", "m", requeue=True, requeue_counter=2, requeue_limit=2,
                   expiry=time.time() - 1)
    b = ddmq.broker(legacy.path)
    b.clean("q", force=True)
    assert b.get_message_list("q") == ([], [])


def test_legacy_per_message_timeout_sets_the_lease(legacy):
    legacy.queue("q")
    legacy.message("q", "m", timeout=30)
    b = ddmq.broker(legacy.path)
    msg = b.consume("q")
    assert 25 < names.parse_work_name(msg.filename)[0] - time.time() <= 30


def test_legacy_queue_accepts_new_messages_and_nacks(legacy):
    legacy.queue("q")
    legacy.message("q", "old", queue_number="1538638378", requeue=True)
    b = ddmq.broker(legacy.path)
    b.publish("q", "new")
    old = b.consume("q")
    assert old.message == "old"
    b.nack(old)
    assert [b.consume("q").message for _ in range(2)] == ["old", "new"]


def test_legacy_requeue_false_is_honoured_on_nack_as_the_original_did(legacy):
    legacy.queue("q")
    legacy.message("q", "dropped", requeue=False)
    b = ddmq.broker(legacy.path)
    assert b.nack(b.consume("q"))
    assert b.get_message_list("q") == ([], [])


def test_legacy_queue_is_purged_and_deleted(legacy):
    legacy.queue("q")
    legacy.message("q", "a")
    legacy.message("q", "b", expiry=time.time())
    b = ddmq.broker(legacy.path)
    assert b.purge_queue("q") == [1, 1]
    assert b.delete_queue("q") is True
    assert b.list_queues() == []


def test_release_gives_a_message_back_unchanged_in_its_place(b):
    b.create_queue("q")
    first, second = b.publish_many("q", ["first", "second"])
    msg = b.consume("q")
    assert msg.id == first.id
    assert b.release(msg) is True
    again = b.consume("q")
    assert again.id == first.id and again.requeue_counter == 0   # its place, its count
    old = again.filename
    b.touch(again)                                  # as another process taking it over would
    assert b.release("q", old) is False             # that claim is no longer ours
    assert b.release(again) is True
    with pytest.raises(InvalidInputError):
        b.release("q", [again.filename, again.filename])
