"""The ``umask`` setting, setgid folders and permission errors (issue 12).

The first half runs as any user: modes of what ddmq creates with and without
the setting, whatever the process umask, which is never changed.  The second
half needs root: it makes real users and a group, and runs the ``ddmq``
command and Python as those users (``setpriv``), as colleagues sharing a
queue on a cluster would.
"""

import grp
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import uuid

import pytest
import yaml

import ddmq
from ddmq import fs, names, settings
from ddmq.errors import ConfigError, InvalidInputError

IS_ROOT = os.geteuid() == 0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(ddmq.__file__)))


def modes(path):
    """Return {relative path: (is folder, mode bits incl. setgid)} of everything under ``path``."""
    found = {".": (True, stat.S_IMODE(os.lstat(path).st_mode))}
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(folder, name)
            status = os.lstat(full)
            found[os.path.relpath(full, path)] = (stat.S_ISDIR(status.st_mode),
                                                  stat.S_IMODE(status.st_mode))
    return found


@pytest.fixture
def process_umask():
    """Set the process umask for one test (as a user's shell would), and restore it."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_umask(value):
        os.umask(value)
    yield set_umask
    os.umask(saved)


def exercise(b, queue="q"):
    """Make every kind of file and folder a queue gets: messages, requeues, stamps, quarantine."""
    b.publish(queue, "one")
    b.publish(queue, "two")
    msg = b.consume(queue)
    b.nack(msg, requeue=True)                       # a requeue writes a new file
    msg = b.consume(queue)
    b.ack(msg)
    b.clean(queue, force=True)                      # the cleaned stamp
    b.update_settings_file(queue, {"priority": 5})  # a rewritten queue ddmq.yaml
    corrupt = b.publish(queue, "three")
    with open(os.path.join(b.root, corrupt.filename), "wb") as handle:
        handle.write(b"not json")
    while b.consume(queue, clean=False) is not None:  # moves the corrupt one to .quarantine/
        pass


# Settings and their checks

@pytest.mark.parametrize("value,expected", [("007", 0o007), ("0027", 0o027), ("777", 0o777),
                                            (7, 0o007), (0o022, 0o022), (0, 0), (None, None)])
def test_umask_values_are_octal_strings_or_integers(value, expected):
    assert fs.valid_umask(value)
    assert fs.parse_umask(value) == expected


@pytest.mark.parametrize("value", ["8", "0o07", "", "07777", "rwx", 512, -1, True, 7.0, [7]])
def test_a_bad_umask_setting_is_a_config_error_naming_the_file(root, value):
    b = ddmq.broker(root, create=True)
    with pytest.raises(ConfigError) as info:
        b.update_settings_file("", {"umask": value})
    assert "umask" in str(info.value) and "ddmq.yaml" in str(info.value)
    assert "umask" not in b.get_config_file("")


def test_umask_lines_read_as_pyyaml_reads_them_without_importing_it(tmp_path):
    path = str(tmp_path / "ddmq.yaml")
    for line in ("umask: '007'", 'umask: "027"', "umask: 007", "umask: 0", "umask: 18",
                 "umask: null"):
        with open(path, "w") as handle:
            handle.write(line + "\n")
        assert settings._parse_flat(line) is not None, line   # the fast path takes it
        assert settings.read(path) == yaml.safe_load(line), line
    settings.write(path, {"umask": "007", "priority": 3})
    with open(path) as handle:
        text = handle.read()
    assert settings._parse_flat(text) == yaml.safe_load(text) == {"umask": "007", "priority": 3}


def test_broker_umask_argument_is_checked(root):
    with pytest.raises(InvalidInputError):
        ddmq.broker(root, create=True, umask="9")
    assert not os.path.exists(root)


# Modes

def test_without_the_setting_modes_are_what_they_always_were(root, process_umask):
    process_umask(0o022)
    b = ddmq.broker(root, create=True)
    exercise(b)
    found = modes(root)
    for path, (is_dir, mode) in found.items():
        if is_dir:
            assert mode == 0o755, path
        elif path.endswith(settings.CONFIG_NAME) or path.endswith(settings.CLEANED_NAME):
            assert mode == 0o644, path   # open(): 0o666 & ~umask
        else:
            assert mode == 0o644, path   # message files: 0o644 & ~umask
    assert any(path.startswith("q/.quarantine/") for path in found)


@pytest.mark.parametrize("process", [0o022, 0o077, 0o000])
def test_the_setting_decides_every_mode_whatever_the_process_umask(root, process_umask, process):
    process_umask(process)
    b = ddmq.broker(root, create=True, umask="007")
    exercise(b)
    b.create_queue("other")
    found = modes(root)
    assert any(path.startswith("q/.quarantine/") for path in found)
    assert any(path.endswith(settings.CLEANED_NAME) for path in found)
    for path, (is_dir, mode) in found.items():
        assert mode == (0o770 if is_dir else 0o660), (path, oct(mode))
    assert os.umask(process) == process   # never changed, not even for a moment we could see


def test_a_queue_setting_overrides_the_root_setting(root, process_umask):
    process_umask(0o022)
    b = ddmq.broker(root, create=True, umask="007")
    b.create_queue("q")
    b.update_settings_file("q", {"umask": "077"})
    b = ddmq.broker(root)
    msg = b.publish("q", "private")
    assert stat.S_IMODE(os.stat(os.path.join(root, msg.filename)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(root, "q", settings.CONFIG_NAME)).st_mode) == 0o600


def test_the_process_umask_of_other_threads_is_never_changed(root, process_umask):
    process_umask(0o077)
    b = ddmq.broker(root, create=True, umask="000")
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            # Files this thread creates must keep getting the process umask.
            path = os.path.join(root, "watch-{}".format(threading.get_ident()))
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o666))
            seen.add(stat.S_IMODE(os.stat(path).st_mode))
            os.unlink(path)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(300):
            b.publish("q", i, skip_cleaning=True)
            b.ack(b.consume("q", clean=False))
    finally:
        stop.set()
        watcher.join()
    assert seen == {0o600}


def test_new_folders_keep_the_setgid_bit_of_their_parent(tmp_path, process_umask):
    process_umask(0o022)
    project = str(tmp_path / "project")
    os.mkdir(project)
    os.chmod(project, 0o2770)
    root = os.path.join(project, "a", "root")          # a parent folder is made too
    b = ddmq.broker(root, create=True, umask="007")
    exercise(b)
    for path, (is_dir, mode) in modes(root).items():
        if is_dir:
            assert mode == 0o2770, (path, oct(mode))
    assert stat.S_IMODE(os.stat(os.path.join(project, "a")).st_mode) == 0o2770


def test_create_with_umask_on_an_existing_root_refuses_to_change_it(root):
    ddmq.broker(root, create=True)
    before = modes(root)
    with pytest.raises(ConfigError) as info:
        ddmq.broker(root, create=True, umask="007")
    assert "umask" in str(info.value) and root in str(info.value)
    assert modes(root) == before
    ddmq.broker(root, create=True, umask=None)
    b = ddmq.broker(root)
    b.update_settings_file("", {"umask": "007"})
    assert ddmq.broker(root, create=True, umask=7).umask == 0o007


def test_cli_create_umask_writes_the_setting(root, process_umask):
    from ddmq.cli import main

    process_umask(0o022)
    assert main(["create", "-f", "-s", "--umask", "007", root, "jobs"]) == 0
    assert ddmq.broker(root).get_config_file("")["umask"] == "007"
    for path, (is_dir, mode) in modes(root).items():
        assert mode == (0o770 if is_dir else 0o660), path
    assert main(["create", "--umask", "8", root, "jobs"]) == 2


# Real users (root only)

NEED_ROOT = pytest.mark.skipif(
    not IS_ROOT, reason="NOT TESTED: making users and groups, and running as them, needs root")


def _python_for(user, env):
    """Return an interpreter ``user`` may run that imports ddmq from this checkout, or None."""
    # The system's interpreter first: one under /root (pyenv, this venv) may start under
    # setpriv yet fail to start again from the user's own process (a watchdog, a task).
    for candidate in ("/usr/bin/python3", sys.executable, shutil.which("python3")):
        if not candidate:
            continue
        done = subprocess.run(["setpriv", "--reuid", user, "--regid", user, "--init-groups",
                               candidate, "-c", "import yaml, ddmq.cli"],
                              env=env, capture_output=True, timeout=60, cwd="/")
        if done.returncode == 0:
            return candidate
    return None


class Users:
    """Two users in one new group and a third outside it, removed again by close()."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.group = "ddmqg" + tag
        self.names = ["ddmqa" + tag, "ddmqb" + tag, "ddmqc" + tag]
        self.made_group, self.made = False, []
        subprocess.run(["groupadd", self.group], check=True, capture_output=True)
        self.made_group = True
        for i, name in enumerate(self.names):
            extra = ["-G", self.group] if i < 2 else []
            subprocess.run(["useradd", "-M", "-U", "-s", "/bin/sh", "-d", "/nonexistent"]
                           + extra + [name], check=True, capture_output=True)
            self.made.append(name)
        self.gid = grp.getgrnam(self.group).gr_gid
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": REPO,
                    "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        self.python = _python_for(self.names[0], self.env)

    def close(self):
        for name in self.made:
            subprocess.run(["userdel", name], capture_output=True)
        if self.made_group:
            subprocess.run(["groupdel", self.group], capture_output=True)

    def run(self, who, *argv, cwd="/"):
        """Run ``python argv...`` as user number ``who`` (0, 1, 2); return (status, out, err)."""
        name = self.names[who]
        done = subprocess.run(["setpriv", "--reuid", name, "--regid", name, "--init-groups",
                               self.python] + list(argv),
                              env=self.env, capture_output=True, text=True, timeout=120, cwd=cwd)
        return done.returncode, done.stdout, done.stderr

    def ddmq(self, who, *argv):
        return self.run(who, "-m", "ddmq", *argv)

    def py(self, who, code, *args):
        """Run ``code`` (which prints one JSON value) as user ``who``; return that value."""
        status, out, err = self.run(who, "-c", code, *args)
        assert status == 0, err
        return json.loads(out)


@pytest.fixture
def users():
    if shutil.which("setpriv") is None or shutil.which("useradd") is None:
        pytest.skip("NOT TESTED: needs setpriv and useradd")
    made = Users()
    try:
        if made.python is None:
            pytest.skip("NOT TESTED: no Python interpreter with PyYAML that a new user may run")
        yield made
    finally:
        made.close()


@pytest.fixture
def shared(users):
    """Return a project folder owned by root and the test group, mode 2770, as admins set one up."""
    base = tempfile.mkdtemp(prefix="ddmq-group-")
    try:
        os.chmod(base, 0o755)   # traversable by the test users
        project = os.path.join(base, "project")
        os.mkdir(project)
        os.chown(project, 0, users.gid)      # chgrp
        os.chmod(project, 0o2770)            # chmod g+s,g+rwx,o-rwx
        yield project
    finally:
        shutil.rmtree(base)


def _one_line_error(status, err, *words):
    assert status == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)


_CONSUME = """
import json, sys, ddmq
msg = ddmq.broker(sys.argv[1]).consume("jobs")
print(json.dumps(None if msg is None else [msg.message, msg.filename]))
"""

_CLEAN_EXPIRED = """
import json, sys, time, ddmq
b = ddmq.broker(sys.argv[1], clock=lambda: time.time() + 100000)   # every lease has expired
print(json.dumps(b.clean("jobs", force=True)))
"""

_TRY = """
import json, sys, ddmq
action = sys.argv[2]
try:
    b = ddmq.broker(sys.argv[1])
    if action == "consume":
        b.consume("jobs")
    elif action == "nack":
        b.nack("jobs", sys.argv[3], requeue=True)
    elif action == "read":
        b.get_message(sys.argv[3])
    print(json.dumps(None))
except ddmq.DdmqError as exc:
    print(json.dumps([type(exc).__name__, exc.error, str(exc)]))
"""


@NEED_ROOT
def test_a_group_shares_a_queue_and_others_are_kept_out(users, shared):
    root = os.path.join(shared, "root")
    a, b, c = 0, 1, 2
    status, _, err = users.ddmq(a, "create", "-f", "-s", "--umask", "007", root, "jobs")
    assert status == 0, err
    for text in ("m1", "m2", "m3", "m4"):
        assert users.ddmq(a, "publish", "-s", root, "jobs", text)[0] == 0
    status, out, _ = users.ddmq(a, "consume", "--format", "json", root, "jobs")
    assert status == 0 and json.loads(out)["message"] == "m1"   # left claimed by a

    # b, a colleague: consume, nack (a requeue writes b's own file), ack, publish, clean.
    message, work = users.py(b, _CONSUME, root)
    assert message == "m2"
    assert users.ddmq(b, "nack", "-s", "-r", root, "jobs", work)[0] == 0
    status, out, err = users.ddmq(b, "consume", "--format", "json", root, "jobs")
    assert status == 0, err
    requeued = json.loads(out)
    assert requeued["message"] == "m2" and requeued["requeue_counter"] == 1
    assert users.ddmq(b, "ack", "-s", root, "jobs", requeued["filename"])[0] == 0
    assert users.ddmq(b, "publish", "-s", root, "jobs", "from b")[0] == 0
    assert users.py(b, _CLEAN_EXPIRED, root) is True   # requeues a's expired m1
    status, out, _ = users.ddmq(b, "consume", "--format", "json", root, "jobs")
    assert json.loads(out)["message"] == "m1"          # a's claimed file, requeued by b

    found = modes(root)
    owners = set()
    for folder, dirs, files in os.walk(root):
        for name in [""] + dirs + files:
            path = os.path.join(folder, name)
            status_ = os.lstat(path)
            owners.add(status_.st_uid)
            assert status_.st_gid == users.gid, path   # the project's group, handed down
            mode = stat.S_IMODE(status_.st_mode)
            if stat.S_ISDIR(status_.st_mode):
                assert mode == 0o2770, (path, oct(mode))
            else:
                assert mode == 0o660, (path, oct(mode))
    uids = {pwd_uid(users.names[a]), pwd_uid(users.names[b])}
    assert uids <= owners   # files and folders made by both users were checked
    assert any(path.endswith(settings.CLEANED_NAME) for path in found)

    # c, outside the group: cannot publish, consume or read a message; nothing changes.
    before = modes(root), sorted(os.listdir(os.path.join(root, "jobs")))
    waiting = [n for n in os.listdir(os.path.join(root, "jobs")) if names.READY_NAME.match(n)]
    status, _, err = users.ddmq(c, "publish", root, "jobs", "intruder")
    _one_line_error(status, err, "Permission denied", "search (x) permission on " + shared,
                    users.names[c])
    status, _, err = users.ddmq(c, "consume", root, "jobs")
    _one_line_error(status, err, "Permission denied", shared)
    message_path = os.path.join(root, "jobs", sorted(waiting)[0])
    kind, code, text = users.py(c, _TRY, root, "read", message_path)
    assert (kind, code) == ("PermissionDeniedError", "permission"), text
    assert "cannot open root {}".format(root) in text and shared in text
    status, _, err = users.run(c, "-c", "open({!r}).read()".format(message_path))
    assert status != 0 and "PermissionError" in err
    assert (modes(root), sorted(os.listdir(os.path.join(root, "jobs")))) == before


def _assert_group_modes(root, gid):
    """Every file and folder under ``root``: the group ``gid``, group rw, nothing for others."""
    for folder, dirs, files in os.walk(root):
        for name in [""] + dirs + files:
            path = os.path.join(folder, name)
            status_ = os.lstat(path)
            assert status_.st_gid == gid, path
            mode = stat.S_IMODE(status_.st_mode)
            assert mode == (0o2770 if stat.S_ISDIR(status_.st_mode) else 0o660), (path, oct(mode))


@NEED_ROOT
def test_a_colleagues_ddmq_work_runs_the_groups_tasks_with_group_modes(users, shared):
    root = os.path.join(shared, "root")
    a, b = 0, 1
    status, _, err = users.ddmq(a, "create", "-f", "-s", "--umask", "007", root, "jobs")
    assert status == 0, err
    for text in ("ok-1", "ok-2"):
        assert users.ddmq(a, "publish", "-s", root, "jobs", text)[0] == 0
    # Fails every time: requeued once (b writes the new file), then dropped at its limit.
    assert users.ddmq(a, "publish", "-s", "-l", "1", root, "jobs", "fail")[0] == 0
    ran = os.path.join(shared, "ran")
    os.mkdir(ran)
    os.chown(ran, 0, users.gid)
    os.chmod(ran, 0o2770)
    # The task records its text in a file of its own, and fails for "fail"; the text
    # arrives as the script's $1 (an argument, never parsed by the shell).
    script = 'printf %s "$1" > "$2/$(cat /proc/sys/kernel/random/uuid)"; [ "$1" != fail ]'
    status, _, err = users.ddmq(b, "work", "--idle-exit", "1", root, "jobs", "--",
                                "/bin/sh", "-c", script, "sh", "{}", ran)
    assert status == 4, err   # some task failed
    texts = sorted(open(os.path.join(ran, name)).read() for name in os.listdir(ran))
    assert texts == ["fail", "fail", "ok-1", "ok-2"]
    jobs = os.path.join(root, "jobs")
    assert [n for n in os.listdir(jobs) if names.READY_NAME.match(n)] == []
    assert os.listdir(os.path.join(jobs, "work")) == []
    _assert_group_modes(root, users.gid)


def pwd_uid(name):
    import pwd

    return pwd.getpwnam(name).pw_uid


@NEED_ROOT
def test_a_reader_who_may_not_write_gets_a_clear_error_and_nothing_changes(users, shared):
    # A root that everyone may read but only its owner may write.
    home = os.path.join(os.path.dirname(shared), "home-a")
    os.mkdir(home, 0o755)
    os.chown(home, pwd_uid(users.names[0]), -1)
    root = os.path.join(home, "readable")
    status, _, err = users.ddmq(0, "create", "-f", "-s", "--umask", "022", root, "jobs")
    assert status == 0, err
    assert users.ddmq(0, "publish", "-s", root, "jobs", "m1")[0] == 0
    before = modes(root), sorted(os.listdir(os.path.join(root, "jobs")))
    status, _, err = users.ddmq(2, "publish", root, "jobs", "x")
    _one_line_error(status, err, "Permission denied",
                    "no write (w) permission on {}/jobs/.tmp".format(root), "mode drwxr-xr-x")
    status, _, err = users.ddmq(2, "consume", root, "jobs")
    _one_line_error(status, err, "Permission denied",
                    "no write (w) permission on {}/jobs".format(root))
    kind, code, text = users.py(2, _TRY, root, "consume")
    assert (kind, code) == ("PermissionDeniedError", "permission"), text
    assert (modes(root), sorted(os.listdir(os.path.join(root, "jobs")))) == before
    # A reader may still look.
    status, out, err = users.ddmq(2, "view", "--format", "json", root)
    assert status == 0, err
    figures = json.loads(out)["jobs"]
    assert (figures["waiting"], figures["work"]) == (1, 0)


@NEED_ROOT
def test_a_message_the_consumer_may_not_read_goes_back_unread(users, shared):
    root = os.path.join(shared, "root")
    assert users.ddmq(0, "create", "-f", "-s", "--umask", "007", root, "jobs")[0] == 0
    assert users.ddmq(0, "publish", "-s", root, "jobs", "secret")[0] == 0
    queue_dir = os.path.join(root, "jobs")
    ready = [n for n in os.listdir(queue_dir) if ".ddmq" in n and not n.startswith(".")][0]
    os.chmod(os.path.join(queue_dir, ready), 0o600)   # as a writer with umask 077 leaves it
    before = modes(root)
    kind, code, text = users.py(1, _TRY, root, "consume")
    assert (kind, code) == ("PermissionDeniedError", "permission"), text
    assert "no read (r) permission on {}/{}".format(queue_dir, ready) in text
    assert modes(root) == before   # released: waiting under its old name, work/ empty
    message, _ = users.py(0, _CONSUME, root)
    assert message == "secret"


@NEED_ROOT
def test_a_refused_requeue_leaves_the_claim_as_it_was(users, shared):
    root = os.path.join(shared, "root")
    assert users.ddmq(0, "create", "-f", "-s", "--umask", "007", root, "jobs")[0] == 0
    assert users.ddmq(0, "publish", "-s", root, "jobs", "m")[0] == 0
    message, work = users.py(1, _CONSUME, root)
    os.chmod(os.path.join(root, "jobs", ".tmp"), 0o2750)   # the group may no longer write there
    before = modes(root)
    kind, code, text = users.py(1, _TRY, root, "nack", work)
    assert (kind, code) == ("PermissionDeniedError", "permission"), text
    assert "no write (w) permission on {}/jobs/.tmp".format(root) in text
    assert modes(root) == before
    assert os.listdir(os.path.join(root, "jobs", "work")) == [work]
