"""broker.stats and the figures of ``ddmq view``: hand-counted states, every JSON output."""

import json
import os
import re
import time

import pytest
import yaml

import ddmq
from ddmq import cli, monitor, stats

from conftest import snapshot
from test_cli import fails, ok, run

OLD_NUMBER = "1600000000123456789"   # a queue number of 2020-09-13


def _write(path, data=b'{"message": "x"}'):
    with open(path, "wb") as handle:
        handle.write(data)


def test_stats_of_hand_counted_states(root):
    clock = [time.time()]
    b = ddmq.broker(root, create=True, clock=lambda: clock[0])
    b.create_queue("q")
    b.update_settings_file("q", {"message_timeout": 100, "dead_letter": "dlq"})
    for text in "abcdef":
        b.publish("q", text, priority=5)
    b.publish("dlq", "dead one")
    b.publish("dlq", "dead two")
    q = os.path.join(root, "q")
    # A corrupt waiting file, served first (priority 0): the consumer quarantines it.
    _write(os.path.join(q, "0.{}.ddmq{}".format(OLD_NUMBER, "b" * 32)), b"{not json")
    assert len(b.consume("q", n=2)) == 2    # claimed first, at clock[0]: leases clock[0] + 100
    clock[0] += 50
    b.consume("q", n=1)                     # claimed at clock[0] + 50
    # A waiting message of 2020 (its contents never read), the oldest.
    _write(os.path.join(q, "3.{}.ddmq{}".format(OLD_NUMBER, "a" * 32)))
    # Two files set aside as corrupt, a delayed folder with three entries, foreign names.
    os.makedirs(os.path.join(q, ".quarantine"), exist_ok=True)
    for name in ("c1", "c2"):
        _write(os.path.join(q, ".quarantine", name))
    os.mkdir(os.path.join(q, "delayed"))
    for name in ("d1", "d2", "d3"):
        _write(os.path.join(q, "delayed", name))
    _write(os.path.join(q, "notes.txt"))
    _write(os.path.join(q, "5.123.ddmqabc\n5.1600000000.ddmqabc"))  # a newline: not a message
    _write(os.path.join(q, "work", "garbage"))
    clock[0] += 60                           # the first two leases expired, the third did not
    before = snapshot(root)
    figures = b.stats("q")
    assert snapshot(root) == before          # nothing read into, nothing changed
    now = int(clock[0])
    claimed_at = int(now - 110)
    assert figures == {
        "waiting": 4, "in_flight": 1, "expired": 2, "work": 3, "delayed": 3, "quarantined": 3,
        "dead_lettered": 2, "oldest_waiting_age": now - 1600000000,
        "oldest_claim_age": figures["oldest_claim_age"],
        "oldest_lease_expiry": figures["oldest_lease_expiry"]}
    assert abs(figures["oldest_claim_age"] - (now - claimed_at)) <= 1
    assert abs(figures["oldest_lease_expiry"] - (claimed_at + 100)) <= 1
    assert tuple(figures) == stats.FIELDS
    # clock_skew delays expiry: with 30 s of skew, the first two leases are still valid.
    b.update_settings_file("q", {"clock_skew": 30})
    b._forget("q")
    assert (b.stats("q")["expired"], b.stats("q")["in_flight"]) == (0, 3)
    # Every queue at once.
    everything = b.stats()
    assert list(everything) == ["dlq", "q"] and everything["q"]["waiting"] == 4
    assert everything["dlq"]["waiting"] == 2 and everything["dlq"]["dead_lettered"] == 0


def test_stats_of_an_empty_queue_and_bad_names(root):
    b = ddmq.broker(root, create=True)
    b.create_queue("empty")
    assert b.stats("empty") == {
        "waiting": 0, "in_flight": 0, "expired": 0, "work": 0, "delayed": 0, "quarantined": 0,
        "dead_lettered": 0, "oldest_waiting_age": None, "oldest_claim_age": None,
        "oldest_lease_expiry": None}
    with pytest.raises(ddmq.errors.InvalidInputError):
        b.stats("../x")
    with pytest.raises(ddmq.errors.QueueNotFoundError):
        ddmq.broker(root).stats("nope")
    assert not os.path.exists(os.path.join(root, "nope"))


def test_stats_at_depth_counts_every_message(root):
    b = ddmq.broker(root, create=True)
    b.publish_many("deep", ["m"] * 20_000)
    b.consume("deep", n=1000)
    figures = b.stats("deep")
    assert (figures["waiting"], figures["in_flight"], figures["work"]) == (19_000, 1000, 1000)


def test_view_shows_the_figures(root):
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    b.update_settings_file("q", {"dead_letter": "dlq"})
    b.publish("q", "a")
    b.publish("q", "b")
    b.publish("dlq", "gone")
    b.consume("q")
    document = json.loads(ok("view", "--format", "json", root))
    assert document["q"] == dict(b.stats("q"), oldest_waiting_age=document["q"][
        "oldest_waiting_age"], oldest_claim_age=document["q"]["oldest_claim_age"])
    assert (document["q"]["waiting"], document["q"]["in_flight"],
            document["q"]["dead_lettered"]) == (1, 1, 1)
    def counts(document):
        return {queue: {k: v for k, v in figures.items() if "age" not in k}
                for queue, figures in document.items()}

    assert counts(yaml.safe_load(ok("view", "--format", "yaml", root))) == counts(document)
    table = ok("view", root, "q")
    row = [line for line in table.splitlines() if line.startswith("| q ")][0]
    assert [cell.strip() for cell in row.strip("|").split("|")][:7] == [
        "q", "1", "1", "0", "0", "0", "1"]


# Every command's --format json output is one JSON document.

def _json_cases(root, filename, ready, held):
    """Return {command: argv} covering every subcommand of cli.COMMANDS but ``work``.

    ``work`` prints no records (its output is the commands' own), so it has
    no ``--format``.
    """
    return {
        "view": ["view", root],
        "create": ["create", root, "new1,new2"],
        "delete": ["delete", "-f", root, "new1,nope"],
        "publish": ["publish", root, "q", "text"],
        "consume": ["consume", "-n", "2", root, "q"],
        "pop": ["pop", root, "q"],
        "peek": ["peek", "-n", "3", root, "q"],
        "ack": ["ack", root, "q", filename],
        "nack": ["nack", root, "q", filename + "x"],   # gone: an error, still one document
        "del_msg": ["del_msg", root, "q", ready],
        "redrive": ["redrive", root, "dlq"],
        "purge": ["purge", root, "new2"],
        "clean": ["clean", root, "q,dlq"],
        "touch": ["touch", root, "q", held],
        "subscribe": ["subscribe", root, "news", "q,dlq"],
        "subscriptions": ["subscriptions", root],
        "unsubscribe": ["unsubscribe", root, "news", "dlq"],
    }


def test_every_command_prints_one_json_document(root):
    b = ddmq.broker(root, create=True)
    for text in "abcdef":
        b.publish("q", text)
    b.publish("dlq", "dead")
    first, held = b.consume("q"), b.consume("q")
    ready = b.get_message_list("q")[0][-1]
    cases = _json_cases(root, os.path.basename(first.filename), os.path.basename(ready),
                        held.filename)
    assert set(cases) == set(cli.COMMANDS) - {"work"}, "add the new command to _json_cases"
    for name, argv in cases.items():
        result = run(*(argv[:1] + ["--format", "json"] + argv[1:]))
        assert "Traceback" not in result.stderr, (name, result)
        assert result.returncode in (0, 1, 3), (name, result)
        document = json.loads(result.stdout)
        assert isinstance(document, (dict, list)) or document is None, name
    # ddmq json with several operations: their documents, in order, in one list.
    ops = [{"cmd": "publish", "root": root, "queue": "q", "message": "x", "format": "json"},
           {"cmd": "view", "root": root, "format": "json"},
           {"cmd": "view", "root": root, "format": "plain", "n": True}]
    result = run("json", stdin="".join(json.dumps(op) + "\n" for op in ops))
    assert result.returncode == 0, result
    names_only, document = result.stdout.split("[", 1)
    assert names_only.split() == ["dlq", "new2", "q"]
    published, viewed = json.loads("[" + document)
    assert published["message"] == "x" and viewed["q"]["waiting"] >= 1


def test_view_usage_errors(root):
    ok("create", "-f", root, "q")
    assert "--watch shows" in fails(2, "view", "--watch", "1", "--format", "yaml", root)
    assert "must be a number of seconds" in fails(2, "view", "--watch", "0", root)
    assert "invalid choice" in fails(2, "publish", "--format", "prometheus", root, "q", "x")


# Monitoring output and view --watch.

def test_prometheus_output_parses_strictly(root):
    parser = pytest.importorskip("prometheus_client.parser")  # the test extra installs it
    b = ddmq.broker(root, create=True)
    b.publish("jobs", "a")
    b.publish("jobs", "b")
    b.consume("jobs")
    b.create_queue("idle")
    text = ok("view", "--format", "prometheus", root)
    families = {family.name: family for family in parser.text_string_to_metric_families(text)}
    assert set(families) == {metric for _, metric, _ in monitor.METRICS}
    for family in families.values():
        assert family.type == "gauge" and family.documentation

    def value(metric, queue):
        found = [s.value for s in families[metric].samples if s.labels == {"queue": queue}]
        return found[0] if found else None
    assert value("ddmq_waiting_messages", "jobs") == 1
    assert value("ddmq_in_flight_messages", "jobs") == 1
    assert value("ddmq_waiting_messages", "idle") == 0
    assert value("ddmq_oldest_waiting_age_seconds", "idle") is None   # absent, not 0
    assert value("ddmq_oldest_claim_age_seconds", "jobs") is not None
    # Strictness check of the parser itself: a malformed line is refused.
    with pytest.raises(ValueError):
        list(parser.text_string_to_metric_families('ddmq_waiting_messages{queue="x} 1\n'))


def test_watch_prints_one_document_per_refresh_off_a_terminal(root):
    import signal
    import subprocess

    from test_cli import DDMQ

    b = ddmq.broker(root, create=True)
    for _ in range(10):
        b.publish("q", "x")
    proc = subprocess.Popen(DDMQ + ["view", "--watch", "0.2", root], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["queues"]["q"]["waiting"] == 10 and first["queues"]["q"]["ack_rate"] is None
        for msg in b.consume("q", n=4):
            b.ack("q", msg.filename)
        for _ in range(100):
            doc = json.loads(proc.stdout.readline())
            figures = doc["queues"]["q"]
            if figures["waiting"] + figures["work"] == 6:
                break   # the first refresh after the acks: the previous one still saw 10
        assert (figures["waiting"], figures["work"]) == (6, 0), doc
        assert figures["ack_rate"] > 0 and doc["time"] > first["time"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0 and err == ""
    for line in out.splitlines():
        json.loads(line)


def _tmux(*args):
    import subprocess

    return subprocess.run(["tmux"] + list(args), capture_output=True, text=True, timeout=10)


def _screen(session):
    return _tmux("capture-pane", "-p", "-t", session).stdout


def _waiting_on_screen(screen):
    rows = [line for line in screen.splitlines() if line.startswith("| q ")]
    return [int(row.strip("|").split("|")[1]) for row in rows]


def test_watch_redraws_in_place_in_a_real_terminal(root, tmp_path):
    import shutil
    import shlex

    from test_cli import DDMQ

    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: .ci/run installs it (apt-get install tmux)")
    b = ddmq.broker(root, create=True)
    for _ in range(30):
        b.publish("q", "x")
    session = "ddmq-watch-{}".format(os.getpid())
    status, errors = tmp_path / "status", tmp_path / "stderr"
    # The shell traps SIGINT (a handler, which its child does not inherit) so that it
    # outlives the Ctrl-C sent to the whole foreground group and records the status.
    command = "trap : INT; {} view --watch 0.3 {} 2>{}; echo $? >{}".format(
        " ".join(map(shlex.quote, DDMQ)), shlex.quote(root), errors, status)
    assert _tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "30",
                 "sh", "-c", command).returncode == 0
    try:
        _tmux("set-option", "-t", session, "remain-on-exit", "on")
        deadline = time.time() + 10
        while _waiting_on_screen(_screen(session)) != [30] and time.time() < deadline:
            time.sleep(0.1)
        first = _screen(session)
        assert _waiting_on_screen(first) == [30], first
        for msg in b.consume("q", n=12):
            b.ack("q", msg.filename)
        deadline = time.time() + 10
        while _waiting_on_screen(_screen(session)) != [18] and time.time() < deadline:
            time.sleep(0.1)
        second = _screen(session)
        # Redrawn in place: one header, one row, the number changed where it was.
        assert _waiting_on_screen(second) == [18], second
        assert second.count("ddmq view --watch") == 1 and len(re.findall(r"\|\s*queue\s*\|", second)) == 1
        row = [i for i, line in enumerate(second.splitlines()) if line.startswith("| q ")]
        assert row == [i for i, line in enumerate(first.splitlines()) if line.startswith("| q ")]
        assert "ack/s" in second
        _tmux("send-keys", "-t", session, "C-c")
        deadline = time.time() + 10
        while not (status.exists() and status.read_text().strip()) and time.time() < deadline:
            time.sleep(0.1)
        assert status.read_text().strip() == "0"
        assert errors.read_text() == ""              # no traceback
        assert "| q " not in _screen(session)         # the alternate screen is gone
    finally:
        _tmux("kill-session", "-t", session)


def test_watch_without_seconds_may_come_before_the_root(root):
    import signal
    import subprocess

    from test_cli import DDMQ

    ddmq.broker(root, create=True).publish("q", "x")
    proc = subprocess.Popen(DDMQ + ["view", "--watch", root, "q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["queues"]["q"]["waiting"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and err == ""
