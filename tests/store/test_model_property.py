"""The real store against the naive model: same knowledge and same diff for every pair, the same
display names for users, and the same count of scopes by outcome on every snapshot row."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from exporter.crawl.records import (
    GrantRecord,
    ObjectRecord,
    Outcome,
    ScopeKind,
    ScopeRef,
    UserRecord,
)
from exporter.store.database import open_database
from exporter.store.queries import diff
from exporter.store.sql import DIFF_SQL
from exporter.store.writer import (
    STAGE_FLUSH_SECONDS,
    RunCounters,
    SnapshotSummary,
    SnapshotWriter,
)
from tests.store.naive import OUTCOMES, Facts, NaiveScope, NaiveStore, Names
from tests.store.test_unexplained import check_against_every_grant

WS = "{ws}"
REPOS = ["{r1}", "{r2}", "{r3}"]
USERS = ["{u1}", "{u2}"]
PROJECTS = {"{p1}": "P1", "{p2}": "P2"}

GROUP = "{ws}:devs"
PROJECT_LISTING = ScopeRef(ScopeKind.PROJECTS, WS, "workspace", WS, "ws/projects")
REPO_LISTING = ScopeRef(ScopeKind.REPOSITORIES, WS, "workspace", WS, "ws/repositories")
EFFECTIVE = ScopeRef(
    ScopeKind.REPOSITORY_PERMISSIONS, WS, "workspace", WS, "ws/effective", source="effective"
)
ROLES = ScopeRef(ScopeKind.WORKSPACE_ROLES, WS, "workspace", WS, "ws/roles", source="workspace")
GROUPS = ScopeRef(ScopeKind.GROUPS, WS, "workspace", WS, "ws/groups", source="membership")
# Per-repository scopes: explicit user grants, children of the repository listing, which drives
# the deletion rule.
CHILDREN = {
    r: ScopeRef(
        ScopeKind.REPOSITORY_USER_GRANTS, WS, "repository", r, f"ws/{r}/grants", REPO_LISTING,
        "direct",
    )
    for r in REPOS
}
SCOPES = {s.label: s for s in (REPO_LISTING, EFFECTIVE, ROLES, GROUPS, *CHILDREN.values())}

repo_attrs = st.tuples(
    st.sampled_from(["api", "web"]),
    st.sampled_from(["API", "Web"]),
    st.booleans(),
    st.sampled_from([None, *PROJECTS]),
)
perm = st.sampled_from(["read", "write", "admin"])
# An explicit grant may show a value outside the known order: stored, and diffed as "changed".
# "triage" is one no version of the grant kinds names either: kept as text (``permission_text``).
explicit_perm = st.sampled_from(["read", "write", "admin", "none", "triage"])
role = st.sampled_from(["member", "collaborator", "owner"])
# absent: never reached. unfinished: staged a page, then the run completed without finishing
# it (a cancelled reader): nothing of it, names included, may be merged or counted.
outcome = st.sampled_from(
    ["ok", "ok", "ok", "forbidden", "failed", "skipped", "absent", "unfinished"]
)
# Roles, groups and each repository's explicit grants name their users; the name changes from night
# to night, so a scope that fails or a run that dies often carries a newer name than the stored one.
NAMED = {ROLES.label, GROUPS.label, *(c.label for c in CHILDREN.values())}


@dataclass
class Night:
    repos: dict[str, tuple[str, str, bool, str | None]]
    effective: dict[tuple[str, str], str]
    roles: dict[str, str]
    direct: dict[tuple[str, str], str]
    outcomes: dict[str, str]
    ending: str  # complete | crash | fail
    members: frozenset[str] = frozenset()
    names: dict[str, int] = field(default_factory=dict)  # user -> this night's name suffix
    skipped: int = 0  # per-object scopes the plan left for later: counted, not stored


night = st.builds(
    Night,
    repos=st.dictionaries(st.sampled_from(REPOS), repo_attrs),
    effective=st.dictionaries(st.tuples(st.sampled_from(USERS), st.sampled_from(REPOS)), perm),
    roles=st.dictionaries(st.sampled_from(USERS), role),
    direct=st.dictionaries(
        st.tuples(st.sampled_from(USERS), st.sampled_from(REPOS)), explicit_perm
    ),
    outcomes=st.fixed_dictionaries({name: outcome for name in SCOPES}),
    ending=st.sampled_from(["complete", "complete", "complete", "crash", "fail"]),
    members=st.frozensets(st.sampled_from(USERS)),
    names=st.fixed_dictionaries({u: st.integers(0, 3) for u in USERS}),
    skipped=st.integers(0, 2),
)


def display_name(n: Night, user: str) -> str:
    return f"User {user} #{n.names.get(user, 0)}"


def users_of(n: Night, label: str) -> list[str]:
    """The users whose names the scope's pages carry (none for listings and effective access)."""
    if label not in NAMED:
        return []
    return sorted({g.subject_uuid for g in grants_of(n, label)})


def records_of(n: Night, label: str) -> list[Any]:
    """Names first: a scope that fails after its first page has staged some of them."""
    users = [UserRecord(u, display_name(n, u), u.strip("{}")) for u in users_of(n, label)]
    return [*users, *grants_of(n, label)]


def grants_of(n: Night, label: str) -> list[Any]:
    if label == REPO_LISTING.label:
        return [
            ObjectRecord("repository", u, s, nm, p, par) for u, (s, nm, p, par) in n.repos.items()
        ]
    if label == EFFECTIVE.label:
        return [GrantRecord("user", u, "repository", r, p) for (u, r), p in n.effective.items()]
    if label == ROLES.label:
        return [GrantRecord("user", u, "workspace", WS, p) for u, p in n.roles.items()]
    if label == GROUPS.label:
        return [GrantRecord("user", u, "group", GROUP, "member") for u in sorted(n.members)]
    repo = SCOPES[label].object_uuid
    return [
        GrantRecord("user", u, "repository", r, p) for (u, r), p in n.direct.items() if r == repo
    ]


def naive_facts(n: Night, label: str) -> Facts:
    if label == REPO_LISTING.label:
        return {
            (u,): (s, nm, "true" if p else "false", PROJECTS.get(par or ""))
            for u, (s, nm, p, par) in n.repos.items()
        }
    return {(g.subject_uuid, g.object_uuid): (g.permission,) for g in grants_of(n, label)}


def naive_names(n: Night, label: str) -> Names:
    return {u: display_name(n, u) for u in users_of(n, label)}



async def run_nights(path: Path, nights: list[Night]) -> NaiveStore:
    naive = NaiveStore(
        {
            label: NaiveScope(
                label,
                label == REPO_LISTING.label,
                None if s.parent is None else s.parent.label,
                s.object_uuid if s.parent else None,
                membership=label == GROUPS.label,
            )
            for label, s in SCOPES.items()
        }
    )
    engine = await open_database(path)
    try:
        # Night 1 lists the projects, so that a repository's project has a readable key.
        setup = SnapshotWriter(engine, tool_version="test")
        await setup.begin()
        scope_id = await setup.scope_id(PROJECT_LISTING)
        await setup.stage(
            scope_id, [ObjectRecord("project", u, k, k, True) for u, k in PROJECTS.items()]
        )
        await setup.finish_scope(scope_id, Outcome.OK)
        summary = await setup.complete(RunCounters())
        naive.record(1, {}, finished={PROJECT_LISTING.label: "ok"})
        check_summary(summary, naive)
        for i, n in enumerate(nights):
            # Every other night writes each page at once (its clock says a flush is always due),
            # so that a failed scope's rows reach the stage before it fails; the others keep
            # them waiting until the batch, and a failed scope's rows are dropped unwritten.
            writer = SnapshotWriter(
                engine, tool_version="test",
                monotonic=_always_due() if i % 2 else time.monotonic,
            )  # fmt: skip
            snapshot_id = await writer.begin()
            observed: dict[str, Facts] = {}
            finished: dict[str, str] = {}
            names: dict[str, Names] = {}
            for label, scope in SCOPES.items():
                result = n.outcomes[label]
                if result == "absent":
                    continue
                scope_id = await writer.scope_id(scope)
                records = records_of(n, label)
                # A failed or unfinished scope may have staged some pages.
                if result in ("ok", "failed", "unfinished"):
                    half = len(records) // 2
                    await writer.stage(scope_id, records[:half] + records[:1])  # a repeat
                    if result == "ok":
                        await writer.stage(scope_id, records[half:])
                if result == "unfinished":
                    continue
                await writer.finish_scope(scope_id, Outcome(result), None)
                finished[label] = result
                if result == "ok":
                    observed[label] = naive_facts(n, label)
                    names[label] = naive_names(n, label)
            if n.ending == "complete":
                summary = await writer.complete(RunCounters(), skipped=n.skipped)
                naive.record(
                    snapshot_id, observed, finished=finished, names=names, skipped=n.skipped
                )
                check_summary(summary, naive)
            elif n.ending == "fail":
                await writer.fail("gave up", RunCounters())
            # "crash": the row stays running; the next begin marks it aborted.
        return naive
    finally:
        await engine.dispose()


def check_summary(summary: SnapshotSummary, naive: NaiveStore) -> None:
    """What ``complete`` returns: scopes by outcome, and the closures apart."""
    s = summary.snapshot_id
    assert s == naive.complete[-1]
    assert {o: c for o, c in summary.outcomes.items() if c} == {
        o: c for o, c in naive.counts[s].items() if c
    }, s
    assert summary.closed == len(naive.closed[s]), s


async def real_users(engine: AsyncEngine) -> dict[str, tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT uuid, display_name, last_seen FROM users"))
        return {r[0]: (r[1], r[2]) for r in rows}


async def real_counts(engine: AsyncEngine) -> dict[int, dict[str, int]]:
    """Every complete snapshot's row: scopes by outcome."""
    columns = ", ".join(f"scopes_{o}" for o in OUTCOMES)
    sql = f"SELECT id, {columns} FROM snapshots WHERE status = 'complete'"
    async with engine.connect() as conn:
        rows = await conn.execute(text(sql))
        return {r[0]: dict(zip(OUTCOMES, r[1:], strict=True)) for r in rows}


async def real_diff(
    engine: AsyncEngine, a: int, b: int, sql: str = DIFF_SQL
) -> set[tuple[object, ...]]:
    async with engine.connect() as conn:
        labels = {r[0]: r[1] for r in await conn.execute(text("SELECT id, label FROM scopes"))}
        rows = await conn.execute(text(sql), {"a": a, "b": b})
        return {
            _as_naive(labels, dict(r._mapping))
            for r in rows
            if labels[r._mapping["scope_id"]] != PROJECT_LISTING.label
        }


def _as_naive(labels: dict[int, str], row: dict[str, Any]) -> tuple[object, ...]:
    key = (
        (row["object_uuid"],)
        if row["subject_uuid"] is None
        else (row["subject_uuid"], row["object_uuid"])
    )
    if row["change"] in ("baseline", "created", "deleted", "added to group", "removed from group"):
        return (labels[row["scope_id"]], key, row["change"], None, None, None)
    return (
        labels[row["scope_id"]],
        key,
        row["change"],
        row["attribute"],
        row["old_value"],
        row["new_value"],
    )


async def real_knowledge(engine: AsyncEngine, at: int) -> dict[str, Facts]:
    """Grants from access_at, and repositories as versions valid at ``at``."""
    async with engine.connect() as conn:
        out: dict[str, Facts] = {}
        grants = await conn.execute(
            text(
                "SELECT s.label, a.subject_uuid, a.object_uuid, a.permission FROM access_at a "
                "JOIN scopes s ON s.id = a.scope_id WHERE a.snapshot_id = :s"
            ),
            {"s": at},
        )
        for r in grants:
            out.setdefault(r[0], {})[(r[1], r[2])] = (r[3],)
        objects = await conn.execute(
            text(
                "SELECT s.label, o.uuid, o.slug, o.name, o.is_private, p.slug FROM objects o "
                "JOIN scopes s ON s.id = o.scope_id "
                "LEFT JOIN objects p ON p.uuid = o.parent_uuid "
                "WHERE o.object_type = 'repository' AND o.valid_from <= :s "
                "AND (o.valid_to IS NULL OR o.valid_to > :s)"
            ),
            {"s": at},
        )
        for r in objects:
            private = "true" if r[4] else "false"
            out.setdefault(r[0], {})[(r[1],)] = (r[2], r[3], private, r[5])
        return out


async def check_reads(engine: AsyncEngine, naive: NaiveStore) -> None:
    """The reads as the runs keep them: every complete snapshot's ok reads (closures included)
    through the view ``observations``, each scope's latest ok read at or before a snapshot
    (``access_at.observed_in``) and its latest ok read (``scope_freshness``), against the model's
    ok observations."""
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT o.snapshot_id, s.label FROM observations o JOIN scopes s ON s.id = o.scope_id "
            "WHERE o.outcome = 'ok'"))  # fmt: skip
        reads: dict[int, set[str]] = {b: set() for b in naive.complete}
        for b, label in rows:
            if label in SCOPES:  # the model has no project listing
                reads.setdefault(b, set()).add(label)
        assert reads == {b: set(naive.ok[b]) for b in naive.complete}
        twice = await conn.execute(text(
            "SELECT scope_id, snapshot_id FROM observations GROUP BY 1, 2 HAVING count(*) > 1"))
        assert twice.all() == []  # a scope is read once a snapshot, or closed instead
        for b in naive.complete:
            seen = await conn.execute(
                text("SELECT DISTINCT s.label, a.observed_in FROM access_at a "
                     "JOIN scopes s ON s.id = a.scope_id WHERE a.snapshot_id = :b"),
                {"b": b},
            )  # fmt: skip
            for label, observed_in in seen:
                assert observed_in == max(x for x in naive.ok_snapshots(label) if x <= b), b
        fresh = dict((await conn.execute(text(
            "SELECT label, observed_in FROM scope_freshness"))).all())  # fmt: skip
        assert {k: v for k, v in fresh.items() if v is not None and k in SCOPES} == {
            label: naive.ok_snapshots(label)[-1] for label in SCOPES
            if naive.ok_snapshots(label)}  # fmt: skip


async def check_baseline_count(engine: AsyncEngine, a: int, b: int) -> None:
    """``bbaccess diff`` counts the baseline apart (its own SQL): the same number of rows."""
    async with engine.connect() as conn:
        found = await diff(conn, a, b)
        rows = [r._mapping["change"] for r in await conn.execute(text(DIFF_SQL), {"a": a, "b": b})]
    assert found.baseline_count == rows.count("baseline"), (a, b)
    assert len(found.changes) == len(rows) - rows.count("baseline"), (a, b)


async def check_against_naive(path: Path, nights: list[Night]) -> None:
    naive = await run_nights(path, nights)
    engine = await open_database(path)
    try:
        complete = naive.complete
        for b in complete:
            known = await real_knowledge(engine, b)
            for label in SCOPES:
                assert known.get(label, {}) == naive.knowledge(b, label), (label, b)
        assert await real_users(engine) == naive.users()
        assert await real_counts(engine) == naive.counts
        await check_reads(engine, naive)
        for i, b in enumerate(complete):
            for a in [0, *complete[:i]]:
                assert await real_diff(engine, a, b) == naive.diff(a, b), (a, b)
                await check_baseline_count(engine, a, b)
            # The access_changes view is the same diff, for each snapshot and the one before it.
            view = "SELECT * FROM access_changes WHERE snapshot_id = :b AND :a = :a"
            previous = complete[i - 1] if i else 0
            assert await real_diff(engine, previous, b, view) == naive.diff(previous, b), b
        # The effective access no source explains, kept by the merges, is the same question asked
        # of every grant (crashed runs, closures, skipped and unfinished scopes included).
        await check_against_every_grant(engine)
    finally:
        await engine.dispose()


def _always_due() -> Callable[[], float]:
    """A clock on which every staged page has waited long enough to be written at once."""
    ticks = itertools.count(step=STAGE_FLUSH_SECONDS)
    return lambda: float(next(ticks))


def _night(
    repos: dict[str, Any],
    direct: dict[tuple[str, str], str],
    r3: str,
    ending: str = "complete",
    *,
    roles: dict[str, str] | None = None,
    members: frozenset[str] = frozenset(),
    names: dict[str, int] | None = None,
    skipped: int = 0,
    outcomes: dict[str, str] | None = None,
) -> Night:
    """Every scope ok but ``{r3}``'s grants (``r3``) and those named in ``outcomes``."""
    ended = {"ws/repositories": "ok", "ws/effective": "ok", "ws/roles": "ok",
             "ws/groups": "ok", "ws/{r1}/grants": "ok", "ws/{r2}/grants": "ok",
             "ws/{r3}/grants": r3, **(outcomes or {})}
    return Night(repos=repos, effective={}, roles=roles or {}, direct=direct, outcomes=ended,
                 ending=ending, members=members, names=names or {}, skipped=skipped)


# A repository deleted before its own grants were ever read; they are read (ok) a night later.
UNOBSERVED_CHILD_OF_A_DELETED_REPOSITORY = [
    _night({"{r3}": ("api", "API", False, None)}, {}, "absent"),
    _night({}, {}, "absent"),
    _night({}, {("{u1}", "{r3}"): "read"}, "ok"),
]
# The same, with a run that attempted those grants and crashed: it must change nothing.
AFTER_A_CRASHED_ATTEMPT = [
    UNOBSERVED_CHILD_OF_A_DELETED_REPOSITORY[0],
    _night({"{r3}": ("api", "API", False, None)}, {}, "failed", ending="crash"),
    *UNOBSERVED_CHILD_OF_A_DELETED_REPOSITORY[1:],
]
API = ("api", "API", False, None)
# {r3}'s grants are read (ok) again in the night {r3} leaves the listing: the closure replaces the
# read, so that night counts six scopes ok (not seven) and one closed, and {r3} has no grant. The
# name that read gave is kept all the same: the scope was read whole.
CHILD_READ_OK_AS_ITS_REPOSITORY_GOES = [
    _night({"{r3}": API}, {("{u1}", "{r3}"): "read"}, "ok", names={"{u1}": 1}),
    _night({}, {("{u1}", "{r3}"): "write"}, "ok", names={"{u1}": 2}),
]
# Newer names only from scopes not read whole (roles failed after a page naming {u1}, groups staged
# a page naming {u2} and never finished) and from runs that crashed or failed: both keep the names
# of the first night, with its snapshot as last_seen.
A_FAILED_SCOPE_CARRYING_A_NEWER_NAME = [
    _night({}, {}, "absent", roles={"{u1}": "member"}, members=frozenset({"{u2}"}),
           names={"{u1}": 1, "{u2}": 1}),
    _night({}, {}, "absent", roles={"{u1}": "member"}, members=frozenset({"{u2}"}),
           names={"{u1}": 2, "{u2}": 2},
           outcomes={"ws/roles": "failed", "ws/groups": "unfinished"}),
    _night({}, {}, "absent", "crash", roles={"{u1}": "owner"}, members=frozenset({"{u2}"}),
           names={"{u1}": 3, "{u2}": 3}),
    _night({}, {}, "absent", "fail", roles={"{u1}": "owner"}, members=frozenset({"{u2}"}),
           names={"{u1}": 3, "{u2}": 3}),
]
# {r1} and {r3} leave the listing: {r1}'s grants are closed unread, {r3}'s read fails and is
# closed too (the closure replaces the failure); {r2}'s grants are skipped, two more per-object
# scopes are left for later, the groups are forbidden. Counts: ok 3, forbidden 1, failed 0,
# skipped 3, and two closures apart.
A_CLOSURE_NIGHT_WITH_SKIPPED_SCOPES = [
    _night({"{r1}": API, "{r2}": API, "{r3}": API},
           {("{u1}", "{r1}"): "read", ("{u2}", "{r2}"): "admin", ("{u1}", "{r3}"): "write"}, "ok"),
    _night({"{r2}": API},
           {("{u1}", "{r1}"): "read", ("{u2}", "{r2}"): "admin", ("{u1}", "{r3}"): "write"},
           "failed", skipped=2,
           outcomes={"ws/{r1}/grants": "absent", "ws/{r2}/grants": "skipped",
                     "ws/groups": "forbidden"}),
]

# A repository that appears in a listing read before, its grants read the same night: they are
# granted (the repository is new), not a baseline (the scope is read for the first time).
A_NEW_REPOSITORY_READ_AT_ONCE = [
    _night({"{r1}": API}, {}, "absent"),
    _night({"{r1}": API, "{r3}": API}, {("{u1}", "{r3}"): "read"}, "ok"),
]


async def test_a_crashed_attempt_changes_no_diff(tmp_path: Path) -> None:
    plain = await run_nights(tmp_path / "a.db", UNOBSERVED_CHILD_OF_A_DELETED_REPOSITORY)
    crashed = await run_nights(tmp_path / "b.db", AFTER_A_CRASHED_ATTEMPT)
    for naive, db in ((plain, tmp_path / "a.db"), (crashed, tmp_path / "b.db")):
        engine = await open_database(db)
        try:
            a, b = naive.complete[-2:]
            found = await real_diff(engine, a, b)
        finally:
            await engine.dispose()
        assert found == {("ws/{r3}/grants", ("{u1}", "{r3}"), "baseline", None, None, None)}


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(nights=st.lists(night, min_size=1, max_size=5))
@example(nights=UNOBSERVED_CHILD_OF_A_DELETED_REPOSITORY)
@example(nights=AFTER_A_CRASHED_ATTEMPT)
@example(nights=CHILD_READ_OK_AS_ITS_REPOSITORY_GOES)
@example(nights=A_FAILED_SCOPE_CARRYING_A_NEWER_NAME)
@example(nights=A_CLOSURE_NIGHT_WITH_SKIPPED_SCOPES)
@example(nights=A_NEW_REPOSITORY_READ_AT_ONCE)
def test_store_agrees_with_naive_model(template_db: Path, nights: list[Night]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.db"
        shutil.copy(template_db, path)
        asyncio.run(check_against_naive(path, nights))
