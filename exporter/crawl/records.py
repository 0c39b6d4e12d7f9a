"""Frozen records: the only shapes that cross from the crawl side to the store.

A *scope* is one listing read to its last page; every record belongs to exactly one scope. Two
kinds of record exist: ``ObjectRecord`` (a workspace, project or repository as a listing showed
it) and ``GrantRecord`` (a subject's permission on an object: a workspace role, an effective
repository permission, and later explicit and group grants). ``UserRecord`` carries display names;
names are not facts and never produce a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ScopeKind(StrEnum):
    """The kinds of listing the exporter reads. The value is stored in the database."""

    WORKSPACE = "workspace"  # /2.0/workspaces/{ws}
    WORKSPACE_ROLES = "workspace_roles"  # /2.0/workspaces/{ws}/permissions
    PROJECTS = "projects"  # /2.0/workspaces/{ws}/projects
    REPOSITORIES = "repositories"  # /2.0/repositories/{ws}
    # /2.0/workspaces/{ws}/permissions/repositories: effective permissions, workspace-wide
    REPOSITORY_PERMISSIONS = "repository_permissions"


#: Where the access in a grant comes from, by the kind of scope that listed it.
SOURCE_BY_KIND: dict[ScopeKind, str] = {
    ScopeKind.WORKSPACE_ROLES: "workspace",
    ScopeKind.REPOSITORY_PERMISSIONS: "effective",
}


@dataclass(frozen=True)
class ScopeRef:
    """Identifies one scope: its kind and the object it belongs to (by uuid).

    Workspace-wide listings belong to the workspace. ``parent`` names the scope whose listing
    contains the object (a repository's grants belong to the workspace's repository listing), or
    is None for workspace-wide scopes.
    """

    kind: ScopeKind
    workspace_uuid: str
    object_type: str
    object_uuid: str
    label: str
    parent: ScopeRef | None = None


@dataclass(frozen=True)
class UserRecord:
    uuid: str
    display_name: str
    nickname: str | None = None
    account_id: str | None = None


@dataclass(frozen=True)
class ObjectRecord:
    """A workspace, project or repository as a listing showed it.

    ``slug`` is the workspace slug, the project key or the repository slug; ``parent_uuid`` is the
    project of a repository (None for workspaces and projects).
    """

    object_type: str
    uuid: str
    slug: str
    name: str
    is_private: bool | None
    parent_uuid: str | None = None


@dataclass(frozen=True)
class GrantRecord:
    """``subject`` has ``permission`` on the object ``object_uuid``."""

    subject_type: str
    subject_uuid: str
    object_type: str
    object_uuid: str
    permission: str


@dataclass(frozen=True)
class WorkspaceRef:
    """A workspace the credential can see, from ``/2.0/user/workspaces``."""

    uuid: str
    slug: str
    administrator: bool | None = None


Record = ObjectRecord | GrantRecord | UserRecord
