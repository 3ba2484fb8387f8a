"""Smoke test of benchmarks/waiting.py with tiny sizes: it runs, measures both paths, cleans up.

It asserts nothing about speed: timings on a shared machine are not a test.
"""

import json
import os
import subprocess
import sys

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_waiting_benchmark_runs_both_paths_and_leaves_nothing(tmp_path):
    result = tmp_path / "result.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.waiting", "--dir", str(tmp_path),
                           "--n", "5", "--gap", "0.02", "--idle", "0.3", "--json", str(result)],
                          cwd=CHECKOUT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(result.read_text())["rows"]
    assert [(row["path"], row["n"]) for row in rows] == [("inotify", 5), ("poll", 5)]
    assert all(row["p99_ms"] >= row["p50_ms"] and row["idle_cpu_pct"] >= 0 for row in rows)
    assert "Waiting consume" in done.stdout and "machine:" in done.stdout
    assert [path.name for path in tmp_path.iterdir()] == ["result.json"]
