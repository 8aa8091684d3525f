"""Adding a driver (docs/adapters.md): ``register``, the entry-point group, and the example.

The example adapter of docs/adapters.md is run as written, against a real
driver that has the shape it describes: psycopg2 on PostgreSQL, with the
names the example uses (``QueryCanceled`` on the module, and
``in_failed_transaction()`` on the connection).  Its cancel must stop the
statement on the server and its repair leave the connection usable.
Discovery through the ``asynchdb.adapters`` entry-point group runs in a child
process, with a distribution's metadata on its path as an installed driver
package would have it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin import BOUND, require, wait_until

import asynchdb
from asynchdb import OperationCanceled, Phase, adapters
from benchmarks.backends import marker

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def shim() -> Iterator[types.ModuleType]:
    """A driver module of a new name that is sqlite3 underneath (forgotten afterwards)."""
    import sqlite3

    mod = types.ModuleType("shimdb")
    for name in ("connect", "Error", "OperationalError", "ProgrammingError", "DatabaseError",
                 "InterfaceError", "apilevel", "paramstyle", "threadsafety"):
        setattr(mod, name, getattr(sqlite3, name))
    sys.modules["shimdb"] = mod
    try:
        yield mod
    finally:
        sys.modules.pop("shimdb", None)
        adapters._KNOWN.pop("shimdb", None)


class ShimAdapter(adapters.Adapter):
    name = "shim"


def test_register_a_class_or_a_spec_string(shim: types.ModuleType) -> None:
    adapters.register("shimdb", ShimAdapter)
    conn = asynchdb.connect(shim, ":memory:")
    try:
        assert " shim open " in repr(conn)
        assert conn.cursor().execute("SELECT 1").fetchall() == [(1,)]
    finally:
        conn.close()
    adapters.register("shimdb", f"{__name__}:ShimAdapter")
    conn = asynchdb.connect(shim, ":memory:")
    try:
        assert " shim open " in repr(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("name,adapter", [("", ShimAdapter), (None, ShimAdapter),
                                          ("shimdb", object), ("shimdb", 42)])
def test_register_refuses_bad_input(name: Any, adapter: Any) -> None:
    with pytest.raises(TypeError):
        adapters.register(name, adapter)
    assert "shimdb" not in adapters._KNOWN


_ENTRY_POINT_CHILD = """
import json, sys
import asynchdb, epdb
conn = asynchdb.connect(epdb, ":memory:")
out = {"repr": repr(conn), "rows": conn.cursor().execute("SELECT 1").fetchall()}
conn.close()
print(json.dumps(out))
"""


def test_a_driver_package_ships_its_adapter_by_entry_point(tmp_path: Path) -> None:
    (tmp_path / "epdb.py").write_text("from sqlite3 import *  # noqa\n"
                                      "from sqlite3 import connect, paramstyle  # noqa\n")
    (tmp_path / "epdb_asynch.py").write_text(textwrap.dedent("""
        from asynchdb.adapters import Adapter

        class EpAdapter(Adapter):
            name = "found-by-entry-point"
        """))
    info = tmp_path / "epdb-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: epdb\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[asynchdb.adapters]\nepdb = epdb_asynch:EpAdapter\n")
    proc = subprocess.run([sys.executable, "-c", _ENTRY_POINT_CHILD], capture_output=True,
                          text=True, timeout=BOUND * 2, check=False, cwd=tmp_path,
                          env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert " found-by-entry-point open " in out["repr"], out
    assert out["rows"] == [[1]], out


def _docs_example() -> str:
    text = (ROOT / "docs" / "adapters.md").read_text(encoding="utf-8")
    section = text.split("## A complete example", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "docs/adapters.md lost its example"
    return match.group(1)


@pytest.mark.backend("psycopg2")
def test_the_docs_example_adapter_cancels_on_the_server() -> None:
    backend = require("psycopg2")
    import psycopg2
    import psycopg2.errors
    import psycopg2.extensions

    class Connection(psycopg2.extensions.connection):  # type: ignore[misc]
        def in_failed_transaction(self) -> bool:
            return bool(self.info.transaction_status ==
                        psycopg2.extensions.TRANSACTION_STATUS_INERROR)

    exampledb = types.ModuleType("exampledb")
    for name in ("Error", "DatabaseError", "OperationalError", "ProgrammingError",
                 "InterfaceError", "apilevel", "paramstyle", "threadsafety"):
        setattr(exampledb, name, getattr(psycopg2, name))
    exampledb.QueryCanceled = psycopg2.errors.QueryCanceled  # type: ignore[attr-defined]
    exampledb.connect = (  # type: ignore[attr-defined]
        lambda dsn: psycopg2.connect(dsn, connection_factory=Connection))
    sys.modules["exampledb"] = exampledb
    try:
        exec(compile(_docs_example(), "docs/adapters.md", "exec"), {})  # registers it
        conn = asynchdb.connect(exampledb, backend.dsn())
        try:
            assert " example open " in repr(conn)
            with backend.monitor() as running:
                tag = marker()
                cur = conn.cursor()
                cur.execute("SELECT 1")  # a transaction is open: the cancel fails it
                op = cur.execute(backend.long_sql(60, tag), asynch=True)
                assert wait_until(lambda: bool(running(tag)) or op.done(), BOUND)
                op.abort()
                assert op.wait_for_completion(BOUND)
                status = op.get_status()
                assert status.phase == Phase.CANCELED
                assert isinstance(status.error, OperationCanceled)
                assert isinstance(status.error.__cause__, psycopg2.errors.QueryCanceled)
                assert wait_until(lambda: not running(tag), BOUND), "still on the server"
            # after_abort rolled the failed transaction back: the connection works
            assert conn.cursor().execute("SELECT 2").fetchall() == [(2,)]
        finally:
            conn.close()
    finally:
        sys.modules.pop("exampledb", None)
        adapters._KNOWN.pop("exampledb", None)
