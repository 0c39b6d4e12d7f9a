"""The rolling-window rate budget: the pure rule without an event loop, then ``RateBudget``
with a fake clock, its predictions, and what a rate-limited server makes of its schedule."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import NotRequired, TypedDict

import pytest

from exporter.bitbucket import RateBudget, parse_rate
from exporter.bitbucket.budget import (
    earliest_start,
    release_after,
    requests_startable,
    start_offset,
    wait_before_next,
)
from exporter.simulator.gate import RateLimiter
from tests.client.bb_fake import FakeClock, RecordingSleep, most_in_any_window


def test_wait_is_zero_until_the_window_is_full() -> None:
    assert wait_before_next([], 0.0, limit=3, window=60.0) == 0.0
    assert wait_before_next([0.0, 1.0], 2.0, limit=3, window=60.0) == 0.0


def test_wait_lasts_until_the_oldest_of_the_last_limit_leaves_the_window() -> None:
    starts = [0.0, 5.0, 10.0, 20.0]
    assert wait_before_next(starts, 21.0, limit=3, window=60.0) == 44.0  # 5 + 60 - 21
    assert wait_before_next(starts, 65.0, limit=3, window=60.0) == 0.0
    assert wait_before_next(starts, 80.0, limit=3, window=60.0) == 0.0


@pytest.mark.parametrize("arrivals", [[0.0] * 23, [i * 0.7 for i in range(40)], [0, 1, 30, 31, 99]])
def test_pacing_never_exceeds_the_limit_in_any_window(arrivals: list[float]) -> None:
    limit, window, starts = 4, 10.0, list[float]()
    for arrival in arrivals:
        start = earliest_start(starts, arrival, limit=limit, window=window)
        starts.append(max(start, starts[-1] if starts else start))
    assert most_in_any_window(starts, window) <= limit
    assert all(start >= arrival for start, arrival in zip(starts, arrivals, strict=True))


def test_a_burst_is_spread_one_window_per_limit() -> None:
    starts: list[float] = []
    for _ in range(9):
        starts.append(earliest_start(starts, 0.0, limit=4, window=10.0))
    assert starts == [0, 0, 0, 0, 10, 10, 10, 10, 20]
    # The budget passes the window and its guard of window / limit as the rule's window.
    assert release_after(4, 10.0) == 12.5
    assert start_offset(9, limit=4, window=10.0) == 25.0
    assert start_offset(0, limit=4, window=10.0) == 0.0


def test_a_slot_is_released_a_window_and_one_even_spacing_after_its_start() -> None:
    assert release_after(900, 3600.0) == 3604.0
    assert release_after(1000, 3600.0) == pytest.approx(3603.6)
    assert release_after(45, 2.0) == pytest.approx(2.0 + 2.0 / 45)
    assert release_after(1, 30.0) == 60.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("900/h", (900, 3600.0)), ("10/s", (10, 1.0)), ("500 / 30m", (500, 1800.0)),
     ("100/10s", (100, 10.0)), ("5/H", (5, 3600.0))],
)  # fmt: skip
def test_parse_rate(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "900", "900/d", "h/900", "-5/h", "0/h", "10/0s", "1.5/h"])
def test_parse_rate_refuses_bad_input_clearly(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_budget_refuses_a_useless_limit_or_window() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateBudget(0, 60.0)
    with pytest.raises(ValueError, match="window"):
        RateBudget(10, 0.0)


async def test_concurrent_acquires_keep_the_limit_and_come_in_order() -> None:
    clock = FakeClock()
    budget = RateBudget(4, 10.0, clock=clock, sleep=clock.sleep)
    started: list[tuple[int, float]] = []

    async def request(number: int) -> None:
        await budget.acquire()
        started.append((number, clock()))

    await asyncio.gather(*(request(n) for n in range(25)))
    times = [t for _, t in started]
    assert most_in_any_window(times, 10.0) == 4
    assert most_in_any_window(times, budget.release) == 4  # 12.5 s: the window and its guard
    assert [n for n, _ in started] == list(range(25))
    assert clock.now == 75.0 == start_offset(25, limit=budget.limit, window=budget.window)
    assert budget.seconds_waited == sum(clock.slept) and budget.acquired == 25


async def test_a_sleep_that_does_not_advance_the_clock_still_paces() -> None:
    sleep = RecordingSleep()
    budget = RateBudget(2, 10.0, clock=lambda: 0.0, sleep=sleep)
    waits = [await budget.acquire() for _ in range(5)]
    assert waits == [0.0, 0.0, 15.0, 15.0, 30.0]  # a window of 10 s and a guard of 10 / 2 s
    assert sleep.delays == [15.0, 15.0, 30.0]


def test_from_rate() -> None:
    budget = RateBudget.from_rate("900/h")
    assert (budget.limit, budget.window, budget.release) == (900, 3600.0, 3604.0)
    assert repr(budget) == "RateBudget(limit=900, window=3600)"


# --- Predictions held against the budget's own schedule ------------------------------------------


async def recorded_starts(
    limit: int, window: float, n: int, *, concurrency: int | None = None, latency: float = 0.0
) -> list[float]:
    """The start time of each of ``n`` requests let through by a real ``RateBudget``.

    A fake clock moves only when slept on. Without ``concurrency`` the requests acquire one
    after another. With it, a small discrete-event loop: ``concurrency`` workers each acquire
    as soon as they are free, then are busy ``latency`` seconds; the worker free first goes
    next (the budget serves callers first come, first served), and the clock never runs back.
    """
    clock = FakeClock()
    budget = RateBudget(limit, window, clock=clock, sleep=clock.sleep)
    free_at = [0.0] * (concurrency or 1)  # a heap: when each worker can issue its next request
    starts: list[float] = []
    for _ in range(n):
        if concurrency is not None:
            clock.now = max(clock.now, heapq.heappop(free_at))
        await budget.acquire()
        starts.append(clock())
        if concurrency is not None:
            heapq.heappush(free_at, clock() + latency)
    assert budget.acquired == n
    assert most_in_any_window(starts, window) <= limit
    return starts


class Options(TypedDict):
    """The keyword options of the predictions."""

    limit: int
    window: float
    concurrency: NotRequired[int]
    latency: NotRequired[float]


def started_before(starts: list[float], seconds: float) -> int:
    assert seconds <= starts[-1], "the recorded schedule must reach past the deadline"
    return sum(1 for start in starts if start < seconds)


async def test_start_offset_is_the_budgets_step_function() -> None:
    starts = await recorded_starts(5, 10.0, 23)
    # A step of 12 s: the window and its guard of 10 / 5 s.
    assert starts == [0.0] * 5 + [12.0] * 5 + [24.0] * 5 + [36.0] * 5 + [48.0] * 3
    for n in range(1, 24):
        assert start_offset(n, limit=5, window=10.0) == starts[n - 1], n
        # Workers that take no time are held back by the window alone.
        assert start_offset(n, limit=5, window=10.0, concurrency=2) == starts[n - 1], n
    for n in (0, -3):
        assert start_offset(n, limit=5, window=10.0) == 0.0


async def test_at_900_an_hour_the_901st_request_waits_a_whole_hour() -> None:
    hourly: Options = {"limit": 900, "window": 3600.0}
    starts = await recorded_starts(900, 3600.0, 1801)
    assert starts[899] == 0.0 == start_offset(900, **hourly)
    assert starts[900] == 3604.0 == start_offset(901, **hourly)  # an hour and a guard of 4 s
    assert starts[999] == 3604.0 == start_offset(1000, **hourly)  # not 400 s
    assert starts[1800] == 7208.0 == start_offset(1801, **hourly)
    assert all(start_offset(n, **hourly) == starts[n - 1] for n in range(1, 1802))
    for seconds in (1.0, 400.0, 3599.0, 3600.0, 3604.0, 3604.5, 7200.0, 7207.0, 7208.0):
        assert requests_startable(seconds, **hourly) == started_before(starts, seconds), seconds


@pytest.mark.parametrize(
    "seconds",
    [0.0, 1e-9, 5.0, 9.999, 10.0, 10.000001, 11.999, 12.0, 12.000001, 19.5, 20.0, 24.0, 25.0,
     30.0, 36.0, 39.0, 40.0, 47.999, 48.0],
)  # fmt: skip
async def test_requests_startable_counts_the_budgets_starts_before_a_deadline(
    seconds: float,
) -> None:
    starts = await recorded_starts(5, 10.0, 23)
    expected = started_before(starts, seconds)
    assert requests_startable(seconds, limit=5, window=10.0) == expected
    assert requests_startable(seconds, limit=5, window=10.0, concurrency=3) == expected
    assert expected == (5 * math.ceil(seconds / 12.0) if seconds > 0 else 0)


def test_requests_startable_before_the_start_is_none() -> None:
    assert requests_startable(-1.0, limit=5, window=10.0) == 0
    assert requests_startable(-1.0, limit=5, window=10.0, concurrency=2, latency=1.0) == 0
    assert requests_startable(0.0, limit=5, window=10.0, concurrency=2, latency=1.0) == 0


# (limit, window, concurrency, latency): latency-bound, window-bound and mixed schedules, with
# binary-exact latencies so the fake clock and the prediction add up to the same floats.
SCHEDULES = [
    (5, 10.0, 2, 3.0),  # two workers fill the window by 6 s, then wait for it
    (5, 10.0, 8, 0.25),  # the window alone holds back
    (5, 10.0, 1, 4.0),  # one slow worker never fills the window
    (4, 10.0, 3, 2.5),
    (3, 8.0, 2, 5.0),  # workers and window take turns
    (6, 10.0, 4, 9.5),
]


@pytest.mark.parametrize(("limit", "window", "concurrency", "latency"), SCHEDULES)
async def test_start_offset_with_workers_follows_the_budget(
    limit: int, window: float, concurrency: int, latency: float
) -> None:
    options = Options(limit=limit, window=window, concurrency=concurrency, latency=latency)
    starts = await recorded_starts(limit, window, 40, concurrency=concurrency, latency=latency)
    assert starts[-1] > 3 * window  # crosses several window boundaries
    for n in range(1, 41):
        assert start_offset(n, **options) == starts[n - 1], n
    deadlines = {0.0, *starts, *(k * window for k in range(1, 4))}
    deadlines |= {(a + b) / 2 for a, b in itertools.pairwise(starts)}
    for seconds in sorted(deadlines):
        assert requests_startable(seconds, **options) == started_before(starts, seconds), seconds


def test_a_schedule_with_workers_by_hand() -> None:
    options: Options = {"limit": 5, "window": 10.0, "concurrency": 2, "latency": 3.0}
    assert [start_offset(n, **options) for n in range(1, 12)] == [
        0, 0, 3, 3, 6, 12, 12, 15, 15, 18, 24]  # fmt: skip
    assert requests_startable(12.0, **options) == 5
    assert requests_startable(12.5, **options) == 7


async def test_a_realistic_night_at_1000_an_hour_with_8_workers() -> None:
    options: Options = {"limit": 1000, "window": 3600.0, "concurrency": 8, "latency": 0.1}
    starts = await recorded_starts(1000, 3600.0, 2101, concurrency=8, latency=0.1)
    predicted = [start_offset(n, **options) for n in range(1, 2102)]
    assert predicted == pytest.approx(starts, rel=1e-12, abs=1e-9)
    step = release_after(1000, 3600.0)  # an hour and a guard of 3.6 s
    assert predicted[1000] == starts[1000] == step and predicted[2000] == 2 * step
    for seconds in (12.0, 12.5, 3600.0, 3601.0, 3603.6, 3604.0, 7200.0, 7207.0, 7208.0):
        assert requests_startable(seconds, **options) == started_before(starts, seconds)
    # A whole night: every step releases its 1,000 within 12.5 s.
    assert requests_startable(24 * 3600.0, **options) == 24_000
    assert requests_startable(24 * 3600.0, limit=1000, window=3600.0) == 24_000
    assert start_offset(100_000, **options) == pytest.approx(99 * step + 124 * 0.1)
    assert start_offset(100_000, limit=1000, window=3600.0) == 99 * step


@pytest.mark.parametrize(
    "options",
    [{"limit": 0, "window": 10.0}, {"limit": 5, "window": 0.0},
     {"limit": 5, "window": 10.0, "concurrency": 0},
     {"limit": 5, "window": 10.0, "concurrency": 2, "latency": -1.0}],
)  # fmt: skip
def test_predictions_refuse_meaningless_options(options: Options) -> None:
    with pytest.raises(ValueError, match=r"at least 1|window|concurrency|latency"):
        start_offset(3, **options)
    with pytest.raises(ValueError, match=r"at least 1|window|concurrency|latency"):
        requests_startable(3.0, **options)


# --- What a rate-limited server sees ------------------------------------------------------------
#
# The server counts a request when it arrives, a few milliseconds after the budget let it start,
# and not equally late for every request. It counts as the simulator's limiter does (a rolling
# window per credential; rejected requests do not count).

Delay = Callable[[int, float], float]  # (request index, start) -> seconds until it arrives
JITTER = 0.005


def server_rejections(starts: Sequence[float], delay: Delay, *, limit: int, window: float) -> int:
    """How many of the requests started at ``starts`` a server limiting ``limit`` per ``window``
    rejects when request ``i`` arrives ``delay(i, start)`` seconds after it started."""
    arrivals = sorted(start + delay(i, start) for i, start in enumerate(starts))
    now = [0.0]
    server = RateLimiter(limit, window, clock=lambda: now[0])
    rejected = 0
    for arrival in arrivals:
        now[0] = arrival
        rejected += not server.allow("token:admin")
    return rejected


def random_jitter(seed: int) -> Callable[[int, float], Delay]:
    def delays(limit: int, most: float) -> Delay:
        rng = random.Random(seed)
        return lambda i, start: rng.uniform(0.0, most)

    return delays


def alternate_windows(limit: int, most: float) -> Delay:
    """Every other window's worth arrives ``most`` late, the next one on time: the worst case
    of a burst released just as the one before it is delivered."""
    return lambda i, start: most if (i // limit) % 2 == 0 else 0.0


def reversed_each_window(limit: int, most: float) -> Delay:
    """In one window's worth the first arrive late and the last early, in the next the other
    way round."""

    def delay(i: int, start: float) -> float:
        share = (i % limit) / limit
        return most * (share if (i // limit) % 2 else 1 - share)

    return delay


#: Ways delivery delays of at most ``most`` seconds can fall: (limit, most) -> Delay.
DELAYS: dict[str, Callable[[int, float], Delay]] = {
    "random": random_jitter(7),
    "random, another seed": random_jitter(11),
    "alternate windows": alternate_windows,
    "reversed each window": reversed_each_window,
}


@pytest.mark.parametrize("delays", list(DELAYS))
@pytest.mark.parametrize(("concurrency", "latency"), [(None, 0.0), (8, 0.001)])
async def test_a_server_limiting_50_per_2s_never_rejects_a_client_at_45_per_2s(
    delays: str, concurrency: int | None, latency: float
) -> None:
    # The benchmark's row: about 700 requests, delivered with up to 5 ms of jitter. Without a
    # guard, a window's worth was released exactly one window after the burst before it, and
    # the server saw some of both in one of its windows.
    starts = await recorded_starts(45, 2.0, 700, concurrency=concurrency, latency=latency)
    delay = DELAYS[delays](45, JITTER)
    assert server_rejections(starts, delay, limit=50, window=2.0) == 0
    assert most_in_any_window(starts, 2.0) <= 45


@pytest.mark.parametrize("delays", list(DELAYS))
async def test_the_guard_absorbs_jitter_up_to_its_length_even_at_the_servers_own_limit(
    delays: str,
) -> None:
    # A server with the very same limit: delivery delays that differ by less than the guard,
    # window / limit (44 ms here), cannot make it reject anything.
    guard = release_after(45, 2.0) - 2.0
    delay = DELAYS[delays](45, 0.9 * guard)
    starts = await recorded_starts(45, 2.0, 700, concurrency=8, latency=0.001)
    assert server_rejections(starts, delay, limit=45, window=2.0) == 0


async def test_the_first_window_still_goes_at_once() -> None:
    clock = FakeClock()
    budget = RateBudget(45, 2.0, clock=clock, sleep=clock.sleep)
    waits = [await budget.acquire() for _ in range(45)]
    assert waits == [0.0] * 45 and clock.now == 0.0
    assert await budget.acquire() == pytest.approx(2.0 + 2.0 / 45)  # the window and its guard
    assert start_offset(45, limit=45, window=2.0) == 0.0
    assert start_offset(46, limit=45, window=2.0) == clock.now == budget.release
    assert requests_startable(1e-9, limit=45, window=2.0) == 45
