"""The ``ddmq`` logger, shared by the broker and the feature modules (no import of logging)."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    import logging
    from typing import Optional


class _Log:
    """The ``ddmq`` logger, looked up only once the logging module is in use.

    Importing logging costs each ``ddmq`` command about 5 ms of a 20 ms
    start.  Until some code has imported it, nobody can have configured a
    handler, and the NullHandler below would drop every record: so until
    then a call is skipped, which is the same.
    """

    def __init__(self) -> None:
        self.logger: Optional[logging.Logger] = None

    def get(self) -> Optional[logging.Logger]:
        """Return the ``ddmq`` logger, or None while the logging module is not loaded."""
        if self.logger is None and "logging" in sys.modules:
            import logging

            self.logger = logging.getLogger("ddmq")
            self.logger.addHandler(logging.NullHandler())
        return self.logger

    def debug(self, msg: object, *args: object) -> None:
        logger = self.get()
        if logger is not None:
            logger.debug(msg, *args)

    def info(self, msg: object, *args: object) -> None:
        logger = self.get()
        if logger is not None:
            logger.info(msg, *args)

    def warning(self, msg: object, *args: object) -> None:
        logger = self.get()
        if logger is not None:
            logger.warning(msg, *args)


log = _Log()
