"""Runs every figure and prints the report: one table against the budgets, one of growth.

``python -m tests.bench [--presets small,medium,large] [--nights 365] [--year-preset medium]``.
Progress goes to stderr; stdout holds only the two markdown tables.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from exporter.simulator import generate_org
from tests.bench.bench_explicit import SHARE, Coverage, coverage_nights
from tests.bench.bench_http import (
    CONCURRENCY,
    LATENCY,
    HttpRun,
    PacingRun,
    baseline,
    crawl_in_child,
    paced,
)
from tests.bench.bench_plan import effective_grants, per_object_scopes
from tests.bench.bench_store import REPEAT, WEEK_NIGHTS, TwoNights, Year, year
from tests.bench.bench_store import two_nights as store_two_nights
from tests.bench.bench_table import Row, machine_row, markdown, report, verdict

SEED = 1
T = TypeVar("T")
_STARTED = time.perf_counter()


def step(label: str, work: Callable[[], T]) -> T:
    """Run one measurement, telling stderr how long it took."""
    print(f"[{time.perf_counter() - _STARTED:6.0f} s] {label} ...", file=sys.stderr, flush=True)
    result = work()
    print(f"[{time.perf_counter() - _STARTED:6.0f} s] {label}: done", file=sys.stderr, flush=True)
    return result


def _ratio(a: float, b: float) -> str:
    return f"{a:g} / {b:g} = {a / b:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--presets", default="small,medium,large")
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--year-preset", default="medium")
    args = parser.parse_args(argv)
    # The pacing runs provoke 429s on purpose: keep their warnings out of the report.
    logging.getLogger("exporter").setLevel(logging.ERROR)
    presets = [p for p in args.presets.split(",") if p]
    biggest = presets[-1]
    medium = "medium" if "medium" in presets else presets[0]
    machine = machine_row("0. ")

    http: dict[str, HttpRun] = {}
    for preset in presets:
        http[preset] = step(
            f"bbaccess snapshot of {preset} at {LATENCY * 1000:.0f} ms",
            lambda p=preset: crawl_in_child(generate_org(p, SEED)),  # type: ignore[misc]
        )
    coverage = step(
        f"nights of bbaccess snapshot --max-requests on {biggest} at latency 0 to explicit "
        "coverage",
        lambda: coverage_nights(generate_org(biggest, SEED)),
    )
    fair = step("pacing: server 50/2s, client 45/2s", lambda: paced(
        generate_org(medium, SEED), server_limit=(50, 2.0), client_rate=(45, 2.0)))
    tight = step("pacing: server 40/2s, client 45/2s", lambda: paced(
        generate_org(medium, SEED), server_limit=(40, 2.0), client_rate=(45, 2.0)))
    base = step(f"baseline client on {medium}", lambda: baseline(generate_org(medium, SEED)))
    stores: dict[str, TwoNights] = {}
    for preset in presets:
        stores[preset] = step(
            f"two nights of {preset} through SnapshotWriter",
            lambda p=preset: store_two_nights(  # type: ignore[misc]
                generate_org(p, SEED), who=p == biggest),
        )
    nights = step(
        f"{args.nights} nights of {args.year_preset} at 0.5% of the facts a day",
        lambda: year(generate_org(args.year_preset, SEED), nights=args.nights),
    )
    heavy = step(
        f"{args.nights} nights of {args.year_preset} at 0.5% of the members or repositories "
        "for each kind of change a day",
        lambda: year(generate_org(args.year_preset, SEED), nights=args.nights, churn="kinds"),
    )

    rows = [machine, *_budget_rows(http, medium, biggest, fair, tight, base, stores,
                                   (nights, heavy), args.nights, args.year_preset)]
    rows += _explicit_rows(biggest, coverage, stores[biggest])
    print("## bbaccess benchmarks\n")
    print(report(rows))
    print("\n## Growth (seed 1)\n")
    print(_growth(presets, http, stores))
    total = time.perf_counter() - _STARTED
    one, last = nights.one_snapshot_bytes / 1e6, nights.final_bytes / 1e6
    alone = nights.final_one_bytes / 1e6
    print(f"\nmeasured in {total:.0f} s; compacted database: first night {one:.2f} MB, "
          f"all {nights.nights} nights {last:.2f} MB, one snapshot of the final org {alone:.2f} MB")
    return 0


def _budget_rows(
    http: dict[str, HttpRun],
    medium: str,
    biggest: str,
    fair: PacingRun,
    tight: PacingRun,
    base: object,
    stores: dict[str, TwoNights],
    years: tuple[Year, Year],
    nights: int,
    year_preset: str,
) -> list[Row]:
    from tests.bench.bench_baseline import BaselineResult

    assert isinstance(base, BaselineResult)
    year, heavy = years
    rows: list[Row] = []
    for preset in dict.fromkeys([medium, biggest]):
        run = http[preset]
        rows.append(Row(
            f"1. requests ÷ plan minimum: workspace-wide pages + every per-object scope "
            f"({preset}, {per_object_scopes(generate_org(preset, SEED))} per-object scopes, "
            "no cap: all in one night)",
            _ratio(run.server_requests, run.minimum), "1.00",
            verdict(run.server_requests <= run.minimum),
        ))
    for preset in dict.fromkeys([medium, biggest]):
        run = http[preset]
        judged = preset == biggest  # the budget is set for the reference org, "large"
        rows.append(Row(
            f"2. wall ÷ (requests * 100 ms ÷ {CONCURRENCY}) ({preset}, the same uncapped run)",
            f"{run.crawl.seconds:.1f} s / {run.ideal_seconds:.2f} s = {run.wall_ratio:.2f} "
            f"(÷ best possible schedule {run.best_schedule_seconds:.2f} s: {run.best_ratio:.2f})",
            "≤ 1.2" if judged else "reported",
            verdict(run.wall_ratio <= 1.2) if judged else verdict(None),
        ))
    rows.append(Row(
        "3a. 429s, client 45/2s under server 50/2s",
        f"{fair.crawl.throttled} in {fair.crawl.requests} requests", "0",
        verdict(fair.crawl.throttled == 0 and fair.crawl.scopes_ok == fair.crawl.scopes_total),
    ))
    rows.append(Row(
        "3b. wasted (429s ÷ requests), client 45/2s over server 40/2s",
        f"{tight.crawl.throttled} / {tight.crawl.requests} = {tight.wasted:.1%} "
        f"({tight.crawl.seconds:.1f} s; scopes ok {tight.crawl.scopes_ok}/"
        f"{tight.crawl.scopes_total})",
        "reported", verdict(None),
    ))
    run = http[medium]
    rows.append(Row(
        f"4a. requests, bbaccess ÷ sequential requests client ({medium})",
        _ratio(run.server_requests, base.requests), "reported", verdict(None),
    ))
    rows.append(Row(
        f"4b. wall time, bbaccess ÷ sequential requests client ({medium})",
        _ratio(round(run.crawl.seconds, 1), round(base.seconds, 1)),
        "reported", verdict(None),
    ))
    big, store = http[biggest], stores[biggest]
    rows.append(Row(
        f"5a. merge of a first snapshot, HTTP run ({biggest})",
        f"{big.crawl.merge_seconds:.1f} s", "≤ 15 s", verdict(big.crawl.merge_seconds <= 15),
    ))
    rows.append(Row(
        f"5b. merge of a nightly snapshot after 0.5% churn ({biggest})",
        f"{store.second_merge:.1f} s (first {store.first_merge:.1f} s)", "≤ 15 s",
        verdict(max(store.first_merge, store.second_merge) <= 15),
    ))
    rows.append(Row(
        f"5c. peak memory of the bbaccess process, ru_maxrss ({biggest})",
        f"{big.crawl.peak_rss_mb:.0f} MB", "≤ 400 MB", verdict(big.crawl.peak_rss_mb <= 400),
    ))
    rows.append(Row(
        f"6. database after {nights} nights ÷ one snapshot ({year_preset}, 0.5% of the facts "
        "changed a day)",
        f"{year.ratio:.2f} (vs the first night: {year.ratio_to_first:.2f}; the churn changed "
        f"{year.daily_churn:.2%} of the facts a night)", "≤ 3 (DESIGN: ≤ 10)",
        verdict(year.ratio <= 3),
    ))
    rows += _history_rows(year, year_preset, "6", "bcd")
    rows += _heavy_rows(heavy, year_preset)
    rows.append(_week_row("6i", year, year_preset, "0.5% of the facts changed a day", True))
    rows.append(_week_row("6j", heavy, year_preset, "the heavy churn of 6e", False))
    rows.append(Row(
        f"7a. diff of two snapshots ({biggest}): nightly / the first (all baseline)",
        f"{store.diff_seconds:.2f} s ({store.diff_rows} rows) / "
        f"{store.first_diff_seconds:.2f} s ({store.first_diff_rows} counted)", "≤ 2 s",
        verdict(store.worst_diff <= 2),
    ))
    shell = store.access_at_shell_seconds
    rows.append(Row(
        f"7b. access_at WHERE snapshot_id = ? ({biggest}), sqlite3 shell to the last row",
        "no sqlite3 shell here" if shell is None
        else f"{shell:.2f} s ({store.access_at_rows} rows)", "≤ 2 s",
        verdict(None if shell is None else shell <= 2),
    ))
    rows.append(Row(
        f"7c. the same read into Python (sqlite3 fetchall, 13 columns) ({biggest})",
        f"{store.access_at_seconds:.2f} s", "≤ 2 s", verdict(store.access_at_seconds <= 2),
    ))
    return rows


def _explicit_rows(biggest: str, coverage: Coverage, store: TwoNights) -> list[Row]:
    c = coverage
    nights = "not covered" if c.nights is None else f"{c.nights}"
    per_night = ", ".join(f"{n}" for n in c.requests)
    covered = ", ".join(f"{n}" for n in c.covered)
    rows = [Row(
        f"8a. nights to full explicit-grant coverage ÷ ⌈explicit requests ÷ nightly budget⌉ "
        f"({biggest}: real bbaccess snapshot nights at latency 0, --max-requests {c.cap} = "
        f"{c.workspace_wide} workspace-wide + ⌈{c.explicit_requests} ÷ {SHARE}⌉, so that coverage "
        "takes several nights)",
        f"{nights} / ⌈{c.explicit_requests} ÷ ({c.cap} - {c.workspace_wide})⌉ = {nights} / "
        f"{c.expected} = {c.ratio:.2f}; night 1's plan line said {c.predicted} night(s); "
        f"requests per night {per_night} (cap {c.cap}); per-object scopes observed ok after "
        f"each night {covered} of {c.scopes}; {sum(c.seconds):.0f} s in all",
        "1.00",
        verdict(c.nights is not None and c.nights == c.expected and c.within_cap),
    )]
    who = store.who
    if who is not None:
        runs = ", ".join(f"{r:.2f}" for r in who.runs)
        rows.append(Row(
            f"8b. who-can-access on the largest repository ({biggest}, {who.repository}: "
            f"{who.effective_grants} effective grants; full explicit coverage, written by "
            "NightWriter), --format json, fresh process, median of 3",
            f"{who.seconds:.2f} s (runs {runs}; {who.users} users, {who.sources} sources, "
            f"{who.flagged} flagged)",
            "≤ 1 s", verdict(who.seconds <= 1),
        ))
    return rows


def _history_rows(year: Year, year_preset: str, main: str, letters: str) -> list[Row]:
    """What the nights of ``year`` (row ``main``) hold, what the churn changed, and what each
    change cost: rows ``6`` + each of ``letters``."""
    holds, changed, cost = (f"6{letter}" for letter in letters)
    parts = ", ".join(f"{name} {size / 1e6:.1f} MB"
                      for name, size in sorted(year.parts.items(), key=lambda p: -p[1]))
    per_change = (year.final_bytes - year.final_one_bytes) / max(year.changes, 1)
    per_grant = year.final_one_bytes / max(year.open_versions, 1)
    return [
        Row(f"{holds}. what those nights hold (each table with its indexes; {year_preset})",
            f"{parts}; grant versions {year.versions} ÷ the last night's grants "
            f"{year.open_versions} = {year.versions_ratio:.2f}", "reported", verdict(None)),
        Row(f"{changed}. what the churn changed in those nights (the simulator's truth; "
            f"{year_preset})",
            f"{year.changes} changes ÷ the last night's grants {year.open_versions} = "
            f"{year.changes / max(year.open_versions, 1):.2f}: each opens or closes a version",
            "reported", verdict(None)),
        Row(f"{cost}. bytes the history adds per change ÷ bytes of one snapshot per grant "
            f"({year_preset})",
            f"{per_change:.0f} ÷ {per_grant:.0f} = {per_change / per_grant:.2f}: row "
            f"{main} is about 1 + this times row {changed}", "reported", verdict(None)),
    ]


def _week_row(number: str, year: Year, year_preset: str, churn: str, budgeted: bool) -> Row:
    """``access_changes`` for the last week of ``year``'s nights, in the sqlite3 shell: against
    the scaling issue's 0.2 s where ``budgeted``."""
    week = year.week
    figure = (f"{number}. access_changes for the last {WEEK_NIGHTS} of those nights "
              f"({year_preset}, {churn}), sqlite3 shell, median of {REPEAT}: by snapshot_id / "
              "by snapshot_at")
    if week is None or week.worst is None:
        return Row(figure, "no sqlite3 shell here", "≤ 0.2 s" if budgeted else "reported",
                   verdict(None))
    measured = f"{week.by_id:.3f} s / {week.by_date:.3f} s ({week.rows} rows)"
    if not budgeted:
        return Row(figure, measured, "reported", verdict(None))
    return Row(figure, measured, "≤ 0.2 s", verdict(week.worst <= 0.2))


def _heavy_rows(year: Year, year_preset: str) -> list[Row]:
    """The same nights under the simulator's heavier churn: every kind of change, a share of the
    members or repositories each, every day (at ``medium``, several times 0.5 % of the facts)."""
    return [Row(
        f"6e. database after {year.nights} nights ÷ one snapshot ({year_preset}, each kind of "
        "change on 0.5% of the members or repositories a day, at least once)",
        f"{year.ratio:.2f} (the churn changed {year.daily_churn:.2%} of the facts a night)",
        "reported", verdict(None),
    ), *_history_rows(year, year_preset, "6e", "fgh")]


def _growth(presets: list[str], http: dict[str, HttpRun], stores: dict[str, TwoNights]) -> str:
    header = ("preset", "effective grants", "requests (min)", "wall @100 ms (÷ ideal)",
              "merge first / nightly", "peak RSS", "diff nightly / first", "access_at")
    rows = []
    for preset in presets:
        run, store = http[preset], stores[preset]
        grants = effective_grants(generate_org(preset, SEED))
        rows.append((
            preset, str(grants), f"{run.server_requests} ({run.minimum})",
            f"{run.crawl.seconds:.1f} s ({run.wall_ratio:.2f})",
            f"{run.crawl.merge_seconds:.2f} s / {store.second_merge:.2f} s",
            f"{run.crawl.peak_rss_mb:.0f} MB",
            f"{store.diff_seconds:.2f} s / {store.first_diff_seconds:.2f} s",
            f"{store.access_at_seconds:.2f} s",
        ))
    return markdown(header, rows)
