"""Frozen records: the only shapes that cross from the crawl side to the store.

A *scope* is one listing read to its last page; every record belongs to exactly one scope. Two
kinds of record exist: ``ObjectRecord`` (a workspace, project, repository or group as a listing
showed it) and ``GrantRecord`` (a subject's permission on an object: a workspace role, an
effective repository permission, an explicit user or group grant, a group membership).
``UserRecord`` carries display names; names are not facts and never produce a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from exporter.errors import Outcome


class ScopeKind(StrEnum):
    """The kinds of listing the exporter reads. The value is stored in the database; each kind's
    endpoint, fetcher, row key, source and parent are described once, in ``crawl.scopes``."""

    WORKSPACE = "workspace"
    WORKSPACE_ROLES = "workspace_roles"
    PROJECTS = "projects"
    REPOSITORIES = "repositories"
    REPOSITORY_PERMISSIONS = "repository_permissions"
    GROUPS = "groups"
    REPOSITORY_USER_GRANTS = "repository_user_grants"
    REPOSITORY_GROUP_GRANTS = "repository_group_grants"
    PROJECT_USER_GRANTS = "project_user_grants"
    PROJECT_GROUP_GRANTS = "project_group_grants"


#: Outcomes that leave a gap: nothing is claimed about the scope in that snapshot.
GAP_OUTCOMES = (Outcome.FORBIDDEN, Outcome.FAILED, Outcome.SKIPPED)


@dataclass(frozen=True, slots=True)
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
    #: Where the access in its grants comes from (``crawl.scopes``); None for object listings.
    source: str | None = None


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


def group_key(workspace_uuid: str, slug: str) -> str:
    """The key of a group: Bitbucket gives groups no uuid, and a slug is unique per workspace."""
    return f"{workspace_uuid}:{slug}"


@dataclass(frozen=True)
class WorkspaceRef:
    """A workspace the credential can see, from ``/2.0/user/workspaces``."""

    uuid: str
    slug: str
    administrator: bool | None = None


Record = ObjectRecord | GrantRecord | UserRecord


@dataclass(frozen=True, slots=True)
class ScopeTarget:
    """What one scope reads: a workspace, or one repository or project of it.

    ``object_key`` is the repository slug or project key that its endpoint names; ``known`` is the
    workspace's own record when discovery has already read it.
    """

    workspace: WorkspaceRef
    object_type: str = "workspace"
    object_uuid: str = ""
    object_key: str = ""
    known: ObjectRecord | None = None

    @classmethod
    def of_workspace(cls, ws: WorkspaceRef, known: ObjectRecord | None = None) -> ScopeTarget:
        return cls(ws, "workspace", ws.uuid, ws.slug, known)

__all__ = [
    "GAP_OUTCOMES",
    "GrantRecord",
    "ObjectRecord",
    "Outcome",
    "Record",
    "ScopeKind",
    "ScopeRef",
    "ScopeTarget",
    "UserRecord",
    "WorkspaceRef",
    "group_key",
]
