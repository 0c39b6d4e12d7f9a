"""The simulated endpoints that read permissions: effective repository permissions, explicit
grants on repositories and projects (``permissions-config``), ``/1.0/groups`` and webhooks.

Imports ``exporter.simulator.endpoints``, ``.org``, ``.shapes`` and ``.gate``. Who may call:

- ``/workspaces/{ws}/permissions/repositories``: workspace owners (admins);
- ``/workspaces/{ws}/permissions/repositories/{slug}`` and the repository's
  ``permissions-config/*``: whoever has effective ``admin`` on that repository;
- a project's ``permissions-config/*``: owners and the project's admins (user or group grant);
- ``/1.0/groups/{ws}``: owners, and only by workspace **slug** (a ``{uuid}`` is a 404);
- ``/workspaces/{ws}/hooks``: owners.

Everyone else gets 403; an access token always does. Explicit grants list users by uuid and
groups by slug; ``none`` never appears (a removed grant is no row).
"""

from __future__ import annotations

from exporter.simulator.endpoints import (
    ACCESS_TOKEN_FORBIDDEN,
    Call,
    Listing,
    Reply,
    cached,
    forbidden,
    member_workspace,
    role_of,
)
from exporter.simulator.gate import ACCESS_TOKEN
from exporter.simulator.org import Project, Repository, Workspace
from exporter.simulator.shapes import (
    JSON,
    error_json,
    grant_json,
    group_json,
    group_v1_json,
    project_ref,
    repository_ref,
    user_json,
    webhook_json,
)


def _admin_workspace(call: Call, params: dict[str, str]) -> Workspace | Reply:
    """The workspace if the caller owns it; else 404 (not a member) or 403."""
    ws = member_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    if call.caller.kind == ACCESS_TOKEN:
        return forbidden(ACCESS_TOKEN_FORBIDDEN)
    return ws if role_of(call.caller, ws) == "owner" else forbidden()


def _admin_repository(call: Call, params: dict[str, str]) -> tuple[Workspace, Repository] | Reply:
    """The workspace and repository if the caller has effective admin on it."""
    ws = member_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    repo = ws.repository_by_slug(params["repo"])
    if repo is None:
        return Reply(404, error_json(f"Repository {ws.slug}/{params['repo']} not found"))
    if call.caller.kind == ACCESS_TOKEN:
        return forbidden(ACCESS_TOKEN_FORBIDDEN)
    if ws.effective_permissions().get((repo.uuid, call.caller.user_uuid)) != "admin":
        return forbidden()
    return ws, repo


def _admin_project(call: Call, params: dict[str, str]) -> tuple[Workspace, Project] | Reply:
    ws = member_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    project = ws.project_by_key(params["key"])
    if project is None:
        return Reply(404, error_json(f"Project {params['key']} not found"))
    if call.caller.kind == ACCESS_TOKEN:
        return forbidden(ACCESS_TOKEN_FORBIDDEN)
    if not ws.is_project_admin(project.uuid, call.caller.user_uuid):
        return forbidden()
    return ws, project


def _effective_listing(
    call: Call, ws: Workspace, rows: list[tuple[tuple[str, str], str]]
) -> Listing:
    def render(row: tuple[tuple[str, str], str]) -> JSON:
        (repo_uuid, user_uuid), perm = row
        return {
            "type": "repository_permission",
            "permission": perm,
            "user": user_json(call.org.users[user_uuid], call.api),
            "repository": repository_ref(ws.repositories[repo_uuid], ws, call.api),
        }

    return Listing(rows, render)


def workspace_repository_permissions(call: Call, params: dict[str, str]) -> Reply | Listing:
    ws = _admin_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    effective = ws.effective_permissions()
    rows = cached(call, ws, "effective", lambda: sorted(effective.items()))
    return _effective_listing(call, ws, rows)


def repository_permissions(call: Call, params: dict[str, str]) -> Reply | Listing:
    found = _admin_repository(call, params)
    if isinstance(found, Reply):
        return found
    ws, repo = found
    by_repo = cached(call, ws, "effective_by_repo", lambda: _group_by_repo(ws))
    return _effective_listing(call, ws, by_repo[0].get(repo.uuid, []))


def _group_by_repo(ws: Workspace) -> list[dict[str, list[tuple[tuple[str, str], str]]]]:
    grouped: dict[str, list[tuple[tuple[str, str], str]]] = {}
    for key, perm in sorted(ws.effective_permissions().items()):
        grouped.setdefault(key[0], []).append((key, perm))
    return [grouped]


def repository_user_grants(call: Call, params: dict[str, str]) -> Reply | Listing:
    found = _admin_repository(call, params)
    if isinstance(found, Reply):
        return found
    ws, repo = found
    base = f"{call.api}/2.0/repositories/{ws.slug}/{repo.slug}/permissions-config/users"

    def render(row: tuple[str, str]) -> JSON:
        user = call.org.users[row[0]]
        return grant_json(
            "repository_user_permission", row[1], f"{base}/{user.uuid}",
            user=user_json(user, call.api), repository=repository_ref(repo, ws, call.api),
        )  # fmt: skip

    return Listing(sorted(ws.repo_user_grants.get(repo.uuid, {}).items()), render)


def repository_group_grants(call: Call, params: dict[str, str]) -> Reply | Listing:
    found = _admin_repository(call, params)
    if isinstance(found, Reply):
        return found
    ws, repo = found
    base = f"{call.api}/2.0/repositories/{ws.slug}/{repo.slug}/permissions-config/groups"
    rows = [(s, p) for s, p in sorted(ws.repo_group_grants.get(repo.uuid, {}).items())]

    def render(row: tuple[str, str]) -> JSON:
        group = group_json(ws.groups[row[0]], ws, call.api)
        return grant_json(
            "repository_group_permission", row[1], f"{base}/{row[0]}",
            group=group, repository=repository_ref(repo, ws, call.api),
        )  # fmt: skip

    return Listing([r for r in rows if r[0] in ws.groups], render)


def project_user_grants(call: Call, params: dict[str, str]) -> Reply | Listing:
    found = _admin_project(call, params)
    if isinstance(found, Reply):
        return found
    ws, project = found
    base = f"{call.api}/2.0/workspaces/{ws.slug}/projects/{project.key}/permissions-config/users"

    def render(row: tuple[str, str]) -> JSON:
        user = call.org.users[row[0]]
        return grant_json(
            "project_user_permission", row[1], f"{base}/{user.uuid}",
            user=user_json(user, call.api), project=project_ref(project, ws, call.api),
        )  # fmt: skip

    return Listing(sorted(ws.project_user_grants.get(project.uuid, {}).items()), render)


def project_group_grants(call: Call, params: dict[str, str]) -> Reply | Listing:
    found = _admin_project(call, params)
    if isinstance(found, Reply):
        return found
    ws, project = found
    base = f"{call.api}/2.0/workspaces/{ws.slug}/projects/{project.key}/permissions-config/groups"
    rows = sorted(ws.project_group_grants.get(project.uuid, {}).items())

    def render(row: tuple[str, str]) -> JSON:
        group = group_json(ws.groups[row[0]], ws, call.api)
        return grant_json(
            "project_group_permission", row[1], f"{base}/{row[0]}",
            group=group, project=project_ref(project, ws, call.api),
        )  # fmt: skip

    return Listing([r for r in rows if r[0] in ws.groups], render)


def groups_v1(call: Call, params: dict[str, str]) -> Reply | Listing:
    """``/1.0/groups/{slug}``: every group with its members, one unpaginated array."""
    ws = call.org.workspace(params["ws"])
    if ws is not None and params["ws"] != ws.slug:
        ws = None  # 1.0 knows workspaces by slug only
    if ws is None or role_of(call.caller, ws) is None:
        return Reply(404, error_json(f"No workspace with identifier '{params['ws']}'."))
    found = _admin_workspace(call, params)
    if isinstance(found, Reply):
        return found
    return Reply(200, [group_v1_json(ws.groups[s], ws, call.org.users) for s in sorted(ws.groups)])


def hooks(call: Call, params: dict[str, str]) -> Reply | Listing:
    ws = _admin_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    return Listing(sorted(ws.hooks), lambda h: webhook_json(ws.hooks[h], ws, call.api))
