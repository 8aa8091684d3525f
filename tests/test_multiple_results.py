"""Asynchronous multiple results (OLE DB IMultipleResults::GetResult) and callproc
output parameters, on the deterministic fake driver.  The real drivers with
batches (PostgreSQL, MariaDB) are covered by the backend suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import asynchdb
from asynchdb import Asynch, Phase
from asynchdb import testing as fake

WAIT = 10.0


@pytest.fixture
def raw() -> fake.FakeConnection:
    return fake.connect()


@pytest.fixture
def conn(raw: fake.FakeConnection) -> Iterator[asynchdb.Connection]:
    c = asynchdb.wrap(raw)
    try:
        yield c
    finally:
        c.close()


def test_nextset_asynch_returns_the_drivers_value(conn: asynchdb.Connection,
                                                   raw: fake.FakeConnection) -> None:
    cur = conn.cursor()
    cur.execute("rows 2; block n1; rows 3")
    assert cur.fetchall() == [(0,), (1,)]
    op = cur.nextset(asynch=True)
    assert raw.started("n1").wait(WAIT)
    # the next result is being produced: the cursor is a zombie meanwhile
    with pytest.raises(asynchdb.ZombieError):
        cur.fetchall()
    assert op.get_status().phase == Phase.INITIALIZATION
    raw.release("n1")
    assert op.result(WAIT) is True
    assert cur.fetchall() == []
    op = cur.nextset(asynch=True)
    assert op.result(WAIT) is True
    assert cur.fetchall() == [(0,), (1,), (2,)]
    op = cur.nextset(asynch=True)
    assert op.result(WAIT) is None  # the end, as the driver says it
    assert op.get_status().phase == Phase.COMPLETE


def test_nextset_abort_cancels_only_that_result(conn: asynchdb.Connection,
                                                raw: fake.FakeConnection) -> None:
    cur = conn.cursor()
    cur.execute("rows 1; block n2; rows 2")
    op = cur.nextset(asynch=True)
    assert raw.started("n2").wait(WAIT)
    op.abort()
    assert op.wait_for_completion(WAIT)
    assert op.get_status().phase == Phase.CANCELED
    with pytest.raises(asynchdb.OperationCanceled):
        cur.fetchall()
    # the batch goes on with its next result
    assert cur.nextset() is True
    assert cur.fetchall() == [(0,), (1,)]


def test_nextset_with_population(conn: asynchdb.Connection) -> None:
    cur = conn.cursor()
    cur.execute("rows 1; rows 500")
    cur.fetchall()
    op = cur.nextset(asynch=Asynch.PREPOPULATE)
    assert op.result(WAIT) is True
    assert op.get_status().progress == 500
    assert cur.fetchall() == [(i,) for i in range(500)]


def test_callproc_output_parameters_once_complete(conn: asynchdb.Connection,
                                                  raw: fake.FakeConnection) -> None:
    cur = conn.cursor()
    assert cur.callproc("double", [1, 2, 3]) == [2, 4, 6]  # drop-in
    op = cur.callproc("double", [5, 7], asynch=True)
    assert op.result(WAIT) == [10, 14]
    op = cur.callproc("block p1", [9], asynch=True)
    assert raw.started("p1").wait(WAIT)
    with pytest.raises(asynchdb.ZombieError):
        cur.description  # noqa: B018 - the zombie guard is the point
    raw.release("p1")
    assert op.result(WAIT) == [9]


def test_nextset_missing_on_the_driver_is_the_drivers_attribute_error() -> None:
    import sqlite3

    c = asynchdb.connect(sqlite3, ":memory:")
    try:
        cur = c.cursor()
        with pytest.raises(AttributeError):
            cur.nextset()
        with pytest.raises(AttributeError):
            cur.nextset(asynch=True)
        with pytest.raises(AttributeError):
            cur.callproc("p")
    finally:
        c.close()
