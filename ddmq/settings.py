"""Settings: the defaults and the ``ddmq.yaml`` files of the cascade.

The settings of a queue are the defaults below, overridden by the root's
``ddmq.yaml``, overridden by the queue's ``ddmq.yaml``; a message's own
fields (``timeout``, ``requeue``, ``requeue_prio``, ``requeue_limit``)
override all of them for that message.  YAML is read with ``yaml.safe_load``
only, and every known key is type-checked, so a malformed or hostile file is
a :class:`~ddmq.errors.ConfigError` that names the file.
"""

from __future__ import annotations

import numbers
import os
import re

from . import fs
from .errors import ConfigError
from .names import QUEUE_NAME
from .protocol import retry_stale, storage_error

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Any, Callable, Optional

    #: Settings as read from a ddmq.yaml or merged: YAML scalars by key.
    Settings = dict[str, Any]

#: The defaults at the bottom of the cascade, with the meaning of each key.
DEFAULTS: Settings = {
    "cleaned": 0,             # epoch time the queue was last cleaned
    "message_timeout": 600,   # seconds a consumed message may stay unacked before it expires
    "priority": 999,          # priority of published messages; lower number = served first
    "requeue": True,          # requeue nacked and expired messages (False: delete them)
    "requeue_prio": 0,        # priority a requeued message gets; 0 is the top priority
    "requeue_limit": None,    # times a message may be requeued; None = no limit
    "fsync": False,           # fsync files and directories so a publish survives power loss
    "clock_skew": 0,          # seconds two hosts' clocks may differ: leases expire that much later
    "clock": "local",         # where "now" comes from: "local" or "filesystem" (see ddmq.clock)
    "poll_interval": 1.0,     # longest pause (s) between two looks at an empty queue when waiting
    "dead_letter": None,      # queue that gets the messages given up on (requeue limit reached,
                              # nacked without requeue, requeue off); null = delete them
    "requeue_delay": 0,       # seconds before a requeued message is served again (first retry)
    "requeue_backoff": 2,     # each further retry waits this many times longer (1 = constant)
    "requeue_delay_max": 3600,  # the longest retry delay, in seconds
    "umask": None,            # bits new files/folders must lack, e.g. "007"; None: process umask
}

#: One line on each key, written as a comment into a new root's ddmq.yaml.
MEANINGS = {
    "message_timeout": "seconds a consumed message may stay unacked before it expires",
    "priority": "priority of published messages; lower number = served first",
    "requeue": "requeue nacked and expired messages (false: give them up)",
    "requeue_prio": "priority a requeued message gets; 0 is the top priority",
    "requeue_limit": "times a message may be requeued, then it is given up; null = no limit",
    "fsync": "fsync files and directories so a publish survives power loss",
    "clock_skew": "seconds two hosts' clocks may differ: leases expire that much later",
    "clock": "where 'now' comes from: local or filesystem",
    "poll_interval": "longest pause (s) between two looks at an empty queue when waiting",
    "dead_letter": "queue that gets messages given up on; null = delete them",
    "requeue_delay": "seconds before a requeued message is served again (first retry)",
    "requeue_backoff": "each further retry of a message waits this many times longer",
    "requeue_delay_max": "the longest retry delay, in seconds",
    "umask": "bits new files and folders must lack, e.g. '007' (group-shared); null = process umask",
}

CONFIG_NAME = "ddmq.yaml"
# The "cleaned" stamp has a file of its own: rewriting ddmq.yaml once a minute
# could undo a settings change made at the same moment (on a network
# filesystem, another host reads the old file for about a second).
CLEANED_NAME = ".ddmq.yaml.cleaned"


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_MAX_DELAY = 10 * 366 * 86400   # a retry delay setting beyond 10 years is surely a mistake

# One check per key, with what the error message says the value must be.
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "cleaned": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "message_timeout": (lambda v: _is_number(v) and v >= 0, "a number of seconds >= 0"),
    "priority": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "requeue": (lambda v: isinstance(v, bool), "true or false"),
    "requeue_prio": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "requeue_limit": (lambda v: v is None or (_is_int(v) and v >= 0), "an integer >= 0 or null"),
    "fsync": (lambda v: isinstance(v, bool), "true or false"),
    "clock_skew": (lambda v: _is_number(v) and v >= 0, "a number of seconds >= 0"),
    "clock": (lambda v: v in ("local", "filesystem"), "local or filesystem"),
    "poll_interval": (lambda v: _is_number(v) and 0 < v <= 3600, "a number of seconds > 0, at most 3600"),
    "requeue_delay": (lambda v: _is_number(v) and 0 <= v <= _MAX_DELAY,
                      "a number of seconds >= 0 (at most 10 years)"),
    "requeue_backoff": (lambda v: _is_number(v) and 1 <= v <= 1000, "a number from 1 to 1000"),
    "requeue_delay_max": (lambda v: _is_number(v) and 0 <= v <= _MAX_DELAY,
                          "a number of seconds >= 0 (at most 10 years)"),
    "dead_letter": (lambda v: v is None or (isinstance(v, str) and QUEUE_NAME.match(v) is not None),
                    "a queue name (letters, digits, '_' and '-') or null"),
    "umask": (fs.valid_umask, 'an octal string such as "007", an integer 0..511 (0o777), or null'),
}


def check(settings: Settings, source: str) -> None:
    """Raise ConfigError if a known key in ``settings`` has a value of the wrong type."""
    for key, value in settings.items():
        if key in _CHECKS:
            is_valid, expected = _CHECKS[key]
            if not is_valid(value):
                raise ConfigError("{}: setting '{}' must be {}, not {!r}".format(
                    source, key, expected, value), "config")


# The flat "key: integer|decimal|true|false|null|word|'octal'" files that
# ddmq writes are read and written without PyYAML, whose import alone costs
# about 14 ms, two thirds of an interpreter's start-up, on every CLI command;
# any other file goes through yaml.safe_load, which gives the same result for
# these lines (YAML 1.1: a leading 0 makes an integer octal; a quoted value
# is a string).  A word (a queue name such as a dead_letter) is a string,
# except the words YAML 1.1 reads as booleans or null, which are left to PyYAML.
_FLAT_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(?: +(0|[1-9][0-9]*|0[0-7]+"
                        r"|(?:0|[1-9][0-9]*)\.[0-9]+|'[0-7]+'|\"[0-7]+\""
                        r"|[A-Za-z][A-Za-z0-9_-]*))? *\Z")
_FLAT_WORDS: dict[Optional[str], Optional[bool]] = {
    "true": True, "false": False, "null": None, None: None}
_YAML_WORDS = frozenset(("y", "yes", "n", "no", "true", "false", "on", "off", "null"))
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)\.[0-9]+\Z")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_OCTAL_TEXT = re.compile(r"[0-7]+\Z")


def _parse_flat(text: str) -> Optional[Settings]:
    """Return the settings in ``text`` if every line is flat or a comment, else None."""
    data: Settings = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _FLAT_LINE.match(line)
        if not match:
            return None
        key, value = match.groups()
        if value in _FLAT_WORDS:
            data[key] = _FLAT_WORDS[value]
        elif value[0] in "'\"":
            data[key] = value[1:-1]
        elif value[0].isdigit():
            if "." in value:
                data[key] = float(value)
            else:
                data[key] = int(value, 8) if value[0] == "0" and len(value) > 1 else int(value)
        elif value.lower() in _YAML_WORDS:
            return None
        else:
            data[key] = value
    return data


def _dump_flat(settings: Settings) -> Optional[str]:
    """Return ``settings`` as flat YAML lines, or None if a value needs PyYAML."""
    lines = []
    for key in sorted(settings):
        value = settings[key]
        if not isinstance(key, str) or not _FLAT_LINE.match(key + ":"):
            return None
        if value is None or isinstance(value, bool):
            lines.append("{}: {}\n".format(key, {None: "null", True: "true", False: "false"}[value]))
        elif isinstance(value, int):
            lines.append("{}: {}\n".format(key, value))
        elif isinstance(value, float) and _DECIMAL.match(repr(value)):
            lines.append("{}: {!r}\n".format(key, value))
        elif isinstance(value, str) and _OCTAL_TEXT.match(value):
            lines.append("{}: '{}'\n".format(key, value))
        elif (isinstance(value, str) and _WORD.match(value)
              and value.lower() not in _YAML_WORDS):
            lines.append("{}: {}\n".format(key, value))
        else:
            return None
    return "".join(lines)


def read(path: str) -> Settings:
    """Return the settings in the YAML file at ``path`` (an empty file gives ``{}``)."""
    try:
        raw = retry_stale(_read_bytes, path)
    except FileNotFoundError:
        raise
    except PermissionError as exc:
        raise storage_error(exc, "read", path, [(path, "read")]) from None
    except OSError as exc:
        raise ConfigError("cannot read {}: {}".format(path, exc.strerror or exc), "config") from None
    data: object
    try:
        data = _parse_flat(raw.decode("utf-8"))
    except UnicodeDecodeError:
        data = None
    if data is None:
        data = _safe_load(raw, path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("{} must hold a mapping of settings, not {}".format(
            path, type(data).__name__), "config")
    check(data, path)
    return data


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _safe_load(raw: bytes, path: str) -> object:
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("{} is not valid YAML: {}".format(path, reason), "config") from None


def write(path: str, settings: Settings, umask: Optional[int] = None) -> None:
    """Replace the YAML file at ``path`` atomically, so readers see the old or the new file.

    ``umask`` is the ``umask`` setting that applies to the file's folder.
    """
    check(settings, path)
    text = _dump_flat(settings)
    if text is None:
        import yaml

        text = yaml.safe_dump(settings, default_flow_style=False)
    _replace(path, text, umask)


def read_cleaned(queue_dir: str) -> int:
    """Return when the queue was last cleaned (epoch seconds), 0 if its stamp is unreadable."""
    try:
        with open(os.path.join(queue_dir, CLEANED_NAME), "rb") as handle:
            return int(handle.read() or 0)
    except (OSError, ValueError):
        return 0  # at worst the queue is cleaned again, which is always safe


def write_cleaned(queue_dir: str, when: float, umask: Optional[int] = None) -> None:
    """Record that the queue was cleaned at epoch time ``when``."""
    _replace(os.path.join(queue_dir, CLEANED_NAME), "{}\n".format(int(when)), umask)


def _replace(path: str, text: str, umask: Optional[int]) -> None:
    # A hidden, unique temporary name: never mistaken for a message or a config.
    temp = os.path.join(os.path.dirname(path), ".{}.{}.tmp".format(CONFIG_NAME, os.urandom(8).hex()))
    try:
        fs.write_file(temp, text.encode("utf-8"), umask)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
