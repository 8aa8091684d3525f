"""SQLAlchemy engines over wrapped connections (issue 10, docs/usage.md "Types and threads").

``create_engine(url, creator=lambda: asynchdb.connect(driver, ...))`` must work
with the dialect's own type checks (psycopg's ``TypeInfo.fetch`` demands an
``isinstance`` of its Connection) on sqlite3, psycopg and pyodbc (MariaDB:
SQLAlchemy has no PostgreSQL dialect for pyodbc).  Core statements only.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from plugin import require, require_module

import asynchdb
from benchmarks.backends import Backend

#: backend name -> the SQLAlchemy URL whose dialect talks to that driver
URLS = {
    "sqlite3": "sqlite://",
    "psycopg": "postgresql+psycopg://",
    "pyodbc-mariadb": "mysql+pyodbc://",
}


def _engine(backend: Backend) -> Any:
    sa = require_module("sqlalchemy")
    args, kwargs = backend.connect_args()
    if backend.name == "sqlite3":
        kwargs = {**kwargs, "check_same_thread": False}  # the engine's pool may use any thread
    module = backend.module()

    def creator() -> asynchdb.Connection:
        conn: asynchdb.Connection = asynchdb.connect(module, *args, **kwargs)
        return conn

    return sa.create_engine(URLS[backend.name], creator=creator)


@pytest.mark.parametrize("name", sorted(URLS))
def test_core_statements_through_a_creator_engine(name: str) -> None:
    backend = require(name)
    sa = require_module("sqlalchemy")
    engine = _engine(backend)
    table_name = f"sa_{uuid.uuid4().hex[:10]}"
    meta = sa.MetaData()
    table = sa.Table(table_name, meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("name", sa.String(40)))
    try:
        with engine.connect() as c:
            raw = c.connection.dbapi_connection
            assert isinstance(raw, asynchdb.Connection)  # the pool holds the wrapper
        meta.create_all(engine)
        with engine.begin() as c:
            c.execute(table.insert(), [{"id": i, "name": f"n{i}"} for i in range(5)])
        with engine.connect() as c:
            rows = c.execute(sa.select(table.c.id, table.c.name)
                             .where(table.c.id >= 2).order_by(table.c.id)).all()
            assert [tuple(r) for r in rows] == [(2, "n2"), (3, "n3"), (4, "n4")]
            assert c.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 5
            c.execute(table.update().where(table.c.id == 0).values(name="zero"))
            c.execute(table.delete().where(table.c.id == 4))
            c.commit()
        with engine.connect() as c:
            got = c.execute(sa.select(table.c.name).order_by(table.c.id)).scalars().all()
            assert got == ["zero", "n1", "n2", "n3"]
    finally:
        meta.drop_all(engine)
        engine.dispose()
