"""BitbucketClient under the faults of the fault matrix, against a local server on 127.0.0.1:
what it retries (and how often at most), what it refuses at once, and the one line it says.

Backoff starts from 0 s and the sleep is recorded, never slept (``RecordingSleep``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from exporter.bitbucket import BitbucketClient, RetryPolicy, parse_error_body, parse_page
from exporter.bitbucket.client import transport_problem
from exporter.errors import FetchFailedError
from tests.client.bb_fake import FakeBitbucket, RecordingSleep, scripted

MakeClient = Callable[..., BitbucketClient]
PATH = "/2.0/workspaces/acme/permissions"
NO_BACKOFF = RetryPolicy(base_delay=0.0)
LOGIN_PAGE = """<!DOCTYPE html>
<html>
  <head><title>
    Sign in to Example Corp
  </title></head>
  <body><form action="/login">...</form></body>
</html>
"""


async def collect(client: BitbucketClient, path: str = PATH) -> list[list[dict[str, Any]]]:
    return [page.values async for page in client.iter_pages(path)]


def html(status: int = 200) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=LOGIN_PAGE, content_type="text/html")

    return handler


async def test_an_html_page_answered_200_fails_at_once_and_says_what_it_is(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    """A proxy or single sign-on gateway answering in the API's place: not retried (it would
    answer the same), and named for what it is."""
    bitbucket.routes[PATH] = html()
    client = make_client(bitbucket.base_url, retry=NO_BACKOFF)
    with pytest.raises(FetchFailedError) as caught:
        await collect(client)
    said = str(caught.value)
    assert said.endswith("page 1: the body is an HTML page, not valid JSON (a proxy or login "
                         "page?), titled 'Sign in to Example Corp'")  # fmt: skip
    assert "\n" not in said and len(bitbucket.seen) == 1
    with pytest.raises(FetchFailedError) as single:
        await client.get_json(PATH)
    assert "the body is an HTML page, not valid JSON (a proxy or login page?)" in str(single.value)


def test_a_body_that_is_neither_json_nor_html_is_still_not_valid_json() -> None:
    with pytest.raises(FetchFailedError) as caught:
        parse_page('{"values": [', url="https://api.example/x", page_number=2)
    assert "page 2: the body is not valid JSON (" in str(caught.value)
    assert "HTML" not in str(caught.value)


async def test_an_error_answer_is_told_in_one_line(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    """An HTML error page, or a body of many lines, never spreads over several lines."""
    bitbucket.routes[PATH] = html(status=400)
    client = make_client(bitbucket.base_url, retry=NO_BACKOFF)
    with pytest.raises(FetchFailedError) as caught:
        await collect(client)
    said = str(caught.value)
    assert "\n" not in said and said.startswith("400 on GET ")
    assert said.endswith(": an HTML page, not valid JSON (a proxy or login page?), titled "
                         "'Sign in to Example Corp'")  # fmt: skip
    assert parse_error_body("line one\n  line two\r\n").message == "line one line two"
    multi = '{"type": "error", "error": {"message": "a\\nb", "detail": "c\\n\\nd"}}'
    assert (parse_error_body(multi).message, parse_error_body(multi).detail) == ("a b", "c d")


async def test_a_5xx_storm_is_retried_and_the_retries_are_bounded(
    bitbucket: FakeBitbucket, make_client: MakeClient, sleep: RecordingSleep
) -> None:
    storm = [(503, {"type": "error", "error": {"message": "busy"}})] * (NO_BACKOFF.attempts - 1)
    bitbucket.routes[PATH] = scripted(*storm, (200, {"values": [{"n": 1}]}))
    client = make_client(bitbucket.base_url, retry=NO_BACKOFF)
    assert await collect(client) == [[{"n": 1}]]
    assert client.stats.retries == NO_BACKOFF.attempts - 1
    assert sleep.delays == [0.0] * (NO_BACKOFF.attempts - 1)

    bitbucket.seen.clear()
    bitbucket.routes[PATH] = scripted((503, "busy"))  # forever
    with pytest.raises(FetchFailedError) as caught:
        await collect(client)
    assert len(bitbucket.seen) == NO_BACKOFF.attempts
    assert str(caught.value).endswith(f"gave up after {NO_BACKOFF.attempts} attempts; last: "
                                      "HTTP 503")  # fmt: skip


async def test_an_answer_cut_short_is_retried_then_named(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    """Content-Length promises the whole page; half comes, then the connection closes."""

    async def cut_short(request: web.Request) -> web.StreamResponse:
        data = b'{"values": [{"n": 1}, {"n": 2}, {"n": 3}]}'
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        assert request.transport is not None
        request.transport.abort()
        return response

    bitbucket.routes[PATH] = cut_short
    client = make_client(bitbucket.base_url, retry=NO_BACKOFF)
    with pytest.raises(FetchFailedError) as caught:
        await collect(client)
    said = str(caught.value)
    assert f"gave up after {NO_BACKOFF.attempts} attempts; last: the answer was cut short (" in said
    assert "\n" not in said and client.stats.requests == NO_BACKOFF.attempts


async def test_a_reset_connection_is_retried_then_named(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        return web.Response(status=500)

    bitbucket.routes[PATH] = reset
    client = make_client(bitbucket.base_url, retry=NO_BACKOFF)
    with pytest.raises(FetchFailedError) as caught:
        await collect(client)
    assert f"gave up after {NO_BACKOFF.attempts} attempts; last: the connection was reset (" \
        in str(caught.value)  # fmt: skip
    assert client.stats.requests == NO_BACKOFF.attempts


def test_each_transport_failure_has_its_own_words() -> None:
    assert transport_problem(TimeoutError()) == "no answer in time (timeout)"
    assert transport_problem(aiohttp.ServerDisconnectedError()).startswith(
        "the connection was reset (ServerDisconnectedError: Server disconnected"
    )
    cut = aiohttp.ClientPayloadError("Response payload is not completed")
    assert transport_problem(cut) == (
        "the answer was cut short (ClientPayloadError: Response payload is not completed)"
    )
