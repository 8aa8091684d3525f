"""Adapter lookup: which :class:`~._base.Adapter` serves a driver.

Adapters are imported lazily, and never import their driver at module level, so
``import asynchdb`` works with no optional driver installed.  A driver (or a
test double) can name its own adapter with a ``__asynchdb_adapter__``
attribute on its module or connection class.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from ._base import Adapter

# driver package name -> "module:class" of its adapter
_KNOWN = {
    "sqlite3": "._sqlite3:Sqlite3Adapter",
    "_sqlite3": "._sqlite3:Sqlite3Adapter",
    "pyodbc": "._pyodbc:PyodbcAdapter",
    "psycopg": "._psycopg:PsycopgAdapter",
    "duckdb": "._duckdb:DuckDBAdapter",
    "_duckdb": "._duckdb:DuckDBAdapter",
}


def register(package: str, spec: str) -> None:
    """Make ``package`` (a driver's top-level module name) use adapter ``spec``."""
    _KNOWN[package] = spec


def _load(spec: str) -> type[Adapter]:
    mod_name, _, cls_name = spec.partition(":")
    mod = importlib.import_module(mod_name, __name__) if mod_name.startswith(".") \
        else importlib.import_module(mod_name)
    cls = getattr(mod, cls_name)
    assert isinstance(cls, type) and issubclass(cls, Adapter)
    return cls


def for_module(module: Any) -> Adapter:
    """The adapter for a DB-API module (or a connect callable)."""
    custom = getattr(module, "__asynchdb_adapter__", None)
    if custom is not None:
        return custom(module)  # type: ignore[no-any-return]
    name = getattr(module, "__name__", None) or ""
    root = name.split(".")[0]
    if not hasattr(module, "connect") and not isinstance(module, type(sys)):
        # a connect callable: look at the module it was defined in
        root = (getattr(module, "__module__", None) or "").split(".")[0]
        module = sys.modules.get(root)
    spec = _KNOWN.get(root)
    if spec is None:
        return Adapter(module)
    return _load(spec)(module)


def for_connection(raw: Any) -> Adapter:
    """The adapter for an already open DB-API connection."""
    custom = getattr(type(raw), "__asynchdb_adapter__", None)
    root = type(raw).__module__.split(".")[0]
    module = sys.modules.get(root)
    if custom is not None:
        # the module defining the class holds its exceptions (asynchdb.testing)
        return custom(sys.modules.get(type(raw).__module__, module))  # type: ignore[no-any-return]
    spec = _KNOWN.get(root)
    if spec is None:
        return Adapter(module)
    adapter = _load(spec)
    if root in {"_sqlite3", "sqlite3"}:
        module = sys.modules.get("sqlite3")
    return adapter(module)
