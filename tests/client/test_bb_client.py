"""BitbucketClient against a local server on 127.0.0.1 (and aioresponses for faults)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from exporter.bitbucket import BasicAuth, BearerAuth, BitbucketClient, RetryPolicy
from exporter.errors import (
    AuthenticationError,
    ConfigError,
    FetchFailedError,
    ForbiddenError,
    GoneError,
    UnsafeUrlError,
)
from tests.client.bb_fake import EMAIL, TOKEN, FakeBitbucket, RecordingSleep, scripted

MakeClient = Callable[..., BitbucketClient]
PATH = "/2.0/workspaces/acme/permissions"


def error_body(message: str, detail: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message}
    if detail is not None:
        error["detail"] = detail
    return {"type": "error", "error": error}


def paged(base: str, pages: list[list[dict[str, Any]]], nexts: Sequence[str | None]) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        number = int(request.query.get("page", "1"))
        body: dict[str, Any] = {"pagelen": 100, "values": pages[number - 1]}
        if nexts[number - 1] is not None:
            body["next"] = base + str(nexts[number - 1])
        return web.json_response(body)

    return handler


async def collect(client: BitbucketClient, path: str = PATH) -> list[list[dict[str, Any]]]:
    return [page.values async for page in client.iter_pages(path)]


async def test_follows_next_and_asks_pagelen_100(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    pages = [[{"n": 1}, {"n": 2}], [{"n": 3}], [{"n": 4}]]
    nexts = [f"{PATH}?pagelen=100&page=2", f"{PATH}?pagelen=100&page=3", None]
    bitbucket.routes[PATH] = paged(bitbucket.base_url, pages, nexts)
    client = make_client(bitbucket.base_url)
    seen = [p async for p in client.iter_pages(PATH, params={"fields": "next,values.n"})]
    assert [p.values for p in seen] == pages
    assert [p.number for p in seen] == [1, 2, 3]
    first = bitbucket.seen[0]
    assert first.query["pagelen"] == "100" and first.query["fields"] == "next,values.n"
    assert client.stats.requests == 3


async def test_basic_header_sent_is_email_and_token(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    bitbucket.routes[PATH] = paged(bitbucket.base_url, [[]], [None])
    await collect(make_client(bitbucket.base_url))
    expected = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    assert bitbucket.seen[0].headers["Authorization"] == f"Basic {expected}"


async def test_stops_on_repeated_next(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    nexts = [f"{PATH}?pagelen=100&page=2", f"{PATH}?pagelen=100&page=2"]
    bitbucket.routes[PATH] = paged(bitbucket.base_url, [[{"n": 1}], [{"n": 2}]], nexts)
    assert await collect(make_client(bitbucket.base_url)) == [[{"n": 1}], [{"n": 2}]]
    assert len(bitbucket.seen) == 2


async def test_stops_on_empty_page(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    nexts = [f"{PATH}?page=2", f"{PATH}?page=3", None]
    bitbucket.routes[PATH] = paged(bitbucket.base_url, [[{"n": 1}], [], [{"n": 3}]], nexts)
    assert await collect(make_client(bitbucket.base_url)) == [[{"n": 1}], []]
    assert len(bitbucket.seen) == 2


async def test_foreign_next_is_refused_and_gets_no_request(
    bitbucket: FakeBitbucket, elsewhere: FakeBitbucket, make_client: MakeClient
) -> None:
    foreign = f"{elsewhere.base_url}{PATH}?page=2"

    async def first(request: web.Request) -> web.StreamResponse:
        return web.json_response({"values": [{"n": 1}], "next": foreign})

    bitbucket.routes[PATH] = first
    with pytest.raises(UnsafeUrlError) as caught:
        await collect(make_client(bitbucket.base_url))
    assert elsewhere.base_url in str(caught.value)
    assert elsewhere.seen == []


async def test_redirects_same_origin_followed_foreign_refused(
    bitbucket: FakeBitbucket, elsewhere: FakeBitbucket, make_client: MakeClient
) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location="/2.0/new-home")

    async def away(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(location=f"{elsewhere.base_url}/steal")

    bitbucket.routes["/2.0/old-home"] = moved
    bitbucket.routes["/2.0/new-home"] = scripted((200, {"ok": True}))
    bitbucket.routes["/2.0/away"] = away
    client = make_client(bitbucket.base_url)
    assert await client.get_json("/2.0/old-home") == {"ok": True}
    assert "Authorization" in bitbucket.seen[-1].headers
    with pytest.raises(UnsafeUrlError):
        await client.get_json("/2.0/away")
    assert elsewhere.seen == []


async def test_retries_5xx_then_succeeds(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep
) -> None:
    bitbucket.routes[PATH] = scripted(
        (503, "busy"),
        (502, "bad gateway"),
        (200, {"values": [{"n": 1}]}),
    )
    client = make_client(bitbucket.base_url, retry=RetryPolicy(base_delay=2.0))
    assert await collect(client) == [[{"n": 1}]]
    assert client.stats.retries == 2 and client.stats.requests == 3
    assert len(sleep.delays) == 2
    assert 0 <= sleep.delays[0] <= 2.0 and 0 <= sleep.delays[1] <= 4.0
    assert client.stats.seconds_slept == pytest.approx(sum(sleep.delays))


async def test_gives_up_after_attempts(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep
) -> None:
    bitbucket.routes[PATH] = scripted((500, "oops"))
    client = make_client(bitbucket.base_url)
    with pytest.raises(FetchFailedError) as caught:
        await collect(client)
    assert client.stats.requests == 5 and len(sleep.delays) == 4
    assert PATH in str(caught.value) and "5 attempts" in str(caught.value)
    assert caught.value.status == 500


async def test_retries_connection_reset_and_timeout(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep
) -> None:
    bitbucket.routes[PATH] = scripted((200, {"values": [{"n": 1}]}))
    first = f"{bitbucket.base_url}{PATH}?pagelen=100"
    # The faults are injected; once used up, the request reaches the local server.
    with aioresponses(passthrough_unmatched=True) as mocked:
        mocked.get(first, exception=aiohttp.ServerDisconnectedError())
        mocked.get(first, exception=TimeoutError())
        mocked.get(first, exception=aiohttp.ClientPayloadError("payload is not completed"))
        client = make_client(bitbucket.base_url)
        assert await collect(client) == [[{"n": 1}]]
    assert client.stats.retries == 3 and len(sleep.delays) == 3
    assert len(bitbucket.seen) == 1


async def test_429_waits_doubling_capped_without_using_attempts(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep
) -> None:
    limited = "Rate limit for this resource has been exceeded"
    bitbucket.routes[PATH] = scripted(
        *[(429, limited) for _ in range(4)],
        (200, {"values": [{"n": 1}]}),
    )
    policy = RetryPolicy(attempts=2, throttle_base=60.0, throttle_cap=200.0)
    client = make_client(bitbucket.base_url, retry=policy)
    assert await collect(client) == [[{"n": 1}]]
    assert sleep.delays == [60.0, 120.0, 200.0, 200.0]
    assert client.stats.throttled == 4 and client.stats.retries == 0
    assert client.stats.seconds_slept == 580.0


async def test_endless_429_fails_after_generous_bound(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep
) -> None:
    bitbucket.routes[PATH] = scripted((429, "slow down"))
    client = make_client(bitbucket.base_url, retry=RetryPolicy(max_throttles=3))
    with pytest.raises(FetchFailedError, match="429"):
        await collect(client)
    assert len(sleep.delays) == 3


@pytest.mark.parametrize(
    ("auth", "mode"),
    [
        (BasicAuth(EMAIL, TOKEN), "HTTP Basic as admin@example.com"),
        (BearerAuth(TOKEN), "Bearer token (BITBUCKET_ACCESS_TOKEN)"),
    ],
)
async def test_401_names_the_mode_never_the_token(
    bitbucket: FakeBitbucket, make_client: MakeClient, auth: BasicAuth | BearerAuth, mode: str
) -> None:
    bitbucket.routes[PATH] = scripted((401, "Unauthorized"))
    client = make_client(bitbucket.base_url, auth=auth)
    with pytest.raises(AuthenticationError) as caught:
        await collect(client)
    text = str(caught.value)
    assert mode in text and "refused the credential" in text
    assert TOKEN not in text and TOKEN not in repr(client)
    assert client.stats.requests == 1


async def test_403_names_the_missing_scope(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    body = error_body(
        "Your credentials lack one or more required privilege scopes.",
        {"required": ["read:permission:bitbucket"], "granted": ["read:workspace:bitbucket"]},
    )
    bitbucket.routes[PATH] = scripted((403, body))
    with pytest.raises(ForbiddenError, match="read:permission:bitbucket") as caught:
        await collect(make_client(bitbucket.base_url))
    assert caught.value.outcome == "forbidden" and caught.value.status == 403


async def test_404_is_forbidden(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    with pytest.raises(ForbiddenError, match="not visible"):
        await make_client(bitbucket.base_url).get_json("/2.0/workspaces/secret")


async def test_410_names_the_change(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    body = error_body(
        "CHANGE-2770 - Functionality has been deprecated",
        "Please read the changelog entry for more details.",
    )
    bitbucket.routes["/2.0/workspaces"] = scripted((410, body))
    with pytest.raises(GoneError, match="CHANGE-2770"):
        await collect(make_client(bitbucket.base_url), "/2.0/workspaces")


async def test_400_fails_with_the_body_message(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    bitbucket.routes[PATH] = scripted((400, error_body("Invalid field name: bogus")))
    with pytest.raises(FetchFailedError, match="Invalid field name: bogus"):
        await collect(make_client(bitbucket.base_url))


async def test_invalid_pagelen_falls_back_to_50(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query["pagelen"] == "100":
            return web.json_response(error_body("Invalid pagelen"), status=400)
        return web.json_response({"values": [{"n": 1}]})

    bitbucket.routes[PATH] = handler
    assert await collect(make_client(bitbucket.base_url)) == [[{"n": 1}]]
    assert [r.query["pagelen"] for r in bitbucket.seen] == ["100", "50"]


async def test_malformed_json_names_endpoint_and_page_without_retry(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "page" not in request.query:
            return web.json_response({"values": [{"n": 1}], "next": f"{base}{PATH}?page=2"})
        return web.Response(text='{"values": [', content_type="application/json")

    base = bitbucket.base_url
    bitbucket.routes[PATH] = handler
    client = make_client(base)
    with pytest.raises(FetchFailedError) as caught:
        await collect(client)
    assert f"{base}{PATH}?page=2" in str(caught.value) and "page 2" in str(caught.value)
    assert client.stats.requests == 2 and client.stats.retries == 0


async def test_http_base_url_refused_unless_loopback(session: aiohttp.ClientSession) -> None:
    auth = BasicAuth(EMAIL, TOKEN)
    with pytest.raises(ConfigError, match="http://"):
        BitbucketClient(session, base_url="http://api.bitbucket.org", auth=auth)
    BitbucketClient(session, base_url="http://localhost:8080", auth=auth)
    BitbucketClient(session, base_url="https://api.bitbucket.org", auth=auth)


async def test_absolute_url_to_another_origin_is_refused(make_client: MakeClient) -> None:
    client = make_client("https://api.bitbucket.org")
    with pytest.raises(UnsafeUrlError):
        await client.get_json("https://evil.example.com/2.0/user")


async def test_concurrency_is_bounded(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    in_flight, release = [0], asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        in_flight[0] += 1
        await release.wait()
        return web.json_response({"values": []})

    bitbucket.routes[PATH] = handler
    client = make_client(bitbucket.base_url, concurrency=2)
    tasks = [asyncio.create_task(client.get_json(PATH)) for _ in range(5)]
    for _ in range(1000):
        if in_flight[0] >= 2:
            break
        await asyncio.sleep(0)
    for _ in range(200):
        await asyncio.sleep(0)
    assert in_flight[0] == 2 and client.stats.requests == 2
    release.set()
    assert await asyncio.gather(*tasks) == [{"values": []}] * 5
