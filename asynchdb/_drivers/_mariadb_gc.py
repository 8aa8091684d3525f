"""MariaDB Connector/Python 1.1.13-1.1.14: a collected cursor frees its connection.

The driver's cursor type (``mariadb.cursor``, in C) keeps a *borrowed* pointer
to its connection: ``MrdbCursor_initialize`` stores it without ``Py_INCREF``,
and the cursor's deallocation never gives it back.  Since 1.1.13, though, its
``tp_clear`` (what the cyclic garbage collector calls to break a cycle) does
``Py_CLEAR`` on that pointer: each cursor the collector frees takes away one
reference the connection never gave.  Measured here with 1.1.14:

* one cursor in a reference cycle, then ``gc.collect()``: the connection's
  reference count drops from 2 to 1; a second one frees the connection while
  the program still holds it, and the next use crashes the process
  (``tests/test_mysql_family.py``, ``test_a_collected_cursor_keeps_its_connection``);
* asynchdb's stress runner met it as a segmentation fault in
  ``subtype_dealloc`` of the connection, at the ``conn.cursor()`` after a
  released cursor: 1 in 4,000-6,000 operations of the ``drop`` scenario,
  none without it.  A cursor lands in a cycle easily: an exception's
  traceback keeps the frame that used it, and the frame keeps the exception.

No release fixes it (1.1.14 is the newest of the 1.1 line; the sources of
1.1.10-1.1.12 do not clear the pointer).  :func:`mend` routes around it: it empties
the type's ``tp_clear`` slot, so the collector breaks a cursor's cycles through
its instance dictionary (``mariadb.cursors.Cursor`` keeps its connection and
everything else there) and never touches the borrowed pointer.  The C-level
``data`` field (the parameters of a bulk ``executemany``) is then no longer
cleared by the collector, as it is not by the driver's own deallocation
either; a cycle through it would stay uncollected, never crash.

What is left: the type's ``tp_traverse`` also reports the borrowed
pointer, so the collector may count one reference too many per cursor.  A
connection that only a running function's local variable holds, with cursors
of it in a garbage cycle, can then look unreachable and be finalized (closed)
while in use.  Connections held by an object (asynchdb's channel, a pool, a
module global) are reached through it and are safe; emptying ``tp_traverse``
is not an option (the collector calls it on instances of the C type itself).

The slot is written through :mod:`ctypes` once per process, only after the
type object reads back as expected at the documented offsets (name, basic
size and flags), and only on the versions known to have the bug.  Thread: any
(the first adapter made for the module), under a lock.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from typing import Any

log = logging.getLogger("asynchdb")

#: The releases whose cursor ``tp_clear`` releases the borrowed connection.
AFFECTED = ((1, 1, 13), (1, 1, 14))

#: Offsets in ``PyTypeObject`` (64-bit CPython 3.8-3.13, where every field up
#: to ``tp_clear`` is a pointer or a ``Py_ssize_t``): ``tp_name``,
#: ``tp_basicsize``, ``tp_flags``, ``tp_clear``.
_PTR = ctypes.sizeof(ctypes.c_void_p)
_NAME, _BASICSIZE, _FLAGS, _CLEAR = 3 * _PTR, 4 * _PTR, 21 * _PTR, 24 * _PTR

_lock = threading.Lock()
_mended: set[int] = set()


def mend(module: Any) -> bool:
    """Stop the collector from freeing connections through cursors; True if mended.

    ``module`` is the ``mariadb`` package.  Does nothing (False) on another
    version, on a 32-bit interpreter, or when the type does not read back as
    expected.
    """
    version = tuple(getattr(module, "__version_info__", ())[:3])
    if version not in AFFECTED or _PTR != 8 or sys.implementation.name != "cpython":
        return False
    base = _cursor_type(module)
    if base is None:
        return False
    addr = id(base)
    with _lock:
        if addr in _mended:
            return True
        name = ctypes.c_char_p(ctypes.c_void_p.from_address(addr + _NAME).value or 0).value
        size = ctypes.c_ssize_t.from_address(addr + _BASICSIZE).value
        flags = ctypes.c_ulong.from_address(addr + _FLAGS).value
        if ctypes.c_void_p.from_address(addr + _CLEAR).value is None:
            return False  # no tp_clear: nothing to mend
        if name != b"mariadb.cursor" or size != base.__basicsize__ or flags != base.__flags__:
            log.warning("asynchdb: mariadb.cursor does not look as expected; "
                        "its garbage-collector bug is not worked around")
            return False
        ctypes.c_void_p.from_address(addr + _CLEAR).value = None
        _mended.add(addr)
        return True


def _cursor_type(module: Any) -> Any:
    """The driver's C cursor type (the base of ``mariadb.cursors.Cursor``), or None."""
    cursors = getattr(module, "cursors", None)
    cls = getattr(cursors, "Cursor", None)
    if not isinstance(cls, type):
        return None
    for base in cls.__mro__:
        if base.__module__ == "mariadb" and base.__name__ == "cursor":
            return base
    return None
