"""The rolling-window rate budget: the pure rule without an event loop, then ``RateBudget``
with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from exporter.bitbucket import RateBudget, parse_rate
from exporter.bitbucket.budget import earliest_start, seconds_needed, wait_before_next
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
    assert seconds_needed(9, limit=4, window=10.0) == 20.0
    assert seconds_needed(0, limit=4, window=10.0) == 0.0


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
    assert [n for n, _ in started] == list(range(25))
    assert clock.now == 60.0 == budget.seconds_needed(25)
    assert budget.seconds_waited == sum(clock.slept) and budget.acquired == 25


async def test_a_sleep_that_does_not_advance_the_clock_still_paces() -> None:
    sleep = RecordingSleep()
    budget = RateBudget(2, 10.0, clock=lambda: 0.0, sleep=sleep)
    waits = [await budget.acquire() for _ in range(5)]
    assert waits == [0.0, 0.0, 10.0, 10.0, 20.0]
    assert sleep.delays == [10.0, 10.0, 20.0]


def test_from_rate() -> None:
    budget = RateBudget.from_rate("900/h")
    assert (budget.limit, budget.window) == (900, 3600.0)
    assert repr(budget) == "RateBudget(limit=900, window=3600)"
