"""ddmq, the Dead Drop Messaging Queue: a serverless, file-based message queue.

>>> import ddmq
>>> b = ddmq.broker('/tmp/ddmq', create=True)   # doctest: +SKIP

The public names are :class:`broker`, :class:`message`, :class:`DdmqError`
(and its subclasses in :mod:`ddmq.errors`) and :func:`get_ddmq_bin_path`.
"""

__version__ = "1.0.0"

from .errors import DdmqError  # noqa: E402
from .message import message  # noqa: E402
from .broker import broker  # noqa: E402
from .wait import FOREVER  # noqa: E402


def get_ddmq_bin_path():
    """Return the folder where the ``ddmq`` command is installed."""
    import shutil
    import sysconfig

    found = shutil.which("ddmq")
    if found:
        import os
        return os.path.dirname(found)
    return sysconfig.get_path("scripts")


__all__ = ["broker", "message", "DdmqError", "FOREVER", "get_ddmq_bin_path", "__version__"]
