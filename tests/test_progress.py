"""The plan and progress lines: durations under the rate budget and the ETA."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from exporter.export import Knowledge, expected_requests
from exporter.progress import (
    Plan,
    budget_seconds,
    duration,
    eta_seconds,
    plan_line,
    progress_line,
    show_progress,
)

HOURLY = (900, 3600.0)


def test_budget_time_follows_the_rolling_window() -> None:
    assert budget_seconds(0, HOURLY) == 0
    assert budget_seconds(900, HOURLY) == 0  # the first window's worth goes at once
    assert budget_seconds(1800, HOURLY) == 3600
    assert budget_seconds(4500, HOURLY) == 4 * 3600


def test_budget_time_steps_a_whole_window_not_a_straight_line() -> None:
    # The 901st request cannot start before the first of the 900 leaves the window, an hour on;
    # a straight line would promise 1,000 requests in 400 s.
    assert budget_seconds(901, HOURLY) == 3600
    assert budget_seconds(1000, HOURLY) == 3600
    assert budget_seconds(1801, HOURLY) == 2 * 3600
    assert budget_seconds(4210, HOURLY) == 4 * 3600
    assert budget_seconds(12, (5, 10.0)) == 20  # requests 11 and 12 start in the third window


def test_plan_for_1000_requests_at_900_an_hour_says_at_least_an_hour() -> None:
    line = plan_line(Plan(25, 1000, "as snapshot 4", HOURLY))
    assert line.endswith("at 900 per 1 h 00 min that takes at least 1 h 00 min")
    assert "400 s" not in line and "6 min 40 s" not in line


def test_eta_waits_for_the_next_window_not_a_share_of_it() -> None:
    plan = Plan(25, 1000, "as snapshot 4", HOURLY)
    assert eta_seconds(plan, done=900, elapsed=90) == pytest.approx(3600 - 90)
    assert eta_seconds(plan, done=950, elapsed=3610) == pytest.approx(3610 / 950 * 50)


def test_eta_is_the_slower_of_pace_and_budget() -> None:
    plan = Plan(25, 2700, "as snapshot 3", HOURLY)
    assert eta_seconds(plan, done=900, elapsed=90) == pytest.approx(2 * 3600 - 90)
    slow = Plan(25, 200, "as snapshot 3", HOURLY)
    assert eta_seconds(slow, done=100, elapsed=50) == pytest.approx(50)
    assert eta_seconds(slow, done=300, elapsed=50) == 0


def test_lines_say_what_a_user_needs() -> None:
    plan = Plan(25, 4210, "as snapshot 12", HOURLY)
    # The 4210th request starts in the fifth hour (a straight line said 3 h 40 min).
    assert plan_line(plan) == (
        "plan: 25 listings, about 4210 requests (as snapshot 12); at 900 per 1 h 00 min that "
        "takes at least 4 h 00 min")
    line = progress_line(plan, done=2105, listings_done=10, elapsed=600, waited=30, bar=True)
    assert line.startswith("[############............] 2105/~4210 requests, 10/25 listings")
    assert "ETA" in line
    assert duration(59) == "59 s" and duration(61) == "1 min 01 s"


def test_first_run_expects_one_page_per_listing() -> None:
    first = "one page per listing; more for large listings"
    assert expected_requests(25, Knowledge()) == (26, first)
    # A database written before requests were counted per listing: the last run's total.
    assert expected_requests(25, Knowledge(previous=(7, 4210))) == (4210, "as snapshot 7")
    # Then the pages each workspace-wide listing took at its latest observation.
    known = Knowledge(previous=(7, 9000), workspace_requests=4110)
    assert expected_requests(25, known) == (4111, "as last observed")


async def test_progress_is_logged_when_not_on_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    plan = Plan(5, 10, "as snapshot 1", HOURLY)
    calls = 0
    three = asyncio.Event()

    def counts() -> tuple[int, int, float]:
        nonlocal calls
        calls += 1
        if calls == 3:
            three.set()
        return calls, 1, 0.0

    caplog.set_level(logging.INFO)
    task = asyncio.create_task(show_progress(plan, counts, every=0, stream=io.StringIO()))
    await asyncio.wait_for(three.wait(), timeout=10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert any("progress: 2/~10 requests, 1/5 listings" in m for m in caplog.messages)
