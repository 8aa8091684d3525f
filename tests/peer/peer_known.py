"""The tests that pass on the raw driver and not through asynchdb, and why.

Two lists, kept apart on purpose:

``ALLOWED``
    permanent: exact-type checks that no wrapper can pass (docs/usage.md, "Types
    and threads": exact-type checks and C functions that demand the driver's own
    object).
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
TITLES: dict[str, str] = {}

#: Cause key -> what differs, where in asynchdb, and what has to change.
#:
#: Empty since issue 10 closed the last ones.  What they were, for the record:
#: the driver's timeout= taken as asynchdb's deadline (now cancel_after=); a
#: driver= keyword taken by connect (now positional-only); re-entrant use that
#: deadlocked (ownership is a re-entrant lock); a wrapped backup() target not
#: unwrapped; no __call__, __delattr__ or driver __init__ on the wrappers;
#: isinstance(wrapped, the driver's class) False (a __class__ that reports
#: the driver's); check_same_thread forced off (kept by the engine for
#: synchronous calls); the user's progress handler reported under the hook's
#: name; a second close of a pyodbc connection silently ignored.
CAUSES: dict[str, str] = {}

_S = "test.test_sqlite3."

EXPECTED: dict[str, dict[str, str]] = {}

ALLOWED: dict[str, dict[str, str]] = {
    "test_sqlite3[sqlite3]": {
        _S + "test_dbapi.OpenTests.test_database_keyword":
            "type(cx) == sqlite3.Connection: an exact-type check",
        _S + "test_regression.RegressionTests.test_bpo31770":
            "sqlite3.Cursor(cx): sqlite3's C constructor demands a real sqlite3.Connection",
    },
}
