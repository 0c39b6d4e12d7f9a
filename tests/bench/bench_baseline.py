"""The baseline a user would otherwise write: a sequential ``requests`` client.

It reads the same listings as bbaccess, one page after another, at Bitbucket's default page size
(no ``pagelen``), without ``fields=``, following ``next``, and keeps the rows in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

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
    """Read every workspace's roles, projects, repositories and effective permissions."""
    started = time.perf_counter()
    reader = _Reader(base_url)
    rows = 0
    try:
        for access in reader.listing("/2.0/user/workspaces"):
            slug = access["workspace"]["slug"]
            reader.get(f"{base_url}/2.0/workspaces/{slug}")
            for path in (
                f"/2.0/workspaces/{slug}/permissions",
                f"/2.0/workspaces/{slug}/projects",
                f"/2.0/repositories/{slug}",
                f"/2.0/workspaces/{slug}/permissions/repositories",
            ):
                rows += len(reader.listing(path))
    finally:
        reader.session.close()
    return BaselineResult(reader.requests, time.perf_counter() - started, rows)
