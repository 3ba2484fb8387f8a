"""Tests of the installed ``ddmq`` command, run in a subprocess: output, exit status, disk."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

import ddmq

from conftest import snapshot

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.rst")

_SCRIPT = os.path.join(os.path.dirname(sys.executable), "ddmq")
DDMQ = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "ddmq"]

COMMANDS = ["view", "create", "delete", "publish", "consume", "pop", "peek", "touch", "ack", "nack",
            "del_msg", "purge", "clean", "json"]


def run(*args, stdin=None):
    """Run ``ddmq args`` and return the CompletedProcess (text mode)."""
    # Without input, stdin is /dev/null: `ddmq json` must never wait on the terminal.
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run(DDMQ + [str(arg) for arg in args], capture_output=True, text=True,
                          timeout=60, **feed)


def ok(*args, stdin=None):
    """Run ``ddmq args``, assert it succeeded quietly on stderr; return its stdout."""
    result = run(*args, stdin=stdin)
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout


def fails(status, *args, stdin=None):
    """Run ``ddmq args``, assert exit ``status`` and a one-line error; return that line."""
    result = run(*args, stdin=stdin)
    assert result.returncode == status, result
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ddmq"), result.stderr
    return result.stderr


def waiting(root, queue):
    """Return the names of the waiting messages of ``queue``, in serving order."""
    return ddmq.broker(root).get_message_list(queue)[0]


def at_work(root, queue):
    """Return the names of the consumed, unacknowledged messages of ``queue``."""
    return ddmq.broker(root).get_message_list(queue)[1]


def consume_json(root, queue, *options):
    """Consume with ``--format json``; return the list of message dicts (one document)."""
    out = ok("consume", "--format", "json", *options, root, queue)
    document = json.loads(out)
    return [document] if isinstance(document, dict) else document


@pytest.fixture
def root(tmp_path):
    """Return the path of a root folder that does not exist yet."""
    return str(tmp_path / "ddmq")


@pytest.fixture
def jobs(root):
    """Return a root holding an empty queue named 'jobs'."""
    ok("create", "-f", "-s", root, "jobs")
    return root


# The top level.

def test_no_arguments_prints_usage_and_is_a_usage_error():
    result = run()
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("usage: ddmq <command> [<args>]")


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_lists_every_command(flag):
    out = ok(flag)
    for command in COMMANDS:
        assert re.search(r"^{}\s".format(command), out, re.M), command
    assert "exit status" in out


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version(flag):
    assert ok(flag) == "ddmq version {}\n".format(ddmq.__version__)


def test_python_dash_m_runs_the_same_command():
    result = subprocess.run([sys.executable, "-m", "ddmq", "--version"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("ddmq version")


def test_unknown_command_is_a_usage_error():
    line = fails(2, "frobnicate", "/tmp")
    assert "unknown command 'frobnicate'" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    out = ok(command, "-h")
    assert out.startswith("usage: ddmq {}".format(command))


@pytest.mark.parametrize("command", COMMANDS[:-1])
def test_missing_arguments_are_a_usage_error(command):
    line = fails(2, command)
    assert "required" in line and "ddmq {} -h".format(command) in line


def test_unknown_option_is_a_usage_error(jobs):
    assert "unrecognized arguments: --bogus" in fails(2, "view", "--bogus", jobs)
    assert "unrecognized arguments: --form=json" in fails(2, "view", "--form=json", jobs)


# create, view, delete

def test_create_makes_root_and_comma_separated_queues(root):
    assert ok("create", "-f", root, "jobs,other") == "created queue jobs\ncreated queue other\n"
    for queue in ("jobs", "other"):
        assert os.path.isfile(os.path.join(root, queue, "ddmq.yaml"))
        assert os.path.isdir(os.path.join(root, queue, "work"))
    assert ok("create", root, "jobs,third") == "queue jobs already exists\ncreated queue third\n"
    assert ddmq.broker(root).list_queues() == ["jobs", "other", "third"]


def test_create_without_f_needs_an_existing_root(root):
    line = fails(1, "create", root, "jobs")
    assert "missing" in line and "-f" in line
    assert not os.path.exists(root)


@pytest.mark.parametrize("queues", ["jobs,bad/name", "jobs,", "../up", "a b", "jobs,,x"])
def test_create_rejects_invalid_queue_names_before_touching_disk(root, queues):
    assert "invalid queue name" in fails(2, "create", "-f", root, queues)
    assert not os.path.exists(root)


def test_create_json_and_silent(root):
    out = ok("create", "-f", "--format", "json", root, "jobs")
    assert json.loads(out) == [{"queue": "jobs", "created": True}]
    assert ok("create", "-s", root, "jobs,new") == ""
    assert os.path.isdir(os.path.join(root, "new"))


def test_view_table_is_the_default(jobs):
    ok("publish", "-s", jobs, "jobs", "one")
    ok("create", "-s", jobs, "empty")
    out = ok("view", jobs)
    assert "+---" in out and re.search(r"\|\s*queue\s*\|\s*waiting\s*\|\s*running\s*\|\s*"
                                       r"expired\s*\|\s*delayed\s*\|\s*quar\s*\|\s*dead\s*\|"
                                       r"\s*wait_age\s*\|\s*claim_age\s*\|", out)
    assert re.search(r"\|\s*jobs\s*\|\s*1\s*\|\s*0\s*\|", out)
    assert re.search(r"\|\s*empty\s*\|\s*0\s*\|\s*0\s*\|", out)


def test_view_formats_and_names_only(jobs):
    ok("publish", "-s", jobs, "jobs", "one")
    ok("publish", "-s", jobs, "jobs", "two")
    consume_json(jobs, "jobs")
    ok("create", "-s", jobs, "other")
    assert ok("view", "--format", "plain", jobs) == "jobs 1 1\nother 0 0\n"
    document = json.loads(ok("view", "--format", "json", jobs))
    assert list(document) == ["jobs", "other"]
    assert [(d["waiting"], d["in_flight"], d["work"]) for d in document.values()] == [
        (1, 1, 1), (0, 0, 0)]
    lines = ok("view", "--format", "jsonl", jobs).splitlines()
    assert [(r["queue"], r["waiting"], r["work"]) for r in map(json.loads, lines)] == [
        ("jobs", 1, 1), ("other", 0, 0)]
    other = yaml.safe_load(ok("view", "--format", "yaml", jobs, "other"))
    assert list(other) == ["other"] and other["other"]["waiting"] == 0
    assert other["other"]["oldest_waiting_age"] is None
    assert ok("view", "-n", "--format", "plain", jobs) == "jobs\nother\n"
    assert json.loads(ok("view", "-n", "--format", "json", jobs, "other")) == ["other"]
    assert re.search(r"\|\s*queue\s*\|", ok("view", "-n", jobs))


def test_view_of_an_empty_root_and_of_missing_things(root):
    assert "missing" in fails(1, "view", root)
    assert "queue" in ok("view", "-f", root)
    assert json.loads(ok("view", "--format", "json", root)) == {}
    assert "'nope' does not exist" in fails(1, "view", root, "nope")
    assert "invalid queue name" in fails(2, "view", root, "no/pe")
    assert "invalid choice" in fails(2, "view", "--format", "xml", root)


def test_delete_queues(jobs):
    ok("create", "-s", jobs, "other,third")
    ok("publish", "-s", jobs, "jobs", "doomed")
    assert ok("delete", jobs, "jobs,other") == "deleted queue jobs\ndeleted queue other\n"
    assert ddmq.broker(jobs).list_queues() == ["third"]
    assert not os.path.exists(os.path.join(jobs, "jobs"))


def test_delete_of_a_missing_queue_changes_nothing_unless_f(jobs):
    before = snapshot(jobs)
    assert "'nope' does not exist" in fails(1, "delete", jobs, "jobs,nope")
    assert snapshot(jobs) == before
    out = ok("delete", "-f", "--format", "json", jobs, "jobs,nope")
    assert json.loads(out) == [
        {"queue": "jobs", "deleted": True}, {"queue": "nope", "deleted": False}]
    assert ok("delete", "-s", "-f", jobs, "nope") == ""


def test_delete_refuses_a_folder_with_foreign_files(jobs):
    with open(os.path.join(jobs, "jobs", "notes.txt"), "w") as handle:
        handle.write("mine")
    assert "notes.txt" in fails(1, "delete", jobs, "jobs")
    assert os.path.isfile(os.path.join(jobs, "jobs", "notes.txt"))


# publish

def test_publish_prints_the_message_and_writes_its_file(jobs):
    out = ok("publish", jobs, "jobs", "Hello World!")
    fields = dict(line.split(" = ", 1) for line in out.splitlines())
    assert fields["message"] == "Hello World!" and fields["priority"] == "999"
    assert re.fullmatch(r"[0-9a-f]{32}", fields["id"])
    name = waiting(jobs, "jobs")[0]
    assert fields["filename"] == "jobs/" + name
    with open(os.path.join(jobs, "jobs", name)) as handle:
        assert json.load(handle)["message"] == "Hello World!"


def test_publish_options_reach_the_message(jobs):
    out = ok("publish", "--format", "json", "-p", "3", "-t", "30", "-r", "-l", "2", "-C",
             jobs, "jobs", "job")
    msg = json.loads(out)
    assert (msg["priority"], msg["timeout"], msg["requeue"], msg["requeue_limit"]) == \
        (3, 30, True, 2)
    long_options = ok("publish", "--format", "json", "--priority", "4", "--timeout", "5",
                      "--requeue_limit", "0", "--requeue_prio", "7", "--skip_cleaning",
                      jobs, "jobs", "job2")
    msg = json.loads(long_options)
    assert (msg["priority"], msg["timeout"], msg["requeue_limit"], msg["requeue_prio"]) == \
        (4, 5, 0, 7)
    assert msg["requeue"] is True  # --requeue_prio implies -r
    plain = json.loads(ok("publish", "--format", "json", jobs, "jobs", "plain"))
    assert plain["requeue"] is None and plain["priority"] == 999
    assert waiting(jobs, "jobs")[0].startswith("3.")


def test_publish_yaml_and_unicode_and_dash_messages(jobs):
    msg = yaml.safe_load(ok("publish", "--format", "yaml", jobs, "jobs", "héllo ✓"))
    assert msg["message"] == "héllo ✓"
    assert json.loads(ok("publish", "--format", "json", jobs, "jobs", "--", "-x"))["message"] \
        == "-x"
    assert [m["message"] for m in consume_json(jobs, "jobs", "-n", "5")] == ["héllo ✓", "-x"]


def test_publish_f_creates_root_and_queue(root):
    assert ok("publish", "-s", "-f", root, "new", "hi") == ""
    assert len(waiting(root, "new")) == 1


def test_publish_to_a_missing_queue_changes_nothing(jobs):
    before = snapshot(jobs)
    assert "'nope' does not exist" in fails(1, "publish", jobs, "nope", "hi")
    assert snapshot(jobs) == before


@pytest.mark.parametrize("option", [["-p", "-1"], ["-p", "x"], ["-p", "1.5"], ["-t", "-3"],
                                    ["-l", "two"], ["--requeue_prio", "-1"]])
def test_publish_rejects_bad_numbers_before_touching_disk(root, option):
    line = fails(2, "publish", "-f", *option, root, "jobs", "hi")
    assert "must be an integer >= 0" in line
    assert not os.path.exists(root)


def test_publish_rejects_invalid_queue_names_before_touching_disk(root):
    assert "invalid queue name" in fails(2, "publish", "-f", root, "../evil", "hi")
    assert not os.path.exists(root)


def test_missing_or_uninitiated_root_is_an_error(tmp_path):
    plain_dir = str(tmp_path)
    assert "not initiated" in fails(1, "publish", plain_dir, "jobs", "hi")
    assert os.listdir(plain_dir) == []


def test_corrupt_settings_file_is_a_one_line_error(jobs):
    with open(os.path.join(jobs, "ddmq.yaml"), "w") as handle:
        handle.write("priority: [unclosed\n")
    assert "ddmq.yaml" in fails(1, "publish", jobs, "jobs", "hi")


# consume

def test_consume_shows_text_id_and_work_file(jobs):
    published = json.loads(ok("publish", "--format", "json", jobs, "jobs", "Hello World!"))
    out = ok("consume", jobs, "jobs")
    fields = dict(line.split(" = ", 1) for line in out.splitlines())
    assert fields["message"] == "Hello World!" and fields["id"] == published["id"]
    assert at_work(jobs, "jobs") == [fields["filename"]]
    assert waiting(jobs, "jobs") == []


def test_consume_n_in_priority_order_as_json_and_yaml(jobs):
    for text, priority in (("low", 5), ("high", 1), ("mid", 3), ("last", 9)):
        ok("publish", "-s", "-p", priority, jobs, "jobs", text)
    msgs = consume_json(jobs, "jobs", "-n", "2")
    assert [m["message"] for m in msgs] == ["high", "mid"]
    assert sorted(m["filename"] for m in msgs) == at_work(jobs, "jobs")
    rest = yaml.safe_load(ok("consume", "--format", "yaml", "-n", "5", "-C", jobs, "jobs"))
    assert [m["message"] for m in rest] == ["low", "last"]
    ok("publish", "-s", jobs, "jobs", "a")
    ok("publish", "-s", jobs, "jobs", "b")
    plain = ok("consume", "-n", "2", "--skip_cleaning", jobs, "jobs")
    assert plain.count("message = ") == 2 and "\n\n" in plain
    ok("publish", "-s", jobs, "jobs", "c")
    assert len(consume_json(jobs, "jobs", "--skip-cleaning")) == 1  # the original's spelling


def test_consume_of_an_empty_queue_exits_3(jobs):
    result = run("consume", jobs, "jobs")
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr == "ddmq consume: no message in queue 'jobs'\n"
    result = run("consume", "-s", "--format", "json", "-n", "3", jobs, "jobs")
    assert (result.returncode, result.stdout, result.stderr) == (3, "[]\n", "")
    result = run("consume", "-s", "--format", "json", jobs, "jobs")
    assert (result.returncode, result.stdout, result.stderr) == (3, "null\n", "")
    result = run("consume", "-s", "--format", "jsonl", jobs, "jobs")
    assert (result.returncode, result.stdout, result.stderr) == (3, "", "")


def test_consume_f_creates_the_queue(root):
    result = run("consume", "-f", root, "new")
    assert result.returncode == 3
    assert ddmq.broker(root).list_queues() == ["new"]


def test_consume_bad_input(jobs):
    assert "must be an integer >= 1" in fails(2, "consume", "-n", "0", jobs, "jobs")
    assert "'nope' does not exist" in fails(1, "consume", jobs, "nope")
    assert "invalid queue name" in fails(2, "consume", jobs, "a.b")


@pytest.mark.skipif(len(DDMQ) != 1, reason="no ddmq script next to the interpreter")
def test_shell_worker_loop_drains_the_queue(jobs):
    for number in range(3):
        ok("publish", "-s", jobs, "jobs", "task {}".format(number))
    script = ('export PATH="{}:$PATH"; n=0; while ddmq consume -s --format json "$1" jobs '
              '>/dev/null; do n=$((n+1)); done; ddmq consume -s "$1" jobs; echo "$n $?"'
              ).format(os.path.dirname(DDMQ[0]))
    result = subprocess.run(["sh", "-c", script, "sh", jobs], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout == "3 3\n", result


# ack, nack, del_msg

def test_ack_deletes_consumed_messages(jobs):
    for text in ("a", "b", "c"):
        ok("publish", "-s", jobs, "jobs", text)
    msgs = consume_json(jobs, "jobs", "-n", "3")
    names = [m["filename"] for m in msgs]
    assert ok("ack", jobs, "jobs", names[0]) == "acked {}\n".format(names[0])
    out = ok("ack", "--format", "json", "-C", jobs, "jobs", ",".join(names[1:]))
    assert json.loads(out) == [
        {"queue": "jobs", "filename": name, "acked": True} for name in names[1:]]
    assert at_work(jobs, "jobs") == [] and waiting(jobs, "jobs") == []


def test_ack_of_a_gone_message_is_an_error(jobs):
    ok("publish", "-s", jobs, "jobs", "a")
    name = consume_json(jobs, "jobs")[0]["filename"]
    ok("ack", "-s", jobs, "jobs", name)
    assert "is gone" in fails(1, "ack", jobs, "jobs", name)


def test_ack_r_requeues(jobs):
    ok("publish", "-s", jobs, "jobs", "again")
    name = consume_json(jobs, "jobs")[0]["filename"]
    ok("ack", "-s", "-r", jobs, "jobs", name)
    msg = consume_json(jobs, "jobs")[0]
    assert msg["message"] == "again" and msg["requeue_counter"] == 1


@pytest.mark.parametrize("command", ["ack", "nack", "del_msg"])
@pytest.mark.parametrize("mangle", ["../{}", "work/{}", "/etc/{}", "{}/..", "..", "x"])
def test_file_names_with_paths_are_refused(jobs, command, mangle):
    ok("publish", "-s", jobs, "jobs", "keep")
    name = consume_json(jobs, "jobs")[0]["filename"]
    before = snapshot(jobs)
    line = fails(2, command, jobs, "jobs", mangle.format(name))
    assert "path" in line or "not a message file name" in line
    assert snapshot(jobs) == before


def test_nack_requeues_by_default_and_follows_settings(jobs):
    ok("publish", "-s", jobs, "jobs", "retry")
    name = consume_json(jobs, "jobs")[0]["filename"]
    assert ok("nack", jobs, "jobs", name) == "nacked {}\n".format(name)
    msg = consume_json(jobs, "jobs")[0]
    assert msg["requeue_counter"] == 1 and msg["priority"] == 0
    ddmq.broker(jobs).update_settings_file("jobs", {"requeue": False})
    ok("nack", "-s", jobs, "jobs", msg["filename"])
    assert waiting(jobs, "jobs") == [] and at_work(jobs, "jobs") == []
    ok("publish", "-s", jobs, "jobs", "forced")
    name = consume_json(jobs, "jobs")[0]["filename"]
    out = ok("nack", "-r", "--format", "yaml", jobs, "jobs", name)
    assert yaml.safe_load(out) == [{"queue": "jobs", "filename": name, "nacked": True}]
    assert len(waiting(jobs, "jobs")) == 1


def test_nack_respects_requeue_limit(jobs):
    ok("publish", "-s", "-l", "0", jobs, "jobs", "once")
    name = consume_json(jobs, "jobs")[0]["filename"]
    ok("nack", "-s", jobs, "jobs", name)
    assert waiting(jobs, "jobs") == []


def test_del_msg_deletes_waiting_and_consumed_messages(jobs):
    for text in ("a", "b"):
        ok("publish", "-s", jobs, "jobs", text)
    consumed = consume_json(jobs, "jobs")[0]["filename"]
    ready = waiting(jobs, "jobs")[0]
    out = ok("del_msg", "--format", "json", jobs, "jobs", "{},{}".format(ready, consumed))
    assert [record["filename"] for record in json.loads(out)] == [ready, consumed]
    assert waiting(jobs, "jobs") == [] and at_work(jobs, "jobs") == []
    line = fails(1, "del_msg", jobs, "jobs", ready)
    assert "no message" in line
    assert "'nope' does not exist" in fails(1, "del_msg", jobs, "nope", ready)


# purge, clean

def test_purge_counts_waiting_and_consumed(jobs):
    ok("create", "-s", jobs, "other")
    for _ in range(3):
        ok("publish", "-s", jobs, "jobs", "x")
    consume_json(jobs, "jobs")
    assert ok("purge", jobs, "jobs,other") == ("purged queue jobs: 2 waiting, 1 at work\n"
                                               "purged queue other: 0 waiting, 0 at work\n")
    assert ddmq.broker(jobs).list_queues() == ["jobs", "other"]
    assert waiting(jobs, "jobs") == [] and at_work(jobs, "jobs") == []
    assert json.loads(ok("purge", "--format", "json", jobs, "jobs")) == [{
        "queue": "jobs", "waiting": 0, "work": 0}]


def test_purge_and_clean_of_missing_queues_change_nothing(jobs):
    ok("publish", "-s", jobs, "jobs", "keep")
    before = snapshot(jobs)
    for command in ("purge", "clean"):
        assert "'nope' does not exist" in fails(1, command, jobs, "jobs,nope")
        assert "invalid queue name" in fails(2, command, jobs, "jobs,n/pe")
    assert snapshot(jobs) == before
    assert ok("purge", "-f", "-s", jobs, "made") == ""
    assert "made" in ddmq.broker(jobs).list_queues()


def test_clean_requeues_expired_messages(jobs):
    ok("create", "-s", jobs, "other")
    ok("publish", "-s", "-t", "0", jobs, "jobs", "expires at once")
    consume_json(jobs, "jobs")
    assert ok("clean", jobs, "jobs,other") == "cleaned queue jobs\ncleaned queue other\n"
    assert at_work(jobs, "jobs") == [] and len(waiting(jobs, "jobs")) == 1
    out = ok("clean", "--format", "yaml", jobs, "jobs")
    assert yaml.safe_load(out) == [{"queue": "jobs", "cleaned": True}]
    assert ok("clean", "-s", jobs, "jobs") == ""


# logging and tracebacks

def test_verbose_and_debug_log_to_stderr(root):
    result = run("create", "-f", "-v", root, "jobs")
    assert result.returncode == 0 and "INFO" in result.stderr and "DEBUG" not in result.stderr
    result = run("publish", "-d", root, "jobs", "x")
    assert result.returncode == 0 and "DEBUG" in result.stderr


def test_debug_shows_the_traceback_of_an_error(root):
    result = run("publish", "-d", root, "jobs", "x")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and result.stderr.rstrip().splitlines()[-1].startswith(
        "ddmq publish: error:")


def test_only_view_and_table_import_beautifultable(jobs):
    code = ("import sys; from ddmq.cli import main; status = main(sys.argv[1:]); "
            "sys.stdout.write('|%s %s' % (status, 'beautifultable' in sys.modules))")
    for args, loaded in ((["publish", "-s", jobs, "jobs", "x"], "False"),
                         (["consume", jobs, "jobs"], "False"),
                         (["view", "--format", "json", jobs], "False"),
                         (["view", jobs], "True")):
        result = subprocess.run([sys.executable, "-c", code] + args, capture_output=True,
                                text=True, timeout=60)
        assert result.stdout.rsplit("|", 1)[1] == "0 " + loaded, (args, result)


# ddmq json

def test_json_argument_runs_one_operation(jobs):
    out = ok("json", json.dumps({"command": "publish", "root": jobs, "queue": "jobs",
                                 "message": "hi", "priority": 1, "format": "json"}))
    assert json.loads(out)["priority"] == 1
    out = ok("json", json.dumps({"cmd": "consume", "root": jobs, "queue": "jobs",
                                 "format": "json", "skip_cleaning": True}))
    name = json.loads(out)["filename"]
    assert ok("json", json.dumps({"cmd": "ack", "root": jobs, "queue": "jobs",
                                  "msg_files": [name]})) == "acked {}\n".format(name)


def test_json_every_documented_key(root):
    ops = [{"command": "create", "root": root, "queue": ["a", "b"], "f": True, "s": True},
           {"command": "publish", "root": root, "queue": "a", "message": "m", "priority": "2",
            "timeout": 60, "requeue": True, "requeue_prio": 5, "requeue_limit": 3,
            "skip_cleaning": True, "s": True},
           {"command": "view", "root": root, "n": True, "format": "plain"},
           {"command": "consume", "root": root, "queue": "a", "n": 2, "format": "json"}]
    out = ok("json", stdin="".join(json.dumps(op) + "\n" for op in ops))
    names, msg = out.splitlines()[:2], json.loads("\n".join(out.splitlines()[2:]))[0]
    assert names == ["a", "b"]
    assert (msg["priority"], msg["timeout"], msg["requeue"], msg["requeue_prio"],
            msg["requeue_limit"]) == (2, 60, True, 5, 3)


def test_json_from_stdin_single_pretty_object(jobs):
    package = json.dumps({"command": "publish", "root": jobs, "queue": "jobs",
                          "message": "from stdin", "s": True}, indent=2)
    assert "\n" in package
    assert ok("json", stdin=package) == ""
    assert consume_json(jobs, "jobs")[0]["message"] == "from stdin"


def test_json_from_stdin_runs_lines_in_order(jobs):
    lines = [{"cmd": "publish", "root": jobs, "queue": "jobs", "message": text, "s": True}
             for text in ("first", "second")]
    lines.append({"cmd": "consume", "root": jobs, "queue": "jobs", "n": 5, "format": "json"})
    lines.append({"cmd": "consume", "root": jobs, "queue": "jobs", "s": True})
    result = run("json", stdin="\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert result.returncode == 3 and result.stderr == ""  # the last consume found nothing
    assert [msg["message"] for msg in json.loads(result.stdout)] == ["first", "second"]


def test_json_stops_at_the_first_failing_operation(jobs):
    lines = [{"cmd": "publish", "root": jobs, "queue": "nope", "message": "x"},
             {"cmd": "publish", "root": jobs, "queue": "jobs", "message": "never", "s": True}]
    line = fails(1, "json", stdin="\n".join(json.dumps(item) for item in lines))
    assert "'nope' does not exist" in line
    assert waiting(jobs, "jobs") == []


@pytest.mark.parametrize("package, message", [
    ('{"command": "publish", "root": "R", "queue": "jobs", "message": "x", "prio": 1}',
     "unknown key 'prio'"),
    ('{"command": "view", "root": "R", "message": "x"}', "unknown key 'message'"),
    ('{"command": "frob", "root": "R"}', "unknown command 'frob' in key 'command'"),
    ('{"cmd": "json"}', "unknown command 'json' in key 'cmd'"),
    ('{"root": "R"}', "missing key 'command'"),
    ('{"command": "view", "cmd": "view", "root": "R"}', "not both"),
    ('{"command": "view", "root": "R",}', "malformed JSON"),
    ('{"command": "view"', "malformed JSON"),
    ('[{"command": "view"}]', "expected a JSON object"),
    ('"view"', "expected a JSON object"),
    ('{"command": "view", "root": "R", "n": "yes"}', "key 'n' must be true or false"),
    ('{"command": "publish", "root": "R", "queue": "jobs", "message": "x", "priority": -1}',
     "must be an integer >= 0"),
    ('{"command": "publish", "root": "R", "queue": "jobs", "message": "x", "priority": true}',
     "key 'priority' must be a string or an integer"),
    ('{"command": "publish", "root": "R", "queue": "jobs", "message": {"a": 1}}',
     "key 'message' must be a string"),
    ('{"command": "publish", "root": "R", "queue": "jobs"}',
     "one of the arguments message --file --lines is required"),
    ('{"command": "publish", "root": "R", "queue": "jobs", "message": "x", "file": "R"}',
     "not allowed with argument"),
    ('{"command": "ack", "root": "R", "queue": "jobs", "msg_files": "../x"}', "is a path"),
    ('', "no JSON object given"),
])
def test_json_bad_packages_are_usage_errors_and_change_nothing(jobs, package, message):
    package = package.replace('"R"', json.dumps(jobs))
    before = snapshot(jobs)
    assert message in fails(2, "json", package)
    if package:
        # The same package on stdin, after a valid operation that must not run either.
        valid = json.dumps({"cmd": "publish", "root": jobs, "queue": "jobs", "message": "no"})
        assert message in fails(2, "json", stdin=valid + "\n" + package + "\n")
    assert snapshot(jobs) == before


def test_json_hostile_command_is_never_evaluated(tmp_path):
    existed = os.path.exists("/tmp/pwned")
    assert "unknown command" in fails(
        2, "json", '{"command": "__import__(\'os\').system(\'touch /tmp/pwned\')"}')
    assert os.path.exists("/tmp/pwned") == existed
    marker = tmp_path / "pwned"
    for package in (
            {"command": "__import__('os').system('touch {}')".format(marker)},
            {"cmd": "__import__('os').system('touch {}')".format(marker), "root": "/tmp"},
            {"command": "view", "root": "/tmp", "__import__('os').system('touch {}')".format(
                marker): True}):
        text = json.dumps(package)
        assert "unknown" in fails(2, "json", text)
        assert "unknown" in fails(2, "json", stdin=text)
        assert not marker.exists()


# README

def readme_examples():
    """Return [(command line, expected output lines)] from README's "Command line" section."""
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    section = text.split("\nCommand line\n------------\n", 1)[1].split("\n------", 1)[0]
    examples, current = [], None
    for line in section.splitlines():
        if line.startswith("    $ "):
            current = (line[6:], [])
            examples.append(current)
        elif current is not None and line.startswith("    "):
            current[1].append(line[4:])
        else:
            current = None  # a blank or unindented line ends the example's output
    return examples


def normalized(lines):
    """Replace message ids and timestamps (which differ on every run) by placeholders."""
    return [re.sub(r"\d{10,}(\.\d+)?", "<n>", re.sub(r"[0-9a-f]{32}", "<id>", line))
            for line in lines]


@pytest.mark.skipif(len(DDMQ) != 1, reason="no ddmq script next to the interpreter")
def test_readme_command_line_examples(tmp_path):
    examples = readme_examples()
    assert [command for command, _ in examples[:3]] == [
        "ddmq create -f /tmp/ddmq queue_name",
        'ddmq publish /tmp/ddmq queue_name "Hello World!"',
        "ddmq consume /tmp/ddmq queue_name"]
    root = str(tmp_path / "ddmq")
    env = dict(os.environ, PATH=os.path.dirname(DDMQ[0]) + os.pathsep + os.environ["PATH"])
    for command, expected in examples:
        result = subprocess.run(["sh", "-c", command.replace("/tmp/ddmq", root)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert (result.returncode, result.stderr) == (0, ""), (command, result)
        assert normalized(result.stdout.splitlines()) == normalized(expected), command
