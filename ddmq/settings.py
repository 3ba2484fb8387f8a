"""Settings: the defaults and the ``ddmq.yaml`` files of the cascade.

The settings of a queue are the defaults below, overridden by the root's
``ddmq.yaml``, overridden by the queue's ``ddmq.yaml``; a message's own
fields (``timeout``, ``requeue``, ``requeue_prio``, ``requeue_limit``)
override all of them for that message.  YAML is read with ``yaml.safe_load``
only, and every known key is type-checked, so a malformed or hostile file is
a :class:`~ddmq.errors.ConfigError` that names the file.
"""

import numbers
import os
import re

from . import fs
from .errors import ConfigError
from .protocol import retry_stale, storage_error

#: The defaults at the bottom of the cascade, with the meaning of each key.
DEFAULTS = {
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
    "umask": None,            # bits new files/folders must lack, e.g. "007"; None: process umask
}

CONFIG_NAME = "ddmq.yaml"
# The "cleaned" stamp has a file of its own: rewriting ddmq.yaml once a minute
# could undo a settings change made at the same moment (on a network
# filesystem, another host reads the old file for about a second).
CLEANED_NAME = ".ddmq.yaml.cleaned"


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# One check per key, with what the error message says the value must be.
_CHECKS = {
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
    "umask": (fs.valid_umask, 'an octal string such as "007", an integer 0..511 (0o777), or null'),
}


def check(settings, source):
    """Raise ConfigError if a known key in ``settings`` has a value of the wrong type."""
    for key, value in settings.items():
        if key in _CHECKS:
            is_valid, expected = _CHECKS[key]
            if not is_valid(value):
                raise ConfigError("{}: setting '{}' must be {}, not {!r}".format(
                    source, key, expected, value), "config")


# The flat "key: integer|true|false|null|'octal'" files that ddmq writes are
# read and written without PyYAML, whose import alone costs about 14 ms, two
# thirds of an interpreter's start-up, on every CLI command; any other file
# goes through yaml.safe_load, which gives the same result for these lines
# (YAML 1.1: a leading 0 makes an integer octal; a quoted value is a string).
_FLAT_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):"
                        r"(?: +(0|[1-9][0-9]*|0[0-7]+|true|false|null|'[0-7]+'|\"[0-7]+\"))? *\Z")
_FLAT_WORDS = {"true": True, "false": False, "null": None, None: None}
_OCTAL_TEXT = re.compile(r"[0-7]+\Z")


def _flat_value(text):
    if text in _FLAT_WORDS:
        return _FLAT_WORDS[text]
    if text[0] in "'\"":
        return text[1:-1]
    return int(text, 8) if text[0] == "0" and len(text) > 1 else int(text)


def _parse_flat(text):
    """Return the settings in ``text`` if every line is flat or a comment, else None."""
    data = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _FLAT_LINE.match(line)
        if not match:
            return None
        key, value = match.groups()
        data[key] = _flat_value(value)
    return data


def _dump_flat(settings):
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
        elif isinstance(value, str) and _OCTAL_TEXT.match(value):
            lines.append("{}: '{}'\n".format(key, value))
        else:
            return None
    return "".join(lines)


def read(path):
    """Return the settings in the YAML file at ``path`` (an empty file gives ``{}``)."""
    try:
        raw = retry_stale(_read_bytes, path)
    except FileNotFoundError:
        raise
    except PermissionError as exc:
        raise storage_error(exc, "read", path, [(path, "read")]) from None
    except OSError as exc:
        raise ConfigError("cannot read {}: {}".format(path, exc.strerror or exc), "config") from None
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


def _read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def _safe_load(raw, path):
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("{} is not valid YAML: {}".format(path, reason), "config") from None


def write(path, settings, umask=None):
    """Replace the YAML file at ``path`` atomically, so readers see the old or the new file.

    ``umask`` is the ``umask`` setting that applies to the file's folder.
    """
    check(settings, path)
    text = _dump_flat(settings)
    if text is None:
        import yaml

        text = yaml.safe_dump(settings, default_flow_style=False)
    _replace(path, text, umask)


def read_cleaned(queue_dir):
    """Return when the queue was last cleaned (epoch seconds), 0 if its stamp is unreadable."""
    try:
        with open(os.path.join(queue_dir, CLEANED_NAME), "rb") as handle:
            return int(handle.read() or 0)
    except (OSError, ValueError):
        return 0  # at worst the queue is cleaned again, which is always safe


def write_cleaned(queue_dir, when, umask=None):
    """Record that the queue was cleaned at epoch time ``when``."""
    _replace(os.path.join(queue_dir, CLEANED_NAME), "{}\n".format(int(when)), umask)


def _replace(path, text, umask):
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
