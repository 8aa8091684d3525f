"""``python -m asynchdb query`` (docs/cli.md), tested as a person uses it.

Target parsing and the status line's layout are checked in process; the
command itself runs in a subprocess, with its stderr (and stdin) on a real
pseudo-terminal where the test needs what a terminal does: the status line,
and a Ctrl-C byte that the terminal turns into SIGINT for the command.  The
PostgreSQL tests prove on the server (``pg_stat_activity``) that the statement
is gone.  Every subprocess runs under a timeout, every wait is bounded.
"""

from __future__ import annotations

import fcntl
import importlib.util
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import pytest
from plugin import BOUND, closed_port, require, require_tool, wait_until

from asynchdb import _targets
from asynchdb.__main__ import main
from asynchdb._statusline import LineState, PlainLine, fit, text_width
from asynchdb._targets import TargetError, driver_target, parse_target, redact
from benchmarks.backends import BY_NAME

ROOT = Path(__file__).resolve().parent.parent
#: A password that must never be printed (it has characters URLs must encode).
SECRET = "Zq9-s3cr3t:p@ss/wd"
SECRET_URL = "Zq9-s3cr3t%3Ap%40ss%2Fwd"
#: A sqlite3 statement that runs until something stops it.
SQLITE_FOREVER = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                  "SELECT count(*) FROM n")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def run_cli(*args: str, stdin: Optional[str] = None, timeout: float = 60,
            cwd: Optional[Path] = None) -> subprocess.CompletedProcess[str]:
    """``python -m asynchdb ARGS`` with pipes for stdin, stdout and stderr.

    ``COLUMNS`` is fixed: on a pipe, the status line (``--progress``) takes
    its width from it.
    """
    return subprocess.run([sys.executable, "-m", "asynchdb", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or ROOT, env=_env(COLUMNS="160"))


# ---------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------
@pytest.fixture
def all_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_targets, "_installed", lambda top: True)


@pytest.mark.parametrize(("url", "module", "args", "kwargs", "description"), [
    ("sqlite:///rel.db", "sqlite3", ("rel.db",), {}, "sqlite:///rel.db"),
    ("sqlite:////abs/path.db", "sqlite3", ("/abs/path.db",), {}, "sqlite:////abs/path.db"),
    ("sqlite://", "sqlite3", (":memory:",), {}, "sqlite:// (in memory)"),
    ("sqlite:///x.db?timeout=2.5", "sqlite3", ("x.db",), {"timeout": 2.5},
     "sqlite:///x.db?timeout=2.5"),
    ("sqlite:///x.db?mode=ro", "sqlite3", ("file:x.db?mode=ro",), {"uri": True},
     "sqlite:///x.db?mode=ro"),
    ("duckdb:///data/f.duckdb", "duckdb", ("data/f.duckdb",), {}, "duckdb:///data/f.duckdb"),
    ("duckdb://", "duckdb", (":memory:",), {}, "duckdb:// (in memory)"),
    ("postgresql://u@h:5433/db", "psycopg", (),
     {"user": "u", "host": "h", "port": 5433, "dbname": "db"}, "postgresql://u@h:5433/db"),
    (f"postgresql://u:{SECRET_URL}@[::1]/db?sslmode=require", "psycopg", (),
     {"user": "u", "host": "::1", "password": SECRET, "dbname": "db", "sslmode": "require"},
     "postgresql://u:***@[::1]/db?sslmode=require"),
    ("postgresql+psycopg2://u:pw@h/db", "psycopg2", (),
     {"user": "u", "host": "h", "password": "pw", "dbname": "db"}, "postgresql+psycopg2://u:***@h/db"),
    ("postgresql+pg8000://u:pw@h:5432/db", "pg8000.dbapi", (),
     {"user": "u", "host": "h", "port": 5432, "password": "pw", "database": "db"},
     "postgresql+pg8000://u:***@h:5432/db"),
    ("mysql://root@127.0.0.1/test", "pymysql", (),
     {"host": "127.0.0.1", "user": "root", "database": "test"}, "mysql://root@127.0.0.1/test"),
    ("mariadb://root:pw@db:3307/test", "pymysql", (),
     {"host": "db", "port": 3307, "user": "root", "password": "pw", "database": "test"},
     "mariadb://root:***@db:3307/test"),
    ("mysql+mysqldb://root@h/test", "MySQLdb", (), {"host": "h", "user": "root",
                                                     "database": "test"},
     "mysql+mysqldb://root@h/test"),
    ("clickhouse://h:9000/db", "clickhouse_driver.dbapi", (),
     {"host": "h", "port": 9000, "database": "db"}, "clickhouse://h:9000/db"),
    ("odbc:DRIVER={PostgreSQL Unicode};SERVER=h;UID=u;PWD={a;b}", "pyodbc",
     ("DRIVER={PostgreSQL Unicode};SERVER=h;UID=u;PWD={a;b}",), {},
     "odbc:DRIVER={PostgreSQL Unicode};SERVER=h;UID=u;PWD=***"),
])
def test_target_urls(all_installed: None, url: str, module: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], description: str) -> None:
    t = parse_target(url)
    assert (t.module, t.args, t.kwargs, t.description) == (module, args, kwargs, description)


def test_the_first_installed_driver_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    present = {"psycopg2", "mariadb"}
    monkeypatch.setattr(_targets, "_installed", lambda top: top in present)
    assert parse_target("postgresql://h/db").module == "psycopg2"
    assert parse_target("mysql://h/db").module == "mariadb"
    present.add("psycopg")
    assert parse_target("postgres://h/db").module == "psycopg"


def test_a_missing_driver_is_named_with_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_targets, "_installed", lambda top: False)
    with pytest.raises(TargetError, match=r"pip install 'psycopg\[binary\]' or 'psycopg2-binary'"):
        parse_target("postgresql://u:pw@h/db")
    with pytest.raises(TargetError, match="pip install 'clickhouse-driver'"):
        parse_target("clickhouse://h/db")
    with pytest.raises(TargetError, match="'PyMySQL' or 'mysqlclient' or 'mariadb'"):
        parse_target("mariadb://h/db")


@pytest.mark.parametrize("url", ["", "nonsense", "foo://h/db", "postgresql://h:99999/db",
                                 "postgresql://h:port/db", "sqlite://host/x.db", "odbc:"])
def test_bad_targets(all_installed: None, url: str) -> None:
    with pytest.raises(TargetError):
        parse_target(url)


@pytest.mark.parametrize("url", [
    f"postgresql://u:{SECRET_URL}@h/db",
    f"mysql://u:{SECRET}@h/db",  # unencoded: the last @ ends the user part
    f"clickhouse://u:{SECRET_URL}@h/db",
    f"postgresql://u@h/db?password={SECRET_URL}",
    f"odbc:DRIVER={{x}};UID=u;PWD={{{SECRET}}}",
    f"odbc:DRIVER={{x}};UID=u;Password={SECRET.replace(';', '')}",
])
def test_no_password_in_description_or_repr(all_installed: None, url: str) -> None:
    t = parse_target(url)
    assert SECRET in t.secrets or SECRET in str(t.args) or SECRET in str(t.kwargs)
    for shown in (t.description, repr(t), str(t), t.scrub(f"failed: {t.args} {t.kwargs}")):
        assert SECRET not in shown
        assert SECRET_URL not in shown


def test_driver_targets_hide_passwords() -> None:
    t = driver_target("sqlite3", f"host=h password={SECRET.replace(' ', '')} dbname=x")
    assert t.module == "sqlite3" and t.args == (f"host=h password={SECRET} dbname=x",)
    assert SECRET not in t.description and SECRET not in repr(t)
    assert redact(f"x://u:{SECRET_URL}@h/ PWD={{{SECRET}}}") == "x://u:***@h/ PWD=***"
    with pytest.raises(TargetError, match="no module named"):
        driver_target("no_such_driver_module_xyz", "x")


# ---------------------------------------------------------------------------
# the status line's layout
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("state", [
    LineState("running", 3.25, 420, 1000, "duckdb: 42% of the plan"),
    LineState("connecting", 0.0),
    LineState("fetching 1,234,567 rows", 75.0, 0, None, "sqlite3: about 31000000 steps"),
    LineState("running", 4000.0, 1, 3, "表示テキスト with wide characters"),
])
def test_the_line_fits_every_width(state: LineState) -> None:
    plain = PlainLine(io.StringIO(), tty=True)
    for width in range(1, 121):
        line = plain.render(state, width)
        assert text_width(line) <= max(1, width - 1), (width, line)
        layout = fit(state, width)
        assert layout.bar == 0 or 8 <= layout.bar <= 30
    wide = plain.render(state, 120)
    assert state.phase.split()[0] in wide
    if state.total:
        assert f"{100 * state.done // state.total:.0f}%" in wide and "#" in wide
    if state.text:
        assert state.text[:10] in wide


def test_the_renderer_chosen_for_each_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from asynchdb._statusline import RichLine, make_status_line

    monkeypatch.setenv("TERM", "xterm")
    buf = io.StringIO()
    assert isinstance(make_status_line(buf, tty=False), PlainLine)
    assert isinstance(make_status_line(buf, tty=True, style="plain"), PlainLine)
    if importlib.util.find_spec("rich") is not None:
        assert isinstance(make_status_line(buf, tty=True), RichLine)
    monkeypatch.setenv("TERM", "dumb")
    line = make_status_line(buf, tty=True)
    assert isinstance(line, PlainLine)
    line.show(LineState("running", 1.0))
    line.close()
    assert "\x1b" not in buf.getvalue() and "running" in buf.getvalue()


# ---------------------------------------------------------------------------
# the command, in a subprocess: output and exit statuses (sqlite3, DuckDB)
# ---------------------------------------------------------------------------
def test_help_lists_the_three_commands() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("demo", "query", "check"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.M), proc.stdout
    proc = run_cli("query", "--help")
    assert proc.returncode == 0 and "--cancel-after" in proc.stdout and "124" in proc.stdout


ROWS_SQL = "SELECT 1 AS id, 'a,b' AS name, NULL AS note UNION ALL SELECT 22, 'héllo', 2.5"


def test_rows_as_table_csv_and_json_on_stdout_only() -> None:
    table = run_cli("query", "sqlite://", ROWS_SQL)
    assert (table.returncode, table.stderr) == (0, "")
    assert table.stdout.splitlines() == [
        " id | name  | note",
        "----+-------+------",
        "  1 | a,b   |",
        " 22 | héllo |  2.5",
    ]
    csv_ = run_cli("query", "sqlite://", ROWS_SQL, "--format", "csv")
    assert (csv_.returncode, csv_.stderr) == (0, "")
    assert csv_.stdout == 'id,name,note\n1,"a,b",\n22,héllo,2.5\n'
    js = run_cli("query", "sqlite://", ROWS_SQL, "--format", "json")
    assert (js.returncode, js.stderr) == (0, "")
    assert js.stdout == ('{"id": 1, "name": "a,b", "note": null}\n'
                         '{"id": 22, "name": "héllo", "note": 2.5}\n')


def test_sql_from_a_file_or_stdin_and_writes_are_committed(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    script = tmp_path / "create.sql"
    script.write_text("CREATE TABLE t (x INTEGER)")
    assert run_cli("query", f"sqlite:///{db.name}", "-f", str(script), cwd=tmp_path).returncode == 0
    ins = run_cli("query", f"sqlite:///{db.name}", "-", stdin="INSERT INTO t VALUES (7), (8)",
                  cwd=tmp_path)
    assert (ins.returncode, ins.stdout, ins.stderr) == (0, "", "")
    got = run_cli("query", f"sqlite:////{db}", "SELECT sum(x) AS s FROM t", "--format", "csv")
    assert (got.returncode, got.stdout) == (0, "s\n15\n")


def test_exit_1_with_the_database_message() -> None:
    proc = run_cli("query", "sqlite://", "SELECT * FROM no_such_table")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "no such table: no_such_table" in proc.stderr


@pytest.mark.parametrize("args", [
    ["query", "foo://h/db", "SELECT 1"],
    ["query", "sqlite://"],
    ["query", "sqlite://", "   "],
    ["query", "sqlite://", "SELECT 1", "-f", "x.sql"],
    ["query", "sqlite://", "-f", "/no/such/file.sql"],
    ["query", "--driver", "no_such_driver_module_xyz", "whatever", "SELECT 1"],
    ["query", "sqlite://", "SELECT 1", "--cancel-after", "soon"],
    ["query", "sqlite://", "SELECT 1", "--format", "xml"],
    ["query", "sqlite://", "SELECT 1", "--progress", "--no-progress"],
    ["query", "--driver", "json", "x", "SELECT 1"],  # a module with no connect()
])
def test_exit_2_for_bad_usage(args: list[str]) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "error" in proc.stderr


def test_exit_2_names_the_package_of_a_missing_driver(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(_targets, "_installed", lambda top: False)
    assert main(["query", f"postgresql://u:{SECRET_URL}@h/db", "SELECT 1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "pip install 'psycopg[binary]'" in err
    assert SECRET not in err and SECRET_URL not in err


def test_exit_124_when_cancel_after_passes() -> None:
    start = time.monotonic()
    proc = run_cli("query", "sqlite://", SQLITE_FOREVER, "--cancel-after", "0.5")
    assert proc.returncode == 124, proc.stderr
    assert time.monotonic() - start < BOUND
    assert proc.stdout == ""
    assert "cancelled" in proc.stderr and "--cancel-after 0.5 s" in proc.stderr


def test_cancel_after_zero_gives_up_before_connecting() -> None:
    proc = run_cli("query", "sqlite://", "SELECT 1", "--cancel-after", "0")
    assert proc.returncode == 124
    assert proc.stdout == ""
    assert "gave up connecting to sqlite:// (in memory)" in proc.stderr


def test_rows_stream_to_a_pipe_that_closes_early() -> None:
    # `| head -3`: the reader goes away; the command stops quietly
    many = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
            "SELECT x FROM c")
    proc = subprocess.Popen([sys.executable, "-m", "asynchdb", "query", "sqlite://", many,
                             "--format", "csv"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=_env())
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert [proc.stdout.readline() for _ in range(3)] == [b"x\n", b"1\n", b"2\n"]
        proc.stdout.close()
        assert proc.wait(BOUND) == 0
        err = proc.stderr.read().decode()
        assert "Traceback" not in err and "BrokenPipe" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()  # type: ignore[union-attr]


NO_CANCEL_DRIVER = """\
from asynchdb import testing
from asynchdb.testing import (DatabaseError, Error, InterfaceError, OperationalError,
                              ProgrammingError, Warning)

apilevel, threadsafety, paramstyle = "2.0", 1, "qmark"
__asynchdb_adapter__ = testing.FakeAdapter


def connect(target):
    return testing.connect(can_cancel=False)
"""


def test_a_driver_that_cannot_cancel_is_reported_honestly(tmp_path: Path) -> None:
    # the fake driver's statement blocks for up to 30 s and nothing can stop it:
    # the command says so, and exits promptly all the same
    (tmp_path / "nocancel_driver.py").write_text(NO_CANCEL_DRIVER)
    env = _env()
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env["PYTHONPATH"]
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "asynchdb", "query", "--driver",
                           "nocancel_driver", "x", "block g1", "--cancel-after", "0.5"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert proc.returncode == 124, proc.stderr
    assert time.monotonic() - start < 10
    assert "cannot cancel: the statement was abandoned and may still be running" in proc.stderr


def test_a_fake_statement_is_cancelled_through_the_driver() -> None:
    proc = run_cli("query", "--driver", "asynchdb.testing", "x", "block g1",
                   "--cancel-after", "0.5")
    assert proc.returncode == 124, proc.stderr
    assert "the statement was cancelled in the database" in proc.stderr


def test_progress_on_a_pipe_shows_sqlite_steps() -> None:
    proc = run_cli("query", "sqlite://", SQLITE_FOREVER, "--cancel-after", "1.5", "--progress")
    assert proc.returncode == 124
    assert proc.stdout == ""
    assert "running" in proc.stderr and "virtual-machine steps" in proc.stderr
    # redrawn at least twice a second (text mode reads each \r as a new line)
    assert proc.stderr.count("running") >= 3


@pytest.mark.backend("duckdb", connect=False)
def test_progress_shows_duckdb_percentage() -> None:
    proc = run_cli("query", "duckdb://", "SELECT count(*) FROM range(10000000000) t(x) "
                   "WHERE x % 7 = 3", "--cancel-after", "4", "--progress")
    assert proc.returncode == 124, proc.stderr
    assert re.search(r"running +\d+\.\ds [#-]+ +\d+%", proc.stderr), proc.stderr[-500:]


# ---------------------------------------------------------------------------
# in a pseudo-terminal: the status line, a clean screen, Ctrl-C
# ---------------------------------------------------------------------------
_CSI = re.compile(rb"\x1b\[([?0-9;]*)([A-Za-z])")


class Screen:
    """Just enough of a terminal to tell what a person would see at the end."""

    def __init__(self, cols: int) -> None:
        self.cols = cols
        self.lines: list[list[str]] = [[]]
        self.row = self.col = 0
        self.wrapped = 0  # characters that went past the last column

    def feed(self, data: bytes) -> Screen:
        text = data
        i = 0
        while i < len(text):
            m = _CSI.match(text, i)
            if m:
                self._csi(m.group(1).decode(), m.group(2).decode())
                i = m.end()
                continue
            ch = text[i:i + 1]
            if ch == b"\x1b":  # another escape: skip ESC and the next byte
                i += 2
                continue
            if ch == b"\r":
                self.col = 0
            elif ch == b"\n":
                self.row += 1
                while len(self.lines) <= self.row:
                    self.lines.append([])
            elif ch >= b" ":
                n = 1
                while i + n < len(text) and (text[i + n] & 0xC0) == 0x80:
                    n += 1  # one UTF-8 character
                self._put(text[i:i + n].decode("utf-8", "replace"))
                i += n
                continue
            i += 1
        return self

    def _put(self, ch: str) -> None:
        if self.col >= self.cols:
            self.wrapped += 1
            self.row += 1
            self.col = 0
            while len(self.lines) <= self.row:
                self.lines.append([])
        line = self.lines[self.row]
        while len(line) <= self.col:
            line.append(" ")
        line[self.col] = ch
        self.col += 1

    def _csi(self, params: str, final: str) -> None:
        n = int(params) if params.isdigit() else None
        line = self.lines[self.row]
        if final == "K":
            if n == 2:
                line.clear()
            else:
                del line[self.col:]
        elif final == "A":
            self.row = max(0, self.row - (n or 1))
        elif final == "G":
            self.col = (n or 1) - 1
        # m (colours), h/l (cursor shown/hidden): nothing to draw

    def text(self) -> list[str]:
        rows = ["".join(line).rstrip() for line in self.lines]
        return [r for r in rows if r]


class PtyRun:
    """The command with stdin and stderr on a pseudo-terminal it controls.

    stdout is a pipe, as when rows are redirected; what the terminal shows
    is collected from the pty's master side with bounded reads.
    """

    def __init__(self, args: list[str], *, cols: int, style: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
        self.master = master
        self.output = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asynchdb", *args], stdin=slave, stdout=subprocess.PIPE,
            stderr=slave, cwd=ROOT, env=_env(ASYNCHDB_STATUS_STYLE=style, TERM="xterm"),
            start_new_session=True, preexec_fn=_controlling_tty)
        os.close(slave)

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                pass

    def read_until(self, predicate: Any, timeout: float = BOUND) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.output):
                return True
            if self.proc.poll() is not None:
                self.read(0.05)
                return bool(predicate(self.output))
            self.read(0.05)
        return bool(predicate(self.output))

    def ctrl_c(self) -> tuple[int, float]:
        """Type Ctrl-C; the command's exit status and the seconds it took to end."""
        sent = time.monotonic()
        os.write(self.master, b"\x03")  # what Ctrl-C types
        status = self.finish()
        return status, time.monotonic() - sent

    def finish(self, timeout: float = BOUND) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"the command did not end within {timeout} s: {self.output[-500:]!r}")
        self.read(0.05)
        self.read(0.05)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read().decode()
        self.proc.stdout.close()
        os.close(self.master)


def _controlling_tty() -> None:
    # in the child, after setsid(): make the pty on stdin its controlling terminal,
    # so that a Ctrl-C byte on the master side sends it SIGINT
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _status_part(output: bytes, message: bytes) -> tuple[bytes, bytes]:
    at = output.rfind(message)
    assert at >= 0, output[-800:]
    return output[:at], output[at:]


@pytest.mark.parametrize("style", ["plain", "rich"])
def test_pty_status_line_on_a_narrow_terminal(style: str) -> None:
    if style == "rich":
        require_tool("rich")
    cols = 28
    run = PtyRun(["query", "sqlite://", SQLITE_FOREVER, "--cancel-after", "2"],
                 cols=cols, style=style)
    try:
        assert run.read_until(lambda out: b"sqlite3" in out), run.output
        assert run.finish() == 124
    finally:
        run.close()
    status, message = _status_part(run.output, b"cancelled:")
    assert b"running" in status
    screen = Screen(cols).feed(status)
    assert screen.wrapped == 0, status[-400:]       # never wider than the terminal
    assert screen.text() == [], screen.text()        # and wiped before the message
    assert message.decode().replace("\r\n", "\n").startswith(
        "cancelled: --cancel-after 2 s passed; the statement was cancelled in the database")
    # redrawn at least twice a second over the 2 s it ran
    assert status.count(b"running") >= 4
    assert run.stdout == ""


@pytest.mark.parametrize("style", ["plain", "rich"])
def test_pty_ctrl_c_stops_a_sqlite_statement(style: str) -> None:
    if style == "rich":
        require_tool("rich")
    run = PtyRun(["query", "sqlite://", SQLITE_FOREVER], cols=80, style=style)
    try:
        assert run.read_until(lambda out: b"virtual-machine steps" in out), run.output
        status, _ = run.ctrl_c()
        assert status == 130
    finally:
        run.close()
    status, message = _status_part(run.output, b"interrupted")
    assert Screen(80).feed(status).text() in ([], ["^C"])
    assert message.decode().strip() == "interrupted: the statement was cancelled in the database"


def test_pty_no_progress_shows_no_status_line() -> None:
    run = PtyRun(["query", "sqlite://", "SELECT 42 AS answer", "--no-progress"], cols=80,
                 style="plain")
    try:
        assert run.finish() == 0
    finally:
        run.close()
    assert b"connecting" not in run.output and b"running" not in run.output
    assert run.stdout.splitlines() == [" answer", "--------", "     42"]


def _pg_url(password: Optional[str] = None) -> str:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(BY_NAME["psycopg"].dsn())
    auth = str(info.get("user", "postgres")) + (f":{password}" if password else "")
    return (f"postgresql://{auth}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/"
            f"{info.get('dbname', 'test')}")


def _pg_running(tag: str) -> bool:
    backend = BY_NAME["psycopg"]
    raw = backend.connect_raw()
    try:
        cur = raw.cursor()
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE %s AND pid <> pg_backend_pid()", (f"%{tag}%",))
        return bool(cur.fetchone()[0])
    finally:
        raw.close()


@pytest.mark.backend("psycopg")
@pytest.mark.parametrize("style", ["plain", "rich"])
def test_pty_ctrl_c_stops_the_postgresql_statement(style: str) -> None:
    if style == "rich":
        require_tool("rich")
    tag = f"cli_{uuid.uuid4().hex[:12]}"
    cols = 60
    run = PtyRun(["query", _pg_url(SECRET_URL), f"SELECT pg_sleep(60), '{tag}'"],
                 cols=cols, style=style)
    try:
        assert run.read_until(lambda out: b"running" in out), run.output
        assert wait_until(lambda: _pg_running(tag), interval=0.05), "never ran on the server"
        status, took = run.ctrl_c()
        assert status == 130
        assert took < 5
    finally:
        run.close()
    assert wait_until(lambda: not _pg_running(tag), timeout=5, interval=0.05), \
        "the statement is still running on the server"
    status, message = _status_part(run.output, b"interrupted")
    screen = Screen(cols).feed(status)
    assert screen.wrapped == 0
    assert screen.text() in ([], ["^C"]) or all(t.strip() == "^C" for t in screen.text())
    assert message.decode().strip() == "interrupted: the statement was cancelled in the database"
    assert SECRET.encode() not in run.output and SECRET_URL.encode() not in run.output
    assert run.stdout == ""


@pytest.mark.backend("psycopg")
def test_cancel_after_stops_the_postgresql_statement() -> None:
    tag = f"cli_{uuid.uuid4().hex[:12]}"
    proc = run_cli("query", _pg_url(), f"SELECT pg_sleep(60), '{tag}'", "--cancel-after", "1")
    assert proc.returncode == 124, proc.stderr
    assert "the statement was cancelled in the database" in proc.stderr
    assert wait_until(lambda: not _pg_running(tag), timeout=5, interval=0.05)


@pytest.mark.backend("psycopg")
def test_postgresql_passwords_are_never_printed() -> None:
    url = _pg_url(SECRET_URL)  # trust authentication: the password is sent, not checked
    outputs = []
    ok = run_cli("query", url, "SELECT 1 AS one", "--progress")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["one", "-----", "1"]
    outputs.append(ok)
    bad = run_cli("query", url, "SELECT no_such_column", "--progress")
    assert bad.returncode == 1 and "no_such_column" in bad.stderr
    outputs.append(bad)
    port = closed_port()
    down = run_cli("query", f"postgresql://postgres:{SECRET_URL}@127.0.0.1:{port}/test",
                   "SELECT 1")
    assert down.returncode == 1
    assert f"postgresql://postgres:***@127.0.0.1:{port}/test" in down.stderr
    outputs.append(down)
    raw = run_cli("query", "--driver", "psycopg",
                  f"host=127.0.0.1 port={port} user=postgres password={SECRET.replace(' ', '')}",
                  "SELECT 1")
    assert raw.returncode == 1 and "password=***" in raw.stderr
    outputs.append(raw)
    for proc in outputs:
        for text in (proc.stdout, proc.stderr):
            assert SECRET not in text and SECRET_URL not in text, text


@pytest.mark.backend("psycopg")
def test_driver_option_passes_the_target_as_is() -> None:
    require("psycopg")
    proc = run_cli("query", "--driver", "psycopg", BY_NAME["psycopg"].dsn(),
                   "SELECT 40 + 2 AS answer", "--format", "json")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, '{"answer": 42}\n', "")


@pytest.mark.backend("clickhouse")
def test_pty_clickhouse_progress_and_ctrl_c_stop_both_shards() -> None:
    """``query clickhouse://``: the live line shows rows read, Ctrl-C stops both shards."""
    from benchmarks.backends import clickhouse_monitor, marker

    backend = BY_NAME["clickhouse"]
    tag = marker()
    with clickhouse_monitor(backend) as servers:
        def on_both() -> bool:
            found = servers(tag)
            return len(found) == 2 and all(found.values())

        run = PtyRun(["query", backend.dsn(), backend.long_sql(60, tag)], cols=80, style="plain")
        try:
            # ClickHouse's own figures, live: "rows" appears once progress packets arrive
            assert run.read_until(lambda out: b"rows" in out), run.output
            assert wait_until(on_both, interval=0.05), f"never ran on both shards: {servers(tag)}"
            status, took = run.ctrl_c()
            assert status == 130
            assert took < 5
        finally:
            run.close()
        assert wait_until(lambda: not any(servers(tag).values()), timeout=5, interval=0.05), \
            f"still running: {servers(tag)}"
    _, message = _status_part(run.output, b"interrupted")
    assert message.decode().strip() == "interrupted: the statement was cancelled in the database"
    assert run.stdout == ""
