"""The single source of asynchdb's version."""

__version__ = "0.1.0"
