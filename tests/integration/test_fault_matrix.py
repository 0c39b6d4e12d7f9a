"""The fault matrix: each operational fault, end to end through the real CLI and the simulator.

Every case holds the same three promises:

- nothing is lost: the database answers exactly as before the failed run (``access_at``,
  ``access_changes`` and the earlier ``snapshots`` rows), and a run that completed with gaps keeps
  the last knowledge of the scopes it could not read;
- no change is invented: the next good run's diff equals the simulator's ground truth;
- the operator sees one clear line saying what happened and what to do: no traceback, no SQL, no
  "please report it" for a fault that is not a defect.

Retries back off from 0 s and every sleep returns at once (``fast``), so no test waits on the
wall clock; a kill or a lock happens at a point the test chooses, never after a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from yarl import URL

import exporter.config
import exporter.export
from exporter.bitbucket import BasicAuth, RetryPolicy
from exporter.cli_output import EXIT_AUTH, EXIT_FAILED, EXIT_GAPS, EXIT_OK, EXIT_USAGE
from exporter.simulator import (
    ADMIN_EMAIL,
    ADMIN_TOKEN,
    ChurnResult,
    Org,
    apply_churn,
    run_simulator,
)
from exporter.simulator.serve import FAULT_STATUSES, fault_plan
from exporter.store import database, writer
from exporter.store.database import RunLock, stage_path
from exporter.store.writer import DEAD_RUN_MESSAGE, SnapshotWriter
from tests.integration.conftest import (
    Cli,
    ThreadedSimulator,
    churn_rng,
    diff_key,
    explicit_truth_key,
    project_keys,
    truth_key,
)

ROOT = Path(__file__).resolve().parents[2]
#: What an operator must never see for an operational fault.
NEVER_SHOWN = ("Traceback", "please report", "internal error", "[SQL:", "INSERT INTO", "SELECT ")
ATTEMPTS = RetryPolicy().attempts


# -- what the database answers, what the operator sees, what really changed ----------------------


def answers(cli: Cli) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a reader of the database can ask about access, and the runs."""
    return {
        "access_at": sorted(cli.sql("SELECT * FROM access_at"), key=repr),
        "access_changes": sorted(cli.sql("SELECT * FROM access_changes"), key=repr),
        "snapshots": cli.sql("SELECT * FROM snapshots ORDER BY id"),
    }


def assert_kept(cli: Cli, before: dict[str, list[tuple[Any, ...]]], status: str) -> tuple[Any, ...]:
    """The failed run changed no answer; its own row says ``status``. That row."""
    after = answers(cli)
    assert after["access_at"] == before["access_at"]
    assert after["access_changes"] == before["access_changes"]
    assert after["snapshots"][:-1] == before["snapshots"]
    last: tuple[Any, ...] = after["snapshots"][-1]
    assert last[3] == status, last
    assert cli.staged("stage_grants") == 0 or status == "running"
    return last


def the_line(output: str, *needles: str) -> str:
    """The one line of ``output`` that says every needle; nothing an operator should not see."""
    lines = [line for line in output.splitlines() if all(n in line for n in needles)]
    assert len(lines) == 1, output
    for bad in NEVER_SHOWN:
        assert bad not in output, output
    return lines[0]


def truth(org: Org, churn: ChurnResult) -> list[tuple[object, ...]]:
    return sorted(
        [truth_key(c, project_keys(org)) for c in churn.changes]
        + [explicit_truth_key(c, org) for c in churn.explicit_changes]
    )


def reported(cli: Cli, start: int, end: int) -> list[tuple[object, ...]]:
    changes = cli.diff_json("--from", str(start), "--to", str(end))["changes"]
    return sorted(diff_key(r) for r in changes)


def first_slug(org: Org) -> str:
    return sorted(w.slug for w in org.workspaces.values())[0]


def knowledge_of(cli: Cli, snapshot: int, label: str) -> list[tuple[Any, ...]]:
    """What ``access_at`` knows at ``snapshot`` from the scope labelled ``label``, with the
    snapshot it was observed in."""
    return sorted(
        cli.sql(
            "SELECT a.workspace, a.object_name, a.subject_name, a.permission, a.source, "
            "a.observed_in FROM access_at a JOIN scopes s ON s.id = a.scope_id "
            "WHERE a.snapshot_id = ? AND s.label = ?",
            snapshot,
            label,
        ),
        key=repr,
    )


def churned(cli: Cli, org: Org, day: int) -> tuple[dict[str, list[tuple[Any, ...]]], ChurnResult]:
    """A good first night, then a day of churn: what the database answers, and the truth."""
    assert cli("snapshot", "-q") == EXIT_OK, cli.stderr
    found = answers(cli)
    found["by_ids"] = access_until(cli, 1)
    return found, apply_churn(org, rng=churn_rng(day), rate=0.05)


def next_good_night_tells_the_truth(
    cli: Cli, simulator: ThreadedSimulator, org: Org, churn: ChurnResult
) -> None:
    simulator.faults.clear()
    assert cli("snapshot", "-q") == EXIT_OK, cli.stderr
    last = cli.sql("SELECT max(id) FROM snapshots")[0][0]
    assert reported(cli, 1, last) == truth(org, churn)


#: What ``access_at`` says, by ids: names are the newest labels, which a later run may rename.
BY_IDS = ("snapshot_id, object_type, subject_type, permission, source, observed_in, "
          "subject_uuid, object_uuid, scope_id")


def access_until(cli: Cli, snapshot: int) -> list[tuple[Any, ...]]:
    rows = cli.sql(f"SELECT {BY_IDS} FROM access_at WHERE snapshot_id <= ?", snapshot)
    return sorted(rows, key=repr)


def assert_gap_kept_knowledge(cli: Cli, label: str) -> None:
    """A run that completed without ``label``: its knowledge is snapshot 1's, as observed then."""
    before = knowledge_of(cli, 1, label)
    assert before and [r[:-1] for r in knowledge_of(cli, 2, label)] == [r[:-1] for r in before]
    assert {r[-1] for r in knowledge_of(cli, 2, label)} == {1}
    assert not [u for u in cli.diff_json("--from", "1", "--to", "2")["changes"]
                if u["scope_id"] == scope_id(cli, label)]  # fmt: skip


def scope_id(cli: Cli, label: str) -> int:
    found: int = cli.sql("SELECT id FROM scopes WHERE label = ?", label)[0][0]
    return found


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every snapshot through the CLI backs off from 0 s (the settings' RetryPolicy) and sleeps
    no wall-clock time (run_snapshot's sleep): the seconds each sleep was asked for."""
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    load, run = exporter.config.load_settings, exporter.export.run_snapshot

    def fast_settings(**options: Any) -> Any:
        settings, sources = load(**options)
        return replace(settings, retry=RetryPolicy(base_delay=0.0)), sources

    monkeypatch.setattr(exporter.config, "load_settings", fast_settings)
    monkeypatch.setattr(exporter.export, "run_snapshot", functools.partial(run, sleep=sleep))
    return delays


# -- the process dies ---------------------------------------------------------------------------

KILLED_IN_MERGE = """
import os, signal, sys
from exporter.store import writer
merge = writer.merge_staged
async def merge_then_die(conn, snapshot_id, *rest):
    if sys.argv[1] == "end":
        await merge(conn, snapshot_id, *rest)
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9, inside the merge's transaction
writer.merge_staged = merge_then_die
from exporter.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("where", ["start", "end"])
def test_kill_9_during_the_merge_leaves_the_database_as_it_was(
    cli: Cli, simulator: ThreadedSimulator, org: Org, where: str
) -> None:
    """Killed as the merge begins, or after its last statement but before its commit: readers
    see nothing of the run; the next run marks it aborted and tells the whole truth."""
    before, churn = churned(cli, org, 21)
    env = {**os.environ, "BITBUCKET_API_URL": simulator.base_url,
           "BITBUCKET_EMAIL": ADMIN_EMAIL, "BITBUCKET_API_TOKEN": ADMIN_TOKEN}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", KILLED_IN_MERGE, where, "snapshot", "--db", str(cli.db)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "merging snapshot 2 (" in done.stderr and "merged snapshot 2" not in done.stderr
    assert_kept(cli, before, "running")

    simulator.faults.clear()
    assert cli("snapshot") == EXIT_OK, cli.stderr
    the_line(cli.stderr, "snapshot 2 did not finish", "marking it aborted")
    assert cli.sql("SELECT status, message FROM snapshots WHERE id = 2") == [
        ("aborted", DEAD_RUN_MESSAGE)
    ]
    the_line(cli.stderr, "merging snapshot 3 (", "rows in the stage)")
    the_line(cli.stderr, "merged snapshot 3 in")
    assert reported(cli, 1, 3) == truth(org, churn)


#: A page cache of four pages: the merge writes its pages to the file before its commit, as a
#: merge larger than its cache does (at ``huge``, every first night).
SPILLED = """
from exporter.store import database, writer
database.CACHE_KIB = writer.CACHE_KIB = writer.MERGE_CACHE_KIB = 16
"""


def test_kill_9_during_the_first_merge_leaves_nothing_and_every_command_reads_on(
    cli: Cli, simulator: ThreadedSimulator, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first merge goes through a rollback journal (nothing complete is there to read):
    killed before its commit, it leaves ``PATH-journal``, which a read-only connection may not
    roll back. A reading command without write access says what to do; with it, it rolls the
    journal back and answers; the next run marks the dead one aborted and tells the truth."""
    env = {**os.environ, "BITBUCKET_API_URL": simulator.base_url,
           "BITBUCKET_EMAIL": ADMIN_EMAIL, "BITBUCKET_API_TOKEN": ADMIN_TOKEN}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SPILLED + KILLED_IN_MERGE, "end", "snapshot", "--db", str(cli.db)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    journal = cli.db.with_name(cli.db.name + "-journal")
    assert journal.stat().st_size > 0

    with without_write_access(cli.db.parent, monkeypatch):
        assert cli("snapshots") == EXIT_USAGE
    assert the_line(cli.stderr, "bbaccess:") == (
        f"bbaccess: {cli.db} holds a merge that was cut off (its process was killed): nothing "
        f"of it was kept, but SQLite must roll it back from {cli.db}-journal before the file "
        "can be read; open it once with write access to the file and its folder (bbaccess "
        "snapshot does)"
    )
    assert journal.stat().st_size > 0

    assert cli("snapshots", "--format", "json") == EXIT_OK, cli.stderr
    assert [(r["id"], r["status"]) for r in json.loads(cli.stdout)] == [(1, "running")]
    the_line(cli.stderr, "rolling back the merge that was cut off")
    assert not journal.exists()
    assert cli.sql("SELECT count(*) FROM grants") == [(0,)]

    assert cli("snapshot") == EXIT_OK, cli.stderr
    the_line(cli.stderr, "snapshot 1 did not finish", "marking it aborted")
    assert cli.sql("SELECT id, status FROM snapshots") == [(1, "aborted"), (2, "complete")]
    assert cli.sql("PRAGMA journal_mode") == [("wal",)]
    churn = apply_churn(org, rng=churn_rng(23), rate=0.05)
    assert cli("snapshot", "-q") == EXIT_OK, cli.stderr
    assert reported(cli, 2, 3) == truth(org, churn)


#: A snapshot whose merge, its statements run, waits for the file ``argv[2]`` before it commits,
#: having written ``argv[1]``.
HELD_IN_MERGE = """
import asyncio, pathlib, sys
from exporter.store import writer
merge = writer.merge_staged
async def merge_then_wait(conn, snapshot_id, *rest):
    await merge(conn, snapshot_id, *rest)
    pathlib.Path(sys.argv[1]).write_text("merged")
    while not pathlib.Path(sys.argv[2]).exists():
        await asyncio.sleep(0.01)
writer.merge_staged = merge_then_wait
from exporter.cli import main
sys.exit(main(sys.argv[3:]))
"""


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    """Until ``path`` exists (a minute at most), or the process has ended."""
    for _ in range(6000):
        if path.exists() or process.poll() is not None:
            break
        threading.Event().wait(0.01)
    assert path.exists(), process.communicate()


def test_commands_during_the_first_merge_wait_for_it_or_say_a_snapshot_runs(
    cli: Cli, simulator: ThreadedSimulator, tmp_path: Path
) -> None:
    """The first merge keeps readers out until it commits (its rollback journal): a reading
    command waits for it and answers; a second snapshot says at once that one is running, as at
    any other moment, not that the database is locked."""
    env = {**os.environ, "BITBUCKET_API_URL": simulator.base_url,
           "BITBUCKET_EMAIL": ADMIN_EMAIL, "BITBUCKET_API_TOKEN": ADMIN_TOKEN}  # fmt: skip
    merged, go = tmp_path / "merged", tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-c", SPILLED + HELD_IN_MERGE, str(merged), str(go), "snapshot",
         "--db", str(cli.db)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    reader = None
    try:
        wait_for(merged, first)
        assert cli("snapshot") == EXIT_USAGE
        assert the_line(cli.stderr, "bbaccess:") == (
            f"bbaccess: another snapshot is running against {cli.db} (or the same file by "
            "another name); wait for it to finish (one snapshot at a time per database)"
        )
        reader = subprocess.Popen(
            [sys.executable, "-m", "exporter", "snapshots", "--db", str(cli.db), "--format",
             "json"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        go.write_text("go")
        _, err = first.communicate(timeout=120)
        if reader is not None:
            read, read_err = reader.communicate(timeout=120)
    assert first.returncode == EXIT_OK, err
    assert reader.returncode == 0, read_err
    assert [(r["id"], r["status"]) for r in json.loads(read)] == [(1, "complete")]
    assert cli.sql("PRAGMA journal_mode") == [("wal",)]


def test_a_stale_running_row_is_aborted_and_its_stage_never_merged(cli: Cli, org: Org) -> None:
    """A dead process left a ``running`` row and a stage that would raise everyone to admin."""
    before, churn = churned(cli, org, 22)
    with contextlib.closing(sqlite3.connect(cli.db)) as conn, conn:
        conn.execute("ATTACH DATABASE ? AS stage", (str(stage_path(cli.db)),))
        for statement in database.STAGE_TABLES_DDL:  # as the dead run had made them
            conn.execute(statement)
        conn.execute("INSERT INTO snapshots (id, started_at, status, tool_version) "
                     "VALUES (2, '2026-01-01T00:00:00Z', 'running', 'dead')")  # fmt: skip
        conn.execute("INSERT INTO stage_grants SELECT 2, scope_id, subject_id, object_id, "
                     "(grant_kind & ~15) + 2, NULL FROM grant_versions "
                     "WHERE valid_to IS NULL")  # every grant staged as 'admin'
        conn.execute("INSERT INTO stage_observations (snapshot_id, scope_id, outcome, requests) "
                     "SELECT DISTINCT 2, scope_id, 'ok', 1 FROM grants")  # fmt: skip
    assert_kept(cli, before, "running")
    assert cli("snapshot") == EXIT_OK, cli.stderr
    the_line(cli.stderr, "WARNING snapshot 2 did not finish", "nothing of it was merged")
    assert cli.sql("SELECT status FROM snapshots ORDER BY id") == [
        ("complete",), ("aborted",), ("complete",)
    ]
    assert reported(cli, 1, 3) == truth(org, churn)


# -- one run per database file ------------------------------------------------------------------


def test_one_run_per_database_file_whatever_path_reaches_it(cli: Cli, tmp_path: Path) -> None:
    """A hard link (beside it or in another folder) or a symbolic link to the database takes the
    same lock as the database."""
    assert cli("snapshot", "-q") == EXIT_OK
    hard = tmp_path / "hard-link.db"
    os.link(cli.db, hard)
    (tmp_path / "elsewhere").mkdir()
    soft = tmp_path / "elsewhere" / "access.db"
    soft.symlink_to(cli.db)
    far = tmp_path / "elsewhere" / "hard-link-in-another-folder.db"
    os.link(cli.db, far)
    lock = RunLock(cli.db)
    lock.acquire()
    try:
        for other in (hard, soft, far):
            second = Cli(other)
            assert second("snapshot") == EXIT_USAGE, other
            the_line(second.stderr, "bbaccess: another snapshot is running against", str(other))
    finally:
        lock.release()
    assert Cli(hard)("snapshot", "-q") == EXIT_OK
    assert cli.sql("SELECT status FROM snapshots ORDER BY id") == [("complete",), ("complete",)]


def test_a_new_database_is_locked_before_it_exists(tmp_path: Path) -> None:
    """The first run creates the file so that every later path to it finds the same lock."""
    db = tmp_path / "new.db"
    lock = RunLock(db)
    lock.acquire()
    try:
        assert db.exists() and db.stat().st_size == 0
        os.link(db, tmp_path / "same.db")
        with pytest.raises(database.SnapshotRunningError):
            RunLock(tmp_path / "same.db").acquire()
    finally:
        lock.release()


# -- the API fails ------------------------------------------------------------------------------

WORKSPACE_LISTINGS = ("permissions", "projects", "repositories",
                      "workspace_repository_permissions", "groups_v1")  # fmt: skip


def listing_prefix(endpoint: str, slug: str) -> str:
    if endpoint == "repositories":
        return f"/2.0/repositories/{slug}"
    if endpoint == "groups_v1":
        return f"/1.0/groups/{slug}"
    return f"/2.0/workspaces/{slug}/"


def test_a_5xx_storm_that_passes_is_retried_and_loses_nothing(
    cli: Cli, simulator: ThreadedSimulator, org: Org, slept: list[float]
) -> None:
    """503 to every first request of the run for a while (each of them fails 4 times of 5),
    then Bitbucket recovers: every request is retried, none fails, the night is whole."""
    _, churn = churned(cli, org, 23)
    storm = [simulator.faults.add("status", status=503, endpoint="user_workspaces",
                                  times=ATTEMPTS - 1)]  # fmt: skip
    for slug in sorted(w.slug for w in org.workspaces.values()):
        for endpoint in WORKSPACE_LISTINGS:
            storm.append(simulator.faults.add(
                "status", status=503, endpoint=endpoint, page=1, times=ATTEMPTS - 1,
                path_prefix=listing_prefix(endpoint, slug)))  # fmt: skip
    assert cli("snapshot") == EXIT_OK, cli.stderr
    failures = sum(rule.fired for rule in storm)
    assert failures == (ATTEMPTS - 1) * (1 + 5 * len(org.workspaces))
    assert cli.sql("SELECT retries FROM snapshots WHERE id = 2") == [(failures,)]
    assert slept == [0.0] * failures  # backoff from a base of 0 s: bounded, and no real time
    the_line(cli.stdout, "snapshot 2 complete", f"{failures} retries")
    assert reported(cli, 1, 2) == truth(org, churn)


def test_a_5xx_storm_longer_than_the_retries_fails_its_scope_only(
    cli: Cli, simulator: ThreadedSimulator, org: Org, slept: list[float]
) -> None:
    before, churn = churned(cli, org, 24)
    slug = first_slug(org)
    label = f"/1.0/groups/{slug}"
    rule = simulator.faults.add("status", status=503, path_prefix=label, times=None)
    assert cli("snapshot") == EXIT_GAPS, cli.stderr
    assert rule.fired == ATTEMPTS  # retries are bounded: five attempts, then the scope fails
    the_line(cli.stdout, f"failed: {label}: GET ", f"gave up after {ATTEMPTS} attempts; "
             "last: HTTP 503")  # fmt: skip
    assert access_until(cli, 1) == before["by_ids"]
    assert_gap_kept_knowledge(cli, label)
    next_good_night_tells_the_truth(cli, simulator, org, churn)


def test_a_5xx_storm_on_the_workspace_list_fails_the_run(
    cli: Cli, simulator: ThreadedSimulator, org: Org, slept: list[float]
) -> None:
    before, churn = churned(cli, org, 25)
    rule = simulator.faults.add("status", status=503, endpoint="user_workspaces", times=None)
    assert cli("snapshot") == EXIT_FAILED
    assert rule.fired == ATTEMPTS
    line = the_line(cli.stderr, "bbaccess: the run failed: GET ", "/2.0/user/workspaces")
    assert line.endswith(f"gave up after {ATTEMPTS} attempts; last: HTTP 503; nothing of this "
                         "run was merged; run again later")  # fmt: skip
    last = assert_kept(cli, before, "failed")
    assert "gave up after 5 attempts; last: HTTP 503" in last[-1]
    next_good_night_tells_the_truth(cli, simulator, org, churn)


def test_a_429_storm_pauses_the_run_and_never_fails_a_scope(
    cli: Cli, simulator: ThreadedSimulator, org: Org, slept: list[float]
) -> None:
    """Twelve 429s in a row to the first request, then eight more to the listings read at once:
    every request waits (doubling from 60 s, capped at 10 min), none fails, nothing is lost."""
    _, churn = churned(cli, org, 26)
    first = simulator.faults.add("status", status=429, endpoint="user_workspaces", times=12)
    more = simulator.faults.add("status", status=429, path_prefix="/2.0/workspaces/", times=8)
    assert cli("snapshot") == EXIT_OK, cli.stderr
    assert first.fired == 12 and more.fired == 8
    assert slept[:12] == [60.0, 120.0, 240.0, 480.0] + [600.0] * 8
    throttled, backoff, failed = cli.sql(
        "SELECT throttled, backoff_seconds, scopes_failed FROM snapshots WHERE id = 2")[0]
    assert (throttled, failed) == (20, 0) and backoff >= 5700
    the_line(cli.stdout, "snapshot 2 complete", "20 throttled")
    assert "rate limited (429); all requests wait 600s" in cli.stderr
    assert reported(cli, 1, 2) == truth(org, churn)


@pytest.mark.parametrize("times", [2, None], ids=["passing", "persistent"])
def test_connection_resets(
    cli: Cli, simulator: ThreadedSimulator, org: Org, slept: list[float], times: int | None
) -> None:
    before, churn = churned(cli, org, 27)
    slug = first_slug(org)
    label = f"/2.0/workspaces/{slug}/projects"
    rule = simulator.faults.add("reset", endpoint="projects", path_prefix=label, times=times)
    if times is not None:
        assert cli("snapshot") == EXIT_OK, cli.stderr
        assert rule.fired == times
        assert reported(cli, 1, 2) == truth(org, churn)
        return
    assert cli("snapshot") == EXIT_GAPS, cli.stderr
    the_line(cli.stdout, f"failed: {label}: GET ", f"gave up after {ATTEMPTS} attempts; last: "
             "the connection was reset")  # fmt: skip
    assert access_until(cli, 1) == before["by_ids"]
    assert cli.sql("SELECT o.outcome FROM observations o JOIN scopes s ON s.id = o.scope_id "
                   "WHERE o.snapshot_id = 2 AND s.label = ?", label) == [("failed",)]
    next_good_night_tells_the_truth(cli, simulator, org, churn)


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("malformed", "page 1: the body is not valid JSON ("),
        ("truncated", f"gave up after {ATTEMPTS} attempts; last: the answer was cut short ("),
        ("html_page", "page 1: the body is an HTML page, not valid JSON (a proxy or login "
                      "page?), titled 'Sign in - Corporate SSO'"),
    ],
)
def test_a_body_that_is_not_a_json_page_fails_its_scope_only(
    cli: Cli, simulator: ThreadedSimulator, org: Org, slept: list[float], kind: str, said: str
) -> None:
    before, churn = churned(cli, org, 28)
    slug = first_slug(org)
    label = f"/2.0/workspaces/{slug}/permissions/repositories"
    simulator.faults.add(kind, endpoint="workspace_repository_permissions",
                         path_prefix=label, times=None)  # fmt: skip
    assert cli("snapshot") == EXIT_GAPS, cli.stderr
    the_line(cli.stdout, f"failed: {label}: GET ", said)
    assert access_until(cli, 1) == before["by_ids"]
    assert_gap_kept_knowledge(cli, label)
    next_good_night_tells_the_truth(cli, simulator, org, churn)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Another origin: records the headers of every request that reaches it."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        body = b'{"values": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def foreign_host() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A second local server on another port: another origin. Its URL, and the headers of every
    request it received."""
    seen: list[dict[str, str]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize(
    ("kind", "what"), [("foreign_next", "a 'next' link"), ("foreign_redirect", "a redirect")]
)
def test_a_link_or_redirect_to_another_host_never_carries_the_credential(
    cli: Cli, simulator: ThreadedSimulator, org: Org, slept: list[float],
    foreign_host: tuple[str, list[dict[str, str]]], kind: str, what: str,
) -> None:  # fmt: skip
    url, seen = foreign_host
    asyncio.run(_get_once(url))  # the other host answers, and records what reaches it
    assert len(seen) == 1 and "Authorization" not in seen[0]
    seen.clear()
    before, churn = churned(cli, org, 29)
    slug = first_slug(org)
    label = f"/2.0/workspaces/{slug}/permissions"
    simulator.faults.foreign_origin = URL(url)
    simulator.faults.add(kind, endpoint="permissions", path_prefix=label, times=None)
    assert cli("snapshot") == EXIT_GAPS, cli.stderr
    the_line(cli.stdout, f"failed: {label}: refused to follow {what} to {url}/",
             f"it leaves the API origin {simulator.base_url}")  # fmt: skip
    assert seen == []  # not a request reached the other host, so neither did the credential
    assert not [h for h in seen if "Authorization" in h]
    assert access_until(cli, 1) == before["by_ids"]
    assert_gap_kept_knowledge(cli, label)
    next_good_night_tells_the_truth(cli, simulator, org, churn)


async def _get_once(url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(url + "/probe") as response:
        assert response.status == 200


def test_a_401_in_the_middle_of_a_run_stops_it(
    cli: Cli, simulator: ThreadedSimulator, org: Org
) -> None:
    """The token expires after the workspace-wide listings: the run stops at once, merges
    nothing, and names how the credential was sent, never the secret."""
    before, churn = churned(cli, org, 30)
    rule = simulator.faults.add("status", status=401, endpoint="repository_user_grants",
                                times=None)  # fmt: skip
    assert cli("snapshot") == EXIT_AUTH
    line = the_line(cli.stderr, "bbaccess: authentication failed: the API refused the credential")
    assert "(HTTP Basic as admin@example.com (BITBUCKET_EMAIL + BITBUCKET_API_TOKEN))" in line
    assert line.endswith("check that the token is valid and not expired; nothing of this run "
                         "was merged")  # fmt: skip
    assert 1 <= rule.fired <= 2 * 8  # stopped at once: only the requests already in flight
    last = assert_kept(cli, before, "failed")
    assert "HTTP Basic as admin@example.com" in last[-1]
    assert ADMIN_TOKEN not in cli.stdout + cli.stderr
    assert ADMIN_TOKEN.encode() not in cli.db.read_bytes()
    next_good_night_tells_the_truth(cli, simulator, org, churn)


# -- the database fails -------------------------------------------------------------------------


def _immutable(paths: list[Path], on: bool) -> bool:
    """chattr +i: not even root may write (tests run as root); False where it is unsupported."""
    flag = "+i" if on else "-i"
    return all(
        subprocess.run(["chattr", flag, str(p)], capture_output=True, check=False).returncode == 0
        for p in paths
    )


@contextlib.contextmanager
def without_write_access(target: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``target`` (a file or a folder) as a user without write permission has it: immutable
    where ``chattr`` works, else ``os.access`` says so."""
    with monkeypatch.context() as patched:
        if not _immutable([target], True):
            real_access = os.access

            def no_writing(path: object, mode: int, **kwargs: object) -> bool:
                if mode & os.W_OK and Path(str(path)).resolve() == target.resolve():
                    return False  # as for a user without write permission
                return real_access(path, mode)  # type: ignore[arg-type]

            patched.setattr(os, "access", no_writing)
        try:
            yield
        finally:
            _immutable([target], False)


@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_a_snapshot_into_a_read_only_database_is_refused_before_it_starts(
    cli: Cli, simulator: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch, read_only: str
) -> None:
    assert cli("snapshot", "-q") == EXIT_OK
    before, content = answers(cli), cli.db.read_bytes()
    target = cli.db if read_only == "file" else cli.db.parent
    requests = simulator.request_count
    with without_write_access(target, monkeypatch):
        assert cli("snapshot") == EXIT_USAGE
    line = the_line(cli.stderr, f"bbaccess: {cli.db} is read-only")
    assert line.endswith("give it write access to both, or choose another --db")
    assert simulator.request_count == requests  # refused before a single request
    assert cli.db.read_bytes() == content and answers(cli) == before


@pytest.mark.parametrize("mode", ["IMMEDIATE", "EXCLUSIVE"])
@pytest.mark.parametrize("released", [True, False], ids=["then-released", "still-held"])
def test_a_database_locked_by_another_program_at_the_merge_fails_the_run(
    cli: Cli, simulator: ThreadedSimulator, org: Org, monkeypatch: pytest.MonkeyPatch,
    mode: str, released: bool,
) -> None:  # fmt: skip
    """Another program holds SQLite's write lock as the merge starts (and waits out the busy
    timeout, here 50 ms): the run fails, exit 5, one line; its row says why, or, if the lock is
    still held when bbaccess records that, stays running and the next run marks it aborted."""
    before, churn = churned(cli, org, 31)
    other = sqlite3.connect(cli.db, isolation_level=None)
    complete = SnapshotWriter.complete

    async def complete_while_locked(self: SnapshotWriter, *args: Any, **kwargs: Any) -> Any:
        other.execute(f"BEGIN {mode}")
        try:
            return await complete(self, *args, **kwargs)
        finally:
            if released:
                other.execute("ROLLBACK")

    with monkeypatch.context() as patched:
        patched.setattr(database, "BUSY_TIMEOUT_MS", 50)
        patched.setattr(SnapshotWriter, "complete", complete_while_locked)
        try:
            assert cli("snapshot") == EXIT_FAILED
        finally:
            if other.in_transaction:
                other.execute("ROLLBACK")
            other.close()
    expected = (f"the database {cli.db} is locked by another program; nothing of this run was "
                "merged; run again when it is free")  # fmt: skip
    assert the_line(cli.stderr, "bbaccess: the database") == f"bbaccess: {expected}"
    if released:
        assert assert_kept(cli, before, "failed")[-1] == expected
    else:
        assert_kept(cli, before, "running")
        the_line(cli.stderr, "snapshot 2 could not be marked failed", "the next run marks it "
                 "aborted")  # fmt: skip
    next_good_night_tells_the_truth(cli, simulator, org, churn)


def test_the_disk_filling_up_during_the_merge_fails_the_run(
    cli: Cli, simulator: ThreadedSimulator, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file may not grow by a page once the merge starts (PRAGMA max_page_count on the
    merge's connection): SQLite answers SQLITE_FULL, as on a full disk."""
    before, churn = churned(cli, org, 32)
    # Without free pages: a night's few changes could otherwise fit in the pages the last
    # night's stage left free, and the file would not need to grow.
    with contextlib.closing(sqlite3.connect(cli.db)) as conn:
        conn.execute("VACUUM")
    merge = writer.merge_staged

    async def merge_on_a_full_disk(conn: AsyncConnection, snapshot_id: int, *rest: Any) -> None:
        await conn.execute(text("PRAGMA max_page_count = 1"))  # no more than it has now
        await merge(conn, snapshot_id, *rest)

    with monkeypatch.context() as patched:
        patched.setattr(writer, "merge_staged", merge_on_a_full_disk)
        assert cli("snapshot") == EXIT_FAILED
    expected = (f"the disk is full: the database {cli.db} could not grow (database or disk is "
                "full); nothing of this run was merged; free some space and run again")
    assert the_line(cli.stderr, "bbaccess: the disk is full") == f"bbaccess: {expected}"
    assert assert_kept(cli, before, "failed")[-1] == expected
    next_good_night_tells_the_truth(cli, simulator, org, churn)


def test_a_first_merge_whose_commit_fails_leaves_nothing_and_the_log_on(
    cli: Cli, simulator: ThreadedSimulator, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first merge, written through a rollback journal, fails at its commit (the disk
    full): the run fails as any merge that fails, and the database is back on its write-ahead
    log; the next night is a first night again."""
    merge, commit = writer.merge_staged, aiosqlite.Connection.commit
    merged: list[bool] = []

    async def merge_staged(conn: AsyncConnection, snapshot_id: int, *rest: Any) -> None:
        await merge(conn, snapshot_id, *rest)
        merged.append(True)

    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    fired: list[bool] = []

    async def failing_commit(self: aiosqlite.Connection) -> None:
        if merged and not fired:  # the merge's own commit
            fired.append(True)
            raise full
        await commit(self)

    with monkeypatch.context() as patched:
        patched.setattr(writer, "merge_staged", merge_staged)
        patched.setattr(aiosqlite.Connection, "commit", failing_commit)
        assert cli("snapshot") == EXIT_FAILED
    assert fired
    the_line(cli.stderr, "bbaccess: the disk is full", "nothing of this run was merged")
    assert cli.sql("SELECT id, status FROM snapshots") == [(1, "failed")]
    assert cli.sql("SELECT count(*) FROM grants") == [(0,)]
    with contextlib.closing(sqlite3.connect(f"file:{cli.db}?mode=ro", uri=True)) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    assert cli("snapshot", "-q") == EXIT_OK, cli.stderr
    assert cli.sql("SELECT id, status FROM snapshots") == [(1, "failed"), (2, "complete")]


def test_a_damaged_database_is_refused_before_anything_is_fetched(
    cli: Cli, simulator: ThreadedSimulator, org: Org, tmp_path: Path
) -> None:
    """Bytes overwritten in the middle of the file (the root page of the grant versions): the
    snapshot checks the file first (PRAGMA quick_check) and sends no request; a reading command
    that meets the damage says the same; the backup made before brings everything back."""
    _, churn = churned(cli, org, 33)
    backup = tmp_path / "backup.db"
    assert cli("backup", str(backup)) == EXIT_OK
    with contextlib.closing(sqlite3.connect(cli.db)) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'grant_versions'") \
            .fetchone()  # fmt: skip
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    with cli.db.open("r+b") as damaged:
        damaged.seek((root - 1) * page_size)
        damaged.write(b"\xa5" * page_size)
    content, requests = cli.db.read_bytes(), simulator.request_count
    # What SQLite says of the damage depends on where it lies: the page it could not read, or
    # "database disk image is malformed". The line around it is always the same.
    damaged = re.compile(
        rf"bbaccess: the database file {re.escape(str(cli.db))} is damaged \((?:database disk "
        r"image is malformed|[^\n]*[Pp]age \d+[^\n]*)\); restore it from a backup \(bbaccess "
        r"backup makes one\)"
    )
    assert cli("snapshot") == EXIT_USAGE
    assert damaged.fullmatch(the_line(cli.stderr, "bbaccess: the database file"))
    assert simulator.request_count == requests and cli.db.read_bytes() == content
    assert cli("diff") == EXIT_USAGE
    assert damaged.fullmatch(the_line(cli.stderr, "bbaccess: the database file"))

    cli.db.write_bytes(backup.read_bytes())  # what the operator does
    next_good_night_tells_the_truth(cli, simulator, org, churn)


def test_a_snapshot_into_a_newer_database_sends_no_request(
    cli: Cli, simulator: ThreadedSimulator
) -> None:
    assert cli("snapshot", "-q") == EXIT_OK
    with contextlib.closing(sqlite3.connect(cli.db)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    content, requests = cli.db.read_bytes(), simulator.request_count
    assert cli("snapshot") == EXIT_USAGE
    the_line(cli.stderr, "bbaccess: ", "was written by a newer bbaccess (schema revision "
             "'9999_future'); upgrade bbaccess to use it")  # fmt: skip
    assert simulator.request_count == requests and cli.db.read_bytes() == content


# -- the simulator means what it says -----------------------------------------------------------


@pytest.mark.parametrize(("rate", "low", "high"), [(1.0, 1.0, 1.0), (0.3, 0.2, 0.4)])
async def test_the_simulators_fault_rate_is_the_share_of_requests_answered_5xx(
    org: Org, rate: float, low: float, high: float
) -> None:
    """``bbaccess simulate --fault-rate 1.0`` answers every request with a 5xx."""
    statuses: list[int] = []
    plan = fault_plan(seed=3, latency=0.0, fault_rate=rate)
    headers = {"Authorization": BasicAuth(ADMIN_EMAIL, ADMIN_TOKEN).header()}
    async with run_simulator(org, faults=plan) as sim, \
            aiohttp.ClientSession(headers=headers) as session:  # fmt: skip
        for n in range(300):
            async with session.get(f"{sim.base_url}/2.0/user/workspaces?request={n}") as response:
                statuses.append(response.status)
    faulty = [s for s in statuses if s != 200]
    assert low <= len(faulty) / len(statuses) <= high
    assert set(faulty) == set(FAULT_STATUSES)
