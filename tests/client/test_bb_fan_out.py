"""Listings: concurrent reading of known pages when the first page reports ``size``, following
``next`` otherwise, repeated rows dropped, and the pagelen fallback remembered per endpoint."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from exporter.bitbucket import BitbucketClient, Page
from exporter.bitbucket.fan_out import read_in_order
from exporter.bitbucket.pagination import SeenRows, fan_out_urls
from exporter.errors import ForbiddenError, UnsafeUrlError
from tests.client.bb_fake import FakeBitbucket

MakeClient = Callable[..., BitbucketClient]
PATH = "/2.0/repositories/acme"
FIELDS = "next,values.uuid"
BASE = "https://api.bitbucket.org"


@dataclass
class Listing:
    """A server-side listing: ``pagelen`` rows a page whatever is asked, like a capped endpoint.

    Its ``next`` puts ``page`` between ``fields`` and ``pagelen``, with the fields' commas raw.
    """

    base: str
    rows: list[dict[str, Any]]
    pagelen: int = 2
    report_size: bool = True
    size: int | None = None  # the size reported, if not len(rows)
    empty_from: int | None = None  # pages from here on come back empty (rows were removed)
    hold_page: int | None = None  # this page answers only once the last page was asked for
    in_flight: int = 0
    most_in_flight: int = 0
    asked: list[str] = field(default_factory=list)
    last_asked: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last(self) -> int:
        return -(-len(self.rows) // self.pagelen)

    def next_url(self, number: int, fields: str) -> str:
        return f"{self.base}{PATH}?fields={fields}&page={number}&pagelen={self.pagelen}"

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        number = int(request.query.get("page", "1"))
        self.asked.append(request.query_string)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if number == self.last:
            self.last_asked.set()
        if number == self.hold_page:
            await asyncio.wait_for(self.last_asked.wait(), 5)
        for _ in range(3):
            await asyncio.sleep(0)
        self.in_flight -= 1
        start = (number - 1) * self.pagelen
        values = self.rows[start : start + self.pagelen]
        if self.empty_from is not None and number >= self.empty_from:
            values = []
        body: dict[str, Any] = {"pagelen": self.pagelen, "page": number, "values": values}
        if self.report_size:
            body["size"] = len(self.rows) if self.size is None else self.size
        if number < self.last:
            body["next"] = self.next_url(number + 1, request.query.get("fields", ""))
        return web.json_response(body)


def rows(count: int) -> list[dict[str, Any]]:
    return [{"uuid": f"{{r-{n}}}"} for n in range(count)]


def by_uuid(row: dict[str, Any]) -> Any:
    return row.get("uuid")


async def read(client: BitbucketClient, **options: Any) -> list[Page]:
    return [p async for p in client.iter_pages(PATH, params={"fields": FIELDS}, **options)]


def values(pages: list[Page]) -> list[dict[str, Any]]:
    return [row for page in pages for row in page.values]


async def test_fan_out_reads_every_page_once_concurrently_in_order(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    listing = Listing(bitbucket.base_url, rows(9), hold_page=2)
    bitbucket.routes[PATH] = listing
    client = make_client(bitbucket.base_url)
    pages = await read(client)
    assert values(pages) == rows(9)
    assert [p.number for p in pages] == [1, 2, 3, 4, 5]
    # Page 2 answered only after page 5 was asked for: the pages were read concurrently.
    assert listing.most_in_flight > 1 and client.stats.requests == 5
    assert client.stats.pages_foreseen == 4  # announced by the first page's size
    assert listing.asked[0] == "pagelen=100&fields=next,values.uuid"
    built = [f"fields=next,values.uuid&page={n}&pagelen=2" for n in range(2, 6)]
    assert Counter(listing.asked[1:]) == Counter(built)  # only `page` changed, each once


async def test_without_size_next_is_followed(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    listing = Listing(bitbucket.base_url, rows(9), report_size=False)
    bitbucket.routes[PATH] = listing
    pages = await read(make_client(bitbucket.base_url))
    assert values(pages) == rows(9)
    assert listing.most_in_flight == 1
    assert listing.asked[1:] == [f"fields=next,values.uuid&page={n}&pagelen=2" for n in range(2, 6)]


async def test_fan_out_stops_at_an_empty_page(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    bitbucket.routes[PATH] = Listing(bitbucket.base_url, rows(9), empty_from=3)
    pages = await read(make_client(bitbucket.base_url))
    assert [p.number for p in pages] == [1, 2, 3] and values(pages) == rows(4)


async def test_rows_added_after_the_first_page_are_read_by_following_next(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    listing = Listing(bitbucket.base_url, rows(10), size=8)  # two rows added meanwhile
    bitbucket.routes[PATH] = listing
    pages = await read(make_client(bitbucket.base_url))
    assert values(pages) == rows(10) and [p.number for p in pages] == [1, 2, 3, 4, 5]
    assert len(listing.asked) == 5


async def test_repeated_rows_are_dropped_with_a_key(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    # A row inserted at the front while reading shifts row 1 onto page 2 as well.
    shifted = [*rows(2), {"uuid": "{r-1}"}, *rows(4)[2:]]
    bitbucket.routes[PATH] = Listing(bitbucket.base_url, shifted)
    client = make_client(bitbucket.base_url)
    pages = await read(client, key=by_uuid)
    assert values(pages) == rows(4) and len(pages) == 3
    assert client.stats.duplicate_rows == 1
    assert values(await read(make_client(bitbucket.base_url))) == shifted


async def test_error_on_a_fanned_out_page_fails_the_listing(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    listing = Listing(bitbucket.base_url, rows(12))

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("page") == "3":
            return web.json_response({"type": "error", "error": {"message": "no"}}, status=403)
        return await listing(request)

    bitbucket.routes[PATH] = handler
    with pytest.raises(ForbiddenError):
        await read(make_client(bitbucket.base_url))


async def test_fan_out_to_another_origin_is_refused(
    bitbucket: FakeBitbucket, elsewhere: FakeBitbucket, make_client: MakeClient
) -> None:
    bitbucket.routes[PATH] = Listing(elsewhere.base_url, rows(6))
    with pytest.raises(UnsafeUrlError):
        await read(make_client(bitbucket.base_url))
    assert elsewhere.seen == []


async def test_pagelen_fallback_is_remembered_per_endpoint(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    async def capped(request: web.Request) -> web.StreamResponse:
        if request.query["pagelen"] == "100":
            error = {"type": "error", "error": {"message": "Invalid pagelen"}}
            return web.json_response(error, status=400)
        return web.json_response({"values": [{"n": 1}]})

    async def other(request: web.Request) -> web.StreamResponse:
        return web.json_response({"values": [{"n": 2}]})

    bitbucket.routes[PATH] = capped
    bitbucket.routes["/2.0/other"] = other
    client = make_client(bitbucket.base_url)
    for _ in range(2):
        assert values([p async for p in client.iter_pages(PATH)]) == [{"n": 1}]
    assert values([p async for p in client.iter_pages("/2.0/other")]) == [{"n": 2}]
    assert [r.query["pagelen"] for r in bitbucket.seen] == ["100", "50", "50", "100"]


def page(count: int, *, next_url: str | None, size: int | None = 9, **reported: Any) -> Page:
    reported = {"pagelen": 2, "page": 1, **reported}
    return Page(values=rows(count), next=next_url, size=size, **reported)


def test_fan_out_urls_replace_only_the_page_parameter() -> None:
    next_url = f"{BASE}{PATH}?pagelen=2&fields=next,values.uuid%2Cx&page=2&q=a%3Db"
    urls = fan_out_urls(page(2, next_url=next_url))
    assert urls == [next_url.replace("page=2", f"page={n}") for n in range(2, 6)]


@pytest.mark.parametrize(
    ("first", "why"),
    [
        (page(2, next_url=f"{BASE}{PATH}?page=2", size=None), "no size"),
        (page(2, next_url=f"{BASE}{PATH}?page=2", pagelen=None), "no pagelen"),
        (page(2, next_url=f"{BASE}{PATH}?page=2", page=None), "no page"),
        (page(2, next_url=None), "no next"),
        (page(2, next_url=f"{BASE}{PATH}?cursor=abc"), "cursor paging"),
        (page(2, next_url=f"{BASE}{PATH}?page=3"), "next is not page 2"),
        (page(1, next_url=f"{BASE}{PATH}?page=2"), "short first page"),
        (page(2, next_url=f"{BASE}{PATH}?page=2", size=2), "size says one page"),
        (page(2, next_url=f"{BASE}{PATH}?apage=1&page=2&page=2"), "two page parameters"),
    ],
)
def test_fan_out_urls_none_unless_safe(first: Page, why: str) -> None:
    assert fan_out_urls(first) is None, why


def test_seen_rows_keeps_rows_without_a_key() -> None:
    seen = SeenRows(by_uuid)
    first = seen.filter(Page([{"uuid": "a"}, {"x": 1}], next=None, size=None))
    second = seen.filter(Page([{"uuid": "a"}, {"x": 1}, {"uuid": "b"}], next=None, size=None))
    assert first.values == [{"uuid": "a"}, {"x": 1}]
    assert second.values == [{"x": 1}, {"uuid": "b"}] and seen.dropped == 1


async def test_read_in_order_refills_before_the_caller_gets_a_page() -> None:
    launched: list[int] = []

    async def answer(target: str, number: int) -> Page:
        await asyncio.sleep(0)
        return Page(values=[{"uuid": target}] if number < 8 else [], next=None, size=None,
                    number=number)

    def read_page(target: str, number: int) -> Coroutine[Any, Any, Page]:
        launched.append(number)  # when the read is launched, not when it first runs
        return answer(target, number)

    seen: list[tuple[int, int]] = []
    async for page in read_in_order(read_page, [f"t{n}" for n in range(2, 12)], first_number=2,
                                    lookahead=3):
        # While the caller holds page n, pages up to n + 3 are already being read.
        seen.append((page.number, max(launched)))
    assert seen[:6] == [(n, n + 3) for n in range(2, 8)]
    assert seen[-1][0] == 8  # the empty page is handed over, then reading stops
    assert max(launched) <= 10


def test_seen_rows_drops_repeats_at_page_boundaries_and_forgets_far_pages() -> None:
    seen = SeenRows(by_uuid, window=2)
    pages = [[f"r{n}" for n in range(k * 3, k * 3 + 3)] for k in range(5)]
    pages[1].insert(0, "r2")  # shifted by one: the last row of page 1 again first on page 2
    pages[2].insert(0, "r3")  # and a row of the page before the previous one... still near
    kept = [[r["uuid"] for r in seen.filter(Page([{"uuid": u} for u in p], None, None)).values]
            for p in pages]  # fmt: skip
    assert kept[1] == ["r3", "r4", "r5"] and kept[2] == ["r6", "r7", "r8"]
    assert seen.dropped == 2
    # Memory is bounded: only the last two pages' keys are held, whatever the listing's length.
    for n in range(1000):
        seen.filter(Page([{"uuid": f"x{n}"}], None, None))
    assert sum(len(keys) for keys in seen._recent) == 2
    assert seen.filter(Page([{"uuid": "r0"}], None, None)).values == [{"uuid": "r0"}]
