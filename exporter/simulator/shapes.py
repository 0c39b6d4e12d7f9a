"""Bitbucket's JSON shapes for the simulator's objects: users, workspaces, projects,
repositories, groups, explicit grants, webhooks, and the ``/1.0/groups`` array.

Imports only ``exporter.simulator.org``. ``api`` is the origin the client used (for ``links``);
web links point to bitbucket.org as the real API's do. ``links`` hold only the keys the OpenAPI
document allows where it forbids others (``workspace_base``: self, avatar; ``project``: html,
avatar).
"""

from __future__ import annotations

from typing import Any

from exporter.simulator.org import Group, Project, Repository, User, Webhook, Workspace

WEB = "https://bitbucket.org"
JSON = dict[str, Any]


def _link(href: str) -> JSON:
    return {"href": href}


def user_json(user: User, api: str) -> JSON:
    return {
        "type": "user",
        "uuid": user.uuid,
        "display_name": user.display_name,
        "nickname": user.nickname,
        "account_id": user.account_id,
        "links": {
            "self": _link(f"{api}/2.0/users/{user.uuid}"),
            "html": _link(f"{WEB}/{user.uuid}/"),
            "avatar": _link(f"{WEB}/account/{user.nickname}/avatar/"),
        },
    }


def workspace_ref(ws: Workspace, api: str, *, kind: str = "workspace") -> JSON:
    links = {
        "self": _link(f"{api}/2.0/workspaces/{ws.slug}"),
        "html": _link(f"{WEB}/{ws.slug}/"),
        "avatar": _link(f"{WEB}/workspaces/{ws.slug}/avatar/"),
    }
    if kind == "workspace_base":
        del links["html"]
    return {"type": kind, "uuid": ws.uuid, "slug": ws.slug, "name": ws.name, "links": links}


def workspace_json(ws: Workspace, api: str) -> JSON:
    body = workspace_ref(ws, api)
    body.update(is_private=ws.is_private, created_on=ws.created_on, updated_on=ws.created_on)
    return body


def project_ref(project: Project, ws: Workspace, api: str) -> JSON:
    return {
        "type": "project",
        "uuid": project.uuid,
        "key": project.key,
        "name": project.name,
        "links": {
            "html": _link(f"{WEB}/{ws.slug}/workspace/projects/{project.key}"),
            "avatar": _link(f"{WEB}/{ws.slug}/workspace/projects/{project.key}/avatar"),
        },
    }


def project_json(project: Project, ws: Workspace, api: str) -> JSON:
    body = project_ref(project, ws, api)
    body.update(
        is_private=project.is_private,
        created_on=project.created_on,
        updated_on=project.created_on,
        workspace=workspace_ref(ws, api),
        owner=workspace_ref(ws, api, kind="team"),
    )
    return body


def repository_ref(repo: Repository, ws: Workspace, api: str) -> JSON:
    return {
        "type": "repository",
        "uuid": repo.uuid,
        "name": repo.name,
        "full_name": f"{ws.slug}/{repo.slug}",
        "links": {
            "self": _link(f"{api}/2.0/repositories/{ws.slug}/{repo.slug}"),
            "html": _link(f"{WEB}/{ws.slug}/{repo.slug}"),
        },
    }


def repository_json(repo: Repository, ws: Workspace, api: str) -> JSON:
    body = repository_ref(repo, ws, api)
    body.update(
        slug=repo.slug,
        is_private=repo.is_private,
        scm="git",
        project=project_ref(ws.projects[repo.project_uuid], ws, api),
        workspace=workspace_ref(ws, api),
        created_on=repo.created_on,
        updated_on=repo.created_on,
    )
    return body


def group_json(group: Group, ws: Workspace, api: str) -> JSON:
    return {
        "type": "group",
        "name": group.name,
        "slug": group.slug,
        "full_slug": f"{ws.slug}:{group.slug}",
        "links": {
            "self": _link(f"{api}/2.0/workspaces/{ws.slug}/groups/{group.slug}"),
            "html": _link(f"{WEB}/{ws.slug}/workspace/settings/groups/{group.slug}"),
        },
    }


def grant_json(kind: str, perm: str, self_href: str, **parts: JSON) -> JSON:
    """An explicit grant: ``kind`` is e.g. ``repository_user_permission``; ``parts`` are the
    subject (user or group) and the object (repository or project)."""
    return {"type": kind, "permission": perm, **parts, "links": {"self": _link(self_href)}}


def webhook_json(hook: Webhook, ws: Workspace, api: str) -> JSON:
    return {
        "type": "webhook_subscription",
        "uuid": hook.uuid,
        "url": hook.url,
        "description": hook.description,
        "subject_type": "workspace",
        "subject": workspace_ref(ws, api),
        "active": hook.active,
        "created_at": hook.created_at,
        "events": list(hook.events),
        "secret_set": hook.secret_set,
        "links": {"self": _link(f"{api}/2.0/workspaces/{ws.slug}/hooks/{hook.uuid}")},
    }


def _v1_account(user: User) -> JSON:
    return {
        "display_name": user.display_name,
        "uuid": user.uuid,
        "account_id": user.account_id,
        "nickname": user.nickname,
        "is_team": False,
        "avatar": f"{WEB}/account/{user.nickname}/avatar/32/",
        "resource_uri": f"/1.0/users/{user.uuid}",
    }


def group_v1_json(group: Group, ws: Workspace, users: dict[str, User]) -> JSON:
    """One element of the ``/1.0/groups/{workspace}`` array."""
    owner = {
        "display_name": ws.name,
        "uuid": ws.uuid,
        "nickname": ws.slug,
        "is_team": True,
        "avatar": f"{WEB}/workspaces/{ws.slug}/avatar/",
        "resource_uri": f"/1.0/users/{ws.slug}",
    }
    return {
        "name": group.name,
        "slug": group.slug,
        "permission": None,
        "auto_add": False,
        "email_forwarding_disabled": False,
        "account_privilege": None,
        "owner": owner,
        "members": [_v1_account(users[u]) for u in sorted(group.members) if u in users],
    }


def error_json(message: str, detail: str | JSON | None = None) -> JSON:
    error: JSON = {"message": message}
    if detail is not None:
        error["detail"] = detail
    return {"type": "error", "error": error}
