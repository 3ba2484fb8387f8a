"""ddmq.publishing: options checked and payloads encoded before anything is written."""

import os
import time

import pytest

import ddmq
from ddmq import names, publishing
from ddmq.message import Codec
from ddmq.errors import CodecError, InvalidInputError


@pytest.fixture
def b(root):
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    return b


def options(**given):
    fields = dict(priority=None, requeue=None, requeue_prio=None, timeout=None,
                  requeue_counter=0, requeue_limit=None, dead_letter=None, delay=None,
                  not_before=None)
    fields.update(given)
    return fields


def ready_files(root):
    return [n for n in os.listdir(os.path.join(root, "q")) if names.READY_NAME.match(n)]


def test_before_write_runs_once_after_every_message_is_built_and_before_any_file(b, root):
    seen = []
    q = b._queue("q")
    msgs = publishing.publish(q, ["a", "b"], options(), time.time(),
                              before_write=lambda queue: seen.append(ready_files(root)))
    assert seen == [[]]
    assert sorted(ready_files(root)) == sorted(m.filename.split("/")[1] for m in msgs)
    assert [m.priority for m in msgs] == [999, 999]   # the queue's priority


class FailOnSecond:
    name = "picky"

    def __init__(self):
        self.calls = 0

    def encode(self, value):
        self.calls += 1
        return object() if self.calls == 2 else value   # an object JSON cannot store

    def decode(self, stored):
        return stored


def test_a_payload_that_cannot_be_stored_writes_nothing_and_skips_before_write(b, root):
    called = []
    with pytest.raises(CodecError, match="picky"):
        publishing.publish(b._queue("q"), ["a", "b", "c"], options(), time.time(),
                           Codec(FailOnSecond()), before_write=called.append)
    assert called == [] and ready_files(root) == []


@pytest.mark.parametrize("given, error", [
    (dict(priority=-1), "priority must be an integer >= 0"),
    (dict(requeue_limit=1.5), "requeue_limit must be an integer >= 0"),
    (dict(timeout="10"), "timeout must be a number of seconds"),
    (dict(requeue="yes"), "requeue must be True, False or None"),
    (dict(dead_letter="q"), "cannot be its own dead-letter queue"),
    (dict(dead_letter="../x"), "queue name"),
    (dict(delay=5, not_before=time.time()), "give delay or not_before, not both"),
    (dict(delay=-1), "delay must be a number of seconds >= 0"),
    (dict(not_before=True), "not_before must be an epoch time"),
])
def test_bad_options_are_refused_with_nothing_written(b, root, given, error):
    with pytest.raises(InvalidInputError, match=error):
        publishing.publish(b._queue("q"), ["a"], options(**given), time.time())
    assert ready_files(root) == []


def test_not_before_keeps_the_given_epoch_and_a_zero_delay_is_at_once():
    now = 1_700_000_000.5
    assert publishing.not_before(None, 1_700_000_100, now) == 1_700_000_100
    assert publishing.not_before(30, None, now) == now + 30
    assert publishing.not_before(0, None, now) is None
    assert publishing.not_before(None, None, now) is None


def test_new_ids_are_version_4_uuids():
    import uuid

    ids = {publishing.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in list(ids)[:50]:
        assert uuid.UUID(text).version == 4 and uuid.UUID(text).hex == text
