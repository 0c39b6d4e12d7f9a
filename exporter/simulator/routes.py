"""The route table: which path goes to which handler, with the scopes it needs and its paging.

Imports ``exporter.simulator.endpoints`` and ``.access``. Scopes are those the OpenAPI document
names for each operation (``x-atlassian-oauth2-scopes``); ``/1.0/groups`` is not in the document
and is given ``read:workspace:bitbucket``. ``queryable`` is False where Bitbucket accepts no ``q``
or ``sort`` (``permissions-config``, ``/1.0/groups``): asking there is a 400. ``max_pagelen`` is
the endpoint's own maximum (100 unless a server is configured with less for it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporter.simulator import access, endpoints
from exporter.simulator.endpoints import Handler

WORKSPACE = "read:workspace:bitbucket"
PROJECT = "read:project:bitbucket"
REPOSITORY = "read:repository:bitbucket"
WEBHOOK = "read:webhook:bitbucket"


@dataclass(frozen=True)
class Endpoint:
    name: str
    pattern: re.Pattern[str]
    handler: Handler
    scopes: tuple[str, ...] = ()
    queryable: bool = True


_WS = r"(?P<ws>[^/]+)"
_REPO = rf"/2\.0/repositories/{_WS}/(?P<repo>[^/]+)/permissions-config"
_PROJECT = rf"/2\.0/workspaces/{_WS}/projects/(?P<key>[^/]+)/permissions-config"
_TABLE: list[tuple[str, str, Handler, tuple[str, ...], bool]] = [
    ("user_workspaces", r"/2\.0/user/workspaces/?", endpoints.user_workspaces, (WORKSPACE,), True),
    ("gone", r"/2\.0/(workspaces|repositories|user/permissions/(workspaces|repositories))/?",
     endpoints.gone, (), True),
    ("workspace", rf"/2\.0/workspaces/{_WS}/?", endpoints.workspace, (WORKSPACE,), True),
    ("permissions", rf"/2\.0/workspaces/{_WS}/permissions/?", endpoints.permissions,
     (WORKSPACE,), True),
    ("members", rf"/2\.0/workspaces/{_WS}/members/?", endpoints.members, (WORKSPACE,), True),
    ("projects", rf"/2\.0/workspaces/{_WS}/projects/?", endpoints.projects, (PROJECT,), True),
    ("repositories", rf"/2\.0/repositories/{_WS}/?", endpoints.repositories, (REPOSITORY,), True),
    ("workspace_repository_permissions", rf"/2\.0/workspaces/{_WS}/permissions/repositories/?",
     access.workspace_repository_permissions, (REPOSITORY,), True),
    ("repository_permissions",
     rf"/2\.0/workspaces/{_WS}/permissions/repositories/(?P<repo>[^/]+)/?",
     access.repository_permissions, (REPOSITORY,), True),
    ("repository_user_grants", rf"{_REPO}/users/?", access.repository_user_grants,
     (REPOSITORY,), False),
    ("repository_group_grants", rf"{_REPO}/groups/?", access.repository_group_grants,
     (REPOSITORY,), False),
    ("project_user_grants", rf"{_PROJECT}/users/?", access.project_user_grants, (PROJECT,), False),
    ("project_group_grants", rf"{_PROJECT}/groups/?", access.project_group_grants,
     (PROJECT,), False),
    ("groups_v1", rf"/1\.0/groups/{_WS}/?", access.groups_v1, (WORKSPACE,), False),
    ("hooks", rf"/2\.0/workspaces/{_WS}/hooks/?", access.hooks, (WEBHOOK,), True),
]  # fmt: skip
ENDPOINTS = [Endpoint(n, re.compile(p), h, s, q) for n, p, h, s, q in _TABLE]
ENDPOINT_NAMES = frozenset(e.name for e in ENDPOINTS)


def route(path: str) -> tuple[Endpoint, dict[str, str]] | None:
    """The endpoint for ``path`` and its path parameters, or None (404)."""
    for endpoint in ENDPOINTS:
        match = endpoint.pattern.fullmatch(path)
        if match:
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            return endpoint, params
    return None
