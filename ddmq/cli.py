"""The ``ddmq`` command line: a thin layer over :class:`ddmq.broker`.

``ddmq <command> [<args>]`` parses one subcommand with argparse, whose types
check every queue name, file name and number before anything touches the
disk; the subcommand then calls the broker and returns *records* (plain
dicts), and a renderer prints them in the chosen ``--format``:

* ``plain`` (the default, except for ``view``): one short line per record; a
  message is a block of ``key = value`` lines, blocks separated by a blank line.
* ``table`` (``view``'s default): a beautifultable table.
* ``json``: ONE JSON document per invocation (see ``Output.document``): a list
  of records, or the record itself where the command, by its arguments,
  gives at most one (``publish``; ``consume``/``pop``/``peek`` with ``-n 1``,
  the default, gives the message or ``null``); ``view`` gives a mapping from
  queue name to its figures, as 0.9.14 did.
* ``jsonl``: one JSON object per record, one per line (JSON Lines).
* ``yaml``: one YAML document, the same document as ``json``.
* ``prometheus`` (``view`` only): the Prometheus text exposition format.

``ddmq json '<object>'`` runs an operation packaged as a JSON object (with no
argument: every object on stdin, in order).  Each object is translated into
the argument list the command line would take and parsed by the same parser;
its ``command`` is looked up in :data:`COMMANDS`, never evaluated.

Exit status:

====  ===============================================================
0     success
1     error: missing root or queue, message not found, filesystem error
2     usage error: unknown command or option, invalid value, bad JSON
3     nothing to consume or show: the queue was empty (after ``--wait``, if given)
4     lease lost: ``touch`` found the message taken by another process
====  ===============================================================

Every error is one line on stderr; ``-d`` adds the traceback and debug logs.
beautifultable and the YAML emitter are imported only by their renderers,
so that ``publish`` and ``consume`` start fast.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

from . import __version__
from .broker import broker
from .errors import (DdmqError, InvalidInputError, LeaseLostError, QueueNotFoundError, RootError,
                     StorageError)
from .message import json_payload, message
from .names import READY_NAME, WORK_NAME, check_queue_name, check_topic_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    import re
    from typing import Any, Callable, Iterable, NoReturn, Optional, Sequence, TextIO, Union

    from .worker import CommandWorker, EventKind, EventRecord, Summary

    #: A record: one thing a command did or found, as the renderers show it (its
    #: values are what JSON holds, a message's payload included).
    Record = dict[str, Any]
    #: How ``plain`` shows one record: a line, or a block of lines.
    Plain = Callable[[Record], str]
    #: What makes the one json/yaml document of a command's records.
    Document = Callable[[list[Record]], object]
    #: The (key, header) pairs of a table's columns.
    Columns = Sequence[tuple[str, str]]
    #: A subcommand: runs on the parsed arguments, returns what it produced.
    Handler = Callable[[argparse.Namespace], "Output"]
    #: Adds a subcommand's arguments to its parser.
    Builder = Callable[["Parser"], None]
    #: The json/yaml documents of a ``ddmq json`` run, by format, in the order they came.
    Documents = dict[str, list[object]]

EXIT_OK = 0
WATCH_SECONDS = 2.0   # view --watch without SECONDS
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_EMPTY = 3
EXIT_LOST = 4

FORMATS = ("plain", "json", "jsonl", "yaml")

USAGE = """usage: ddmq <command> [<args>]

The available commands are:
view      List queues and number of messages
create    Create a queue
delete    Delete a queue
publish   Publish message to queue (or to a topic's queues)
consume   Consume message from queue
pop       Consume and delete message from queue (at most once)
peek      Show waiting messages without consuming them
touch     Renew the lease of a consumed message
ack       Positively acknowledge a message
nack      Negatively acknowledge a message (possibly requeue)
del_msg   Delete the specified message
redrive   Send dead-lettered messages back to their queue
subscribe     Subscribe queue(s) to a topic
unsubscribe   Unsubscribe queue(s) from a topic
subscriptions List the queues subscribed to topics
purge     Purge all messages from queue
clean     Clean out expired messages from queue
work      Run a command for every message of a queue
json      Run a command packaged as a JSON object

For more info about the commands, run
ddmq <command> -h
"""

HELP = USAGE + """
Command-line interface to Dead Drop Messaging Queue (ddmq).

optional arguments:
  -h, --help     show this help message and exit
  -v, --version  print version

exit status: 0 success, 1 error, 2 usage error, 3 nothing to consume, 4 lease lost
"""

EPILOG = "exit status: 0 success, 1 error, 2 usage error, 3 nothing to consume, 4 lease lost"

#: The order in which a message's fields are shown: what a reader needs first.
MESSAGE_FIELDS = ("message", "id", "filename", "queue", "priority", "queue_number", "timeout",
                  "requeue", "requeue_prio", "requeue_counter", "requeue_limit",
                  "published_at", "delivery_count", "first_delivered_at", "last_delivered_at",
                  "last_nack_reason", "dead_letter", "dead_lettered_from", "dead_lettered_at",
                  "dead_lettered_reason", "not_before")


class UsageError(Exception):
    """The command line or a packaged operation is malformed (exit status 2)."""


class Output:
    """What a subcommand produced: its records, how to show one as plain text, its status."""

    def __init__(self, records: list[Record], plain: Plain, status: int = EXIT_OK,
                 document: Document = list) -> None:
        self.records = records
        self.plain = plain
        self.status = status
        #: The function that makes the one json/yaml document of the records.
        self.document = document
        #: The keys a table shows, and their headers (None: every key, as it is).
        self.columns: Optional[Columns] = None
        #: True if the command wrote its output itself (view --watch): nothing to render.
        self.shown = False


def _single(records: list[Record]) -> Optional[Record]:
    """The document of a command that gives at most one record: that record, or None."""
    return records[0] if records else None


# Parsing.

def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """Return argparse's help formatter, sized without importing shutil (faster start-up)."""
    try:
        width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(1).columns
    except (ValueError, OSError):
        width = 80
    return argparse.HelpFormatter(prog, width=max(width, 40) - 2)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError and keeps each argument's action by key."""

    def __init__(self, **kwargs: Any) -> None:
        # No abbreviations: "--requeue" must never be read as another option's prefix.
        super().__init__(formatter_class=_help_formatter, allow_abbrev=False, **kwargs)
        self.keys: dict[str, argparse.Action] = {}
        # Checks the parsed arguments together, if set.
        self.check: Optional[Callable[[argparse.Namespace], None]] = None

    # Narrower than the base class's three overloads: ddmq never passes a namespace
    # object, so only the form that returns an argparse.Namespace is kept.
    def parse_args(self, args: Optional[Iterable[str]] = None,  # type: ignore[override]
                   namespace: None = None) -> argparse.Namespace:
        parsed = super().parse_args(args, namespace)
        if self.check is not None:
            self.check(parsed)
        return parsed

    def add(self, *flags: str, **kwargs: Any) -> argparse.Action:
        """Add an argument and keep its action under its destination, the JSON key."""
        action = self.add_argument(*flags, **kwargs)
        self.keys[action.dest] = action
        return action

    def error(self, message: str) -> NoReturn:
        raise UsageError("{} (see '{} -h')".format(message, self.prog))


# Argument types; argparse reports their ArgumentTypeError as a usage error.

def _natural(text: str) -> int:
    """Return ``text`` as an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError("must be an integer >= 0, not {!r}".format(text))
    return value


def _positive(text: str) -> int:
    """Return ``text`` as an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be an integer >= 1, not {!r}".format(text))
    return value


def _seconds(text: str) -> float:
    """Return ``text`` as a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):   # also NaN
        raise argparse.ArgumentTypeError("must be a number of seconds >= 0, not {!r}".format(text))
    return value
def _umask(text: str) -> str:
    """Return ``text`` if it is an octal umask such as 007 (at most 0777)."""
    from .fs import valid_umask

    if not valid_umask(text):
        raise argparse.ArgumentTypeError(
            "must be an octal umask such as 007 (digits 0-7, at most 0777), not {!r}".format(text))
    return text


def _wait_seconds(text: str) -> float:
    """Return ``text`` as seconds to wait: a number >= 0, or 'forever'."""
    if text.lower() in ("forever", "inf", "infinity"):
        from .wait import FOREVER

        return FOREVER
    try:
        return _seconds(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            "must be a number of seconds >= 0 or 'forever', not {!r}".format(text)) from None


def _refresh_seconds(text: str) -> float:
    """Return ``text`` as a number of seconds > 0 (at most a day): a refresh interval."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("must be a number of seconds > 0, not {!r}".format(text))
    return value


def _queue_name(text: str) -> str:
    """Return ``text`` if it is a valid queue name."""
    try:
        return check_queue_name(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _topic_name(text: str) -> str:
    """Return ``text`` if it is a valid topic name."""
    try:
        return check_topic_name(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _queue_list(text: str) -> list[str]:
    """Return the queue names in the comma-separated ``text``, each checked, once each."""
    return list(dict.fromkeys(_queue_name(queue) for queue in text.split(",")))


def _file_list(text: str, patterns: Iterable[re.Pattern[str]]) -> list[str]:
    """Return the file names in the comma-separated ``text``; refuse paths and other names."""
    files = text.split(",")
    for name in files:
        if "/" in name:
            raise argparse.ArgumentTypeError(
                "{!r} is a path: give the bare message file name, without folders".format(name))
        if not any(pattern.match(name) for pattern in patterns):
            raise argparse.ArgumentTypeError("{!r} is not a message file name".format(name))
    return list(dict.fromkeys(files))


def _work_files(text: str) -> list[str]:
    """Return the consumed messages' file names in the comma-separated ``text``."""
    return _file_list(text, (WORK_NAME,))


def _work_file(text: str) -> str:
    """Return the one consumed message's file name ``text``."""
    files = _file_list(text, (WORK_NAME,))
    if len(files) != 1 or "," in text:
        raise argparse.ArgumentTypeError("give one message file name, not {!r}".format(text))
    return files[0]


def _message_files(text: str) -> list[str]:
    """Return the waiting or consumed messages' file names in the comma-separated ``text``."""
    return _file_list(text, (READY_NAME, WORK_NAME))


# The arguments of each subcommand.  Their destinations are the keys of ``ddmq json``.

def _add_root(parser: Parser) -> None:
    parser.add("root", help="root folder of the queues (the folder holding ddmq.yaml)")


def _add_common(parser: Parser, force: Optional[str],
                silent: Optional[str] = "silent mode: print nothing on success",
                formats: tuple[str, ...] = FORMATS, default_format: str = "plain") -> None:
    """Add -f (helped by ``force``, if any), --format, -v, -d and -s (if ``silent``)."""
    if force:
        parser.add("-f", action="store_true", help=force)
    parser.add("--format", choices=formats, default=default_format,
               help="output format (default: {})".format(default_format))
    parser.add("-v", action="store_true", help="verbose mode: log progress to stderr")
    parser.add("-d", action="store_true", help="debug mode: log details, show tracebacks")
    if silent:
        parser.add("-s", action="store_true", help=silent)


def _add_skip_cleaning(parser: Parser, verb: str) -> None:
    # Both spellings: the original's publish said --skip_cleaning, its consume --skip-cleaning.
    parser.add("-C", "--skip_cleaning", "--skip-cleaning", dest="skip_cleaning",
               action="store_true",
               help="{} without first cleaning expired messages out of the queue".format(verb))


def _build_view(parser: Parser) -> None:
    _add_root(parser)
    parser.add("queue", nargs="?", type=_queue_list,
               help="comma-separated queues to show (default: all)")
    parser.add("-n", action="store_true", help="only list the names of the queues")
    parser.add("--watch", nargs="?", type=_refresh_seconds, const=WATCH_SECONDS, metavar="SECONDS",
               help="redraw every SECONDS (default 2) "
                    "with publish and ack rates and the time to empty, until Ctrl-C; not on a "
                    "terminal (or with --format json), print one JSON document per refresh, "
                    "one per line")
    _add_common(parser, "create the root folder (and the named queues) if missing", silent=None,
                formats=("table",) + FORMATS + ("prometheus",), default_format="table")


def _build_queues(verb: str, force: str) -> Builder:
    def build(parser: Parser) -> None:
        _add_root(parser)
        parser.add("queue", type=_queue_list,
                   help="comma-separated names of the queues to {}".format(verb))
        _add_common(parser, force)
    return build


def _build_create(parser: Parser) -> None:
    _build_queues("create", "create the root folder if missing")(parser)
    parser.add("--umask", type=_umask, metavar="OCTAL",
               help="with -f, give a new root this umask setting, e.g. 007: files and folders "
                    "ddmq makes are then group-writable and closed to others (an existing root "
                    "must already have it)")


def _build_publish(parser: Parser) -> None:
    _add_root(parser)
    # With --topic there is no queue: the first text after ROOT is the message,
    # so the queue is checked with the other arguments (_check_publish).
    parser.check = _check_publish
    parser.add("queue", nargs="?", help="queue to publish to (not with --topic)")
    parser.add("--topic", type=_topic_name, metavar="TOPIC",
               help="publish to every queue subscribed to TOPIC instead of to one queue "
                    "(ddmq publish --topic TOPIC ROOT MESSAGE)")
    payload = parser.add_mutually_exclusive_group()
    for action in (
            payload.add_argument("message", nargs="?", help="message text (quote it; put -- "
                                 "before it if it starts with -)"),
            payload.add_argument("--file", metavar="PATH", help="publish the bytes of this file "
                                 "(- for stdin) as the message, instead of a text"),
            payload.add_argument("--lines", metavar="FILE",
                                 help="publish one message per non-empty line of FILE ('-': "
                                      "standard input, read to its end first), with the options "
                                      "given; print how many were published")):
        parser.keys[action.dest] = action
    parser.add("-p", "--priority", type=_natural, metavar="N",
               help="priority of the message, an integer >= 0 (lower is served first)")
    parser.add("-t", "--timeout", type=_natural, metavar="SECONDS",
               help="seconds a consumed message may stay unacknowledged before it expires")
    parser.add("-r", "--requeue", action="store_true",
               help="requeue the message when it is nacked or expires")
    parser.add("-l", "--requeue_limit", type=_natural, metavar="N",
               help="times the message may be requeued before it is deleted")
    parser.add("--requeue_prio", type=_natural, metavar="N",
               help="priority the message gets when requeued (implies -r)")
    parser.add("--delay", type=_seconds, metavar="SECONDS",
               help="keep the message from consumers for this many seconds")
    parser.add("--not_before", type=_seconds, metavar="EPOCH",
               help="keep the message from consumers until this epoch time (seconds)")
    parser.add("--dead_letter", type=_queue_name, metavar="QUEUE",
               help="queue that gets the message if it is given up on (default: the queue's "
                    "dead_letter setting)")
    _add_skip_cleaning(parser, "publish")
    _add_common(parser, "create the root folder and the queue if missing")


def _build_subscribe(verb: str) -> Builder:
    def build(parser: Parser) -> None:
        _add_root(parser)
        parser.add("topic", type=_topic_name, help="topic name")
        parser.add("queue", type=_queue_list,
                   help="comma-separated names of the queues to {}".format(verb))
        _add_common(parser, "create the root folder and the queues if missing"
                    if verb == "subscribe" else None)
    return build


def _build_subscriptions(parser: Parser) -> None:
    _add_root(parser)
    parser.add("topic", nargs="?", type=_topic_name, help="topic to show (default: all)")
    _add_common(parser, None, silent=None)


def _build_consume(parser: Parser) -> None:
    _add_root(parser)
    parser.add("queue", type=_queue_name, help="queue to consume from")
    parser.add("-n", type=_positive, default=1, metavar="N",
               help="number of messages to consume (default 1)")
    parser.add("-w", "--wait", type=_wait_seconds, metavar="SECONDS",
               help="if the queue is empty, wait up to SECONDS for a message ('forever': until "
                    "one comes); with -n, return what can be claimed once one can")
    _add_skip_cleaning(parser, "consume")
    _add_common(parser, "create the root folder and the queue if missing",
                silent="do not report an empty queue on stderr")


def _build_peek(parser: Parser) -> None:
    _add_root(parser)
    parser.add("queue", type=_queue_name, help="queue to look into")
    parser.add("-n", type=_positive, default=1, metavar="N",
               help="number of messages to show (default 1)")
    _add_common(parser, None, silent="do not report an empty queue or corrupt files on stderr")


def _build_settle(verb: str, requeue_help: str) -> Builder:
    def build(parser: Parser) -> None:
        _add_root(parser)
        parser.add("queue", type=_queue_name, help="queue the messages were consumed from")
        parser.add("msg_files", type=_work_files,
                   help="comma-separated file names of the consumed messages to {} (the "
                        "filename that consume printed)".format(verb))
        parser.add("-r", "--requeue", action="store_true", help=requeue_help)
        if verb == "nack":
            parser.add("--reason", metavar="TEXT",
                       help="why the messages failed, kept in each as its last_nack_reason")
            parser.add("--delay", type=_seconds, metavar="SECONDS",
                       help="serve a requeued message again only after this many seconds "
                            "(default: the queue's requeue_delay)")
        _add_skip_cleaning(parser, verb)
        _add_common(parser, None)
    return build


def _build_redrive(parser: Parser) -> None:
    _add_root(parser)
    parser.add("queue", type=_queue_name, help="the dead-letter queue to take messages from")
    parser.add("--to", type=_queue_name, metavar="QUEUE",
               help="send every message to this queue (default: the queue each came from)")
    parser.add("-n", type=_positive, metavar="N",
               help="at most this many messages (default: all those waiting)")
    _add_common(parser, None)


def _build_touch(parser: Parser) -> None:
    _add_root(parser)
    parser.add("queue", type=_queue_name, help="queue the message was consumed from")
    parser.add("msg_file", type=_work_file,
               help="file name of the consumed message: the filename that consume (or the "
                    "last touch) printed")
    parser.add("-t", "--timeout", type=_seconds, metavar="SECONDS",
               help="the new lease lasts SECONDS from now (default: the message's timeout, "
                    "else the queue's message_timeout)")
    _add_common(parser, None)


def _build_del_msg(parser: Parser) -> None:
    _add_root(parser)
    parser.add("queue", type=_queue_name, help="queue the messages are in")
    parser.add("msg_files", type=_message_files,
               help="comma-separated file names of the messages to delete (waiting or consumed)")
    _add_common(parser, None)


def _build_json(parser: Parser) -> None:
    parser.add("payload", nargs="?",
               help="a JSON object, in single quotes; without it, JSON objects are read from "
                    "stdin, one per line, and run in order")


# The subcommands: argparse has checked every name and number, so bad input
# changes nothing.  Each calls the broker and returns an Output; none touches
# the disk except through the broker.

def _open_broker(args: argparse.Namespace) -> broker:
    """Return the broker of ``args.root``; with -f it creates the root and queues as needed."""
    return broker(args.root, create=getattr(args, "f", False), verbose=args.v, debug=args.d,
                  umask=getattr(args, "umask", None))


def _require_queues(b: broker, queues: Iterable[str]) -> None:
    """Check that every queue exists, or create it if ``b`` may, before anything changes."""
    for queue in queues:
        b.get_settings(queue)


def _message_record(msg: message) -> Record:
    """Return a message's fields as a dict in the order of MESSAGE_FIELDS.

    A bytes payload is shown as its file holds it: base64 text, followed by
    ``message_encoding: base64``; a payload left encoded by a codec is
    followed by ``message_codec``.
    """
    if msg.corrupt:
        return {"queue": msg.queue, "filename": msg.filename, "corrupt": True}
    data = msg.to_dict()
    record: Record = {"message": data["message"]}
    if isinstance(record["message"], (bytes, bytearray)):
        record["message"], record["message_encoding"] = json_payload(record["message"])
    if msg.codec is not None:
        record["message_codec"] = msg.codec
    for key in MESSAGE_FIELDS[1:]:
        record[key] = data[key]
    if msg.topic is not None:
        record["topic"] = msg.topic
    return record


def _plain_message(record: Record) -> str:
    return "\n".join("{} = {}".format(key, value) for key, value in record.items())


#: view's table: the figures shown, and their headers.
VIEW_COLUMNS = (("queue", "queue"), ("waiting", "waiting"), ("in_flight", "running"),
                ("expired", "expired"), ("delayed", "delayed"), ("quarantined", "quar"),
                ("dead_lettered", "dead"), ("oldest_waiting_age", "wait_age"),
                ("oldest_claim_age", "claim_age"))


def _by_queue(records: list[Record]) -> dict[str, Record]:
    """view's json/yaml document: {queue: {figure: value}} (0.9.14 keyed it by queue too)."""
    return {record["queue"]: {key: value for key, value in record.items() if key != "queue"}
            for record in records}


def _view_queues(args: argparse.Namespace, b: broker) -> list[str]:
    queues: Optional[list[str]] = args.queue
    if queues is None:
        queues = b.list_queues()
    else:
        _require_queues(b, queues)
    return queues


def view_output(records: list[Record]) -> Output:
    """Return the Output of view's ``records`` ({"queue": name, figure: value, ...})."""
    output = Output(records, lambda r: "{queue} {waiting} {work}".format(**r), document=_by_queue)
    output.columns = VIEW_COLUMNS
    return output


def view(args: argparse.Namespace) -> Output:
    """List the queues (all, or the named ones) with their figures (see ddmq.stats)."""
    b = _open_broker(args)
    if args.watch is not None:
        if args.n or args.format not in ("table", "json"):
            raise UsageError("--watch shows the figures as a table or as json, without -n")
        from . import watch  # not at the top: start-up time of plain commands

        named = _view_queues(args, b) if args.queue else None   # checked once, not per refresh
        shown: Output = watch.run(b, (lambda: named) if named else b.list_queues, args.watch,
                                  args.format)
        return shown
    queues = _view_queues(args, b)
    if args.n:
        return Output([{"queue": queue} for queue in queues], lambda r: r["queue"],
                      document=lambda records: [record["queue"] for record in records])
    return view_output([dict(queue=queue, **b.stats(queue)) for queue in queues])


def create(args: argparse.Namespace) -> Output:
    """Create the named queues; existing ones are left as they are."""
    b = _open_broker(args)
    existing = set(b.list_queues())
    records: list[Record] = []
    for queue in args.queue:
        if queue not in existing:
            b.create_queue(queue)
        records.append({"queue": queue, "created": queue not in existing})
    return Output(records, lambda r: ("created queue {queue}" if r["created"]
                                      else "queue {queue} already exists").format(**r))


def delete(args: argparse.Namespace) -> Output:
    """Delete the named queues; a missing one is an error before any deletion, unless -f."""
    b = _open_broker(args)
    existing = set(b.list_queues())
    missing = [queue for queue in args.queue if queue not in existing]
    if missing and not args.f:
        raise QueueNotFoundError("queue {!r} does not exist in {} (nothing deleted; -f skips "
                                 "missing queues)".format(missing[0], b.root), "no_queue")
    records: list[Record] = []
    for queue in args.queue:
        if queue in existing:
            b.delete_queue(queue)
        records.append({"queue": queue, "deleted": queue in existing})
    return Output(records, lambda r: ("deleted queue {queue}" if r["deleted"]
                                      else "queue {queue} does not exist (skipped)").format(**r))


def _read_payload(path: str) -> bytes:
    """Return the bytes of the file ``path``, or of stdin if it is '-'."""
    if path == "-" and sys.stdin is None:  # fd 0 was closed: Python has no stdin at all
        raise InvalidInputError("cannot read --file -: standard input is closed", "invalid")
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise InvalidInputError("cannot read --file {}: {}".format(path, exc.strerror or exc),
                                "invalid") from None


def _check_publish(args: argparse.Namespace) -> None:
    """Check publish's queue, --topic and message together; set ``args.message`` to the text."""
    hint = " (see 'ddmq publish -h')"
    if args.topic is None:
        if args.queue is None:
            raise UsageError("give the queue to publish to, or --topic" + hint)
        try:
            check_queue_name(args.queue)
        except InvalidInputError as exc:
            raise UsageError("argument queue: {}{}".format(exc, hint)) from None
    else:
        if args.lines is not None:
            raise UsageError("--lines publishes to one queue, not to --topic" + hint)
        # ROOT MESSAGE: argparse put the message where the queue would be.
        if args.message is not None or (args.file is not None and args.queue is not None):
            raise UsageError("give a queue or --topic, not both" + hint)
        args.message, args.queue = args.queue, None
    if args.message is None and args.file is None and args.lines is None:
        raise UsageError("one of the arguments message --file --lines is required" + hint)


def publish(args: argparse.Namespace) -> Output:
    """Publish a text, the bytes of --file, or each line of --lines, to a queue or a topic."""
    # Read every input before the broker is opened: an unreadable file changes nothing.
    texts = None if args.lines is None else _read_lines(args.lines)
    payload = args.message if args.file is None else _read_payload(args.file)
    b = _open_broker(args)
    requeue = True if args.requeue or args.requeue_prio is not None else None
    options: dict[str, Any] = dict(priority=args.priority, requeue=requeue,
                                   requeue_prio=args.requeue_prio, timeout=args.timeout,
                                   requeue_limit=args.requeue_limit, dead_letter=args.dead_letter)
    if args.topic is not None:
        if args.delay is not None or args.not_before is not None:
            raise InvalidInputError("--delay and --not_before do not apply to --topic", "invalid")
        msgs = b.publish_topic(args.topic, msg_text=payload, skip_cleaning=args.skip_cleaning,
                               **options)
        if not msgs and not args.s:
            sys.stderr.write("ddmq publish: no queue is subscribed to topic {!r}\n".format(
                args.topic))
        return Output([_message_record(msg) for msg in msgs], _plain_message)
    options.update(delay=args.delay, not_before=args.not_before)
    if texts is not None:
        return _publish_lines(b, args, texts, options)
    msg = b.publish(args.queue, msg_text=payload, skip_cleaning=args.skip_cleaning, **options)
    return Output([_message_record(msg)], _plain_message, document=_single)


def subscribe(args: argparse.Namespace) -> Output:
    """Subscribe queues to a topic; a missing queue is an error before any change, unless -f."""
    b = _open_broker(args)
    _require_queues(b, args.queue)
    records = [{"topic": args.topic, "queue": queue, "subscribed": b.subscribe(args.topic, queue)}
               for queue in args.queue]
    return Output(records, lambda r: ("subscribed queue {queue} to topic {topic}" if
                                      r["subscribed"] else "queue {queue} was subscribed to "
                                      "topic {topic} already").format(**r))


def unsubscribe(args: argparse.Namespace) -> Output:
    """Unsubscribe queues from a topic; one that was not subscribed is reported, not an error."""
    b = _open_broker(args)
    records = [{"topic": args.topic, "queue": queue,
                "unsubscribed": b.unsubscribe(args.topic, queue)} for queue in args.queue]
    return Output(records, lambda r: ("unsubscribed queue {queue} from topic {topic}" if
                                      r["unsubscribed"] else "queue {queue} was not subscribed "
                                      "to topic {topic}").format(**r))


def subscriptions(args: argparse.Namespace) -> Output:
    """List the subscriptions: one record per topic and subscribed queue."""
    b = _open_broker(args)
    records = [{"topic": topic, "queue": queue}
               for topic, queues in b.subscriptions(args.topic).items() for queue in queues]
    return Output(records, lambda r: "{topic} {queue}".format(**r))


LINES_BATCH = 1000   # lines per publish_many call of --lines: the progress line's step


def _read_lines(source: str) -> list[str]:
    """Return the non-empty lines of the file ``source`` ('-': stdin), line endings stripped."""
    name = "standard input" if source == "-" else source
    try:
        if source == "-":
            data = sys.stdin.buffer.read() if sys.stdin is not None else b""
        else:
            with open(source, "rb") as handle:
                data = handle.read()
    except OSError as exc:
        raise StorageError("cannot read {}: {}".format(name, exc.strerror or exc), "io") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError("{} is not UTF-8 text (line {}); nothing published".format(
            name, data.count(b"\n", 0, exc.start) + 1), "invalid") from None
    # Split on "\n" only: str.splitlines() would also split at form feeds and other
    # characters a message may hold.
    lines = (line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
    return [line for line in lines if line]


def _publish_lines(b: broker, args: argparse.Namespace, texts: list[str],
                   options: dict[str, Any]) -> Output:
    """Publish ``texts`` through publish_many in batches; one record with the count."""
    total, published = len(texts), 0
    progress = total > LINES_BATCH and sys.stderr is not None and sys.stderr.isatty()
    try:
        for start in range(0, total, LINES_BATCH):
            # The first batch checks the queue and the options before writing anything.
            b.publish_many(args.queue, texts[start:start + LINES_BATCH],
                           skip_cleaning=args.skip_cleaning or start > 0, **options)
            published = min(total, start + LINES_BATCH)
            if progress:
                sys.stderr.write("\rddmq publish: {:,} of {:,} published".format(
                    published, total))
                sys.stderr.flush()
    except DdmqError as exc:
        if not published:
            raise
        raise DdmqError("{} (after publishing {:,} of {:,} messages)".format(
            exc, published, total), exc.error) from None
    finally:
        if progress:
            sys.stderr.write("\r\033[K")
    if total == 0:
        b.get_settings(args.queue)  # nothing to publish: still check (or -f create) the queue
    return Output([{"queue": args.queue, "published": published}],
                  lambda r: "published {published} message{s} to queue {queue}".format(
                      s="" if r["published"] == 1 else "s", **r), document=_single)


def _messages_output(verb: str, args: argparse.Namespace,
                     found: Union[message, None, list[message]]) -> Output:
    """Return the Output of messages from consume, pop or peek; none is exit status 3.

    ``found`` is what the broker returned: with ``-n 1`` one message or None,
    else a list.
    """
    document: Document = list
    if isinstance(found, list):
        msgs = found
    else:
        msgs, document = [] if found is None else [found], _single
    if not msgs:
        if not args.s:
            wait = getattr(args, "wait", None)
            waited = " after waiting {:g} s".format(wait) if wait else ""
            sys.stderr.write("ddmq {}: no message in queue {!r}{}\n".format(verb, args.queue,
                                                                          waited))
        return Output([], _plain_message, EXIT_EMPTY, document)
    return Output([_message_record(msg) for msg in msgs], _plain_message, document=document)


def consume(args: argparse.Namespace) -> Output:
    """Consume up to -n messages, waiting up to --wait; an empty queue is exit status 3."""
    b = _open_broker(args)
    return _messages_output("consume", args,
                            b.consume(args.queue, n=args.n, skip_cleaning=args.skip_cleaning,
                                      wait=args.wait))


def pop(args: argparse.Namespace) -> Output:
    """Consume and delete up to -n messages (at most once); an empty queue is exit status 3."""
    b = _open_broker(args)
    return _messages_output("pop", args,
                            b.pop(args.queue, n=args.n, skip_cleaning=args.skip_cleaning,
                                  wait=args.wait))


def peek(args: argparse.Namespace) -> Output:
    """Show up to -n waiting messages without consuming them; an empty queue is exit status 3."""
    b = _open_broker(args)
    output = _messages_output("peek", args, b.peek(args.queue, n=args.n))
    for record in output.records:
        if record.get("corrupt") and not args.s:
            sys.stderr.write("ddmq peek: warning: message file {} of queue {!r} is corrupt (left "
                             "in place; a consumer will quarantine it)\n".format(
                                 record["filename"], args.queue))
    return output


def touch(args: argparse.Namespace) -> Output:
    """Renew the lease of one consumed message; a lost lease is exit status 4."""
    b = _open_broker(args)
    try:
        new = b.touch(args.queue, args.msg_file, timeout=args.timeout)
    except LeaseLostError as exc:
        sys.stderr.write("ddmq touch: error: {}\n".format(exc))
        return Output([], str, EXIT_LOST)
    return Output([{"queue": args.queue, "filename": new, "previous": args.msg_file}],
                  lambda r: r["filename"])


def _settle(args: argparse.Namespace, verb: str) -> Output:
    """Run ack or nack (``verb``) on the named files; report each one that is gone."""
    b = _open_broker(args)
    options: dict[str, Any] = dict(requeue=True if args.requeue else None,
                                   skip_cleaning=args.skip_cleaning)
    if verb == "ack":
        done = b.ack(args.queue, args.msg_files, **options)
    else:
        done = b.nack(args.queue, args.msg_files, reason=args.reason, delay=args.delay,
                      **options)
    lost = [name for name in args.msg_files if name not in done]
    for name in lost:
        sys.stderr.write("ddmq {}: error: consumed message {} of queue {!r} is gone: already "
                         "settled, or its lease expired and another process took it\n".format(
                             verb, name, args.queue))
    records = [{"queue": args.queue, "filename": name, verb + "ed": True} for name in done]
    return Output(records, lambda r: "{}ed {}".format(verb, r["filename"]),
                  EXIT_ERROR if lost else EXIT_OK)


def ack(args: argparse.Namespace) -> Output:
    """Acknowledge consumed messages: delete them, or requeue them with -r."""
    return _settle(args, "ack")


def nack(args: argparse.Namespace) -> Output:
    """Negatively acknowledge consumed messages: requeue them (forced with -r) or delete them."""
    return _settle(args, "nack")


def redrive(args: argparse.Namespace) -> Output:
    """Send dead-lettered messages back to their source queue (or --to), counters reset."""
    b = _open_broker(args)
    moved = b.redrive(args.queue, to=args.to, n=args.n)
    records = [{"id": msg.id, "from": args.queue, "to": msg.queue, "filename": msg.filename}
               for msg in moved]
    return Output(records, lambda r: "redrove {id} to {to}".format(**r))


def del_msg(args: argparse.Namespace) -> Output:
    """Delete the named messages, waiting or consumed; report each one that is gone."""
    b = _open_broker(args)
    _require_queues(b, [args.queue])
    records: list[Record] = []
    status = EXIT_OK
    for name in args.msg_files:
        try:
            b.delete_message(message(queue=args.queue, filename=name))
        except DdmqError as exc:
            sys.stderr.write("ddmq del_msg: error: {}\n".format(exc))
            status = EXIT_ERROR
            continue
        records.append({"queue": args.queue, "filename": name, "deleted": True})
    return Output(records, lambda r: "deleted {}".format(r["filename"]), status)


def purge(args: argparse.Namespace) -> Output:
    """Delete every message of the named queues, keeping the queues."""
    b = _open_broker(args)
    _require_queues(b, args.queue)
    records: list[Record] = []
    for queue in args.queue:
        waiting, work = b.purge_queue(queue)
        records.append({"queue": queue, "waiting": waiting, "work": work})
    return Output(records, lambda r: "purged queue {queue}: {waiting} waiting, {work} at "
                                     "work".format(**r))


def clean(args: argparse.Namespace) -> Output:
    """Requeue or delete the expired messages of the named queues, now."""
    b = _open_broker(args)
    _require_queues(b, args.queue)
    records: list[Record] = []
    for queue in args.queue:
        b.clean(queue, force=True)
        records.append({"queue": queue, "cleaned": True})
    return Output(records, lambda r: "cleaned queue {queue}".format(**r))


class Command:
    """One subcommand: its summary, how to build its parser, and the function that runs it."""

    def __init__(self, summary: str, build: Builder, run: Optional[Handler]) -> None:
        self.summary = summary
        self.build = build
        self.run = run   # None: _dispatch runs the command itself (json)

    def parser(self, name: str) -> Parser:
        """Return a new argument parser for this subcommand."""
        parser = Parser(prog="ddmq " + name, description=self.summary + ".", epilog=EPILOG)
        self.build(parser)
        return parser


# ddmq work: its parser splits the command line at "--"; everything after it is the command.

WORK_DESCRIPTION = """Run COMMAND once for every message of QUEUE, up to -j at a time, until
--max-messages or --idle-exit says stop (else wait for messages forever).

  ddmq work -j 4 --idle-exit 60 /shared/ddmq jobs -- ./analyse.sh --input {}

Every argument of COMMAND holding {} gets it replaced by the message text:
one argument, never through a shell, so quotes, $(...), ; and newlines are
just text.  With no {} the text is the command's standard input.  The
command also gets DDMQ_ROOT, DDMQ_QUEUE, DDMQ_MESSAGE_ID, DDMQ_WORK_FILE and
DDMQ_DELIVERY (1 on the first delivery) in its environment.

Exit status 0 acks the message; any other status, death by a signal or
--task-timeout nacks it (requeued or dropped as its and the queue's settings
and requeue_limit say).  While a command runs its lease is renewed every
third of message_timeout, so it may run far longer.  SIGTERM, SIGINT or
SIGHUP: claim nothing more, pass the signal on to the commands, wait --grace
seconds, then kill what still runs and requeue its message at once; a second
signal skips the wait.  If the worker is killed (SIGKILL), a watchdog kills
its commands.

On a terminal, stderr shows one status line; otherwise one line per task."""

WORK_EPILOG = """exit status: 0 every task succeeded, 4 some task failed or lost its lease,
1 error (the command cannot be run, a missing root or queue, ...), 2 usage error,
128+N stopped by signal N (130 SIGINT, 143 SIGTERM), its running tasks requeued"""

EXIT_TASKS_FAILED = 4


def _raw_help_formatter(prog: str) -> argparse.RawDescriptionHelpFormatter:
    width = _help_formatter(prog).__dict__.get("_width", 78) + 2
    return argparse.RawDescriptionHelpFormatter(prog, width=width)


class _WorkParser(Parser):
    """The parser of ``ddmq work``: the options before ``--``, the command after it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The description keeps its lines: it holds an example command line.
        self.formatter_class = _raw_help_formatter

    def parse_args(self, args: Optional[Iterable[str]] = None,  # type: ignore[override]
                   namespace: None = None) -> argparse.Namespace:
        # (The override is narrowed as Parser's is, for the same reason.)
        args = list(sys.argv[1:] if args is None else args)
        if "--" not in args:
            if any(arg in ("-h", "--help") for arg in args):
                self.print_help()
                self.exit()
            self.error("give the command after --: ddmq work [options] ROOT QUEUE -- COMMAND "
                       "[ARG...]")
        split = args.index("--")
        parsed = super().parse_args(args[:split], namespace)
        parsed.argv = args[split + 1:]
        if not parsed.argv:
            self.error("no command after --")
        return parsed


class _WorkCommand(Command):
    def parser(self, name: str) -> _WorkParser:
        parser = _WorkParser(prog="ddmq " + name, description=WORK_DESCRIPTION,
                             epilog=WORK_EPILOG,
                             usage="ddmq work [options] ROOT QUEUE -- COMMAND [ARG...]")
        self.build(parser)
        return parser


def _build_work(parser: Parser) -> None:
    _add_root(parser)
    parser.add("queue", type=_queue_name, help="queue to take the messages from")
    parser.add("-j", "--jobs", type=_positive, default=1, metavar="N",
               help="run up to N commands at once (default 1)")
    parser.add("--max-messages", type=_positive, metavar="N",
               help="stop after N messages")
    parser.add("--idle-exit", type=_seconds, metavar="SECONDS",
               help="stop once the queue has had nothing to claim for SECONDS with nothing "
                    "running and no retry due within SECONDS (default: wait for messages "
                    "forever)")
    parser.add("--task-timeout", type=_seconds, metavar="SECONDS",
               help="send a command running longer SIGTERM (SIGKILL 5 s later) and nack it")
    parser.add("--retries", type=_natural, metavar="N",
               help="retry a failed task at most N times (fewer if the queue's requeue_limit "
                    "says so), then give it up: to the queue's dead_letter queue, else it is "
                    "deleted (default: as requeue_limit says)")
    parser.add("--grace", type=_seconds, default=10.0, metavar="SECONDS",
               help="on SIGTERM/SIGINT, how long running commands may finish before they are "
                    "killed and their messages requeued (default 10)")
    parser.add("--joblog", metavar="FILE",
               help="append one tab-separated line per task to FILE: message id, host, start "
                    "time, seconds, exit status, signal, delivery number")
    parser.add("-f", action="store_true", help="create the root folder and the queue if missing")
    parser.add("-v", action="store_true", help="verbose mode: log progress to stderr")
    parser.add("-d", action="store_true", help="debug mode: log details, show tracebacks")
    parser.add("-s", action="store_true",
               help="silent mode: no status line or task lines (the commands' output and "
                    "errors are still shown)")
    parser.set_defaults(format="plain")


class _WorkReport:
    """Show ``ddmq work``'s progress on stderr: a status line on a terminal, else a line a task."""

    def __init__(self, silent: bool, stream: Optional[TextIO] = None) -> None:
        self.stream = stream or sys.stderr
        self.silent = silent
        self.tty = not silent and self.stream.isatty()
        #: The worker whose status() the status line shows; set before it runs.
        self.worker: Optional[CommandWorker] = None
        self.shown = False

    def event(self, kind: EventKind, record: EventRecord) -> None:
        if self.silent:
            return
        if kind == "stopping":
            self._line("ddmq work: {signal}: claiming nothing more; {running} running, "
                       "{grace:g} s to finish".format(**record))
        elif kind == "lease_lost":
            self._line("ddmq work: lost the lease of {id} while it ran (another worker may run "
                       "it again); its result will not be acked".format(**record))
        elif kind != "tick" and not self.tty:
            self._line(self.task_line(kind, record))
        if self.tty:
            self._status()

    @staticmethod
    def task_line(kind: str, record: EventRecord) -> str:
        """Return the log line of a task that ended."""
        fate = "exit {}".format(record["exit"]) if record.get("exit") is not None else \
            record.get("signal") or "not started"
        line = "ddmq work: {} {} (delivery {}, {}, {:.3f} s)".format(
            kind, record["id"], record["delivery"], fate, record.get("seconds") or 0.0)
        reason = record.get("reason")
        if kind != "done" and reason:
            line += ": " + reason.splitlines()[0]
        return line

    def stderr(self, data: bytes) -> None:
        """Pass on a command's stderr, keeping the status line below it."""
        if self.shown:
            self.stream.write("\r\033[K")
            self.shown = False
        self.stream.flush()
        _write_all(self.stream.fileno(), data)
        if self.tty and data.endswith(b"\n"):
            self._status()

    def _line(self, text: str) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def _status(self) -> None:
        assert self.worker is not None, "the status line shows a running worker"
        status = self.worker.status()
        rate, eta = status["rate"], status["eta"]
        text = "ddmq work: {done} done, {failed} failed, {running} running, {waiting} waiting, " \
               "{rate} tasks/s, ETA {eta}".format(
                   done=status["done"], failed=status["failed"] + status["lost"],
                   running=status["running"],
                   waiting="?" if status["waiting"] is None else status["waiting"],
                   rate="-" if rate is None else "{:.1f}".format(rate),
                   eta="-" if eta is None else "{}:{:02d}".format(int(eta) // 60,
                                                                   int(eta) % 60))
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except OSError:
            width = 80
        self.stream.write("\r\033[K" + text[:max(width - 1, 10)])
        self.stream.flush()
        self.shown = True

    def end(self, summary: Summary) -> None:
        if self.silent:
            return
        text = "ddmq work: {done} done, {failed} failed, {lost} lost, {interrupted} requeued " \
               "unfinished, in {seconds:.1f} s".format(**summary)
        if summary["stopped_by"]:
            text += " (stopped by {})".format(summary["stopped_by"])
        self._line(text)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def work(args: argparse.Namespace) -> Output:
    """Run a command for every message of a queue (see WORK_DESCRIPTION); nothing on stdout."""
    import signal

    from .worker import CommandWorker

    b = _open_broker(args)
    report = _WorkReport(args.s)
    worker = CommandWorker(b, args.queue, args.argv, jobs=args.jobs,
                           max_messages=args.max_messages, idle_exit=args.idle_exit,
                           task_timeout=args.task_timeout, retries=args.retries, grace=args.grace,
                           joblog=args.joblog,
                           on_event=report.event, on_stderr=report.stderr,
                           tick=0.5 if report.tty else None)
    report.worker = worker
    summary = worker.run()
    report.end(summary)
    if summary["stopped_by"]:
        status = 128 + getattr(signal, summary["stopped_by"])
    elif summary["failed"] or summary["lost"]:
        status = EXIT_TASKS_FAILED
    else:
        status = EXIT_OK
    return Output([], lambda record: "", status)


#: The subcommands that ``ddmq`` and ``ddmq json`` run; nothing else is ever called.
COMMANDS = {
    "view": Command("List queues and the number of messages in them", _build_view, view),
    "create": Command("Create queue(s)", _build_create, create),
    "delete": Command("Delete queue(s) and their messages",
                      _build_queues("delete", "skip missing queues (and create a missing root)"),
                      delete),
    "publish": Command("Publish a message to a queue", _build_publish, publish),
    "consume": Command("Consume message(s) from a queue", _build_consume, consume),
    "pop": Command("Consume message(s) from a queue and delete them at once: at most once "
                   "delivery, a message is lost if its consumer fails", _build_consume, pop),
    "peek": Command("Show the waiting message(s) of a queue in serving order without consuming "
                    "them", _build_peek, peek),
    "touch": Command("Renew the lease of a consumed message: print its new file name",
                     _build_touch, touch),
    "ack": Command("Positively acknowledge consumed message(s): delete them",
                   _build_settle("ack", "requeue the messages instead of deleting them"), ack),
    "nack": Command("Negatively acknowledge consumed message(s): requeue or delete them",
                    _build_settle("nack", "requeue, whatever the message's and queue's settings"),
                    nack),
    "del_msg": Command("Delete message(s), waiting or consumed", _build_del_msg, del_msg),
    "redrive": Command("Send dead-lettered messages back to their queue", _build_redrive,
                       redrive),
    "subscribe": Command("Subscribe queue(s) to a topic: each gets a copy of every later "
                         "publish to it", _build_subscribe("subscribe"), subscribe),
    "unsubscribe": Command("Unsubscribe queue(s) from a topic", _build_subscribe("unsubscribe"),
                           unsubscribe),
    "subscriptions": Command("List the queues subscribed to each topic (or to one)",
                             _build_subscriptions, subscriptions),
    "purge": Command("Delete all messages of queue(s), keeping the queues",
                     _build_queues("purge", "create the root folder and the queues if missing"),
                     purge),
    "clean": Command("Requeue or delete the expired messages of queue(s)",
                     _build_queues("clean", "create the root folder and the queues if missing"),
                     clean),
    "work": _WorkCommand("Run a command for every message of a queue", _build_work, work),
}
JSON_COMMAND = Command("Run command(s) packaged as JSON objects", _build_json, None)


# Rendering.

def render(output: Output, fmt: str) -> str:
    """Return ``output``'s records as text in format ``fmt`` ('' if plain and there are none)."""
    records = output.records
    if fmt in ("json", "yaml"):
        return _render_document(output.document(records), fmt)
    if fmt == "jsonl":
        import json

        return "".join(json.dumps(record) + "\n" for record in records)
    if fmt == "table":
        return _render_table(records, output.columns)
    if fmt == "prometheus":
        from . import monitor  # not at the top: start-up time of plain commands

        text: str = monitor.prometheus_text(records)
        return text
    blocks = [output.plain(record) for record in records]
    separator = "\n\n" if any("\n" in block for block in blocks) else "\n"
    return separator.join(blocks) + "\n" if blocks else ""


def _render_document(document: object, fmt: str) -> str:
    """Return the one json or yaml (``fmt``) document of a command, or of a ``ddmq json`` run."""
    if fmt == "json":
        import json

        return json.dumps(document) + "\n"
    import yaml

    text: str = yaml.safe_dump(document, default_flow_style=False, sort_keys=False,
                               allow_unicode=True)
    return text


def _render_table(records: list[Record], columns: Optional[Columns] = None) -> str:
    """Return records (dicts with the same keys) as a beautifultable table.

    ``columns`` lists (key, header) pairs to show; None shows every key.
    """
    from beautifultable import BeautifulTable

    if columns is None:
        keys = list(records[0]) if records else ["queue"]
        columns = [(key, key) for key in keys]
    # On a terminal, fit its width; in a file or pipe, never wrap a cell.
    table = BeautifulTable(maxwidth=_terminal_width() if sys.stdout.isatty() else 400)
    table.columns.header = [header for _, header in columns]
    # An empty table prints nothing at all; one blank row keeps the header visible.
    for record in records or [{}]:
        table.rows.append(["-" if record.get(key) is None and record else record.get(key, "")
                           for key, _ in columns])
    table.columns.alignment[columns[0][1]] = BeautifulTable.ALIGN_LEFT
    return str(table) + "\n"


def _terminal_width() -> int:
    # The terminal's own size first: a COLUMNS exported by a parent shell may be stale.
    try:
        return os.get_terminal_size(1).columns
    except OSError:
        pass
    try:
        return int(os.environ.get("COLUMNS", "")) or 80
    except ValueError:
        return 80


# Running.

_FORCE = ("view", "create", "delete", "publish", "consume", "pop", "purge", "clean",
          "subscribe")  # have -f
_FORCE_HINT = " (use -f to create it)"
_SHOWN_WHEN_SILENT = ("consume", "pop", "peek")  # their -s only silences "empty"

def _execute(name: str, args: argparse.Namespace, documents: Optional[Documents] = None) -> int:
    """Run subcommand ``name`` with parsed ``args`` and print its output; return its status.

    With ``documents`` (a dict), a json or yaml document is added to
    ``documents[format]`` instead of being printed (``ddmq json`` prints
    them together, as one document).
    """
    run = COMMANDS[name].run
    assert run is not None, "every command of COMMANDS has its function"
    output = run(args)
    if output.shown:
        return output.status
    if documents is not None and args.format in ("json", "yaml"):
        if name in _SHOWN_WHEN_SILENT or not getattr(args, "s", False):
            documents.setdefault(args.format, []).append(output.document(output.records))
        return output.status
    if name in _SHOWN_WHEN_SILENT or not getattr(args, "s", False):
        sys.stdout.write(render(output, args.format))
        sys.stdout.flush()
    return output.status


def _guarded(name: str, func: Callable[[], int], debug: bool) -> int:
    """Return ``func()``; turn an exception into one line on stderr and an exit status."""
    try:
        return func()
    except (UsageError, InvalidInputError) as exc:
        return _report(exc, name, EXIT_USAGE, debug)
    except RootError as exc:
        return _report(exc, name, EXIT_ERROR, debug, _FORCE_HINT if name in _FORCE else "")
    except QueueNotFoundError as exc:
        # delete's own message already says what -f does there.
        return _report(exc, name, EXIT_ERROR, debug,
                       _FORCE_HINT if name in _FORCE and name != "delete" else "")
    except DdmqError as exc:
        return _report(exc, name, EXIT_ERROR, debug)
    except BrokenPipeError:
        raise
    except OSError as exc:
        return _report(exc, name, EXIT_ERROR, debug)
    except Exception as exc:  # a bug: still one line; -d shows the traceback
        return _report("unexpected {}: {}".format(type(exc).__name__, exc), name, EXIT_ERROR,
                       debug, "" if debug else " (run with -d for the traceback)")


def _report(error: Union[Exception, str], name: str, status: int, debug: bool,
            hint: str = "") -> int:
    """Print ``error`` in one line on stderr, traceback first if ``debug``; return ``status``."""
    if debug:
        import traceback

        traceback.print_exc()
    sys.stderr.write("ddmq {}: error: {}{}\n".format(name, error, hint))
    return status


def _read_objects(text: str) -> list[object]:
    """Return the JSON values in ``text``: one, or several one after the other (one per line)."""
    import json

    decoder = json.JSONDecoder()
    values: list[object] = []
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index == len(text):
            return values
        try:
            value, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise UsageError("malformed JSON at line {} column {}: {}".format(
                exc.lineno, exc.colno, exc.msg)) from None
        values.append(value)


def _packaged_args(package: object, number: int) -> tuple[str, argparse.Namespace]:
    """Return (command name, parsed args) of packaged operation ``number``; check every key."""
    where = "object {}".format(number)
    if not isinstance(package, dict):
        raise UsageError("{}: expected a JSON object, not {}".format(
            where, type(package).__name__))
    package = dict(package)
    if "command" in package and "cmd" in package:
        raise UsageError("{}: give 'command' or 'cmd', not both".format(where))
    key = "command" if "command" in package else "cmd"
    name = package.pop(key, None)
    if name is None:
        raise UsageError("{}: missing key 'command' (one of: {})".format(
            where, ", ".join(COMMANDS)))
    if not isinstance(name, str) or name not in COMMANDS:
        raise UsageError("{}: unknown command {!r} in key '{}' (one of: {})".format(
            where, name, key, ", ".join(COMMANDS)))
    parser = COMMANDS[name].parser(name)
    positional_keys = [key for key, action in parser.keys.items() if not action.option_strings]
    options: list[str] = []
    positionals: dict[str, str] = {}
    for key, value in package.items():
        action = parser.keys.get(key)
        if action is None:
            raise UsageError("{}: unknown key {!r} for command {!r} (known: {})".format(
                where, key, name, ", ".join(["command"] + list(parser.keys))))
        if value is None:
            continue
        if action.nargs == 0:  # a flag such as -f or -s
            if not isinstance(value, bool):
                raise UsageError("{}: key '{}' must be true or false, not {!r}".format(
                    where, key, value))
            if value:
                options.append(action.option_strings[0])
        elif action.option_strings:
            options += [action.option_strings[0], _packaged_text(value, key, where)]
        else:
            positionals[key] = _packaged_text(value, key, where)
    # "--" ends the options: a message or root starting with "-" stays a positional.
    argv = options + ["--"] + [positionals[key] for key in positional_keys if key in positionals]
    try:
        return name, parser.parse_args(argv)
    except UsageError as exc:
        raise UsageError("{} ({}): {}".format(where, name, exc)) from None


def _packaged_text(value: object, key: str, where: str) -> str:
    """Return a packaged value as command-line text; a list of names becomes a comma list."""
    if isinstance(value, list) and key in ("queue", "msg_files"):
        if not all(isinstance(item, str) for item in value):
            raise UsageError("{}: key '{}' must be a list of strings".format(where, key))
        return ",".join(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UsageError("{}: key '{}' must be a string or an integer, not {!r}".format(
            where, key, value))
    return str(value)


def _run_json(argv: list[str]) -> int:
    """Run ``ddmq json``; every object is parsed and checked before the first one runs."""
    args = JSON_COMMAND.parser("json").parse_args(argv)
    if args.payload is not None:
        text = args.payload
    elif sys.stdin is None or sys.stdin.isatty():
        raise UsageError("give a JSON object as argument, or pipe objects on stdin")
    else:
        text = sys.stdin.read()
    operations = [_packaged_args(package, number)
                  for number, package in enumerate(_read_objects(text), 1)]
    for number, (name, op_args) in enumerate(operations, 1):
        # The parser has checked each (publish's Parser.check included); what is left is
        # the one thing it cannot know: whether stdin holds these JSON objects.
        if name == "publish":
            if args.payload is None and op_args.lines == "-":
                raise UsageError("object {} (publish): 'lines': '-' reads standard input, which "
                                 "holds the JSON objects here".format(number))
    if not operations:
        raise UsageError("no JSON object given")
    status = EXIT_OK
    documents: Documents = {}
    try:
        for name, op_args in operations:
            result = _guarded(name, functools.partial(_execute, name, op_args, documents),
                              op_args.d)
            if result not in (EXIT_OK, EXIT_EMPTY):
                return result  # a failed operation stops the run: later ones may depend on it
            status = max(status, result)
    finally:
        _print_documents(documents)
    return status


def _print_documents(documents: Documents) -> None:
    """Print the json (then yaml) documents of a ``ddmq json`` run as one document each.

    One operation's document is printed as it is; several make a list, in
    the order the operations ran.
    """
    for fmt in ("json", "yaml"):
        docs = documents.get(fmt)
        if docs:
            whole = docs[0] if len(docs) == 1 else docs
            sys.stdout.write(_render_document(whole, fmt))
    sys.stdout.flush()


def _dispatch(argv: list[str]) -> int:
    """Run the subcommand named by ``argv[0]``; return the exit status."""
    if not argv:
        sys.stderr.write(USAGE)
        return EXIT_USAGE
    name, rest = argv[0], argv[1:]
    if name in ("-h", "--help"):
        sys.stdout.write(HELP)
        return EXIT_OK
    if name in ("-v", "--version"):
        sys.stdout.write("ddmq version {}\n".format(__version__))
        return EXIT_OK
    if name == "json":
        return _guarded(name, lambda: _run_json(rest), False)
    if name not in COMMANDS:
        sys.stderr.write("ddmq: error: unknown command {!r} (one of: {}; see 'ddmq -h')\n".format(
            name, ", ".join(list(COMMANDS) + ["json"])))
        return EXIT_USAGE
    if name == "view":
        rest = _seconds_left_out(rest, "--watch", WATCH_SECONDS)
    return _guarded(name, lambda: _execute(name, COMMANDS[name].parser(name).parse_args(rest)),
                    "-d" in rest)


def _seconds_left_out(argv: list[str], option: str, default: float) -> list[str]:
    """Return ``argv`` with ``option`` given its ``default`` where no number follows it.

    argparse gives an optional value the next word whatever it is, so
    ``view --watch ROOT`` would read ROOT as the seconds.
    """
    out = list(argv)
    for index, arg in enumerate(out[:-1]):
        if arg == option and not out[index + 1].startswith("-"):
            try:
                float(out[index + 1])
            except ValueError:
                out[index] = "{}={:g}".format(option, default)
    return out


def main(argv: Optional[Iterable[str]] = None) -> int:
    """Run the ``ddmq`` command line on ``argv`` (default: sys.argv[1:]); return the status."""
    try:
        return _dispatch(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`ddmq view | head -1`): stop quietly; point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
