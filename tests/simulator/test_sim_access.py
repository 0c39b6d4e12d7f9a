"""Who may read what, scopes, access tokens, explicit grants, /1.0/groups and hooks."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import aiohttp
import pytest

from exporter.simulator import (
    ADMIN_TOKEN,
    SimulatorHandle,
    generate_org,
    run_simulator,
)
from exporter.simulator.generate import new_user
from tests.simulator.conftest import MEMBER, get

ACCESS = {"Authorization": "Bearer sim-access-token"}
DEV_TOKEN = "sim-dev-token"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    org = generate_org("small")
    acme = org.workspace("acme")
    assert acme is not None
    org.access_tokens["sim-access-token"] = acme.uuid
    async with run_simulator(org) as handle:
        yield handle


def _dev(sim: SimulatorHandle) -> tuple[dict[str, str], str, str]:
    """A plain member of acme made admin of one repository by a direct grant."""
    acme = sim.org.workspace("acme")
    assert acme is not None
    user = new_user(random.Random(5), 999, email="dev@example.com")
    sim.org.add_user(user)
    sim.org.api_tokens[DEV_TOKEN] = user.uuid
    acme.set_member(user.uuid, "member")
    repo = sorted(acme.repositories.values(), key=lambda r: r.slug)[0]
    acme.grant_repo_user(repo.uuid, user.uuid, "admin")
    return {"Authorization": aiohttp.encode_basic_auth(user.email, DEV_TOKEN)}, repo.slug, user.uuid


async def test_repository_admin_reads_its_repository_but_not_the_workspace(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    dev, slug, _ = _dev(sim)
    base = sim.base_url
    assert (await get(session, f"{base}/2.0/workspaces/acme/permissions/repositories", dev))[
        0
    ] == 403
    status, page = await get(
        session, f"{base}/2.0/workspaces/acme/permissions/repositories/{slug}", dev
    )
    assert status == 200 and {v["repository"]["full_name"] for v in page["values"]} == {
        f"acme/{slug}"
    }
    for kind in ("users", "groups"):
        url = f"{base}/2.0/repositories/acme/{slug}/permissions-config/{kind}"
        assert (await get(session, url, dev))[0] == 200
        assert (await get(session, url, MEMBER))[0] == 403
    for path in ("/1.0/groups/acme", "/2.0/workspaces/acme/hooks"):
        assert (await get(session, base + path, dev))[0] == 403


async def test_explicit_grants_are_listed_as_granted(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    acme = sim.org.workspace("acme")
    assert acme is not None
    for repo in acme.repositories.values():
        base = f"{sim.base_url}/2.0/repositories/acme/{repo.slug}/permissions-config"
        _, users = await get(session, base + "/users?pagelen=100")
        _, groups = await get(session, base + "/groups?pagelen=100")
        assert {v["user"]["uuid"]: v["permission"] for v in users["values"]} == (
            acme.repo_user_grants.get(repo.uuid, {})
        )
        assert {v["group"]["slug"]: v["permission"] for v in groups["values"]} == (
            acme.repo_group_grants.get(repo.uuid, {})
        )
        assert all(v["group"]["full_slug"].startswith("acme:") for v in groups["values"])
    for project in acme.projects.values():
        base = f"{sim.base_url}/2.0/workspaces/acme/projects/{project.key}/permissions-config"
        _, users = await get(session, base + "/users")
        assert {v["user"]["uuid"]: v["permission"] for v in users["values"]} == (
            acme.project_user_grants.get(project.uuid, {})
        )


async def test_project_admin_through_a_group_reads_the_project_grants(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    dev, _, dev_uuid = _dev(sim)
    acme = sim.org.workspace("acme")
    assert acme is not None
    project = sorted(acme.projects.values(), key=lambda p: p.key)[0]
    url = f"{sim.base_url}/2.0/workspaces/acme/projects/{project.key}/permissions-config/groups"
    assert (await get(session, url, dev))[0] == 403
    group = sorted(acme.groups)[0]
    acme.set_group_member(group, dev_uuid, True)
    acme.grant_project_group(project.uuid, group, "admin")
    status, page = await get(session, url, dev)
    assert status == 200 and group in {v["group"]["slug"] for v in page["values"]}


async def test_groups_v1_is_one_array_by_slug_for_admins_only(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    acme = sim.org.workspace("acme")
    assert acme is not None
    status, groups = await get(session, f"{sim.base_url}/1.0/groups/acme?pagelen=1")
    assert status == 200 and isinstance(groups, list) and len(groups) == len(acme.groups)
    assert {g["slug"]: {m["uuid"] for m in g["members"]} for g in groups} == {
        slug: group.members for slug, group in acme.groups.items()
    }
    assert (await get(session, f"{sim.base_url}/1.0/groups/{acme.uuid}"))[0] == 404
    assert (await get(session, f"{sim.base_url}/1.0/groups/acme", MEMBER))[0] == 403
    status, body = await get(session, f"{sim.base_url}/1.0/groups/acme?q=slug%3D%22x%22")
    assert status == 400 and body["type"] == "error"


async def test_hooks_are_for_owners(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    acme = sim.org.workspace("acme")
    assert acme is not None
    status, page = await get(session, f"{sim.base_url}/2.0/workspaces/acme/hooks")
    assert status == 200 and {v["uuid"] for v in page["values"]} == set(acme.hooks)
    assert (await get(session, f"{sim.base_url}/2.0/workspaces/acme/hooks", MEMBER))[0] == 403


async def test_missing_scope_names_required_and_granted(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    sim.org.token_scopes[ADMIN_TOKEN] = frozenset({"read:workspace:bitbucket"})
    assert (await get(session, f"{sim.base_url}/2.0/workspaces/acme/permissions"))[0] == 200
    status, body = await get(session, f"{sim.base_url}/2.0/workspaces/acme/projects")
    assert status == 403
    assert body["error"]["detail"] == {
        "required": ["read:project:bitbucket"],
        "granted": ["read:workspace:bitbucket"],
    }


async def test_access_token_reads_objects_but_never_permissions(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    base = sim.base_url
    assert (await get(session, f"{base}/2.0/repositories/acme", ACCESS))[0] == 200
    assert (await get(session, f"{base}/2.0/repositories/globex", ACCESS))[0] == 404
    acme = sim.org.workspace("acme")
    assert acme is not None
    slug = next(iter(acme.repositories.values())).slug
    for path in (
        "/2.0/workspaces/acme/permissions",
        "/2.0/workspaces/acme/permissions/repositories",
        f"/2.0/workspaces/acme/permissions/repositories/{slug}",
        f"/2.0/repositories/acme/{slug}/permissions-config/users",
        "/1.0/groups/acme",
        "/2.0/user/workspaces",
    ):
        assert (await get(session, base + path, ACCESS))[0] == 403, path


async def test_401_bodies(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    for headers in ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"Authorization": "Digest x"}):
        async with session.get(sim.base_url + "/2.0/user/workspaces", headers=headers) as r:
            assert r.status == 401 and "WWW-Authenticate" in r.headers
            assert (await r.json())["type"] == "error"
