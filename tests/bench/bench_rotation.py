"""Nights to read every workspace's workspace-wide listings when a night cannot hold them all,
from the planner alone (no HTTP): ``python -m tests.bench.bench_rotation [PRESET] [RATE]
[DEADLINE_HOURS] [MAX_REQUESTS]``, by default ``huge 900/h 6``.

Each workspace's listings take what the org model says (``bench_plan``); the nights follow the
run's rule (``crawl.plan.workspace_stop``, in ``workspaces_in_order``): from an empty database a
workspace never read starts when the rule lets a request start and is then read at its true
size before the next starts (as ``ration.WorkspaceRationer`` does), and every workspace once
read is expected to take what it took.
"""

from __future__ import annotations

import sys

from exporter.bitbucket.budget import parse_rate
from exporter.crawl.plan import (
    NightBudget,
    WorkspaceTurn,
    rotation,
    workspace_stop,
    workspaces_in_order,
)
from exporter.simulator import Org, generate_org
from tests.bench.bench_plan import PAGELEN, pages


def listing_requests(org: Org) -> dict[str, tuple[str, int]]:
    """{workspace uuid: (slug, requests of its six listings)}."""
    return {
        ws.uuid: (ws.slug, 2 + sum(pages(n, PAGELEN) for n in (
            len(ws.members), len(ws.projects), len(ws.repositories),
            len(ws.effective_permissions()))))
        for ws in org.workspaces.values()
    }  # fmt: skip


def from_empty(sizes: dict[str, tuple[str, int]], night: NightBudget) -> list[tuple[int, int]]:
    """(workspaces, requests) of each night until every workspace has been read once."""
    known: dict[str, tuple[int, int]] = {}
    nights: list[tuple[int, int]] = []
    while len(known) < len(sizes):
        turns = workspaces_in_order(
            WorkspaceTurn(uuid, slug, *known[uuid]) if uuid in known else WorkspaceTurn(uuid, slug)
            for uuid, (slug, _) in sizes.items()
        )
        committed, read = 1, 0  # /2.0/user/workspaces
        for index, turn in enumerate(turns):
            if workspace_stop(night, first=index == 0, committed=committed,
                              expected=turn.expected,
                              next_start=night.seconds_for(committed + 1)):  # fmt: skip
                break
            committed += sizes[turn.uuid][1]
            read += 1
        for turn in turns[:read]:
            known[turn.uuid] = (len(nights) + 1, sizes[turn.uuid][1])
        nights.append((read, committed))
    return nights


def main(argv: list[str]) -> int:
    preset = argv[0] if argv else "huge"
    rate = parse_rate(argv[1] if len(argv) > 1 else "900/h")
    hours = argv[2] if len(argv) > 2 else "6"
    deadline = None if hours == "none" else float(hours) * 3600
    cap = int(argv[3]) if len(argv) > 3 else None
    night = NightBudget(rate, cap, deadline)
    sizes = listing_requests(generate_org(preset, 1))
    requests = [n for _, n in sizes.values()]
    print(f"{preset}: {len(sizes)} workspaces, {1 + sum(requests)} workspace-wide requests "
          f"({min(requests)} to {max(requests)} a workspace); a night of {rate[0]} per "
          f"{rate[1]:g} s, deadline {deadline} s, cap {cap}: {night.capacity()} requests")
    first = from_empty(sizes, night)
    print(f"from an empty database: every workspace read in {len(first)} night(s)")
    for number, (read, committed) in enumerate(first, start=1):
        print(f"  night {number}: {read} workspaces, {committed} requests, the last starting "
              f"{night.seconds_for(committed) / 3600:.2f} h in")  # fmt: skip
    steady = workspaces_in_order(WorkspaceTurn(u, s, 1, n) for u, (s, n) in sizes.items())
    turn = rotation(steady, night, spent=1)
    print(f"every size known: {turn.tonight} of {turn.workspaces} workspaces tonight "
          f"({turn.requests} requests), every workspace read within {turn.nights} night(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
