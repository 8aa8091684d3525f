"""The built-in adapters, one module per driver family.

Each is written against the public contract in :mod:`asynchdb.adapters` only
and imports nothing else of asynchdb; none imports its driver at module level,
so ``import asynchdb`` works with no optional driver installed.  They are
found by name through the table in :mod:`asynchdb.adapters`.
"""
