"""Bitbucket's JSON shapes for the simulator's objects (users, workspaces, projects, repositories).

Imports only ``exporter.simulator.org``. ``api`` is the origin the client used (for ``links``);
web links point to bitbucket.org as the real API's do.
"""

from __future__ import annotations

from typing import Any

from exporter.simulator.org import Project, Repository, User, Workspace

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
    return {
        "type": kind,
        "uuid": ws.uuid,
        "slug": ws.slug,
        "name": ws.name,
        "links": {
            "self": _link(f"{api}/2.0/workspaces/{ws.slug}"),
            "html": _link(f"{WEB}/{ws.slug}/"),
            "avatar": _link(f"{WEB}/workspaces/{ws.slug}/avatar/"),
        },
    }


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
            "self": _link(f"{api}/2.0/workspaces/{ws.slug}/projects/{project.key}"),
            "html": _link(f"{WEB}/{ws.slug}/workspace/projects/{project.key}"),
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


def error_json(message: str, detail: str | None = None) -> JSON:
    error: JSON = {"message": message}
    if detail is not None:
        error["detail"] = detail
    return {"type": "error", "error": error}
