"""The planner: which scopes a run observes, in what order, within the night's budget. Pure.

The unit of the first phase is a workspace: all of one workspace's workspace-wide listings are
read in the same night, whole, or none of them, so that its repositories, permissions, roles and
groups are of one moment. Each credential takes its workspaces in this order:

1. never read (no ok observation of any of its listings), by slug;
2. the one read least recently (the oldest of its listings' latest ok observations), ties by slug;

and starts the next only while the night allows it (``workspace_stop``): the budget can still
start a request before the deadline, and, with a cap, the workspace's expected requests (the
pages its listings took when last read; one per listing if never read) fit in what is left of
it. The first workspace of a night is always started, so that a workspace larger than the night
still gets read; the order is kept (a smaller workspace behind one that does not fit waits too).
Once started a workspace is read whole, so the cap can be exceeded, and the deadline overrun, by
the workspace in progress (``ration.WorkspaceRationer``: a workspace never read starts alone,
its size being unknown until read). What is left of the night then goes to the per-object scopes
(explicit grants on each repository and project: two requests per object) of the workspaces read
tonight, taken in priority order:

1. never observed;
2. the object's effective access changed since the scope's last ok observation;
3. the oldest observation first.

What does not fit in the night's request budget (``--max-requests``) or before its deadline is
skipped, and comes first on a later night. Predictions follow the rolling window as it really
releases requests (``exporter.bitbucket.budget``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from exporter.bitbucket.budget import requests_startable, start_offset
from exporter.crawl.records import ScopeTarget
from exporter.crawl.scopes import WORKSPACE_WIDE, ScopeSpec
from exporter.progress import duration

#: A nightly run starts no workspace and no per-object scope after this long, so that it never
#: runs into the next night.
DEFAULT_DEADLINE_SECONDS = 6 * 3600.0
#: Workspace-wide listings of one workspace: the fewest requests reading it can take.
LISTINGS = len(WORKSPACE_WIDE)
#: Nights a coverage prediction follows before it says "never".
HORIZON_NIGHTS = 3650


@dataclass(frozen=True, slots=True)
class ScopeHistory:
    """What the database knows of one per-object scope."""

    last_ok: int | None  # the snapshot of its latest ok observation
    changed: bool = False  # its object's effective access changed since then


@dataclass(frozen=True, slots=True)
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
class WorkspaceTurn:
    """What the planner knows of one workspace's workspace-wide listings."""

    uuid: str
    slug: str
    #: The oldest of its listings' latest ok observations (None: never read).
    last_read: int | None = None
    #: Requests (pages) its listings took at those observations (0: unknown).
    requests: int = 0
    #: For predictions only, if never read: what it will likely take (the average of the
    #: workspaces read; 0: one request a listing).
    estimate: int = 0

    @property
    def never_read(self) -> bool:
        return self.last_read is None

    @property
    def expected(self) -> int:
        """Requests its listings should take, as the rule that starts it counts them: as when
        last read; one per listing if never read (a lower bound)."""
        return self.requests if self.requests > 0 and not self.never_read else LISTINGS

    @property
    def likely(self) -> int:
        """Requests it will likely take, for predictions: ``expected``, or for a workspace never
        read its ``estimate`` if it has one."""
        return max(self.estimate, LISTINGS) if self.never_read and self.estimate else self.expected

    def priority(self) -> tuple[int, int, str]:
        return (0, 0, self.slug) if self.last_read is None else (1, self.last_read, self.slug)


def workspaces_in_order(turns: Iterable[WorkspaceTurn]) -> list[WorkspaceTurn]:
    """Never read first, then the least recently read; ties by slug."""
    return sorted(turns, key=WorkspaceTurn.priority)


def workspace_stop(
    night: NightBudget, *, first: bool, committed: int, expected: int, next_start: float
) -> str | None:
    """Why the next workspace may not start, if it may not (None: it may).

    ``committed`` counts the credential's requests made so far and those the workspaces in
    progress are still expected to make; ``next_start`` is when (seconds after the night began)
    the budget could start one more request after them. The workspace starts if that is before
    the deadline and, with a cap, if ``committed + expected`` is within it; the night's first
    workspace starts whatever the cap, so that a workspace larger than the cap is still read.
    """
    if night.deadline is not None and next_start >= night.deadline:
        return "deadline"
    if night.max_requests is not None and not first and committed + expected > night.max_requests:
        return "max-requests"
    return None


def workspaces_tonight(ordered: Sequence[WorkspaceTurn], night: NightBudget, *, spent: int) -> int:
    """How many of ``ordered`` (the first ones) start tonight, each starting as ``workspace_stop``
    says and then taking what it likely takes; ``spent``: requests made before them (the
    workspace list)."""
    committed = spent
    for index, turn in enumerate(ordered):
        next_start = night.seconds_for(committed + 1)
        if workspace_stop(night, first=index == 0, committed=committed, expected=turn.expected,
                          next_start=next_start):  # fmt: skip
            return index
        committed += turn.likely
    return len(ordered)


def _after(queue: list[WorkspaceTurn], read: int) -> list[WorkspaceTurn]:
    """The order of the next night: those read tonight become the most recently read, each
    known to take what it likely took."""
    done = [replace(t, last_read=t.last_read or 0, requests=t.likely) for t in queue[:read]]
    return queue[read:] + sorted(done, key=lambda t: t.slug)


def with_estimates(turns: Sequence[WorkspaceTurn]) -> list[WorkspaceTurn]:
    """``turns``, those never read expected (for predictions) to take the average of those
    read, if any was."""
    known = [t.requests for t in turns if not t.never_read and t.requests > 0]
    if not known:
        return list(turns)
    average = -(-sum(known) // len(known))
    return [replace(t, estimate=average) if t.never_read else t for t in turns]


@dataclass(frozen=True)
class Rotation:
    """Tonight's share of one credential's workspaces, and the pace of the rotation."""

    tonight: int  # workspaces whose listings are read tonight (the first of the order)
    workspaces: int  # of how many
    requests: int  # expected for their listings, ``spent`` included
    nights: int | None  # nights, tonight the first, until every one has been read; None: never

    @property
    def rationed(self) -> bool:
        return self.tonight < self.workspaces


def _reads(
    queue: list[WorkspaceTurn], night: NightBudget, spent: int, forced: int | None
) -> int:
    return workspaces_tonight(queue, night, spent=spent) if forced is None else forced


def rotation(
    ordered: Sequence[WorkspaceTurn], night: NightBudget, *, spent: int, tonight: int | None = None
) -> Rotation:
    """Which workspaces tonight reads, and in how many nights every one will have been read if
    each night is like this one (the same budget, each workspace as expected). ``tonight``: how
    many of ``ordered`` tonight did read, if it is over (else as the plan says)."""
    queue = list(ordered)
    first = _reads(queue, night, spent, tonight)
    requests = spent + sum(t.likely for t in queue[:first])
    unread = {t.uuid for t in queue}
    nights: int | None = 0
    forced = tonight
    while unread:
        read = _reads(queue, night, spent, forced)
        forced = None
        if read == 0:
            nights = None
            break
        assert nights is not None
        nights += 1
        unread -= {t.uuid for t in queue[:read]}
        queue = _after(queue, read)
    return Rotation(first, len(queue), requests, nights)


def nights_to_cover(
    ordered: Sequence[WorkspaceTurn], night: NightBudget, *, spent: int,
    scopes: Mapping[str, int], tonight: int | None = None,
) -> int | None:  # fmt: skip
    """Nights, tonight the first, until every per-object scope has been observed once, when a
    workspace's per-object scopes are read only on the nights its listings are, in what is left
    of those nights (each scope one request); ``scopes``: per-object scopes by workspace uuid;
    ``tonight`` as for ``rotation``. None: never at this budget (no progress in a whole rotation,
    or not within ``HORIZON_NIGHTS``).
    """
    remaining = {t.uuid: scopes.get(t.uuid, 0) for t in ordered}
    left = sum(remaining.values())
    if left == 0:
        return 0
    capacity = night.capacity()
    queue = list(ordered)
    stalled = 0
    forced = tonight
    for nights in range(1, HORIZON_NIGHTS + 1):
        read = _reads(queue, night, spent, forced)
        forced = None
        if read == 0:
            return None
        room = None
        if capacity is not None:
            room = max(capacity - spent - sum(t.likely for t in queue[:read]), 0)
        before = left
        for turn in queue[:read]:
            take = remaining[turn.uuid] if room is None else min(room, remaining[turn.uuid])
            remaining[turn.uuid] -= take
            left -= take
            if room is not None:
                room -= take
        if left == 0:
            return nights
        stalled = stalled + 1 if left == before else 0
        if stalled >= len(queue):
            return None
        queue = _after(queue, read)
    return None


@dataclass(frozen=True)
class NightPlan:
    workspace_requests: int  # expected for the workspace-wide listings
    per_object: int  # per-object scopes known (each at least one request)
    never_observed: int
    tonight: int  # per-object scopes that fit tonight
    nights_to_cover: int | None  # nights until every per-object scope is observed; None: never
    #: Workspaces whose listings are read tonight, of how many, and the nights until every one
    #: has been read; None where it was not asked (every workspace read, the normal case).
    workspaces: Rotation | None = None

    @property
    def requests(self) -> int:
        return self.workspace_requests + self.tonight

    @property
    def rationed(self) -> bool:
        return self.workspaces is not None and self.workspaces.rationed


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


def rationed_plan(
    workspaces: Rotation, ordered: Sequence[WorkspaceTurn], *, per_object: int,
    never_observed: int, scopes: Mapping[str, int], budget: NightBudget, spent: int,
    workspace_requests: int | None = None, tonight: int | None = None,
) -> NightPlan:  # fmt: skip
    """The plan of a night that reads the listings of only some of its workspaces: the per-object
    scopes of those (``per_object``) in what is left of the night, and full coverage of every
    workspace's (``scopes``) as ``nights_to_cover`` predicts it."""
    requests = workspaces.requests if workspace_requests is None else workspace_requests
    plan = plan_night(workspace_requests=requests, per_object=per_object,
                      never_observed=never_observed, budget=budget)  # fmt: skip
    cover = nights_to_cover(ordered, budget, spent=spent, scopes=scopes, tonight=tonight)
    return replace(plan, nights_to_cover=cover, workspaces=workspaces)


def _never() -> str:
    return "never at this budget: raise --max-requests or --deadline"


def _nights(plan: NightPlan) -> str:
    if plan.nights_to_cover is None:
        return _never()
    return f"{plan.nights_to_cover} night(s)"


def _within(workspaces: Rotation) -> str:
    nights = _never() if workspaces.nights is None else f"{workspaces.nights} night(s)"
    return f"every workspace read within {nights}"


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
    listings = f"({basis})"
    if plan.workspaces is not None and plan.rationed:
        share = plan.workspaces
        listings = (f"of {share.tonight} of {share.workspaces} workspaces ({basis}; "
                    f"{_within(share)})")  # fmt: skip
    return (
        f"plan: about {plan.workspace_requests} requests for the workspace-wide listings "
        f"{listings}, {per_object}; about {plan.requests} requests tonight, at {limit} per "
        f"{duration(window)} at least {duration(night.seconds_for(plan.requests))}"
    )


def per_object_line(plan: NightPlan, night: NightBudget) -> str:
    """The plan of the per-object scopes, once the workspace-wide listings are read."""
    limits = []
    if night.max_requests is not None:
        limits.append(f"--max-requests {night.max_requests}")
    if night.deadline is not None:
        limits.append(f"--deadline {duration(night.deadline)}")
    of = ""
    if plan.workspaces is not None and plan.rationed:
        share = plan.workspaces
        of = (f" of the {share.tonight} of {share.workspaces} workspaces read tonight "
              f"({_within(share)})")  # fmt: skip
    return (
        f"per-object scopes: {plan.per_object} ({plan.never_observed} never observed){of}; "
        f"{plan.tonight} fit tonight after {plan.workspace_requests} requests "
        f"({', '.join(limits) or 'no limit'}); full explicit-grant coverage in {_nights(plan)}"
    )


def total_line(rotations: Sequence[Rotation], requests: int) -> str:
    """Every credential's share at once (each has its own budget, so the rotations go on side
    by side: every workspace has been read when the slowest has)."""
    tonight = sum(r.tonight for r in rotations)
    workspaces = sum(r.workspaces for r in rotations)
    nights = [r.nights for r in rotations]
    slowest = None if None in nights else max(n or 0 for n in nights)
    within = _within(Rotation(tonight, workspaces, requests, slowest))
    return (
        f"plan of every credential ({len(rotations)}, each with its own budget): the "
        f"workspace-wide listings of {tonight} of {workspaces} workspaces tonight ({within}); "
        f"about {requests} requests tonight"
    )
