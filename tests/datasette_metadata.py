"""Writes exporter/datasette-metadata.json, Datasette's metadata for a bbaccess database.

Run ``python -m tests.datasette_metadata`` after changing a description here or the diff's SQL:
the canned query ``diff`` is ``exporter.store.sql.DIFF_SQL`` itself, and tests/test_readme_sql.py
fails when the file and this script (or a view and its description) disagree.

Datasette's 0.x metadata format (docs.datasette.io, "Metadata" and "Canned queries"): databases
are keyed by name, the file's stem, hence ``bbaccess-demo``; the README says how to rename it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exporter.store.sql import DIFF_SQL

PATH = Path(__file__).resolve().parents[1] / "exporter" / "datasette-metadata.json"
DATABASE = "bbaccess-demo"

#: The columns of ``current_access`` and of the views that select from it.
CURRENT_ACCESS_COLUMNS = {
    "workspace": "Workspace slug.",
    "object_type": "What the grant is on: workspace, project, repository or group.",
    "object_name": "Its name: acme, acme/PROJ, acme/payments-api or acme/devs.",
    "subject_type": "Who holds the grant: user or group.",
    "subject_name": "The user's display name, or the group's name (acme/devs).",
    "permission": "The permission or role: read, write, create-repo, admin; member, "
                  "collaborator, create-project, owner (as listed by Bitbucket).",
    "source": "Where the access comes from: effective, workspace, direct, group, project, "
              "project group or membership.",
    "observed_in": "The snapshot of the latest ok observation of this grant's scope: how "
                   "fresh it is.",
    "observed_at": "When that snapshot finished (UTC).",
    "since_snapshot": "The snapshot since which this grant holds as it is.",
    "subject_uuid": "The subject's uuid, for joining.",
    "object_uuid": "The object's uuid, for joining.",
    "scope_id": "The scope (listing) the grant was read from: see scope_freshness.",
    "workspace_uuid": "The workspace's uuid, for joining (a renamed workspace keeps it).",
}


def _current(**changed: str) -> dict[str, str]:
    return {**CURRENT_ACCESS_COLUMNS, **changed}


TABLES: dict[str, dict[str, Any]] = {
    "access_changes": {
        "description": "The change log: for every complete snapshot, what changed since the "
                       "complete snapshot before it, by the rules of bbaccess diff. The first "
                       "snapshot's rows are all baseline: filter with change <> 'baseline'. "
                       "Stored when each snapshot is merged: filter on snapshot_at or "
                       "snapshot_id with a value to read only those nights.",
        "columns": {
            "snapshot_id": "The snapshot in which the change was observed.",
            "snapshot_at": "When that snapshot finished (UTC).",
            "from_snapshot_id": "The complete snapshot it is compared with (0: none).",
            "workspace": "Workspace slug.",
            "object_type": "workspace, project, repository or group.",
            "object_name": "Its name: acme, acme/PROJ, acme/payments-api or acme/devs.",
            "subject_type": "user or group for grants; empty for object changes.",
            "subject_name": "The user's display name or the group's name (acme/devs); empty "
                            "for object changes.",
            "change": "granted, revoked, raised, lowered, changed, added to group, removed "
                      "from group, created, deleted or baseline.",
            "attribute": "For a changed object: slug, name, is_private or project.",
            "old_value": "The permission or role (or attribute value) before.",
            "new_value": "The permission or role (or attribute value) after.",
            "source": "effective, workspace, direct, group, project, project group or "
                      "membership.",
            "reason": "deleted repository, created repository, or how many repositories a "
                      "group reaches (membership changes).",
            "subject_uuid": "The subject's uuid, for joining.",
            "object_uuid": "The object's uuid, for joining.",
            "scope_id": "The scope (listing) the fact was read from.",
        },
    },
    "latest_access_changes": {
        "description": "access_changes of the latest complete snapshot: what changed last "
                       "night. Reads that snapshot's log only, however long the history.",
        "columns": {},  # access_changes' columns, filled in below
    },
    "access_at": {
        "description": "Knowledge at every complete snapshot: one row per (snapshot, subject, "
                       "object, permission, source). Filter on snapshot_id for what access "
                       "looked like then.",
        "columns": {
            "snapshot_id": "The complete snapshot this row describes.",
            "snapshot_at": "When that snapshot finished (UTC).",
            "workspace": "Workspace slug.",
            "object_type": "workspace, project, repository or group.",
            "object_name": "Its name: acme, acme/PROJ, acme/payments-api or acme/devs.",
            "subject_type": "user or group.",
            "subject_name": "The user's display name, or the group.",
            "permission": "The permission or role held at that snapshot.",
            "source": "effective, workspace, direct, group, project, project group or "
                      "membership.",
            "observed_in": "The snapshot whose ok observation this knowledge comes from: how "
                           "fresh it was.",
            "subject_uuid": "The subject's uuid, for joining.",
            "object_uuid": "The object's uuid, for joining.",
            "scope_id": "The scope (listing) the grant was read from.",
            "workspace_uuid": "The workspace's uuid, for joining (a renamed workspace keeps it).",
        },
    },
    "current_access": {
        "description": "Every current grant, with how fresh its scope is and since when it "
                       "holds.",
        "columns": _current(),
    },
    "current_repository_permissions": {
        "description": "current_access rows with source = 'effective': who can reach which "
                       "repository, at what level (the highest from any source).",
        "columns": _current(
            object_type="repository.",
            object_name="The repository: workspace/slug.",
            subject_type="user.",
            subject_name="The user's display name.",
            permission="The effective level: read, write or admin.",
            source="effective.",
        ),
    },
    "current_explicit_grants": {
        "description": "current_access rows with source direct, group, project or project "
                       "group: the grants an admin set on repositories and projects, to users "
                       "and groups.",
        "columns": _current(
            object_type="repository or project.",
            object_name="The repository (workspace/slug) or project (workspace/KEY).",
            permission="The permission granted: read, write, create-repo (projects) or admin.",
            source="direct (user on repository), group (group on repository), project (user "
                   "on project) or project group (group on project).",
        ),
    },
    "current_group_members": {
        "description": "current_access rows with source = 'membership': object_name is the "
                       "group, subject_name the member.",
        "columns": _current(
            object_type="group.",
            object_name="The group: workspace/slug.",
            subject_type="user.",
            subject_name="The member's display name.",
            permission="member.",
            source="membership.",
        ),
    },
    "current_access_sources": {
        "description": "Why each user can reach each repository: one row per (repository, "
                       "user, source) on the latest knowledge, the rows bbaccess "
                       "who-can-access reads.",
        "columns": {
            "workspace": "Workspace slug.",
            "repository": "The repository: workspace/slug.",
            "user_name": "The user's display name.",
            "effective": "The effective level (read, write, admin); NULL for a grant to "
                         "someone without effective access, such as a departed user.",
            "source": "direct, group, project, project group or workspace owner; NULL for "
                      "effective access that no recorded source explains.",
            "granted": "The permission at that source.",
            "via_group": "The group, for group and project group sources.",
            "via_project": "The project, for project and project group sources.",
            "source_observed_in": "The snapshot the source's grant was observed in.",
            "membership_observed_in": "The snapshot the group's members were observed in.",
            "effective_observed_in": "The snapshot the effective level was observed in.",
            "user_uuid": "The user's uuid, for joining.",
            "repository_uuid": "The repository's uuid, for joining.",
            "group_uuid": "The group's uuid, for joining.",
            "project_uuid": "The project's uuid, for joining.",
        },
    },
    "scope_freshness": {
        "description": "Every scope (one listing of the Bitbucket API) with its last outcome "
                       "and its last ok observation: what is verified, and how recently.",
        "columns": {
            "scope_id": "The scope's id.",
            "kind": "workspace, workspace_roles, projects, repositories, "
                    "repository_permissions, groups, repository_user_grants, "
                    "repository_group_grants, project_user_grants or project_group_grants.",
            "label": "The endpoint read.",
            "source": "Where the access in its grants comes from (effective, workspace, "
                      "direct, group, project, project group, membership); NULL for object "
                      "listings.",
            "last_outcome": "ok, forbidden or failed, at its last attempt.",
            "last_detail": "Why the last attempt was not ok.",
            "last_attempted_in": "The snapshot of its last attempt.",
            "observed_in": "The snapshot of its last ok observation (NULL: never).",
            "observed_at": "When that snapshot finished (UTC).",
            "workspace_uuid": "The workspace's uuid, for joining.",
            "object_uuid": "The repository or project of a per-object scope, for joining.",
        },
    },
    "current_objects": {
        "description": "Every current workspace, project, repository and group.",
        "columns": {
            "workspace": "Workspace slug.",
            "object_type": "workspace, project, repository or group.",
            "full_name": "acme, acme/PROJ, acme/payments-api or acme/devs.",
            "slug": "The slug (the key, for a project).",
            "name": "The display name.",
            "is_private": "1 private, 0 public (workspaces, projects and repositories).",
            "project": "A repository's project (workspace/KEY).",
            "observed_in": "The snapshot of the latest ok observation of its listing.",
            "observed_at": "When that snapshot finished (UTC).",
            "since_snapshot": "The snapshot since which it is as it is.",
            "uuid": "Its uuid, for joining.",
            "parent_uuid": "A repository's project uuid, for joining (NULL for other objects).",
            "scope_id": "The scope (listing) it was read from.",
        },
    },
}
TABLES["latest_access_changes"]["columns"] = TABLES["access_changes"]["columns"]

DIFF_QUERY = {
    "title": "What changed between two snapshots",
    "description": "bbaccess diff --from :a --to :b, as SQL: a and b are complete snapshot "
                   "ids (see the snapshots table), a before b. Rows with change = 'baseline' "
                   "are first observations, not changes.",
    "params": ["a", "b"],
    "sql": DIFF_SQL,
}


def build() -> dict[str, Any]:
    """The metadata, as written to exporter/datasette-metadata.json."""
    return {
        "title": "bbaccess: who can reach what in Bitbucket Cloud",
        "description": "Nightly snapshots of Bitbucket Cloud access. The views are the public "
                       "interface; the README's cookbook has queries for common questions.",
        "databases": {
            DATABASE: {
                "description": "A bbaccess database.",
                "tables": TABLES,
                "queries": {"diff": DIFF_QUERY},
            },
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {PATH}")
