"""Rules that hold for every command: help, exit codes, the lock, schema versions, a killed run."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from asyncio import base_events
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from exporter import cli_output, export
from exporter.cli import build_parser
from exporter.cli_output import EXIT_CHANGED, EXIT_GAPS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from exporter.simulator import ADMIN_EMAIL, ADMIN_TOKEN, Org, apply_churn
from exporter.store import database
from exporter.store import writer as writer_module
from exporter.store.database import RunLock, stage_path
from exporter.store.writer import SnapshotSummary, SnapshotWriter
from tests.integration.conftest import Cli, ThreadedSimulator, churn_rng

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("snapshot", "snapshots", "diff", "demo", "simulate")


def test_every_command_has_help_and_a_place_in_the_readme() -> None:
    parser = build_parser()
    readme = (ROOT / "README.md").read_text()
    for command in COMMANDS:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([command, "--help"])
        assert done.value.code == 0
        assert f"bbaccess {command}" in readme, command


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0
    assert "snapshot" in result.stdout and "Exit codes" in result.stdout


def test_a_second_run_exits_at_once_while_one_holds_the_database(cli: Cli) -> None:
    lock = RunLock(cli.db)
    lock.acquire()
    try:
        assert cli("snapshot") == EXIT_USAGE
        assert "another snapshot is running" in cli.stderr
    finally:
        lock.release()
    assert cli("snapshot") == EXIT_OK


def test_a_database_from_a_newer_version_is_refused(cli: Cli) -> None:
    assert cli("snapshot") == EXIT_OK
    with sqlite3.connect(cli.db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    assert cli("snapshots") == EXIT_USAGE
    assert "newer bbaccess" in cli.stderr and "9999_future" in cli.stderr


@pytest.mark.parametrize("where", ["folder", "missing-folder", "not-sqlite"])
def test_an_unusable_database_path_is_a_clear_usage_error(
    cli: Cli, tmp_path: Path, where: str
) -> None:
    path = {
        "folder": tmp_path,
        "missing-folder": tmp_path / "nope" / "x.db",
        "not-sqlite": tmp_path / "notes.txt",
    }[where]
    if where == "not-sqlite":
        path.write_text("these are my notes, not a database\n" * 100)
    for command in ("snapshot", "snapshots", "diff"):
        code = Cli(path)(command)
        assert code == EXIT_USAGE, (command, where)
    if where == "not-sqlite":
        assert path.read_text().startswith("these are my notes")


def test_read_commands_need_an_existing_database(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "missing.db")
    assert cli("diff") == EXIT_USAGE
    assert "run 'bbaccess snapshot" in cli.stderr
    assert not (tmp_path / "missing.db").exists()


def test_diff_resolves_ids_dates_and_timestamps(cli: Cli) -> None:
    assert cli("snapshot") == EXIT_OK
    assert cli("snapshot") == EXIT_OK
    today = cli.sql("SELECT substr(started_at, 1, 10) FROM snapshots WHERE id = 2")[0][0]
    assert cli.diff_json("--to", today)["to_snapshot_id"] == 2
    assert cli.diff_json("--from", "1", "--to", "2")["from_snapshot_id"] == 1
    first_started = cli.sql("SELECT started_at FROM snapshots WHERE id = 1")[0][0]
    assert cli.diff_json("--to", first_started)["to_snapshot_id"] == 1  # at or before it
    assert cli.diff_json("--to", first_started)["from_snapshot_id"] == 0
    assert cli("diff", "--from", "2000-01-01") == EXIT_USAGE
    assert "no complete snapshot at or before 2000-01-01" in cli.stderr
    assert cli("diff", "--from", "yesterday") == EXIT_USAGE
    assert "neither a snapshot id" in cli.stderr
    assert cli("diff", "--from", "7") == EXIT_USAGE
    # A --from after the last snapshot, or both ends on one snapshot: nothing to compare.
    assert cli("diff", "--from", "2099-01-01") == EXIT_USAGE
    assert "no complete snapshot follows --from 2099-01-01" in cli.stderr
    assert "not attempted" not in cli.stdout + cli.stderr
    assert cli("diff", "--from", "2", "--to", today) == EXIT_USAGE
    assert "both resolve to snapshot 2" in cli.stderr
    assert cli("diff", "--format", "csv") == EXIT_OK
    assert cli.stdout.startswith("snapshot_id,snapshot_at,from_snapshot_id,workspace")


def test_snapshots_lists_runs_with_outcomes(cli: Cli, simulator: ThreadedSimulator) -> None:
    assert cli("snapshot") == EXIT_OK
    simulator.faults.add("missing_values", endpoint="repositories", times=None)
    assert cli("snapshot") == EXIT_GAPS
    assert cli("snapshots", "--format", "json") == EXIT_OK
    import json

    runs = json.loads(cli.stdout)
    assert [r["status"] for r in runs] == ["complete", "complete"]
    assert runs[1]["failed"] == len(simulator.org.workspaces) and runs[0]["failed"] == 0
    assert runs[0]["requests"] > 0


#: ``python -m exporter`` that Ctrl-C interrupts even when the tests were started in the
#: background, where the shell has the children ignore SIGINT (and Python leaves it ignored).
RUN_WITH_CTRL_C = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('exporter', run_name='__main__', alter_sys=True)"
)


def _slow_run_that_staged(cli: Cli, simulator: ThreadedSimulator) -> subprocess.Popen[bytes]:
    """A snapshot in another process, once it has staged something and is surely still going:
    the effective-permission listings answer after 3 s."""
    simulator.faults.add("latency", path_prefix="/2.0/workspaces/", latency=3.0, times=None)
    env = {
        **os.environ,
        "BITBUCKET_API_URL": simulator.base_url,
        "BITBUCKET_EMAIL": ADMIN_EMAIL,
        "BITBUCKET_API_TOKEN": ADMIN_TOKEN,
    }
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_WITH_CTRL_C, "snapshot", "--db", str(cli.db)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Wait (at most a minute) until it has staged something: a finished scope's observation,
    # which is written when the scope finishes. A second night stages only the grants that
    # changed, and those may be written only as the run ends.
    for _ in range(600):
        if cli.staged("stage_observations"):
            return process
        time.sleep(0.1)
    process.kill()
    process.wait(30)
    raise AssertionError("the run never staged anything")


def test_an_interrupted_run_says_so_and_merges_nothing(
    cli: Cli, simulator: ThreadedSimulator
) -> None:
    assert cli("snapshot") == EXIT_OK
    before = cli.sql("SELECT * FROM access_at ORDER BY 1, 2, 3, 4, 5, 6, 7")
    process = _slow_run_that_staged(cli, simulator)
    os.kill(process.pid, signal.SIGINT)
    assert process.wait(60) == EXIT_INTERRUPTED
    assert process.stderr is not None
    assert "interrupted; nothing of this run was merged" in process.stderr.read().decode()
    process.stderr.close()
    assert cli.sql("SELECT status, message FROM snapshots ORDER BY id")[1] == (
        "aborted", "interrupted (Ctrl-C or a signal) before it completed; nothing of it was merged"
    )
    assert cli.sql("SELECT * FROM access_at ORDER BY 1, 2, 3, 4, 5, 6, 7") == before


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt (and asyncio.run turns it into a cancellation), as in a
    terminal, even where the suite runs with SIGINT ignored (a background job)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted_after_the_merge(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Make the next run stop as Ctrl-C stops it (the task cancelled, or KeyboardInterrupt), at
    ``where``: while the merge commits (SIGINT itself: the task stops waiting, the commit goes
    on in its thread), just after, while the run tidies up, while asyncio closes its loop, or
    while the summary is printed."""
    if where == "committing":
        merge, commit = writer_module.merge_staged, aiosqlite.Connection.commit
        merged: list[bool] = []

        async def merge_staged(conn: Any, snapshot_id: int, *rest: Any) -> None:
            await merge(conn, snapshot_id, *rest)
            merged.append(True)

        async def interrupted_commit(self: aiosqlite.Connection) -> None:
            if merged and len(merged) == 1:
                merged.append(True)
                signal.raise_signal(signal.SIGINT)
            await commit(self)

        monkeypatch.setattr(writer_module, "merge_staged", merge_staged)
        monkeypatch.setattr(aiosqlite.Connection, "commit", interrupted_commit)
    elif where == "closing the loop":
        shutdown = base_events.BaseEventLoop.shutdown_default_executor

        async def interrupted_shutdown(self: Any, *args: Any, **kwargs: Any) -> None:
            signal.raise_signal(signal.SIGINT)
            await shutdown(self, *args, **kwargs)

        monkeypatch.setattr(
            base_events.BaseEventLoop, "shutdown_default_executor", interrupted_shutdown
        )
    elif where == "merged":
        merge = SnapshotWriter.complete

        async def complete(self: SnapshotWriter, *args: Any, **kwargs: Any) -> SnapshotSummary:
            await merge(self, *args, **kwargs)
            raise asyncio.CancelledError

        monkeypatch.setattr(SnapshotWriter, "complete", complete)
    elif where == "tidying up":
        calls = itertools.count()

        def remove_stage(path: Path) -> None:
            if next(calls):  # the run's start removes a dead run's stage; its end, its own
                raise KeyboardInterrupt
            database.remove_stage(path)

        monkeypatch.setattr(export, "remove_stage", remove_stage)
    else:

        def report_run(_result: object) -> int:
            raise KeyboardInterrupt

        monkeypatch.setattr(cli_output, "report_run", report_run)


@pytest.mark.parametrize(
    "where", ["committing", "merged", "tidying up", "closing the loop", "printing"]
)
@pytest.mark.usefixtures("ctrl_c")
def test_an_interruption_after_the_merge_says_the_snapshot_is_complete(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    assert cli("snapshot") == EXIT_OK
    with monkeypatch.context() as patched:
        _interrupted_after_the_merge(patched, where)
        assert cli("snapshot") == EXIT_INTERRUPTED
    assert cli.stderr.strip().splitlines()[-1] == (
        "bbaccess: interrupted after snapshot 2 was merged: the snapshot is complete "
        "(bbaccess snapshots lists it); only the run's summary was not printed"
    )
    assert "nothing of this run was merged" not in cli.stderr
    assert cli.sql("SELECT id, status FROM snapshots ORDER BY id") == [
        (1, "complete"), (2, "complete")
    ]
    assert cli("snapshot") == EXIT_OK  # and the next night goes on as usual
    assert not stage_path(cli.db).exists()


@pytest.mark.usefixtures("ctrl_c")
def test_a_ctrl_c_as_the_first_merge_returns_to_the_write_ahead_log_still_returns(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first merge is written without the write-ahead log; a Ctrl-C just after its commit,
    as the log is put back, says the snapshot is complete and leaves the log on, so that readers
    read while the next nights merge."""
    switch_back = writer_module._return_to_write_ahead_log

    async def interrupted(conn: Any) -> None:
        signal.raise_signal(signal.SIGINT)
        await switch_back(conn)

    with monkeypatch.context() as patched:
        patched.setattr(writer_module, "_return_to_write_ahead_log", interrupted)
        assert cli("snapshot") == EXIT_INTERRUPTED
    assert cli.stderr.strip().splitlines()[-1] == (
        "bbaccess: interrupted after snapshot 1 was merged: the snapshot is complete "
        "(bbaccess snapshots lists it); only the run's summary was not printed"
    )
    assert cli.sql("SELECT id, status FROM snapshots") == [(1, "complete")]
    with contextlib.closing(sqlite3.connect(f"file:{cli.db}?mode=ro", uri=True)) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchall() == [("wal",)]


@pytest.mark.usefixtures("ctrl_c")
def test_an_interruption_during_the_merge_merges_nothing_and_says_so(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("snapshot") == EXIT_OK
    before = cli.sql("SELECT * FROM access_at ORDER BY 1, 2, 3, 4, 5, 6, 7")
    merge = writer_module.merge_staged

    async def interrupted_merge(conn: Any, snapshot_id: int, *rest: Any) -> None:
        signal.raise_signal(signal.SIGINT)
        await merge(conn, snapshot_id, *rest)

    with monkeypatch.context() as patched:
        patched.setattr(writer_module, "merge_staged", interrupted_merge)
        assert cli("snapshot") == EXIT_INTERRUPTED
    assert cli.stderr.strip().splitlines()[-1] == (
        "bbaccess: interrupted; nothing of this run was merged"
    )
    assert cli.sql("SELECT id, status FROM snapshots ORDER BY id") == [
        (1, "complete"), (2, "aborted")
    ]
    assert cli.sql("SELECT * FROM access_at ORDER BY 1, 2, 3, 4, 5, 6, 7") == before


def test_a_killed_run_leaves_the_database_as_it_was(
    cli: Cli, simulator: ThreadedSimulator, tmp_path: Path
) -> None:
    assert cli("snapshot") == EXIT_OK
    before = cli.sql("SELECT * FROM access_at ORDER BY 1, 2, 3, 4, 5, 6, 7")
    process = _slow_run_that_staged(cli, simulator)
    try:
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()
    assert cli.sql("SELECT status FROM snapshots ORDER BY id") == [("complete",), ("running",)]
    assert cli.sql("SELECT * FROM access_at ORDER BY 1, 2, 3, 4, 5, 6, 7") == before
    assert cli.staged("stage_observations") > 0  # what it left

    simulator.faults.clear()
    assert cli("snapshot") == EXIT_OK
    assert cli.sql("SELECT status FROM snapshots ORDER BY id") == [
        ("complete",),
        ("aborted",),
        ("complete",),
    ]
    assert not stage_path(cli.db).exists()  # the killed run's stage was removed, and this one's
    assert cli.diff_json()["changes"] == []


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(401, "forbidden"), (403, "forbidden"), (404, "forbidden"), (410, "failed")],
)
def test_groups_refused_is_a_gap_and_the_run_goes_on(
    cli: Cli, simulator: ThreadedSimulator, status: int, outcome: str
) -> None:
    """/1.0/groups is admin-only and may go away: any refusal is recorded on that scope alone."""
    simulator.faults.add("status", endpoint="groups_v1", status=status, times=None)
    assert cli("snapshot") == EXIT_GAPS, cli.stderr
    rows = cli.sql("SELECT s.label, o.outcome, o.detail FROM observations o "
                   "JOIN scopes s ON s.id = o.scope_id WHERE o.outcome <> 'ok'")
    assert {label.split("/")[1:3] == ["1.0", "groups"] for label, _, _ in rows} == {True}
    assert {o for _, o, _ in rows} == {outcome} and len(rows) == len(simulator.org.workspaces)
    assert all(str(status) in detail for _, _, detail in rows)
    # Everything else was read, explicit grants included.
    assert cli.sql("SELECT count(*) FROM scopes s JOIN observations o ON o.scope_id = s.id "
                   "WHERE s.kind = 'repository_group_grants' AND o.outcome = 'ok'")[0][0] > 0


def test_every_command_but_snapshot_needs_no_posix_module() -> None:
    """On Windows there is no fcntl: --help, diff and the rest must still start."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "from exporter.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    sys.exit(e.code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "who-can-access" in done.stdout


def test_a_reader_that_goes_away_is_no_error(cli: Cli) -> None:
    """bbaccess diff | head: the pipe closes early; no 'internal error', exit 0."""
    assert cli("snapshot") == EXIT_OK
    command = [sys.executable, "-m", "exporter", "diff", "--db", str(cli.db), "--baseline"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before a line was written
    error = process.stderr.read().decode()
    assert process.wait(timeout=60) == EXIT_OK, error
    assert "internal error" not in error and "Traceback" not in error
    process.stderr.close()


def test_reading_commands_take_no_write_lock(cli: Cli) -> None:
    """Another program mid-write (holding SQLite's write lock) does not stop a reader."""
    assert cli("snapshot") == EXIT_OK
    writer = sqlite3.connect(cli.db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE snapshots SET message = 'mid-write' WHERE id = 1")
        assert cli("diff") == EXIT_OK, cli.stderr
        assert cli("snapshots", "--format", "json") == EXIT_OK
        assert '"message": null' in cli.stdout  # the uncommitted write is not seen
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def _make_immutable(paths: list[Path], on: bool) -> bool:
    """chattr +i: not even root may write (tests run as root); False where it is unsupported."""
    flag = "+i" if on else "-i"
    return all(
        subprocess.run(["chattr", flag, str(p)], capture_output=True, check=False).returncode == 0
        for p in paths
    )


def test_a_read_only_copy_can_be_read(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An auditor's copy in a folder nobody may write to: every reading command works and
    nothing beside the file is created or changed."""
    assert cli("snapshot") == EXIT_OK
    copy = tmp_path / "audit" / "access.db"
    copy.parent.mkdir()
    with sqlite3.connect(cli.db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    before = copy.read_bytes()
    if not _make_immutable([copy, copy.parent], True):
        real_access = os.access

        def no_writing(path: object, mode: int, **kwargs: object) -> bool:
            if mode & os.W_OK and str(path).startswith(str(copy.parent)):
                return False  # as for a user without write permission
            return real_access(path, mode)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "access", no_writing)
    try:
        reader = Cli(copy)
        assert reader("diff") == EXIT_OK, reader.stderr
        assert reader("snapshots") == EXIT_OK and "complete" in reader.stdout
        repository = cli.sql("SELECT label FROM labels WHERE object_type = 'repository'")[0][0]
        assert reader("who-can-access", repository) == EXIT_OK, reader.stderr
        assert reader("coverage") == EXIT_OK
        assert sorted(p.name for p in copy.parent.iterdir()) == ["access.db"]
        assert copy.read_bytes() == before
    finally:
        _make_immutable([copy.parent, copy], False)


def test_another_programs_sqlite_file_is_refused_untouched(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
        conn.commit()
    before = other.read_bytes()
    for command in ("snapshot", "diff", "snapshots"):
        checked = Cli(other)
        assert checked(command) == EXIT_USAGE, command
        assert "an SQLite database of another program" in checked.stderr
    assert other.read_bytes() == before  # not even switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite"]


def test_an_sqlite_too_old_for_the_schema_is_refused_with_what_to_do(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grant versions' computed columns need SQLite 3.31: an older library is told so before
    any file is made or read."""
    assert cli("snapshot") == EXIT_OK
    before = cli.db.read_bytes()
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 26, 0))
    for command in ("snapshot", "diff", "snapshots"):
        assert cli(command) == EXIT_USAGE, command
        assert "bbaccess needs SQLite 3.31.0 or later, and this Python uses SQLite 3.26.0" in (
            cli.stderr)
    fresh = Cli(tmp_path / "new.db")
    assert fresh("snapshot") == EXIT_USAGE and "SQLite 3.31.0" in fresh.stderr
    assert not (tmp_path / "new.db").exists()
    assert cli.db.read_bytes() == before


def test_diff_filters_and_exit_code_for_alerts(cli: Cli, org: Org) -> None:
    assert cli("snapshot") == EXIT_OK
    assert cli("diff", "--exit-code") == EXIT_OK  # a first snapshot: baseline only
    apply_churn(org, rng=churn_rng(5), rate=0.05)
    assert cli("snapshot") == EXIT_OK
    everything = cli.diff_json()["changes"]
    assert cli("diff", "--exit-code") == EXIT_CHANGED

    def kept(*args: str) -> list[dict[str, object]]:
        changes: list[dict[str, object]] = cli.diff_json(*args)["changes"]
        return changes

    granted = kept("--change", "granted", "--change", "raised")
    assert granted and granted == [r for r in everything if r["change"] in ("granted", "raised")]
    slug = str(everything[0]["workspace"])
    assert kept("--workspace", slug) == [r for r in everything if r["workspace"] == slug]
    row = next(r for r in everything if r["object_type"] == "repository" and r["subject_uuid"])
    repository, user = str(row["object_name"]), str(row["subject_name"])
    both = kept("--repository", repository, "--user", user, "--source", str(row["source"]))
    assert row in both and all(r["object_name"] == repository and r["subject_name"] == user
                               for r in both)  # fmt: skip
    # Filters that leave nothing: exit 0 even with --exit-code.
    assert cli("diff", "--exit-code", "--change", "granted", "--workspace", "nowhere") == EXIT_OK
    assert cli("diff", "--change", "promoted") == EXIT_USAGE
    assert "not a kind of change" in cli.stderr


def test_a_backup_taken_while_a_snapshot_runs_is_consistent(
    cli: Cli, simulator: ThreadedSimulator, tmp_path: Path
) -> None:
    assert cli("snapshot") == EXIT_OK
    complete = cli.sql("SELECT * FROM access_at ORDER BY 1, 2, 3, 4, 5, 6, 7")
    process = _slow_run_that_staged(cli, simulator)
    try:
        target = tmp_path / "copy.db"
        assert cli("backup", str(target)) == EXIT_OK, cli.stderr
        assert "checked" in cli.stdout
    finally:
        process.kill()
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()
    copy = Cli(target)
    assert copy.sql("SELECT * FROM access_at ORDER BY 1, 2, 3, 4, 5, 6, 7") == complete
    assert copy("diff") == EXIT_OK and copy("snapshots") == EXIT_OK
    assert cli("backup", str(target)) == EXIT_USAGE and "exists" in cli.stderr


def test_log_lines_for_collectors_and_quiet_for_cron(cli: Cli) -> None:
    assert cli("snapshot", "--log-format", "json") == EXIT_OK
    events = [json.loads(line) for line in cli.stderr.splitlines()]
    assert events and {"time", "level", "logger", "message"} == set(events[0])
    assert any(e["message"].startswith("plan: ") for e in events)
    assert cli("snapshot", "-q") == EXIT_OK
    assert cli.stderr == "" and cli.stdout.startswith("snapshot 2 complete")


def test_prune_keeps_the_answers_of_what_it_keeps(cli: Cli, org: Org) -> None:
    for day in range(3):
        assert cli("snapshot") == EXIT_OK
        apply_churn(org, rng=churn_rng(10 + day), rate=0.05)
    assert cli("snapshot") == EXIT_OK
    knowledge = cli.sql("SELECT * FROM access_at WHERE snapshot_id = 4 ORDER BY 1, 3, 5, 7, 8")
    first_diff = cli.diff_json("--from", "0", "--to", "4", "--baseline")
    assert cli("prune") == EXIT_USAGE and "say what to keep" in cli.stderr

    before = cli.db.read_bytes()
    assert cli("prune", "--keep-daily", "1", "--dry-run") == EXIT_OK, cli.stderr
    assert "would remove 1, 2, 3" in cli.stdout and cli.db.read_bytes() == before

    assert cli("prune", "--keep-daily", "1") == EXIT_OK, cli.stderr
    assert "removed 1, 2, 3" in cli.stdout and "bytes before" in cli.stdout
    assert cli.sql("SELECT id FROM snapshots") == [(4,)]
    assert cli.sql("SELECT * FROM access_at WHERE snapshot_id = 4 ORDER BY 1, 3, 5, 7, 8") \
        == knowledge
    after = cli.diff_json("--from", "0", "--to", "4", "--baseline")
    assert after["baseline_count"] == first_diff["baseline_count"]
    assert after["changes"] == first_diff["changes"] == []


def test_a_reader_who_may_not_write_still_sees_what_the_log_holds(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin reading the service's database: committed pages still in the -wal count."""
    assert cli("snapshot") == EXIT_OK
    writer = sqlite3.connect(cli.db, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("UPDATE snapshots SET message = 'in the log' WHERE id = 1")
        assert Path(f"{cli.db}-wal").stat().st_size > 0
        monkeypatch.setattr(database, "_writable", lambda path: False)
        assert cli("snapshots", "--format", "json") == EXIT_OK, cli.stderr
        assert '"message": "in the log"' in cli.stdout
    finally:
        writer.close()


def test_change_filters_leave_the_baseline_count(cli: Cli, org: Org) -> None:
    assert cli("snapshot") == EXIT_OK
    everything = cli.diff_json("--from", "0")["baseline_count"]
    assert everything > 0
    assert cli.diff_json("--from", "0", "--change", "granted")["baseline_count"] == everything
    slug = sorted(w.slug for w in org.workspaces.values())[0]
    assert 0 < cli.diff_json("--from", "0", "--workspace", slug)["baseline_count"] < everything
