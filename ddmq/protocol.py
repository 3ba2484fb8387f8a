"""The claim protocol: every way a message moves between files and directories.

This module is the only code that creates, renames or removes message files;
the broker calls it for every state change.  The layout of one queue folder::

    <queue>/ddmq.yaml                                queue settings
    <queue>/<prio>.<qnum>.ddmq<id>                   READY    waiting to be consumed
    <queue>/work/<lease>.<prio>.<qnum>.ddmq<id>      CLAIMED  consumed, not yet acked
    <queue>/.tmp/<host>.<pid>.<random>.<n>           WRITING  private to one writer
    <queue>/.quarantine/<name>                       CORRUPT  unreadable, set aside

(name grammar: :mod:`ddmq.names`).  Each transition is ONE atomic namespace
operation, and every rename targets a name that no other process can choose:
ready names carry a fresh uuid, leases carry 9 random digits.  That rule is
what makes a rename an exclusive claim on a shared filesystem, where a client
with a stale cache can "successfully" rename a file that another client has
already moved to the very same name.

==========  ===================================  ============================
from        operation                            to / meaning
==========  ===================================  ============================
(new)       write WRITING, then rename it        READY (publish)
READY       rename into work/ with a new lease   CLAIMED (claim)
CLAIMED     rename to a new lease                CLAIMED (take over: nack,
                                                 clean, per-message timeout)
CLAIMED     unlink                               gone (ack, drop)
CLAIMED     write WRITING, rename it to a new    READY again (requeue), then
            READY name; then unlink CLAIMED      unlink the claimed file
CLAIMED     rename into .quarantine/             CORRUPT
READY       unlink                               gone (purge, delete)
==========  ===================================  ============================

Races (``RACE:`` below) are decided by the filesystem: of several processes
renaming or unlinking the same name, one succeeds and the others get ENOENT
(or ESTALE from a network filesystem); the losers move on.  A file is read
only after its claimant owns it, and a published file is complete before
its name appears, so a reader never sees a partial message.

Crashes leave at worst a redelivery: a writer killed mid-publish leaves only
a private ``.tmp`` file (removed by ``clean`` once stale); a claimant killed
before its ack leaves a CLAIMED file that expires and is requeued; a requeue
killed between its two steps leaves both the new READY file and the old
CLAIMED file, which later expires and is delivered once more.

Leases: a CLAIMED file's lease starts with its expiry in epoch seconds.  It
is expired when ``expiry + clock_skew < now``; ``now`` comes from the
broker's clock, one injectable function.  A process that takes over an
expired message first renames it to a fresh lease, so of several cleaners
exactly one requeues it.

Durability: with ``fsync`` the file is fsynced before it is renamed into
view, and the directories touched are fsynced after each move.  Without it,
a power loss may lose recent publishes and moves, never a process crash.
"""

import errno
import itertools
import os
import stat
import time

from . import names
from .errors import StorageError

WORK_DIR = "work"
TEMP_DIR = ".tmp"
QUARANTINE_DIR = ".quarantine"

# Hot paths (publish, claim, read, remove) build paths as "<dir>/<name>"
# (names never contain a separator): several times cheaper than
# os.path.join, which a consume would otherwise call a dozen times.

_READ_SIZE = 1 << 16      # bytes per read of a claimed message file
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK   # never follow, never block

# errno values that mean "another process got there first": the name is gone
# (ENOENT) or, on a network filesystem, our cached handle for it is (ESTALE).
_LOST_RACE = frozenset({errno.ENOENT, errno.ESTALE})
_STALE_RETRY_SECONDS = 2.0   # GlusterFS answered ESTALE for about 1 s after a replace

_writer_prefix = None
# next() of a count is atomic under the GIL: two threads never get one number.
_writer_count = itertools.count(1)


def retry_stale(func, *args):
    """Return ``func(path, ...)`` = ``func(*args)``, retrying a replaced name for up to 2 s.

    RACE: on a network filesystem a name that another client just replaced
    by a rename (a ddmq.yaml rewritten by a cleaner) can answer ESTALE, or
    ENOENT while a stat still finds it (a cached entry of the replaced
    file), for about a second (measured on GlusterFS); a fresh lookup then
    finds the new file.  Used where the name is expected to exist, never
    where ESTALE or ENOENT mean a lost race (a message someone else took).
    """
    delay, waited = 0.005, 0.0
    while True:
        try:
            return func(*args)
        except OSError as exc:
            if waited >= _STALE_RETRY_SECONDS:
                raise
            if exc.errno == errno.ENOENT:
                if not os.path.lexists(args[0]):
                    raise  # really missing
            elif exc.errno != errno.ESTALE:
                raise
        time.sleep(delay)
        waited += delay
        delay = min(2 * delay, 0.25)


def lost_race(exc):
    """Return True if the OSError ``exc`` means another process took the file first."""
    return exc.errno in _LOST_RACE


def storage_error(exc, action, path):
    """Return a StorageError that says which action on which path the filesystem refused."""
    return StorageError("cannot {} {}: {}".format(action, path, exc.strerror or exc), "io")


def _temp_name():
    # Unique across hosts, processes and threads; a forked child makes its own prefix.
    global _writer_prefix
    if _writer_prefix is None:
        # os.uname() rather than socket.gethostname(): the same name, and
        # importing socket costs every `ddmq` command about 2 ms.
        _writer_prefix = "{}.{}.{}".format(os.uname().nodename.replace(".", "_"), os.getpid(),
                                           os.urandom(4).hex())
    return "{}.{}".format(_writer_prefix, next(_writer_count))


def _forget_writer_prefix():
    global _writer_prefix
    _writer_prefix = None


os.register_at_fork(after_in_child=_forget_writer_prefix)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(queue_dir, data, fsync):
    """Write ``data`` to a new private file in ``.tmp/`` and return its path."""
    temp_dir = queue_dir + "/" + TEMP_DIR
    path = temp_dir + "/" + _temp_name()
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            # A queue made by the original ddmq has no .tmp/ yet.  Never
            # makedirs: a queue folder (or root) removed meanwhile must stay gone.
            _make_dir(temp_dir)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise storage_error(exc, "create a message file in", temp_dir) from None
    try:
        try:
            written = os.write(fd, data)
            if written < len(data):  # a short write: rare, but legal
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        _unlink_quietly(path)
        raise storage_error(exc, "write", path) from None
    return path


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def publish(queue_dir, ready, data, fsync=False):
    """Make ``data`` visible as the waiting message ``ready``: WRITING -> READY."""
    temp = _write_temp(queue_dir, data, fsync)
    destination = queue_dir + "/" + ready
    try:
        os.rename(temp, destination)
    except OSError as exc:
        # RACE: on NFS a retransmitted rename can report ENOENT although the
        # first attempt succeeded; the ready name is ours alone, so if it
        # exists the message is published (reporting an error would make the
        # caller publish it twice).
        if not (lost_race(exc) and os.path.lexists(destination)):
            _unlink_quietly(temp)
            raise storage_error(exc, "publish into", queue_dir) from None
    if fsync:
        _fsync_dir(queue_dir)


def claim(queue_dir, ready, expiry, fsync=False):
    """Claim the waiting message ``ready``: READY -> CLAIMED.

    Return the claimed file's name in ``work/``, or None if another process
    claimed it first.
    """
    work = names.work_name(names.new_lease(expiry), ready)
    return work if _move(queue_dir + "/" + ready,
                         "{}/{}/{}".format(queue_dir, WORK_DIR, work), fsync) else None


def take_over(queue_dir, work, expiry, fsync=False):
    """Give the claimed message ``work`` a new lease: CLAIMED -> CLAIMED.

    Return the new name, or None if another process took it first (acked,
    requeued or took it over).  Whoever gets the new name owns the message.
    """
    new = names.work_name(names.new_lease(expiry), names.parse_work_name(work)[1])
    work_dir = os.path.join(queue_dir, WORK_DIR)
    return new if _move(os.path.join(work_dir, work), os.path.join(work_dir, new), fsync) else None


def _move(source, destination, fsync):
    """Rename ``source`` to our own unique ``destination``; False if we lost the race."""
    try:
        os.rename(source, destination)
    except OSError as exc:
        if not lost_race(exc):
            raise storage_error(exc, "move", source) from None
        # RACE: on NFS a retransmitted rename can report ENOENT although the
        # first attempt succeeded; the destination is ours alone, so if it
        # exists, the claim is ours.
        if not os.path.lexists(destination):
            return False
    if fsync:
        _fsync_dir(os.path.dirname(destination))
        if os.path.dirname(source) != os.path.dirname(destination):
            _fsync_dir(os.path.dirname(source))
    return True


def read_claimed(queue_dir, work):
    """Return the bytes of the claimed message ``work``; raise FileNotFoundError if it is gone.

    A foreign entry with a message's name that is not a regular file (folder,
    symlink, FIFO, device) reads as empty, so it is quarantined as corrupt:
    a symlink is never followed and a FIFO never blocks the reader.
    """
    path = "{}/{}/{}".format(queue_dir, WORK_DIR, work)
    try:
        fd = os.open(path, _READ_FLAGS)
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                return b""
            # Plain reads: cheaper than a buffered file object.  A published
            # file never changes, so one read of its size (plus one byte, to
            # see the end) is the usual case; anything else reads to the end.
            data = os.read(fd, status.st_size + 1)
            if len(data) == status.st_size:
                return data
            chunks = [data]
            while chunks[-1]:
                chunks.append(os.read(fd, _READ_SIZE))
        finally:
            os.close(fd)
        return chunks[0] if len(chunks) == 2 else b"".join(chunks)
    except OSError as exc:
        if lost_race(exc):
            raise FileNotFoundError(errno.ENOENT, "claimed message is gone", path) from None
        if exc.errno == errno.ELOOP:
            return b""  # a symlink with a message's name
        raise storage_error(exc, "read", path) from None


def remove(directory, name, fsync=False):
    """Unlink a message file: CLAIMED or READY -> gone.  False if it was already gone."""
    path = directory + "/" + name
    try:
        os.unlink(path)
    except OSError as exc:
        if lost_race(exc):
            return False  # RACE: acked, requeued or purged by another process
        raise storage_error(exc, "remove", path) from None
    if fsync:
        _fsync_dir(directory)
    return True


def requeue(queue_dir, work, ready, data, fsync=False):
    """Put the owned claimed message ``work`` back as ``ready`` with new contents.

    CLAIMED -> READY: the new file is published first and the claimed file
    removed second, so a crash in between duplicates, never loses.
    """
    publish(queue_dir, ready, data, fsync)
    remove(os.path.join(queue_dir, WORK_DIR), work, fsync)


def quarantine(queue_dir, work, fsync=False):
    """Move the owned, unreadable claimed message ``work`` aside: CLAIMED -> CORRUPT."""
    target_dir = os.path.join(queue_dir, QUARANTINE_DIR)
    source = os.path.join(queue_dir, WORK_DIR, work)
    try:
        if not os.path.isdir(target_dir):
            _make_dir(target_dir)
        os.rename(source, os.path.join(target_dir, work))
    except OSError as exc:
        if not lost_race(exc):
            raise storage_error(exc, "quarantine", source) from None
    if fsync:
        _fsync_dir(target_dir)
        _fsync_dir(os.path.dirname(source))
    return os.path.join(target_dir, work)


def _make_dir(path):
    """Create the folder ``path`` (not its parents); another process may have made it first."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass  # RACE: made by another process at the same moment


def remove_stale_temp_files(queue_dir, older_than):
    """Remove WRITING files last modified before epoch time ``older_than`` (dead writers')."""
    temp_dir = os.path.join(queue_dir, TEMP_DIR)
    removed = 0
    try:
        entries = list(os.scandir(temp_dir))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_mtime < older_than:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass  # RACE: its writer finished, or another cleaner removed it
    return removed
