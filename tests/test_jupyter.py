"""Jupyter: the kernel's interrupt button stops the statement in the database.

A real kernel (``jupyter_client`` starting ``ipykernel``) runs a cell with a
long PostgreSQL statement through asynchdb; the test presses "interrupt"
(``KernelManager.interrupt_kernel``, a SIGINT to the kernel), then checks
that the cell ended with ``KeyboardInterrupt``, that the statement is gone
from ``pg_stat_activity``, and that the next cell uses the same connection.

pyodbc is the driver that matters: it blocks in C, where Python's own signal
handling cannot reach (psycopg cancels on ``KeyboardInterrupt`` by itself).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import pytest
from plugin import BOUND, require, require_module, wait_until

from benchmarks.backends import marker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.allow_threads,  # jupyter_client's own threads
    pytest.mark.skipif(sys.platform == "win32", reason="interrupt by signal: POSIX"),
]

jupyter_client = require_module("jupyter_client")
require_module("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _execute(kc: Any, code: str, timeout: float = BOUND * 2, stop_on_error: bool = True) -> str:
    """Send a cell; return its msg_id (the reply is read by :func:`_reply`)."""
    return str(kc.execute(code, stop_on_error=stop_on_error))


def _reply(kc: Any, msg_id: str, timeout: float = BOUND * 2) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no reply to {msg_id} within {timeout} s")
        msg = kc.get_shell_msg(timeout=left)
        if msg["parent_header"].get("msg_id") == msg_id:
            return dict(msg["content"])


def _run(kc: Any, code: str) -> dict[str, Any]:
    reply = _reply(kc, _execute(kc, code))
    assert reply["status"] == "ok", reply
    return reply


@pytest.mark.parametrize("name", ["pyodbc-postgresql", "psycopg"])
def test_kernel_interrupt_cancels_the_statement(name: str) -> None:
    backend = require(name)
    tag = marker()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])}
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        _run(kc, "from benchmarks.backends import BY_NAME\n"
                 f"backend = BY_NAME[{name!r}]\n"
                 "conn = backend.connect()\n"
                 "cur = conn.cursor()\n")
        with backend.monitor() as running:
            # stop_on_error=False: after a cell's error ipykernel aborts the
            # requests that reach it before it is done with that cell, and the
            # next cell, sent as soon as the reply came, sometimes did (1 run
            # in 6 before and after 2026-12-07's changes; a person would just
            # run it again)
            cell = _execute(kc, f"cur.execute(backend.long_sql(60, {tag!r}))",
                            stop_on_error=False)
            assert wait_until(lambda: bool(running(tag)), BOUND), "the cell's statement never ran"
            km.interrupt_kernel()
            reply = _reply(kc, cell)
            assert reply["status"] == "error", reply
            assert reply["ename"] == "KeyboardInterrupt", reply
            assert wait_until(lambda: not running(tag), BOUND), "still running on the server"
        # the next cell uses the same connection
        _run(kc, "cur.execute('SELECT 1')\n"
                 "assert cur.fetchall()[0][0] == 1\n"
                 "assert conn.driver_connection is not None and not conn.closed\n")
        _run(kc, "conn.close()")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
