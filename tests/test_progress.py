"""The plan and progress lines: durations under the rate budget and the ETA."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from exporter.crawl.plan import NightBudget, night_line, per_object_line, plan_night
from exporter.export import Knowledge, expected_requests
from exporter.progress import (
    Counts,
    Plan,
    budget_seconds,
    duration,
    eta_seconds,
    progress_line,
    show_progress,
)

HOURLY = (900, 3600.0)
#: A slot is released an hour and a guard of 3600 / 900 = 4 s after its start (``release_after``).
STEP = 3604


def test_budget_time_follows_the_rolling_window() -> None:
    assert budget_seconds(0, HOURLY) == 0
    assert budget_seconds(900, HOURLY) == 0  # the first window's worth goes at once
    assert budget_seconds(1800, HOURLY) == STEP
    assert budget_seconds(4500, HOURLY) == 4 * STEP


def test_budget_time_steps_a_whole_window_not_a_straight_line() -> None:
    # The 901st request cannot start before the first of the 900 leaves the window, an hour (and
    # its guard) on; a straight line would promise 1,000 requests in 400 s.
    assert budget_seconds(901, HOURLY) == STEP
    assert budget_seconds(1000, HOURLY) == STEP
    assert budget_seconds(1801, HOURLY) == 2 * STEP
    assert budget_seconds(4210, HOURLY) == 4 * STEP
    assert budget_seconds(12, (5, 10.0)) == 24  # requests 11 and 12 start in the third step


def test_plan_for_1000_requests_at_900_an_hour_says_at_least_an_hour() -> None:
    night = NightBudget(HOURLY, max_requests=None, deadline=None)
    plan = plan_night(workspace_requests=1000, per_object=0, never_observed=0, budget=night)
    line = night_line(plan, night, "as last observed", first=False)
    assert line.endswith("about 1000 requests tonight, at 900 per 1 h 00 min at least 1 h 00 min")
    assert "400 s" not in line and "6 min 40 s" not in line


def test_the_plan_rations_per_object_scopes_within_the_night() -> None:
    # At 900/h a 6 h night lets 5,400 requests start; 4,111 go to the workspace-wide listings.
    night = NightBudget(HOURLY, max_requests=None, deadline=6 * 3600)
    plan = plan_night(workspace_requests=4111, per_object=21000, never_observed=120, budget=night)
    assert (plan.tonight, plan.nights_to_cover, plan.requests) == (1289, 17, 5400)
    assert night_line(plan, night, "as last observed", first=False) == (
        "plan: about 4111 requests for the workspace-wide listings (as last observed), then 1289 "
        "of 21000 per-object scopes (120 never observed); full explicit-grant coverage in 17 "
        "night(s); about 5400 requests tonight, at 900 per 1 h 00 min at least 5 h 00 min")
    assert per_object_line(plan, night) == (
        "per-object scopes: 21000 (120 never observed); 1289 fit tonight after 4111 requests "
        "(--deadline 6 h 00 min); full explicit-grant coverage in 17 night(s)")
    # A cap below the listings leaves nothing for explicit grants: say so, never divide by 0.
    capped = NightBudget(HOURLY, max_requests=4000, deadline=None)
    none = plan_night(workspace_requests=4111, per_object=10, never_observed=10, budget=capped)
    assert none.tonight == 0 and none.nights_to_cover is None
    assert "never at this budget: raise --max-requests or --deadline" in per_object_line(
        none, capped)


def test_eta_waits_for_the_next_window_not_a_share_of_it() -> None:
    plan = Plan(25, 1000, "as snapshot 4", HOURLY)
    assert eta_seconds(plan, done=900, elapsed=90) == pytest.approx(STEP - 90)
    assert eta_seconds(plan, done=950, elapsed=3610) == pytest.approx(3610 / 950 * 50)


def test_a_first_run_grows_its_estimate_as_first_pages_report_their_size() -> None:
    # One page per listing was all a first run could expect: 251. The effective listings'
    # first pages then announced 20,448 more pages; the line shows a lower bound, not ~251.
    plan = Plan(250, 251, "one page per listing; more for large listings", HOURLY, grows=True)
    line = progress_line(plan, done=20699, listings_done=200, elapsed=600, waited=0,
                         foreseen=20448)  # fmt: skip
    assert "20699/≥20699 requests" in line
    early = progress_line(plan, done=300, listings_done=10, elapsed=60, waited=0, foreseen=4000)
    assert early.startswith("progress: 300/≥4251 requests") and "ETA" in early
    # A later run knows its listings: the estimate does not grow and reads as approximate.
    known = Plan(250, 4251, "as last observed", HOURLY)
    assert "300/~4251 requests" in progress_line(known, done=300, listings_done=10, elapsed=60,
                                                 waited=0, foreseen=4000)  # fmt: skip


def test_eta_counts_429_pauses() -> None:
    plan = Plan(25, 200, "as snapshot 3", HOURLY)
    # 100 requests in 160 s, 60 s of which a 429 pause now over: the pace is 1 a second.
    assert eta_seconds(plan, done=100, elapsed=160, paused=60) == pytest.approx(100)
    # 20 s into a 60 s pause: 40 s more of it, then the pace of the time not paused.
    assert eta_seconds(plan, done=100, elapsed=120, paused=60, pause_left=40) == pytest.approx(
        40 + 100 * (120 - 20) / 100)
    assert eta_seconds(plan, done=200, elapsed=120, paused=60, pause_left=40) == 40
    line = progress_line(plan, done=100, listings_done=3, elapsed=120, waited=0, paused=60,
                         pause_left=40)  # fmt: skip
    assert "ETA 2 min 20 s" in line and line.endswith("paused 40 s more after a 429")


def test_eta_is_the_slower_of_pace_and_budget() -> None:
    plan = Plan(25, 2700, "as snapshot 3", HOURLY)
    assert eta_seconds(plan, done=900, elapsed=90) == pytest.approx(2 * STEP - 90)
    slow = Plan(25, 200, "as snapshot 3", HOURLY)
    assert eta_seconds(slow, done=100, elapsed=50) == pytest.approx(50)
    assert eta_seconds(slow, done=300, elapsed=50) == 0


def test_lines_say_what_a_user_needs() -> None:
    plan = Plan(25, 4210, "as snapshot 12", HOURLY)
    # The 4210th request starts in the fifth hour (a straight line said 3 h 40 min).
    assert budget_seconds(4210, HOURLY) == 4 * STEP
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
    known = Knowledge(previous=(7, 9000), workspace_requests={"{a}": 4000, "{b}": 110})
    assert expected_requests(25, known) == (4111, "as last observed")
    assert expected_requests(5, known, {"{b}"}) == (111, "as last observed")


async def test_progress_is_logged_when_not_on_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    plan = Plan(5, 10, "as snapshot 1", HOURLY)
    calls = 0
    three = asyncio.Event()

    def counts() -> Counts:
        nonlocal calls
        calls += 1
        if calls == 3:
            three.set()
        return Counts(calls, 1, 0.0)

    caplog.set_level(logging.INFO)
    task = asyncio.create_task(show_progress(plan, counts, every=0, stream=io.StringIO()))
    await asyncio.wait_for(three.wait(), timeout=10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert any("progress: 2/~10 requests, 1/5 listings" in m for m in caplog.messages)
