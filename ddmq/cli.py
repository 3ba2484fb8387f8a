"""The ``ddmq`` command line (placeholder until the CLI issue lands: prints help)."""

import sys

USAGE = """usage: ddmq <command> [<args>]

The available commands are:
view      List queues and number of messages
create    Create a queue
delete    Delete a queue
publish   Publish message to queue
consume   Consume message from queue
ack       Positivly acknowledge a message
nack      Negativly acknowledge a message (possibly requeue)
purge     Purge all messages from queue
clean     Clean out expired messages from queue
json      Run a command packaged as a JSON object
"""


def main(argv=None):
    """Print the usage and return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    sys.stdout.write(USAGE)
    return 0 if not argv or argv[0] in ("-h", "--help") else 2
