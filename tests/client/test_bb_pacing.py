"""The client's pacing: every request waits on the rate budget, and a 429 pauses every request
of the client (doubling per consecutive 429, capped, reset by a success)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from exporter.bitbucket import BitbucketClient, RateBudget, RetryPolicy
from tests.client.bb_fake import (
    FakeBitbucket,
    FakeClock,
    RecordingSleep,
    most_in_any_window,
    scripted,
)

MakeClient = Callable[..., BitbucketClient]
LIMITED = "Rate limit for this resource has been exceeded"


async def spin(until: Callable[[], bool] = lambda: False, rounds: int = 300) -> None:
    for _ in range(rounds):
        if until():
            return
        await asyncio.sleep(0)


@dataclass
class HeldSleep:
    """A sleep that records its delay and returns only when the test releases it."""

    delays: list[float] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await self.release.wait()


async def test_budget_paces_every_request_including_retries_and_redirects(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep
) -> None:
    clock, sent_at = FakeClock(), list[float]()
    base = bitbucket.base_url

    async def listing(request: web.Request) -> web.StreamResponse:
        sent_at.append(clock())
        number = int(request.query.get("page", "1"))
        body: dict[str, Any] = {"values": [{"n": number}]}
        if number < 6:
            body["next"] = f"{base}/2.0/list?page={number + 1}"
        return web.json_response(body)

    async def moved(request: web.Request) -> web.StreamResponse:
        sent_at.append(clock())
        raise web.HTTPFound(location="/2.0/flaky")

    flaky = scripted((503, "busy"), (200, {"ok": True}))

    async def timed_flaky(request: web.Request) -> web.StreamResponse:
        sent_at.append(clock())
        response: web.StreamResponse = await flaky(request)
        return response

    bitbucket.routes.update({"/2.0/list": listing, "/2.0/moved": moved, "/2.0/flaky": timed_flaky})
    budget = RateBudget(3, 60.0, clock=clock, sleep=clock.sleep)
    client = make_client(base, budget=budget, concurrency=1)
    assert len([page async for page in client.iter_pages("/2.0/list")]) == 6
    assert await client.get_json("/2.0/moved") == {"ok": True}
    # 6 pages, then redirect + 503, and the retry's redirect + 200: 10 requests, 3 a minute,
    # each slot released a minute and a guard of 60 / 3 s after its start
    assert client.stats.requests == budget.acquired == len(sent_at) == 10
    assert most_in_any_window(sent_at, 60.0) == 3
    assert sent_at == [0.0] * 3 + [80.0] * 3 + [160.0] * 3 + [240.0]
    assert client.stats.budget_wait_seconds == sum(clock.slept) == 240.0
    assert client.stats.seconds_slept == sum(sleep.delays) and len(sleep.delays) == 1


async def test_one_budget_is_shared_by_concurrent_requests(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    clock = FakeClock()
    bitbucket.routes["/2.0/x"] = scripted((200, {"ok": True}))
    budget = RateBudget(2, 10.0, clock=clock, sleep=clock.sleep)
    client = make_client(bitbucket.base_url, budget=budget, concurrency=4)
    await asyncio.gather(*(client.get_json("/2.0/x") for _ in range(7)))
    assert budget.acquired == client.stats.requests == 7
    # starts at 0, 0, 15, 15, 30, 30, 45: a window of 10 s and a guard of 10 / 2 s
    assert clock.now == 45.0 == client.stats.budget_wait_seconds


async def test_429_pauses_every_request_of_the_client(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    held = HeldSleep()
    bitbucket.routes["/2.0/a"] = scripted((429, LIMITED), (200, {"a": 1}))
    bitbucket.routes["/2.0/b"] = scripted((200, {"b": 1}))
    client = make_client(bitbucket.base_url, sleep=held)
    first = asyncio.create_task(client.get_json("/2.0/a"))
    await spin(until=lambda: bool(held.delays), rounds=10_000)
    assert held.delays == [60.0]
    # What the progress line's ETA counts: the pause begun, and that it is still on.
    assert client.stats.throttle_seconds == 60.0
    assert client.stats.pause_ends > time.monotonic() + 50
    second = asyncio.create_task(client.get_json("/2.0/b"))
    await spin()
    assert not second.done() and client.stats.requests == 1  # /b waits for the pause too
    held.release.set()
    assert await asyncio.gather(first, second) == [{"a": 1}, {"b": 1}]
    assert [r.path for r in bitbucket.seen] == ["/2.0/a", "/2.0/a", "/2.0/b"]
    assert client.stats.throttled == 1 and client.stats.seconds_slept == 60.0


async def test_429s_to_requests_in_flight_together_share_one_pause(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep
) -> None:
    arrived, both = [0], asyncio.Event()

    def together(path: str) -> Any:
        answers = scripted((429, LIMITED), (200, {"path": path}))

        async def handler(request: web.Request) -> web.StreamResponse:
            arrived[0] += 1
            if arrived[0] == 2:
                both.set()
            await asyncio.wait_for(both.wait(), 5)
            response: web.StreamResponse = await answers(request)
            return response

        return handler

    bitbucket.routes["/2.0/a"] = together("a")
    bitbucket.routes["/2.0/b"] = together("b")
    client = make_client(bitbucket.base_url)
    results = await asyncio.gather(client.get_json("/2.0/a"), client.get_json("/2.0/b"))
    assert results == [{"path": "a"}, {"path": "b"}]
    assert sleep.delays == [60.0]  # one burst, one pause: not 60 then 120
    assert client.stats.throttled == 2 and client.stats.requests == 4


async def test_consecutive_429s_double_and_a_success_resets(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep
) -> None:
    bitbucket.routes["/2.0/a"] = scripted((429, LIMITED), (429, LIMITED), (200, {"a": 1}))
    bitbucket.routes["/2.0/b"] = scripted((429, LIMITED), (200, {"b": 1}))
    client = make_client(bitbucket.base_url, retry=RetryPolicy(throttle_base=5.0))
    assert await client.get_json("/2.0/a") == {"a": 1}
    assert await client.get_json("/2.0/b") == {"b": 1}
    assert sleep.delays == [5.0, 10.0, 5.0]
    assert client.stats.retries == 0 and client.stats.throttled == 3


async def test_429_pauses_are_capped_and_never_use_attempts(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep
) -> None:
    bitbucket.routes["/2.0/a"] = scripted(*[(429, LIMITED)] * 6, (200, {"a": 1}))
    policy = RetryPolicy(attempts=1, throttle_base=1.0, throttle_cap=5.0)
    client = make_client(bitbucket.base_url, retry=policy)
    assert await client.get_json("/2.0/a") == {"a": 1}
    assert sleep.delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize("budgeted", [False, True])
async def test_budget_wait_is_not_counted_as_sleep(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep, budgeted: bool
) -> None:
    clock = FakeClock()
    bitbucket.routes["/2.0/x"] = scripted((200, {}))
    budget = RateBudget(1, 30.0, clock=clock, sleep=clock.sleep) if budgeted else None
    client = make_client(bitbucket.base_url, budget=budget)
    for _ in range(3):
        await client.get_json("/2.0/x")
    assert client.stats.budget_wait_seconds == (120.0 if budgeted else 0.0)  # 2 * (30 + 30)
    assert client.stats.seconds_slept == 0.0 and sleep.delays == []
