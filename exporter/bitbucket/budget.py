"""A client-side rolling-window request budget: at most ``limit`` requests start in any
``window`` seconds.

Bitbucket allows about 1,000 requests an hour per user and sends no Retry-After, so the only way
to finish a large workspace is to pace, not to retry harder. ``wait_before_next`` is the pure
rule; ``RateBudget`` applies it with an injected clock and sleep and is shared by every request
of a client (and may be shared by several clients of one credential). ``parse_rate`` reads a
rate such as ``900/h``. ``start_offset`` and ``requests_startable`` predict
what the budget allows (for plans and ETAs) by following the window as it really releases
requests, a window's worth at a time, rather than a straight line. Imports nothing from the
project.

A slot is released ``release_after(limit, window)`` seconds after its start: the window plus a
guard of one even spacing, ``window / limit``. The budget records a start when it grants it, but
the server counts the request when it arrives, a little later and not equally later for every
request; a whole window's worth released at once, exactly one window after the burst that held
it, would let the server see some of both in one of its windows. The guard keeps the two apart
on the server's clock as long as delivery delays differ by less than ``window / limit`` (4 s at
900/h, 44 ms at 45/2s), at the cost of about one request per window of throughput.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from itertools import islice, takewhile

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


def release_after(limit: int, window: float) -> float:
    """Seconds after a start that ``RateBudget`` releases its slot: ``window`` and a guard of
    ``window / limit``, so that delivery delays that differ by less than that cannot carry a
    released burst into the server's window of the burst before it (see the module)."""
    return window + window / limit


def earliest_start(starts: Sequence[float], now: float, *, limit: int, window: float) -> float:
    """The earliest time, not before ``now``, at which one more request may start.

    ``starts`` are the start times of earlier requests, oldest first; only the last ``limit``
    matter. A request may start at ``t`` when fewer than ``limit`` of them lie in
    ``(t - window, t]``, so that no ``window``-long interval ever holds more than ``limit``.
    ``RateBudget`` passes ``release_after(limit, window)`` as ``window``: its window and guard.
    """
    if len(starts) < limit:
        return now
    return max(now, starts[-limit] + window)


def wait_before_next(starts: Sequence[float], now: float, *, limit: int, window: float) -> float:
    """Seconds from ``now`` until one more request may start (0 if it may start now)."""
    return earliest_start(starts, now, limit=limit, window=window) - now


def _check_schedule(limit: int, window: float, concurrency: int | None, latency: float) -> None:
    """Refuse options for which the schedule means nothing (or never ends)."""
    if limit < 1:
        raise ValueError(f"a rate budget must allow at least 1 request, not {limit}")
    if not (window > 0 and math.isfinite(window)):
        raise ValueError(f"a rate budget's window must be longer than 0 s, not {window}")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if not (latency >= 0 and math.isfinite(latency)):
        raise ValueError(f"latency must be 0 s or more, not {latency}")


def _schedule(limit: int, window: float, concurrency: int, latency: float) -> Iterator[float]:
    """Start times of requests 1, 2, ... issued as early as allowed (never-ending).

    ``start_i = max(start_{i-concurrency} + latency, start_{i-limit} + release)``, ``start_1 =
    0``, where ``release = release_after(limit, window)``: request ``i`` waits for a worker (the
    one of request ``i - concurrency`` finishes first) and for the budget to release a slot
    (request ``i - limit``'s). Terms before request 1 do not exist. Memory is the two deques,
    ``O(limit + concurrency)``.
    """
    release = release_after(limit, window)
    by_window: deque[float] = deque(maxlen=limit)
    by_worker: deque[float] = deque(maxlen=concurrency)
    while True:
        start = 0.0
        if len(by_window) == limit:
            start = by_window[0] + release
        if len(by_worker) == concurrency:
            start = max(start, by_worker[0] + latency)
        by_window.append(start)
        by_worker.append(start)
        yield start


def start_offset(
    n: int,
    *,
    limit: int,
    window: float,
    concurrency: int | None = None,
    latency: float = 0.0,
) -> float:
    """The earliest time (seconds after a run starts with an empty window) request ``n`` starts.

    Requests (1-based) are issued as early as allowed, at most ``concurrency`` in flight (no
    bound if ``None``), each taking ``latency`` seconds. A rolling window releases requests in
    steps, not at a steady pace: with the window alone this is ``floor((n - 1) / limit) *
    release_after(limit, window)``, so the ``limit + 1``-th request waits a whole window and its
    guard. Otherwise it is the schedule of ``_schedule``, walked in ``O(n)`` time. ``n <= 0``
    gives 0.
    """
    _check_schedule(limit, window, concurrency, latency)
    if n <= 0:
        return 0.0
    if concurrency is None or latency == 0:  # only the window holds requests back
        return ((n - 1) // limit) * release_after(limit, window)
    return next(islice(_schedule(limit, window, concurrency, latency), n - 1, None))


def requests_startable(
    seconds: float,
    *,
    limit: int,
    window: float,
    concurrency: int | None = None,
    latency: float = 0.0,
) -> int:
    """How many requests can start strictly before ``seconds`` have passed (0 if ``<= 0``).

    The budget a deadline allows, e.g. for a nightly run. With the window alone it is ``limit *
    ceil(seconds / release)`` (``release = release_after(limit, window)``): every step begun
    before the deadline releases ``limit``. With workers it counts the starts of the same
    schedule as ``start_offset`` (so the two always agree), walking it until the deadline:
    ``O(result)`` time, about 24,000 steps for 24 h at 1,000/h.
    """
    _check_schedule(limit, window, concurrency, latency)
    if not math.isfinite(seconds):
        raise ValueError(f"a deadline must be a finite number of seconds, not {seconds}")
    if seconds <= 0:
        return 0
    if concurrency is None or latency == 0:  # only the window holds requests back
        # The least k with k * release >= seconds, computed as start_offset multiplies, so that
        # exact step boundaries (and float rounding) agree with it.
        release = release_after(limit, window)
        steps = math.ceil(seconds / release)
        while steps > 0 and (steps - 1) * release >= seconds:
            steps -= 1
        while steps * release < seconds:
            steps += 1
        return limit * steps
    starts = _schedule(limit, window, concurrency, latency)  # never-ending and non-decreasing
    return sum(1 for _ in takewhile(lambda start: start < seconds, starts))


class RateBudget:
    """No more than ``limit`` requests start in any ``window`` seconds; ``acquire`` waits.

    The first ``limit`` go at once; after that a slot is free again ``release_after(limit,
    window)`` seconds (the window and a guard of ``window / limit``) after the start that held
    it, so a burst is never released exactly one window after the burst before it.
    """

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
        #: Seconds from a start to the release of its slot (the window and its guard).
        self.release = release_after(limit, window)
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

    async def acquire(self) -> float:
        """Wait until one more request may start and count it as started; the seconds waited.

        Callers are served first come, first served. The start is recorded at the planned time
        even if the clock has not reached it yet (and never before an earlier start), so a sleep
        that returns early cannot let a burst through.
        """
        async with self._lock:
            now = self._clock()
            start = earliest_start(self._starts, now, limit=self.limit, window=self.release)
            delay = start - now
            if delay > 0:
                self.seconds_waited += delay
                await self._sleep(delay)
            latest = self._starts[-1] if self._starts else start
            self._starts.append(max(self._clock(), start, latest))
            self.acquired += 1
        return delay

    def now(self) -> float:
        """The budget's clock (the run's clock, so that a deadline is measured on it)."""
        return self._clock()

    def next_start(self, pending: int = 0) -> float:
        """The earliest time one more request could start after ``pending`` requests that are
        promised but not yet started (each at its earliest): what a deadline is checked against."""
        starts = list(self._starts)
        now = self._clock()
        for _ in range(pending):
            starts.append(earliest_start(starts, now, limit=self.limit, window=self.release))
        return earliest_start(starts, now, limit=self.limit, window=self.release)
