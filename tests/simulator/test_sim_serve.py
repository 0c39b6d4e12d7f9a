"""``bbaccess simulate``'s engine: option parsing, the announcement and a clean stop."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from exporter.simulator import ADMIN_EMAIL, ADMIN_TOKEN
from exporter.simulator.serve import fault_plan, parse_latency, serve


@pytest.mark.parametrize(
    ("text", "seconds"), [("100ms", 0.1), ("1.5s", 1.5), ("0", 0.0), (" 250 ms ", 0.25)]
)
def test_parse_latency(text: str, seconds: float) -> None:
    assert parse_latency(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["100", "fast", "-5ms"])
def test_bad_latency(text: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_latency(text)


def test_fault_rate_becomes_5xx_rules() -> None:
    plan = fault_plan(seed=1, latency=0.1, fault_rate=0.03)
    assert plan.latency == 0.1 and {r.status for r in plan.rules} == {500, 502, 503}
    with pytest.raises(ValueError):
        fault_plan(seed=1, latency=0, fault_rate=2)


async def test_serve_announces_answers_and_stops_cleanly() -> None:
    lines: list[str] = []
    task = asyncio.create_task(
        serve(
            preset="small", seed=1, host="127.0.0.1", port=0, latency=0.0,
            rate_limit=(1000, 3600.0), fault_rate=0.0, announce=lines.append,
        )
    )  # fmt: skip
    for _ in range(200):
        if len(lines) >= 5:
            break
        await asyncio.sleep(0.01)
    text = "\n".join(lines)
    assert f"BITBUCKET_EMAIL={ADMIN_EMAIL}" in text and f"BITBUCKET_API_TOKEN={ADMIN_TOKEN}" in text
    url = next(line.split("=", 1)[1] for line in lines if "BITBUCKET_API_URL=" in line)
    headers = {"Authorization": aiohttp.encode_basic_auth(ADMIN_EMAIL, ADMIN_TOKEN)}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/2.0/user/workspaces", headers=headers) as response,
    ):
        assert response.status == 200
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_serve_refuses_other_hosts() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        await serve(
            preset="small", seed=1, host="0.0.0.0", port=0, latency=0.0,
            rate_limit=None, fault_rate=0.0, announce=print,
        )  # fmt: skip
