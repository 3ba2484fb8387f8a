"""Topics: publish once, and every queue subscribed to the topic gets its own copy.

A subscription is one empty file, ``<root>/.topics/<topic>/<queue>``:
subscribing creates it with ``O_CREAT | O_EXCL``, unsubscribing unlinks
it.  Each is one atomic operation on a name of its own, so two processes
subscribing or unsubscribing at once never undo each other (a line in a
shared file would be read, changed and written back: one of two writers
would lose).  ``.topics`` starts with a dot, so it is never taken for a
queue; topic and queue names follow the queue-name grammar, so no path
leaves the root.  Topic folders are never removed: a subscriber creating
its file in a folder that an unsubscriber is removing would fail.

Publishing to a topic lists ``.topics/<topic>/`` once: the queues listed
then are the subscribers of that message, and each gets exactly one copy
under a ready name of its own, with its own id (a queue subscribed later
gets only later messages).  The file is written once and hard-linked into
each queue (:func:`ddmq.protocol.publish_linked`), or copied where the
filesystem refuses links.  All copies share one content, so the file says
``topic`` and a reader takes each copy's id, priority and queue number
from its name and its queue from its folder (:func:`ddmq.message.locate`).
Every later move (claim, ack, requeue, dead-letter) renames or unlinks one
name and so touches one queue's copy only.
"""

from __future__ import annotations

import errno
import os

from . import fs, names, protocol
from .errors import InvalidInputError, QueueNotFoundError
from .log import log
from .message import message
from .publishing import check_options, new_id, new_message

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Any, Callable, Optional

    from .message import Codec
    from .queue import Queue

TOPICS_DIR = ".topics"


def topic_dir(root: str, topic: str) -> str:
    """Return the folder of ``topic``'s subscriptions (the name is checked)."""
    return "{}/{}/{}".format(root, TOPICS_DIR, names.check_topic_name(topic))


def subscribe(root: str, topic: str, queue: str, umask: Optional[int] = None) -> bool:
    """Create the subscription of ``queue`` to ``topic``; False if it existed already.

    ``umask`` is the root's ``umask`` setting, for the files and folders made.
    """
    folder = topic_dir(root, topic)
    path = folder + "/" + names.check_queue_name(queue)
    for attempt in (1, 2):
        try:
            os.close(fs.open_file(path, umask))
            return True
        except FileExistsError:
            return False  # RACE: or subscribed by another process this very moment
        except FileNotFoundError:
            if attempt == 2:
                raise protocol.storage_error(OSError(errno.ENOENT, "folder vanished"),
                                             "subscribe in", folder) from None
            _make_dirs(root, folder, umask)
        except OSError as exc:
            raise protocol.storage_error(exc, "subscribe in", folder) from None
    return False


def _make_dirs(root: str, folder: str, umask: Optional[int]) -> None:
    # Never makedirs: a root removed meanwhile must stay gone.
    for path in (root + "/" + TOPICS_DIR, folder):
        try:
            fs.make_dir(path, umask)
        except FileExistsError:
            pass  # RACE: made by another subscriber at the same moment
        except OSError as exc:
            raise protocol.storage_error(exc, "create folder", path) from None


def unsubscribe(root: str, topic: str, queue: str) -> bool:
    """Remove the subscription of ``queue`` to ``topic``; False if there was none."""
    path = topic_dir(root, topic) + "/" + names.check_queue_name(queue)
    try:
        os.unlink(path)
    except OSError as exc:
        if protocol.lost_race(exc):
            return False  # not subscribed, or unsubscribed by another process first
        raise protocol.storage_error(exc, "unsubscribe", path) from None
    return True


def forget_queue(root: str, queue: str) -> list[str]:
    """Remove every subscription of ``queue`` (a queue being deleted); return the topics."""
    return [topic for topic in topics(root) if unsubscribe(root, topic, queue)]


def subscribers(root: str, topic: str) -> list[str]:
    """Return the sorted names of the queues subscribed to ``topic`` now."""
    return _names(topic_dir(root, topic))


def topics(root: str) -> list[str]:
    """Return the sorted names of the topics that have (or had) a subscription folder."""
    return _names(root + "/" + TOPICS_DIR)


def _names(folder: str) -> list[str]:
    entries = protocol.list_folder(folder)
    # Anything else in the folder (an editor's backup, a stray file) is no subscription.
    return sorted(name for name in entries if names.QUEUE_NAME.match(name))


def publish(root: str, topic: str, payload: object, options: dict[str, Any],
            open_queue: Callable[[str], Queue], now: float, codec: Optional[Codec] = None,
            before_write: Optional[Callable[[Queue], None]] = None) -> list[message]:
    """Publish ``payload`` to every queue subscribed to ``topic`` now; return the messages.

    ``options`` are the per-message fields of a publish; ``open_queue(name)``
    returns the :class:`~ddmq.queue.Queue` of a subscriber (creating it if
    the broker may); ``now`` is the time of publication and ``codec`` the
    broker's codec.  Every subscribed queue is opened, and the options and
    the payload encoded, before anything is written: bad input or a missing
    queue changes nothing.  ``before_write(q)`` (the broker's cleaning) then
    runs for each queue, before the file is written.
    """
    queues = subscribers(root, topic)
    if not queues:
        return []
    # Checked before any queue is created: bad options change nothing.
    check_options(queues[0], dict(options, priority=options["priority"] or 0))
    if options["dead_letter"] in queues:
        raise InvalidInputError("queue {!r} cannot be its own dead-letter queue".format(
            options["dead_letter"]), "invalid")
    try:
        subscribed = [open_queue(name) for name in queues]
    except QueueNotFoundError as exc:
        # A queue removed without ddmq (delete_queue unsubscribes it).
        raise QueueNotFoundError("{}: it is subscribed to topic {!r}; create it again or "
                                 "unsubscribe it".format(exc, topic), exc.error) from None
    checked = []
    for q in subscribed:
        own = dict(options)
        if own["priority"] is None:
            own["priority"] = q.settings["priority"]
        checked.append(own)
    first, ready, data = new_message(subscribed[0].name, payload, checked[0], now, codec, topic)
    msgs, targets = [first], [(subscribed[0].dir, ready, subscribed[0].umask)]
    for q, own in zip(subscribed[1:], checked[1:]):
        msg = message.__new__(message)   # a shallow copy, without copy.copy's cost
        msg.__dict__.update(first.__dict__)
        msg.queue, msg.id, msg.priority = q.name, new_id(), own["priority"]
        msg.queue_number = names.new_queue_number()
        ready = names.ready_name(msg.priority, msg.queue_number, msg.id)
        msg.filename = q.name + "/" + ready
        msgs.append(msg)
        targets.append((q.dir, ready, q.umask))
    if before_write is not None:
        for q in subscribed:
            before_write(q)
    copies = protocol.publish_linked(targets, data, any(q.settings["fsync"] for q in subscribed))
    for q, (_, ready, _) in zip(subscribed, targets):
        q.offer(ready)
    log.debug("Published to topic %s: %d queue(s), %d of them by copy", topic, len(msgs),
              copies)
    return msgs
