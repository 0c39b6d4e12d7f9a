"""The fewest requests a snapshot of an org can take, from the org model itself.

Every listing read once at ``pagelen=100``: one request for ``/2.0/user/workspaces``, then per
workspace one for the workspace, one for ``/1.0/groups`` (one unpaginated array) and
``ceil(n / 100)`` (at least one) for each of its roles, projects, repositories and effective
repository permissions: the *workspace-wide* listings. Then the *per-object* scopes: the explicit
user and group grants (``permissions-config/users`` and ``/groups``) of every repository and
every project, ``ceil(n / 100)`` (at least one) each.
"""

from __future__ import annotations

import math

from exporter.simulator import Org

PAGELEN = 100
#: Bitbucket's default page size, what a client that does not ask gets.
DEFAULT_PAGELEN = 10


def pages(rows: int, pagelen: int) -> int:
    """Requests to read a listing of ``rows`` rows (an empty listing still takes one)."""
    return max(1, math.ceil(rows / pagelen))


def listing_sizes(org: Org) -> list[int]:
    """Row counts of every paged workspace-wide listing a snapshot reads (not the workspace
    itself, not ``/1.0/groups``, which is one request)."""
    sizes: list[int] = []
    for ws in org.workspaces.values():
        sizes += [
            len(ws.members),
            len(ws.projects),
            len(ws.repositories),
            len(ws.effective_permissions()),
        ]
    return sizes


def explicit_sizes(org: Org) -> list[int]:
    """Row counts of every per-object listing: the user and the group grants of each repository
    and each project (a grant to a group that no longer exists is not listed)."""
    sizes: list[int] = []
    for ws in org.workspaces.values():
        for users, groups, objects in (
            (ws.repo_user_grants, ws.repo_group_grants, ws.repositories),
            (ws.project_user_grants, ws.project_group_grants, ws.projects),
        ):
            for uuid in objects:
                listed = [g for g in groups.get(uuid, {}) if g in ws.groups]
                sizes += [len(users.get(uuid, {})), len(listed)]
    return sizes


def workspace_wide_minimum(org: Org, pagelen: int = PAGELEN) -> int:
    """Requests of the workspace-wide listings, ``/2.0/user/workspaces`` included."""
    workspaces = pages(len(org.workspaces), pagelen)
    per_workspace = 2 * len(org.workspaces)  # the workspace and /1.0/groups
    return workspaces + per_workspace + sum(pages(n, pagelen) for n in listing_sizes(org))


def per_object_minimum(org: Org, pagelen: int = PAGELEN) -> int:
    """Requests of every per-object scope (the explicit grants), each read whole once."""
    return sum(pages(n, pagelen) for n in explicit_sizes(org))


def per_object_scopes(org: Org) -> int:
    """Per-object scopes of the org: two per repository and two per project."""
    return 2 * sum(len(ws.repositories) + len(ws.projects) for ws in org.workspaces.values())


def minimum_requests(org: Org, pagelen: int = PAGELEN) -> int:
    """The plan's minimum for a night that reads everything: every workspace-wide listing and
    every per-object scope read once at ``pagelen`` rows a page."""
    return workspace_wide_minimum(org, pagelen) + per_object_minimum(org, pagelen)


def effective_grants(org: Org) -> int:
    """Effective repository permissions in the org (rows of the largest listing)."""
    return sum(len(ws.effective_permissions()) for ws in org.workspaces.values())
