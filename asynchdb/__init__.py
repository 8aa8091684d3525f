"""asynchdb: OLE DB's asynchronous processing model for any DB-API 2.0 driver.

Wrap a connection, start a call with ``asynch=True``, and get an
:class:`Operation` to poll (``get_status``), wait on (``wait_for_completion``,
which never cancels) or ``abort()`` with a real, server-side cancel::

    import asynchdb, sqlite3

    conn = asynchdb.connect(sqlite3, "app.db")
    cur = conn.cursor()
    op = cur.execute("SELECT ...", asynch=True, cancel_after=30)
    while not op.wait_for_completion(0.5):
        print(op.get_status())
    rows = op.result().fetchall()
"""

from . import oledb
from ._connection import Connection, connect, wrap
from ._cursor import Cursor
from ._operation import Operation
from ._version import __version__
from .errors import (
    AbortVetoed,
    AsynchError,
    DeadlineExceeded,
    NotSupportedError,
    OperationCanceled,
    ZombieError,
)
from .listeners import Listener
from .status import Asynch, Phase, Status

__all__ = [
    "AbortVetoed",
    "Asynch",
    "AsynchError",
    "Connection",
    "Cursor",
    "DeadlineExceeded",
    "Listener",
    "NotSupportedError",
    "Operation",
    "OperationCanceled",
    "Phase",
    "Status",
    "ZombieError",
    "__version__",
    "connect",
    "oledb",
    "wrap",
]

for _name in __all__:
    _obj = globals()[_name]
    if callable(_obj):  # the classes, connect and wrap
        _obj.__module__ = "asynchdb"
del _name, _obj
