"""ddmq, the Dead Drop Messaging Queue: a serverless, file-based message queue.

>>> import ddmq
>>> b = ddmq.broker('/tmp/ddmq', create=True)   # doctest: +SKIP

The public names are :class:`broker`, :class:`message`, :class:`DdmqError`
(and its subclasses in :mod:`ddmq.errors`) and :func:`get_ddmq_bin_path`.
"""

from __future__ import annotations

__version__ = "1.0.0"

from .errors import DdmqError  # noqa: E402
from .message import message  # noqa: E402
from .broker import broker  # noqa: E402
from .wait import FOREVER  # noqa: E402


def get_ddmq_bin_path() -> str:
    """Return the path of the ``ddmq`` executable (to add its folder to ``PATH``).

    The script installed beside this Python (its ``scripts`` folder: the
    virtual environment's ``bin/``, or the system's), else the one of a
    ``pip install --user``, else the first ``ddmq`` on ``PATH``; if none
    exists, the path where this Python installs it.
    """
    import os
    import shutil
    import sysconfig

    name = "ddmq.exe" if os.name == "nt" else "ddmq"
    own = os.path.join(sysconfig.get_path("scripts"), name)
    candidates = [own]
    user_scheme = "{}_user".format(os.name)
    if user_scheme in sysconfig.get_scheme_names():
        candidates.append(os.path.join(sysconfig.get_path("scripts", user_scheme), name))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return shutil.which(name) or own


__all__ = ["broker", "message", "DdmqError", "FOREVER", "get_ddmq_bin_path", "__version__"]
