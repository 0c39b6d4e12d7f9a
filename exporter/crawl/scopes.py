"""Every kind of scope, described once: its endpoint, fetcher, row key, source and parent.

Adding a kind of scope is one entry in ``SCOPE_KINDS`` (and its ``ScopeKind`` value). The writer
stores each scope's ``source`` on its row, so that the SQL of views and diffs reads it as data.

- *Workspace-wide* scopes (no parent) are read whole by every run, first.
- *Per-object* scopes belong to one repository or project; ``parent`` is the workspace listing
  that holds the object, so that the object's deletion closes them. The planner rations them
  across nights.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from exporter.bitbucket import BitbucketClient, RowKey
from exporter.crawl import fetchers
from exporter.crawl.groups import fetch_groups
from exporter.crawl.records import Record, ScopeKind, ScopeRef, ScopeTarget

Fetch = Callable[[BitbucketClient, str, ScopeTarget, RowKey | None], AsyncIterator[list[Record]]]


@dataclass(frozen=True)
class ScopeSpec:
    """One kind of scope. ``path`` names ``{ws}`` (workspace slug), ``{repo}`` (repository slug)
    or ``{project}`` (project key); ``source`` says where the access in its grants comes from
    (None for a listing of objects)."""

    kind: ScopeKind
    path: str
    fetch: Fetch
    key: RowKey | None
    source: str | None
    object_type: str = "workspace"
    parent: ScopeKind | None = None

    @property
    def per_object(self) -> bool:
        return self.parent is not None

    def path_for(self, target: ScopeTarget) -> str:
        part = fetchers.path_part
        return self.path.format(
            ws=part(target.workspace.slug),
            repo=part(target.object_key),
            project=part(target.object_key),
        )

    def ref(self, target: ScopeTarget) -> ScopeRef:
        """The scope this kind has for ``target`` (a per-object kind names its parent)."""
        ws = target.workspace
        parent = None
        if self.parent is not None:
            parent = SCOPE_KINDS[self.parent].ref(ScopeTarget.of_workspace(ws))
        return ScopeRef(
            self.kind, ws.uuid, self.object_type, target.object_uuid or ws.uuid,
            self.path_for(target), parent, self.source,
        )  # fmt: skip

    def pages(self, client: BitbucketClient, target: ScopeTarget) -> AsyncIterator[list[Record]]:
        return self.fetch(client, self.path_for(target), target, self.key)


_REPO = "/2.0/repositories/{ws}/{repo}/permissions-config"
_PROJECT = "/2.0/workspaces/{ws}/projects/{project}/permissions-config"

SCOPE_KINDS: dict[ScopeKind, ScopeSpec] = {
    spec.kind: spec
    for spec in (
        ScopeSpec(ScopeKind.WORKSPACE, "/2.0/workspaces/{ws}", fetchers.workspace_pages,
                  None, None),
        ScopeSpec(ScopeKind.WORKSPACE_ROLES, "/2.0/workspaces/{ws}/permissions",
                  fetchers.user_grants, fetchers.USER_KEY, "workspace"),
        ScopeSpec(ScopeKind.PROJECTS, "/2.0/workspaces/{ws}/projects",
                  fetchers.project_listing, fetchers.OBJECT_KEY, None),
        ScopeSpec(ScopeKind.REPOSITORIES, "/2.0/repositories/{ws}",
                  fetchers.repository_listing, fetchers.OBJECT_KEY, None),
        ScopeSpec(ScopeKind.REPOSITORY_PERMISSIONS,
                  "/2.0/workspaces/{ws}/permissions/repositories",
                  fetchers.effective_permissions, fetchers.USER_REPOSITORY_KEY, "effective"),
        ScopeSpec(ScopeKind.GROUPS, "/1.0/groups/{ws}", fetch_groups, None, "membership"),
        ScopeSpec(ScopeKind.REPOSITORY_USER_GRANTS, _REPO + "/users", fetchers.user_grants,
                  fetchers.USER_KEY, "direct", "repository", ScopeKind.REPOSITORIES),
        ScopeSpec(ScopeKind.REPOSITORY_GROUP_GRANTS, _REPO + "/groups", fetchers.group_grants,
                  fetchers.GROUP_KEY, "group", "repository", ScopeKind.REPOSITORIES),
        ScopeSpec(ScopeKind.PROJECT_USER_GRANTS, _PROJECT + "/users", fetchers.user_grants,
                  fetchers.USER_KEY, "project", "project", ScopeKind.PROJECTS),
        ScopeSpec(ScopeKind.PROJECT_GROUP_GRANTS, _PROJECT + "/groups", fetchers.group_grants,
                  fetchers.GROUP_KEY, "project group", "project", ScopeKind.PROJECTS),
    )
}  # fmt: skip

#: Read whole by every run, in this order.
WORKSPACE_WIDE = tuple(spec for spec in SCOPE_KINDS.values() if not spec.per_object)
#: Rationed across nights by the planner, per repository or project.
PER_OBJECT = tuple(spec for spec in SCOPE_KINDS.values() if spec.per_object)


def per_object_kinds(object_type: str) -> tuple[ScopeSpec, ...]:
    """The per-object kinds of a repository or a project."""
    return tuple(spec for spec in PER_OBJECT if spec.object_type == object_type)
