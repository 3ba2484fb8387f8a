"""Queue administration: create, list, purge and delete the folders of a root.

A queue is a folder of the root holding a ``ddmq.yaml`` and a ``work/``
folder (:func:`is_queue_dir`); its messages are removed one by one through
:func:`ddmq.protocol.remove`, so a purge racing a consumer removes each
file once and counts what it removed.  Deleting a queue refuses, changing
nothing, if its folder holds files ddmq did not write: the folder may be
the wrong one, and a user's own files are never ddmq's to remove.
"""

from __future__ import annotations

import json
import os
import stat

from . import fs, names, protocol, settings
from .errors import DdmqError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    import re
    from typing import Callable, Iterator, Optional

#: A new root's ddmq.yaml: every setting, commented out, with its default and meaning.
ROOT_CONFIG_TEXT = "".join(
    ["# ddmq root settings: they override the defaults for every queue in this root.\n",
     "# Uncomment a line to change it; a queue's own ddmq.yaml overrides this file.\n"]
    + ["# {}: {}    # {}\n".format(key, "null" if value is None else json.dumps(value),
                                   settings.MEANINGS.get(key, ""))
       for key, value in settings.DEFAULTS.items() if key != "cleaned"])
#: A new queue's ddmq.yaml.
QUEUE_CONFIG_TEXT = ("# ddmq queue settings: they override the root's ddmq.yaml for this queue.\n"
                     "# See the root's ddmq.yaml for the keys.\n")

# What ddmq itself writes into a queue folder, besides message files.
_KNOWN = frozenset({settings.CONFIG_NAME, protocol.WORK_DIR, protocol.TEMP_DIR,
                    protocol.QUARANTINE_DIR, protocol.DELAYED_DIR, protocol.DUE_DIR})
# Emptied and removed by delete_queue, after the purge.
_SCRATCH = (protocol.TEMP_DIR, protocol.QUARANTINE_DIR, protocol.DELAYED_DIR, protocol.DUE_DIR)


def make_folder(path: str, umask: Optional[int]) -> None:
    """Create the folder ``path`` and its parents (an existing folder is fine).

    New folders get the mode ``umask`` allows (None: the process's umask).
    """
    try:
        fs.make_dirs(path, umask)
    except OSError as exc:
        raise protocol.storage_error(exc, "create folder", path,
                                     [(_existing_parent(path), "write")]) from None


def write_new_config(path: str, text: str, umask: Optional[int]) -> None:
    """Create the settings file ``path`` holding ``text``, unless it exists already."""
    try:
        fs.write_file(path, text.encode("utf-8"), umask)
    except FileExistsError:
        pass  # RACE: already initiated, perhaps by another process this very moment
    except OSError as exc:
        raise protocol.storage_error(exc, "create", path,
                                     [(os.path.dirname(path), "write")]) from None


def is_queue_dir(path: str, only_conf: bool = False) -> bool:
    """Return True if ``path`` holds a ddmq.yaml (and, unless ``only_conf``, a work folder)."""
    if not is_kind(os.path.join(path, settings.CONFIG_NAME), stat.S_ISREG):
        return False
    return only_conf or is_kind(os.path.join(path, protocol.WORK_DIR), stat.S_ISDIR)


def is_kind(path: str, test: Callable[[int], bool]) -> bool:
    """Return True if ``path`` exists and ``test(st_mode)`` holds (ESTALE retried, not "missing")."""
    try:
        return test(protocol.retry_stale(os.stat, path).st_mode)
    except (OSError, ValueError):
        return False


def list_queues(root: str) -> list[str]:
    """Return the sorted names of the queues in ``root``."""
    return sorted(name for name in protocol.list_folder(root)
                  if names.QUEUE_NAME.match(name) and is_queue_dir(os.path.join(root, name)))


def create_queue(queue_dir: str, umask: Optional[int]) -> None:
    """Create the folders and the ddmq.yaml of a queue (what exists already is kept)."""
    for folder in (protocol.WORK_DIR, protocol.TEMP_DIR):
        make_folder(os.path.join(queue_dir, folder), umask)
    write_new_config(os.path.join(queue_dir, settings.CONFIG_NAME), QUEUE_CONFIG_TEXT, umask)


def purge_queue(queue_dir: str) -> list[int]:
    """Delete every message in ``queue_dir``; return [waiting deleted, claimed deleted].

    Delayed messages are counted as waiting.
    """
    def remove_all(folder: str, pattern: re.Pattern[str]) -> int:
        return sum(protocol.remove(folder, name)
                   for name in protocol.list_folder(folder) if pattern.match(name))

    waiting = remove_all(queue_dir, names.READY_NAME)
    claimed = remove_all(queue_dir + "/" + protocol.WORK_DIR, names.WORK_NAME)
    waiting += remove_all(queue_dir + "/" + protocol.DELAYED_DIR, names.DELAYED_NAME)
    return [waiting, claimed]


def delete_queue(queue: str, queue_dir: str, root: str) -> None:
    """Delete the queue folder ``queue_dir`` and everything ddmq wrote in it.

    Raises DdmqError (code ``not_empty``), changing nothing, if the folder
    holds files ddmq did not write.
    """
    foreign = sorted(foreign_entries(queue_dir))
    if foreign:
        raise DdmqError("not deleting queue {!r}: {} holds files ddmq did not write: {}".format(
            queue, queue_dir, ", ".join(foreign[:5])), "not_empty")
    purge_queue(queue_dir)
    try:
        for folder in _SCRATCH:
            path = queue_dir + "/" + folder
            for name in protocol.list_folder(path):
                protocol.remove(path, name)  # half-written, corrupt or just-delayed files
            if os.path.isdir(path):
                os.rmdir(path)
        os.rmdir(queue_dir + "/" + protocol.WORK_DIR)
        if os.path.exists(queue_dir + "/" + settings.CLEANED_NAME):
            os.unlink(queue_dir + "/" + settings.CLEANED_NAME)
        os.unlink(queue_dir + "/" + settings.CONFIG_NAME)
        os.rmdir(queue_dir)
    except OSError as exc:
        raise protocol.storage_error(exc, "delete queue folder", queue_dir,
                                     [(root, "write"), (queue_dir, "write")]) from None


def foreign_entries(queue_dir: str) -> Iterator[str]:
    """Yield the entries of a queue folder that ddmq did not write (paths relative to it)."""
    for name in protocol.list_folder(queue_dir):
        if name not in _KNOWN and not names.READY_NAME.match(name) \
                and not name.startswith("." + settings.CONFIG_NAME):
            yield name
    for name in protocol.list_folder(queue_dir + "/" + protocol.WORK_DIR):
        if not names.WORK_NAME.match(name):
            yield protocol.WORK_DIR + "/" + name
    for name in protocol.list_folder(queue_dir + "/" + protocol.DELAYED_DIR):
        if not names.DELAYED_NAME.match(name):
            yield protocol.DELAYED_DIR + "/" + name


def _existing_parent(path: str) -> str:
    """Return the nearest folder above ``path`` that exists (where a mkdir was refused)."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    return parent
