"""tests/peer: the vendored pyodbc test files are run by the harness, not collected."""

from __future__ import annotations

from typing import Any

import peer_harness

collect_ignore = ["pyodbc_tests", "_child.py"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    done = peer_harness.completed()
    if done:
        terminalreporter.write_sep("-", "driver suites, raw vs through asynchdb (tests/peer)")
        terminalreporter.write_line(peer_harness.table(done))
