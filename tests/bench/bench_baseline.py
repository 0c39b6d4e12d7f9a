"""The baseline a user would otherwise write: a sequential ``requests`` client.

It reads the same listings as bbaccess, one page after another, at Bitbucket's default page size
(no ``pagelen``), without ``fields=``, following ``next``, and keeps the rows in memory: per
workspace the workspace, its roles, projects, repositories, effective permissions and
``/1.0/groups``, then the explicit user and group grants of every repository and every project.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from exporter.simulator import ADMIN_EMAIL, ADMIN_TOKEN


@dataclass(frozen=True)
class BaselineResult:
    requests: int
    seconds: float
    rows: int


class _Reader:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.trust_env = False  # 127.0.0.1 only: never through a configured proxy
        self.session.auth = (ADMIN_EMAIL, ADMIN_TOKEN)
        self.requests = 0

    def get(self, url: str) -> Any:
        self.requests += 1
        response = self.session.get(url, timeout=60)
        response.raise_for_status()
        return response.json()

    def listing(self, path: str) -> list[Any]:
        rows: list[Any] = []
        url: str | None = self.base_url + path
        while url:
            page = self.get(url)
            rows += page.get("values", [])
            url = page.get("next")
        return rows


def baseline_snapshot(base_url: str) -> BaselineResult:
    """Read every workspace's listings, then every repository's and project's explicit grants."""
    started = time.perf_counter()
    reader = _Reader(base_url)
    rows = 0
    try:
        for access in reader.listing("/2.0/user/workspaces"):
            slug = quote(access["workspace"]["slug"], safe="")
            reader.get(f"{base_url}/2.0/workspaces/{slug}")
            rows += len(reader.get(f"{base_url}/1.0/groups/{slug}"))
            rows += len(reader.listing(f"/2.0/workspaces/{slug}/permissions"))
            rows += len(reader.listing(f"/2.0/workspaces/{slug}/permissions/repositories"))
            projects = reader.listing(f"/2.0/workspaces/{slug}/projects")
            repositories = reader.listing(f"/2.0/repositories/{slug}")
            rows += len(projects) + len(repositories)
            explicit = [f"/2.0/repositories/{slug}/{quote(r['slug'], safe='')}"
                        for r in repositories]  # fmt: skip
            explicit += [f"/2.0/workspaces/{slug}/projects/{quote(p['key'], safe='')}"
                         for p in projects]  # fmt: skip
            for path in explicit:
                for kind in ("users", "groups"):
                    rows += len(reader.listing(f"{path}/permissions-config/{kind}"))
    finally:
        reader.session.close()
    return BaselineResult(reader.requests, time.perf_counter() - started, rows)
