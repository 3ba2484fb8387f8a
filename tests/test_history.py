"""Delivery history: recorded in the message file by requeues, never written by a claim."""

import json
import os
import subprocess
import sys

import pytest

import ddmq
from conftest import Clock, read_json, snapshot


#: The keys of a message file written by ddmq 1.0.
V1_FIELDS = ("queue", "message", "timeout", "id", "priority", "queue_number", "filename",
             "requeue", "requeue_prio", "requeue_counter", "requeue_limit")


@pytest.fixture
def clocked(root):
    clock = Clock()
    return ddmq.broker(root, create=True, clock=clock), clock


def test_publish_records_the_time_and_no_delivery(clocked):
    b, clock = clocked
    msg = b.publish("q", "x")
    on_disk = read_json(os.path.join(b.root, msg.filename))
    assert (on_disk["published_at"], on_disk["delivery_count"]) == (clock.now, 0)
    assert on_disk["first_delivered_at"] is None and on_disk["last_nack_reason"] is None


def test_a_claim_writes_nothing_but_the_consumer_sees_its_delivery(clocked):
    b, clock = clocked
    b.publish("q", "x")
    before = snapshot(b.root)
    clock.now += 5
    msg = b.consume("q")
    after = snapshot(b.root)
    # The claim is one rename: same bytes, new name.
    assert sorted(v for v in before.values() if v) == sorted(v for v in after.values() if v)
    assert (msg.delivery_count, msg.first_delivered_at, msg.last_delivered_at) == \
        (1, clock.now, clock.now)
    assert read_json(os.path.join(b.root, "q", "work", msg.filename))["delivery_count"] == 0


def test_nack_with_reason_records_the_delivery_and_the_next_consume_counts_on(clocked):
    b, clock = clocked
    b.publish("q", "x")
    first_claim = clock.now = clock.now + 10
    msg = b.consume("q")
    clock.now += 3
    assert b.nack("q", msg.filename, reason="exit status 2: boom") == [msg.filename]
    ready = b.get_message_list("q")[0][0]
    on_disk = read_json(os.path.join(b.root, "q", ready))
    assert on_disk["delivery_count"] == 1
    assert on_disk["last_nack_reason"] == "exit status 2: boom"
    # Settled by file name: the delivery's start comes from its lease, to the second.
    assert abs(on_disk["first_delivered_at"] - first_claim) <= 1
    clock.now += 100
    again = b.consume("q")
    assert (again.delivery_count, again.last_delivered_at) == (2, clock.now)
    assert abs(again.first_delivered_at - first_claim) <= 1
    assert again.last_nack_reason == "exit status 2: boom"
    b.nack(again)
    assert b.consume("q").last_nack_reason is None   # the last nack gave no reason


def test_an_expired_delivery_is_recorded_as_such(clocked):
    b, clock = clocked
    b.publish("q", "x", timeout=30)
    b.consume("q")
    clock.now += 31
    b.clean("q", force=True)
    msg = b.consume("q")
    assert (msg.delivery_count, msg.last_nack_reason) == (2, "lease expired")


def test_a_long_reason_is_cut_and_a_bad_one_refused_changing_nothing(b):
    b.publish("q", "x")
    msg = b.consume("q")
    before = snapshot(b.root)
    with pytest.raises(ddmq.errors.InvalidInputError):
        b.nack(msg, reason=42)
    assert snapshot(b.root) == before
    b.nack(msg, reason="x" * 10_000)
    assert len(b.consume("q").last_nack_reason) == 4096


def test_files_without_history_still_load_and_settle(b, legacy):
    legacy.queue("old")
    legacy.message("old", "from 0.9.14", requeue=True)
    broker = ddmq.broker(legacy.path)
    msg = broker.consume("old")
    assert (msg.message, msg.delivery_count, msg.published_at) == ("from 0.9.14", 1, None)
    broker.nack(msg, reason="retry")
    again = broker.consume("old")
    assert (again.delivery_count, again.last_nack_reason) == (2, "retry")
    # A 1.0 file: today's keys minus the history ones.
    sent = b.publish("q", "from 1.0")
    path = os.path.join(b.root, sent.filename)
    fields = {k: v for k, v in read_json(path).items() if k in V1_FIELDS}
    with open(path, "w") as handle:
        json.dump(fields, handle)
    assert b.consume("q").delivery_count == 1


@pytest.mark.parametrize("field, value", [
    ("delivery_count", -1), ("delivery_count", "3"), ("published_at", "yesterday"),
    ("last_delivered_at", -5), ("first_delivered_at", True), ("last_nack_reason", 7)])
def test_a_damaged_history_field_is_quarantined(b, field, value):
    sent = b.publish("q", "x")
    path = os.path.join(b.root, sent.filename)
    fields = read_json(path)
    fields[field] = value
    with open(path, "w") as handle:
        json.dump(fields, handle)
    assert b.consume("q") is None
    assert len(os.listdir(os.path.join(b.root, "q", ".quarantine"))) == 1


def test_cli_nack_reason_and_the_history_in_consume_output(root):
    def ddmq_cli(*args):
        return subprocess.run([sys.executable, "-m", "ddmq"] + list(args), capture_output=True,
                              text=True, timeout=60)

    assert ddmq_cli("publish", "-f", root, "q", "job").returncode == 0
    consumed = json.loads(ddmq_cli("consume", "--format", "json", root, "q").stdout)
    assert consumed["delivery_count"] == 1
    result = ddmq_cli("nack", root, "q", consumed["filename"], "--reason", "disk full")
    assert result.returncode == 0, result.stderr
    again = json.loads(ddmq_cli("consume", "--format", "json", root, "q").stdout)
    assert (again["delivery_count"], again["last_nack_reason"]) == (2, "disk full")
