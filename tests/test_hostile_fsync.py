"""Durability: with ``fsync: true`` every state change is on disk before the call returns.

A power loss cannot be simulated here, so the tests check the contract the
guarantee rests on: which files and folders are fsynced, and in which order
relative to the rename that makes a change visible.
"""

import os

import pytest

import ddmq


@pytest.fixture
def synced(tmp_path, monkeypatch):
    """Return (broker with fsync on for queue q, list of fsynced paths, recorded as they happen)."""
    root = str(tmp_path / "root")
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    b.update_settings_file("q", {"fsync": True})
    b = ddmq.broker(root)
    calls = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        calls.append(os.path.relpath(os.readlink("/proc/self/fd/{}".format(fd)), root))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return b, calls


def _kinds(calls):
    """Name each fsynced path by what it is: a temp file, a message file or a folder."""
    kinds = []
    for path in calls:
        if path.startswith("q/.tmp/"):
            kinds.append("temp file")
        elif path in ("q", "q/work", "q/.quarantine", "q/.tmp"):
            kinds.append(path + "/")
        else:
            kinds.append(path)
    return kinds


def test_publish_fsyncs_the_file_before_the_rename_and_the_folder_after(synced):
    b, calls = synced
    b.publish("q", "m", skip_cleaning=True)
    assert _kinds(calls) == ["temp file", "q/"]


def test_claim_ack_and_nack_fsync_both_folders_of_every_move(synced):
    b, calls = synced
    b.publish("q", "m", skip_cleaning=True)
    del calls[:]
    msg = b.consume("q", skip_cleaning=True)
    assert sorted(_kinds(calls)) == ["q/", "q/work/"]
    del calls[:]
    b.nack(msg, skip_cleaning=True)
    # take over (work/), publish the requeued copy (file, q/), remove the claimed file (work/)
    assert _kinds(calls) == ["q/work/", "temp file", "q/", "q/work/"]
    del calls[:]
    msg = b.consume("q", skip_cleaning=True)
    del calls[:]
    b.ack(msg, skip_cleaning=True)
    assert _kinds(calls) == ["q/work/"]


def test_a_per_message_timeout_takeover_is_fsynced(synced):
    b, calls = synced
    b.publish("q", "m", timeout=30, skip_cleaning=True)
    del calls[:]
    b.consume("q", skip_cleaning=True)
    assert sorted(_kinds(calls)) == ["q/", "q/work/", "q/work/"]


def test_clean_requeue_and_delete_are_fsynced(synced, tmp_path):
    b, calls = synced
    b.publish("q", "again", skip_cleaning=True)
    b.publish("q", "gone", requeue=False, skip_cleaning=True)
    b.consume("q", n=2, skip_cleaning=True)
    later = ddmq.broker(b.root, clock=lambda: 10 ** 10)
    del calls[:]
    later.clean("q", force=True)
    kinds = _kinds(calls)
    assert kinds.count("temp file") == 1 and kinds.count("q/") == 1
    assert kinds.count("q/work/") == 4      # two take-overs, two removals


def test_quarantine_is_fsynced(synced):
    b, calls = synced
    with open(os.path.join(b.root, "q", "1.1000000000.ddmqbad"), "w") as handle:
        handle.write("not json")
    del calls[:]
    assert b.consume("q", skip_cleaning=True) is None
    assert sorted(_kinds(calls)) == ["q/", "q/.quarantine/", "q/work/", "q/work/"]


def test_without_fsync_nothing_is_fsynced(tmp_path, monkeypatch):
    b = ddmq.broker(str(tmp_path / "root"), create=True)
    calls = []
    monkeypatch.setattr(os, "fsync", calls.append)
    b.publish("q", "m")
    b.nack(b.consume("q"))
    b.ack(b.consume("q"))
    assert calls == []
