"""Retry delays and delayed delivery: kept in delayed/, promoted exactly once when due."""

import json
import math
import os
import subprocess
import sys
import time

import pytest

import ddmq
from ddmq import delayed as delayed_module
from ddmq import protocol
from conftest import Clock, snapshot


@pytest.fixture
def clocked(root):
    clock = Clock()
    b = ddmq.broker(root, create=True, clock=clock)
    b.create_queue("q")
    return b, clock


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ddmq"] + list(args), capture_output=True,
                          text=True, timeout=60)


# Retry delays.

def test_the_retry_delay_grows_by_the_backoff_up_to_its_cap(clocked):
    b, clock = clocked
    b.update_settings_file("q", {"requeue_delay": 10, "requeue_backoff": 2,
                                 "requeue_delay_max": 25})
    b.publish("q", "x")
    for expected in (10, 20, 25, 25):
        msg = b.consume("q")
        b.nack(msg)
        assert b.consume("q") is None
        (name,) = b.get_delayed_list("q")
        assert int(name[:10]) == math.ceil(clock.now + expected)
        clock.now += expected - 1
        assert b.consume("q") is None           # not a second early
        clock.now += 1
    assert b.consume("q").requeue_counter == 4
    assert b.get_delayed_list("q") == []


def test_an_explicit_delay_beats_the_setting_and_zero_means_at_once(clocked):
    b, clock = clocked
    b.update_settings_file("q", {"requeue_delay": 100})
    b.publish("q", "x")
    b.nack(b.consume("q"), delay=0)
    msg = b.consume("q")
    assert msg is not None
    b.nack(msg, delay=5)
    clock.now += 5
    again = b.consume("q")
    assert again.not_before == pytest.approx(clock.now)
    assert again.priority == 0                   # served in its requeue priority's place


def test_an_expired_message_waits_its_retry_delay_too(clocked):
    b, clock = clocked
    b.update_settings_file("q", {"requeue_delay": 30})
    b.publish("q", "x", timeout=10)
    b.consume("q")
    clock.now += 11
    b.clean("q", force=True)
    assert b.consume("q") is None
    clock.now += 30
    assert b.consume("q").last_nack_reason == "lease expired"


@pytest.mark.parametrize("delay", [-1, float("nan"), float("inf"), 1e12, "5", True])
def test_a_bad_nack_delay_is_refused_changing_nothing(clocked, delay):
    b, _ = clocked
    b.publish("q", "x")
    msg = b.consume("q")
    before = snapshot(b.root)
    with pytest.raises(ddmq.errors.InvalidInputError):
        b.nack(msg, delay=delay)
    assert snapshot(b.root) == before


@pytest.mark.parametrize("values", [{"requeue_delay": -1}, {"requeue_backoff": 0.5},
                                    {"requeue_delay_max": "1h"}, {"requeue_delay": 1e10}])
def test_bad_delay_settings_are_config_errors(clocked, values):
    b, _ = clocked
    with pytest.raises(ddmq.errors.ConfigError):
        b.update_settings_file("q", values)


def test_cli_nack_delay(root):
    assert _cli("publish", "-f", root, "q", "job").returncode == 0
    consumed = json.loads(_cli("consume", "--format", "json", root, "q").stdout)
    assert _cli("nack", "--delay", "-1", root, "q", consumed["filename"]).returncode == 2
    result = _cli("nack", "--delay", "300", root, "q", consumed["filename"])
    assert result.returncode == 0, result.stderr
    assert _cli("consume", "-s", root, "q").returncode == 3
    assert len(ddmq.broker(root).get_delayed_list("q")) == 1


# Promotion.

def delayed_listings(monkeypatch):
    """Return the list to which every later listing of a ``delayed/`` folder is appended."""
    listed = []
    real = os.listdir

    def counting(path="."):
        if str(path).endswith("/delayed"):
            listed.append(path)
        return real(path)

    monkeypatch.setattr(delayed_module.os, "listdir", counting)
    return listed


def test_consume_does_not_list_delayed_messages_on_every_call(clocked, monkeypatch):
    b, clock = clocked
    b.publish_many("q", ["later"] * 50)
    for msg in b.consume("q", n=50):
        b.nack(msg, delay=3600)
    b.publish_many("q", list(range(200)))
    listed = delayed_listings(monkeypatch)
    for _ in range(200):
        b.ack(b.consume("q"))
    assert len(listed) <= 1
    clock.now += 3600
    assert len(b.consume("q", n=100)) == 50      # the earliest due time passed: listed, promoted
    assert 1 <= len(listed) <= 2


def test_a_due_message_is_promoted_once_among_brokers(root):
    clock = Clock()
    first = ddmq.broker(root, create=True, clock=clock)
    second = ddmq.broker(root, clock=clock)
    first.publish("q", "x")
    first.nack(first.consume("q"), delay=10)
    clock.now += 10
    assert first._promote_due(first._queue("q"), force=True) == 1
    assert second._promote_due(second._queue("q"), force=True) == 0
    assert second.consume("q").message == "x"
    assert first.consume("q") is None


def test_a_promoter_killed_between_its_two_renames_leaves_it_promotable_later(root, monkeypatch):
    clock = Clock()
    b = ddmq.broker(root, create=True, clock=clock)
    b.publish("q", "x")
    b.nack(b.consume("q"), delay=1)
    clock.now += 1
    moves = []
    real = protocol._move

    def die_on_second(source, destination, fsync):
        moves.append(destination)
        if len(moves) == 2:
            raise KeyboardInterrupt
        return real(source, destination, fsync)

    with monkeypatch.context() as patch:
        patch.setattr(protocol, "_move", die_on_second)
        with pytest.raises(KeyboardInterrupt):
            b.consume("q")
    other = ddmq.broker(root, clock=clock)
    assert other.consume("q") is None              # its promoter's lease holds it for a while
    clock.now += 61
    assert other.consume("q").message == "x"
    assert other.get_delayed_list("q") == []


@pytest.mark.timeout(60)
def test_a_waiting_consumer_notices_a_message_falling_due(b):
    b.publish("q", "x")
    b.nack(b.consume("q"), delay=1.5)
    started = time.monotonic()
    msg = b.consume("q", wait=10)
    assert msg is not None and msg.message == "x"
    assert 1.0 <= time.monotonic() - started < 8



# Delayed delivery.

def test_a_delayed_publish_is_invisible_until_due_then_served_in_its_priority_place(clocked):
    b, clock = clocked
    sent = b.publish("q", "urgent later", priority=1, delay=30)
    assert sent.filename.startswith("q/delayed/") and sent.not_before == clock.now + 30
    b.publish("q", "ordinary", priority=5)
    assert b.get_message_list("q")[0] == [b.get_message_list("q")[0][0]]
    assert len(b.get_delayed_list("q")) == 1
    first = b.consume("q")
    assert first.message == "ordinary"
    b.publish("q", "ordinary 2", priority=5)
    clock.now += 30
    assert [m.message for m in b.consume("q", n=3)] == ["urgent later", "ordinary 2"]


def test_not_before_is_absolute_and_a_past_one_is_served_at_once(clocked):
    b, clock = clocked
    b.publish_many("q", list(range(20)), not_before=clock.now + 100)
    b.publish("q", "now", not_before=clock.now - 5)
    assert b.consume("q").message == "now"
    clock.now += 99
    assert b.consume("q") is None
    clock.now += 1
    assert [m.message for m in b.consume("q", n=50)] == list(range(20))   # FIFO kept


def test_delayed_messages_can_be_read_deleted_purged_and_their_queue_deleted(clocked):
    b, clock = clocked
    sent = b.publish("q", "x", delay=60)
    assert b.get_message(os.path.join(b.root, sent.filename)).message == "x"
    assert b.delete_message(sent) is True
    b.publish_many("q", ["y", "z"], delay=60)
    b.publish("q", "w")
    assert b.purge_queue("q") == [3, 0]
    b.publish("q", "v", delay=60)
    assert b.delete_queue("q") is True
    assert "q" not in b.list_queues()


@pytest.mark.parametrize("options", [
    dict(delay=-0.5), dict(delay=float("nan")), dict(delay=float("inf")), dict(delay=1e11),
    dict(delay="10"), dict(not_before=-1), dict(not_before=1e10), dict(not_before=float("nan")),
    dict(delay=1, not_before=1_800_000_100)])
def test_bad_publish_delays_are_refused_changing_nothing(clocked, options):
    b, _ = clocked
    before = snapshot(b.root)
    with pytest.raises(ddmq.errors.InvalidInputError):
        b.publish("q", "x", **options)
    with pytest.raises(ddmq.errors.InvalidInputError):
        b.publish_many("q", ["x"], **options)
    assert snapshot(b.root) == before


def test_a_damaged_not_before_is_quarantined(clocked):
    b, _ = clocked
    sent = b.publish("q", "x")
    path = os.path.join(b.root, sent.filename)
    with open(path) as handle:
        fields = json.load(handle)
    fields["not_before"] = "soon"
    with open(path, "w") as handle:
        json.dump(fields, handle)
    assert b.consume("q") is None


def test_cli_publish_delay_and_view_delayed(root):
    assert _cli("publish", "-f", "--delay", "600", root, "q", "later").returncode == 0
    assert _cli("publish", "--not_before", "1", root, "q", "past").returncode == 0
    assert _cli("publish", "--delay", "nan", root, "q", "x").returncode == 2
    assert _cli("publish", "--delay", "1e12", root, "q", "x").returncode == 2
    view = json.loads(_cli("view", "--format", "json", root).stdout)["q"]
    assert (view["waiting"], view["work"], view["delayed"]) == (1, 0, 1)
    assert json.loads(_cli("consume", "--format", "json", root, "q").stdout)["message"] == "past"
    assert _cli("consume", "-s", root, "q").returncode == 3


def test_a_fresh_consumer_learns_the_earliest_due_time_from_markers_not_a_listing(root, monkeypatch):
    clock = Clock()
    b = ddmq.broker(root, create=True, clock=clock)
    b.publish_many("q", ["later"] * 30, delay=7200)
    b.publish("q", "now")
    listed = delayed_listings(monkeypatch)
    fresh = ddmq.broker(root, clock=clock)
    assert fresh.consume("q", skip_cleaning=True).message == "now"
    assert listed == []
    clock.now += 7200
    assert len(fresh.consume("q", n=50, skip_cleaning=True)) == 30
    assert len(listed) == 1


def test_clean_removes_the_markers_of_minutes_long_past(clocked):
    b, clock = clocked
    b.publish("q", "x", delay=5)
    marks = os.path.join(b.root, "q", ".due")
    assert len(os.listdir(marks)) == 1
    clock.now += 5
    assert b.consume("q").message == "x"
    clock.now += 3600
    b.clean("q", force=True)
    assert os.listdir(marks) == []
