"""The test suite's shared helpers and fixtures: one home, loaded by pytest.

``tests/conftest.py`` loads this module as a plugin (``pytest_plugins``), so
its fixtures and hooks apply to every test, and test modules import its
helpers by name (``from plugin import BOUND, Recorder, require, wait_until``).

* The backends themselves (names, connection strings, driver modules, probing,
  the statements in each dialect) live in ``benchmarks/backends.py``, which the
  benchmarks use too and which imports nothing from ``tests/``; this module
  adds what needs pytest: :func:`require` skips a test whose backend is
  missing, or fails it when ``ASYNCHDB_REQUIRE_BACKENDS`` requires the backend.
* Markers (declared in ``pyproject.toml``):

  ``backend(name, connect=True)``
      the test needs that backend: it is skipped (or failed, when required)
      before any fixture is set up.  ``connect=False``: only the driver (and
      its ODBC driver) must be installed, no server.  Tests parametrized with
      the ``backend`` fixture get the marker of their backend automatically,
      so ``-m backend`` / ``-m "not backend"`` select them too.
  ``slow``
      the test (or module) takes more than a few seconds: ``-m "not slow"``
      is the quick run.
  ``allow_threads``
      the test manages asynchdb threads itself (no thread-leak check).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any, Callable, Optional, Union

import pytest

import asynchdb
from asynchdb import Phase, Status
from benchmarks.backends import BACKENDS, BY_NAME, Backend, is_required

#: Seconds every wait in the backend suites is bounded by.
BOUND = 15.0
#: Seconds to wait for asynchdb threads to retire after a test.
LEAK_GRACE = 5.0


# ---------------------------------------------------------------------------
# bounded waits and threads
# ---------------------------------------------------------------------------
def wait_until(predicate: Callable[[], Any], timeout: float = BOUND,
               interval: float = 0.005) -> bool:
    """Poll ``predicate`` (bounded) until it is true; its last answer after ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        pause.wait(interval)


async def await_until(predicate: Callable[[], Any], timeout: float = BOUND,
                      interval: float = 0.01) -> bool:
    """:func:`wait_until` on an event loop: poll ``predicate`` without blocking the loop."""
    import asyncio  # the tests that await import it; the plugin need not

    deadline = time.monotonic() + timeout
    await asyncio.sleep(0)  # let tasks created before this call start
    while not predicate():
        if time.monotonic() > deadline:
            return bool(predicate())
        await asyncio.sleep(interval)
    return True


#: The Ctrl-C watcher: one per process while connections opened on the main thread are open.
SIGINT_WATCHER = "asynchdb-sigint"


#: Seconds a scenario may take before it counts as a deadlock.
WATCHDOG = 10.0


def bounded(scenario: Callable[[], Any]) -> Any:
    """Run ``scenario`` on a thread of its own; fail (with its stack) if it hangs."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = scenario()
        except BaseException as exc:  # re-raised on the test's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="bounded-scenario", daemon=True)
    t.start()
    t.join(WATCHDOG)
    if t.is_alive():
        frame = sys._current_frames().get(t.ident or 0)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "?"
        pytest.fail(f"deadlock: the scenario did not finish in {WATCHDOG} s\n{stack}")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def asynchdb_threads(*, watcher: bool = True) -> list[threading.Thread]:
    """asynchdb's own threads that are alive (pool, timer, pinned MariaDB threads).

    ``watcher=False`` leaves out the Ctrl-C watcher, which an open connection
    keeps (docs/interrupts.md): for checks that a call started no worker.
    """
    return [t for t in threading.enumerate() if t.name.startswith("asynchdb-") and t.is_alive()
            and (watcher or t.name != SIGINT_WATCHER)]


def wait_no_asynchdb_threads(grace: float) -> list[threading.Thread]:
    """The asynchdb threads still alive after at most ``grace`` seconds (bounded)."""
    deadline = time.monotonic() + grace
    while True:
        left = asynchdb_threads()
        if not left or time.monotonic() >= deadline:
            return left
        left[0].join(0.05)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


# ---------------------------------------------------------------------------
# listeners
# ---------------------------------------------------------------------------
class Recorder:
    """A listener that records every notification, from any thread.

    ``events`` holds ``(kind, status)`` in delivery order, ``kind`` being
    ``"progress"``, ``"stop"`` or ``"low"`` (``status`` None).  ``on_progress``
    returns ``answer(op, status)`` when an ``answer`` is given; with
    ``veto=True`` it returns False for the CANCELED notification (refusing
    the abort).  Subclasses add what one suite needs on top.
    """

    def __init__(self, answer: Optional[Callable[[Any, Status], Any]] = None, *,
                 veto: bool = False) -> None:
        self.answer = answer
        self.veto = veto
        self.events: list[tuple[str, Optional[Status]]] = []
        #: idents of the threads that delivered a notification
        self.threads: set[int] = set()
        self.stopped = threading.Event()
        self.low_event = threading.Event()
        #: guards ``events`` and ``threads`` (a Condition: ``wait_progress`` waits on it)
        self.lock = threading.Condition()

    def _record(self, kind: str, status: Optional[Status]) -> None:
        with self.lock:
            self.events.append((kind, status))
            self.threads.add(threading.get_ident())
            self.lock.notify_all()

    # -- the listener protocol -------------------------------------------------
    def on_progress(self, op: Any, status: Status) -> Any:
        self._record("progress", status)
        if self.veto and status.phase == Phase.CANCELED:
            return False
        if self.answer is not None:
            return self.answer(op, status)
        return None

    def on_stop(self, op: Any, status: Status) -> None:
        self._record("stop", status)
        self.stopped.set()

    def on_low_resource(self, op: Any) -> None:
        self._record("low", None)
        self.low_event.set()

    # -- reading -----------------------------------------------------------------
    def _of(self, kind: str) -> list[Status]:
        with self.lock:
            return [s for k, s in self.events if k == kind and s is not None]

    @property
    def progress(self) -> list[Status]:
        """The on_progress statuses so far."""
        return self._of("progress")

    @property
    def phases(self) -> list[Phase]:
        """The phases of the on_progress statuses so far."""
        return [s.phase for s in self.progress]

    @property
    def stops(self) -> list[Status]:
        """The on_stop statuses so far (one, once the operation ended)."""
        return self._of("stop")

    @property
    def low(self) -> int:
        """How many on_low_resource notifications came."""
        with self.lock:
            return sum(1 for k, _ in self.events if k == "low")

    def kinds(self) -> list[tuple[str, Optional[Phase]]]:
        with self.lock:
            return [(k, None if s is None else s.phase) for k, s in self.events]

    def count(self, kind: str, phase: Optional[Phase] = None) -> int:
        return sum(1 for k, p in self.kinds() if k == kind and (phase is None or p == phase))

    def wait_progress(self, predicate: Callable[[Status], bool],
                      timeout: float = BOUND) -> Optional[Status]:
        """The first recorded on_progress status matching ``predicate``, waiting for it."""
        with self.lock:
            found: list[Status] = []

            def match() -> bool:
                found[:] = [s for k, s in self.events
                            if k == "progress" and s is not None and predicate(s)][:1]
                return bool(found)

            self.lock.wait_for(match, timeout)
            return found[0] if found else None


# ---------------------------------------------------------------------------
# backends: skip when missing, fail when required
# ---------------------------------------------------------------------------
def require(backend: Union[Backend, str], connect: bool = True) -> Backend:
    """The backend, or skip the calling test (fail it when the backend is required).

    ``connect=False`` asks only for the driver (module and ODBC driver), not a server.
    """
    b = BY_NAME[backend] if isinstance(backend, str) else backend
    reason = b.unavailable() if connect else b.driver_unavailable()
    if reason is not None:
        if is_required(b.name):
            pytest.fail(f"backend {b.name} is required (ASYNCHDB_REQUIRE_BACKENDS) "
                        f"but unavailable: {reason}")
        pytest.skip(f"backend {b.name} unavailable: {reason}")
    return b


def ci_run() -> bool:
    """A CI-like run (``ASYNCHDB_REQUIRE_BACKENDS`` set): optional tools must be there."""
    return bool(os.environ.get("ASYNCHDB_REQUIRE_BACKENDS", "").strip())


def require_tool(module: str) -> None:
    """A test tool that is not a backend (ruff, mypy): skip without it, fail in CI."""
    if importlib.util.find_spec(module) is None:
        if ci_run():
            pytest.fail(f"{module} is required in CI but not installed")
        pytest.skip(f"{module} not installed")


def require_module(name: str) -> Any:
    """Import a test dependency that is not a backend, at a test module's top.

    Without it the whole module is skipped, or, in a CI-like run, fails.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if ci_run():
            pytest.fail(f"{name} is required in CI but not installed: {exc}", pytrace=False)
        pytest.skip(f"{name} not installed", allow_module_level=True)


def _marked_backend(item: pytest.Item) -> Optional[Backend]:
    """The backend a test runs on: its ``backend`` parameter, else its ``backend`` marker."""
    b = _param_backend(item)
    if b is not None:
        return b
    mark = item.get_closest_marker("backend")
    return None if mark is None else BY_NAME[mark.args[0]]


def _param_backend(item: pytest.Item) -> Optional[Backend]:
    """The ``backend`` fixture's parameter (a Backend, or a name given indirectly)."""
    callspec = getattr(item, "callspec", None)
    value = None if callspec is None else callspec.params.get("backend")
    if isinstance(value, str):
        return BY_NAME[value]
    return value if isinstance(value, Backend) else None


def pytest_configure(config: pytest.Config) -> None:
    """Give the tests a terminal's Ctrl-C: SIGINT at Python's default handler.

    A test run started in the background of a shell without job control (a
    CI runner, ``cmd &`` in a script) inherits SIGINT *ignored* (POSIX, for
    asynchronous lists); Python then installs no handler, and every child the
    tests start inherits the ignore too, so no Ctrl-C test can deliver one.
    A shell gives a foreground program the default, and so does this: the
    children of a process whose handler is set get SIGINT's default on exec.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests parametrized with the ``backend`` fixture carry ``backend(name)``."""
    for item in items:
        b = _param_backend(item)
        if b is not None:
            item.add_marker(pytest.mark.backend(b.name))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """``backend(name)``: skip (or fail) before any fixture is set up."""
    for mark in item.iter_markers("backend"):
        if len(mark.args) != 1 or mark.args[0] not in BY_NAME:
            raise pytest.UsageError(f"{item.nodeid}: backend() takes one of "
                                    f"{sorted(BY_NAME)}, got {mark.args!r}")
        require(mark.args[0], connect=mark.kwargs.get("connect", True))
    b = _param_backend(item)
    name = getattr(item, "originalname", None) or item.name
    if b is not None and name in b.not_applicable:
        pytest.skip(f"n/a on {b.name}: {b.not_applicable[name]}")


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def no_leaked_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test leaves no asynchdb thread behind once its connections are closed.

    Pool threads retire as soon as no connection is open, so the check polls
    (bounded) for them to go instead of sleeping.
    """
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


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each real backend in turn; skipped when missing (failed when required)."""
    return require(request.param)


@pytest.fixture
def db_path(tmp_path: Any) -> str:
    """A sqlite3 database file of the test's own."""
    return str(tmp_path / "test.db")


@pytest.fixture
def conn(request: pytest.FixtureRequest) -> Iterator[asynchdb.Connection]:
    """A wrapped connection, closed after the test.

    To the test's backend (its ``backend`` parameter or ``backend(name)``
    marker); without one, to a sqlite3 database file of its own (``db_path``),
    opened with ``check_same_thread=False`` so tests may call it synchronously
    from threads of their own (sqlite3's rule, which asynchdb keeps otherwise).
    """
    b = _marked_backend(request.node)  # type: ignore[arg-type]
    if b is None:
        c = asynchdb.connect(sqlite3, request.getfixturevalue("db_path"),
                             check_same_thread=False)
    else:
        c = require(b).connect()
    try:
        yield c
    finally:
        c.close()
