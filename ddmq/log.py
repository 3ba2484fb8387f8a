"""The ``ddmq`` logger, shared by the broker and the feature modules (no import of logging)."""

import sys


class _Log:
    """The ``ddmq`` logger, looked up only once the logging module is in use.

    Importing logging costs each ``ddmq`` command about 5 ms of a 20 ms
    start.  Until some code has imported it, nobody can have configured a
    handler, and the NullHandler below would drop every record: so until
    then a call is skipped, which is the same.
    """

    def __init__(self):
        self.logger = None

    def get(self):
        """Return the ``ddmq`` logger, or None while the logging module is not loaded."""
        if self.logger is None and "logging" in sys.modules:
            import logging

            self.logger = logging.getLogger("ddmq")
            self.logger.addHandler(logging.NullHandler())
        return self.logger

    def debug(self, *args):
        if self.get() is not None:
            self.logger.debug(*args)

    def info(self, *args):
        if self.get() is not None:
            self.logger.info(*args)

    def warning(self, *args):
        if self.get() is not None:
            self.logger.warning(*args)


log = _Log()
