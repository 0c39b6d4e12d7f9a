"""The simulator's in-memory org: users, workspaces and everything inside a workspace.

Imports only the standard library. Everything is keyed by uuid (groups by slug) so that a large
org stays cheap to build and to look up.

Effective repository permission of a user (``Workspace.effective_permissions``), the highest of:

1. a direct user grant on the repository (read, write, admin);
2. grants on the repository to any group the user is in;
3. the user's and the user's groups' grants on the repository's project, inherited by every
   repository of the project; a project ``create-repo`` grant counts as ``write`` on a repository
   (in Bitbucket it is write plus the right to create repositories in the project);
4. ``admin`` for every workspace owner, on every repository of the workspace.

Order read < write < admin. Only current members of the workspace count (churn removes a leaver's
grants too). A user with no source gets no row; ``none`` never appears.

Webhooks (``Workspace.hooks``) are listed by ``/hooks`` and take no part in permissions.

Credentials live on the ``Org``: API tokens (Basic, with the account's email) and OAuth tokens
(Bearer) act as their user; workspace access tokens (Bearer) act for one workspace and cannot
read permissions. Every token carries scopes (``token_scopes``; a token not listed there has
``DEFAULT_SCOPES``).

Mutate a workspace through its methods: each one bumps ``version``, which drops the cached
effective permissions. Code that edits the dicts directly must call ``invalidate()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("member", "collaborator", "create-project", "owner")
REPO_PERMISSIONS = ("read", "write", "admin")
PROJECT_PERMISSIONS = ("read", "write", "create-repo", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
REPO_RANK = {perm: rank for rank, perm in enumerate(REPO_PERMISSIONS)}
#: A project permission as it reaches a repository of the project.
PROJECT_TO_REPO = {"read": "read", "write": "write", "create-repo": "write", "admin": "admin"}
DEFAULT_TIMESTAMP = "2021-03-04T05:06:07.000000+00:00"

EffectiveKey = tuple[str, str]  # (repository uuid, user uuid)
#: The scopes FACTS.md tells the exporter to ask for; every well-known token has them all.
DEFAULT_SCOPES = frozenset(
    {
        "read:workspace:bitbucket",
        "read:user:bitbucket",
        "read:repository:bitbucket",
        "read:project:bitbucket",
        "admin:repository:bitbucket",
        "read:webhook:bitbucket",
        "read:permission:bitbucket",
    }
)


@dataclass
class User:
    uuid: str
    display_name: str
    nickname: str
    account_id: str
    email: str


@dataclass
class Group:
    slug: str
    name: str
    members: set[str] = field(default_factory=set)


@dataclass
class Project:
    uuid: str
    key: str
    name: str
    is_private: bool = True
    created_on: str = DEFAULT_TIMESTAMP


@dataclass
class Repository:
    uuid: str
    slug: str
    name: str
    is_private: bool
    project_uuid: str
    created_on: str = DEFAULT_TIMESTAMP


@dataclass
class Webhook:
    uuid: str
    url: str
    events: tuple[str, ...]
    active: bool = True
    secret_set: bool = False
    created_at: str = DEFAULT_TIMESTAMP
    description: str = ""


@dataclass
class Workspace:
    uuid: str
    slug: str
    name: str
    is_private: bool = True
    created_on: str = DEFAULT_TIMESTAMP
    members: dict[str, str] = field(default_factory=dict)  # user uuid -> role
    groups: dict[str, Group] = field(default_factory=dict)  # slug -> group
    projects: dict[str, Project] = field(default_factory=dict)
    repositories: dict[str, Repository] = field(default_factory=dict)
    repo_user_grants: dict[str, dict[str, str]] = field(default_factory=dict)
    repo_group_grants: dict[str, dict[str, str]] = field(default_factory=dict)
    project_user_grants: dict[str, dict[str, str]] = field(default_factory=dict)
    project_group_grants: dict[str, dict[str, str]] = field(default_factory=dict)
    hooks: dict[str, Webhook] = field(default_factory=dict)  # uuid -> webhook
    version: int = 0
    _effective: dict[EffectiveKey, str] | None = field(default=None, repr=False, compare=False)
    _slugs: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def invalidate(self) -> None:
        self.version += 1
        self._effective = None
        self._slugs = None

    # -- mutations ---------------------------------------------------------------------------

    def set_member(self, user_uuid: str, role: str) -> None:
        if role not in ROLE_RANK:
            raise ValueError(f"unknown role {role!r}")
        self.members[user_uuid] = role
        self.invalidate()

    def remove_member(self, user_uuid: str) -> None:
        """Remove the user from the workspace, its groups and every grant in it."""
        self.members.pop(user_uuid, None)
        for group in self.groups.values():
            group.members.discard(user_uuid)
        for grants in (*self.repo_user_grants.values(), *self.project_user_grants.values()):
            grants.pop(user_uuid, None)
        self.invalidate()

    def add_group(self, group: Group) -> None:
        self.groups[group.slug] = group
        self.invalidate()

    def set_group_member(self, slug: str, user_uuid: str, present: bool) -> None:
        members = self.groups[slug].members
        if present:
            members.add(user_uuid)
        else:
            members.discard(user_uuid)
        self.invalidate()

    def add_project(self, project: Project) -> None:
        self.projects[project.uuid] = project
        self.invalidate()

    def add_repository(self, repo: Repository) -> None:
        if repo.project_uuid not in self.projects:
            raise ValueError(f"unknown project {repo.project_uuid}")
        self.repositories[repo.uuid] = repo
        self.invalidate()

    def remove_repository(self, repo_uuid: str) -> None:
        self.repositories.pop(repo_uuid, None)
        self.repo_user_grants.pop(repo_uuid, None)
        self.repo_group_grants.pop(repo_uuid, None)
        self.invalidate()

    def update_repository(
        self,
        repo_uuid: str,
        *,
        slug: str | None = None,
        name: str | None = None,
        is_private: bool | None = None,
        project_uuid: str | None = None,
    ) -> None:
        repo = self.repositories[repo_uuid]
        if slug is not None:
            repo.slug = slug
        if name is not None:
            repo.name = name
        if is_private is not None:
            repo.is_private = is_private
        if project_uuid is not None:
            if project_uuid not in self.projects:
                raise ValueError(f"unknown project {project_uuid}")
            repo.project_uuid = project_uuid
        self.invalidate()

    def grant_repo_user(self, repo_uuid: str, user_uuid: str, perm: str | None) -> None:
        """Set (or with None remove) a direct user grant on a repository."""
        _set_grant(self.repo_user_grants, repo_uuid, user_uuid, perm, REPO_PERMISSIONS)
        self.invalidate()

    def grant_repo_group(self, repo_uuid: str, group_slug: str, perm: str | None) -> None:
        _set_grant(self.repo_group_grants, repo_uuid, group_slug, perm, REPO_PERMISSIONS)
        self.invalidate()

    def grant_project_user(self, project_uuid: str, user_uuid: str, perm: str | None) -> None:
        _set_grant(self.project_user_grants, project_uuid, user_uuid, perm, PROJECT_PERMISSIONS)
        self.invalidate()

    def grant_project_group(self, project_uuid: str, group_slug: str, perm: str | None) -> None:
        _set_grant(self.project_group_grants, project_uuid, group_slug, perm, PROJECT_PERMISSIONS)
        self.invalidate()

    # -- queries -----------------------------------------------------------------------------

    def repository_by_slug(self, slug: str) -> Repository | None:
        if self._slugs is None:
            self._slugs = {r.slug: r.uuid for r in self.repositories.values()}
        repo = self.repositories.get(self._slugs.get(slug, ""))
        return repo if repo is not None and repo.slug == slug else None

    def project_by_key(self, key: str) -> Project | None:
        return next((p for p in self.projects.values() if p.key == key), None)

    def is_project_admin(self, project_uuid: str, user_uuid: str) -> bool:
        """An owner, or admin on the project directly or through a group."""
        if self.members.get(user_uuid) == "owner":
            return True
        if self.project_user_grants.get(project_uuid, {}).get(user_uuid) == "admin":
            return True
        return any(
            perm == "admin" and user_uuid in self.groups[slug].members
            for slug, perm in self.project_group_grants.get(project_uuid, {}).items()
            if slug in self.groups
        )

    def effective_permissions(self) -> dict[EffectiveKey, str]:
        """{(repository uuid, user uuid): permission}, computed by the rules above, cached."""
        if self._effective is None:
            self._effective = _compute_effective(self)
        return self._effective


def _set_grant(
    table: dict[str, dict[str, str]],
    object_uuid: str,
    subject: str,
    perm: str | None,
    allowed: tuple[str, ...],
) -> None:
    if perm is None:
        table.get(object_uuid, {}).pop(subject, None)
        return
    if perm not in allowed:
        raise ValueError(f"unknown permission {perm!r}")
    table.setdefault(object_uuid, {})[subject] = perm


def _raise_to(ranks: dict[str, int], users: set[str] | list[str], rank: int) -> None:
    for user in users:
        if ranks.get(user, -1) < rank:
            ranks[user] = rank


def _subject_ranks(
    ws: Workspace, user_grants: dict[str, str], group_grants: dict[str, str], to_repo: bool
) -> dict[str, int]:
    """{user uuid: rank} from one object's user grants and group grants."""
    ranks: dict[str, int] = {}
    for user, perm in user_grants.items():
        _raise_to(ranks, [user], REPO_RANK[PROJECT_TO_REPO[perm] if to_repo else perm])
    for slug, perm in group_grants.items():
        group = ws.groups.get(slug)
        if group is not None:
            _raise_to(ranks, group.members, REPO_RANK[PROJECT_TO_REPO[perm] if to_repo else perm])
    return ranks


def _compute_effective(ws: Workspace) -> dict[EffectiveKey, str]:
    by_project = {
        p: _subject_ranks(
            ws, ws.project_user_grants.get(p, {}), ws.project_group_grants.get(p, {}), True
        )
        for p in ws.projects
    }
    owners = [u for u, role in ws.members.items() if role == "owner"]
    admin = REPO_RANK["admin"]
    result: dict[EffectiveKey, str] = {}
    for repo_uuid, repo in ws.repositories.items():
        ranks = dict(by_project.get(repo.project_uuid, {}))
        direct = _subject_ranks(
            ws,
            ws.repo_user_grants.get(repo_uuid, {}),
            ws.repo_group_grants.get(repo_uuid, {}),
            False,
        )
        for user, rank in direct.items():
            if ranks.get(user, -1) < rank:
                ranks[user] = rank
        _raise_to(ranks, owners, admin)
        for user, rank in ranks.items():
            if user in ws.members:
                result[(repo_uuid, user)] = REPO_PERMISSIONS[rank]
    return result


@dataclass
class Org:
    """Users (shared by all workspaces), workspaces, and the credentials the server accepts."""

    users: dict[str, User] = field(default_factory=dict)
    workspaces: dict[str, Workspace] = field(default_factory=dict)
    api_tokens: dict[str, str] = field(default_factory=dict)  # API token -> user uuid
    oauth_tokens: dict[str, str] = field(default_factory=dict)  # OAuth bearer token -> user uuid
    access_tokens: dict[str, str] = field(default_factory=dict)  # access token -> workspace uuid
    token_scopes: dict[str, frozenset[str]] = field(default_factory=dict)  # absent: DEFAULT_SCOPES
    _emails: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def scopes_of(self, token: str) -> frozenset[str]:
        return self.token_scopes.get(token, DEFAULT_SCOPES)

    def add_user(self, user: User) -> None:
        self.users[user.uuid] = user

    def add_workspace(self, ws: Workspace) -> None:
        self.workspaces[ws.uuid] = ws

    def workspace(self, slug_or_uuid: str) -> Workspace | None:
        """The workspace named by slug or by ``{uuid}``, or None."""
        if slug_or_uuid in self.workspaces:
            return self.workspaces[slug_or_uuid]
        return next((w for w in self.workspaces.values() if w.slug == slug_or_uuid), None)

    def user_by_email(self, email: str) -> User | None:
        lowered = email.lower()
        if len(self._emails) != len(self.users):
            self._emails = {u.email.lower(): u.uuid for u in self.users.values()}
        user = self.users.get(self._emails.get(lowered, ""))
        return user if user is not None and user.email.lower() == lowered else None

    def effective_permissions(self, ws: Workspace) -> dict[EffectiveKey, str]:
        return ws.effective_permissions()


def effective_permissions(ws: Workspace) -> dict[EffectiveKey, str]:
    """{(repository uuid, user uuid): permission} of one workspace (cached on the workspace)."""
    return ws.effective_permissions()
