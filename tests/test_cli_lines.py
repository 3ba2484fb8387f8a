"""``ddmq publish --lines FILE``: one message per non-empty line, all read before publishing."""

import os
import subprocess
import sys

import pytest

import ddmq

_SCRIPT = os.path.join(os.path.dirname(sys.executable), "ddmq")
DDMQ = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "ddmq"]


def run(*args, stdin=None):
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run(DDMQ + [str(a) for a in args], capture_output=True, timeout=60, **feed)


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "ddmq")
    ddmq.broker(root, create=True).create_queue("q")
    return root


def texts(root):
    return [m.message for m in ddmq.broker(root).messages("q")]


def test_lines_from_a_file_skip_empty_lines_and_strip_only_line_endings(root, tmp_path):
    source = tmp_path / "tasks.txt"
    source.write_bytes(b"one\n\n  two  \r\nthree\f\r\n\r\nfour")
    done = run("publish", "-p", "3", root, "q", "--lines", source)
    assert done.returncode == 0 and done.stdout == b"published 4 messages to queue q\n"
    assert texts(root) == ["one", "  two  ", "three\f", "four"]


def test_lines_from_stdin(root):
    done = run("publish", "--format", "json", "--lines", "-", root, "q", stdin=b"a\nb\n\n")
    assert done.returncode == 0 and done.stdout == b'{"queue": "q", "published": 2}\n'
    assert texts(root) == ["a", "b"]


def test_an_unreadable_file_publishes_nothing_and_creates_nothing(tmp_path):
    root = tmp_path / "new"
    done = run("publish", "-f", root, "q", "--lines", tmp_path / "missing.txt")
    assert done.returncode == 1 and b"cannot read" in done.stderr
    assert done.stderr.count(b"\n") == 1 and not root.exists()


def test_a_bad_option_or_bad_text_publishes_nothing(root, tmp_path):
    source = tmp_path / "tasks.txt"
    source.write_bytes(b"a\nb\n")
    assert run("publish", "-p", "-1", root, "q", "--lines", source).returncode == 2
    source.write_bytes(b"a\n\xff\n")
    done = run("publish", root, "q", "--lines", source)
    assert done.returncode == 2 and b"line 2" in done.stderr
    assert ddmq.broker(root).get_message_list("q") == ([], [])


def test_message_and_lines_together_or_neither_are_usage_errors(root, tmp_path):
    both = run("publish", root, "q", "x", "--lines", "-")
    assert both.returncode == 2 and b"not allowed with argument message" in both.stderr
    done = run("publish", root, "q")
    assert done.returncode == 2 and b"message --file --lines is required" in done.stderr
    assert ddmq.broker(root).get_message_list("q") == ([], [])
