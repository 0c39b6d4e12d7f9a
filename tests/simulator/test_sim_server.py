"""The simulator over HTTP on loopback: paging, fields, auth, 410s, rate limit and faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from exporter.simulator import (
    ADMIN_EMAIL,
    ADMIN_TOKEN,
    MEMBER_EMAIL,
    OAUTH_TOKEN,
    FaultPlan,
    SimulatorHandle,
    generate_org,
    run_simulator,
)
from exporter.simulator.paging import apply_fields
from tests.simulator.conftest import ADMIN, MEMBER, get

PERMS = "/2.0/workspaces/acme/permissions/repositories"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    async with run_simulator(generate_org("small")) as handle:
        yield handle


async def test_paging_default_and_walk(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    status, first = await get(session, sim.base_url + PERMS)
    assert status == 200 and first["pagelen"] == 10 and len(first["values"]) == 10
    assert first["next"].startswith(sim.base_url + PERMS + "?")
    seen: list[tuple[str, str]] = []
    url: str | None = sim.base_url + PERMS + "?pagelen=7"
    while url:
        _, page = await get(session, url)
        seen += [(v["repository"]["uuid"], v["user"]["uuid"]) for v in page["values"]]
        url = page.get("next")
        assert url is None or "pagelen=7" in url
    acme = sim.org.workspace("acme")
    assert acme is not None
    assert sorted(seen) == sorted(acme.effective_permissions()) and len(seen) == first["size"]


async def test_pagelen_limits(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    status, page = await get(session, sim.base_url + PERMS + "?pagelen=100")
    assert status == 200 and len(page["values"]) == min(100, page["size"])
    status, body = await get(session, sim.base_url + PERMS + "?pagelen=101")
    assert status == 400 and body == {"type": "error", "error": {"message": "Invalid pagelen"}}
    _, last = await get(session, sim.base_url + "/2.0/user/workspaces?pagelen=100")
    assert "next" not in last and len(last["values"]) == 3


async def test_next_uses_the_host_the_client_used(session: aiohttp.ClientSession) -> None:
    async with run_simulator(generate_org("small")) as sim:
        url = sim.base_url.replace("127.0.0.1", "localhost") + PERMS
        _, page = await get(session, url)
        assert page["next"].startswith(url)


async def test_fields_whitelist(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    fields = "next,values.permission,values.user.uuid,values.user.display_name"
    _, page = await get(session, f"{sim.base_url}/2.0/workspaces/acme/permissions?fields={fields}")
    assert set(page) == {"next", "values"}
    assert set(page["values"][0]) == {"permission", "user"}
    assert set(page["values"][0]["user"]) == {"uuid", "display_name"}
    assert "fields=" in page["next"]


def test_fields_plus_and_minus() -> None:
    body = {"size": 1, "values": [{"links": {"a": 1}, "user": {"uuid": "u", "links": {}}}]}
    assert apply_fields(body, "-values.links,+values.x") == {
        "size": 1,
        "values": [{"user": {"uuid": "u", "links": {}}}],
    }
    assert apply_fields(body, "values.user.*,-values.user.links") == {
        "values": [{"user": {"uuid": "u"}}]
    }


async def test_auth(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    url = sim.base_url + "/2.0/user/workspaces"
    status, body = await get(session, url, {})
    assert status == 401 and body["type"] == "error"
    wrong = {"Authorization": aiohttp.encode_basic_auth(ADMIN_EMAIL, "nope")}
    assert (await get(session, url, wrong))[0] == 401
    assert (await get(session, url, {"Authorization": f"Bearer {ADMIN_TOKEN}"}))[0] == 401
    status, body = await get(session, url, {"Authorization": f"Bearer {OAUTH_TOKEN}"})
    assert status == 200 and all(v["administrator"] for v in body["values"])
    status, body = await get(session, url, MEMBER)
    assert status == 200 and not any(v["administrator"] for v in body["values"])
    assert (await get(session, sim.base_url + PERMS, MEMBER))[0] == 403
    assert (await get(session, sim.base_url + "/2.0/repositories/acme", MEMBER))[0] == 200
    assert (await get(session, sim.base_url + "/2.0/workspaces/nope"))[0] == 404


async def test_workspace_listings(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    _, ws = await get(session, sim.base_url + "/2.0/workspaces/acme")
    assert ws["slug"] == "acme" and {"uuid", "is_private", "created_on"} <= set(ws)
    _, roles = await get(session, sim.base_url + "/2.0/workspaces/acme/permissions?pagelen=100")
    assert {v["permission"] for v in roles["values"]} >= {"owner", "member"}
    _, members = await get(session, sim.base_url + "/2.0/workspaces/acme/members")
    assert "permission" not in members["values"][0]
    _, projects = await get(session, sim.base_url + "/2.0/workspaces/acme/projects")
    assert projects["values"][0]["type"] == "project"
    _, repos = await get(session, sim.base_url + "/2.0/repositories/acme")
    repo = repos["values"][0]
    assert repo["full_name"] == "acme/" + repo["slug"] and repo["project"]["key"]


@pytest.mark.parametrize(
    "path",
    [
        "/2.0/workspaces",
        "/2.0/user/permissions/workspaces",
        "/2.0/user/permissions/repositories",
        "/2.0/repositories",
    ],
)
async def test_removed_endpoints_answer_410(
    sim: SimulatorHandle, session: aiohttp.ClientSession, path: str
) -> None:
    status, body = await get(session, sim.base_url + path)
    assert status == 410
    assert body["error"]["message"] == "CHANGE-2770 - Functionality has been deprecated"


async def test_rate_limit_rolling_window(session: aiohttp.ClientSession) -> None:
    now = [0.0]
    org = generate_org("small")
    async with run_simulator(org, rate_limit=(2, 60.0), clock=lambda: now[0]) as sim:
        url = sim.base_url + "/2.0/user/workspaces"
        assert [(await get(session, url))[0] for _ in range(2)] == [200, 200]
        async with session.get(url, headers=ADMIN) as response:
            assert response.status == 429 and "Retry-After" not in response.headers
            assert response.content_type == "text/plain"
            assert await response.text() == "Rate limit for this resource has been exceeded"
        assert (await get(session, url, MEMBER))[0] == 200  # another credential
        now[0] = 61.0
        assert (await get(session, url))[0] == 200


async def test_status_and_latency_faults(session: aiohttp.ClientSession) -> None:
    plan = FaultPlan()
    async with run_simulator(generate_org("small"), faults=plan) as sim:
        url = sim.base_url + PERMS
        sim.faults.add("status", path_prefix=PERMS, status=502, times=2)
        sim.faults.add("latency", latency=0.01, times=None)
        assert [(await get(session, url))[0] for _ in range(3)] == [502, 502, 200]
        sim.faults.clear()
        sim.faults.add("status", path_prefix=PERMS, page=2, status=500, times=None)
        assert (await get(session, url))[0] == 200
        assert (await get(session, url + "?page=2"))[0] == 500
        assert sim.request_count == 5 and sim.requests[-1] == PERMS + "?page=2"


async def test_reset_fault(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    # aiohttp retries a GET once when the connection drops: two resets reach the caller
    sim.faults.add("reset", times=2)
    with pytest.raises(aiohttp.ClientError):
        await get(session, sim.base_url + PERMS)
    assert sim.request_count == 2
    assert (await get(session, sim.base_url + PERMS))[0] == 200


async def test_body_faults(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    url = sim.base_url + PERMS
    sim.faults.add("malformed")
    async with session.get(url, headers=ADMIN) as response:
        with pytest.raises(json.JSONDecodeError):
            json.loads(await response.text())
    sim.faults.add("missing_values")
    _, page = await get(session, url)
    assert "values" not in page and "next" in page
    sim.faults.add("foreign_next")
    _, page = await get(session, url)
    assert page["next"].startswith("http://evil.example/2.0/")
    sim.faults.add("repeat_next", page=2)
    _, page = await get(session, url + "?page=2")
    assert page["next"] == url + "?page=2"


async def test_non_member_sees_neither_the_workspace_nor_its_listings(
    session: aiohttp.ClientSession,
) -> None:
    org = generate_org("small")
    member = org.user_by_email(MEMBER_EMAIL)
    acme = org.workspace("acme")
    assert member is not None and acme is not None
    acme.remove_member(member.uuid)
    async with run_simulator(org) as sim:
        _, mine = await get(session, sim.base_url + "/2.0/user/workspaces", MEMBER)
        assert "acme" not in {v["workspace"]["slug"] for v in mine["values"]}
        for path in ("/2.0/workspaces/acme", "/2.0/repositories/acme", PERMS):
            assert (await get(session, sim.base_url + path, MEMBER))[0] == 404
