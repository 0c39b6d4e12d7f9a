"""The planner's workspace turns: the order (never read, then least recently read), the rule that
starts the next workspace, how many are read at once, and the predictions of the plan lines."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from exporter.crawl.plan import (
    LISTINGS,
    NightBudget,
    Rotation,
    WorkspaceTurn,
    night_line,
    nights_to_cover,
    per_object_line,
    plan_night,
    rationed_plan,
    rotation,
    total_line,
    workspace_stop,
    workspaces_in_order,
    workspaces_tonight,
)
from exporter.ration import WORKSPACES_AT_ONCE, WorkspaceRationer, WorkspaceTally

HOURLY = (900, 3600.0)
CAP = NightBudget(HOURLY, max_requests=25, deadline=None)


def turns(*sizes: int) -> list[WorkspaceTurn]:
    """Workspaces w0, w1, ... read in snapshot 1, each taking ``sizes[i]`` requests."""
    return [WorkspaceTurn(f"{{u{i}}}", f"w{i}", 1, size) for i, size in enumerate(sizes)]


def test_never_read_first_then_the_least_recently_read_ties_by_slug() -> None:
    found = [
        WorkspaceTurn("{1}", "beta", 7, 40),
        WorkspaceTurn("{2}", "zulu"),
        WorkspaceTurn("{3}", "alpha", 9, 12),
        WorkspaceTurn("{4}", "gamma", 7, 3),
        WorkspaceTurn("{5}", "acme"),
        WorkspaceTurn("{6}", "alpha-2", 7, 500),
    ]
    ordered = [t.slug for t in workspaces_in_order(found)]
    assert ordered == ["acme", "zulu", "alpha-2", "beta", "gamma", "alpha"]


def test_a_workspace_is_expected_to_take_what_it_took_or_one_request_a_listing() -> None:
    assert WorkspaceTurn("{1}", "a", 3, 940).expected == 940
    assert WorkspaceTurn("{1}", "a").expected == LISTINGS == 6
    assert WorkspaceTurn("{1}", "a", 3, 0).expected == LISTINGS  # read, but its cost unknown


def test_the_next_workspace_starts_only_if_the_night_allows_it() -> None:
    # The cap: the requests made, those still owed, and the workspace's own must fit.
    assert workspace_stop(CAP, first=False, committed=15, expected=10, next_start=0) is None
    assert workspace_stop(CAP, first=False, committed=16, expected=10, next_start=0) == (
        "max-requests")
    # The night's first workspace starts whatever the cap, so a workspace larger than a night
    # is still read.
    assert workspace_stop(CAP, first=True, committed=1, expected=900, next_start=0) is None
    # The deadline: one more request must be able to start before it, first or not.
    timed = NightBudget(HOURLY, max_requests=None, deadline=3600.0)
    assert workspace_stop(timed, first=False, committed=899, expected=10**6,
                          next_start=0.0) is None  # fmt: skip
    assert workspace_stop(timed, first=True, committed=900, expected=1, next_start=3600.0) == (
        "deadline")
    unlimited = NightBudget(HOURLY, max_requests=None, deadline=None)
    assert workspace_stop(unlimited, first=False, committed=10**9, expected=10**9,
                          next_start=10**9) is None  # fmt: skip


def test_tonight_is_a_prefix_of_the_order() -> None:
    # 1 + 10 + 10 = 21 fit in 25; the third would make 31. A smaller one behind it waits too:
    # the order is kept, so the least recently read is never overtaken.
    assert workspaces_tonight(turns(10, 10, 10, 2), CAP, spent=1) == 2
    # A workspace larger than the cap is read alone.
    assert workspaces_tonight(turns(40, 1, 1), CAP, spent=1) == 1
    # The deadline follows the rolling window: at 10/h with a 1 h deadline, 10 requests start
    # before it; a workspace whose first request would be the 11th waits.
    timed = NightBudget((10, 3600.0), max_requests=None, deadline=3600.0)
    assert workspaces_tonight(turns(4, 5, 3), timed, spent=1) == 2  # requests 1-10, then 11
    assert workspaces_tonight(turns(4, 4, 3), timed, spent=1) == 3  # the 10th starts in time
    assert workspaces_tonight(turns(4, 4), NightBudget(HOURLY, None, None), spent=1) == 2


def test_rotation_says_tonight_s_share_and_the_nights_of_a_cycle() -> None:
    five = turns(10, 10, 10, 10, 10)
    assert rotation(five, CAP, spent=1) == Rotation(2, 5, 21, 3)
    # Larger than a night: one a night, every workspace within as many nights as there are.
    assert rotation(turns(30, 40, 50), CAP, spent=1) == Rotation(1, 3, 31, 3)
    assert rotation(five, NightBudget(HOURLY, None, None), spent=1) == Rotation(5, 5, 51, 1)
    assert not rotation(five, NightBudget(HOURLY, None, None), spent=1).rationed
    # A night that cannot start a request before its deadline reads nothing: never.
    late = NightBudget((10, 3600.0), None, 3600.0)
    assert rotation(five, late, spent=10).nights is None
    # Never-read workspaces count one request a listing: a lower bound.
    assert rotation([WorkspaceTurn(f"{{{i}}}", f"n{i}") for i in range(5)], CAP,
                    spent=1).tonight == 4  # 1 + 4 * 6 = 25  # fmt: skip
    # When tonight is over, tonight's share is what it read.
    assert rotation(five, CAP, spent=1, tonight=1) == Rotation(1, 5, 11, 3)


def test_explicit_grants_of_a_workspace_are_read_on_its_nights_only() -> None:
    # Two workspaces of 10; a cap of 20 reads one a night and leaves 9 for explicit grants.
    two = turns(10, 10)
    cap = NightBudget(HOURLY, max_requests=20, deadline=None)
    # Only w0's 30 need reading: 9 on nights 1, 3 and 5, the last 3 on night 7.
    assert nights_to_cover(two, cap, spent=1, scopes={"{u0}": 30}) == 7
    assert nights_to_cover(two, cap, spent=1, scopes={"{u0}": 10, "{u1}": 10}) == 4
    assert nights_to_cover(two, cap, spent=1, scopes={}) == 0
    # No room left after the listings, ever: never.
    tight = NightBudget(HOURLY, max_requests=11, deadline=None)
    assert nights_to_cover(two, tight, spent=1, scopes={"{u0}": 1}) is None


def test_the_lines_say_how_many_workspaces_tonight_and_the_nights_to_read_them_all() -> None:
    night = NightBudget(HOURLY, max_requests=None, deadline=6 * 3600.0)
    ordered = turns(*[940] * 50)
    share = rotation(ordered, night, spent=1)
    assert share == Rotation(6, 50, 5641, 9)
    plan = rationed_plan(share, ordered, per_object=2400, never_observed=2400,
                         scopes={t.uuid: 400 for t in ordered}, budget=night, spent=1)  # fmt: skip
    assert plan.rationed and plan.tonight == 0 and plan.nights_to_cover is None
    assert night_line(plan, night, "as last observed", first=False).startswith(
        "plan: about 5641 requests for the workspace-wide listings of 6 of 50 workspaces (as "
        "last observed; every workspace read within 9 night(s)), then 0 of 2400 per-object "
        "scopes (2400 never observed); full explicit-grant coverage in never at this budget")
    assert per_object_line(plan, night) == (
        "per-object scopes: 2400 (2400 never observed) of the 6 of 50 workspaces read tonight "
        "(every workspace read within 9 night(s)); 0 fit tonight after 5641 requests "
        "(--deadline 6 h 00 min); full explicit-grant coverage in never at this budget: raise "
        "--max-requests or --deadline")
    # Every credential's own budget: the rotations go on side by side.
    assert total_line([share, Rotation(1, 1, 900, 1)], 6541) == (
        "plan of every credential (2, each with its own budget): the workspace-wide listings of "
        "7 of 51 workspaces tonight (every workspace read within 9 night(s)); about 6541 "
        "requests tonight")


def test_when_every_workspace_fits_the_lines_are_as_they_were() -> None:
    night = NightBudget(HOURLY, max_requests=None, deadline=6 * 3600.0)
    plain = plan_night(workspace_requests=4111, per_object=21000, never_observed=120,
                       budget=night)  # fmt: skip
    assert not plain.rationed
    assert night_line(plain, night, "as last observed", first=False).startswith(
        "plan: about 4111 requests for the workspace-wide listings (as last observed), then 1289 "
        "of 21000 per-object scopes (120 never observed); full explicit-grant coverage in 17 "
        "night(s); about 5400 requests tonight, at 900 per 1 h 00 min at least ")
    assert "workspaces" not in per_object_line(plain, night)


async def test_a_reader_reads_a_few_workspaces_at_once_and_every_one_in_the_end() -> None:
    """Fifty workspaces of a night without limits are not all read at once: what each holds
    while it is read (pages read ahead, its listings' open grants) stays that of a few."""
    at_once, most, read = 0, 0, []

    async def read_one(turn: WorkspaceTurn, tally: WorkspaceTally) -> None:
        nonlocal at_once, most
        at_once += 1
        most = max(most, at_once)
        for _ in range(len(read) % 3 + 1):  # some finish before others
            await asyncio.sleep(0)
        read.append(turn.slug)
        at_once -= 1

    turns = [WorkspaceTurn(f"{{{i}}}", f"w{i}", 1, 6) for i in range(50)]
    unlimited = NightBudget((1000, 3600.0), max_requests=None, deadline=None)
    rationer = WorkspaceRationer(cast(Any, None), unlimited, read_one)
    assert await rationer.run(turns) == turns
    assert most == WORKSPACES_AT_ONCE
    assert sorted(read) == sorted(t.slug for t in turns)
