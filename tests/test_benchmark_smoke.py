"""Smoke test of the benchmark (benchmarks/run.py): every scenario runs, with tiny sizes.

It checks that the benchmark completes, that every message came back
exactly once, and that it prints its tables and writes its JSON.  It
asserts nothing about speed: timings on a shared machine are not a test.
"""

import json
import os
import subprocess
import sys

import pytest

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = out / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--dir", str(out), "--n", "60", "--repeat", "1",
         "--depths", "30,120", "--depth-n", "40", "--consumers", "1,2", "--fsync-n", "20",
         "--batch", "7", "--cli-runs", "1", "--json", str(result)],
        cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(result.read_text()), out


def test_every_scenario_prints_its_table(report):
    text, _, _ = report
    for title in ("Round trip", "Depth", "Consumers", "CLI start-up"):
        assert title in text
    assert "machine:" in text and "filesystem:" in text


def test_every_message_came_back_exactly_once(report):
    _, data, _ = report
    rows = data["rows"]
    assert {row["scenario"] for row in rows} == {"roundtrip", "depth", "consumers", "cli"}
    for row in rows:
        if row["scenario"] != "cli":
            assert (row["duplicates"], row["missing"], row["spurious"]) == (0, 0, 0), row
    trips = {(row["impl"], row["fsync"]) for row in rows if row["scenario"] == "roundtrip"}
    assert trips == {("raw", False), ("ddmq", False), ("ddmq batch", False),
                     ("raw", True), ("ddmq", True)}
    assert {(row["impl"], row["consumers"]) for row in rows if row["scenario"] == "consumers"} \
        == {("raw", 1), ("raw", 2), ("ddmq", 1), ("ddmq", 2)}


def test_the_ddmq_commands_ran(report):
    _, data, _ = report
    cli = {row["command"]: row for row in data["rows"] if row["scenario"] == "cli"}
    assert set(cli) == {"python -c pass", "ddmq publish", "ddmq consume"}
    assert all(row["status"] == 0 for row in cli.values()), cli


def test_nothing_is_left_behind(report):
    _, _, out = report
    assert [path.name for path in out.iterdir()] == ["result.json"]
