"""Why each user can reach each repository: the ground truth for ``who-can-access``.

Imports only the standard library and ``exporter.simulator.org``. ``explain_access`` follows the
rules of the ``org`` module docstring (and ``Workspace._compute_effective``) but keeps every
source rather than only the highest permission:

* ``direct``: a user grant on the repository;
* ``group``: a grant on the repository to a group the user is in (``group`` names it);
* ``project``: a user grant on the repository's project (``project`` is the project key);
* ``project group``: a grant on the project to a group the user is in (both fields set);
* ``workspace owner``: ``admin`` for every owner of the workspace, on every repository.

A source's ``permission`` is as granted at that source (so ``create-repo`` for a project grant
that has it); the ``Access.level`` is the highest of them, project permissions mapped through
``PROJECT_TO_REPO``. Only current members of the workspace get entries, and a grant to a group
that no longer exists is no source at all (as in ``_subject_ranks``). Every source that grants the
user anything is listed, not only those that reach the level.

The work is done once per project and once per group; a repository then costs only its own
grants, and users reached through the project alone share one precomputed ``Access``.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.simulator.org import PROJECT_TO_REPO, REPO_PERMISSIONS, REPO_RANK, Workspace

DIRECT = "direct"
GROUP = "group"
PROJECT = "project"
PROJECT_GROUP = "project group"
OWNER = "workspace owner"


@dataclass(frozen=True, order=True)
class Source:
    """One way a user reaches a repository."""

    kind: str  # "direct" | "group" | "project" | "project group" | "workspace owner"
    permission: str  # as granted there: read|write|admin, create-repo for projects, owner admin
    group: str | None  # group slug for "group" and "project group", else None
    project: str | None  # project key for "project" and "project group", else None

    @property
    def rank(self) -> int:
        """The rank (``REPO_RANK``) of the permission this source gives on a repository."""
        return _rank(self.kind, self.permission)


@dataclass(frozen=True)
class Access:
    """A user's effective permission on a repository and every source of it."""

    level: str  # effective permission: read|write|admin
    sources: tuple[Source, ...]  # sorted; every source that grants this user anything on the repo


def _rank(kind: str, permission: str) -> int:
    if kind in (PROJECT, PROJECT_GROUP):
        return REPO_RANK[PROJECT_TO_REPO[permission]]
    return REPO_RANK[permission]


def _access(sources: list[Source]) -> Access:
    sources.sort()
    return Access(REPO_PERMISSIONS[max(s.rank for s in sources)], tuple(sources))


def explain_access(ws: Workspace) -> dict[tuple[str, str], Access]:
    """{(repository uuid, user uuid): Access} for every pair with effective access."""
    members = ws.members
    # Current members of every existing group; a grant to any other slug is ignored.
    group_members = {
        slug: [u for u in group.members if u in members] for slug, group in ws.groups.items()
    }
    owner_source = Source(OWNER, "admin", None, None)
    owners = [u for u, role in members.items() if role == "owner"]

    def project_sources(project_uuid: str | None) -> dict[str, list[Source]]:
        """{user: sources} that every repository of the project inherits (owners included)."""
        found: dict[str, list[Source]] = {}
        if project_uuid is not None:
            key = ws.projects[project_uuid].key
            for user, perm in ws.project_user_grants.get(project_uuid, {}).items():
                if user in members:
                    found.setdefault(user, []).append(Source(PROJECT, perm, None, key))
            for slug, perm in ws.project_group_grants.get(project_uuid, {}).items():
                if slug in group_members:
                    source = Source(PROJECT_GROUP, perm, slug, key)
                    for user in group_members[slug]:
                        found.setdefault(user, []).append(source)
        for user in owners:
            found.setdefault(user, []).append(owner_source)
        return found

    # Per project (None: a repository whose project is missing), the inherited sources and the
    # Access of a user reached through them alone.
    inherited: dict[str | None, tuple[dict[str, list[Source]], dict[str, Access]]] = {}

    def base(project_uuid: str | None) -> tuple[dict[str, list[Source]], dict[str, Access]]:
        if project_uuid not in inherited:
            sources = project_sources(project_uuid)
            inherited[project_uuid] = (
                sources,
                {user: _access(list(found)) for user, found in sources.items()},
            )
        return inherited[project_uuid]

    result: dict[tuple[str, str], Access] = {}
    for repo_uuid, repo in ws.repositories.items():
        project_uuid = repo.project_uuid if repo.project_uuid in ws.projects else None
        shared_sources, shared_access = base(project_uuid)
        extra: dict[str, list[Source]] = {}
        for user, perm in ws.repo_user_grants.get(repo_uuid, {}).items():
            if user in members:
                extra.setdefault(user, []).append(Source(DIRECT, perm, None, None))
        for slug, perm in ws.repo_group_grants.get(repo_uuid, {}).items():
            if slug in group_members:
                source = Source(GROUP, perm, slug, None)
                for user in group_members[slug]:
                    extra.setdefault(user, []).append(source)
        for user, access in shared_access.items():
            if user not in extra:
                result[(repo_uuid, user)] = access
        for user, found in extra.items():
            result[(repo_uuid, user)] = _access(found + shared_sources.get(user, []))
    return result
