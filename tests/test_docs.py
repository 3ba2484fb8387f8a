"""The documentation says what the code does: settings, exit statuses, quick start, tools.

The Sphinx build itself (warnings as errors) runs in CI and in ``tox -e docs``;
these tests need no Sphinx.  They check the facts a page states that would
otherwise drift from the code: every ``ddmq.yaml`` key and its default, the
exit statuses, and the quick start's programs and commands, which they run.
"""

import ast
import json
import os
import re
import subprocess
import sys
import time

import ddmq
from ddmq import cli, settings

from docsrun import DOCS, TOP, blocks, console_steps, env_with_ddmq, matches, page

# Configuration

def documented_settings():
    """Return {key: default as written} from the settings table of configuration.rst."""
    table = page("configuration.rst").split("\nSettings\n--------\n", 1)[1]
    return dict(re.findall(r"^``(\w+)``\s+``([^`]+)``\s+(?:queue|root)\s", table, re.M))


def yaml_text(value):
    """Return ``value`` as a ddmq.yaml file writes it."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def test_configuration_page_lists_every_setting_with_its_default():
    documented = documented_settings()
    assert set(documented) == set(settings.DEFAULTS), (
        "docs/configuration.rst's table and ddmq.settings.DEFAULTS differ: add the new key "
        "(default, where, meaning) and its paragraph to the page")
    for key, value in settings.DEFAULTS.items():
        assert documented[key] == yaml_text(value), key


def test_configuration_page_explains_every_setting():
    text = page("configuration.rst")
    for key in settings.DEFAULTS:
        assert re.search(r"^``{}``\n    \S".format(key), text, re.M), key


def test_documented_defaults_are_what_a_new_root_uses(tmp_path):
    b = ddmq.broker(str(tmp_path / "root"), create=True)
    merged = b.get_settings("jobs")
    for key, default in documented_settings().items():
        if key != "cleaned":
            assert yaml_text(merged[key]) == default, key


# Exit statuses

def test_cli_page_exit_statuses_are_the_codes_of_the_cli():
    section = page("cli.rst").split("\nExit status\n-----------\n", 1)[1]
    codes = [int(code) for code in re.findall(r"^(\d)\s{2,}", section, re.M)]
    assert codes == [cli.EXIT_OK, cli.EXIT_ERROR, cli.EXIT_USAGE, cli.EXIT_EMPTY, cli.EXIT_LOST]


def test_cli_page_shows_every_command_it_describes_by_hand():
    named = re.findall(r"^\.\. ddmq-command:: (\w+)$", page("cli.rst"), re.M)
    assert set(named) <= set(cli.COMMANDS) | {"json"}
    assert "ddmq-other-commands::" in page("cli.rst")   # and the rest, generated


# Quick start

def test_quick_start_python_programs_run_and_print_what_the_page_says(tmp_path):
    root = str(tmp_path / "ddmq")
    programs = [code.replace("/tmp/ddmq", root) for code in blocks(page("quickstart.rst"), "python")]
    assert len(programs) == 4
    outputs = []
    for code in programs:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=60, env=env_with_ddmq(), cwd=str(tmp_path))
        assert result.returncode == 0, code + result.stderr
        outputs.append(result.stdout.splitlines())
    waiting, work = ast.literal_eval(outputs[0][0])
    assert (len(waiting), work) == (5, [])
    assert outputs[1][0] == "{'task': 7, 'input': 'a.txt'}"
    assert outputs[2] == ["working on " + text for text in ("Hello World!", "x", "y", "z")]
    assert outputs[3][0].startswith("invalid - invalid queue name 'no such/queue': use only")
    assert ddmq.broker(root).get_message_list("jobs") == ([], [])


def test_quick_start_shell_commands_print_what_the_page_shows(tmp_path):
    root = str(tmp_path / "ddmq")
    steps = console_steps(page("quickstart.rst"))
    assert len(steps) >= 10
    for command, expected in steps:
        command = command.replace("/tmp/ddmq", root)
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                timeout=60, env=env_with_ddmq(), cwd=str(tmp_path))
        assert result.returncode == 0, (command, result.stderr)
        actual = result.stdout.splitlines()
        expected = [line.replace("/tmp/ddmq", root) for line in expected]
        assert len(actual) == len(expected) and all(map(matches, expected, actual)), (
            command, expected, actual)


def test_the_quick_start_consume_record_is_json_with_the_documented_keys(tmp_path):
    expected = [lines for command, lines in console_steps(page("quickstart.rst"))
                if command.startswith("ddmq consume --format json") and lines][0]
    # "..." stands for a string, a bare ... for a number (a time).
    record = expected[0].replace('"..."', '"x"').replace("...", "0")
    assert list(json.loads(record)) == list(cli.MESSAGE_FIELDS)


# Tools the pages describe

def test_visibility_benchmark_bounces_messages_between_two_processes(tmp_path):
    root = str(tmp_path / "probe")
    command = [sys.executable, "-m", "benchmarks.visibility"]
    echo = subprocess.Popen(command + ["echo", root, "--timeout", "60"], cwd=TOP,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not os.path.isdir(os.path.join(root, "pong", "work")):
            assert time.monotonic() < deadline and echo.poll() is None, echo.stderr.read()
            time.sleep(0.05)
        probe = subprocess.run(command + ["probe", root, "-n", "5", "--timeout", "60"], cwd=TOP,
                               capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, probe.stderr
        assert re.fullmatch(r"one-way delay over 5 round trips: min [\d.]+ ms, median [\d.]+ ms, "
                            r"90% [\d.]+ ms, max [\d.]+ ms\n", probe.stdout), probe.stdout
        assert echo.wait(timeout=30) == 0, echo.stderr.read()
    finally:
        if echo.poll() is None:
            echo.kill()
            echo.wait()
    b = ddmq.broker(root)
    assert b.get_message_list("ping") == ([], []) and b.get_message_list("pong") == ([], [])


def test_readme_links_every_page_of_the_site():
    readme = open(os.path.join(TOP, "README.rst")).read()
    pages = [name[:-4] for name in os.listdir(DOCS) if name.endswith(".rst")]
    missing = [name for name in pages if "docs/{}.rst".format(name) not in readme]
    assert not missing, "README.rst does not link " + ", ".join(missing)


def test_the_annotated_package_does_not_import_typing_at_run_time():
    # Annotations must not slow start-up: typing is imported only for type checkers.
    # -S: no site-packages, whose .pth files (an editable install's) may load typing
    # before ddmq; every module is imported, the lazily loaded ones too.
    modules = sorted(name[:-3] for name in os.listdir(os.path.join(TOP, "ddmq"))
                     if name.endswith(".py") and name != "__main__.py")
    code = "import sys; before = 'typing' in sys.modules\n{}\nprint(before, 'typing' in sys.modules)"
    imports = "\n".join("import ddmq.{}".format(name) for name in modules if name != "__init__")
    result = subprocess.run([sys.executable, "-S", "-c", code.format(imports)],
                            capture_output=True, text=True, timeout=60, cwd=TOP)
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_the_module_reference_documents_every_module_of_the_package():
    package = os.path.join(TOP, "ddmq")
    modules = {name[:-3] for name in os.listdir(package)
               if name.endswith(".py") and not name.startswith("_")}
    documented = set(re.findall(r"^\.\. automodule:: ddmq\.(\w+)$", page("modules.rst"), re.M))
    assert modules - documented == set(), "docs/modules.rst lacks these modules"
    assert documented - modules == set(), "docs/modules.rst documents modules that do not exist"
