"""The planner: which scopes a run observes, in what order, within the night's budget. Pure.

Every run reads the workspace-wide listings whole, first. Per-object scopes (explicit grants on
each repository and project: two requests per object) cannot all be read in one night of a large
organisation at Bitbucket's rate, so they are taken in priority order:

1. never observed;
2. the object's effective access changed since the scope's last ok observation;
3. the oldest observation first.

What does not fit in the night's request budget (``--max-requests``) or before its deadline is
skipped, and comes first on a later night. Predictions follow the rolling window as it really
releases requests (``exporter.bitbucket.budget``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.bitbucket.budget import requests_startable, start_offset
from exporter.crawl.records import ScopeTarget
from exporter.crawl.scopes import ScopeSpec
from exporter.progress import duration

#: A nightly run stops starting per-object scopes after this long, so that it never runs into
#: the next night.
DEFAULT_DEADLINE_SECONDS = 6 * 3600.0


@dataclass(frozen=True)
class ScopeHistory:
    """What the database knows of one per-object scope."""

    last_ok: int | None  # the snapshot of its latest ok observation
    changed: bool = False  # its object's effective access changed since then


@dataclass(frozen=True)
class Candidate:
    spec: ScopeSpec
    target: ScopeTarget
    history: ScopeHistory

    @property
    def never_observed(self) -> bool:
        return self.history.last_ok is None

    def priority(self) -> tuple[int, int, str, str]:
        rank = 0 if self.never_observed else 1 if self.history.changed else 2
        return rank, self.history.last_ok or 0, self.target.object_uuid, self.spec.kind.value


def in_priority_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=Candidate.priority)


@dataclass(frozen=True)
class NightBudget:
    """What one night may spend: a rate (``limit`` per ``window`` seconds), and optionally a cap on
    requests and a deadline (seconds after the start)."""

    rate: tuple[int, float]
    max_requests: int | None = None
    deadline: float | None = DEFAULT_DEADLINE_SECONDS

    def capacity(self) -> int | None:
        """Requests the night allows in all (None: no limit)."""
        limits = []
        if self.max_requests is not None:
            limits.append(self.max_requests)
        if self.deadline is not None:
            limit, window = self.rate
            limits.append(requests_startable(self.deadline, limit=limit, window=window))
        return min(limits) if limits else None

    def seconds_for(self, requests: int) -> float:
        """The least time before the last of ``requests`` can start under the rate."""
        limit, window = self.rate
        return start_offset(requests, limit=limit, window=window)


@dataclass(frozen=True)
class NightPlan:
    workspace_requests: int  # expected for the workspace-wide listings
    per_object: int  # per-object scopes known (each at least one request)
    never_observed: int
    tonight: int  # per-object scopes that fit tonight
    nights_to_cover: int | None  # nights until every per-object scope is observed; None: never

    @property
    def requests(self) -> int:
        return self.workspace_requests + self.tonight


def plan_night(
    *, workspace_requests: int, per_object: int, never_observed: int, budget: NightBudget
) -> NightPlan:
    capacity = budget.capacity()
    if capacity is None:
        return NightPlan(workspace_requests, per_object, never_observed, per_object, 1)
    room = max(capacity - workspace_requests, 0)
    tonight = min(per_object, room)
    nights = 0 if per_object == 0 else math.ceil(per_object / room) if room else None
    return NightPlan(workspace_requests, per_object, never_observed, tonight, nights)


def _nights(plan: NightPlan) -> str:
    if plan.nights_to_cover is None:
        return "never at this budget: raise --max-requests or --deadline"
    return f"{plan.nights_to_cover} night(s)"


def night_line(plan: NightPlan, night: NightBudget, basis: str, *, first: bool) -> str:
    """The plan line printed before the run."""
    limit, window = night.rate
    per_object = (
        "explicit grants of each repository and project: counted once the listings are read"
        if first
        else f"then {plan.tonight} of {plan.per_object} per-object scopes "
        f"({plan.never_observed} never observed); full explicit-grant coverage in "
        f"{_nights(plan)}"
    )
    return (
        f"plan: about {plan.workspace_requests} requests for the workspace-wide listings "
        f"({basis}), {per_object}; about {plan.requests} requests tonight, at {limit} per "
        f"{duration(window)} at least {duration(night.seconds_for(plan.requests))}"
    )


def per_object_line(plan: NightPlan, night: NightBudget) -> str:
    """The plan of the per-object scopes, once the workspace-wide listings are read."""
    limits = []
    if night.max_requests is not None:
        limits.append(f"--max-requests {night.max_requests}")
    if night.deadline is not None:
        limits.append(f"--deadline {duration(night.deadline)}")
    return (
        f"per-object scopes: {plan.per_object} ({plan.never_observed} never observed); "
        f"{plan.tonight} fit tonight after {plan.workspace_requests} requests "
        f"({', '.join(limits) or 'no limit'}); full explicit-grant coverage in {_nights(plan)}"
    )
