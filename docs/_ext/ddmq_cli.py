"""Sphinx directives that document the ``ddmq`` command line from its argparse parsers.

The reference is built from :mod:`ddmq.cli` at build time, so it cannot drift
from the code: a subcommand or option added to the parser appears in the
docs at the next build, and a page that names a subcommand that no longer
exists fails the build (``-W``).

``.. ddmq-command-table::``
    A table of every subcommand with its one-line summary.
``.. ddmq-command:: NAME``
    One subcommand: its summary, usage and every argument and option (with
    its ``ddmq json`` key); the directive's content, if any, follows as prose.
``.. ddmq-other-commands::``
    Every subcommand not yet shown by a ``ddmq-command`` on the page, in the
    order of :data:`ddmq.cli.COMMANDS`.
"""

import argparse
import functools

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

logger = logging.getLogger(__name__)

USAGE_WIDTH = 76   # columns of the usage blocks: fixed, so the build is reproducible


def subcommands():
    """Return {name: (summary, parser)} of every ``ddmq`` subcommand, ``json`` last.

    This is the one place that knows how :mod:`ddmq.cli` builds its parsers.
    """
    from ddmq import cli

    found = {name: (command.summary, command.parser(name))
             for name, command in cli.COMMANDS.items()}
    found["json"] = (cli.JSON_COMMAND.summary, cli.JSON_COMMAND.parser("json"))
    return found


def _usage(parser):
    # The parser's own formatter sizes itself to the terminal; the docs use a fixed width.
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=USAGE_WIDTH)
    return parser.format_usage().strip()


def _help_text(parser, action):
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    text = action.help
    if "%" in text:
        text = text % dict(vars(action), prog=parser.prog)
    return text[0].upper() + text[1:]


def _metavar(action):
    if action.metavar is not None:
        return action.metavar
    if action.choices is not None:
        return "{" + ",".join(str(choice) for choice in action.choices) + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def _invocations(action):
    """Return how an argument is written: ``root``, or ``-p N``, ``--priority N``."""
    if not action.option_strings:
        return [_metavar(action)]
    if action.nargs == 0:
        return list(action.option_strings)
    return ["{} {}".format(option, _metavar(action)) for option in action.option_strings]


def _details(action, help_text):
    """Return the facts about ``action`` that its help text does not already state."""
    details = []
    if action.choices is not None and action.metavar is not None:
        details.append("one of " + ", ".join(str(choice) for choice in action.choices))
    if not action.option_strings and action.nargs == "?" and "default" not in help_text:
        details.append("optional")
    if (action.option_strings and action.nargs != 0 and action.default not in (None, False)
            and action.default != argparse.SUPPRESS and "default" not in help_text):
        details.append("default {}".format(action.default))
    return details


def _argument_item(parser, action, json_keys):
    item = nodes.definition_list_item()
    term = nodes.term()
    for number, invocation in enumerate(_invocations(action)):
        if number:
            term += nodes.Text(", ")
        term += nodes.literal(invocation, invocation)
    item += term
    definition = nodes.definition()
    help_text = _help_text(parser, action)
    paragraph = nodes.paragraph()
    paragraph += nodes.Text(help_text)
    details = _details(action, help_text)
    if details:
        paragraph += nodes.Text(" ({}).".format("; ".join(details)) if help_text else
                                "; ".join(details).capitalize() + ".")
    elif help_text and not help_text.endswith("."):
        paragraph += nodes.Text(".")
    if json_keys and action.dest in getattr(parser, "keys", {}):
        paragraph += nodes.Text(" ddmq json key: ")
        paragraph += nodes.literal(action.dest, action.dest)
        paragraph += nodes.Text(".")
    definition += paragraph
    item += definition
    return item


class _CommandDirective(SphinxDirective):
    """Common machinery: the subcommands, and which ones this page already shows."""

    def shown(self):
        """Return the set of subcommands shown so far on this page."""
        key = "ddmq_cli_shown"
        pages = self.env.temp_data.setdefault(key, {})
        return pages.setdefault(self.env.docname, set())

    def command_section(self, name, summary, parser):
        section = nodes.section(ids=["cli-" + nodes.make_id(name)])
        self.state.document.note_explicit_target(section)
        section += nodes.title(name, "ddmq " + name)
        paragraph = nodes.paragraph()
        paragraph += nodes.Text(summary.rstrip(".") + ".")
        section += paragraph
        usage = _usage(parser)
        block = nodes.literal_block(usage, usage)
        block["language"] = "text"
        section += block
        items = nodes.definition_list()
        json_keys = name != "json"
        for action in parser._actions:   # argparse keeps no public list of its arguments
            if isinstance(action, argparse._HelpAction):
                continue
            items += _argument_item(parser, action, json_keys)
        if len(items):
            section += items
        self.shown().add(name)
        return section


class CommandDirective(_CommandDirective):
    """``.. ddmq-command:: NAME``: one subcommand, then the directive's content."""

    required_arguments = 1
    has_content = True

    def run(self):
        name = self.arguments[0]
        commands = subcommands()
        if name not in commands:
            logger.warning("ddmq-command: 'ddmq %s' does not exist (subcommands: %s)",
                           name, ", ".join(commands), location=self.get_location())
            return []
        section = self.command_section(name, *commands[name])
        if self.content:
            nested_parse_with_titles(self.state, self.content, section, self.content_offset)
        return [section]


class OtherCommandsDirective(_CommandDirective):
    """``.. ddmq-other-commands::``: every subcommand this page has not shown yet."""

    def run(self):
        shown = self.shown()
        return [self.command_section(name, summary, parser)
                for name, (summary, parser) in subcommands().items() if name not in shown]


class CommandTableDirective(SphinxDirective):
    """``.. ddmq-command-table::``: each subcommand and its summary, linked to its section."""

    option_spec = {"class": directives.class_option}

    def run(self):
        table = nodes.table()
        group = nodes.tgroup(cols=2)
        table += group
        group += nodes.colspec(colwidth=20)
        group += nodes.colspec(colwidth=80)
        body = nodes.tbody()
        group += body
        for name, (summary, _) in subcommands().items():
            row = nodes.row()
            link = nodes.reference("", "", internal=True, refid="cli-" + nodes.make_id(name))
            link += nodes.literal(name, name)
            first = nodes.entry()
            first += nodes.paragraph("", "", link)
            second = nodes.entry()
            second += nodes.paragraph(summary, summary.rstrip(".") + ".")
            row += first
            row += second
            body += row
        return [table]


def setup(app):
    app.add_directive("ddmq-command", CommandDirective)
    app.add_directive("ddmq-other-commands", OtherCommandsDirective)
    app.add_directive("ddmq-command-table", CommandTableDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
