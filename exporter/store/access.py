"""Who can reach a repository and why, or what one person can reach: the rows of
``explain.sources_sql`` at one snapshot, grouped per user and repository, with flags.

A flag marks what a reader must not take at face value: an effective level that no recorded
source explains (with the likely reason: the sources were not observed yet, or not at that
snapshot), and a source granting more than the effective level (a stale observation, or a user
without effective access at all, such as one who left the workspace).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exporter.errors import ConfigError
from exporter.store.explain import sources_sql

#: Effective repository permissions in order; a project grant reaches a repository as write
#: for create-repo. Any other value (``none``) has no rank.
REPO_RANK = {"read": 1, "write": 2, "create-repo": 2, "admin": 3}

WHO_SQL = sources_sql(at_snapshot=True, repository=True)
ACCESS_SQL = sources_sql(at_snapshot=True, user=True)


@dataclass(frozen=True)
class Source:
    source: str  # direct | group | project | project group | workspace owner
    granted: str
    via_group: str | None
    via_project: str | None
    observed_in: int | None  # the snapshot whose observation of the grant this is
    membership_observed_in: int | None  # for sources through a group: its members' observation


@dataclass
class Access:
    """One user's access to one repository at one snapshot."""

    workspace: str
    repository: str
    user: str
    user_uuid: str
    repository_uuid: str
    effective: str | None
    effective_observed_in: int | None
    sources: list[Source] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "repository": self.repository,
            "user": self.user,
            "effective": self.effective,
            "effective_observed_in": self.effective_observed_in,
            "sources": [vars(s) for s in self.sources],
            "flags": self.flags,
            "user_uuid": self.user_uuid,
            "repository_uuid": self.repository_uuid,
        }


def group_rows(rows: list[dict[str, Any]]) -> list[Access]:
    """The rows of the sources SQL as one ``Access`` per (repository, user), sources sorted."""
    found: dict[tuple[str, str], Access] = {}
    for row in rows:
        key = (row["repository_uuid"], row["user_uuid"])
        access = found.get(key)
        if access is None:
            access = found[key] = Access(
                row["workspace"], row["repository"], row["user_name"], row["user_uuid"],
                row["repository_uuid"], row["effective"], row["effective_observed_in"],
            )  # fmt: skip
        if row["source"] is not None:
            source = Source(
                row["source"], row["granted"], row["via_group"], row["via_project"],
                row["source_observed_in"], row["membership_observed_in"],
            )  # fmt: skip
            access.sources.append(source)
    for access in found.values():
        access.sources.sort(key=_source_order)
    return sorted(found.values(), key=lambda a: (a.repository, a.user.lower(), a.user_uuid))


def _source_order(source: Source) -> tuple[int, str, str, str]:
    return (-REPO_RANK.get(source.granted, 0), source.source, source.via_group or "",
            source.via_project or "")  # fmt: skip


def flag(access: Access, unobserved: list[str]) -> None:
    """Add the flags of ``access``; ``unobserved`` names the sources of its repository that were
    never observed by the snapshot asked about (the likely reason for a gap)."""
    effective = REPO_RANK.get(access.effective or "", 0)
    best = max((REPO_RANK.get(s.granted, 0) for s in access.sources), default=0)
    if access.effective is not None and best < effective:
        why = ("not observed yet: " + ", ".join(unobserved)) if unobserved else (
            "every source was observed; one may have changed since its last observation"
        )
        what = "no recorded source explains" if not access.sources else "no source reaches"
        access.flags.append(f"{what} {access.effective}: {why}")
    if best > effective:
        top = max(access.sources, key=lambda s: REPO_RANK.get(s.granted, 0))
        level = access.effective or "no effective access"
        access.flags.append(
            f"{top.source} grants {top.granted} but the effective level is {level}: the "
            "effective listing is newer than that source, or the user is not a workspace member"
        )


#: Repositories by ``WORKSPACE/REPO`` as they were named at snapshot ``:s``.
NAMED_AT_SQL = """SELECT o.uuid, w.slug || '/' || o.slug
  FROM objects o JOIN scopes sc ON sc.id = o.scope_id
  JOIN objects w ON w.uuid = sc.workspace_uuid AND w.object_type = 'workspace'
   AND w.valid_from <= :s AND (w.valid_to IS NULL OR w.valid_to > :s)
 WHERE o.object_type = 'repository' AND o.valid_from <= :s
   AND (o.valid_to IS NULL OR o.valid_to > :s)
   AND lower(w.slug || '/' || o.slug) = lower(:n)"""


async def resolve_repository(conn: AsyncConnection, name: str, s: int) -> tuple[str, str]:
    """(uuid, label) of ``WORKSPACE/REPO``: the repository of that name at snapshot ``s``, else
    the one that bears it now (a renamed repository is found by either name). An unknown name
    lists the names it could mean."""
    if "/" not in name:
        raise ConfigError(f"name the repository as WORKSPACE/REPO (acme/api), not {name!r}")
    rows = (await conn.execute(text(NAMED_AT_SQL), {"n": name, "s": s})).all()
    if not rows:
        rows = (
            await conn.execute(
                text("SELECT uuid, label FROM labels WHERE object_type = 'repository' "
                     "AND lower(label) = lower(:n)"),
                {"n": name},
            )
        ).all()
    if len(rows) == 1:
        return str(rows[0][0]), str(rows[0][1])
    if len(rows) > 1:
        # Deleted and created again under the same name, neither there at that snapshot.
        raise ConfigError(f"{name!r} named {len(rows)} repositories, none of them at snapshot "
                          f"{s}; give --at a snapshot where the one you mean existed")
    slug = name.rsplit("/", 1)[1]
    near = (
        await conn.execute(
            text("SELECT DISTINCT label FROM labels WHERE object_type = 'repository' "
                 "AND label LIKE :p ORDER BY label LIMIT 10"),
            {"p": f"%{slug}%"},
        )
    ).scalars().all()
    hint = f"; did you mean {', '.join(near)}?" if near else "; 'bbaccess snapshot' records them"
    raise ConfigError(f"no repository {name!r} in this database{hint}")


async def resolve_user(conn: AsyncConnection, who: str) -> tuple[str, str]:
    """(uuid, display name) of a user named by uuid, account id, nickname or display name.
    A name that fits several users, or only part of one, is an error listing who it could be."""
    exact = (
        await conn.execute(
            text("SELECT uuid, display_name, nickname FROM users WHERE uuid = :w "
                 "OR account_id = :w OR lower(nickname) = lower(:w) "
                 "OR lower(display_name) = lower(:w) ORDER BY display_name"),
            {"w": who},
        )
    ).all()
    if len(exact) == 1:
        return str(exact[0][0]), str(exact[0][1])
    found = exact or (
        await conn.execute(
            text("SELECT uuid, display_name, nickname FROM users WHERE "
                 "lower(display_name) LIKE lower(:p) OR lower(nickname) LIKE lower(:p) "
                 "ORDER BY display_name LIMIT 20"),
            {"p": f"%{who}%"},
        )
    ).all()
    if not found:
        raise ConfigError(f"no user {who!r} in this database (give a uuid, account id, nickname "
                          "or display name)")
    listed = "; ".join(f"{r[1]} (nickname {r[2] or '-'}, {r[0]})" for r in found)
    what = "fits several users" if exact else "is not a whole name"
    raise ConfigError(f"{who!r} {what}; name one of them by uuid or nickname: {listed}")


async def unobserved_sources(conn: AsyncConnection, repository_uuid: str, s: int) -> list[str]:
    """Which explaining scopes of a repository had no ok observation by snapshot ``s``: its
    explicit grants, its project's, and its workspace's groups and roles."""
    rows = await conn.execute(
        text("""WITH repo AS (
                    SELECT o.uuid, o.parent_uuid, sc.workspace_uuid
                      FROM objects o JOIN scopes sc ON sc.id = o.scope_id
                     WHERE o.uuid = :r AND o.object_type = 'repository' AND o.valid_from <= :s
                     ORDER BY o.id DESC LIMIT 1),
                wanted(kind, object_uuid, what) AS (
                    SELECT 'repository_user_grants', uuid, 'the repository''s user grants'
                      FROM repo
                    UNION ALL SELECT 'repository_group_grants', uuid,
                           'the repository''s group grants' FROM repo
                    UNION ALL SELECT 'project_user_grants', parent_uuid,
                           'its project''s user grants' FROM repo
                    UNION ALL SELECT 'project_group_grants', parent_uuid,
                           'its project''s group grants' FROM repo
                    UNION ALL SELECT 'groups', workspace_uuid, 'the workspace''s groups'
                      FROM repo
                    UNION ALL SELECT 'workspace_roles', workspace_uuid, 'the workspace roles'
                      FROM repo)
                SELECT w.what FROM wanted w
                 WHERE NOT EXISTS (SELECT 1 FROM scopes sc JOIN observation_runs o
                                      ON o.scope_id = sc.id AND o.outcome = 'ok'
                                   WHERE sc.kind = w.kind AND sc.object_uuid = w.object_uuid
                                     AND o.first_snapshot_id <= :s)"""),
        {"r": repository_uuid, "s": s},
    )
    return [str(r[0]) for r in rows]


async def who_can_access(conn: AsyncConnection, repository_uuid: str, s: int) -> list[Access]:
    rows = await conn.execute(text(WHO_SQL), {"s": s, "repository": repository_uuid})
    found = group_rows([dict(r._mapping) for r in rows])
    unobserved = await unobserved_sources(conn, repository_uuid, s)
    for access in found:
        flag(access, unobserved)
    return found


async def access_of(conn: AsyncConnection, user_uuid: str, s: int) -> list[Access]:
    # The user's id is looked up first: SQLite pushes a filter into each branch of the sources
    # only when it holds no subquery, and without it every repository's sources are computed.
    found_id = await conn.execute(text("SELECT id FROM names WHERE uuid = :u"), {"u": user_uuid})
    user_id = found_id.scalar_one_or_none()
    if user_id is None:
        return []
    rows = await conn.execute(text(ACCESS_SQL), {"s": s, "user_id": user_id})
    found = group_rows([dict(r._mapping) for r in rows])
    cache: dict[str, list[str]] = {}
    for access in found:
        if access.repository_uuid not in cache:
            cache[access.repository_uuid] = await unobserved_sources(
                conn, access.repository_uuid, s
            )
        flag(access, cache[access.repository_uuid])
    return found
