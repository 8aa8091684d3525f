"""Database URLs for the command line (API.md section 13): which driver, which arguments.

:func:`parse_target` turns a TARGET in SQLAlchemy's spelling into the driver's
module name and the arguments for its ``connect``; :func:`describe_target`
gives the same TARGET with any password masked, for messages.  Both are pure
(no driver is imported; :func:`parse_target` only asks which drivers are
installed, to pick one where a scheme allows several).

================================  ===========================================
TARGET                            driver, ``connect`` arguments
================================  ===========================================
``sqlite:///rel.db``              ``sqlite3``, ``("rel.db",)``
``sqlite:////abs/path.db``        ``sqlite3``, ``("/abs/path.db",)``
``sqlite://``                     ``sqlite3``, ``(":memory:",)``
``duckdb:///path``, ``duckdb://``  ``duckdb``, ``("path",)`` / ``(":memory:",)``
``postgresql://u@h:p/db``         psycopg 3, else psycopg2 (the URL itself,
                                  which both take as a conninfo)
``postgresql+psycopg2://...``     ``psycopg2``; ``+psycopg``: ``psycopg``
``postgresql+pg8000://...``       ``pg8000``, keywords (user, password, host,
                                  port, database)
``mysql://`` or ``mariadb://``    PyMySQL, else mysqlclient, else mariadb;
                                  keywords (host, port, user, password,
                                  database)
``mysql+pymysql://``,             that driver
``mysql+mysqldb://``,
``mysql+mariadbconnector://``
``clickhouse://host:port/db``     ``clickhouse_driver.dbapi``, ``dsn=URL``
``odbc:<connection string>``      ``pyodbc``, ``("<connection string>",)``
================================  ===========================================

Query parameters (``?charset=utf8mb4&connect_timeout=5``) become keyword
arguments for the keyword drivers (whole numbers as ``int``); the conninfo
drivers get them inside the URL, as they expect.  ``%xx`` escapes in the user,
password and database are decoded.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["UnknownTarget", "describe_target", "package_for", "parse_target"]

#: pip package that provides each driver module (for "not installed" messages).
_PACKAGES = {
    "sqlite3": "Python's own sqlite3 module", "duckdb": "duckdb", "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary", "pg8000": "pg8000", "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient", "mariadb": "mariadb", "pyodbc": "pyodbc",
    "clickhouse_driver.dbapi": "clickhouse-driver",
}
#: driver choices of a scheme, in order of preference
_POSTGRES = ("psycopg", "psycopg2")
_MYSQL = ("pymysql", "MySQLdb", "mariadb")
#: ``scheme+dialect`` -> driver module
_DIALECTS = {
    "postgresql+psycopg": "psycopg", "postgresql+psycopg2": "psycopg2",
    "postgresql+pg8000": "pg8000",
    "mysql+pymysql": "pymysql", "mysql+mysqldb": "MySQLdb",
    "mysql+mariadbconnector": "mariadb", "mysql+mariadb": "mariadb",
    "mariadb+pymysql": "pymysql", "mariadb+mysqldb": "MySQLdb",
    "mariadb+mariadbconnector": "mariadb", "mariadb+mariadb": "mariadb",
}
_ODBC_SECRET = re.compile(r"(?i)\b(PWD|PASSWORD)\s*=\s*(\{[^}]*\}|[^;]*)")


class UnknownTarget(ValueError):
    """TARGET is not a URL any known driver takes."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module.split(".", maxsplit=1)[0]) is not None
    except (ImportError, ValueError):
        return False


def _first_installed(choices: tuple[str, ...]) -> str:
    """The first installed driver of ``choices`` (the first one when none is)."""
    return next((m for m in choices if _installed(m)), choices[0])


def package_for(module: str) -> str:
    """The package to install for driver ``module`` (for error messages)."""
    return _PACKAGES.get(module, module.split(".", maxsplit=1)[0])


def _value(text: str) -> Any:
    return int(text) if text.isdigit() else text


def _keywords(url: str, db_key: str = "database") -> dict[str, Any]:
    parts = urlsplit(url)
    kwargs: dict[str, Any] = {}
    if parts.hostname:
        kwargs["host"] = parts.hostname
    if parts.port is not None:
        kwargs["port"] = parts.port
    if parts.username:
        kwargs["user"] = unquote(parts.username)
    if parts.password is not None:
        kwargs["password"] = unquote(parts.password)
    database = unquote(parts.path.lstrip("/"))
    if database:
        kwargs[db_key] = database
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        kwargs[key] = _value(value)
    return kwargs


def _file_path(rest: str) -> str:
    # rest is what follows "scheme:": "" or "//" (memory), "///rel", "////abs"
    if rest in ("", "//"):
        return ":memory:"
    if not rest.startswith("///"):
        raise UnknownTarget(f"a file URL is scheme:///relative/path or scheme:////absolute/path, "
                            f"not {rest!r}")
    path = unquote(rest[3:].split("?", 1)[0])
    return path or ":memory:"


def parse_target(url: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """``(driver module name, args, kwargs)`` for ``module.connect(*args, **kwargs)``.

    Raises:
        UnknownTarget: the scheme is not one of the table in the module docstring.
    """
    if not isinstance(url, str) or ":" not in url:
        raise UnknownTarget(f"not a database URL: {describe_target(str(url))!r}")
    scheme, rest = url.split(":", 1)
    scheme = scheme.lower()
    if scheme == "odbc":
        return "pyodbc", (rest,), {}
    if scheme == "sqlite":
        return "sqlite3", (_file_path(rest),), {}
    if scheme == "duckdb":
        return "duckdb", (_file_path(rest),), {}
    base = scheme.split("+", 1)[0]
    if base in ("postgresql", "postgres"):
        module = _DIALECTS.get(f"postgresql{scheme[len(base):]}") if "+" in scheme \
            else _first_installed(_POSTGRES)
        if module is None:
            raise UnknownTarget(f"unknown PostgreSQL driver in {scheme!r}")
        if module == "pg8000":
            return module, (), _keywords(url)
        return module, ("postgresql:" + rest,), {}
    if base in ("mysql", "mariadb"):
        module = _DIALECTS.get(scheme) if "+" in scheme else _first_installed(_MYSQL)
        if module is None:
            raise UnknownTarget(f"unknown MySQL/MariaDB driver in {scheme!r}")
        return module, (), _keywords(url)
    if scheme == "clickhouse":
        return "clickhouse_driver.dbapi", (), {"dsn": url}
    raise UnknownTarget(f"unknown scheme {scheme!r}: use sqlite:, duckdb:, postgresql:, "
                        f"mysql:, mariadb:, clickhouse:, odbc:, or --driver MODULE")


def describe_target(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for messages and logs)."""
    if url[:5].lower() == "odbc:":
        return _ODBC_SECRET.sub(lambda m: f"{m.group(1)}=***", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
    if password is None:
        masked = url
    else:
        netloc = parts.netloc
        at = netloc.rfind("@")
        userinfo, host = netloc[:at], netloc[at + 1:]
        user = userinfo.split(":", 1)[0]
        masked = parts._replace(netloc=f"{user}:***@{host}").geturl()
    # a password given as a query parameter (?password=...)
    return re.sub(r"(?i)([?&](?:password|passwd|pwd)=)[^&]*", r"\1***", masked)
