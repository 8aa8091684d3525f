"""The tests that pass on the raw driver and not through asynchdb, and why.

Two lists, kept apart on purpose:

``ALLOWED``
    permanent: exact-type checks that no wrapper can pass (API.md section 1:
    "exact-type checks and C functions that demand the driver's own object").
    At most a handful, each naming the check.
``EXPECTED``
    the differences of TODAY, each with the cause found (a key of ``CAUSES``).
    They are strict expected failures (``test_peer.py``): when the wrapper is
    fixed and a test starts passing through it, its entry must go, so that
    it is guarded from then on.  Issue 10 tracks the fixes.

Test ids are the suites' own: unittest ids for ``test.test_sqlite3`` and
dbapi20, pytest node ids (relative to the vendored directory) for pyodbc's.
"""

from __future__ import annotations

#: Cause key -> a one-line title (the expected failures' reason).
TITLES: dict[str, str] = {
    "timeout": "asynchdb.connect takes the driver's timeout= as its own deadline",
    "backup": "a wrapped Connection passed to sqlite3's backup() is not unwrapped",
    "call": "asynchdb.Connection has no __call__",
    "reentrancy": "inline calls do not record the owner thread: re-entrant use deadlocks",
    "reinit": "__init__ on a wrapper is asynchdb's constructor, not the driver's",
    "isinstance": "isinstance(wrapped, the driver's class) is False",
    "same_thread": "check_same_thread is forced to False (and passed twice)",
    "progress_name": "the user's progress handler is reported as asynchdb's _Hook",
    "driver_kw": "asynchdb.connect's driver parameter is not positional-only",
    "delattr": "no __delattr__: del wrapped.attr does not reach the driver",
    "double_close": "closing a closed connection does not raise as the driver does (pyodbc, "
                    "PyMySQL, mysqlclient, Connector/Python)",
}

#: Cause key -> what differs, where in asynchdb, and what has to change.
CAUSES: dict[str, str] = {
    "timeout":
        "asynchdb.connect takes timeout= as its own deadline (connection.py connect(..., "
        "timeout=...)) instead of passing it to sqlite3 as the busy timeout: the busy "
        "timeout stays 5 s, and timeout=0 sets a deadline already past (Job.set_deadline "
        "fires at once, on_dropped=release_unopened closes the channel, ch.submit then "
        "raises 'Cannot operate on a closed connection'). Fix: asynchdb's deadline is "
        "cancel_after= (API.md 2); timeout= always goes to the driver",
    "backup":
        "Connection.backup(target) goes through connection._Extra unchanged, so sqlite3's "
        "C backup() gets the asynchdb.Connection: 'argument target must be "
        "sqlite3.Connection'. Fix: _Extra (connection and cursor) replaces wrapped "
        "Connection/Cursor arguments by driver_connection/driver_cursor",
    "call":
        "asynchdb.Connection has no __call__ (sqlite3.Connection.__call__ compiles a "
        "Statement); special methods are looked up on the type, so __getattr__ cannot "
        "forward it (and it refuses dunders anyway). Fix: a __call__ that runs "
        "raw(*args) under the ownership rule",
    "reentrancy":
        "the drop-in paths (Cursor.execute/fetchone/fetchall fast path, Channel.call, "
        "Channel.run_sync, Cursor.close) take _owner with acquire(False) but never set "
        "_owner_thread (only Channel.drain does). A driver callback on the calling thread "
        "(a converter, a user function, executemany's generator) that uses the same "
        "connection then fails acquire(False), is not recognised as nested, and queues a "
        "Job; the worker blocks in drain on _owner.acquire() held by the waiting caller: "
        "deadlock (the hangs). Cursor.close in the same spot takes the 'worker busy' "
        "branch, parks the driver cursor in the graveyard and returns, instead of "
        "raising sqlite3's 'Recursive use of cursors not allowed'. Fix: record "
        "_owner_thread whenever _owner is held, so nested calls go straight to the "
        "driver, which raises its own error",
    "reinit":
        "__init__ of a wrapper is asynchdb's constructor, not the driver's: "
        "cx.__init__(db) stores the path as the channel ('str' object has no attribute "
        "'raw' afterwards) instead of re-opening, and cur.__init__(con) is a TypeError "
        "instead of sqlite3's ProgrammingError. Fix: build wrappers without __init__ "
        "(a private factory) and let __init__ call type(raw).__init__(raw, *unwrapped "
        "args) under the ownership rule",
    "isinstance":
        "isinstance(wrapped, the driver's class) is False (isinstance(con, factory), "
        "isinstance(cur, sqlite3.Cursor)); API.md 1 asks for isinstance transparency "
        "(a __class__ that reports the driver's class, as wrapt.ObjectProxy does, while "
        "isinstance(x, asynchdb.Connection) stays true). test_connection_factories also "
        "has a factory whose __init__ skips the base class: sqlite3.connect returns it, "
        "but Sqlite3Adapter.prepare calls set_progress_handler on it and raises 'Base "
        "Connection.__init__ not called'; prepare must not fail where the driver's "
        "connect did not",
    "same_thread":
        "Sqlite3Adapter.connect does kwargs.setdefault('check_same_thread', False): "
        "synchronous use from another thread no longer raises sqlite3's ProgrammingError "
        "(ThreadTests), and a check_same_thread given positionally is passed twice "
        "(TypeError 'given by name and position'). Fix: API.md 1 Threads (keep the "
        "driver's rule for synchronous calls, exempt asynchdb's workers, pin a "
        "same-thread connection)",
    "progress_name":
        "the user's progress handler runs inside asynchdb's _Hook, which sqlite3 holds "
        "as the registered handler: when the user's handler raises, sqlite3 reports the "
        "unraisable exception with the _Hook as its object (no __name__), not the user's "
        "function. Fix: register a callable that carries the user's identity "
        "(functools.wraps) while a user handler is set",
    "driver_kw":
        "asynchdb.connect's first parameter is a named 'driver', not positional-only: "
        "pyodbc.connect(driver='SQLite3', database=...) through the wrapper is a "
        "TypeError 'got multiple values for argument driver'. Fix: "
        "connect(driver, /, *args, ...)",
    "delattr":
        "no __delattr__ on Connection (nor Cursor): 'del cnxn.decimal_mode' hits "
        "object.__delattr__ of the __slots__ class and raises AttributeError instead of "
        "reaching pyodbc (TypeError: cannot delete). Fix: a __delattr__ that forwards to "
        "the driver object, like __setattr__",
    "double_close":
        "Connection.close() on a closed connection returns silently (Channel.close: "
        "'if self.closed: return'); pyodbc raises ProgrammingError on a second close, "
        "and API.md 1 now says the wrapper must too. Fix: a second close calls the "
        "driver's close again (the driver connection is already closed, so nothing "
        "else runs) for drivers whose close is not idempotent",
}

_S = "test.test_sqlite3."

EXPECTED: dict[str, dict[str, str]] = {
    "test_sqlite3[sqlite3]": {
        # backup() with a wrapped target (12)
        **{_S + "test_backup.BackupTests." + name: "backup" for name in (
            "test_bad_source_closed_connection", "test_bad_target_closed_connection",
            "test_bad_target_in_transaction", "test_bad_target_same_connection",
            "test_database_source_name", "test_failing_progress", "test_modifying_progress",
            "test_non_callable_progress", "test_progress", "test_progress_all_pages_at_once_1",
            "test_progress_all_pages_at_once_2", "test_simple")},
        # Connection.__call__ (5)
        _S + "test_dbapi.ClosedConTests.test_closed_call": "call",
        _S + "test_dbapi.ModuleTests.test_disallow_instantiation": "call",
        _S + "test_regression.RegressionTests.test_large_sql": "call",
        _S + "test_regression.RegressionTests.test_surrogates": "call",
        _S + "test_userfunctions.FunctionTests.test_function_destructor_via_gc": "call",
        # __init__ on a wrapper (3)
        _S + "test_dbapi.ConnectionTests.test_connection_reinit": "reinit",
        _S + "test_dbapi.ConnectionTests.test_connection_bad_reinit": "reinit",
        _S + "test_regression.RecursiveUseOfCursors.test_recursive_cursor_init": "reinit",
        # isinstance (3)
        _S + "test_factory.ConnectionFactoryTests.test_connection_factories": "isinstance",
        _S + "test_factory.ConnectionFactoryTests.test_connection_factory_relayed_call":
            "isinstance",
        _S + "test_factory.CursorFactoryTests.test_is_instance": "isinstance",
        # check_same_thread forced (3)
        _S + "test_dbapi.ThreadTests.test_check_connection_thread": "same_thread",
        _S + "test_dbapi.ThreadTests.test_check_cursor_thread": "same_thread",
        _S + "test_factory.ConnectionFactoryTests.test_connection_factory_as_positional_arg":
            "same_thread",
        # the user's progress handler under asynchdb's name (2)
        _S + "test_hooks.ProgressTests.test_error_in_progress_handler": "progress_name",
        _S + "test_hooks.ProgressTests.test_error_in_progress_handler_result": "progress_name",
    },
    "pyodbc[pyodbc-sqlite]": {
        "sqlite_test.py::test_decimal_mode": "delattr",
    },
    "dbapi20[pyodbc-postgresql]": {"dbapi20.DatabaseAPI20Test.test_non_idempotent_close":
                                   "double_close"},
    "dbapi20[pyodbc-mariadb]": {"dbapi20.DatabaseAPI20Test.test_non_idempotent_close":
                                "double_close"},
    "dbapi20[pyodbc-sqlite]": {"dbapi20.DatabaseAPI20Test.test_non_idempotent_close":
                               "double_close"},
    "dbapi20[pg8000]": {"dbapi20.DatabaseAPI20Test.test_non_idempotent_close":
                        "double_close"},
    **{f"dbapi20[{name}]": {"dbapi20.DatabaseAPI20Test.test_non_idempotent_close":
                            "double_close"}
       for name in ("pymysql", "mysqlclient", "mariadb")},
}

ALLOWED: dict[str, dict[str, str]] = {
    "test_sqlite3[sqlite3]": {
        _S + "test_dbapi.OpenTests.test_database_keyword":
            "type(cx) == sqlite3.Connection: an exact-type check",
        _S + "test_regression.RegressionTests.test_bpo31770":
            "sqlite3.Cursor(cx): sqlite3's C constructor demands a real sqlite3.Connection",
    },
}
