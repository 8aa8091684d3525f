"""Database targets for the command line: SQLAlchemy-style URLs and ``--driver``.

``parse_target(url)`` turns ``postgresql://user:secret@host:5432/db`` into the
driver module to import, the arguments for its ``connect`` and a description
with no password in it.  The scheme picks the driver; where several drivers
serve one scheme (``postgresql://``: psycopg 3, else psycopg2) the first one
installed wins, found with ``importlib.util.find_spec`` so that nothing is
imported here.  ``driver_target(module, text)`` is the ``--driver MODULE``
form: the text goes unchanged to ``MODULE.connect``.

Invariants: this module imports nothing from asynchdb and no driver; a
password never reaches ``Target.description`` nor ``repr(Target)``; every
secret found in the target is listed in ``Target.secrets`` so that messages
coming back from a driver can be scrubbed with :func:`redact` before they are
printed.  Problems with the target raise :class:`TargetError`, whose message
names the package to install when a driver is missing (the CLI exits 2).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, quote, unquote

__all__ = ["Target", "TargetError", "driver_target", "parse_target", "redact"]


class TargetError(ValueError):
    """The target cannot be used: unknown scheme, bad URL, or no driver installed."""


@dataclass(frozen=True)
class Target:
    """What to connect to: ``import_module(module).connect(*args, **kwargs)``."""

    #: The DB-API module to import (``psycopg``, ``clickhouse_driver.dbapi``...).
    module: str
    #: Positional arguments for its ``connect``.
    args: tuple[Any, ...] = field(default=(), repr=False)
    #: Keyword arguments for its ``connect``.
    kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The target with any password replaced by ``***``: safe to print.
    description: str = ""
    #: Strings that must never be printed (passwords), for :func:`redact`.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def scrub(self, text: str) -> str:
        """``text`` with every secret of this target replaced by ``***``."""
        return redact(text, self.secrets)


# One scheme: the candidate drivers in order of preference, each as
# (module to import, top-level module to look for, package to install).
_Candidate = tuple[str, str, str]
_PG: list[_Candidate] = [("psycopg", "psycopg", "psycopg[binary]"),
                         ("psycopg2", "psycopg2", "psycopg2-binary")]
_MY: list[_Candidate] = [("pymysql", "pymysql", "PyMySQL"),
                         ("MySQLdb", "MySQLdb", "mysqlclient"),
                         ("mariadb", "mariadb", "mariadb")]
_SCHEMES: dict[str, list[_Candidate]] = {
    "sqlite": [("sqlite3", "sqlite3", "Python built with sqlite3")],
    "sqlite+pysqlite": [("sqlite3", "sqlite3", "Python built with sqlite3")],
    "duckdb": [("duckdb", "duckdb", "duckdb")],
    "postgresql": _PG,
    "postgres": _PG,
    "postgresql+psycopg": _PG[:1],
    "postgresql+psycopg2": _PG[1:],
    "postgresql+pg8000": [("pg8000.dbapi", "pg8000", "pg8000")],
    "mysql": _MY,
    "mariadb": _MY,
    "mysql+pymysql": _MY[:1],
    "mariadb+pymysql": _MY[:1],
    "mysql+mysqldb": _MY[1:2],
    "mariadb+mysqldb": _MY[1:2],
    "mysql+mariadbconnector": _MY[2:],
    "mariadb+mariadbconnector": _MY[2:],
    "clickhouse": [("clickhouse_driver.dbapi", "clickhouse_driver", "clickhouse-driver")],
    "clickhouse+native": [("clickhouse_driver.dbapi", "clickhouse_driver",
                           "clickhouse-driver")],
    "odbc": [("pyodbc", "pyodbc", "pyodbc")],
}

#: The schemes, for help texts.
SCHEMES = tuple(_SCHEMES)


def _installed(top: str) -> bool:
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _pick(scheme: str) -> str:
    candidates = _SCHEMES[scheme]
    for module, top, _package in candidates:
        if _installed(top):
            return module
    names = " or ".join(f"'{package}'" for _m, _t, package in candidates)
    if candidates[0][0] == "sqlite3":
        raise TargetError("this Python has no sqlite3 module: use a Python built with SQLite")
    raise TargetError(f"{scheme}:// needs a driver that is not installed: "
                      f"pip install {names}")


@dataclass
class _Url:
    scheme: str
    user: Optional[str]
    password: Optional[str]
    host: Optional[str]
    port: Optional[int]
    database: str
    query: dict[str, str]


def _split(url: str) -> _Url:
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise TargetError(f"not a URL (scheme://...): {_describe_raw(url)}")
    scheme = scheme.lower()
    rest, _, query_text = rest.partition("?")
    # the last @ ends the user part, so an unencoded @ or / in a password
    # stays in the password (and out of the description)
    userinfo, at, rest = rest.rpartition("@")
    hostport, slash, path = rest.partition("/")
    user = password = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        user = unquote(user_text) or None
        password = unquote(password_text) if colon else None
    host: Optional[str] = hostport
    port: Optional[int] = None
    if hostport.startswith("["):  # [::1]:5432
        inside, _, after = hostport[1:].partition("]")
        host = inside
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = hostport.partition(":")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            where = _describe(scheme, user, host, None, path)
            raise TargetError(f"bad port {port_text!r} in {where}")
        port = int(port_text)
    query = dict(parse_qsl(query_text, keep_blank_values=True))
    return _Url(scheme, user, password, unquote(host or "") or None, port,
                unquote(path) if slash else "", query)


def _describe(scheme: str, user: Optional[str], host: Optional[str],
              port: Optional[int], database: str, password: bool = False,
              query: Optional[dict[str, str]] = None) -> str:
    auth = ""
    if user is not None or password:
        auth = quote(user or "", safe="") + (":***" if password else "") + "@"
    hostport = host or ""
    if hostport and ":" in hostport:
        hostport = f"[{hostport}]"
    if port is not None:
        hostport += f":{port}"
    text = f"{scheme}://{auth}{hostport}/{database}"
    if query:
        text += "?" + "&".join(f"{k}={'***' if _secret_key(k) else v}"
                               for k, v in query.items())
    return text


def _secret_key(key: str) -> bool:
    return key.lower() in {"password", "passwd", "pwd", "pass", "secret", "token"}


def _secrets(url: _Url) -> tuple[str, ...]:
    found = [url.password] if url.password else []
    found += [v for k, v in url.query.items() if _secret_key(k) and v]
    return tuple(found)


def _file_target(url: _Url) -> tuple[str, bool]:
    if url.host or url.user or url.port:
        raise TargetError(f"{url.scheme}: a file URL has no host: "
                          f"{url.scheme}:///relative.db or {url.scheme}:////absolute.db")
    memory = url.database in ("", ":memory:")
    return (":memory:" if memory else url.database), memory


def _sqlite(url: _Url, module: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    path, _memory = _file_target(url)
    kwargs: dict[str, Any] = {}
    options = dict(url.query)
    if "timeout" in options:
        try:
            kwargs["timeout"] = float(options.pop("timeout"))
        except ValueError:
            raise TargetError("sqlite: timeout must be a number of seconds") from None
    if options:  # mode=ro, cache=shared...: SQLite's own URI parameters
        uri = "file:" + quote(path) + "?" + "&".join(f"{k}={v}" for k, v in options.items())
        return (uri,), {**kwargs, "uri": True}
    return (path,), kwargs


def _bool(key: str, text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise TargetError(f"{key} must be true or false, not {text!r}")


def _duckdb(url: _Url, module: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    path, _memory = _file_target(url)
    options = dict(url.query)
    kwargs: dict[str, Any] = {}
    if "read_only" in options:
        kwargs["read_only"] = _bool("read_only", options.pop("read_only"))
    if options:
        kwargs["config"] = options
    return (path,), kwargs


def _postgresql(url: _Url, module: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    kwargs: dict[str, Any] = {}
    if module == "pg8000.dbapi":
        kwargs["user"] = url.user or "postgres"
        names = {"host": "host", "port": "port", "password": "password",
                 "database": "database"}
    else:
        names = {"host": "host", "port": "port", "password": "password",
                 "database": "dbname", "user": "user"}
        if url.user:
            kwargs["user"] = url.user
    if url.host:
        kwargs[names["host"]] = url.host
    if url.port is not None:
        kwargs[names["port"]] = url.port
    if url.password is not None:
        kwargs[names["password"]] = url.password
    if url.database:
        kwargs[names["database"]] = url.database
    kwargs.update(url.query)
    return (), kwargs


def _keywords(url: _Url, host: Optional[str] = None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The URL's parts as the usual connect keywords (host, port, user, password, database)."""
    kwargs: dict[str, Any] = {}
    if url.host or host:
        kwargs["host"] = url.host or host
    if url.port is not None:
        kwargs["port"] = url.port
    if url.user:
        kwargs["user"] = url.user
    if url.password is not None:
        kwargs["password"] = url.password
    if url.database:
        kwargs["database"] = url.database
    kwargs.update(url.query)
    return (), kwargs


def _mysql(url: _Url, module: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return _keywords(url)


def _clickhouse(url: _Url, module: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return _keywords(url, host="localhost")


_Builder = Callable[[_Url, str], tuple[tuple[Any, ...], dict[str, Any]]]
_BUILDERS: dict[str, _Builder] = {
    "sqlite3": _sqlite,
    "duckdb": _duckdb,
    "psycopg": _postgresql,
    "psycopg2": _postgresql,
    "pg8000.dbapi": _postgresql,
    "pymysql": _mysql,
    "MySQLdb": _mysql,
    "mariadb": _mysql,
    "clickhouse_driver.dbapi": _clickhouse,
}


def parse_target(url: str) -> Target:
    """The driver module, connect arguments and description for a target URL.

    Raises:
        TargetError: unknown scheme, malformed URL, or no driver for the scheme
            installed (the message names the package to install).
    """
    if not isinstance(url, str) or not url:
        raise TargetError("the target is empty")
    if url[:5].lower() == "odbc:":
        module = _pick("odbc")
        connstr = url[5:]
        if connstr.startswith("//"):
            connstr = connstr[2:]
        if not connstr:
            raise TargetError("odbc: needs a connection string: odbc:DRIVER={...};SERVER=...")
        secrets = odbc_secrets(connstr)
        return Target(module, (connstr,), {}, "odbc:" + redact(connstr, secrets), secrets)
    parts = _split(url)
    if parts.scheme not in _SCHEMES:
        raise TargetError(f"unknown scheme {parts.scheme}://; known: "
                          + ", ".join(s + "://" for s in _SCHEMES if "+" not in s and s != "odbc")
                          + ", odbc:, or --driver MODULE")
    module = _pick(parts.scheme)
    args, kwargs = _BUILDERS[module](parts, module)
    description = _describe(parts.scheme, parts.user, parts.host, parts.port, parts.database,
                            password=parts.password is not None, query=parts.query)
    if module in ("sqlite3", "duckdb") and args[0] == ":memory:":
        description = f"{parts.scheme}:// (in memory)"
    return Target(module, args, kwargs, description, _secrets(parts))


_KEYVALUE_SECRET = re.compile(
    r"""(?ix)(?P<key>\b(?:password|passwd|pwd|pass|secret|token)\s*=\s*)
        (?P<value>\{[^}]*\}|'[^']*'|"[^"]*"|[^;\s&]*)""")
_URL_PASSWORD = re.compile(r"(?P<key>://[^:/@\s]*:)(?P<value>[^@\s]*)(?=@)")


def odbc_secrets(text: str) -> tuple[str, ...]:
    """The passwords in a connection string or URL (``PWD={x}``, ``password=x``, ``//u:x@``)."""
    found: list[str] = []
    for pattern in (_KEYVALUE_SECRET, _URL_PASSWORD):
        for m in pattern.finditer(text):
            value = m.group("value")
            if len(value) >= 2 and value[0] + value[-1] in ("{}", "''", '""'):
                value = value[1:-1]
            if value:
                found.append(value)
                if pattern is _URL_PASSWORD and unquote(value) != value:
                    found.append(unquote(value))
    return tuple(found)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with ``secrets`` and anything that looks like a password hidden."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    text = _KEYVALUE_SECRET.sub(lambda m: m.group("key") + ("***" if m.group("value") else ""),
                                text)
    return _URL_PASSWORD.sub(lambda m: m.group("key") + "***", text)


def _describe_raw(text: str) -> str:
    return redact(text, odbc_secrets(text))


def driver_target(module: str, text: str) -> Target:
    """``--driver MODULE TARGET``: ``TARGET`` goes unchanged to ``MODULE.connect``.

    Raises:
        TargetError: the module cannot be found (the message says to install it).
    """
    top = module.split(".", maxsplit=1)[0]
    if not module or not _installed(top):
        raise TargetError(f"no module named {module!r}: install the package that provides it")
    secrets = odbc_secrets(text)
    return Target(module, (text,), {}, f"{module}: {redact(text, secrets)}", secrets)
