"""The simulated Bitbucket endpoints: a route table of plain functions from a call to a reply.

Imports ``exporter.simulator.org``, ``.shapes`` and ``.gate``; knows nothing of aiohttp, faults
or paging (``server`` does those). A handler returns ``Reply`` (one JSON object) or ``Listing``
(items and how to render one; the server pages it).

Visibility rules: every member of a workspace (any role) may read the workspace, its members,
projects and all of its repositories (simpler than Bitbucket, where plain members see only the
repositories they can read). Only owners may list effective repository permissions; others get
403. A caller who is not a member gets 404, as for an unknown workspace. Listings are ordered by
uuid (``/user/workspaces`` by slug), so paging is deterministic. ``q`` and ``sort`` are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.gate import Caller
from exporter.simulator.org import Org, Workspace
from exporter.simulator.shapes import (
    JSON,
    error_json,
    project_json,
    repository_json,
    repository_ref,
    user_json,
    workspace_json,
    workspace_ref,
)

GONE_BODY = error_json(
    "CHANGE-2770 - Functionality has been deprecated",
    "Please read the changelog entry for more details.",
)


@dataclass
class Call:
    org: Org
    caller: Caller
    api: str  # the origin the client used, e.g. http://127.0.0.1:54321
    cache: dict[tuple[str, str], tuple[int, list[Any]]] = field(default_factory=dict)


@dataclass
class Reply:
    status: int
    body: JSON


@dataclass
class Listing:
    items: Sequence[Any]
    render: Callable[[Any], JSON]


Handler = Callable[[Call, dict[str, str]], Reply | Listing]


def _cached(call: Call, ws: Workspace, name: str, build: Callable[[], list[Any]]) -> list[Any]:
    """A sorted listing of ``ws``, rebuilt only when the workspace changed."""
    key = (ws.uuid, name)
    hit = call.cache.get(key)
    if hit is None or hit[0] != ws.version:
        hit = (ws.version, build())
        call.cache[key] = hit
    return hit[1]


def _member_workspace(call: Call, params: dict[str, str]) -> Workspace | Reply:
    ws = call.org.workspace(params["ws"])
    if ws is None or call.caller.user_uuid not in ws.members:
        return Reply(404, error_json(f"No workspace with identifier '{params['ws']}'."))
    return ws


def user_workspaces(call: Call, params: dict[str, str]) -> Reply | Listing:
    mine = sorted(
        (ws for ws in call.org.workspaces.values() if call.caller.user_uuid in ws.members),
        key=lambda ws: ws.slug,
    )

    def render(ws: Workspace) -> JSON:
        return {
            "type": "workspace_access",
            "administrator": ws.members[call.caller.user_uuid] == "owner",
            "workspace": workspace_ref(ws, call.api, kind="workspace_base"),
        }

    return Listing(mine, render)


def workspace(call: Call, params: dict[str, str]) -> Reply | Listing:
    ws = _member_workspace(call, params)
    return ws if isinstance(ws, Reply) else Reply(200, workspace_json(ws, call.api))


def _memberships(call: Call, params: dict[str, str], *, with_role: bool) -> Reply | Listing:
    ws = _member_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    rows = _cached(call, ws, "members", lambda: sorted(ws.members.items()))
    where = workspace_ref(ws, call.api)

    def render(row: tuple[str, str]) -> JSON:
        body: JSON = {"type": "workspace_membership"}
        if with_role:
            body["permission"] = row[1]
        body["user"] = user_json(call.org.users[row[0]], call.api)
        body["workspace"] = where
        return body

    return Listing(rows, render)


def permissions(call: Call, params: dict[str, str]) -> Reply | Listing:
    return _memberships(call, params, with_role=True)


def members(call: Call, params: dict[str, str]) -> Reply | Listing:
    return _memberships(call, params, with_role=False)


def projects(call: Call, params: dict[str, str]) -> Reply | Listing:
    ws = _member_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    rows = _cached(call, ws, "projects", lambda: sorted(ws.projects))
    return Listing(rows, lambda p: project_json(ws.projects[p], ws, call.api))


def repositories(call: Call, params: dict[str, str]) -> Reply | Listing:
    ws = _member_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    rows = _cached(call, ws, "repositories", lambda: sorted(ws.repositories))
    return Listing(rows, lambda r: repository_json(ws.repositories[r], ws, call.api))


def repository_permissions(call: Call, params: dict[str, str]) -> Reply | Listing:
    ws = _member_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    slug = params.get("repo")
    repo = ws.repository_by_slug(slug) if slug else None
    if slug and repo is None:
        return Reply(404, error_json(f"Repository {ws.slug}/{slug} not found"))
    effective = ws.effective_permissions()
    is_owner = ws.members[call.caller.user_uuid] == "owner"
    if not is_owner and (
        repo is None or effective.get((repo.uuid, call.caller.user_uuid)) != "admin"
    ):
        return Reply(403, error_json("You do not have admin access to this resource."))
    rows = _cached(call, ws, "effective", lambda: sorted(effective.items()))
    if repo is not None:
        rows = [row for row in rows if row[0][0] == repo.uuid]

    def render(row: tuple[tuple[str, str], str]) -> JSON:
        (repo_uuid, user_uuid), perm = row
        return {
            "type": "repository_permission",
            "permission": perm,
            "user": user_json(call.org.users[user_uuid], call.api),
            "repository": repository_ref(ws.repositories[repo_uuid], ws, call.api),
        }

    return Listing(rows, render)


def gone(call: Call, params: dict[str, str]) -> Reply | Listing:
    return Reply(410, GONE_BODY)


_WS = r"(?P<ws>[^/]+)"
ROUTES: list[tuple[re.Pattern[str], Handler]] = [
    (re.compile(pattern), handler)
    for pattern, handler in [
        (r"/2\.0/user/workspaces/?", user_workspaces),
        (r"/2\.0/(workspaces|user/permissions/workspaces|user/permissions/repositories)/?", gone),
        (r"/2\.0/repositories/?", gone),
        (rf"/2\.0/workspaces/{_WS}/?", workspace),
        (rf"/2\.0/workspaces/{_WS}/permissions/?", permissions),
        (rf"/2\.0/workspaces/{_WS}/members/?", members),
        (rf"/2\.0/workspaces/{_WS}/projects/?", projects),
        (rf"/2\.0/repositories/{_WS}/?", repositories),
        (rf"/2\.0/workspaces/{_WS}/permissions/repositories/?", repository_permissions),
        (
            rf"/2\.0/workspaces/{_WS}/permissions/repositories/(?P<repo>[^/]+)/?",
            repository_permissions,
        ),
    ]
]


def route(path: str) -> tuple[Handler, dict[str, str]] | None:
    """The handler for ``path`` and its path parameters, or None (404)."""
    for pattern, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return handler, {k: v for k, v in match.groupdict().items() if v is not None}
    return None
