"""What the exporter can observe of an org, and the ground-truth change list between two states.

Imports only ``exporter.simulator.org``. ``observable_state`` captures workspace roles, effective
repository permissions and the objects (workspaces, projects, repositories) with the attributes a
listing shows; ``diff_states`` turns two captures into sorted ``TruthChange`` rows, the answer
the exporter's diff should reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.simulator.org import REPO_RANK, ROLE_RANK, Org

ObjectState = tuple[str, str, str, bool, str | None]  # (type, slug, name, is_private, parent)
OBJECT_ATTRIBUTES = ("slug", "name", "is_private", "parent_uuid")


@dataclass(frozen=True, order=True)
class TruthChange:
    change: str  # granted | revoked | raised | lowered | changed | created | deleted
    object_type: str  # workspace | project | repository
    object_uuid: str
    subject_uuid: str | None  # user uuid for grants, None for object changes
    source: str | None  # "workspace" for roles, "effective" for repository permissions
    attribute: str | None  # for "changed": slug, name, is_private, parent_uuid
    old: str | None
    new: str | None


@dataclass(frozen=True)
class ObservableState:
    roles: dict[tuple[str, str], str]  # (workspace uuid, user uuid) -> role
    effective: dict[tuple[str, str], str]  # (repository uuid, user uuid) -> permission
    objects: dict[str, ObjectState]


def observable_state(org: Org) -> ObservableState:
    """A copy of everything the exporter can read about ``org``."""
    roles: dict[tuple[str, str], str] = {}
    effective: dict[tuple[str, str], str] = {}
    objects: dict[str, ObjectState] = {}
    for ws in org.workspaces.values():
        objects[ws.uuid] = ("workspace", ws.slug, ws.name, ws.is_private, None)
        for user, role in ws.members.items():
            roles[(ws.uuid, user)] = role
        for p in ws.projects.values():
            objects[p.uuid] = ("project", p.key, p.name, p.is_private, None)
        for r in ws.repositories.values():
            objects[r.uuid] = ("repository", r.slug, r.name, r.is_private, r.project_uuid)
        effective.update(ws.effective_permissions())
    return ObservableState(roles, effective, objects)


def _as_text(value: str | bool | None) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _grant_changes(
    before: dict[tuple[str, str], str],
    after: dict[tuple[str, str], str],
    *,
    object_type: str,
    source: str,
    rank: dict[str, int],
) -> list[TruthChange]:
    changes = []
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if old is None:
            kind = "granted"
        elif new is None:
            kind = "revoked"
        else:
            kind = "raised" if rank[new] > rank[old] else "lowered"
        changes.append(TruthChange(kind, object_type, key[0], key[1], source, None, old, new))
    return changes


def _object_changes(
    before: dict[str, ObjectState], after: dict[str, ObjectState]
) -> list[TruthChange]:
    changes = []
    for uuid in before.keys() | after.keys():
        old, new = before.get(uuid), after.get(uuid)
        if old is None and new is not None:
            changes.append(TruthChange("created", new[0], uuid, None, None, None, None, None))
        elif new is None and old is not None:
            changes.append(TruthChange("deleted", old[0], uuid, None, None, None, None, None))
        elif old is not None and new is not None:
            for attribute, was, now in zip(OBJECT_ATTRIBUTES, old[1:], new[1:], strict=True):
                if was != now:
                    change = TruthChange(
                        "changed", new[0], uuid, None, None, attribute, _as_text(was), _as_text(now)
                    )
                    changes.append(change)
    return changes


def diff_states(before: ObservableState, after: ObservableState) -> list[TruthChange]:
    """Every observable change from ``before`` to ``after``, sorted."""
    changes = _object_changes(before.objects, after.objects)
    changes += _grant_changes(
        before.roles, after.roles, object_type="workspace", source="workspace", rank=ROLE_RANK
    )
    changes += _grant_changes(
        before.effective, after.effective, object_type="repository", source="effective",
        rank=REPO_RANK,
    )  # fmt: skip
    return sorted(changes)


@dataclass(frozen=True)
class ExplicitState:
    """Explicit grants and group membership: ((object, subject, source) -> permission)."""

    grants: dict[tuple[str, str, str, str], str]  # (object type, object, subject, source) -> perm
    memberships: set[tuple[str, str]]  # (group full slug, user uuid)


def explicit_state(org: Org) -> ExplicitState:
    """A copy of every explicit grant and group membership of ``org``.

    Sources: ``direct`` (a user on a repository), ``group`` (a group on a repository),
    ``project`` (a user or a group on a project). Groups are named by full slug
    (``workspace:group``), users by uuid.
    """
    grants: dict[tuple[str, str, str, str], str] = {}
    memberships: set[tuple[str, str]] = set()
    for ws in org.workspaces.values():
        tables = (
            ("repository", ws.repo_user_grants, "direct", False),
            ("repository", ws.repo_group_grants, "group", True),
            ("project", ws.project_user_grants, "project", False),
            ("project", ws.project_group_grants, "project", True),
        )
        for object_type, table, source, by_group in tables:
            for object_uuid, row in table.items():
                for subject, perm in row.items():
                    who = f"{ws.slug}:{subject}" if by_group else subject
                    grants[(object_type, object_uuid, who, source)] = perm
        for group in ws.groups.values():
            memberships.update((f"{ws.slug}:{group.slug}", u) for u in group.members)
    return ExplicitState(grants, memberships)


#: Explicit permissions in order, for "raised" and "lowered" (create-repo sits above write).
EXPLICIT_RANK = {"read": 0, "write": 1, "create-repo": 2, "admin": 3}


def diff_explicit(before: ExplicitState, after: ExplicitState) -> list[TruthChange]:
    """Every change of explicit grants (source direct, group, project) and of group membership
    (object type ``group``, object its full slug, subject the user, source ``membership``)."""
    changes = []
    for key in before.grants.keys() | after.grants.keys():
        old, new = before.grants.get(key), after.grants.get(key)
        if old == new:
            continue
        if old is None or new is None:
            kind = "granted" if old is None else "revoked"
        else:
            kind = "raised" if EXPLICIT_RANK[new] > EXPLICIT_RANK[old] else "lowered"
        object_type, object_uuid, subject, source = key
        changes.append(TruthChange(kind, object_type, object_uuid, subject, source, None, old, new))
    for group, user in before.memberships ^ after.memberships:
        joined = (group, user) in after.memberships
        kind, old, new = ("granted", None, "member") if joined else ("revoked", "member", None)
        changes.append(TruthChange(kind, "group", group, user, "membership", None, old, new))
    return sorted(changes)
