"""Payloads: JSON values, bytes (every byte value), a broker codec, and the file format."""

import base64
import datetime
import json
import os
import subprocess
import zlib

import pytest

import ddmq
from ddmq.message import FIELDS, from_file, message
from ddmq.errors import CodecError, InvalidInputError

from conftest import read_json, snapshot
from test_cli import DDMQ, ok, fails, run

ALL_BYTES = bytes(range(256))
PAYLOADS = [ALL_BYTES, b"", b"\x00", bytes(range(255, -1, -1)) * 40, os.urandom(4096),
            "text", "", {"a": [1, None, True]}, [], 0, 3.5]


def ready_path(b, msg):
    return os.path.join(b.root, msg.filename)


# Bytes

@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: repr(p)[:20])
def test_every_payload_round_trips_through_publish_peek_consume_and_nack(b, payload):
    b.publish("q", payload)
    assert b.peek("q").message == payload
    msg = b.consume("q")
    assert msg.message == payload and type(msg.message) is type(payload)
    b.nack(msg, requeue=True)  # a requeue rewrites the file: the payload must survive it
    again = b.pop("q")
    assert again.message == payload and again.requeue_counter == 1


def test_none_is_published_as_the_empty_text_as_before(b):
    assert b.publish("q", None).message == "" and b.consume("q").message == ""


def test_bytearray_and_memoryview_come_back_as_bytes(b):
    b.publish("q", bytearray(b"\x01\x02"))
    b.publish("q", memoryview(b"\x03"))
    assert [m.message for m in b.consume("q", n=2)] == [b"\x01\x02", b"\x03"]


def test_a_bytes_message_file_is_valid_json_with_the_documented_fields(b):
    msg = b.publish("q", ALL_BYTES)
    package = read_json(ready_path(b, msg))
    assert list(package) == list(FIELDS) + ["message_encoding"]
    assert package["message_encoding"] == "base64"
    assert package["message"] == base64.b64encode(ALL_BYTES).decode("ascii")
    # 0.9.14 reads the keys it knows: it sees the base64 text as the message.
    assert message.json2msg(
        {key: package[key] for key in FIELDS}).message == package["message"]


def test_a_plain_message_file_is_what_1_0_and_0_9_14_wrote(b):
    msg = b.publish("q", {"x": "é"}, priority=3)
    with open(ready_path(b, msg), "rb") as handle:
        data = handle.read()
    expected = json.dumps({key: getattr(msg, key) for key in FIELDS})
    assert data == expected.encode("utf-8")  # no new key: byte for byte the 1.0 format
    assert from_file(data) == msg


def test_msg2json_and_json2msg_speak_the_file_format(b):
    msg = b.publish("q", b"\xffbin")
    with open(ready_path(b, msg), "rb") as handle:
        assert msg.msg2json() == handle.read().decode("utf-8")
    assert message.json2msg(msg.msg2json()).message == b"\xffbin"


def test_a_file_written_by_1_0_loads(b):
    b.create_queue("q")
    name = "7.1764000000000000001.ddmq" + "1" * 32
    text = ('{"queue": "q", "message": {"job": 1}, "timeout": null, "id": "' + "1" * 32 +
            '", "priority": 7, "queue_number": "1764000000000000001", "filename": "q/' + name +
            '", "requeue": null, "requeue_prio": null, "requeue_counter": 2, '
            '"requeue_limit": 5}')
    with open(os.path.join(b.root, "q", name), "w") as handle:
        handle.write(text)
    assert b.peek("q").message == {"job": 1}
    msg = b.consume("q")
    assert (msg.message, msg.requeue_counter, msg.requeue_limit, msg.codec) == (
        {"job": 1}, 2, 5, None)


def test_a_file_written_by_0_9_14_loads(legacy):
    legacy.queue("q")
    legacy.message("q", "old text", requeue=4, queue_number="15386383781")
    b = ddmq.broker(legacy.path)
    peeked = b.peek("q")
    assert (peeked.message, peeked.requeue, peeked.requeue_prio) == ("old text", True, 4)
    assert b.pop("q").message == "old text"


@pytest.mark.parametrize("change", [
    {"message_encoding": "base85"},
    {"message_encoding": "base64", "message": "not base64!"},
    {"message_encoding": "base64", "message": "QUJD\u00e9"},
    {"message_encoding": "base64", "message": 12},
    {"message_encoding": "base64", "message_codec": 7},
], ids=repr)
def test_a_damaged_encoding_is_a_corrupt_file(b, change):
    msg = b.publish("q", b"ABC")
    path = ready_path(b, msg)
    package = dict(read_json(path), **change)
    with open(path, "w") as handle:
        json.dump(package, handle)
    assert b.peek("q").corrupt
    assert b.consume("q") is None  # quarantined, not served with a wrong payload
    assert len(os.listdir(os.path.join(b.root, "q", ".quarantine"))) == 1


def test_a_payload_that_is_neither_json_nor_bytes_is_refused_before_disk(b):
    b.create_queue("q")
    before = snapshot(b.root)
    for payload in (object(), {b"key": 1}, [b"nested bytes"], {1, 2}):
        with pytest.raises(InvalidInputError, match="bytes or a JSON value"):
            b.publish("q", payload)
    assert snapshot(b.root) == before


# Codecs

class DateCodec:
    """Stores datetimes as ISO text (a JSON value)."""

    name = "test-dates"

    def encode(self, value):
        return {"iso": value.isoformat()}

    def decode(self, stored):
        return datetime.datetime.fromisoformat(stored["iso"])


class ZlibJson:
    """Stores any JSON value compressed: the codec returns bytes."""

    def encode(self, value):
        return zlib.compress(json.dumps(value).encode())

    def decode(self, stored):
        return json.loads(zlib.decompress(stored))


def test_a_codec_round_trips_values_json_cannot_hold(root):
    b = ddmq.broker(root, create=True, codec=DateCodec())
    when = datetime.datetime(2026, 12, 1, 23, 45, 1, 5)
    published = b.publish("q", when)
    assert published.message == when and b.codec.name == "test-dates"
    package = read_json(os.path.join(root, published.filename))
    assert package["message"] == {"iso": when.isoformat()}
    assert package["message_codec"] == "test-dates" and "message_encoding" not in package
    assert b.peek("q").message == when
    msg = b.consume("q")
    assert msg.message == when and msg.codec == "test-dates"
    b.nack(msg, requeue=True)
    assert b.pop("q").message == when  # the requeued file kept its codec


def test_a_codec_that_returns_bytes(root):
    b = ddmq.broker(root, create=True, codec=ZlibJson())
    value = {"big": "x" * 10000}
    published = b.publish("q", value)
    package = read_json(os.path.join(root, published.filename))
    assert package["message_encoding"] == "base64"
    assert package["message_codec"].endswith("test_payloads.ZlibJson")
    assert len(package["message"]) < 1000
    assert b.consume("q").message == value
    # A broker without the codec sees what is stored, and which codec stored it.
    b.publish("q", value)
    raw = ddmq.broker(root).consume("q")
    assert raw.codec == package["message_codec"] and json.loads(zlib.decompress(raw.message)) \
        == value


def test_a_codec_leaves_plain_messages_as_they_are(root):
    ddmq.broker(root, create=True).publish("q", "plain text from a broker without codec")
    b = ddmq.broker(root, codec=DateCodec())
    assert b.consume("q").message == "plain text from a broker without codec"


def test_a_failing_encode_is_a_codec_error_and_changes_nothing(root):
    b = ddmq.broker(root, create=True, codec=DateCodec())
    b.create_queue("q")
    before = snapshot(root)
    with pytest.raises(CodecError, match="codec test-dates cannot encode 'not a date'") as info:
        b.publish("q", "not a date")
    assert info.value.error == "codec" and isinstance(info.value.__cause__, AttributeError)
    assert (info.value.filename, info.value.messages) == (None, ())

    class Unstorable(DateCodec):
        def encode(self, value):
            return object()

    with pytest.raises(CodecError, match="cannot be stored"):
        ddmq.broker(root, codec=Unstorable()).publish("q", "x")
    assert snapshot(root) == before


def test_a_failing_decode_raises_and_loses_nothing(root):
    plain = ddmq.broker(root, create=True)
    b = ddmq.broker(root, create=True, codec=DateCodec())
    good = b.publish("q", datetime.datetime(2020, 1, 1), priority=1)
    bad = b.publish("q", datetime.datetime(2020, 1, 2), priority=2)
    path = os.path.join(root, bad.filename)
    package = read_json(path)
    package["message"] = {"iso": "garbage"}
    with open(path, "w") as handle:
        json.dump(package, handle)
    before = snapshot(root)
    with pytest.raises(CodecError, match="cannot decode message") as info:
        b.peek("q", n=2)
    assert [m.id for m in info.value.messages] == [good.id]
    assert snapshot(root) == before
    with pytest.raises(CodecError) as info:
        b.consume("q", n=2)
    assert [m.message for m in info.value.messages] == [datetime.datetime(2020, 1, 1)]
    # The failing message stays claimed (it expires and is requeued as any other).
    assert info.value.filename in plain.get_message_list("q")[1]
    assert plain.nack("q", info.value.filename, requeue=True) == [info.value.filename]
    b.ack(info.value.messages[0])
    with pytest.raises(CodecError) as info:
        b.pop("q")
    assert info.value.messages == []
    assert plain.get_message_list("q")[1] == [info.value.filename]  # not deleted


def test_pop_deletes_the_messages_it_delivers_with_a_codec_error(root):
    b = ddmq.broker(root, create=True, codec=DateCodec())
    b.publish("q", datetime.datetime(2020, 1, 1), priority=1)
    ddmq.broker(root).publish("q", {"iso": "x"}, priority=2)  # plain: passed through
    other = b.publish("q", datetime.datetime(2020, 1, 3), priority=3)
    path = os.path.join(root, other.filename)
    package = dict(read_json(path), message_codec="someone-else")
    with open(path, "w") as handle:
        json.dump(package, handle)
    with pytest.raises(CodecError, match="encoded by codec someone-else") as info:
        b.pop("q", n=3)
    assert [m.message for m in info.value.messages] == [datetime.datetime(2020, 1, 1),
                                                        {"iso": "x"}]
    assert ddmq.broker(root).get_message_list("q") == ([], [info.value.filename])


def test_get_message_decodes_with_the_codec(root):
    b = ddmq.broker(root, create=True, codec=DateCodec())
    msg = b.publish("q", datetime.datetime(2021, 5, 6))
    assert b.get_message(msg.filename).message == datetime.datetime(2021, 5, 6)
    assert ddmq.broker(root).get_message(msg.filename).message == {
        "iso": "2021-05-06T00:00:00"}


@pytest.mark.parametrize("codec", [object(), "json", type("NoDecode", (), {"encode": len})(),
                                   type("BadName", (DateCodec,), {"name": ""})()], ids=repr)
def test_a_codec_without_encode_decode_or_name_is_refused(root, codec):
    with pytest.raises(InvalidInputError, match="codec"):
        ddmq.broker(root, create=True, codec=codec)


# The command line

def test_cli_publish_file_as_bytes_and_show_it_as_base64(tmp_path):
    root = str(tmp_path / "cli")
    data = ALL_BYTES * 3
    source = tmp_path / "payload.bin"
    source.write_bytes(data)
    published = json.loads(ok("publish", "-f", "--format", "json", "--file", str(source), root,
                              "q"))
    assert published["message_encoding"] == "base64"
    assert base64.b64decode(published["message"]) == data
    peeked = ok("peek", root, "q")
    assert "message_encoding = base64" in peeked.splitlines()
    consumed = json.loads(ok("consume", "--format", "json", root, "q"))
    assert base64.b64decode(consumed["message"]) == data
    assert list(consumed)[:3] == ["message", "message_encoding", "id"]
    assert ddmq.broker(root).get_message("q/work/" + consumed["filename"]).message == data


def test_cli_publish_file_from_stdin_and_empty_file(tmp_path):
    root = str(tmp_path / "cli")
    result = run("publish", "-f", "-s", "--file", "-", root, "q", stdin="")
    assert result.returncode == 0
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    ok("publish", "-s", "--file", str(empty), root, "q")
    assert [m.message for m in ddmq.broker(root).consume("q", n=2)] == [b"", b""]


def test_cli_publish_file_bad_input_changes_nothing(tmp_path):
    root = str(tmp_path / "cli")
    ok("create", "-f", "-s", root, "q")
    before = snapshot(root)
    assert "not allowed with" in fails(2, "publish", "--file", __file__, root, "q", "text")
    assert "message --file --lines is required" in fails(2, "publish", root, "q")
    assert "cannot read --file" in fails(2, "publish", "--file", str(tmp_path / "nope"), root,
                                         "q")
    assert "cannot read --file" in fails(2, "publish", "--file", str(tmp_path), root, "q")
    assert snapshot(root) == before


def test_cli_publish_file_from_a_closed_stdin_is_one_error_line(tmp_path):
    # With fd 0 closed, sys.stdin is None: once an "unexpected AttributeError".
    root = str(tmp_path / "cli")
    ok("create", "-f", "-s", root, "q")
    before = snapshot(root)
    result = subprocess.run(DDMQ + ["publish", "--file", "-", root, "q"], capture_output=True,
                            text=True, timeout=60, preexec_fn=lambda: os.close(0))
    assert result.returncode == 2, result
    assert result.stderr == "ddmq publish: error: cannot read --file -: standard input is " \
                            "closed\n"
    assert snapshot(root) == before
