"""The claim protocol: every way a message moves between files and directories.

This module is the only code that creates, renames or removes message files;
the broker calls it for every state change.  The layout of one queue folder::

    <queue>/ddmq.yaml                                queue settings
    <queue>/<prio>.<qnum>.ddmq<id>                   READY    waiting to be consumed
    <queue>/work/<lease>.<prio>.<qnum>.ddmq<id>      CLAIMED  consumed, not yet acked
    <queue>/.tmp/<host>.<pid>.<random>.<n>           WRITING  private to one writer
    <queue>/.quarantine/<name>                       CORRUPT  unreadable, set aside
    <queue>/delayed/<due><nonce>.<prio>.<qnum>.ddmq<id>
                                                     DELAYED  not to be served before due;
                                                     PROMOTING when "due" is a promoter's lease
    <queue>/.due/<minute>                            (marker) some delayed name is due in
                                                     that minute; made before the name

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
CLAIMED     write WRITING in another queue,      READY there (dead-letter move,
            rename it to a READY name there;     redrive: ``move``), then
            then unlink CLAIMED                  unlink the claimed file
(new)       write WRITING, then rename it into   DELAYED (publish with a delay)
            delayed/
CLAIMED     write WRITING, rename it into        DELAYED (requeue with a retry
            delayed/; then unlink CLAIMED        delay), then unlink CLAIMED
DELAYED     (due) rename within delayed/ to a    PROMOTING, owned by one promoter
            name with our lease as due time
PROMOTING   rename to a fresh READY name         READY (promotion)
DELAYED     unlink                               gone (purge, delete)
CLAIMED     rename into .quarantine/             CORRUPT
CLAIMED     rename back to the lease it had      CLAIMED (take back: a requeue
                                                 was refused; as before)
CLAIMED     rename back to its READY name        READY (release: the claimant
                                                 may not read the file)
(new)       write WRITING once, hard-link it     READY in each subscribed queue
            to a fresh READY name in each        (publish to a topic:
            subscribed queue but the last,       ``publish_linked``); a queue
            rename it into the last; a copy      whose link fails gets a copy
            (WRITING, rename) where links fail
(none)      create ``.topics/<topic>/<queue>``   SUBSCRIBED (subscribe);
            with O_EXCL; unlink it               not subscribed (unsubscribe)
READY       unlink                               gone (purge, delete)
READY       read in place (peek)                 READY (nothing changes)
==========  ===================================  ============================

Subscriptions (:mod:`ddmq.topics`) are not message files but one empty
file each, ``<root>/.topics/<topic>/<queue>``, created and removed by that
module with the one operation of the table's row; a READY file published
to a topic may be one inode with several names (one per queue): every
later transition renames or unlinks one name, never changes the file, so a
copy's claim, ack or requeue never touches another queue's copy.

Races (``RACE:`` below) are decided by the filesystem: of several processes
renaming or unlinking the same name, one succeeds and the others get ENOENT
(or ESTALE from a network filesystem); the losers move on.  A file is read
only after its claimant owns it (or, by a peek, in place, without claiming
it), and a published file is complete before its name appears, so a reader
never sees a partial message.

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

from __future__ import annotations

import errno
import itertools
import os
import stat
import time

from . import fs, names
from .errors import StorageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Callable, Container, Optional, Sequence, TypeVar

    from typing_extensions import TypeVarTuple, Unpack   # typing's own from Python 3.11

    from .fs import Checks

    T = TypeVar("T")
    Ts = TypeVarTuple("Ts")

WORK_DIR = "work"
TEMP_DIR = ".tmp"
QUARANTINE_DIR = ".quarantine"
DELAYED_DIR = "delayed"
DUE_DIR = ".due"
MARK_SECONDS = 60     # one due marker per minute that holds a due time

# Hot paths (publish, claim, read, remove) build paths as "<dir>/<name>"
# (names never contain a separator): several times cheaper than
# os.path.join, which a consume would otherwise call a dozen times.

_READ_SIZE = 1 << 16      # bytes per read of a message file
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK   # never follow, never block

# errno values that mean "another process got there first": the name is gone
# (ENOENT) or, on a network filesystem, our cached handle for it is (ESTALE).
_LOST_RACE = frozenset({errno.ENOENT, errno.ESTALE})
_STALE_RETRY_SECONDS = 2.0   # GlusterFS answered ESTALE for about 1 s after a replace

_writer_prefix: Optional[str] = None
# next() of a count is atomic under the GIL: two threads never get one number.
_writer_count = itertools.count(1)


def retry_stale(func: Callable[[str, Unpack[Ts]], T], *args: Unpack[tuple[str, Unpack[Ts]]]) -> T:
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


def list_folder(path: str) -> list[str]:
    """Return the names in the folder ``path`` ([] if it is missing); StorageError if unreadable."""
    try:
        return retry_stale(os.listdir, path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise storage_error(exc, "list", path, [(path, "read")]) from None


def lost_race(exc: OSError) -> bool:
    """Return True if the OSError ``exc`` means another process took the file first."""
    return exc.errno in _LOST_RACE


_DENIED = frozenset({errno.EACCES, errno.EPERM})


def storage_error(exc: OSError, action: str, path: str, checks: Checks = ()) -> StorageError:
    """Return a StorageError that says which action on which path the filesystem refused.

    A refused permission is a :class:`~ddmq.errors.PermissionDeniedError`
    that names the folder or file lacking it: ``checks`` lists what
    ``action`` needs, as (path, "read" | "write" | "search") pairs; by
    default, write permission on ``path``.
    """
    if exc.errno in _DENIED:
        return fs.permission_error(exc, action, path, checks or [(path, "write")])
    return StorageError("cannot {} {}: {}".format(action, path, exc.strerror or exc), "io")


def _temp_name() -> str:
    # Unique across hosts, processes and threads; a forked child makes its own prefix.
    global _writer_prefix
    if _writer_prefix is None:
        # os.uname() rather than socket.gethostname(): the same name, and
        # importing socket costs every `ddmq` command about 2 ms.
        _writer_prefix = "{}.{}.{}".format(os.uname().nodename.replace(".", "_"), os.getpid(),
                                           os.urandom(4).hex())
    return "{}.{}".format(_writer_prefix, next(_writer_count))


def _forget_writer_prefix() -> None:
    global _writer_prefix
    _writer_prefix = None


os.register_at_fork(after_in_child=_forget_writer_prefix)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(queue_dir: str, data: bytes, fsync: bool, umask: Optional[int]) -> str:
    """Write ``data`` to a new private file in ``.tmp/`` and return its path."""
    temp_dir = queue_dir + "/" + TEMP_DIR
    path = temp_dir + "/" + _temp_name()
    try:
        try:
            if umask is None:  # the hot path: no mode to fix up
                fd = os.open(path, fs.NEW_FILE, 0o644)
            else:
                fd = fs.open_file(path, umask)
        except FileNotFoundError:
            # A queue made by the original ddmq has no .tmp/ yet.  Never
            # makedirs: a queue folder (or root) removed meanwhile must stay gone.
            _make_dir(temp_dir, umask)
            fd = fs.open_file(path, umask)
    except OSError as exc:
        raise storage_error(exc, "create a message file in", temp_dir,
                            [(temp_dir, "write"), (queue_dir, "write")]) from None
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


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def publish(queue_dir: str, ready: str, data: bytes, fsync: bool = False,
            umask: Optional[int] = None) -> None:
    """Make ``data`` visible as the waiting message ``ready``: WRITING -> READY.

    ``umask`` is the queue's ``umask`` setting (None: the process's own).
    """
    temp = _write_temp(queue_dir, data, fsync, umask)
    _rename_into_view(temp, queue_dir + "/" + ready, "publish into", queue_dir,
                      [(queue_dir, "write"), (queue_dir + "/" + TEMP_DIR, "write")])
    if fsync:
        _fsync_dir(queue_dir)


def _rename_into_view(temp: str, destination: str, action: str, folder: str,
                      checks: Checks = ()) -> None:
    """Rename our complete WRITING file ``temp`` to its unique ``destination``.

    On failure the temp file is removed and a StorageError raised (saying
    ``action`` on ``folder``; ``checks`` are the permissions to diagnose).
    """
    try:
        os.rename(temp, destination)
    except OSError as exc:
        # RACE: on NFS a retransmitted rename can report ENOENT although the
        # first attempt succeeded; the destination is ours alone, so if it
        # exists the message is visible (reporting an error would make the
        # caller publish it twice).
        if not (lost_race(exc) and os.path.lexists(destination)):
            _unlink_quietly(temp)
            raise storage_error(exc, action, folder, checks) from None


def mark_due(queue_dir: str, due: float, umask: Optional[int] = None) -> None:
    """Make sure ``.due/`` holds the marker of the minute of epoch second ``due``.

    Markers are empty files named by the first second of a minute in which
    some delayed name is due: consumers list this small folder instead of
    ``delayed/`` to learn the earliest due time (see :mod:`ddmq.delayed`).
    Every name is marked before it appears in ``delayed/``.
    """
    folder = queue_dir + "/" + DUE_DIR
    path = "{}/{:010d}".format(folder, int(due) // MARK_SECONDS * MARK_SECONDS)
    if os.path.lexists(path):
        return
    try:
        try:
            os.close(fs.open_file(path, umask, os.O_WRONLY | os.O_CREAT))
        except FileNotFoundError:
            _make_dir(folder, umask)
            os.close(fs.open_file(path, umask, os.O_WRONLY | os.O_CREAT))
    except OSError as exc:
        raise storage_error(exc, "mark a due time in", folder) from None


def remove_due_marks(queue_dir: str, keep: Container[int], older_than: float) -> None:
    """Remove the markers of minutes ending before ``older_than`` that are not in ``keep``."""
    folder = queue_dir + "/" + DUE_DIR
    try:
        marks = os.listdir(folder)
    except OSError:
        return
    for mark in marks:
        if mark.isdigit() and int(mark) + MARK_SECONDS < older_than and int(mark) not in keep:
            _unlink_quietly(folder + "/" + mark)  # RACE: another cleaner removed it too


def delay(queue_dir: str, delayed: str, data: bytes, fsync: bool = False,
          umask: Optional[int] = None) -> None:
    """Make ``data`` a delayed message named ``delayed``: WRITING -> DELAYED."""
    mark_due(queue_dir, int(delayed[:names.SECONDS_DIGITS]), umask)
    temp = _write_temp(queue_dir, data, fsync, umask)
    folder = queue_dir + "/" + DELAYED_DIR
    destination = folder + "/" + delayed
    try:
        try:
            os.rename(temp, destination)
        except FileNotFoundError:
            if not os.path.exists(temp):
                raise
            _make_dir(folder, umask)  # the first delayed message of this queue
            os.rename(temp, destination)
    except OSError as exc:
        # RACE: as in publish, a reported loss with our unique name in place is a success.
        if not (lost_race(exc) and os.path.lexists(destination)):
            _unlink_quietly(temp)
            raise storage_error(exc, "delay a message in", folder) from None
    if fsync:
        _fsync_dir(folder)


def requeue_delayed(queue_dir: str, work: str, delayed: str, data: bytes, fsync: bool = False,
                    umask: Optional[int] = None) -> None:
    """Put the owned claimed message ``work`` back as the delayed ``delayed``: CLAIMED -> DELAYED.

    Written first, removed second, as :func:`requeue`.
    """
    delay(queue_dir, delayed, data, fsync, umask)
    remove(queue_dir + "/" + WORK_DIR, work, fsync)


def promote(queue_dir: str, delayed: str, lease: float, fsync: bool = False,
            umask: Optional[int] = None) -> Optional[str]:
    """Make the due delayed message ``delayed`` waiting: DELAYED -> PROMOTING -> READY.

    Two renames, each to a name only this promoter chose: first, inside
    ``delayed/``, to a name whose due field is our ``lease`` (epoch
    seconds; others leave it alone until then) and whose nonce is new;
    then to a fresh READY name (a new queue number, the same priority and
    id).  Returns the READY name, or None if another promoter won.  A
    promoter killed between the two leaves a delayed message due at
    ``lease``, promoted by anyone after that.
    """
    parsed = names.DELAYED_NAME.match(delayed)
    assert parsed is not None   # the caller lists delayed/ through DELAYED_NAME
    folder = queue_dir + "/" + DELAYED_DIR
    mine = names.delayed_name(lease, parsed.group(2))
    mark_due(queue_dir, lease, umask)
    if not _move(folder + "/" + delayed, folder + "/" + mine, fsync):
        return None  # RACE: another consumer or cleaner promotes it
    ready = names.ready_name(int(parsed.group(3)), names.new_queue_number(), parsed.group(4))
    if not _move(folder + "/" + mine, queue_dir + "/" + ready, fsync):
        return None  # RACE: we were so slow that our lease expired and it was taken over
    return ready


# errno values of a link(2) that the filesystem (not the race) refuses: another
# filesystem, no hard links (EPERM on some FUSE and SMB mounts, ENOTSUP), too
# many links to one file.  Such a queue gets a copy of its own instead.
_NO_LINK: frozenset[int] = frozenset(getattr(errno, name) for name in
                     ("EXDEV", "EPERM", "ENOTSUP", "EOPNOTSUPP", "EMLINK", "ENOSYS", "EACCES")
                     if hasattr(errno, name))


def publish_linked(targets: Sequence[tuple[str, str, Optional[int]]], data: bytes,
                   fsync: bool = False) -> int:
    """Make ``data`` visible in several queues: each ``(queue_dir, ready, umask)`` of ``targets``.

    The file is written once, in the last target's ``.tmp/``, hard-linked
    to its ready name in every other target, then renamed into the last:
    one write and N names.  A target whose link the filesystem refuses
    (another filesystem, no hard links, too many links) gets a copy of its
    own, written and renamed as by :func:`publish`.  Each name is complete
    before it appears.  Returns the number of targets that got a copy, not
    a link.  Links share one file, so its mode is the one the last
    target's ``umask`` setting gives.  Not atomic across targets: if one fails, the ones before it
    keep their message and the error is raised; a crash leaves the queues
    done so far published and a ``.tmp`` file for ``clean``.
    """
    last_dir, last_ready, last_umask = targets[-1]
    temp = _write_temp(last_dir, data, fsync, last_umask)
    copies = 0
    try:
        for queue_dir, ready, umask in targets[:-1]:
            destination = queue_dir + "/" + ready
            try:
                os.link(temp, destination)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    # RACE: on NFS a retransmitted link can report EEXIST
                    # although the first attempt made it; the ready name is
                    # ours alone, so it is our link.
                    pass
                elif exc.errno in _NO_LINK:
                    publish(queue_dir, ready, data, fsync, umask)
                    copies += 1
                    continue
                else:
                    raise storage_error(exc, "publish into", queue_dir) from None
            if fsync:
                _fsync_dir(queue_dir)
    except BaseException:
        _unlink_quietly(temp)
        raise
    _rename_into_view(temp, last_dir + "/" + last_ready, "publish into", last_dir)
    if fsync:
        _fsync_dir(last_dir)
    return copies


def claim(queue_dir: str, ready: str, expiry: float, fsync: bool = False) -> Optional[str]:
    """Claim the waiting message ``ready``: READY -> CLAIMED.

    Return the claimed file's name in ``work/``, or None if another process
    claimed it first.
    """
    work = names.work_name(names.new_lease(expiry), ready)
    return work if _move(queue_dir + "/" + ready,
                         "{}/{}/{}".format(queue_dir, WORK_DIR, work), fsync) else None


def take_over(queue_dir: str, work: str, expiry: float, fsync: bool = False) -> Optional[str]:
    """Give the claimed message ``work`` a new lease: CLAIMED -> CLAIMED.

    Return the new name, or None if another process took it first (acked,
    requeued or took it over).  Whoever gets the new name owns the message.
    """
    parsed = names.parse_work_name(work)
    assert parsed is not None   # callers pass work names (the broker checks those it is given)
    new = names.work_name(names.new_lease(expiry), parsed[1])
    work_dir = os.path.join(queue_dir, WORK_DIR)
    return new if _move(os.path.join(work_dir, work), os.path.join(work_dir, new), fsync) else None


def _move(source: str, destination: str, fsync: bool) -> bool:
    """Rename ``source`` to our own unique ``destination``; False if we lost the race."""
    try:
        os.rename(source, destination)
    except OSError as exc:
        if not lost_race(exc):
            raise storage_error(exc, "move", source,
                                [(os.path.dirname(source), "write"),
                                 (os.path.dirname(destination), "write")]) from None
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


def read_claimed(queue_dir: str, work: str) -> bytes:
    """Return the bytes of the claimed message ``work``; raise FileNotFoundError if it is gone.

    A foreign entry with a message's name that is not a regular file (folder,
    symlink, FIFO, device) reads as empty, so it is quarantined as corrupt:
    a symlink is never followed and a FIFO never blocks the reader.
    """
    return _read("{}/{}/{}".format(queue_dir, WORK_DIR, work), "claimed")


def read_ready(queue_dir: str, ready: str) -> bytes:
    """Return the bytes of the waiting message ``ready``, read in place: READY stays READY.

    Raises FileNotFoundError if it is gone.  RACE: a consumer may claim it
    meanwhile; then it is gone (ENOENT, or ESTALE from a network
    filesystem), or its contents are read all the same: the file was
    complete before its name appeared and never changes.  As for
    :func:`read_claimed`, a non-regular entry reads as empty, a symlink is
    never followed and a FIFO never blocks.
    """
    return _read(queue_dir + "/" + ready, "waiting")


def _read(path: str, state: str) -> bytes:
    """Return the bytes of the message file at ``path`` (a ``state`` message, for errors)."""
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
            raise FileNotFoundError(errno.ENOENT, state + " message is gone", path) from None
        if exc.errno == errno.ELOOP:
            return b""  # a symlink with a message's name
        raise storage_error(exc, "read", path, [(path, "read")]) from None


def release(queue_dir: str, work: str, fsync: bool = False) -> bool:
    """Give back the owned claimed message ``work`` unread: CLAIMED -> READY, under its old name.

    For a claimant that may not read the file, or gives the message back
    before doing anything with it: the message waits again as if never
    claimed.  Only the owner of a message renames to its ready
    name, so the target is still ours alone.  False if it was taken meanwhile.
    """
    parsed = names.parse_work_name(work)
    assert parsed is not None   # a work name the caller owns
    return _move("{}/{}/{}".format(queue_dir, WORK_DIR, work), queue_dir + "/" + parsed[1], fsync)


def take_back(queue_dir: str, owned: str, work: str, fsync: bool = False) -> bool:
    """Rename the owned claimed message ``owned`` back to ``work``, its name before we took it.

    CLAIMED -> CLAIMED: undoes a take-over whose requeue was refused, so the
    message is as it was.  That name was chosen with fresh random digits by
    its earlier holder; nobody else renames to it.  False if it was taken meanwhile.
    """
    work_dir = queue_dir + "/" + WORK_DIR
    return _move(work_dir + "/" + owned, work_dir + "/" + work, fsync)


def remove(directory: str, name: str, fsync: bool = False) -> bool:
    """Unlink a message file: CLAIMED or READY -> gone.  False if it was already gone."""
    path = directory + "/" + name
    try:
        os.unlink(path)
    except OSError as exc:
        if lost_race(exc):
            return False  # RACE: acked, requeued or purged by another process
        raise storage_error(exc, "remove", path, [(directory, "write")]) from None
    if fsync:
        _fsync_dir(directory)
    return True


def requeue(queue_dir: str, work: str, ready: str, data: bytes, fsync: bool = False,
            umask: Optional[int] = None) -> None:
    """Put the owned claimed message ``work`` back as ``ready`` with new contents.

    CLAIMED -> READY: the new file is published first and the claimed file
    removed second, so a crash in between duplicates, never loses.
    """
    publish(queue_dir, ready, data, fsync, umask)
    remove(os.path.join(queue_dir, WORK_DIR), work, fsync)


def move(queue_dir: str, work: str, target_dir: str, ready: str, data: bytes,
         fsync: bool = False, umask: Optional[int] = None) -> None:
    """Move the owned claimed message ``work`` to another queue as ``ready`` with new contents.

    CLAIMED -> READY of the queue at ``target_dir`` (a dead-letter move, a
    redrive): published there first, removed here second, so a crash in
    between leaves a copy in both places, never in neither.  ``umask`` is
    the target queue's setting.
    """
    publish(target_dir, ready, data, fsync, umask)
    remove(queue_dir + "/" + WORK_DIR, work, fsync)


def quarantine(queue_dir: str, work: str, fsync: bool = False,
               umask: Optional[int] = None) -> str:
    """Move the owned, unreadable claimed message ``work`` aside: CLAIMED -> CORRUPT."""
    target_dir = os.path.join(queue_dir, QUARANTINE_DIR)
    source = os.path.join(queue_dir, WORK_DIR, work)
    try:
        if not os.path.isdir(target_dir):
            _make_dir(target_dir, umask)
        os.rename(source, os.path.join(target_dir, work))
    except OSError as exc:
        if not lost_race(exc):
            raise storage_error(exc, "quarantine", source,
                                [(queue_dir, "write"), (target_dir, "write"),
                                 (os.path.dirname(source), "write")]) from None
    if fsync:
        _fsync_dir(target_dir)
        _fsync_dir(os.path.dirname(source))
    return os.path.join(target_dir, work)


def _make_dir(path: str, umask: Optional[int] = None) -> None:
    """Create the folder ``path`` (not its parents); another process may have made it first."""
    try:
        fs.make_dir(path, umask)
    except FileExistsError:
        pass  # RACE: made by another process at the same moment


def remove_stale_temp_files(queue_dir: str, older_than: float) -> int:
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
