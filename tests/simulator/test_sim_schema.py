"""Every JSON answer of every endpoint validates against openapi-v3.json, except where the
document is wrong, and then the gap is named (``SPEC_GAPS`` in ``tests.simulator.openapi``).

Every page at ``small`` (default pagelen) and ``medium`` (pagelen 100); at ``large``, the first
two pages of every listing and three sampled repositories and projects per workspace.
"""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import jsonschema

from exporter.simulator import (
    ADMIN_TOKEN,
    Org,
    SimulatorHandle,
    generate_org,
    run_simulator,
)
from exporter.simulator.org import Workspace
from tests.simulator.conftest import ADMIN, MEMBER, get
from tests.simulator.openapi import (
    GROUPS_V1_SCHEMA,
    SPEC_GAPS,
    declared_properties,
    errors,
    response_schema,
    spec,
    validate,
)


class Crawl:
    """Walks listings page by page, validating each page against its documented schema."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        sim: SimulatorHandle,
        pagelen: int | None,
        max_pages: int | None = None,
    ):
        self.session, self.sim, self.pagelen, self.max_pages = session, sim, pagelen, max_pages
        self.pages: dict[str, int] = {}  # schema -> pages validated

    async def one(self, path: str, spec_path: str) -> Any:
        status, body = await get(self.session, self.sim.base_url + path)
        assert status == 200, (path, body)
        name = response_schema(spec_path)
        validate(name, body)
        self.pages[name] = self.pages.get(name, 0) + 1
        return body

    async def listing(self, path: str, spec_path: str) -> list[Any]:
        url: str | None = path + (f"?pagelen={self.pagelen}" if self.pagelen else "")
        values: list[Any] = []
        pages = 0
        while url and (self.max_pages is None or pages < self.max_pages):
            page = await self.one(url.removeprefix(self.sim.base_url), spec_path)
            values += page["values"]
            url, pages = page.get("next"), pages + 1
        return values


async def _crawl_workspace(
    crawl: Crawl, ws: Workspace, repos: list[str], projects: list[str]
) -> None:
    w = "/workspaces/{workspace}"
    await crawl.one(f"/2.0/workspaces/{ws.slug}", w)
    for tail in ("members", "permissions", "projects", "permissions/repositories", "hooks"):
        await crawl.listing(f"/2.0/workspaces/{ws.slug}/{tail}", f"{w}/{tail}")
    await crawl.listing(f"/2.0/repositories/{ws.slug}", "/repositories/{workspace}")
    for slug in repos:
        await crawl.listing(
            f"/2.0/workspaces/{ws.slug}/permissions/repositories/{slug}",
            f"{w}/permissions/repositories/{{repo_slug}}",
        )
        for kind in ("users", "groups"):
            await crawl.listing(
                f"/2.0/repositories/{ws.slug}/{slug}/permissions-config/{kind}",
                f"/repositories/{{workspace}}/{{repo_slug}}/permissions-config/{kind}",
            )
    for key in projects:
        for kind in ("users", "groups"):
            await crawl.listing(
                f"/2.0/workspaces/{ws.slug}/projects/{key}/permissions-config/{kind}",
                f"{w}/projects/{{project_key}}/permissions-config/{kind}",
            )
    status, groups = await get(crawl.session, f"{crawl.sim.base_url}/1.0/groups/{ws.slug}")
    assert status == 200
    jsonschema.validate(groups, GROUPS_V1_SCHEMA)  # gap: groups_v1_not_in_document


async def _crawl(
    session: aiohttp.ClientSession, org: Org, pagelen: int | None, sample: int
) -> Crawl:
    rng = random.Random(0)
    async with run_simulator(org) as sim:
        crawl = Crawl(session, sim, pagelen, max_pages=2 if sample else None)
        await crawl.listing("/2.0/user/workspaces", "/user/workspaces")
        for ws in org.workspaces.values():
            repos = sorted(r.slug for r in ws.repositories.values())
            projects = sorted(p.key for p in ws.projects.values())
            if sample:
                repos, projects = rng.sample(repos, sample), rng.sample(projects, sample)
            await _crawl_workspace(crawl, ws, repos, projects)
    return crawl


async def test_every_page_validates_at_small(session: aiohttp.ClientSession) -> None:
    crawl = await _crawl(session, generate_org("small"), None, 0)
    assert crawl.pages["paginated_repository_permissions"] > 30
    assert len(crawl.pages) == 11  # every documented 200 schema of the endpoints we serve


async def test_every_page_validates_at_medium(session: aiohttp.ClientSession) -> None:
    crawl = await _crawl(session, generate_org("medium"), 100, 0)
    assert crawl.pages["paginated_repository_user_permissions"] >= 300


async def test_a_sample_validates_at_large(session: aiohttp.ClientSession) -> None:
    crawl = await _crawl(session, generate_org("large"), 100, 3)
    assert crawl.pages["paginated_repository_permissions"] == 5 * (2 + 3)


def test_gap_workspace_membership_lacks_permission() -> None:
    assert "permission" not in declared_properties("workspace_membership"), SPEC_GAPS[
        "workspace_membership_lacks_permission"
    ]


async def test_error_bodies_validate(session: aiohttp.ClientSession) -> None:
    async with run_simulator(generate_org("small")) as sim:
        perms = f"{sim.base_url}/2.0/workspaces/acme/permissions/repositories"
        cases = [
            (f"{sim.base_url}/2.0/user/workspaces", {}, 401),
            (perms, MEMBER, 403),
            (f"{sim.base_url}/2.0/workspaces/nope", ADMIN, 404),
            (f"{perms}?pagelen=101", ADMIN, 400),
            (f"{sim.base_url}/2.0/repositories", ADMIN, 410),  # gap: removed_endpoints_...
            (f"{sim.base_url}/2.0/workspaces", ADMIN, 410),
        ]
        for url, headers, expected in cases:
            status, body = await get(session, url, headers)
            assert status == expected
            validate("error", body)
    assert "200" in spec()["paths"]["/workspaces"]["get"]["responses"], SPEC_GAPS[
        "removed_endpoints_still_documented"
    ]


async def test_gap_scope_error_detail_is_an_object(session: aiohttp.ClientSession) -> None:
    org = generate_org("small")
    org.token_scopes[ADMIN_TOKEN] = frozenset({"read:workspace:bitbucket"})
    async with run_simulator(org) as sim:
        status, body = await get(session, sim.base_url + "/2.0/repositories/acme")
    assert status == 403 and isinstance(body["error"]["detail"], dict)
    assert errors("error", body) == [
        f"error/detail: {body['error']['detail']!r} is not of type 'string'"
    ], SPEC_GAPS["scope_error_detail_is_an_object"]
    validate("error", {**body, "error": {**body["error"], "detail": "as a string it is valid"}})
