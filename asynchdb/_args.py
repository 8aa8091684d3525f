"""Checking the arguments asynchdb takes itself, before anything runs."""

from __future__ import annotations

import math
from typing import Optional, Union

from .errors import NotSupportedError
from .status import Asynch

_ALL_FLAGS = 0x3F


def parse_asynch(asynch: Union[bool, int, Asynch]) -> Asynch:
    """Validate an ``asynch=`` argument; ``Asynch(0)`` means synchronous.

    Raises:
        TypeError: not a bool or an int.
        ValueError: unknown bits.
        NotSupportedError: RANDOM_POPULATION.
    """
    if asynch is True:
        return Asynch.INITIALIZE
    if asynch is False or asynch is None:
        return Asynch(0)
    if not isinstance(asynch, int):
        raise TypeError(
            f"asynch must be a bool or asynchdb.Asynch flags, not {type(asynch).__name__}"
        )
    if asynch < 0 or asynch & ~_ALL_FLAGS:
        raise ValueError(f"unknown asynch flags: {asynch:#x} (known: {_ALL_FLAGS:#x})")
    flags = Asynch(asynch)
    if flags & Asynch.RANDOM_POPULATION:
        raise NotSupportedError(
            "Asynch.RANDOM_POPULATION is not supported: DB-API result sets are "
            "ordered streams; use SEQUENTIAL_POPULATION"
        )
    return flags


def check_timeout(timeout: Optional[float], name: str = "timeout") -> Optional[float]:
    """Validate a timeout in seconds: ``None`` or a finite-or-infinite number >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(timeout).__name__}")
    timeout = float(timeout)
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{name} must be >= 0 seconds, not {timeout!r}")
    return timeout
