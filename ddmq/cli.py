"""The ``ddmq`` command line: a thin layer over :class:`ddmq.broker`.

``ddmq <command> [<args>]`` parses one subcommand with argparse, validates
every argument before anything touches the disk, calls the broker, and
returns *records* (plain dicts).  A renderer then prints the records in the
chosen ``--format``:

* ``plain`` (default, ``view`` excepted): one short line per record; a
  message is a block of ``key = value`` lines, blocks separated by a blank line.
* ``table`` (``view``'s default): a beautifultable table.
* ``json``: one JSON object per record, one per line (JSON Lines), so
  ``ddmq consume -n 5 --format json`` prints five lines, one per message.
* ``yaml``: one YAML document holding a list with one mapping per record.

``ddmq json '<object>'`` runs an operation packaged as a JSON object (or, with
no argument, each object read from stdin).  The object is translated into the
same argument list the command line would take and parsed by the same
parser; its ``command`` is looked up in :data:`COMMANDS`, never evaluated.

Exit status (:data:`EXIT_OK` ...):

====  ===============================================================
0     success
1     error: missing root or queue, message not found, filesystem error
2     usage error: unknown command or option, invalid value, bad JSON
3     nothing to consume: the queue was empty
====  ===============================================================

Errors are one line on stderr; ``-d`` adds the traceback and debug logging.
Only what a subcommand needs is imported: beautifultable and the YAML
emitter are imported by their renderers.
"""

import argparse
import os
import sys

from . import __version__
from .errors import DdmqError, InvalidInputError, QueueNotFoundError, RootError
from .names import READY_NAME, WORK_NAME, check_queue_name

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_EMPTY = 3

FORMATS = ("plain", "json", "yaml")

USAGE = """usage: ddmq <command> [<args>]

The available commands are:
view      List queues and number of messages
create    Create a queue
delete    Delete a queue
publish   Publish message to queue
consume   Consume message from queue
ack       Positively acknowledge a message
nack      Negatively acknowledge a message (possibly requeue)
del_msg   Delete the specified message
purge     Purge all messages from queue
clean     Clean out expired messages from queue
json      Run a command packaged as a JSON object

For more info about the commands, run
ddmq <command> -h
"""

HELP = USAGE + """
Command-line interface to Dead Drop Messaging Queue (ddmq).

optional arguments:
  -h, --help     show this help message and exit
  -v, --version  print version

exit status: 0 success, 1 error, 2 usage error, 3 nothing to consume
"""

# The order fields of a message are shown in: what a reader needs first.
MESSAGE_FIELDS = ("message", "id", "filename", "queue", "priority", "queue_number", "timeout",
                  "requeue", "requeue_prio", "requeue_counter", "requeue_limit")


class UsageError(Exception):
    """The command line or a packaged operation is malformed (exit status 2)."""


class CommandFailed(Exception):
    """A command did part of its work and reported the rest on stderr (exit status 1)."""


class Output:
    """What a command produced: records, how to show one as plain text, and the exit status."""

    def __init__(self, records, plain, status=EXIT_OK):
        self.records = records
        self.plain = plain
        self.status = status


def help_formatter(prog):
    """Return argparse's help formatter, sized without importing shutil (faster start-up)."""
    try:
        width = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(2).columns
    except (ValueError, OSError):
        width = 80
    return argparse.HelpFormatter(prog, width=max(width, 40) - 2)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError and remembers the actions behind each key."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=help_formatter, **kwargs)
        self.keys = {}

    def add(self, *flags, **kwargs):
        """Add an argument and record its action under its destination key."""
        action = self.add_argument(*flags, **kwargs)
        self.keys[action.dest] = action
        return action

    def error(self, message):
        raise UsageError("{} (see '{} -h')".format(message, self.prog))


# Argument types: argparse turns their ArgumentTypeError into a usage error.

def natural(text):
    """Return ``text`` as an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an integer >= 0, not {!r}".format(text)) from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be an integer >= 0, not {!r}".format(text))
    return value


def positive(text):
    """Return ``text`` as an integer >= 1."""
    value = natural(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be an integer >= 1, not {!r}".format(text))
    return value


def queue_name(text):
    """Return ``text`` if it is a valid queue name."""
    try:
        return check_queue_name(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def queue_list(text):
    """Split a comma-separated list of queue names, checking every name."""
    return list(dict.fromkeys(queue_name(queue) for queue in text.split(",")))


def file_list(text, patterns):
    """Split a comma-separated list of message file names; reject paths and other names."""
    files = text.split(",")
    for name in files:
        if "/" in name or os.sep in name or (os.altsep and os.altsep in name):
            raise argparse.ArgumentTypeError(
                "{!r} is a path: give the bare message file name, without folders".format(name))
        if not any(pattern.match(name) for pattern in patterns):
            raise argparse.ArgumentTypeError("{!r} is not a message file name".format(name))
    return list(dict.fromkeys(files))


def work_files(text):
    """Split a comma-separated list of consumed messages' file names, checking every name."""
    return file_list(text, (WORK_NAME,))


def message_files(text):
    """Split a comma-separated list of waiting or consumed messages' file names."""
    return file_list(text, (READY_NAME, WORK_NAME))


# Argument sets shared by the subcommands.

def add_root(parser):
    parser.add("root", help="root folder of the queues (the folder holding ddmq.yaml)")


def add_logging(parser, silent=True, silent_help="silent mode: print nothing on success"):
    parser.add("-v", action="store_true", help="verbose mode: log progress to stderr")
    parser.add("-d", action="store_true", help="debug mode: log details, show tracebacks")
    if silent:
        parser.add("-s", action="store_true", help=silent_help)


def add_format(parser, choices=FORMATS, default="plain"):
    parser.add("--format", choices=choices, default=default,
               help="output format (default: {})".format(default))


def add_force(parser, what="create the root folder and the queue if missing"):
    parser.add("-f", action="store_true", help=what)


def add_skip_cleaning(parser, verb):
    parser.add("-C", "--skip_cleaning", "--skip-cleaning", dest="skip_cleaning",
               action="store_true",
               help="{} without first cleaning expired messages out of the queue".format(verb))


def build_view(parser):
    add_root(parser)
    parser.add("queue", nargs="?", type=queue_list,
               help="comma-separated queues to show (default: all)")
    add_force(parser, "create the root folder (and the named queues) if missing")
    parser.add("-n", action="store_true", help="only list the names of the queues")
    add_format(parser, ("table",) + FORMATS, "table")
    add_logging(parser, silent=False)


def build_queues(action):
    def build(parser):
        add_root(parser)
        parser.add("queue", type=queue_list,
                   help="comma-separated names of the queues to {}".format(action))
        if action == "delete":
            add_force(parser, "create the root folder if missing; skip missing queues")
        elif action == "create":
            add_force(parser, "create the root folder if missing")
        else:
            add_force(parser, "create the root folder and the queues if missing")
        add_format(parser)
        add_logging(parser)
    return build


def build_publish(parser):
    add_root(parser)
    parser.add("queue", type=queue_name, help="queue to publish to")
    parser.add("message", help="message text (quote it; put -- before it if it starts with -)")
    add_force(parser)
    parser.add("-p", "--priority", type=natural, metavar="N",
               help="priority of the message, an integer >= 0 (lower is served first)")
    parser.add("-t", "--timeout", type=natural, metavar="SECONDS",
               help="seconds a consumed message may stay unacknowledged before it expires")
    parser.add("-r", "--requeue", action="store_true",
               help="requeue the message when it is nacked or expires")
    parser.add("-l", "--requeue_limit", type=natural, metavar="N",
               help="times the message may be requeued before it is deleted")
    parser.add("--requeue_prio", type=natural, metavar="N",
               help="priority the message gets when requeued (implies -r)")
    add_skip_cleaning(parser, "publish")
    add_format(parser)
    add_logging(parser)


def build_consume(parser):
    add_root(parser)
    parser.add("queue", type=queue_name, help="queue to consume from")
    add_force(parser)
    parser.add("-n", type=positive, default=1, metavar="N", help="number of messages to consume (default 1)")
    add_skip_cleaning(parser, "consume")
    add_format(parser)
    add_logging(parser, silent_help="do not report an empty queue on stderr")


def build_ack(verb, requeue_help):
    def build(parser):
        add_root(parser)
        parser.add("queue", type=queue_name, help="queue the messages were consumed from")
        parser.add("msg_files", type=work_files, help="comma-separated work file names of the messages to "
                   "{} (the filename that consume printed)".format(verb))
        parser.add("-r", "--requeue", action="store_true", help=requeue_help)
        add_skip_cleaning(parser, verb)
        add_format(parser)
        add_logging(parser)
    return build


def build_del_msg(parser):
    add_root(parser)
    parser.add("queue", type=queue_name, help="queue the messages are in")
    parser.add("msg_files", type=message_files, help="comma-separated file names of the messages to delete "
               "(waiting or consumed)")
    add_format(parser)
    add_logging(parser)


def build_json(parser):
    parser.add("payload", nargs="?",
               help="the JSON object, in single quotes; without it, JSON objects are read "
                    "from stdin, one per line")


# The subcommands: argparse has already checked every name and number (so a
# bad one changes nothing); each calls the broker and returns an Output.
# Nothing here touches the disk except through the broker.

def open_broker(args):
    """Return the broker of ``args.root``, creating it if ``-f`` was given."""
    from .broker import broker

    return broker(args.root, create=getattr(args, "f", False), verbose=args.v, debug=args.d)


def require_queues(b, queues):
    """Check that every queue exists (or create it if the broker may), before any change."""
    for queue in queues:
        b.get_settings(queue)


def message_record(msg):
    """Return a message as a dict in the order of MESSAGE_FIELDS."""
    data = msg.to_dict()
    return {key: data[key] for key in MESSAGE_FIELDS}


def plain_message(record):
    return "\n".join("{} = {}".format(key, value) for key, value in record.items())


def cmd_view(args):
    queues = args.queue
    b = open_broker(args)
    if queues is None:
        queues = b.list_queues()
    else:
        require_queues(b, queues)
    if args.n:
        records = [{"queue": queue} for queue in queues]
    else:
        records = []
        for queue in queues:
            waiting, work = b.get_message_list(queue)
            records.append({"queue": queue, "waiting": len(waiting), "work": len(work)})
    return Output(records, lambda r: " ".join(str(value) for value in r.values()))


def cmd_create(args):
    queues = args.queue
    b = open_broker(args)
    existing = set(b.list_queues())
    records = []
    for queue in queues:
        if queue not in existing:
            b.create_queue(queue)
        records.append({"queue": queue, "created": queue not in existing})
    return Output(records, lambda r: ("created queue {queue}" if r["created"]
                                      else "queue {queue} already exists").format(**r))


def cmd_delete(args):
    queues = args.queue
    b = open_broker(args)
    existing = set(b.list_queues())
    missing = [queue for queue in queues if queue not in existing]
    if missing and not args.f:
        raise QueueNotFoundError("queue {!r} does not exist in {} (nothing deleted; -f skips "
                                 "missing queues)".format(missing[0], b.root), "no_queue")
    records = []
    for queue in queues:
        if queue in existing:
            b.delete_queue(queue)
        records.append({"queue": queue, "deleted": queue in existing})
    return Output(records, lambda r: ("deleted queue {queue}" if r["deleted"]
                                      else "queue {queue} does not exist (skipped)").format(**r))


def cmd_publish(args):
    b = open_broker(args)
    requeue = True if args.requeue or args.requeue_prio is not None else None
    msg = b.publish(args.queue, msg_text=args.message, priority=args.priority,
                    requeue=requeue, requeue_prio=args.requeue_prio, timeout=args.timeout,
                    requeue_limit=args.requeue_limit, skip_cleaning=args.skip_cleaning)
    return Output([message_record(msg)], plain_message)


def cmd_consume(args):
    b = open_broker(args)
    msgs = b.consume(args.queue, n=args.n, skip_cleaning=args.skip_cleaning)
    if args.n == 1:
        msgs = [msgs] if msgs is not None else []
    if not msgs:
        if not args.s:
            sys.stderr.write("ddmq consume: no message in queue {!r}\n".format(args.queue))
        return Output([], plain_message, EXIT_EMPTY)
    return Output([message_record(msg) for msg in msgs], plain_message)


def settle(args, verb):
    """Run ack or nack (``verb``) on the named work files; report the ones that are gone."""
    files = args.msg_files
    b = open_broker(args)
    method = b.ack if verb == "ack" else b.nack
    done = method(args.queue, files, requeue=True if args.requeue else None,
                  skip_cleaning=args.skip_cleaning)
    records = [{"queue": args.queue, "filename": name, verb + "ed": True} for name in done]
    lost = [name for name in files if name not in done]
    for name in lost:
        sys.stderr.write("ddmq {}: error: message {}/work/{} is gone: already settled, or its "
                         "lease expired and another process took it\n".format(
                             verb, args.queue, name))
    return Output(records, lambda r: "{}ed {}".format(verb, r["filename"]),
                  EXIT_ERROR if lost else EXIT_OK)


def cmd_ack(args):
    return settle(args, "ack")


def cmd_nack(args):
    return settle(args, "nack")


def cmd_del_msg(args):
    from .message import message

    files = args.msg_files
    b = open_broker(args)
    require_queues(b, [args.queue])
    records, status = [], EXIT_OK
    for name in files:
        try:
            b.delete_message(message(queue=args.queue, filename=name))
        except DdmqError as exc:
            sys.stderr.write("ddmq del_msg: error: {}\n".format(exc))
            status = EXIT_ERROR
            continue
        records.append({"queue": args.queue, "filename": name, "deleted": True})
    return Output(records, lambda r: "deleted {}".format(r["filename"]), status)


def cmd_purge(args):
    queues = args.queue
    b = open_broker(args)
    require_queues(b, queues)
    records = []
    for queue in queues:
        waiting, work = b.purge_queue(queue)
        records.append({"queue": queue, "waiting": waiting, "work": work})
    return Output(records, lambda r: "purged queue {queue}: {waiting} waiting, {work} at "
                                     "work".format(**r))


def cmd_clean(args):
    queues = args.queue
    b = open_broker(args)
    require_queues(b, queues)
    records = []
    for queue in queues:
        b.clean(queue, force=True)
        records.append({"queue": queue, "cleaned": True})
    return Output(records, lambda r: "cleaned queue {queue}".format(**r))


class Command:
    """One subcommand: its help, how to build its parser, and the function that runs it."""

    def __init__(self, summary, build, run):
        self.summary = summary
        self.build = build
        self.run = run

    def parser(self, name):
        """Return a new argument parser for this subcommand."""
        parser = Parser(prog="ddmq " + name, description=self.summary + ".",
                        epilog="exit status: 0 success, 1 error, 2 usage error, "
                               "3 nothing to consume")
        self.build(parser)
        return parser


#: The subcommands ``ddmq`` and ``ddmq json`` can run; nothing else is ever called.
COMMANDS = {
    "view": Command("List queues and the number of messages in them", build_view, cmd_view),
    "create": Command("Create queue(s)", build_queues("create"), cmd_create),
    "delete": Command("Delete queue(s) and their messages", build_queues("delete"), cmd_delete),
    "publish": Command("Publish a message to a queue", build_publish, cmd_publish),
    "consume": Command("Consume message(s) from a queue", build_consume, cmd_consume),
    "ack": Command("Positively acknowledge consumed message(s): delete them",
                   build_ack("ack", "requeue the messages instead of deleting them"), cmd_ack),
    "nack": Command("Negatively acknowledge consumed message(s): requeue or delete them",
                    build_ack("nack", "force a requeue, whatever the message's settings"),
                    cmd_nack),
    "del_msg": Command("Delete message(s), waiting or consumed", build_del_msg, cmd_del_msg),
    "purge": Command("Delete all messages of queue(s), keeping the queues", build_queues("purge"),
                     cmd_purge),
    "clean": Command("Requeue or delete the expired messages of queue(s)", build_queues("clean"),
                     cmd_clean),
}
JSON_COMMAND = Command("Run command(s) packaged as JSON objects", build_json, None)


# Rendering.

def render(output, fmt):
    """Return the text of ``output``'s records in format ``fmt`` ('' if there are none)."""
    records = output.records
    if fmt == "json":
        import json

        return "".join(json.dumps(record) + "\n" for record in records)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(records, default_flow_style=False, sort_keys=False,
                              allow_unicode=True)
    if fmt == "table":
        return render_table(records)
    blocks = [output.plain(record) for record in records]
    separator = "\n\n" if any("\n" in block for block in blocks) else "\n"
    return separator.join(blocks) + "\n" if blocks else ""


def render_table(records):
    """Return ``records`` (dicts with the same keys) as a beautifultable table."""
    from beautifultable import BeautifulTable

    table = BeautifulTable()
    header = list(records[0]) if records else ["queue", "waiting", "work"]
    table.columns.header = header
    for record in records or [dict.fromkeys(header, "")]:
        table.rows.append([record[key] for key in header])
    table.columns.alignment["queue"] = BeautifulTable.ALIGN_LEFT
    return str(table) + "\n"


# Running commands.

def execute(name, args):
    """Run subcommand ``name`` with parsed ``args``, print its output; return the exit status."""
    output = COMMANDS[name].run(args)
    if not getattr(args, "s", False) or name == "consume":
        sys.stdout.write(render(output, args.format))
        sys.stdout.flush()
    return output.status


def run_guarded(name, func, debug):
    """Call ``func``; turn any exception into one line on stderr and an exit status."""
    try:
        return func()
    except UsageError as exc:
        return report(exc, name, EXIT_USAGE, debug)
    except InvalidInputError as exc:
        return report(exc, name, EXIT_USAGE, debug)
    except (RootError, QueueNotFoundError) as exc:
        hint = " (use -f to create it)" if name in ("view", "create", "publish", "consume",
                                                    "purge", "clean") else ""
        return report(exc, name, EXIT_ERROR, debug, hint)
    except DdmqError as exc:
        return report(exc, name, EXIT_ERROR, debug)
    except OSError as exc:
        return report(exc, name, EXIT_ERROR, debug)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except Exception as exc:  # a bug: still one line, the traceback with -d
        return report("unexpected {}: {}".format(type(exc).__name__, exc), name, EXIT_ERROR,
                      debug, "" if debug else " (run with -d for the traceback)")


def report(error, name, status, debug, hint=""):
    """Print ``error`` as one line on stderr (after its traceback if ``debug``); return ``status``."""
    if debug:
        import traceback

        traceback.print_exc()
    sys.stderr.write("ddmq {}: error: {}{}\n".format(name, error, hint))
    return status


def run_json(text):
    """Run the packaged operations in ``text``, in order; return the exit status.

    Every object is parsed and its arguments checked before the first one runs.
    """
    operations = [packaged_args(package, number) for number, package in
                  enumerate(read_objects(text), 1)]
    if not operations:
        raise UsageError("no JSON object given")
    status = EXIT_OK
    for name, args in operations:
        result = run_guarded(name, lambda: execute(name, args), args.d)
        if result not in (EXIT_OK, EXIT_EMPTY):
            return result
        status = max(status, result)
    return status


def read_objects(text):
    """Return the JSON values in ``text``: one object, or several one after the other."""
    import json

    decoder = json.JSONDecoder()
    values, index = [], 0
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


def packaged_args(package, number):
    """Return (command name, parsed args) for one packaged operation; check every key."""
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
        raise UsageError("{}: missing key 'command' (one of: {})".format(where, ", ".join(COMMANDS)))
    if not isinstance(name, str) or name not in COMMANDS:
        raise UsageError("{}: unknown command {!r} in key '{}' (one of: {})".format(
            where, name, key, ", ".join(COMMANDS)))
    parser = COMMANDS[name].parser(name)
    options, positionals = [], []
    for key, value in package.items():
        action = parser.keys.get(key)
        if action is None:
            raise UsageError("{}: unknown key {!r} for command {!r} (known: {})".format(
                where, key, name, ", ".join(["command"] + list(parser.keys))))
        if value is None:
            continue
        if action.nargs == 0:
            if not isinstance(value, bool):
                raise UsageError("{}: key '{}' must be true or false, not {!r}".format(
                    where, key, value))
            if value:
                options.append(action.option_strings[0])
            continue
        text = json_value(value, key, where)
        if action.option_strings:
            options += [action.option_strings[0], text]
        else:
            positionals.append((list(parser.keys).index(key), text))
    argv = options + ["--"] + [text for _, text in sorted(positionals)]
    try:
        return name, parser.parse_args(argv)
    except UsageError as exc:
        raise UsageError("{} ({}): {}".format(where, name, exc)) from None


def json_value(value, key, where):
    """Return a packaged value as command-line text; a list becomes a comma-separated list."""
    if isinstance(value, list) and key in ("queue", "msg_files"):
        if not all(isinstance(item, str) for item in value):
            raise UsageError("{}: key '{}' must be a list of strings".format(where, key))
        return ",".join(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UsageError("{}: key '{}' must be a string or an integer, not {!r}".format(
            where, key, value))
    return str(value)


def main(argv=None):
    """Run the ``ddmq`` command line with ``argv`` (default: sys.argv[1:]); return the status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return dispatch(argv)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as other commands do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR


def dispatch(argv):
    """Pick the subcommand named by ``argv[0]`` and run it; return the exit status."""
    if not argv:
        sys.stderr.write(USAGE)
        return EXIT_USAGE
    name = argv[0]
    if name in ("-h", "--help"):
        sys.stdout.write(HELP)
        return EXIT_OK
    if name in ("-v", "--version"):
        sys.stdout.write("ddmq version {}\n".format(__version__))
        return EXIT_OK
    if name == "json":
        return run_guarded(name, lambda: json_main(argv[1:]), "-d" in argv[1:])
    if name not in COMMANDS:
        sys.stderr.write("ddmq: error: unknown command {!r} (one of: {}; see 'ddmq -h')\n".format(
            name, ", ".join(list(COMMANDS) + ["json"])))
        return EXIT_USAGE
    debug = "-d" in argv[1:]
    return run_guarded(name, lambda: execute(name, COMMANDS[name].parser(name).parse_args(
        argv[1:])), debug)


def json_main(argv):
    """Run ``ddmq json``: the packaged operations in the argument, or on stdin."""
    args = JSON_COMMAND.parser("json").parse_args(argv)
    if args.payload is not None:
        return run_json(args.payload)
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("give a JSON object as argument, or pipe objects on stdin")
    return run_json(sys.stdin.read())
