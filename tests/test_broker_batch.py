"""Batch APIs (publish_many, consume(n=...), ack of a list) and the consumer's candidate buffer.

publish_many takes publish's options once for a whole batch; these tests
check that a batch is the same as publishing each text on its own, and
that the scanner's shortcuts (its buffer of candidates, skipping ahead
after a lost race) never change what a lone consumer is served.
"""

import os

import pytest

import ddmq
from ddmq import scanner
from ddmq.errors import InvalidInputError, QueueNotFoundError

from conftest import read_json, snapshot


def texts(n, prefix="m"):
    return ["{}{}".format(prefix, i) for i in range(n)]


def drain(broker, queue="q"):
    got = []
    while True:
        msg = broker.consume(queue)
        if msg is None:
            return got
        broker.ack(msg)
        got.append(msg.message)


def test_publish_many_returns_the_messages_in_order_and_they_are_served_in_order(b):
    published = b.publish_many("q", texts(50))
    assert [msg.message for msg in published] == texts(50)
    assert len({msg.id for msg in published}) == 50
    numbers = [msg.queue_number for msg in published]
    assert numbers == sorted(numbers) and len(set(numbers)) == 50
    assert drain(b) == texts(50)


def test_publish_many_writes_what_publish_writes(b):
    options = dict(priority=3, requeue=False, requeue_prio=1, timeout=30, requeue_limit=2)
    one = b.publish("q", "same", **options)
    many = b.publish_many("q", ["same", "same"], **options)
    for msg in [one] + many:
        on_disk = read_json(os.path.join(b.root, msg.filename))
        assert on_disk == msg.to_dict()
        assert {k: v for k, v in on_disk.items() if k not in ("id", "queue_number", "filename",
                                                                  "published_at")} \
            == {k: v for k, v in one.to_dict().items() if k not in ("id", "queue_number",
                                                                   "filename", "published_at")}


def test_publish_many_takes_any_iterable_and_an_empty_one(b):
    assert [m.message for m in b.publish_many("q", (t for t in texts(3)))] == texts(3)
    assert b.publish_many("q", []) == []
    assert len(b.get_message_list("q")[0]) == 3


def test_publish_many_checks_everything_before_writing_anything(b):
    b.create_queue("q")
    before = snapshot(b.root)
    for bad in (dict(priority=-1), dict(priority="1"), dict(requeue="yes"), dict(timeout=-5),
                dict(requeue_limit=1.5)):
        with pytest.raises(InvalidInputError):
            b.publish_many("q", texts(3), **bad)
    with pytest.raises(InvalidInputError):
        b.publish_many("q", "one text, not a list")
    with pytest.raises(InvalidInputError):
        b.publish_many("bad/name", texts(3))
    assert snapshot(b.root) == before


def test_publish_many_to_a_missing_queue_without_create_fails(b):
    plain = ddmq.broker(b.root)
    with pytest.raises(QueueNotFoundError):
        plain.publish_many("nowhere", texts(2))


def test_consume_n_and_ack_of_a_list_settle_a_batch(b):
    b.publish_many("q", texts(25))
    first = b.consume("q", n=10)
    assert [m.message for m in first] == texts(25)[:10]
    assert b.ack("q", [m.filename for m in first]) == [m.filename for m in first]
    rest = b.consume("q", n=100)
    assert [m.message for m in rest] == texts(25)[10:]
    assert b.consume("q", n=5) == []
    assert b.get_message_list("q") == ([], sorted(m.filename for m in rest))


def test_priorities_are_served_first_across_batches(b):
    b.publish_many("q", texts(5, "low"), priority=9)
    b.publish_many("q", texts(5, "high"), priority=1)
    assert drain(b) == texts(5, "high") + texts(5, "low")


def test_a_batch_published_while_candidates_are_buffered_is_served_in_order(b):
    b.publish_many("q", texts(10, "late"), priority=5)
    assert b.consume("q").message == "late0"       # the consumer now holds candidates
    b.publish_many("q", texts(3, "urgent"), priority=0)
    assert [b.consume("q").message for _ in range(4)] == texts(3, "urgent") + ["late1"]


def test_a_lone_consumer_is_served_in_order_past_the_scan_limit(b, monkeypatch):
    monkeypatch.setattr(scanner, "SCAN_LIMIT", 7)
    b.publish_many("q", texts(40))
    b.publish_many("q", texts(5, "p2-"), priority=2)
    assert drain(b) == texts(5, "p2-") + texts(40)


def test_the_best_names_of_a_scan_follow_the_serving_order(tmp_path):
    # Names this version writes and legacy ones (short queue numbers,
    # zero-padded priorities) mixed: the scan's shortcut for the former
    # must give the order of names.ready_sort_key.
    folder = tmp_path / "q"
    folder.mkdir()
    made = []
    for i in range(120):
        priority = ["0", "7", "10", "999", "1000", "007"][i % 6]
        number = "1763900000" + ["{:09d}".format(i * 7919 % 10 ** 9), "{:06d}".format(i), "",
                                 "5"][i % 4]
        made.append("{}.{}.ddmq{:032x}".format(priority, number, i))
    for name in made + ["ddmq.yaml", "1.2.ddmq", "notes.txt"]:
        (folder / name).write_text("")
    expected = [key[-1] for key in sorted(filter(None, map(ddmq.names.ready_sort_key, made)))]
    for limit in (1, 5, 59, 120, 500):
        assert scanner.best_ready_names(str(folder), limit) == expected[:limit]


def test_consumers_that_take_turns_each_get_distinct_messages(b):
    b.publish_many("q", texts(60))
    others = [ddmq.broker(b.root) for _ in range(2)]
    seen = []
    while True:
        batch = [c.consume("q") for c in [b] + others]
        got = [m for m in batch if m is not None]
        if not got:
            break
        for msg in got:
            ddmq.broker(b.root).ack(msg)
            seen.append(msg.message)
    assert sorted(seen) == sorted(texts(60))
