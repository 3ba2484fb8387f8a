"""Packaging: the Quick start's commands, .ci/run and the installed entry points agree."""

import os
import re
import subprocess
import sys

import ddmq

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)


def quick_start_commands():
    """Return the literal blocks of README.rst's Quick start section."""
    text = open(os.path.join(TOP, "README.rst")).read()
    section = text.split("Quick start\n-----------\n", 1)[1].split("\n-----", 1)[0]
    return [line.strip() for line in re.findall(r"::\n\n(    .+)\n", section)]


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_command():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "pytest" in commands[1]
    ci_lines = [line.strip() for line in open(os.path.join(TOP, ".ci", "run"))]
    assert commands[1] in ci_lines


def test_python_dash_m_ddmq_prints_the_usage():
    result = subprocess.run([sys.executable, "-m", "ddmq", "-h"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    assert "usage: ddmq <command>" in result.stdout


def test_version_matches_the_package_metadata(tmp_path):
    from importlib.metadata import version

    b = ddmq.broker(str(tmp_path / "root"), create=True)
    assert version("ddmq") == ddmq.__version__ == b.version()


def test_bin_path_is_the_ddmq_command_itself():
    path = ddmq.get_ddmq_bin_path()
    assert os.path.basename(path) == "ddmq"
    result = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "ddmq version {}\n".format(ddmq.__version__))
