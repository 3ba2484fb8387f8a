"""The exceptions ddmq raises: one family rooted at :class:`DdmqError`.

Every error carries a short machine-readable ``error`` code next to its
human-readable message, as the original ddmq's ``DdmqError(message, error)``
did, so scripts can branch on the code and people can read the message.
Races with other processes are expected and are never raised as errors.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would slow start-up
    from typing import Sequence

    from .message import message


class DdmqError(Exception):
    """Base class of every ddmq error: ``DdmqError(message, error)``."""

    def __init__(self, message: str, error: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.error = error

    def __str__(self) -> str:
        return self.message


class RootError(DdmqError):
    """The root directory is missing ("missing") or not a ddmq root ("uninitiated")."""


class QueueNotFoundError(DdmqError):
    """The named queue does not exist (error code "no_queue")."""


class InvalidInputError(DdmqError, ValueError):
    """A queue name, message name, priority or other argument is not acceptable ("invalid")."""


class ConfigError(DdmqError):
    """A ``ddmq.yaml`` file cannot be read or does not hold valid settings ("config")."""


class StorageError(DdmqError):
    """The filesystem refused an operation: disk full, read-only, permission denied ("io")."""


class MessageNotFoundError(DdmqError):
    """The named message file does not exist, or no longer does ("not_found")."""


class LeaseLostError(MessageNotFoundError):
    """A consumed message's lease could not be renewed: another process took it ("lost")."""


class CodecError(DdmqError):
    """A broker's codec could not encode or decode a message payload ("codec")."""

    filename: str | None = None           # the file of the message that failed to decode
    messages: Sequence[message] = ()      # the messages taken before it by the same call


class PermissionDeniedError(StorageError):
    """The user may not read or write a file or folder of the root; names it ("permission")."""


class CommandError(DdmqError):
    """The command of ``ddmq work`` cannot be run: not found, not executable ("command")."""
