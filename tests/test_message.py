"""The message class: JSON round trips, update, repr and the original's file format."""

import json

import pytest

import ddmq
from ddmq.errors import InvalidInputError
from ddmq.message import FIELDS


def test_constructor_defaults_are_none():
    msg = ddmq.message(queue="q", message="Hello World!")
    assert msg.queue == "q"
    assert msg.message == "Hello World!"
    for key in set(FIELDS) - {"queue", "message"}:
        assert getattr(msg, key) is None, key


def test_msg2json_gives_every_field_as_json():
    msg = ddmq.message(queue="q", message="hi", priority=3, id="ab12", requeue=True,
                       requeue_counter=2, requeue_limit=5, timeout=30, requeue_prio=1,
                       queue_number="1700000000000000001", filename="q/3.1700000000000000001.ddmqab12")
    package = json.loads(msg.msg2json())
    assert set(package) == set(FIELDS)
    assert package["priority"] == 3
    assert package["requeue_prio"] == 1
    assert package["timeout"] == 30
    assert package["filename"] == "q/3.1700000000000000001.ddmqab12"


@pytest.mark.parametrize("form", [str, bytes, "dict"])
def test_json2msg_round_trips_msg2json(form):
    msg = ddmq.message(queue="q", message={"nested": [1, "two"]}, priority=0, id="ff",
                       requeue=False, requeue_counter=1, requeue_limit=None, timeout=2.5)
    text = msg.msg2json()
    package = json.loads(text) if form == "dict" else form(text.encode() if form is bytes else text)
    back = ddmq.message.json2msg(package)
    assert back == msg
    assert back.message == {"nested": [1, "two"]}


def test_json2msg_reads_an_original_message_file():
    text = ('{"priority": 999, "queue_number": "1234556789356735", "requeue_counter": 0, '
            '"filename": "queue_one/999.2.ddmq1ed12af3760e4adfb62a9109f9b61214", '
            '"queue": "queue_one", "requeue_limit": null, "timeout": null, "message": "msg", '
            '"requeue": false, "id": "1ed12af3760e4adfb62a9109f9b61214"}')
    msg = ddmq.message.json2msg(text)
    assert msg.message == "msg"
    assert msg.priority == 999
    assert msg.queue_number == "1234556789356735"
    assert msg.requeue is False
    assert msg.requeue_prio is None
    assert msg.requeue_counter == 0
    assert msg.id == "1ed12af3760e4adfb62a9109f9b61214"


@pytest.mark.parametrize("legacy_value", [0, 7])
def test_json2msg_reads_legacy_int_requeue_as_requeue_priority(legacy_value):
    msg = ddmq.message.json2msg({"message": "m", "requeue": legacy_value})
    assert msg.requeue is True
    assert msg.requeue_prio == legacy_value


def test_json2msg_keeps_an_explicit_requeue_prio_over_a_legacy_int():
    msg = ddmq.message.json2msg({"message": "m", "requeue": 7, "requeue_prio": 2})
    assert (msg.requeue, msg.requeue_prio) == (True, 2)


def test_json2msg_defaults_a_missing_requeue_counter_to_zero():
    assert ddmq.message.json2msg({"message": "m"}).requeue_counter == 0


@pytest.mark.parametrize("package", ["{not json", "[1, 2]", "42", b"\xff\xfe", ["list"]])
def test_json2msg_rejects_what_is_not_a_json_object(package):
    with pytest.raises(InvalidInputError):
        ddmq.message.json2msg(package)


def test_update_sets_known_fields_and_ignores_unknown_ones():
    msg = ddmq.message(queue="q", message="old")
    msg.update({"message": "new", "priority": 4, "bogus": 1, "__class__": "x"})
    assert msg.message == "new"
    assert msg.priority == 4
    assert not hasattr(msg, "bogus")
    assert type(msg) is ddmq.message


def test_repr_lists_every_field_sorted_one_per_line():
    msg = ddmq.message(queue="queue_name", message="Hello World!")
    lines = repr(msg).splitlines()
    assert [line.split(" = ")[0] for line in lines] == sorted(FIELDS)
    assert "message = Hello World!" in lines
    assert "queue = queue_name" in lines
    assert "filename = None" in lines


def test_equality_compares_fields():
    assert ddmq.message(queue="q", message="a") == ddmq.message(queue="q", message="a")
    assert ddmq.message(queue="q", message="a") != ddmq.message(queue="q", message="b")
    assert ddmq.message(queue="q") != "q"
