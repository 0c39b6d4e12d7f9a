"""The aiohttp side of the Bitbucket API: one ``BitbucketClient`` per run.

Every request (retries and redirects included) is admitted in this order: a slot of the
semaphore, the end of any client-wide 429 pause (``throttle.py``), then a slot of the optional
rolling-window ``RateBudget`` (``budget.py``), so a request starts when its budget slot says.
Transient failures are retried with bounded full-jitter backoff; 429s pause the whole client and
do not fail a scope short of a generous bound. Listings follow ``next``; when the first page
reports its ``size``, the remaining pages are read concurrently (``pagination.fan_out_urls``)
and yielded in order, repeats dropped by an optional row key. Same-origin redirects are followed
by hand and any link or redirect to another origin is refused, so the Authorization header never
leaves the configured API origin. Error statuses become the exceptions of ``exporter.errors``
(see ``responses.py``). Imports only ``exporter.errors`` and its siblings; the session, clock
(``sleep``), randomness (``rng``) and budget are injected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any

import aiohttp
from yarl import URL

from exporter.bitbucket.auth import BasicAuth, BearerAuth
from exporter.bitbucket.budget import RateBudget
from exporter.bitbucket.fan_out import read_in_order
from exporter.bitbucket.origin import check_base_url, redact, require_same_origin
from exporter.bitbucket.pagination import (
    Page,
    RowKey,
    SeenRows,
    fan_out_urls,
    not_json,
    parse_page,
)
from exporter.bitbucket.responses import error_for_status
from exporter.bitbucket.retry import ClientStats, RetryPolicy
from exporter.bitbucket.throttle import ThrottleGate
from exporter.errors import ConfigError, FetchFailedError

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 60.0
PAGELEN = 100
#: Some endpoints cap pagelen below 100 and answer 400 "Invalid pagelen".
FALLBACK_PAGELEN = 50
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
)

Params = Mapping[str, str | int]


def transport_problem(error: BaseException) -> str:
    """One line for a request that got no whole answer."""
    if isinstance(error, asyncio.TimeoutError):
        return "no answer in time (timeout)"
    if isinstance(error, aiohttp.ClientPayloadError):
        what = "the answer was cut short"
    elif isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        what = "the connection was reset"
    else:
        what = "the connection failed"
    said = " ".join(f"{type(error).__name__}: {error}".rstrip(": ").split())
    return f"{what} ({said})"


class BitbucketClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        auth: BasicAuth | BearerAuth,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so sharing it is safe
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        budget: RateBudget | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
        self._session = session
        self._base = check_base_url(base_url).with_query(None).with_fragment(None)
        self._auth = auth
        self._retry = retry
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._semaphore = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._budget = budget
        self._gate = ThrottleGate(retry, self._pause)
        #: pagelen to ask per endpoint path, once an endpoint refused 100.
        self._pagelens: dict[str, int] = {}
        self.stats = ClientStats()

    @property
    def base_url(self) -> str:
        return str(self._base)

    @property
    def auth_description(self) -> str:
        """How the client authenticates, without the secret."""
        return self._auth.describe()

    def __repr__(self) -> str:
        return f"BitbucketClient(base_url={self.base_url!r}, auth={self._auth.describe()!r})"

    def resolve(self, path_or_url: str) -> URL:
        """An absolute URL on the API origin for a path (``/2.0/...``) or a full URL."""
        if path_or_url.startswith(("http://", "https://")):
            target = URL(path_or_url)
        else:
            path = path_or_url if path_or_url.startswith("/") else "/" + path_or_url
            target = URL(str(self._base).rstrip("/") + path)
        return require_same_origin(target, self._base, what="a request")

    async def get_json(self, path_or_url: str, params: Params | None = None) -> Any:
        """GET one resource and decode its JSON body."""
        url = self.resolve(path_or_url)
        if params:
            url = url.update_query(dict(params))
        body = await self._get(url)
        try:
            return json.loads(body)
        except ValueError as exc:
            shown = redact(url)
            raise FetchFailedError(f"GET {shown}: {not_json(body, exc)}", url=shown, status=200) \
                from None  # fmt: skip

    async def iter_pages(
        self, path: str, *, params: Params | None = None, key: RowKey | None = None
    ) -> AsyncIterator[Page]:
        """Every page of a listing, asking ``pagelen=100`` (or what the endpoint accepted).

        When the first page reports ``size`` the rest are read concurrently, else ``next`` is
        followed; pages come in order either way. Stops after a page without ``next``, an
        empty page, or a ``next`` already visited. With ``key``, a row whose key was already
        seen in this listing is dropped (offset paging repeats rows that shift meanwhile).
        """
        target = self.resolve(path)
        pagelen = self._pagelens.get(target.path, PAGELEN)
        first = target.update_query({"pagelen": pagelen, **(params or {})})
        rows = SeenRows(key)
        try:
            async with aclosing(self._walk(await self._first_page(first), {str(first)})) as pages:
                async for page in pages:
                    yield rows.filter(page)
        finally:
            self.stats.duplicate_rows += rows.dropped

    async def _walk(self, page: Page, visited: set[str]) -> AsyncGenerator[Page, None]:
        yield page
        planned = fan_out_urls(page) if page.values else None
        if planned is not None:
            urls = [require_same_origin(URL(u), self._base, what="a page link") for u in planned]
            self.stats.pages_foreseen += len(urls)
            visited.update(str(url) for url in urls)
            logger.debug("GET %s: size %s; reading pages 2-%d", page.url, page.size, len(urls) + 1)
            # Twice the concurrency: one slow page at the head does not stall the ones behind it.
            ahead = 2 * self._concurrency
            read = read_in_order(self._read_page, urls, first_number=2, lookahead=ahead)
            async with aclosing(read) as pages:
                async for page in pages:
                    yield page
        while page.next is not None and page.values:
            url = require_same_origin(URL(page.next), self._base, what="a 'next' link")
            if str(url) in visited:
                logger.warning("GET %s: 'next' repeats a page already read; stopping", page.url)
                return
            visited.add(str(url))
            page = await self._read_page(url, page.number + 1)
            yield page

    async def _read_page(self, url: URL, number: int) -> Page:
        return parse_page(await self._get(url), url=redact(url), page_number=number)

    async def _first_page(self, url: URL) -> Page:
        asked = url.query.get("pagelen")
        try:
            return await self._read_page(url, 1)
        except FetchFailedError as exc:
            refused = exc.status == 400 and "pagelen" in str(exc).lower()
            if not refused or asked == str(FALLBACK_PAGELEN):
                raise
        smaller = url.update_query(pagelen=FALLBACK_PAGELEN)
        logger.info("GET %s: pagelen %s refused; asking %d", redact(url), asked, FALLBACK_PAGELEN)
        page = await self._read_page(smaller, 1)
        self._pagelens[url.path] = FALLBACK_PAGELEN
        return page

    async def _get(self, url: URL) -> bytes:
        """The body of a 2xx answer, after retries and 429 pauses; else the mapped error."""
        policy, shown = self._retry, redact(url)
        failures = throttles = 0
        while True:
            status: int | None = None
            try:
                status, body, epoch = await self._exchange(url)
            except TRANSIENT_ERRORS as exc:
                problem = transport_problem(exc)
            else:
                if 200 <= status < 300:
                    self._gate.succeeded(epoch)
                    return body
                if status == 429:
                    throttles += 1
                    await self._wait_throttled(shown, throttles, epoch)
                    continue
                if status not in policy.RETRY_STATUSES:
                    raise error_for_status(
                        status,
                        body,
                        method="GET",
                        url=shown,
                        auth_description=self._auth.describe(),
                    )
                problem = f"HTTP {status}"
            failures += 1
            if failures >= policy.attempts:
                raise FetchFailedError(
                    f"GET {shown}: gave up after {failures} attempts; last: {problem}",
                    url=shown,
                    status=status,
                )
            delay = policy.backoff_delay(failures, self._rng)
            self.stats.retries += 1
            logger.warning(
                "GET %s: %s; retry %d of %d in %.1fs",
                shown,
                problem,
                failures,
                policy.attempts - 1,
                delay,
            )
            await self._pause(delay)

    async def _wait_throttled(self, shown: str, throttles: int, epoch: int) -> None:
        """Pause the whole client after a 429 (or join the pause another 429 began)."""
        self.stats.throttled += 1
        if throttles > self._retry.max_throttles:
            raise FetchFailedError(
                f"GET {shown}: still rate limited (429) after {throttles - 1} waits",
                url=shown,
                status=429,
            )
        if self._gate.begins_pause(epoch):
            delay = self._gate.next_delay()
            self.stats.throttle_seconds += delay
            self.stats.pause_ends = time.monotonic() + delay
            logger.warning("GET %s: rate limited (429); all requests wait %.0fs", shown, delay)
        await self._gate.throttled(epoch)

    async def _pause(self, seconds: float) -> None:
        self.stats.seconds_slept += seconds
        await self._sleep(seconds)

    async def _admit(self) -> int:
        """Wait out a 429 pause, then the budget; the throttle epoch the request is sent in."""
        while True:
            await self._gate.wait_open()
            if self._budget is not None:
                waited = await self._budget.acquire()  # not `+= await`: others add meanwhile
                self.stats.budget_wait_seconds += waited
            if self._gate.is_open:
                # A pause may have begun and ended meanwhile: the request goes out after it.
                return self._gate.epoch

    async def _exchange(self, url: URL) -> tuple[int, bytes, int]:
        """One GET, following same-origin redirects by hand (never sending auth elsewhere).

        Returns the status, body and the throttle epoch of the last hop.
        """
        headers = {"Authorization": self._auth.header(), "Accept": "application/json"}
        for _ in range(MAX_REDIRECTS + 1):
            async with self._semaphore:
                epoch = await self._admit()
                self.stats.requests += 1
                logger.debug("GET %s", redact(url))
                async with self._session.get(
                    url, headers=headers, allow_redirects=False, timeout=self._timeout
                ) as response:
                    status, body = response.status, await response.read()
                    location = response.headers.get("Location")
            if status not in REDIRECT_STATUSES or location is None:
                return status, body, epoch
            url = require_same_origin(url.join(URL(location)), self._base, what="a redirect")
        shown = redact(url)
        raise FetchFailedError(f"GET {shown}: more than {MAX_REDIRECTS} redirects", url=shown)
