"""The fewest requests a snapshot of an org can take, from the org model itself.

Every listing read once at ``pagelen=100``: one request for ``/2.0/user/workspaces``, then per
workspace one for the workspace and ``ceil(n / 100)`` (at least one) for each of its roles,
projects, repositories and effective repository permissions.
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
    """Row counts of every workspace-wide listing a snapshot reads (not the workspace itself)."""
    sizes: list[int] = []
    for ws in org.workspaces.values():
        sizes += [
            len(ws.members),
            len(ws.projects),
            len(ws.repositories),
            len(ws.effective_permissions()),
        ]
    return sizes


def minimum_requests(org: Org, pagelen: int = PAGELEN) -> int:
    """The plan's minimum: every listing read once at ``pagelen`` rows a page."""
    workspaces = pages(len(org.workspaces), pagelen)
    return workspaces + len(org.workspaces) + sum(pages(n, pagelen) for n in listing_sizes(org))


def effective_grants(org: Org) -> int:
    """Effective repository permissions in the org (rows of the largest listing)."""
    return sum(len(ws.effective_permissions()) for ws in org.workspaces.values())
