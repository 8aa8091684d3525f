"""Drop-in, measured: the drivers' own test suites, raw and through asynchdb.

For every suite and backend of ``peer_harness.SUITES`` (CPython's
``test.test_sqlite3``; pyodbc's own tests on PostgreSQL, MariaDB and SQLite
ODBC; dbapi20 on every backend) the suite runs twice in subprocesses, on the
raw driver and with ``driver.connect`` routed through
``asynchdb.connect(driver, ...)``.  A test that passes raw must pass wrapped:

* ``test_passes_raw_passes_wrapped`` fails on any test that does not, except
  the permanent ``ALLOWED`` exact-type checks and today's ``EXPECTED`` list
  (``peer_known.py``); the message names each test with the last lines of its
  wrapped traceback (or, for a hung test, where it hung).
* ``test_known_difference`` is one strict expected failure per ``EXPECTED``
  entry, whose reason is the cause: a fix that makes the test pass turns it
  into XPASS(strict), a failure, until the entry goes.
* ``test_lists_name_real_tests`` keeps both lists honest (every entry is a
  test the suite has, with a known cause).

A backend whose driver or server is missing is skipped, or fails under
``ASYNCHDB_REQUIRE_BACKENDS`` (``benchmarks/backends.py``, applied by
``require`` of ``tests/plugin.py``).  Each suite runs once per session (both
modes side by side); the table of all runs is printed at the end of the
session.
"""

from __future__ import annotations

import importlib.util
import sys

import peer_harness
import pytest
from peer_known import ALLOWED, CAUSES, EXPECTED, TITLES
from plugin import require

from benchmarks.backends import BY_NAME, required

SUITE_IDS = [s.id for s in peer_harness.SUITES]


class Differs(AssertionError):
    """The one failure a known difference may be an expected failure with."""


def require_suite(suite: peer_harness.Suite) -> None:
    """Skip (or fail, when backends are required) where the suite cannot run as listed."""
    why = None
    if suite.kind == "dbapi20":
        if importlib.util.find_spec("dbapi20") is None:
            why = "dbapi20 is not installed (the test extra's dbapi-compliance)"
    elif suite.kind != "test_sqlite3":
        return
    elif sys.version_info[:2] != (3, 11):
        why = "the lists in peer_known.py are for Python 3.11's test.test_sqlite3"
    elif importlib.util.find_spec("test.test_sqlite3") is None:
        why = "this Python has no test.test_sqlite3 (CPython's test package)"
    if why is None:
        return
    if required():
        pytest.fail(f"{suite.id} cannot run (ASYNCHDB_REQUIRE_BACKENDS is set): {why}")
    pytest.skip(why)


def comparison(suite_id: str) -> peer_harness.Comparison:
    suite = peer_harness.BY_ID[suite_id]
    require(BY_NAME[suite.backend])
    require_suite(suite)
    cmp = peer_harness.compare(suite)
    problems = cmp.raw.errors + cmp.wrapped.errors
    if problems:
        pytest.fail(f"{suite_id}: a run broke down:\n" + "\n".join(problems), pytrace=False)
    if not cmp.raw.collected or cmp.raw.passes == 0:
        pytest.fail(f"{suite_id}: the raw run collected {len(cmp.raw.collected)} tests and "
                    f"passed {cmp.raw.passes}: the suite did not run", pytrace=False)
    return cmp


#: Every test here reads a comparison that runs a driver's suite twice (minutes).
pytestmark = pytest.mark.slow

@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_passes_raw_passes_wrapped(suite_id: str) -> None:
    cmp = comparison(suite_id)
    expected = EXPECTED.get(suite_id, {})
    allowed = ALLOWED.get(suite_id, {})
    new = [t for t in cmp.differences if t not in expected and t not in allowed]
    if new:
        pytest.fail(
            f"{suite_id}: {len(new)} test(s) pass on the raw driver and not through asynchdb "
            f"(raw passes {cmp.raw.passes}, wrapped {cmp.wrapped.passes}, "
            f"{len(cmp.raw.collected)} tests):\n" + "\n".join(cmp.describe(t) for t in new),
            pytrace=False)


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_lists_name_real_tests(suite_id: str) -> None:
    cmp = comparison(suite_id)
    listed = {**EXPECTED.get(suite_id, {}), **ALLOWED.get(suite_id, {})}
    stale = sorted(t for t in listed if t not in cmp.raw.collected)
    assert not stale, f"{suite_id}: listed in peer_known.py, not in the suite: {stale}"
    unknown = sorted(t for t, c in EXPECTED.get(suite_id, {}).items()
                     if c not in CAUSES or c not in TITLES)
    assert not unknown, f"{suite_id}: entries without a known cause: {unknown}"


def _short(test_id: str) -> str:
    return test_id.replace("test.test_sqlite3.", "").replace("dbapi20.DatabaseAPI20Test.", "")


KNOWN = [
    pytest.param(suite_id, test_id, id=f"{suite_id}::{_short(test_id)}",
                 marks=pytest.mark.xfail(raises=Differs, strict=True,
                                         reason=f"[{cause}] {TITLES.get(cause, '?')}"))
    for suite_id, entries in EXPECTED.items()
    for test_id, cause in entries.items()
]


@pytest.mark.parametrize(("suite_id", "test_id"), KNOWN)
def test_known_difference(suite_id: str, test_id: str) -> None:
    cmp = comparison(suite_id)
    raw = cmp.raw.outcome(test_id)
    if raw == "not collected":
        pytest.fail(f"{test_id} is not a test of {suite_id}", pytrace=False)
    if raw != peer_harness.PASS:
        pytest.skip(f"{test_id} does not pass on the raw driver here ({raw})")
    if cmp.wrapped.outcome(test_id) != peer_harness.PASS:
        raise Differs(cmp.describe(test_id))
