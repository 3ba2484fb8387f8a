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
import uuid

from .errors import ConfigError

#: The defaults at the bottom of the cascade, with the meaning of each key.
DEFAULTS = {
    "cleaned": 0,             # epoch time the queue was last cleaned
    "message_timeout": 600,   # seconds a consumed message may stay unacked before it expires
    "priority": 999,          # priority of published messages; lower number = served first
    "requeue": True,          # requeue nacked and expired messages (False: delete them)
    "requeue_prio": 0,        # priority a requeued message gets; 0 is the top priority
    "requeue_limit": None,    # times a message may be requeued; None = no limit
    "fsync": False,           # fsync files and directories so a publish survives power loss
    "clock_skew": 0,          # seconds other hosts' clocks may be behind ours (lease tolerance)
}

CONFIG_NAME = "ddmq.yaml"


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
}


def check(settings, source):
    """Raise ConfigError if a known key in ``settings`` has a value of the wrong type."""
    for key, value in settings.items():
        if key in _CHECKS:
            is_valid, expected = _CHECKS[key]
            if not is_valid(value):
                raise ConfigError("{}: setting '{}' must be {}, not {!r}".format(
                    source, key, expected, value), "config")


def read(path):
    """Return the settings in the YAML file at ``path`` (an empty file gives ``{}``)."""
    import yaml  # imported here: commands that never read settings start faster

    try:
        with open(path, "rb") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError("cannot read {}: {}".format(path, exc.strerror or exc), "config") from None
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("{} is not valid YAML: {}".format(path, reason), "config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("{} must hold a mapping of settings, not {}".format(
            path, type(data).__name__), "config")
    check(data, path)
    return data


def write(path, settings):
    """Replace the YAML file at ``path`` atomically, so readers see the old or the new file."""
    import yaml

    check(settings, path)
    # A hidden, unique temporary name: never mistaken for a message or a config.
    temp = os.path.join(os.path.dirname(path), ".{}.{}.tmp".format(CONFIG_NAME, uuid.uuid4().hex))
    try:
        with open(temp, "w") as handle:
            handle.write(yaml.safe_dump(settings, default_flow_style=False))
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
