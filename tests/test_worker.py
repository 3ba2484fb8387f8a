"""``ddmq work``: real worker processes, real commands, real signals.

Each test runs ``python -m ddmq work`` as a child process on a fresh root and
checks what the commands saw (files they wrote, named by message id and
delivery number) and what is left in the queue.  The GlusterFS test needs
the rig of tests/test_multihost.py and skips (or, with DDMQ_REQUIRE_DFS=1,
fails) as it does.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import ddmq
from conftest import rig_paths, snapshot

# Writes the message text (argument 1) to OUTDIR/<message id>.<delivery>, with the
# number of arguments it got first: "2:<text>" when the text was one argument.
RECORD = ["sh", "-c", 'printf "%s" "$#:$1" > "$2/$DDMQ_MESSAGE_ID.$DDMQ_DELIVERY"', "sh", "{}"]


def work(root, *options, command, cwd=None, timeout=60):
    """Run ``ddmq work`` to its end; return the CompletedProcess (text output)."""
    return subprocess.run(worker_argv(root, *options, command=command), cwd=cwd, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def worker_argv(root, *options, command):
    return [sys.executable, "-m", "ddmq", "work"] + [str(o) for o in options] \
        + [str(root), "q", "--"] + [str(c) for c in command]


def start(root, *options, command, cwd=None):
    return subprocess.Popen(worker_argv(root, *options, command=command), cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outputs(folder):
    """Return {(message id, delivery): content} of the files the commands wrote."""
    found = {}
    for name in os.listdir(folder):
        msg_id, delivery = name.rsplit(".", 1)
        with open(os.path.join(folder, name)) as handle:
            found[(msg_id, int(delivery))] = handle.read()
    return found


def wait_for(predicate, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def alive(pid):
    """Return True if process ``pid`` exists and is not a zombie."""
    try:
        with open("/proc/{}/stat".format(pid)) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("stop", [["--idle-exit", "2"], ["--max-messages", "50"]])
def test_fifty_messages_each_run_once(b, root, out, stop):
    texts = ["task {}".format(i) for i in range(50)]
    msgs = b.publish_many("q", texts)
    done = work(root, "-j", 3, *stop, command=RECORD + [out])
    assert done.returncode == 0, done.stderr
    seen = outputs(out)
    assert sorted(seen) == sorted((msg.id, 1) for msg in msgs)
    assert sorted(seen.values()) == sorted("2:" + text for text in texts)
    assert b.get_message_list("q") == ([], [])
    assert done.stdout == ""
    assert done.stderr.count("ddmq work: done ") == 50   # not a terminal: one line per task


def test_a_failing_command_leaves_its_message_requeued_with_the_reason(b, root):
    msg = b.publish("q", "bad")
    done = work(root, "--max-messages", 1,
                command=["sh", "-c", 'echo "it broke: $1" >&2; exit 3', "sh", "{}"])
    assert done.returncode == 4
    assert "it broke: bad" in done.stderr               # passed through
    assert "failed {} (delivery 1, exit 3".format(msg.id) in done.stderr
    assert "exit status 3" in done.stderr
    waiting, work_files = b.get_message_list("q")
    assert work_files == [] and len(waiting) == 1
    again = b.consume("q")
    assert (again.id, again.requeue_counter) == (msg.id, 1)


HOSTILE = ["it's \"quoted\"", "$(touch made-by-subshell)", "a; touch made-by-semicolon",
           "line one\nline two\n", "-n", "--help", "`touch made-by-backticks`", "*", "  spaced  ",
           "{}", ""]


def test_hostile_texts_reach_the_command_as_one_literal_argument(b, root, out, tmp_path):
    msgs = b.publish_many("q", HOSTILE)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = work(root, "-j", 2, "--idle-exit", 1, command=RECORD + [out], cwd=str(cwd))
    assert done.returncode == 0, done.stderr
    assert outputs(out) == {(msg.id, 1): "2:" + msg.message for msg in msgs}
    assert os.listdir(cwd) == []                             # nothing else ran


def test_without_placeholder_the_text_is_the_standard_input(b, root, out):
    big = "x" * 300_000 + "\nend"                              # more than a pipe holds
    msgs = b.publish_many("q", HOSTILE + [big])
    done = work(root, "--idle-exit", 1,
                command=["sh", "-c", 'cat > "$0/$DDMQ_MESSAGE_ID.$DDMQ_DELIVERY"', out])
    assert done.returncode == 0, done.stderr
    assert outputs(out) == {(msg.id, 1): msg.message for msg in msgs}


@pytest.mark.parametrize("placeholder", [True, False])
def test_a_bytes_payload_reaches_the_command_byte_for_byte(b, root, out, placeholder):
    # Not UTF-8, and (as an argument) no NUL byte: an argument cannot hold one.
    payloads = [b"caf\xe9 \xff\xfe\x80 {}\n", b"plain ascii"]
    if not placeholder:
        payloads += [b"\x00" + bytes(range(256)), b""]
    msgs = [b.publish("q", payload) for payload in payloads]
    write = 'printf "%s" "$2" > "$1/$DDMQ_MESSAGE_ID"' if placeholder else \
        'cat > "$1/$DDMQ_MESSAGE_ID"'
    done = work(root, "--max-messages", len(msgs),
                command=["sh", "-c", write, "sh", out] + (["{}"] if placeholder else []))
    assert done.returncode == 0, done.stderr
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == \
        {msg.id: payload for msg, payload in zip(msgs, payloads)}
    assert b.get_message_list("q") == ([], [])


WORKER_KEYS = {"DDMQ_ROOT", "DDMQ_QUEUE", "DDMQ_MESSAGE_ID", "DDMQ_WORK_FILE", "DDMQ_DELIVERY"}


def test_environment_of_the_command(b, root, out):
    msg = b.publish("q", "hello")
    script = 'env | grep ^DDMQ_ | sort > "$0/$DDMQ_MESSAGE_ID.$DDMQ_DELIVERY"'
    assert work(root, "--max-messages", 1, command=["sh", "-c", script, out]).returncode == 0
    env = dict(line.split("=", 1) for line in outputs(out)[(msg.id, 1)].splitlines())
    for key in set(env) - WORKER_KEYS:
        assert os.environ.get(key) == env.pop(key)   # the worker's own environment, passed on
    assert env.pop("DDMQ_WORK_FILE").endswith(msg.filename.split("/")[-1])
    assert env == {"DDMQ_ROOT": os.path.abspath(root), "DDMQ_QUEUE": "q",
                   "DDMQ_MESSAGE_ID": msg.id, "DDMQ_DELIVERY": "1"}


def test_a_task_longer_than_its_lease_is_renewed_and_delivered_once(b, root, out):
    msg = b.publish("q", "slow")
    b.update_settings_file("q", {"message_timeout": 2})
    # Cleaners force a cleaning every 0.2 s while the task runs 3x message_timeout.
    cleaner = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, ddmq\n"
        "b = ddmq.broker(sys.argv[1])\n"
        "end = time.time() + 7\n"
        "while time.time() < end:\n"
        "    b.clean('q', force=True); time.sleep(0.2)\n"), root])
    try:
        done = work(root, "--max-messages", 1,
                    command=["sh", "-c", 'sleep 6; printf "%s" "$1" > "$2/$DDMQ_MESSAGE_ID.'
                             '$DDMQ_DELIVERY"', "sh", "{}", out])
    finally:
        cleaner.wait(timeout=20)
    assert done.returncode == 0, done.stderr
    assert outputs(out) == {(msg.id, 1): "slow"}
    assert b.get_message_list("q") == ([], [])


def test_a_sigkilled_workers_command_is_gone_and_its_message_delivered_again(b, root, out,
                                                                            tmp_path):
    msg = b.publish("q", "doomed")
    b.update_settings_file("q", {"message_timeout": 2})
    pidfile = tmp_path / "pid"
    worker = start(root, command=["sh", "-c", 'echo $$ > "$0"; exec sleep 60', pidfile])
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the command")
        command_pid = int(pidfile.read_text())
        worker.kill()
        worker.wait(timeout=10)
        wait_for(lambda: not alive(command_pid), timeout=10, what="the command to die")
    finally:
        worker.kill()
        worker.communicate()
    assert len(b.get_message_list("q")[1]) == 1        # still claimed: its lease runs on
    time.sleep(3.5)
    b.clean("q", force=True)
    done = work(root, "--max-messages", 1, command=RECORD + [out])
    assert done.returncode == 0, done.stderr
    assert outputs(out) == {(msg.id, 2): "2:doomed"}
    assert b.get_message_list("q") == ([], [])


def test_idle_exit_waits_for_a_retry_due_within_the_idle_time(b, root, out, tmp_path):
    msg = b.publish("q", "flaky")
    b.update_settings_file("q", {"requeue_delay": 4, "requeue_limit": 3})
    tried = tmp_path / "tried"
    # Fails on its first run, succeeds on the retry 4 s later: after the idle time.
    script = 'if [ -e "$0" ]; then printf "%s" "$1" > "$2/$DDMQ_MESSAGE_ID"; ' \
             'else touch "$0"; exit 1; fi'
    done = work(root, "--idle-exit", 3,   # the retry is due 4 to 5 s after the failure
                command=["sh", "-c", script, tried, "{}", out])
    assert done.returncode == 4, done.stderr               # a run failed (then its retry passed)
    assert "1 done, 1 failed" in done.stderr
    assert os.listdir(out) == [msg.id]                     # the retry ran before the exit
    assert b.get_message_list("q") == ([], []) and b.get_delayed_list("q") == []


def test_retries_gives_a_failing_task_up_to_the_dead_letter_queue(b, root, out):
    msg = b.publish("q", "broken")
    b.update_settings_file("q", {"dead_letter": "dlq"})     # and no requeue_limit
    b.create_queue("dlq")
    failing = ["sh", "-c", 'touch "$1/$DDMQ_DELIVERY"; exit 3', "sh", out]
    done = work(root, "--retries", 2, "--idle-exit", 1, command=failing)
    assert done.returncode == 4, done.stderr
    assert sorted(os.listdir(out)) == ["1", "2", "3"]      # the first run and two retries
    assert b.get_message_list("q") == ([], []) and b.get_delayed_list("q") == []
    dead = b.consume("dlq")
    assert dead.id == msg.id and dead.dead_lettered_from == "q"
    assert "exit status 3" in dead.last_nack_reason


def test_retries_0_without_a_dead_letter_queue_drops_the_task_after_one_run(b, root, out):
    b.publish("q", "broken")
    done = work(root, "--retries", 0, "--idle-exit", 1,
                command=["sh", "-c", 'touch "$1/$DDMQ_DELIVERY"; exit 1', "sh", out])
    assert done.returncode == 4 and "1 failed" in done.stderr
    assert os.listdir(out) == ["1"]
    assert b.get_message_list("q") == ([], [])


def test_idle_exit_leaves_a_message_delayed_beyond_the_idle_time(b, root, out):
    b.publish("q", "tomorrow", delay=86400)
    started = time.monotonic()
    done = work(root, "--idle-exit", 0.5, command=RECORD + [out])
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30 and os.listdir(out) == []
    assert len(b.get_delayed_list("q")) == 1


@pytest.mark.parametrize("trap", [False, True], ids=["dies-on-term", "ignores-term"])
def test_sigterm_requeues_the_running_message_at_once(b, root, tmp_path, trap):
    msgs = b.publish_many("q", ["first", "second"])
    b.update_settings_file("q", {"requeue_delay": 300})   # for failures, not interruptions
    pidfile = tmp_path / "pid"
    script = ('trap "" TERM; ' if trap else "") + 'echo $$ > "$0"; while :; do sleep 0.1; done'
    worker = start(root, "--grace", 1, command=["sh", "-c", script, pidfile])
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the command")
        command_pid = int(pidfile.read_text())
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=15)
        took = time.monotonic() - started
    finally:
        worker.kill()
    assert worker.returncode == 128 + signal.SIGTERM, err
    assert took < 8                                       # the grace period, not a lease
    assert "SIGTERM" in err and "1 requeued unfinished" in err
    assert not alive(command_pid)
    waiting, work_files = b.get_message_list("q")
    assert work_files == [] and len(waiting) == 2          # nothing lost, nothing claimed
    assert b.get_delayed_list("q") == []                   # waiting at once, not delayed
    again = b.consume("q", n=2)
    assert sorted(m.id for m in again) == sorted(m.id for m in msgs)


def test_two_jobs_really_run_at_once(b, root, tmp_path):
    b.publish_many("q", ["a", "b"])
    marks = tmp_path / "marks"
    marks.mkdir()
    # Each command waits until both have started: with one at a time, both time out.
    script = 'touch "$0/$1"; while [ "$(ls "$0" | wc -l)" -lt 2 ]; do sleep 0.05; done'
    done = work(root, "-j", 2, "--max-messages", 2, "--task-timeout", 10,
                command=["sh", "-c", script, marks, "{}"])
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(marks)) == ["a", "b"]


@pytest.mark.parametrize("command", [["no-such-command-ddmq", "{}"], ["/etc/passwd"],
                                     ["/nonexistent/bin/tool"]])
def test_a_command_that_cannot_start_is_an_error_before_any_claim(b, root, command):
    b.publish("q", "keep me")
    before = snapshot(root)
    done = work(root, "--idle-exit", 1, command=command)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("ddmq work: error: ")
    assert "Traceback" not in done.stderr
    assert snapshot(root) == before


@pytest.mark.parametrize("argv", [["work", "ROOT", "q", "true"], ["work", "ROOT", "q", "--"],
                                  ["work", "-j", "0", "ROOT", "q", "--", "true"],
                                  ["work", "--idle-exit", "soon", "ROOT", "q", "--", "true"],
                                  ["work", "--retries", "-1", "ROOT", "q", "--", "true"],
                                  ["work", "ROOT", "../q", "--", "true"]])
def test_usage_errors(b, root, argv):
    before = snapshot(root)
    argv = [root if arg == "ROOT" else arg for arg in argv]
    done = subprocess.run([sys.executable, "-m", "ddmq"] + argv, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert snapshot(root) == before


def test_a_claim_the_filesystem_refuses_is_retried_and_the_worker_goes_on(b, root, out,
                                                                         tmp_path):
    msg = b.publish("q", "x")
    queue = os.path.join(root, "q")
    # A waiting name of 255 characters: its claimed name would be longer, so
    # every claim of it fails with ENAMETOOLONG, a StorageError (with one job
    # free, this once crashed the worker instead of being retried).
    name, = (entry for entry in os.listdir(queue) if entry.endswith(msg.id))
    refused = name.replace("ddmq", "ddmq" + "f" * (255 - len(name)))
    os.rename(os.path.join(queue, name), os.path.join(queue, refused))
    log = tmp_path / "stderr"
    with open(log, "w") as stderr:
        worker = subprocess.Popen(worker_argv(root, "-v", "--max-messages", 1,
                                              command=RECORD + [out]), stderr=stderr)
    try:
        wait_for(lambda: "Could not claim from q" in log.read_text(), timeout=30,
                 what="a refused claim")
        os.rename(os.path.join(queue, refused), os.path.join(queue, name))
        assert worker.wait(timeout=30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert outputs(out) == {(msg.id, 1): "2:x"}
    assert b.get_message_list("q") == ([], [])


def test_joblog_and_task_timeout(b, root, tmp_path):
    ok, bad, slow = b.publish_many("q", ["0", "3", "30"])
    b.update_settings_file("q", {"requeue": False})         # failures are dropped here
    joblog = tmp_path / "jobs.log"
    done = work(root, "-j", 3, "--idle-exit", 1, "--task-timeout", 1, "--joblog", joblog,
                command=["sh", "-c", 'if [ "$1" = 30 ]; then exec sleep 30; fi; exit "$1"', "sh",
                         "{}"])
    assert done.returncode == 4
    lines = joblog.read_text().splitlines()
    assert lines[0].split("\t") == ["MessageId", "Host", "Starttime", "JobRuntime", "Exitval",
                                    "Signal", "Delivery"]
    rows = {fields[0]: fields for fields in (line.split("\t") for line in lines[1:])}
    assert set(rows) == {ok.id, bad.id, slow.id}
    assert [rows[ok.id][i] for i in (4, 5, 6)] == ["0", "0", "1"]
    assert [rows[bad.id][i] for i in (4, 5, 6)] == ["3", "0", "1"]
    assert [rows[slow.id][i] for i in (4, 5, 6)] == ["0", str(int(signal.SIGTERM)), "1"]
    assert 0.9 < float(rows[slow.id][3]) < 20 and abs(float(rows[ok.id][2]) - time.time()) < 60
    assert "timed out after 1 s" in done.stderr
    assert b.get_message_list("q") == ([], [])
    # A second run appends, without a second header.
    b.publish("q", "0")
    assert work(root, "--max-messages", 1, "--joblog", joblog,
                command=["sh", "-c", 'exit "$1"', "sh", "{}"]).returncode == 0
    assert len(joblog.read_text().splitlines()) == 5


# GlusterFS: three workers, one per client mount of one volume.

@pytest.fixture
def dfs_root():
    for paths in rig_paths("ddmq-test-work-"):
        ddmq.broker(paths["a"], create=True).create_queue("q")
        os.mkdir(os.path.join(paths["a"], "out"))
        yield paths


def test_three_workers_on_three_glusterfs_mounts_run_every_task_once(dfs_root):
    total = 2000
    texts = ["t{:04d}".format(i) for i in range(total)]
    # Published through the three mounts at once: a third each.
    publishers = [subprocess.Popen([sys.executable, "-c", (
        "import sys, ddmq\n"
        "ddmq.broker(sys.argv[1]).publish_many('q', sys.argv[2:])\n"), dfs_root[letter]]
        + texts[index::3]) for index, letter in enumerate("abc")]
    assert [publisher.wait(timeout=200) for publisher in publishers] == [0, 0, 0]
    workers = [start(dfs_root[letter], "-j", 2, "--idle-exit", 3,
                     command=["sh", "-c", 'echo "$DDMQ_MESSAGE_ID $DDMQ_DELIVERY" >> "$0/$1"',
                              os.path.join(dfs_root[letter], "out"), "{}"])
               for letter in "abc"]
    results = [worker.communicate(timeout=280) for worker in workers]
    for worker, (_, err) in zip(workers, results):
        assert worker.returncode == 0, err[-2000:]
    ran = [err.count("ddmq work: done ") for _, err in results]
    assert sum(ran) == total and all(ran), ran
    out = os.path.join(dfs_root["b"], "out")
    assert sorted(os.listdir(out)) == texts
    for text in texts:
        with open(os.path.join(out, text)) as handle:
            assert len(handle.read().splitlines()) == 1, text
    assert ddmq.broker(dfs_root["c"]).get_message_list("q") == ([], [])


def test_the_work_benchmark_runs_with_tiny_sizes(tmp_path):
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "benchmarks.work", "--dir", str(tmp_path),
                           "--n", "20", "--repeat", "1"], cwd=checkout, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ddmq work -j 2" in done.stdout and "xargs -P 2 -n 1" in done.stdout
    assert ("not installed (skipped)" in done.stdout) == (shutil.which("parallel") is None)
    assert os.listdir(tmp_path) == []
