"""ddmq.admin: queue folders created, listed, purged and deleted, and what ddmq did not write."""

import os

import pytest

import ddmq
from ddmq import admin, protocol
from ddmq.errors import DdmqError


@pytest.fixture
def b(root):
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    return b


def test_create_queue_makes_the_folders_and_keeps_an_existing_config(root):
    queue_dir = os.path.join(root, "jobs")
    admin.create_queue(queue_dir, None)
    assert admin.is_queue_dir(queue_dir)
    config = os.path.join(queue_dir, "ddmq.yaml")
    with open(config, "a") as f:
        f.write("priority: 7\n")
    admin.create_queue(queue_dir, None)   # an existing queue is left as it is
    with open(config) as f:
        assert "priority: 7" in f.read()


def test_list_queues_skips_folders_that_are_not_queues(b, root):
    os.mkdir(os.path.join(root, "not-a-queue"))
    os.mkdir(os.path.join(root, "half"))
    open(os.path.join(root, "half", "ddmq.yaml"), "w").close()   # no work/ folder
    b.create_queue("a")
    assert admin.list_queues(root) == ["a", "q"]
    assert admin.is_queue_dir(os.path.join(root, "half"), only_conf=True)


def test_foreign_entries_name_each_file_ddmq_did_not_write(b, root):
    b.publish("q", "kept")
    b.publish("q", "later", delay=600)
    b.consume("q")
    queue_dir = os.path.join(root, "q")
    for path in ("notes.txt", "work/result.csv", "delayed/x"):
        open(os.path.join(queue_dir, path), "w").close()
    assert sorted(admin.foreign_entries(queue_dir)) == ["delayed/x", "notes.txt",
                                                        "work/result.csv"]


def test_delete_queue_with_a_foreign_file_changes_nothing(b, root):
    b.publish("q", "kept")
    queue_dir = os.path.join(root, "q")
    open(os.path.join(queue_dir, "notes.txt"), "w").close()
    before = sorted(os.listdir(queue_dir))
    with pytest.raises(DdmqError, match="notes.txt") as err:
        admin.delete_queue("q", queue_dir, root)
    assert err.value.error == "not_empty"
    assert sorted(os.listdir(queue_dir)) == before
    assert b.get_message_list("q")[0]


def test_delete_queue_removes_half_written_and_quarantined_files(b, root):
    queue_dir = os.path.join(root, "q")
    b.publish("q", "one")
    os.makedirs(os.path.join(queue_dir, protocol.QUARANTINE_DIR))
    for folder in (protocol.TEMP_DIR, protocol.QUARANTINE_DIR):
        with open(os.path.join(queue_dir, folder, "leftover"), "w") as f:
            f.write("{")
    admin.delete_queue("q", queue_dir, root)
    assert not os.path.exists(queue_dir)


def test_purge_counts_waiting_delayed_and_claimed_messages(b, root):
    b.publish_many("q", ["a", "b", "c"])
    b.publish("q", "later", delay=600)
    b.consume("q")
    assert admin.purge_queue(os.path.join(root, "q")) == [3, 1]
    assert admin.purge_queue(os.path.join(root, "q")) == [0, 0]
