"""Explicit grants rationed across nights: coverage within the nights the plan predicted, and
every night's diff equal to the ground truth of the scopes that night verified."""

from __future__ import annotations

import json
import random
import re

from exporter.cli_output import EXIT_OK
from exporter.simulator import (
    ExplicitState,
    Org,
    TruthChange,
    apply_churn,
    diff_explicit,
    explicit_state,
)
from tests.bench.bench_plan import workspace_wide_minimum
from tests.integration.conftest import (
    Cli,
    diff_key,
    explicit_truth_key,
    project_keys,
    truth_key,
)

#: Per-object scopes each night may read beyond the workspace-wide listings.
ROOM = 25
NIGHTS = re.compile(r"full explicit-grant coverage in (\d+) night")
KINDS = ("repository_user_grants", "repository_group_grants", "project_user_grants",
         "project_group_grants")  # fmt: skip


def scope_of(change: TruthChange) -> tuple[str, str]:
    """(scope kind, object uuid) of an explicit ground-truth change."""
    by_group = not (change.subject_uuid or "").startswith("{")
    kind = {
        ("repository", False): "repository_user_grants",
        ("repository", True): "repository_group_grants",
        ("project", False): "project_user_grants",
        ("project", True): "project_group_grants",
    }[(change.object_type, by_group)]
    return kind, change.object_uuid


def observations(cli: Cli) -> dict[tuple[str, str], list[int]]:
    """{(kind, object uuid): snapshots with an ok observation} of the per-object scopes."""
    found: dict[tuple[str, str], list[int]] = {}
    for kind, uuid, snapshot in cli.sql(
        "SELECT s.kind, s.object_uuid, o.snapshot_id FROM scopes s JOIN observations o "
        "ON o.scope_id = s.id WHERE s.parent_scope_id IS NOT NULL AND o.outcome = 'ok' "
        "ORDER BY o.snapshot_id"
    ):
        found.setdefault((kind, uuid), []).append(snapshot)
    return found


def expected_explicit(
    states: dict[int, ExplicitState], seen: dict[tuple[str, str], list[int]], a: int, b: int,
    created: set[str],
) -> set[tuple[str, str, TruthChange]]:
    """The explicit changes the diff from ``a`` to ``b`` must report: for each scope verified in
    (a, b], the truth between the org as its last observation at or before ``a`` saw it and the
    org at ``b``; a scope first verified now reports its grants only if its object is new."""
    out = set()
    for scope, snapshots in seen.items():
        if not any(a < s <= b for s in snapshots):
            continue
        before = [s for s in snapshots if s <= a]
        if before:
            changes = diff_explicit(states[before[-1]], states[b])
        elif scope[1] in created:
            changes = diff_explicit(ExplicitState({}, set()), states[b])
        else:
            continue
        out |= {(scope[0], scope[1], c) for c in changes
                if c.source != "membership" and scope_of(c) == scope}
    return out


def test_rationed_nights_cover_everything_as_predicted_and_diff_only_what_they_verified(
    cli: Cli, org: Org
) -> None:
    # Night 1 reads the workspace-wide listings only (a cap of what they take: every workspace
    # fits, nothing is left for explicit grants): that is what they cost.
    wide = workspace_wide_minimum(org)
    assert cli("snapshot", "--max-requests", str(wide)) == EXIT_OK, cli.stderr
    listings = cli.sql("SELECT requests FROM snapshots")[0][0]
    assert listings == wide
    cap = str(listings + ROOM)
    states = {1: explicit_state(org)}

    assert cli("snapshot", "--max-requests", cap) == EXIT_OK, cli.stderr
    states[2] = explicit_state(org)
    predicted = int(NIGHTS.findall(cli.stderr)[-1])
    per_object = sum(2 * (len(ws.repositories) + len(ws.projects))
                     for ws in org.workspaces.values())  # fmt: skip
    assert predicted == -(-per_object // ROOM) and predicted >= 3
    assert f"{ROOM} fit tonight" in cli.stderr
    # coverage says the same: ROOM observed, the rest never, and how many more nights.
    assert cli("coverage", "--format", "json") == EXIT_OK
    rows = json.loads(cli.stdout)
    assert {r["kind"] for r in rows} == set(KINDS)
    assert sum(r["objects"] for r in rows) == per_object
    assert sum(r["observed"] for r in rows) == ROOM
    assert {r["nights_to_full"] for r in rows if r["never_observed"]} == {predicted - 1}
    assert cli("coverage") == EXIT_OK and f"last night read {ROOM} per-object scopes" in cli.stdout
    first_objects = {uuid for ws in org.workspaces.values()
                     for uuid in [*ws.repositories, *ws.projects]}  # fmt: skip

    snapshot = 2
    compared = 0
    for night in range(3, 2 + predicted + 2):
        before = {uuid for ws in org.workspaces.values()
                  for uuid in [*ws.repositories, *ws.projects]}  # fmt: skip
        churn = apply_churn(org, rng=random.Random(f"rolling-{night}"), rate=0.02)
        assert cli("snapshot", "--max-requests", cap) == EXIT_OK, cli.stderr
        snapshot += 1
        states[snapshot] = explicit_state(org)
        created = {uuid for ws in org.workspaces.values()
                   for uuid in [*ws.repositories, *ws.projects]} - before  # fmt: skip
        reported = cli.diff_json()["changes"]

        # Workspace-wide listings are read every night: their changes are all there.
        wide = sorted([truth_key(c, project_keys(org)) for c in churn.changes]
                      + [explicit_truth_key(c, org) for c in churn.explicit_changes
                         if c.source == "membership"])  # fmt: skip
        explicit_sources = ("direct", "group", "project", "project group")
        assert sorted(diff_key(r) for r in reported if r["source"] not in explicit_sources) \
            == wide
        # Explicit grants: exactly the truth of the scopes verified tonight, nothing else.
        seen = observations(cli)
        expected = expected_explicit(states, seen, snapshot - 1, snapshot, created)
        assert sorted(diff_key(r) for r in reported if r["source"] in explicit_sources) == sorted(
            explicit_truth_key(c, org) for _, _, c in expected
        ), night
        compared += len(expected)
        if night == 2 + predicted - 1:
            # Every repository and project there on the first rationed night, and still there,
            # has had both its scopes observed by the night the plan predicted.
            still = first_objects & {uuid for ws in org.workspaces.values()
                                     for uuid in [*ws.repositories, *ws.projects]}  # fmt: skip
            missing = {uuid for uuid in still
                       if sum((k, uuid) in seen for k in KINDS) < 2}  # fmt: skip
            assert still and not missing
    # The comparison was not empty, and nights were rationed (scopes skipped every night).
    assert compared >= 5
    skipped = [row[0] for row in cli.sql("SELECT scopes_skipped FROM snapshots ORDER BY id")]
    assert skipped[0] == per_object and all(n > 0 for n in skipped[1:predicted])
