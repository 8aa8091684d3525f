"""Loads the suite's shared helpers and fixtures (``tests/plugin.py``).

``plugin`` holds the thread-leak check around every test, the ``backend`` and
``conn`` fixtures, the ``backend(name)`` marker's skip/fail, and the helpers
test modules import (``Recorder``, ``wait_until``, ``closed_port``,
``require``...).  The backend registry itself is ``benchmarks/backends.py``.
"""

import importlib.util
import os

pytest_plugins = ["plugin"]

#: Test modules built on a test library that may be missing: not collected
#: without it (a plain ``python -m pytest`` then passes, as the README says);
#: in a CI-like run (``ASYNCHDB_REQUIRE_BACKENDS`` set) they are collected, and
#: the missing import fails the run.
collect_ignore = [
    module for module, needs in (("test_stateful.py", "hypothesis"),)
    if importlib.util.find_spec(needs) is None
    and not os.environ.get("ASYNCHDB_REQUIRE_BACKENDS", "").strip()
]
