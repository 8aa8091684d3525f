"""Shared fixtures: a thread-leak check around every test.

Every test must leave no asynchdb thread behind once its connections are
closed.  Pool threads retire as soon as no connection is open, so the check
polls (bounded) for them to go instead of sleeping.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
from backends import BACKENDS, Backend, wait_no_asynchdb_threads

#: Seconds to wait for asynchdb threads to retire after a test.
LEAK_GRACE = 5.0


@pytest.fixture(autouse=True)
def no_leaked_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    if request.node.get_closest_marker("allow_threads"):
        return
    gc.collect()
    left = wait_no_asynchdb_threads(LEAK_GRACE)
    assert not left, f"asynchdb threads left running after the test: {left}"
    others = [t for t in threading.enumerate()
              if t.ident not in before and t.is_alive() and not t.daemon]
    assert not others, f"threads left running after the test: {others}"


# -- real database backends (tests/backends.py) --------------------------------
@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each real backend in turn; skipped when missing (failed when required)."""
    b: Backend = request.param
    b.require()
    return b
