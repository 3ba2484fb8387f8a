"""Hostile environments: full disks, read-only and forbidden folders, vanishing roots, junk.

Each case must end in a clear :class:`ddmq.DdmqError` (and a one-line CLI
error with exit status 1), with no partial message visible and no message
lost.  Mounting needs root: as another user these tests skip, saying why.
"""

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import ddmq
from ddmq import names
from ddmq.errors import QueueNotFoundError, RootError, StorageError

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="NOT TESTED: mounting a small or read-only filesystem needs root")


@contextlib.contextmanager
def mounted_tmpfs(path, options):
    """Mount a tmpfs with ``options`` (e.g. "size=256k") at ``path`` for the block's duration."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def remount(path, mode):
    subprocess.run(["mount", "-o", "remount," + mode, path], check=True)


def cli(*args):
    """Run the ddmq command line; return (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "ddmq"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def assert_clear_cli_error(status, stderr, *words):
    assert status == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddmq "), stderr
    assert "unexpected" not in stderr and "Traceback" not in stderr
    for word in words:
        assert word in stderr


def ready_messages(root, queue):
    """Return the decoded contents of every waiting message file (each must be complete JSON)."""
    folder = os.path.join(root, queue)
    found = []
    for name in os.listdir(folder):
        if names.READY_NAME.match(name):
            with open(os.path.join(folder, name), "rb") as handle:
                found.append(json.loads(handle.read().decode()))
    return found


def fill_up(path):
    """Fill the filesystem of ``path`` to the last byte with a file named ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def drain(b, queue):
    texts = []
    while True:
        msg = b.consume(queue, skip_cleaning=True)
        if msg is None:
            return texts
        texts.append(msg.message)
        assert b.ack(msg) == [msg.filename]


# Disk full

@needs_root
def test_disk_full_publish_is_a_clear_error_and_leaves_no_partial_message(tmp_path):
    with mounted_tmpfs(str(tmp_path / "mnt"), "size=256k") as mnt:
        root = os.path.join(mnt, "root")
        b = ddmq.broker(root, create=True)
        b.create_queue("q")
        published = []
        with pytest.raises(StorageError) as caught:
            for i in range(1000):
                text = "{:05d}".format(i) + "x" * 6000
                b.publish("q", text)
                published.append(text)
        assert caught.value.error == "io"
        assert "No space left" in str(caught.value)
        assert 0 < len(published) < 1000
        # No partial file visible, no temporary file left behind.
        assert sorted(m["message"] for m in ready_messages(root, "q")) == published
        assert os.listdir(os.path.join(root, "q", ".tmp")) == []

        fill_up(os.path.join(mnt, "filler"))
        status, _, stderr = cli("publish", root, "q", "y")
        assert_clear_cli_error(status, stderr, "No space left")

        # Consuming, cleaning and acking still work on the full disk: they only rename and unlink.
        b2 = ddmq.broker(root)
        msg = b2.consume("q")   # cleans first: the "cleaned" stamp cannot be written
        assert msg.message == published[0]
        assert b2.ack(msg) == [msg.filename]
        assert drain(b2, "q") == published[1:]
        b2.publish("q", "room again")
        assert drain(b2, "q") == ["room again"]


@needs_root
def test_disk_full_nack_keeps_the_message(tmp_path):
    with mounted_tmpfs(str(tmp_path / "mnt"), "size=256k") as mnt:
        root = os.path.join(mnt, "root")
        b = ddmq.broker(root, create=True)
        b.publish("q", "precious", skip_cleaning=True)
        msg = b.consume("q", skip_cleaning=True)
        filler = os.path.join(mnt, "filler")
        fill_up(filler)
        with pytest.raises(StorageError, match="No space left"):
            b.nack(msg, skip_cleaning=True)
        os.unlink(filler)
        # The message is still claimed (by the failed requeue); once its lease runs out it returns.
        assert b.get_message_list("q")[0] == []
        assert len(b.get_message_list("q")[1]) == 1
        later = ddmq.broker(root, clock=lambda: time.time() + 3600)
        later.clean("q", force=True)
        assert drain(later, "q") == ["precious"]


@needs_root
def test_out_of_inodes_is_a_clear_error(tmp_path):
    with mounted_tmpfs(str(tmp_path / "mnt"), "size=4m,nr_inodes=40") as mnt:
        root = os.path.join(mnt, "root")
        b = ddmq.broker(root, create=True)
        b.create_queue("q")
        count = 0
        with pytest.raises(StorageError) as caught:
            for count in range(100):
                b.publish("q", "m{}".format(count), skip_cleaning=True)
        assert caught.value.error == "io"
        assert [m["message"] for m in ready_messages(root, "q")] != []
        assert sorted(drain(b, "q"), key=lambda t: int(t[1:])) == [
            "m{}".format(i) for i in range(count)]


# Read-only filesystem

@needs_root
def test_read_only_filesystem(tmp_path):
    with mounted_tmpfs(str(tmp_path / "mnt"), "size=4m") as mnt:
        root = os.path.join(mnt, "root")
        b = ddmq.broker(root, create=True)
        for i in range(5):
            b.publish("q", "m{}".format(i))
        held = b.consume("q")
        remount(mnt, "ro")
        try:
            ro = ddmq.broker(root)
            assert len(ro.get_message_list("q")[0]) == 4
            for action in (lambda: ro.publish("q", "new"),
                           lambda: ro.consume("q"),
                           lambda: ro.consume("q", skip_cleaning=True),
                           lambda: ro.ack(held, skip_cleaning=True),
                           lambda: ro.nack(held, skip_cleaning=True),
                           lambda: ro.clean("q", force=True),
                           lambda: ro.purge_queue("q"),
                           lambda: ro.create_queue("other")):
                with pytest.raises(StorageError, match="Read-only file system"):
                    action()
            status, _, stderr = cli("publish", root, "q", "new")
            assert_clear_cli_error(status, stderr, "Read-only file system")
            status, _, stderr = cli("consume", root, "q")
            assert_clear_cli_error(status, stderr, "Read-only file system")
        finally:
            remount(mnt, "rw")
        assert b.ack(held) == [held.filename]
        assert drain(b, "q") == ["m1", "m2", "m3", "m4"]


# Permission denied

def _as_nobody(func):
    """Run ``func`` in a forked child as user nobody; return what it returned (JSON-able)."""
    nobody = pwd.getpwnam("nobody")
    import yaml  # noqa: F401  loaded now: the child cannot read root's site-packages

    import ddmq.cli  # noqa: F401
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            result = func()
        except BaseException as exc:  # report everything to the parent
            result = {"unexpected": "{}: {}".format(type(exc).__name__, exc)}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def _error_of(action):
    try:
        action()
    except ddmq.DdmqError as exc:
        return [type(exc).__name__, exc.error, str(exc)]
    return None


def _cli_in_child(*argv):
    import io

    import ddmq.cli

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = ddmq.cli.main(list(argv))
    return [status, err.getvalue()]


@pytest.mark.skipif(not IS_ROOT, reason="NOT TESTED: switching to user nobody needs root")
def test_permission_denied_as_another_user():
    # Outside the private pytest temp folder, so that nobody can reach it.
    base = tempfile.mkdtemp(prefix="ddmq-perm-")
    try:
        os.chmod(base, 0o755)
        root = os.path.join(base, "root")
        b = ddmq.broker(root, create=True)
        for i in range(3):
            b.publish("q", "m{}".format(i))
        before = b.get_message_list("q")

        def attempts():
            nb = ddmq.broker(root)
            return {
                "publish": _error_of(lambda: nb.publish("q", "x")),
                "consume": _error_of(lambda: nb.consume("q", skip_cleaning=True)),
                "clean": _error_of(lambda: nb.clean("q", force=True)),
                "create": _error_of(lambda: nb.create_queue("other")),
                "cli_publish": _cli_in_child("publish", root, "q", "x"),
                "cli_consume": _cli_in_child("consume", root, "q"),
            }

        result = _as_nobody(attempts)
        assert "unexpected" not in result, result
        for action in ("publish", "consume", "clean", "create"):
            assert result[action] is not None, action
            kind, code, text = result[action]
            assert kind == "PermissionDeniedError" and code == "permission", result[action]
            assert "Permission denied" in text and "permission on" in text, result[action]
        for action in ("cli_publish", "cli_consume"):
            status, stderr = result[action]
            assert_clear_cli_error(status, stderr, "Permission denied")
        assert b.get_message_list("q") == before
        assert drain(b, "q") == ["m0", "m1", "m2"]
    finally:
        shutil.rmtree(base)


# The root folder removed under a running consumer

def test_root_removed_while_a_consumer_runs(tmp_path):
    root = str(tmp_path / "root")
    b = ddmq.broker(root, create=True)
    for i in range(300):
        b.publish("q", "m{}".format(i), skip_cleaning=True)
    b = ddmq.broker(root)   # without create=True, which would make the queue again
    held = b.consume("q")
    outcome = {}

    def consumer():
        c = ddmq.broker(root)
        try:
            while True:
                msg = c.consume("q")
                if msg is not None:
                    c.ack(msg)
        except ddmq.DdmqError as exc:
            outcome["error"] = exc
        except Exception as exc:  # noqa: BLE001  the test reports it
            outcome["unexpected"] = exc

    thread = threading.Thread(target=consumer)
    thread.start()
    time.sleep(0.05)
    for _ in range(100):   # the consumer keeps renaming files in while rmtree works
        shutil.rmtree(root, ignore_errors=True)
        if not os.path.exists(root):
            break
    thread.join(10)
    assert not thread.is_alive()
    assert "unexpected" not in outcome, outcome
    assert isinstance(outcome["error"], (QueueNotFoundError, RootError, StorageError))

    actions = {"consume": lambda: b.consume("q"), "publish": lambda: b.publish("q", "late"),
               "ack": lambda: b.ack(held), "nack": lambda: b.nack(held),
               "clean": lambda: b.clean("q", force=True)}
    for action in actions.values():
        with pytest.raises(ddmq.DdmqError):
            action()
    assert not os.path.exists(root), "a removed root must not be brought back"
    with pytest.raises(RootError):
        ddmq.broker(root)
    status, _, stderr = cli("publish", root, "q", "late")
    assert_clear_cli_error(status, stderr)
    assert not os.path.exists(root)


# Foreign and corrupt files

def test_foreign_files_and_folders_in_a_queue_folder(tmp_path):
    root = str(tmp_path / "root")
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    q = os.path.join(root, "q")
    work = os.path.join(q, "work")
    foreign_files = ["README.txt", ".hidden", "1.2.ddmq", "ddmq.yaml.bak", "12.34.ddmqx.txt",
                     "work/notes.txt", "work/5.1.2.ddmq", ".tmp/../.tmp-looking"]
    for name in foreign_files:
        with open(os.path.join(q, name), "w") as handle:
            handle.write("not a message")
    for name in ("subdir", "work/subdir", "sub.queue"):
        os.makedirs(os.path.join(q, name))
    # Entries that look like messages but are not regular files.
    os.makedirs(os.path.join(q, "1.1000000000.ddmqdirectory"))
    os.symlink("/etc/passwd", os.path.join(q, "1.1000000001.ddmqsymlink"))
    os.mkfifo(os.path.join(q, "1.1000000002.ddmqfifo"))
    os.makedirs(os.path.join(work, "1000000000.1.1000000003.ddmqworkdir"))
    os.mkfifo(os.path.join(work, "1000000000.1.1000000004.ddmqworkfifo"))
    for i in range(20):
        b.publish("q", "m{}".format(i), priority=5)

    assert b.list_queues() == ["q"]
    later = ddmq.broker(root, clock=lambda: time.time() + 3600)
    later.clean("q", force=True)                 # expired-looking junk in work/ is set aside
    texts = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        msg = b.consume("q")
        if msg is None:
            break
        texts.append(msg.message)
        b.ack(msg)
    assert texts == ["m{}".format(i) for i in range(20)]
    waiting, claimed = b.get_message_list("q")
    assert waiting == [] and claimed == []
    for name in foreign_files + ["subdir", "work/subdir", "sub.queue"]:
        assert os.path.lexists(os.path.join(q, name)), name   # never touched
    quarantined = sorted(os.listdir(os.path.join(q, ".quarantine")))
    assert len(quarantined) == 5, quarantined
    with pytest.raises(ddmq.DdmqError):
        b.delete_queue("q")                     # refuses: it holds files ddmq did not write
    status, out, stderr = cli("view", root, "--format", "json")
    assert status == 0, stderr


CORRUPT_CONTENTS = [b"", b"{", b"not json", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b"null",
                    b'{"queue": "q"}', b'{"message": "x", "requeue_counter": "many"}',
                    b"\x00" * 100, b'"just a string"']


def test_a_thousand_corrupt_message_files(tmp_path):
    root = str(tmp_path / "root")
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    q = os.path.join(root, "q")
    for i in range(1000):
        name = "{}.{}.ddmq{:032x}".format(i % 7, 1700000000000000000 + i, i)
        with open(os.path.join(q, name), "wb") as handle:
            handle.write(CORRUPT_CONTENTS[i % len(CORRUPT_CONTENTS)])
    for i in range(50):
        b.publish("q", "good{}".format(i), priority=3, skip_cleaning=True)
    for i in range(100):   # corrupt files in work/ too, found by the cleaner
        name = "1000000000.{}.{}.ddmq{:032x}".format(i % 7, 1700000000000000000 + i, 5000 + i)
        with open(os.path.join(q, "work", name), "wb") as handle:
            handle.write(CORRUPT_CONTENTS[i % len(CORRUPT_CONTENTS)])

    started = time.monotonic()
    texts = drain(b, "q")
    later = ddmq.broker(root, clock=lambda: time.time() + 3600)
    assert later.clean("q", force=True)
    elapsed = time.monotonic() - started
    assert sorted(texts) == sorted("good{}".format(i) for i in range(50))
    assert b.get_message_list("q") == ([], [])
    assert len(os.listdir(os.path.join(q, ".quarantine"))) == 1100
    assert elapsed < 30
    status, out, stderr = cli("consume", root, "q")
    assert status == 3 and "Traceback" not in stderr


# NFS: a rename whose reply was lost is retransmitted, and the retry reports
# ENOENT although the first attempt moved the file.

@pytest.fixture
def done_but_reported_lost(monkeypatch):
    real_rename = os.rename

    def rename(source, destination):
        real_rename(source, destination)
        raise FileNotFoundError(2, "No such file or directory")

    return lambda: monkeypatch.setattr(os, "rename", rename)


def test_a_publish_whose_rename_reports_enoent_but_happened_is_published(tmp_path,
                                                                          done_but_reported_lost):
    b = ddmq.broker(str(tmp_path / "root"), create=True)
    b.create_queue("q")
    done_but_reported_lost()
    sent = b.publish("q", "once", skip_cleaning=True)
    assert [m["id"] for m in ready_messages(b.root, "q")] == [sent.id]


def test_a_claim_whose_rename_reports_enoent_but_happened_is_won(tmp_path,
                                                                 done_but_reported_lost):
    b = ddmq.broker(str(tmp_path / "root"), create=True)
    b.publish("q", "once", skip_cleaning=True)
    done_but_reported_lost()
    msg = b.consume("q", skip_cleaning=True)
    assert msg is not None and msg.message == "once"
    assert b.get_message_list("q") == ([], [msg.filename])
