"""Helpers that read the documentation's pages and run what they show.

``tests/test_docs.py`` runs the quick start's programs and commands with
them, ``tests/test_tutorial.py`` the tutorial's.
"""

import os
import re
import sys

import ddmq

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(TOP, "docs")


def page(name):
    with open(os.path.join(DOCS, name)) as handle:
        return handle.read()


def code_blocks(text):
    """Return [(language, {option: value}, body)] of the ``.. code-block::`` directives of
    ``text``, in the page's order, each body dedented."""
    found = []
    pattern = r"^\.\. code-block:: (\S+)\n((?:    :\w+:.*\n)*)\n((?:    .*\n|\n)+)"
    for language, options, body in re.findall(pattern, text, re.M):
        lines = [line[4:] for line in body.rstrip("\n").split("\n")]
        found.append((language, dict(re.findall(r"^    :(\w+): *(.*)$", options, re.M)),
                      "\n".join(lines) + "\n"))
    return found


def blocks(text, language):
    """Return the bodies of the ``.. code-block:: <language>`` blocks of ``text``, dedented."""
    return [body for lang, options, body in code_blocks(text) if lang == language]


def console_steps_of(body):
    """Return [(command, expected stdout lines)] of one ``console`` block's body.

    A command line that ends with a backslash continues on the next line, as
    in the shell (and in Pygments' console lexer, which shows it as code)."""
    steps = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and not steps[-1][1] and steps[-1][0].endswith("\\"):
            steps[-1] = (steps[-1][0] + "\n" + line, [])
        else:
            steps[-1][1].append(line)
    return steps


def console_steps(text):
    """Return [(command, expected stdout lines)] of the ``console`` blocks of ``text``."""
    return [step for body in blocks(text, "console") for step in console_steps_of(body)]


def matches(expected, actual):
    """True if ``actual`` is ``expected``, each ``...`` in it standing for any text."""
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def env_with_ddmq():
    """Return an environment whose PATH finds this ``ddmq`` and this Python first."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(ddmq.get_ddmq_bin_path()),
                                   os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = TOP
    return env
