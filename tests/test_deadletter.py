"""Dead-letter queue: messages given up on move there; redrive sends them back."""

import json
import os
import subprocess
import sys

import pytest

import ddmq
from ddmq import protocol
from conftest import Clock, read_json, snapshot


@pytest.fixture
def dl(root):
    """A broker whose queue "q" has dead_letter: dlq and requeue_limit: 1."""
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    b.update_settings_file("q", {"dead_letter": "dlq", "requeue_limit": 1})
    return b


def _fail(b, queue="q", **nack_options):
    msg = b.consume(queue)
    assert b.nack(msg, **nack_options) == [msg.filename]
    return msg


def test_the_requeue_limit_reached_on_nack_moves_the_message_with_where_why_and_when(dl):
    sent = dl.publish("q", {"job": 1})
    _fail(dl)
    _fail(dl, reason="boom")
    assert dl.get_message_list("q") == ([], [])
    waiting, _ = dl.get_message_list("dlq")
    assert len(waiting) == 1
    dead = dl.consume("dlq")
    assert (dead.id, dead.message, dead.queue) == (sent.id, {"job": 1}, "dlq")
    assert dead.dead_lettered_from == "q"
    assert dead.dead_lettered_reason == "requeue limit 1 reached"
    assert dead.last_nack_reason == "boom" and dead.delivery_count == 3
    assert dead.dead_lettered_at >= sent.published_at


def test_expiry_past_the_limit_and_nack_without_requeue_dead_letter_too(root):
    clock = Clock()
    b = ddmq.broker(root, create=True, clock=clock)
    b.create_queue("q")
    b.update_settings_file("q", {"dead_letter": "dlq", "requeue_limit": 0})
    b.publish("q", "expires", timeout=10)
    b.publish("q", "refused")
    b.consume("q")
    clock.now += 11
    b.clean("q", force=True)
    _fail(b, requeue=False)
    reasons = sorted((m.message, m.dead_lettered_reason, m.last_nack_reason)
                     for m in b.consume("dlq", n=5))
    assert reasons == [("expires", "requeue limit 0 reached", "lease expired"),
                       ("refused", "nacked without requeue", None)]


def test_requeue_off_dead_letters_and_without_the_setting_messages_are_dropped(dl):
    dl.publish("q", "no retries", requeue=False)
    _fail(dl)
    dead = dl.consume("dlq")
    assert dead.dead_lettered_reason == "requeue is off"
    dl.ack(dead)
    dl.create_queue("plain")
    dl.publish("plain", "dropped", requeue_limit=0)
    _fail(dl, "plain")
    assert dl.get_message_list("plain") == ([], [])
    assert dl.get_message_list("dlq") == ([], [])


def test_the_message_setting_beats_the_queue_setting_and_the_queue_is_made(dl):
    dl.publish("q", "mine", dead_letter="graveyard", requeue_limit=0)
    _fail(dl)
    assert "graveyard" in dl.list_queues()
    assert dl.consume("graveyard").message == "mine"


def test_a_root_wide_setting_never_moves_the_dead_letter_queue_into_itself(root):
    b = ddmq.broker(root, create=True)
    b.update_settings_file("", {"dead_letter": "dlq", "requeue_limit": 0})
    b.publish("q", "x")
    _fail(b)
    _fail(b, "dlq")
    assert b.get_message_list("dlq") == ([], [])   # dropped, as without the setting


def test_a_dead_letter_queue_is_an_ordinary_queue(dl):
    dl.publish("q", "x", requeue_limit=0)
    _fail(dl)
    assert dl.purge_queue("dlq") == [1, 0]


def test_a_crash_in_the_middle_of_the_move_leaves_both_copies_then_one(root, monkeypatch):
    clock = Clock()
    b = ddmq.broker(root, create=True, clock=clock)
    b.create_queue("q")
    b.update_settings_file("q", {"dead_letter": "dlq", "requeue_limit": 0})
    sent = b.publish("q", "x")
    msg = b.consume("q")

    def crash(*args):
        raise KeyboardInterrupt  # the process dies between the two steps

    with monkeypatch.context() as patch:
        patch.setattr(protocol, "remove", crash)
        with pytest.raises(KeyboardInterrupt):
            b.nack(msg)
    assert len(b.get_message_list("dlq")[0]) == 1
    assert len(b.get_message_list("q")[1]) == 1      # still claimed: never in neither
    clock.now += 3600
    b.clean("q", force=True)                          # the claim expires, is settled again
    assert b.get_message_list("q") == ([], [])
    dead = b.get_message_list("dlq")[0]
    assert len(dead) == 1 and sent.id in dead[0]      # the second move replaced the first


def test_redrive_sends_messages_back_with_their_counter_reset(dl):
    sent = [dl.publish("q", i, requeue_limit=0) for i in range(3)]
    for _ in sent:
        _fail(dl)
    moved = dl.redrive("dlq", n=2)
    assert [m.id for m in moved] == [s.id for s in sent[:2]]
    assert all(m.queue == "q" and m.requeue_counter == 0 for m in moved)
    back = dl.consume("q", n=5)
    assert sorted(m.message for m in back) == [0, 1]
    assert all(m.dead_lettered_from == "q" and m.requeue_counter == 0 for m in back)
    dl.create_queue("elsewhere")
    assert [m.queue for m in dl.redrive("dlq", to="elsewhere")] == ["elsewhere"]
    assert dl.consume("elsewhere").message == 2
    assert dl.redrive("dlq") == []


def test_a_message_without_a_source_stays_in_the_dead_letter_queue(dl):
    dl.publish("dlq", "put here by hand")
    assert dl.redrive("dlq") == []
    assert dl.consume("dlq").message == "put here by hand"


@pytest.mark.parametrize("call", [
    lambda b: b.publish("q", "x", dead_letter="../etc"),
    lambda b: b.publish("q", "x", dead_letter="q"),
    lambda b: b.publish_many("q", ["x"], dead_letter=""),
    lambda b: b.update_settings_file("q", {"dead_letter": "q"}),
    lambda b: b.update_settings_file("q", {"dead_letter": "a/b"}),
    lambda b: b.update_settings_file("", {"dead_letter": 5}),
    lambda b: b.redrive("dlq", to="dlq"),
    lambda b: b.redrive("dlq", to="../x"),
    lambda b: ddmq.broker(b.root).redrive("dlq", to="missing"),
    lambda b: b.redrive("dlq", n=0),
])
def test_bad_input_is_a_clear_error_changing_nothing(dl, call):
    dl.create_queue("dlq")
    dl.publish("dlq", "x")
    before = snapshot(dl.root)
    with pytest.raises(ddmq.DdmqError) as info:
        call(dl)
    assert info.value.error in ("invalid", "config", "no_queue")
    assert snapshot(dl.root) == before


def test_a_damaged_dead_letter_field_is_quarantined(dl):
    sent = dl.publish("q", "x")
    path = os.path.join(dl.root, sent.filename)
    fields = read_json(path)
    fields["dead_letter"] = "../../elsewhere"
    with open(path, "w") as handle:
        json.dump(fields, handle)
    assert dl.consume("q") is None
    assert os.listdir(os.path.join(dl.root, "q", ".quarantine"))


@pytest.mark.parametrize("priority", ["../../escaped", None, "high"])
@pytest.mark.parametrize("to", ["q", None])
def test_redrive_names_a_message_by_the_priority_of_its_name_not_of_a_damaged_field(dl, priority,
                                                                                     to):
    # A message is served by its name; its file's priority field is never checked, so a
    # redrive must not build a name (a path) from it.  to=None: the message has no source
    # queue, so it is put back into the dead-letter queue under a fresh name.
    dl.create_queue("dlq")
    sent = dl.publish("dlq", "x", priority=5)
    path = os.path.join(dl.root, sent.filename)
    fields = read_json(path)
    fields["priority"] = priority
    with open(path, "w") as handle:
        json.dump(fields, handle)
    moved = dl.redrive("dlq", to=to)
    assert [m.priority for m in moved] == ([5] if to else [])
    assert os.listdir(os.path.dirname(dl.root)) == [os.path.basename(dl.root)]
    waiting, claimed = dl.get_message_list(to or "dlq")
    assert [name.split(".")[0] for name in waiting] == ["5"] and claimed == []
    served = dl.consume(to or "dlq")
    assert (served.message, served.priority, served.id) == ("x", 5, sent.id)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ddmq"] + list(args), capture_output=True,
                          text=True, timeout=60)


def test_cli_publish_dead_letter_and_redrive(root):
    assert _cli("publish", "-f", "-l", "0", "--dead_letter", "dlq", root, "q", "job").returncode == 0
    consumed = json.loads(_cli("consume", "--format", "json", root, "q").stdout)
    assert consumed["dead_letter"] == "dlq"
    assert _cli("nack", root, "q", consumed["filename"]).returncode == 0
    dead = json.loads(_cli("consume", "--format", "json", root, "dlq").stdout)
    assert (dead["dead_lettered_from"], dead["message"]) == ("q", "job")
    assert _cli("nack", "-r", root, "dlq", dead["filename"]).returncode == 0
    result = _cli("redrive", "--format", "json", root, "dlq", "-n", "5")
    assert result.returncode == 0, result.stderr
    assert [record["to"] for record in json.loads(result.stdout)] == ["q"]
    assert _cli("redrive", root, "dlq", "--to", "dlq").returncode == 2
    bad = _cli("redrive", root, "dlq", "--to", "../x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert _cli("publish", root, "q", "x", "--dead_letter", "q").returncode == 2
