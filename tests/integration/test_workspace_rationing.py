"""Workspaces rationed across nights when their workspace-wide listings do not fit in one: each
night reads some workspaces whole, in turn (never read first, then the least recently read), within
the cap plus the workspace in progress; every workspace is read within the nights the plan
predicted; each night's diff is the ground truth of the workspaces (and per-object scopes) it
read, and nothing of the others. When everything fits, nothing changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.bitbucket import BasicAuth
from exporter.bitbucket.budget import requests_startable
from exporter.cli_output import EXIT_OK
from exporter.config import Settings
from exporter.export import run_snapshot
from exporter.simulator import (
    ADMIN_EMAIL,
    ADMIN_TOKEN,
    ExplicitState,
    Org,
    apply_churn,
    diff_explicit,
    explicit_state,
    generate_org,
)
from exporter.simulator.generate import PRESETS, Preset
from exporter.simulator.observe import ObservableState, diff_states, observable_state
from tests.bench.bench_plan import PAGELEN, pages, per_object_minimum, workspace_wide_minimum
from tests.integration.conftest import (
    Cli,
    diff_key,
    explicit_truth_key,
    project_keys,
    truth_key,
)
from tests.integration.test_plan_predictions import FakeTime
from tests.integration.test_rolling_refresh import expected_explicit, observations
from tests.sim_thread import ThreadedSimulator

#: Eight small workspaces: their listings take 6 or 7 requests each.
SHAPE = Preset(8, 60, 12, 2, 3)
OPENING = re.compile(r"plan: about \d+ requests for the workspace-wide listings of (\d+) of (\d+) "
                     r"workspaces \(([^;]+(?:; [^;]+)*?); every workspace read within (\d+) night")
AFTER = re.compile(r"per-object scopes: .* of the (\d+) of (\d+) workspaces read tonight "
                   r"\(every workspace read within (\d+) night")  # fmt: skip
EXPLICIT_SOURCES = ("direct", "group", "project", "project group")


@pytest.fixture
def org(monkeypatch: pytest.MonkeyPatch) -> Org:
    monkeypatch.setitem(PRESETS, "rationing", SHAPE)
    return generate_org("rationing", seed=3)


def listing_requests(org: Org) -> dict[str, int]:
    """Requests of each workspace's listings, from the model (the workspace, /1.0/groups and
    ceil(n / 100) for each paged listing)."""
    return {
        ws.uuid: 2 + sum(pages(n, PAGELEN) for n in (len(ws.members), len(ws.projects),
                                                     len(ws.repositories),
                                                     len(ws.effective_permissions())))
        for ws in org.workspaces.values()
    }  # fmt: skip


def read_at(db: Path, snapshot: int) -> dict[str, int]:
    """{workspace uuid: requests its listings took} of the workspaces ``snapshot`` read."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT s.workspace_uuid, sum(o.requests), count(*) FROM observations o "
            "JOIN scopes s ON s.id = o.scope_id WHERE s.parent_scope_id IS NULL "
            "AND o.snapshot_id = ? AND o.outcome = 'ok' GROUP BY s.workspace_uuid",
            (snapshot,),
        ).fetchall()
    assert all(count == 6 for _, _, count in rows), "a workspace is read whole or not at all"
    return {str(uuid): int(requests) for uuid, requests, _ in rows}


def requests_of(db: Path, snapshot: int) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT requests FROM snapshots WHERE id = ?",
                                (snapshot,)).fetchone()[0])  # fmt: skip


def one_workspace(org: Org, uuid: str) -> Org:
    """``org`` as if it had only workspace ``uuid`` (its users shared): for ground truths."""
    return replace(org, workspaces={uuid: org.workspaces[uuid]})


def check_turns(turns: dict[str, list[int]], nights: int, predictions: dict[int, int]) -> None:
    """Every workspace is read within the nights each night predicted (from that night on)."""
    checked = 0
    for night, within in predictions.items():
        last = night + within - 1
        if last > nights:
            continue
        for uuid, read in turns.items():
            assert any(night <= n <= last for n in read), (night, within, uuid, read)
        checked += 1
    assert checked >= 2


def test_a_cap_below_the_listings_reads_every_workspace_in_turn_and_diffs_what_it_read(
    cli: Cli, org: Org
) -> None:
    sizes = listing_requests(org)
    assert workspace_wide_minimum(org) == 1 + sum(sizes.values())
    # Room for two or three workspaces and a few explicit grants, not for all eight.
    cap = 1 + 2 * max(sizes.values()) + 5
    assert cap < workspace_wide_minimum(org)
    nights = 9
    wide_states: dict[int, dict[str, tuple[ObservableState, ExplicitState, set[str]]]] = {}
    states: dict[int, ExplicitState] = {}
    turns: dict[str, list[int]] = {uuid: [] for uuid in sizes}
    predictions: dict[int, int] = {}
    compared = unread_nights = 0
    for night in range(1, nights + 1):
        if night > 1:
            apply_churn(org, rng=random.Random(f"workspace-rationing-{night}"), rate=0.03)
        assert cli("snapshot", "--max-requests", str(cap)) == EXIT_OK, cli.stderr
        assert "left for a later night: " in cli.stdout  # the summary says so, even with -q
        snapshot = night
        states[snapshot] = explicit_state(org)
        wide_states[snapshot] = {}
        for uuid, ws in org.workspaces.items():
            alone = one_workspace(org, uuid)
            objects = {*ws.repositories, *ws.projects}
            wide_states[snapshot][uuid] = (observable_state(alone), explicit_state(alone), objects)
        read = read_at(cli.db, snapshot)
        # Within the cap and the workspace in progress; at least one workspace a night.
        assert read and requests_of(cli.db, snapshot) <= cap + max(read.values())
        assert len(read) < len(sizes)
        unread_nights += 1
        for uuid in read:
            turns[uuid].append(snapshot)
        found = AFTER.findall(cli.stderr)
        assert found, cli.stderr
        tonight, of, within = map(int, found[-1])
        assert (tonight, of) == (len(read), len(sizes))
        predictions[night] = within
        skipped = cli.sql("SELECT scopes_skipped FROM snapshots WHERE id = ?", snapshot)[0][0]
        assert skipped >= 6 * (len(sizes) - len(read))
        if night == 1:
            continue

        reported = cli.diff_json()["changes"]
        # Workspace-wide facts: for each workspace read tonight, the truth between its last read
        # and tonight; nothing of the workspaces not read (first reads are a baseline).
        expected_wide = []
        created: set[str] = set()
        for uuid in read:
            before = [n for n in turns[uuid] if n < snapshot]
            if not before:
                continue
            old, new = wide_states[before[-1]][uuid], wide_states[snapshot][uuid]
            expected_wide += [truth_key(c, project_keys(org)) for c in diff_states(old[0], new[0])]
            expected_wide += [explicit_truth_key(c, org) for c in diff_explicit(old[1], new[1])
                              if c.source == "membership"]  # fmt: skip
            created |= new[2] - old[2]
        assert sorted(diff_key(r) for r in reported if r["source"] not in EXPLICIT_SOURCES) \
            == sorted(expected_wide), night
        # Explicit grants: exactly the truth of the per-object scopes verified tonight, which
        # belong to workspaces read tonight.
        seen = observations(cli)
        expected = expected_explicit(states, seen, snapshot - 1, snapshot, created)
        assert sorted(diff_key(r) for r in reported if r["source"] in EXPLICIT_SOURCES) == sorted(
            explicit_truth_key(c, org) for _, _, c in expected
        ), night
        compared += len(expected_wide) + len(expected)
        # Nothing is said about a workspace not read tonight; the table names them on one line.
        names = {ws.slug for uuid, ws in org.workspaces.items() if uuid not in read}
        assert not [r for r in reported if r["workspace"] in names]
        assert cli("diff") == EXIT_OK
        waiting = [line for line in cli.stdout.splitlines() if "their turn is to come" in line]
        known = {org.workspaces[uuid].slug for uuid, nights_read in turns.items()
                 if uuid not in read and nights_read}  # never read: nothing known to verify
        listed = [set(line.split(": ")[-1].split(", ")) for line in waiting]
        assert listed == ([known] if known else [])
        assert not [line for line in cli.stdout.splitlines() if "(not attempted" in line]
    assert compared >= 10 and unread_nights == nights
    check_turns(turns, nights, predictions)
    # coverage says how far the turn has come.
    assert cli("coverage") == EXIT_OK
    assert (f"the last night read the workspace-wide listings of {len(read)} of {len(sizes)} "
            "workspaces") in cli.stdout  # fmt: skip
    # Never read first, then the least recently read: the first nights read every workspace once
    # before any is read twice.
    first_round = sorted(n for read in turns.values() for n in read[:1])
    assert max(first_round) <= min(read[1] for read in turns.values() if len(read) > 1)


def run_nights(
    org: Org, db: Path, nights: int, caplog: pytest.LogCaptureFixture, **budget: object
) -> list[tuple[list[str], dict[str, int], int]]:
    """``nights`` snapshots on a fake clock; for each, its log lines, the workspaces it read and
    its requests."""
    out = []
    with ThreadedSimulator(org) as sim:
        for night in range(1, nights + 1):
            settings = Settings(db_path=db, api_url=sim.base_url,
                                auth=BasicAuth(ADMIN_EMAIL, ADMIN_TOKEN), **budget)  # type: ignore[arg-type]  # fmt: skip
            time = FakeTime()
            caplog.clear()
            asyncio.run(run_snapshot(settings, sleep=time.sleep, clock=time.clock))
            lines = [r.getMessage() for r in caplog.records if r.name == "exporter.export"]
            out.append((lines, read_at(db, night), requests_of(db, night)))
    return out


@pytest.mark.parametrize(
    "budget",
    [
        {"max_requests": 20, "deadline": None, "rate": (900, 3600.0)},
        {"max_requests": None, "deadline": 2 * 3600.0, "rate": (5, 3600.0)},
        {"max_requests": 30, "deadline": 3 * 3600.0, "rate": (10, 3600.0)},
    ],
    ids=["cap", "deadline", "both"],
)
def test_the_plan_predicts_the_workspaces_of_each_night_and_the_nights_of_a_cycle(
    tmp_path: Path, org: Org, caplog: pytest.LogCaptureFixture, budget: dict[str, object]
) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    sizes = listing_requests(org)
    nights = 10
    runs = run_nights(org, tmp_path / "a.db", nights, caplog, **budget)
    turns: dict[str, list[int]] = {uuid: [] for uuid in sizes}
    predictions: dict[int, int] = {}
    cap = budget["max_requests"]
    deadline = budget["deadline"]
    for night, (lines, read, requests) in enumerate(runs, start=1):
        for uuid in read:
            turns[uuid].append(night)
        opening = [m for line in lines for m in OPENING.findall(line)]
        assert len(opening) == 1, lines
        tonight, of, basis, within = opening[0]
        assert int(of) == len(sizes) and 0 < len(read) < len(sizes)
        if basis == "as last observed":
            # Every size known: the plan said which workspaces tonight reads, exactly.
            assert int(tonight) == len(read), (night, lines)
            predictions[night] = int(within)
        if isinstance(cap, int):
            assert requests <= cap + max(read.values())
        if isinstance(deadline, float):
            limit, window = budget["rate"]  # type: ignore[misc]
            startable = requests_startable(deadline, limit=limit, window=window)
            # The last workspace started before the deadline: the requests before it could.
            assert requests - max(read.values()) < startable
    assert predictions
    check_turns(turns, nights, predictions)


def test_several_credentials_each_read_their_workspaces_with_their_own_budget(
    tmp_path: Path, org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    """One credential per workspace multiplies the budget: the line of them all says so."""
    caplog.set_level(logging.INFO, logger="exporter")
    own = sorted(ws.slug for ws in org.workspaces.values())[:2]
    auth = BasicAuth(ADMIN_EMAIL, ADMIN_TOKEN)
    with ThreadedSimulator(org) as sim:
        settings = Settings(db_path=tmp_path / "a.db", api_url=sim.base_url, auth=auth,
                            workspace_auth=dict.fromkeys(own, auth), max_requests=14,
                            deadline=None)  # fmt: skip
        for _ in range(2):
            time = FakeTime()
            caplog.clear()
            result = asyncio.run(run_snapshot(settings, sleep=time.sleep, clock=time.clock))
    assert not result.has_gaps
    lines = [r.getMessage() for r in caplog.records if r.name == "exporter.export"]
    total = [line for line in lines if line.startswith("plan of every credential (3, ")]
    assert len(total) == 1, lines
    # Each workspace credential reads its own workspace (alone, so every night); the default
    # credential's share rotates through the other six.
    found = re.search(r"listings of (\d+) of 8 workspaces tonight \(every workspace read within "
                      r"(\d+) night", total[0])  # fmt: skip
    assert found is not None
    read = read_at(tmp_path / "a.db", 2)
    assert int(found[1]) == len(read) and {ws.slug for ws in org.workspaces.values()
                                           if ws.uuid in read} >= set(own)  # fmt: skip
    assert int(found[2]) > 1


def test_when_everything_fits_every_scope_is_read_with_the_fewest_requests(
    cli: Cli, org: Org
) -> None:
    """The normal case: no workspace is left for later, and a night takes exactly the requests
    and reads exactly the scopes it did before workspaces were rationed."""
    wide, explicit = workspace_wide_minimum(org), per_object_minimum(org)
    scopes = 6 * len(org.workspaces) + sum(2 * (len(ws.repositories) + len(ws.projects))
                                           for ws in org.workspaces.values())  # fmt: skip
    for night in (1, 2):
        assert cli("snapshot") == EXIT_OK, cli.stderr
        assert "workspaces tonight" not in cli.stderr and "later night" not in cli.stderr
        row = cli.sql("SELECT requests, scopes_ok, scopes_skipped FROM snapshots WHERE id = ?",
                      night)[0]  # fmt: skip
        assert row == (wide + explicit, scopes, 0)
    # With a cap that holds the listings and a few explicit grants, only explicit grants wait.
    assert cli("snapshot", "--max-requests", str(wide + 3)) == EXIT_OK, cli.stderr
    assert "workspaces tonight" not in cli.stderr
    assert len(read_at(cli.db, 3)) == len(org.workspaces)
    assert cli.sql("SELECT requests, scopes_skipped FROM snapshots WHERE id = 3")[0] == (
        wide + 3, scopes - 6 * len(org.workspaces) - 3)
