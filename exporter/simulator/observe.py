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
