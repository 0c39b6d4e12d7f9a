"""The ``bbaccess`` command: one thin sub-command per job.

The only place that calls ``asyncio.run``, configures logging and chooses exit codes:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     complete: every scope was read
1     internal error (a defect: please report it)
2     configuration or usage error (bad flag, missing credential, unusable database)
3     authentication error: the API refused the credential
4     complete with gaps: some scopes were forbidden, failed or skipped
5     the run failed before it could complete (nothing was merged)
6     diff --exit-code: changes were found
130   interrupted (Ctrl-C); nothing of the run was merged, unless it says the snapshot was
      merged (it was complete when the interruption came)
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.cli_output import (
    EXIT_AUTH,
    EXIT_CHANGED,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
)
from exporter.errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    DatabaseError,
    ExporterError,
    InterruptedAfterMergeError,
)

log = logging.getLogger("bbaccess")

SNAPSHOT_COLUMNS = ("id", "status", "started_at", "seconds", "requests", "retries", "throttled",
                    "waited", "ok", "forbidden", "failed", "skipped", "message")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bbaccess",
        description="Record who can reach what in Bitbucket Cloud in a SQLite database, and say "
        "exactly what changed between any two snapshots.",
        epilog="Exit codes: 0 complete, 1 internal error, 2 configuration or usage error, "
        "3 authentication error, 4 complete with gaps, 5 run failed, 6 changes found (diff "
        "--exit-code), 130 interrupted. "
        "See README.md.",
    )
    parser.add_argument("--version", action="version", version=f"bbaccess {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    snap = commands.add_parser(
        "snapshot", help="take one snapshot of every workspace the credential can see",
        description="Take one snapshot: read every workspace (or those named), record what was "
        "observed, and merge it into the database in one transaction. Settings come from the "
        "flags, then the environment (BITBUCKET_EMAIL + BITBUCKET_API_TOKEN or "
        "BITBUCKET_API_TOKEN_FILE for HTTP Basic, BITBUCKET_ACCESS_TOKEN for Bearer, "
        "BITBUCKET_API_URL, BBACCESS_DB), then bbaccess.toml; 'bbaccess config' shows them.",
    )
    _run_options(snap)
    _verbosity(snap)

    config = commands.add_parser(
        "config", help="the settings a snapshot would use, and where each comes from",
        description="Print the effective configuration of 'bbaccess snapshot' with the same "
        "flags: every setting, its value (secrets hidden) and where it came from (a flag, the "
        "environment, the configuration file or the default). Reads no network, writes nothing.",
    )
    _run_options(config)

    check = commands.add_parser(
        "check", help="can each credential read what a snapshot needs? (one request per kind)",
        description="Verify each credential, and for each workspace a snapshot would read: the "
        "credential's admin flag and which scope kinds it can read (one request per kind, no "
        "more), then tonight's plan and how long it takes at --rate, from the sizes the "
        "listings report. Writes nothing. Exit 0 when everything can be read, 4 when some kind "
        "cannot, 3 when a credential is refused.",
    )
    _run_options(check)

    get = commands.add_parser(
        "get", help="a raw GET through bbaccess's client, for debugging what Bitbucket answers",
        description="GET PATH (such as /2.0/workspaces/acme/permissions) with the configured "
        "credential, pacing, same-origin rule and retries, and print the JSON answer. With "
        "--paginate, follow every page and print all values as one JSON array.",
    )
    get.add_argument("path", metavar="PATH")
    get.add_argument("--paginate", action="store_true", help="read every page; print the values")
    get.add_argument("--config", type=Path, metavar="PATH", help="the configuration file")

    runs = commands.add_parser("snapshots", help="list the runs with their status and counts",
                               description="List every snapshot: status, start, duration, "
                               "requests, retries and scopes by outcome.")
    _db_argument(runs)
    _format_argument(runs)

    diff = commands.add_parser(
        "diff", help="what changed between two snapshots",
        description="What changed between two snapshots. X and Y are snapshot ids, dates "
        "(2026-11-20: the last complete snapshot started on or before that day, UTC) or "
        "timestamps (2026-11-20T06:00:00Z). Defaults: the last two complete snapshots. Scopes "
        "not observed in between are reported as unverified, never as changes.",
    )
    _db_argument(diff)
    diff.add_argument("--from", dest="from_ref", metavar="X", help="the earlier snapshot")
    diff.add_argument("--to", dest="to_ref", metavar="Y", help="the later snapshot")
    _format_argument(diff)
    diff.add_argument("--baseline", action="store_true",
                      help="also list baseline facts (first observed, so not changes)")
    diff.add_argument("--sql", action="store_true",
                      help="print the SQL that computes the diff (parameters :a and :b) and exit")
    diff.add_argument("--exit-code", action="store_true",
                      help=f"exit {EXIT_CHANGED} when a change is listed (after the filters), 0 "
                      "when none: for alerts from cron")
    diff.add_argument("--change", action="append", default=[], metavar="KIND",
                      help="only this kind of change (repeatable): granted, raised, revoked, ...")
    diff.add_argument("--workspace", action="append", default=[], metavar="SLUG",
                      help="only changes in this workspace (repeatable)")
    diff.add_argument("--user", action="append", default=[], metavar="USER",
                      help="only changes of this user: display name or uuid (repeatable)")
    diff.add_argument("--repository", action="append", default=[], metavar="WORKSPACE/REPO",
                      help="only changes on this repository (repeatable)")
    diff.add_argument("--source", action="append", default=[], metavar="SOURCE",
                      help="only changes from this source: effective, workspace, direct, group, "
                      "project, 'project group', membership (repeatable)")

    who = commands.add_parser(
        "who-can-access", help="who can reach a repository, and through what",
        description="Every user with access to WORKSPACE/REPO at a snapshot, the effective "
        "level, and each recorded source that explains it: a direct grant, a group, the "
        "project (directly or through a group), or the workspace owner role; each with the "
        "snapshot it was observed in. Flags access that no recorded source explains, and a "
        "grant above the effective level.",
    )
    _db_argument(who)
    who.add_argument("repository", metavar="WORKSPACE/REPO")
    _at_argument(who)
    _format_argument(who)
    who.add_argument("--sql", action="store_true", help="print the SQL it runs (parameters :s, "
                     "the snapshot, and :repository, a uuid) and exit")

    person = commands.add_parser(
        "access", help="everything one person can reach, and through what",
        description="Every repository USER can reach at a snapshot, by the same rules as "
        "who-can-access. USER is a uuid, account id, nickname or display name; a name that fits "
        "several users, or only part of one, is an error that lists whom it could mean.",
    )
    _db_argument(person)
    person.add_argument("user", metavar="USER")
    _at_argument(person)
    _format_argument(person)

    copy = commands.add_parser(
        "backup", help="a consistent copy of the database, safe while a snapshot runs",
        description="Copy the database to TARGET with SQLite's online backup: the copy is one "
        "consistent moment of the database, even while a snapshot writes to it. TARGET must "
        "not exist.",
    )
    _db_argument(copy)
    copy.add_argument("target", type=Path, metavar="TARGET")

    trim = commands.add_parser(
        "prune", help="remove old snapshots, keeping every kept snapshot's answers exactly",
        description="Remove snapshots but the newest, the last of each of the newest N days, "
        "ISO weeks and months (UTC, by start); failed and aborted runs always go. Knowledge at "
        "every kept snapshot and every diff between kept ones stay exactly what they were. Then "
        "the space is reclaimed (VACUUM). Say at least one --keep-*.",
    )
    _db_argument(trim)
    trim.add_argument("--keep-daily", type=int, metavar="N", help="the newest N days")
    trim.add_argument("--keep-weekly", type=int, metavar="N", help="the newest N ISO weeks")
    trim.add_argument("--keep-monthly", type=int, metavar="N", help="the newest N months")
    trim.add_argument("--dry-run", action="store_true",
                      help="say what would be removed; change nothing (read-only is enough)")

    cover = commands.add_parser(
        "coverage", help="how far explicit grants have been observed, per workspace and kind",
        description="Per workspace and per-object scope kind (explicit user and group grants of "
        "repositories and projects): objects, observed, never observed, the oldest observation, "
        "and the nights until every one is observed once at the last night's pace.",
    )
    _db_argument(cover)
    _format_argument(cover)

    demo = commands.add_parser(
        "demo", help="snapshot the built-in simulator, churn a day, snapshot again, show the diff",
        description="Start the built-in Bitbucket simulator on 127.0.0.1 (no credentials, no "
        "network), take a snapshot, apply one day of churn, take another and print what changed. "
        "Run again, it adds the next day to the same database.",
    )
    _db_argument(demo, default="bbaccess-demo.db")
    demo.add_argument("--seed", type=int, default=1, help="seed of the generated org (default 1)")
    demo.add_argument("--churn", type=float, default=0.05, metavar="RATE",
                      help="share of the org changed per simulated day (default 0.05)")
    _verbosity(demo)

    sim = commands.add_parser(
        "simulate", help="serve a simulated Bitbucket Cloud on 127.0.0.1 until interrupted",
        description="Serve a generated org like Bitbucket Cloud does (paging, fields, auth, "
        "scopes, 410s, rate limit, faults) on 127.0.0.1, and print the base URL and credentials "
        "to point bbaccess (or anything else) at it. Stop with Ctrl-C.",
    )
    sim.add_argument("--preset", choices=("small", "medium", "large", "huge"), default="small",
                     help="size of the generated org (default small)")
    sim.add_argument("--seed", type=int, default=1, help="seed of the generated org (default 1)")
    sim.add_argument("--port", type=int, default=7990, help="port on 127.0.0.1 (default 7990; "
                     "0 picks a free one)")
    sim.add_argument("--latency", default="0", help="added to every answer: 100ms, 0.5s")
    sim.add_argument("--rate-limit", metavar="N/UNIT",
                     help="answer 429 past N requests per rolling window per credential: 1000/h")
    sim.add_argument("--fault-rate", type=float, default=0.0, metavar="P",
                     help="share of requests answered 500/502/503 (default 0)")
    return parser


def _run_options(parser: argparse.ArgumentParser) -> None:
    """The settings of a run; each defaults to the environment, then bbaccess.toml."""
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="the configuration file (default: $BBACCESS_CONFIG, else "
                        "~/.config/bbaccess/bbaccess.toml if it exists)")
    parser.add_argument("--db", type=Path, metavar="PATH",
                        help="the SQLite database (or BBACCESS_DB, or db in bbaccess.toml)")
    parser.add_argument("--workspace", action="append", default=[], metavar="SLUG",
                        help="read only this workspace (repeatable); default: every workspace "
                        "listed by /2.0/user/workspaces")
    parser.add_argument("--concurrency", type=int, metavar="N",
                        help="requests in flight at once (default 8)")
    parser.add_argument("--rate", metavar="N/UNIT",
                        help="client-side request budget of each credential, a rolling window: "
                        "900/h (default; Bitbucket allows about 1,000 an hour), 100/10m, 5/s")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="give up on one request after this long, then retry (default 60)")
    parser.add_argument("--max-requests", type=int, metavar="N",
                        help="each credential's cap on requests for the night: workspaces in "
                        "turn (never read, then least recently read), each read whole once "
                        "started, while their expected requests fit (the night's first always "
                        "starts), then explicit grants in priority order until the cap; the "
                        "rest are skipped and come first next night (default: no cap)")
    parser.add_argument("--deadline", metavar="DURATION",
                        help="start no workspace and no explicit-grant scope after this long: "
                        "6h (default), 90m, 1h30m, or 'none'")


def run_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {"db": args.db, "workspaces": tuple(args.workspace), "concurrency": args.concurrency,
            "timeout": args.timeout, "rate": args.rate, "max_requests": args.max_requests,
            "deadline": args.deadline}  # fmt: skip


def _db_argument(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--db", type=Path, required=default is None,
                        default=None if default is None else Path(default), metavar="PATH",
                        help="the SQLite database" + (f" (default {default})" if default else ""))


def _at_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", metavar="WHEN", help="a snapshot id, date (2026-11-20: the last "
                        "complete snapshot started on or before that day, UTC) or timestamp "
                        "(default: the last complete snapshot)")


def _format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="output format (default table)")


def _verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="log every request")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="log warnings and errors only (the summary is still printed): for cron")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="one line per event on stderr: text (default) or a JSON object "
                        "(time, level, logger, message) for log collectors")


class JsonLines(logging.Formatter):
    """One JSON object per event: what log collectors read."""

    def format(self, record: logging.LogRecord) -> str:
        event = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(event, ensure_ascii=False)


def _configure_logging(args: argparse.Namespace) -> None:
    # The demo tells its own story; its per-scope lines are there with -v.
    quiet = ("demo", "diff", "snapshots", "who-can-access", "access", "coverage", "backup",
             "config", "check", "get", "prune")
    level = logging.WARNING if args.command in quiet else logging.INFO
    if getattr(args, "verbose", False):
        level = logging.DEBUG if args.command == "snapshot" else logging.INFO
    elif getattr(args, "quiet", False):
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if getattr(args, "log_format", "text") == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                               datefmt="%H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("aiohttp", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args)
    handler = {
        "snapshot": command_snapshot,
        "config": command_config,
        "check": command_check,
        "get": command_get,
        "snapshots": command_snapshots,
        "diff": command_diff,
        "who-can-access": command_who_can_access,
        "access": command_access,
        "coverage": command_coverage,
        "backup": command_backup,
        "prune": command_prune,
        "demo": command_demo,
        "simulate": command_simulate,
    }[args.command]
    # What a snapshot that stopped says last (a reading command merges nothing anyway).
    then = "; nothing of this run was merged" if args.command == "snapshot" else ""
    try:
        return handler(args)
    except AuthenticationError as error:
        print(f"bbaccess: authentication failed: {error}{then}", file=sys.stderr)
        return EXIT_AUTH
    except DatabaseError as error:
        from exporter.store.database import RunFailedError

        print(f"bbaccess: {error}", file=sys.stderr)
        return EXIT_FAILED if isinstance(error, RunFailedError) else EXIT_USAGE
    except ConfigError as error:
        print(f"bbaccess: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as error:
        # A server or network failure (5xx, 429, a reset, a timeout) passes: say to run again.
        passing = error.status is None or error.status >= 500 or error.status == 429
        again = "; run again later" if then and passing else ""
        print(f"bbaccess: the run failed: {error}{then}{again}", file=sys.stderr)
        return EXIT_FAILED
    except InterruptedAfterMergeError as error:
        print(f"bbaccess: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ExporterError as error:
        print(f"bbaccess: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("bbaccess: interrupted; nothing of this run was merged", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (bbaccess diff | head): not an error. Send what is still buffered
        # nowhere, so that Python's own flush at exit does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:  # a defect: one line, not a traceback (-v shows the traceback)
        from exporter.store.database import describe_database_error

        # SQLite failing under a command (a damaged page, a full disk) is no defect: say what.
        reason = describe_database_error(error, getattr(args, "db", None))
        if reason is not None:
            log.debug("database error", exc_info=True)
            print(f"bbaccess: {reason}", file=sys.stderr)
            return EXIT_USAGE
        log.debug("internal error", exc_info=True)
        print(f"bbaccess: internal error ({type(error).__name__}: {error}); "
              "run again with -v for details and please report it", file=sys.stderr)
        return EXIT_INTERNAL


def command_snapshot(args: argparse.Namespace) -> int:
    from exporter.cli_output import report_run
    from exporter.config import load_settings
    from exporter.export import RunResult, run_snapshot

    settings, _ = load_settings(flags=run_flags(args), config_path=args.config)
    finished: list[RunResult] = []

    async def run() -> RunResult:
        finished.append(await run_snapshot(settings))
        return finished[0]

    try:
        result = asyncio.run(run())
    except KeyboardInterrupt:
        if not finished:
            raise
        # The snapshot was merged; asyncio was closing its loop when Ctrl-C came.
        raise InterruptedAfterMergeError(finished[0].summary.snapshot_id) from None
    try:
        code = report_run(result)
        if result.later:
            # No gap: the night could not hold every workspace; these wait for their turn.
            shown = ", ".join(result.later[:10])
            more = f" and {len(result.later) - 10} more" if len(result.later) > 10 else ""
            print(f"  left for a later night: {len(result.later)} workspace(s), {shown}{more}")
    except KeyboardInterrupt:
        raise InterruptedAfterMergeError(result.summary.snapshot_id) from None
    return code


def command_check(args: argparse.Namespace) -> int:
    from exporter.check_report import run_check

    return asyncio.run(run_check(run_flags(args), args.config))


def command_get(args: argparse.Namespace) -> int:
    from exporter.check_report import run_get

    return asyncio.run(run_get(args.path, paginate=args.paginate, config=args.config))


def command_config(args: argparse.Namespace) -> int:
    from exporter.config import load_settings

    _, sources = load_settings(flags=run_flags(args), config_path=args.config, need_db=False)
    rows = [("setting", "value", "from")]
    rows += [(key, source.value, source.origin) for key, source in sources.items()]
    widths = [max(len(row[i]) for row in rows) for i in (0, 1)]
    for key, value, origin in rows:  # not cut: paths and credentials are read whole
        print(f"{key.ljust(widths[0])}  {value.ljust(widths[1])}  {origin}")
    return EXIT_OK


def command_snapshots(args: argparse.Namespace) -> int:
    from exporter.render import render
    from exporter.store.database import open_database
    from exporter.store.queries import list_snapshots

    async def fetch() -> list[dict[str, Any]]:
        engine = await open_database(args.db, create=False)
        try:
            async with engine.connect() as conn:
                runs = await list_snapshots(conn)
        finally:
            await engine.dispose()
        return [{
            "id": r.id, "status": r.status, "started_at": r.started_at,
            "seconds": None if r.duration_seconds is None else round(r.duration_seconds, 1),
            "requests": r.requests, "retries": r.retries, "throttled": r.throttled,
            "waited": round(r.wait_seconds + r.backoff_seconds, 1),
            "ok": r.scopes_ok, "forbidden": r.scopes_forbidden, "failed": r.scopes_failed,
            "skipped": r.scopes_skipped, "message": r.message,
        } for r in runs]

    print(render(asyncio.run(fetch()), SNAPSHOT_COLUMNS, args.format))
    return EXIT_OK


def command_diff(args: argparse.Namespace) -> int:
    from exporter.store.sql import DIFF_SQL

    if args.sql:
        print(DIFF_SQL)
        return EXIT_OK
    from exporter.diff_report import DiffFilter, check_filter, write_diff

    wanted = DiffFilter(tuple(args.change), tuple(args.workspace), tuple(args.user),
                        tuple(args.repository), tuple(args.source))
    check_filter(wanted)
    changes = asyncio.run(write_diff(args.db, args.from_ref, args.to_ref, fmt=args.format,
                                     baseline=args.baseline, wanted=wanted))
    return EXIT_CHANGED if args.exit_code and changes else EXIT_OK


def command_who_can_access(args: argparse.Namespace) -> int:
    from exporter.store.access import WHO_SQL

    if args.sql:
        print(WHO_SQL)
        return EXIT_OK
    from exporter.access_report import load_who, print_report

    report = asyncio.run(load_who(args.db, args.repository, args.at))
    print_report(report, fmt=args.format, what="repository")
    return EXIT_OK


def command_access(args: argparse.Namespace) -> int:
    from exporter.access_report import load_access, print_report

    report = asyncio.run(load_access(args.db, args.user, args.at))
    print_report(report, fmt=args.format, what="user")
    return EXIT_OK


def command_prune(args: argparse.Namespace) -> int:
    from exporter.store.database import RunLock, check_database_path, open_database
    from exporter.store.prune import PruneReport, choose_kept, complete_snapshot_times, prune

    counts = (args.keep_daily, args.keep_weekly, args.keep_monthly)
    if all(n is None for n in counts):
        raise ConfigError("say what to keep: --keep-daily N, --keep-weekly N and/or "
                          "--keep-monthly N (prune never guesses)")
    if any(n is not None and n < 0 for n in counts):
        raise ConfigError("--keep-daily, --keep-weekly and --keep-monthly take 0 or more")
    daily, weekly, monthly = (n or 0 for n in counts)
    check_database_path(args.db, create=False)

    async def run() -> PruneReport:
        # A real prune writes: one at a time with snapshots (the run lock), on a writable engine.
        engine = await open_database(args.db, create=args.dry_run is False, stage=False)
        try:
            async with engine.connect() as conn:
                keep = choose_kept(await complete_snapshot_times(conn), daily=daily,
                                   weekly=weekly, monthly=monthly)  # fmt: skip
                return await prune(conn, keep, dry_run=args.dry_run)
        finally:
            await engine.dispose()

    lock = None if args.dry_run else RunLock(args.db)
    if lock is not None:
        lock.acquire()
    try:
        report = asyncio.run(run())
    finally:
        if lock is not None:
            lock.release()
    verb = "would remove" if args.dry_run else "removed"
    removed = ", ".join(map(str, report.removed)) or "nothing"
    print(f"kept snapshots {', '.join(map(str, report.kept))}; {verb} {removed}")
    print(f"fact versions moved {report.versions_moved}, deleted {report.versions_deleted}; "
          f"observations moved {report.observations_moved}, deleted "
          f"{report.observations_deleted}")
    if report.bytes_after is not None:
        print(f"database {report.bytes_before:,} bytes before, {report.bytes_after:,} after")
    return EXIT_OK


def command_backup(args: argparse.Namespace) -> int:
    from exporter.store.database import backup_database

    pages = backup_database(args.db, args.target)
    print(f"copied {args.db} to {args.target} ({pages} pages, checked)")
    return EXIT_OK


COVERAGE_COLUMNS = ("workspace", "kind", "objects", "observed", "never_observed",
                    "oldest_observed_in", "oldest_observed_at", "nights_to_full")


def command_coverage(args: argparse.Namespace) -> int:
    from exporter.render import render
    from exporter.store.database import open_database
    from exporter.store.queries import Coverage, coverage
    from exporter.store.rotation import workspace_rotation

    async def fetch() -> tuple[list[Coverage], int, tuple[int, int, int | None]]:
        engine = await open_database(args.db, create=False)
        try:
            async with engine.connect() as conn:
                rows, pace = await coverage(conn)
                return rows, pace, await workspace_rotation(conn)
        finally:
            await engine.dispose()

    rows, pace, (workspaces, read, oldest) = asyncio.run(fetch())
    print(render([vars(r) for r in rows], COVERAGE_COLUMNS, args.format))
    if args.format == "table" and 0 < read < workspaces:
        # Workspaces taken in turn: say how far the turn has come, at the last night's pace.
        print(f"the last night read the workspace-wide listings of {read} of {workspaces} "
              f"workspaces; the least recently read was read in snapshot {oldest}; every "
              f"workspace is read once in {-(-workspaces // read)} night(s) at that pace")
    if args.format == "table":
        never = sum(r.never_observed for r in rows)
        total = sum(r.objects for r in rows)
        if pace:
            print(f"last night read {pace} per-object scopes; {never} of {total} never observed: "
                  f"{-(-never // pace)} more night(s) at that pace; a full cycle takes "
                  f"{-(-total // pace)}")
        else:
            print(f"{never} of {total} per-object scopes never observed; the last snapshot read "
                  "none, so no pace is known")
    return EXIT_OK


def command_demo(args: argparse.Namespace) -> int:
    from exporter.demo import run_demo

    return asyncio.run(run_demo(db_path=args.db, seed=args.seed, churn_rate=args.churn))


def command_simulate(args: argparse.Namespace) -> int:
    from exporter.bitbucket import parse_rate
    from exporter.simulator.serve import parse_latency, serve

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {args.port}")
    try:
        latency = parse_latency(args.latency)
        rate_limit = None if args.rate_limit is None else parse_rate(args.rate_limit)
        coroutine = serve(preset=args.preset, seed=args.seed, host="127.0.0.1", port=args.port,
                          latency=latency, rate_limit=rate_limit, fault_rate=args.fault_rate,
                          announce=print)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:
        asyncio.run(coroutine)
    except KeyboardInterrupt:
        print("simulator stopped")
    except OSError as error:
        raise ConfigError(f"cannot listen on 127.0.0.1:{args.port}: {error.strerror}") from None
    return EXIT_OK
