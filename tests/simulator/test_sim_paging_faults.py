"""Paging limits, q and sort, and the seeded faults (rates, jitter, truncated and slow bodies)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from exporter.simulator import (
    FaultKind,
    FaultPlan,
    SimulatorHandle,
    generate_org,
    run_simulator,
)
from exporter.simulator.faults import unit_draw
from tests.simulator.conftest import ADMIN, get

PERMS = "/2.0/workspaces/acme/permissions/repositories"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    async with run_simulator(
        generate_org("small"), pagelen_limits={"workspace_repository_permissions": 50}
    ) as handle:
        yield handle


async def test_configured_maximum_answers_invalid_pagelen_and_50_works(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    status, body = await get(session, sim.base_url + PERMS + "?pagelen=100")
    assert status == 400 and body["error"]["message"] == "Invalid pagelen"
    status, page = await get(session, sim.base_url + PERMS + "?pagelen=50")
    assert status == 200 and page["pagelen"] == 50 and len(page["values"]) == 50
    assert (await get(session, sim.base_url + "/2.0/repositories/acme?pagelen=100"))[0] == 200
    with pytest.raises(ValueError, match="unknown endpoints"):
        async with run_simulator(generate_org("small"), pagelen_limits={"nope": 5}):
            pass


async def test_envelope_has_size_page_previous(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    _, second = await get(session, sim.base_url + PERMS + "?page=2&pagelen=5")
    assert second["page"] == 2 and second["pagelen"] == 5 and second["size"] > 10
    assert "page=1" in second["previous"] and "page=3" in second["next"]
    _, first = await get(session, sim.base_url + PERMS)
    assert "previous" not in first and first["pagelen"] == 10


async def test_q_compares_permissions_by_rank_and_sort_orders(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    url = sim.base_url + PERMS + '?pagelen=50&q=permission>"read"&sort=-repository.name'
    _, page = await get(session, url)
    assert page["values"] and {v["permission"] for v in page["values"]} <= {"write", "admin"}
    names = [v["repository"]["name"] for v in page["values"]]
    assert names == sorted(names, reverse=True)
    acme = sim.org.workspace("acme")
    assert acme is not None
    expected = sum(1 for p in acme.effective_permissions().values() if p != "read")
    assert page["size"] == expected
    name = next(iter(acme.repositories.values())).name
    _, one = await get(session, f'{sim.base_url}/2.0/repositories/acme?q=name="{name}" OR name="x"')
    assert [v["name"] for v in one["values"]] == [name]
    status, _ = await get(session, sim.base_url + PERMS + "?q=permission>>")
    assert status == 400
    slug = next(iter(acme.repositories.values())).slug
    config = f"{sim.base_url}/2.0/repositories/acme/{slug}/permissions-config/users"
    assert (await get(session, config + "?sort=permission"))[0] == 400


async def test_user_workspaces_administrator_filter(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    _, mine = await get(session, sim.base_url + "/2.0/user/workspaces?administrator=false")
    assert mine["values"] == []
    _, mine = await get(session, sim.base_url + "/2.0/user/workspaces?sort=-workspace.slug")
    slugs = [v["workspace"]["slug"] for v in mine["values"]]
    assert slugs == sorted(slugs, reverse=True)


def _fired(seed: int) -> list[int]:
    plan = FaultPlan(seed=seed)
    plan.add(FaultKind.STATUS, rate=0.3, times=None, endpoint="repositories")
    return [i for i in range(200) if plan.take("/x", 1, endpoint="repositories", url=f"/x?{i}")]


def test_fault_rate_is_deterministic_by_seed_and_per_endpoint() -> None:
    assert _fired(1) == _fired(1) and _fired(1) != _fired(2)
    assert 40 <= len(_fired(1)) <= 80
    plan = FaultPlan(seed=1)
    plan.add(FaultKind.STATUS, times=None, endpoint="repositories")
    assert not plan.take("/x", 1, endpoint="projects")
    jittery = FaultPlan(latency=0.1, jitter=0.05, seed=3)
    delays = {jittery.delay(f"/p?{i}") for i in range(20)}
    assert len(delays) == 20 and all(0.1 <= d < 0.15 for d in delays)
    assert 0 <= unit_draw("a") < 1


async def test_truncated_body_breaks_the_read(
    sim: SimulatorHandle, session: aiohttp.ClientSession
) -> None:
    sim.faults.add(FaultKind.TRUNCATED, endpoint="workspace_repository_permissions")
    with pytest.raises(aiohttp.ClientPayloadError):
        await get(session, sim.base_url + PERMS)
    assert (await get(session, sim.base_url + PERMS))[0] == 200


async def test_slow_body_trickles(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    sim.faults.add(FaultKind.SLOW_BODY, latency=0.16)
    async with session.get(sim.base_url + PERMS, headers=ADMIN) as response:
        started = time.monotonic()
        chunks = [chunk async for chunk in response.content.iter_any()]
        took = time.monotonic() - started
    assert len(chunks) > 2 and took >= 0.1
    assert json.loads(b"".join(chunks))["values"]
