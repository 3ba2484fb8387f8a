"""File modes: how every file and folder ddmq creates gets its permissions.

A root's (or queue's) ``umask`` setting says which permission bits the files
and folders ddmq creates there must NOT have, as a process umask would:
``umask: "007"`` gives files ``rw-rw----`` and folders ``rwxrwx---``, so a
Unix group can share a queue that nobody else can read.  The process's own
umask is never changed (that would affect every thread): each creator here
asks for the setting's mode, and where the process umask removed more bits
than the setting does, puts them back with one ``fchmod``/``chmod``.
Without the setting (``umask`` None) files and folders are created exactly
as before it existed, with no extra system call.

A new folder keeps the setgid bit the kernel gives it in a setgid parent
(so it keeps the parent's group, and hands it down in turn): the chmod here
never clears it.

Every function that creates a file or folder in a root goes through this
module, so the mode logic lives in one place.
"""

from __future__ import annotations

import os
import stat

from .errors import PermissionDeniedError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Literal, Optional, Sequence, Union

    #: What an action needs of a path: see :func:`permission_error`.
    Need = Literal["read", "write", "search"]
    #: The permissions an action needs, as (path, need) pairs.
    Checks = Sequence[tuple[str, Need]]

FILE_BASE = 0o666    # the mode a umask is taken from, for files (as open() does)
DIR_BASE = 0o777     # ... and for folders (as mkdir does)
MAX_UMASK = 0o777

#: Flags of a new private file: created by us or not at all.
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def parse_umask(value: Union[int, str, None]) -> Optional[int]:
    """Return the ``umask`` setting ``value`` (None, an int, or an octal string) as an int or None.

    The value is assumed checked (:func:`valid_umask`).
    """
    if value is None:
        return None
    return int(value, 8) if isinstance(value, str) else int(value)


def valid_umask(value: object) -> bool:
    """Return True if ``value`` is a valid ``umask`` setting: None, 0..0o777, or "007"-like."""
    if value is None:
        return True
    if isinstance(value, str):
        return 1 <= len(value) <= 4 and all(c in "01234567" for c in value) \
            and int(value, 8) <= MAX_UMASK
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_UMASK


def file_mode(umask: Optional[int], default: int = 0o644) -> int:
    """Return the mode to create a file with: ``default`` without a setting, else 0o666 & ~umask."""
    return default if umask is None else FILE_BASE & ~umask


def dir_mode(umask: Optional[int]) -> int:
    """Return the mode to create a folder with: 0o777 without a setting, else 0o777 & ~umask."""
    return DIR_BASE if umask is None else DIR_BASE & ~umask


def open_file(path: str, umask: Optional[int], flags: int = NEW_FILE, default: int = 0o644) -> int:
    """Open (usually create) the file ``path`` for writing, with the ``umask`` setting's mode.

    Returns the file descriptor.  ``default`` is the mode without a setting
    (the mode that file always had).  A file that already existed and
    belongs to another user is left as it is.
    """
    mode = file_mode(umask, default)
    fd = os.open(path, flags, mode)
    if umask is not None:
        try:
            _fix_fd(fd, mode)
        except BaseException:
            os.close(fd)
            raise
    return fd


def _fix_fd(fd: int, mode: int) -> None:
    status = os.fstat(fd)
    # The process umask may have removed bits the setting grants.
    if stat.S_IMODE(status.st_mode) != mode and status.st_uid == os.geteuid():
        os.fchmod(fd, mode)


def write_file(path: str, data: bytes, umask: Optional[int], default: int = 0o666) -> None:
    """Create the new file ``path`` holding the bytes ``data`` (FileExistsError if it exists)."""
    fd = open_file(path, umask, NEW_FILE, default)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def make_dir(path: str, umask: Optional[int]) -> None:
    """Create the folder ``path`` (not its parents) with the mode the ``umask`` setting gives.

    Raises FileExistsError if it exists (then it is left as it is).
    """
    mode = dir_mode(umask)
    os.mkdir(path, mode)
    if umask is not None:
        status = os.lstat(path)
        # Keep the setgid bit a setgid parent gave it: its group is the parent's.
        wanted = mode | (stat.S_IMODE(status.st_mode) & stat.S_ISGID)
        if stat.S_IMODE(status.st_mode) != wanted:
            os.chmod(path, wanted)


def make_dirs(path: str, umask: Optional[int]) -> None:
    """Create the folder ``path`` and its missing parents, each as :func:`make_dir` does."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path and not os.path.isdir(parent):
        make_dirs(parent, umask)
    try:
        make_dir(path, umask)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


# Permission errors: say which folder or file refused what, and who we are.

def permission_error(exc: Exception, action: str, path: str,
                     checks: Checks) -> PermissionDeniedError:
    """Return a PermissionDeniedError for the refused ``action`` on ``path``.

    ``exc`` is the OSError (or the ddmq error that reported one).
    ``checks`` lists what the action needs, as (path, need) pairs, need
    being "read", "write" (a folder: to create, rename or remove entries in
    it) or "search".  The message names the first folder on the way that we
    may not enter, or else the first path that lacks the permission needed,
    with its owner, group and mode and the user we run as.
    """
    found = None
    for checked, need in checks:
        found = _missing_permission(checked, need)
        if found is not None:
            break
    if found is None:  # the mode bits allow it: an ACL, root squash, a read-only export ...
        detail = "refused by the filesystem although the mode bits allow it ({})".format(
            _whoami())
    else:
        culprit, missing = found
        detail = "no {} permission on {} ({}; {})".format(missing, culprit, _describe(culprit),
                                                         _whoami())
    return PermissionDeniedError("cannot {} {}: {}: {}".format(
        action, path, getattr(exc, "strerror", None) or "Permission denied", detail), "permission")


_ACCESS = {"read": os.R_OK, "write": os.W_OK | os.X_OK, "search": os.X_OK}


def _missing_permission(path: str, need: Need) -> Optional[tuple[str, str]]:
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    for end in range(1, len(parts)):
        folder = os.sep.join(parts[:end]) or os.sep
        if not _may(folder, os.X_OK):
            return folder, "search (x)"
    if not _may(path, _ACCESS[need]):
        return path, {"read": "read (r)", "write": "write (w)", "search": "search (x)"}[need]
    return None


def _may(path: str, mode: int) -> bool:
    try:
        return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)
    except OSError:
        return False


def _describe(path: str) -> str:
    try:
        status = os.stat(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    return "owner {}, group {}, mode {}".format(_user_name(status.st_uid),
                                                _group_name(status.st_gid),
                                                stat.filemode(status.st_mode))


def _whoami() -> str:
    groups = sorted({os.getegid(), *os.getgroups()})
    return "you are {} in groups {}".format(_user_name(os.geteuid()),
                                            ",".join(_group_name(g) for g in groups))


def _user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):  # no such user, or no pwd module to ask
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)
