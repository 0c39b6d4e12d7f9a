"""A client-side rolling-window request budget: at most ``limit`` requests start in any
``window`` seconds.

Bitbucket allows about 1,000 requests an hour per user and sends no Retry-After, so the only way
to finish a large workspace is to pace, not to retry harder. ``wait_before_next`` is the pure
rule; ``RateBudget`` applies it with an injected clock and sleep and is shared by every request
of a client (and may be shared by several clients of one credential). ``parse_rate`` reads a
rate such as ``900/h``. Imports nothing from the project.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

#: Below Bitbucket's 1,000 requests an hour, leaving room for a person using the same token.
DEFAULT_RATE = "900/h"
UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([smh])", re.IGNORECASE)


def parse_rate(text: str) -> tuple[int, float]:
    """``"900/h"`` -> ``(900, 3600.0)``: the ``limit`` and ``window`` of a ``RateBudget``.

    Units are s, m and h, optionally with a count (``"100/10s"``, ``"500/30m"``).
    """
    match = _RATE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"rate {text!r} is not of the form REQUESTS/UNIT, such as 900/h or 100/10s "
            "(units: s, m, h)"
        )
    limit = int(match[1])
    window = float(match[2] or 1) * UNIT_SECONDS[match[3].lower()]
    if limit < 1 or window <= 0:
        raise ValueError(f"rate {text!r} must allow at least 1 request in a window longer than 0")
    return limit, window


def earliest_start(starts: Sequence[float], now: float, *, limit: int, window: float) -> float:
    """The earliest time, not before ``now``, at which one more request may start.

    ``starts`` are the start times of earlier requests, oldest first; only the last ``limit``
    matter. A request may start at ``t`` when fewer than ``limit`` of them lie in
    ``(t - window, t]``, so that no ``window``-long interval ever holds more than ``limit``.
    """
    if len(starts) < limit:
        return now
    return max(now, starts[-limit] + window)


def wait_before_next(starts: Sequence[float], now: float, *, limit: int, window: float) -> float:
    """Seconds from ``now`` until one more request may start (0 if it may start now)."""
    return earliest_start(starts, now, limit=limit, window=window) - now


def seconds_needed(requests: int, *, limit: int, window: float) -> float:
    """The least time ``requests`` requests take under the budget (for a run's plan)."""
    return max(0, math.ceil(requests / limit) - 1) * window


class RateBudget:
    """No more than ``limit`` requests start in any ``window`` seconds; ``acquire`` waits."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError(f"a rate budget must allow at least 1 request, not {limit}")
        if not window > 0:
            raise ValueError(f"a rate budget's window must be longer than 0 s, not {window}")
        self.limit, self.window = limit, window
        self._clock, self._sleep = clock, sleep
        self._starts: deque[float] = deque(maxlen=limit)
        self._lock = asyncio.Lock()
        #: Requests let through, and the seconds spent waiting for a slot (all callers).
        self.acquired = 0
        self.seconds_waited = 0.0

    @classmethod
    def from_rate(
        cls,
        rate: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> RateBudget:
        limit, window = parse_rate(rate)
        return cls(limit, window, clock=clock, sleep=sleep)

    def __repr__(self) -> str:
        return f"RateBudget(limit={self.limit}, window={self.window:g})"

    def seconds_needed(self, requests: int) -> float:
        return seconds_needed(requests, limit=self.limit, window=self.window)

    async def acquire(self) -> float:
        """Wait until one more request may start and count it as started; the seconds waited.

        Callers are served first come, first served. The start is recorded at the planned time
        even if the clock has not reached it yet (and never before an earlier start), so a sleep
        that returns early cannot let a burst through.
        """
        async with self._lock:
            now = self._clock()
            start = earliest_start(self._starts, now, limit=self.limit, window=self.window)
            delay = start - now
            if delay > 0:
                self.seconds_waited += delay
                await self._sleep(delay)
            latest = self._starts[-1] if self._starts else start
            self._starts.append(max(self._clock(), start, latest))
            self.acquired += 1
        return delay
