"""The simulated Bitbucket endpoints of a workspace's objects, and what every handler shares.

Imports ``exporter.simulator.org``, ``.shapes`` and ``.gate``; knows nothing of aiohttp, faults
or paging (``server`` does those). A handler returns ``Reply`` (one JSON value, any status) or
``Listing`` (items and how to render one; the server filters, sorts and pages it). The handlers
for permissions live in ``access``; the route table in ``routes``.

Visibility rules: every member of a workspace (any role) may read the workspace, its members,
roles, projects and all of its repositories (simpler than Bitbucket, where plain members see only
the repositories they can read). A caller who is not a member gets 404, as for an unknown
workspace. A workspace access token acts as a member of its one workspace, may not call
``/user/*`` and may not read permissions (403). Listings are ordered by uuid (``/user/workspaces``
by slug) unless ``sort=`` says otherwise, so paging is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.gate import ACCESS_TOKEN, Caller
from exporter.simulator.org import Org, Workspace
from exporter.simulator.shapes import (
    JSON,
    error_json,
    project_json,
    repository_json,
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
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Reply:
    status: int
    body: Any  # a JSON object, or the one unpaginated array of /1.0/groups


@dataclass
class Listing:
    items: Sequence[Any]
    render: Callable[[Any], JSON]


Handler = Callable[[Call, dict[str, str]], Reply | Listing]


def cached(call: Call, ws: Workspace, name: str, build: Callable[[], list[Any]]) -> list[Any]:
    """A sorted listing of ``ws``, rebuilt only when the workspace changed."""
    key = (ws.uuid, name)
    hit = call.cache.get(key)
    if hit is None or hit[0] != ws.version:
        hit = (ws.version, build())
        call.cache[key] = hit
    return hit[1]


def role_of(caller: Caller, ws: Workspace) -> str | None:
    """The caller's role in ``ws`` (an access token counts as a member of its own), or None."""
    if caller.kind == ACCESS_TOKEN:
        return "member" if caller.workspace_uuid == ws.uuid else None
    return ws.members.get(caller.user_uuid)


def member_workspace(call: Call, params: dict[str, str]) -> Workspace | Reply:
    """The workspace named in the path if the caller is a member of it, else a 404 reply."""
    ws = call.org.workspace(params["ws"])
    if ws is None or role_of(call.caller, ws) is None:
        return Reply(404, error_json(f"No workspace with identifier '{params['ws']}'."))
    return ws


def forbidden(message: str = "You do not have admin access to this resource.") -> Reply:
    return Reply(403, error_json(message))


ACCESS_TOKEN_FORBIDDEN = "Access tokens cannot read permissions."


def user_workspaces(call: Call, params: dict[str, str]) -> Reply | Listing:
    if call.caller.kind == ACCESS_TOKEN:
        return forbidden("This API is not accessible with access tokens.")
    mine = sorted(
        (ws for ws in call.org.workspaces.values() if call.caller.user_uuid in ws.members),
        key=lambda ws: ws.slug,
    )
    wanted = call.query.get("administrator", "").lower()
    if wanted in ("true", "false"):
        is_admin = wanted == "true"
        mine = [w for w in mine if (w.members[call.caller.user_uuid] == "owner") == is_admin]

    def render(ws: Workspace) -> JSON:
        return {
            "type": "workspace_access",
            "administrator": ws.members[call.caller.user_uuid] == "owner",
            "workspace": workspace_ref(ws, call.api, kind="workspace_base"),
        }

    return Listing(mine, render)


def workspace(call: Call, params: dict[str, str]) -> Reply | Listing:
    ws = member_workspace(call, params)
    return ws if isinstance(ws, Reply) else Reply(200, workspace_json(ws, call.api))


def _memberships(call: Call, params: dict[str, str], *, with_role: bool) -> Reply | Listing:
    ws = member_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    if with_role and call.caller.kind == ACCESS_TOKEN:
        return forbidden(ACCESS_TOKEN_FORBIDDEN)
    rows = cached(call, ws, "members", lambda: sorted(ws.members.items()))
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
    ws = member_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    rows = cached(call, ws, "projects", lambda: sorted(ws.projects))
    return Listing(rows, lambda p: project_json(ws.projects[p], ws, call.api))


def repositories(call: Call, params: dict[str, str]) -> Reply | Listing:
    ws = member_workspace(call, params)
    if isinstance(ws, Reply):
        return ws
    rows = cached(call, ws, "repositories", lambda: sorted(ws.repositories))
    return Listing(rows, lambda r: repository_json(ws.repositories[r], ws, call.api))


def gone(call: Call, params: dict[str, str]) -> Reply | Listing:
    return Reply(410, GONE_BODY)
