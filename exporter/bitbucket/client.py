"""The aiohttp side of the Bitbucket API: one ``BitbucketClient`` per run.

It sends every request under one semaphore, retries transient failures with bounded full-jitter
backoff, waits out 429s without failing, follows ``next`` links (never builds page URLs) and
same-origin redirects itself, and refuses any link or redirect to another origin, so the
Authorization header never leaves the configured API origin. Error statuses become the
exceptions of ``exporter.errors`` (see ``responses.py``). Imports only ``exporter.errors`` and
its siblings; the session, clock (``sleep``) and randomness (``rng``) are injected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from yarl import URL

from exporter.bitbucket.auth import BasicAuth, BearerAuth
from exporter.bitbucket.origin import check_base_url, redact, require_same_origin
from exporter.bitbucket.pagination import Page, parse_page
from exporter.bitbucket.responses import error_for_status
from exporter.bitbucket.retry import ClientStats, RetryPolicy
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
        self.stats = ClientStats()

    @property
    def base_url(self) -> str:
        return str(self._base)

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
            raise FetchFailedError(
                f"GET {shown}: the body is not valid JSON ({exc})", url=shown, status=200
            ) from None

    async def iter_pages(self, path: str, *, params: Params | None = None) -> AsyncIterator[Page]:
        """Every page of a listing, asking ``pagelen=100`` and following ``next``.

        Stops after a page without ``next``, an empty page, or a ``next`` already visited.
        """
        first = self.resolve(path).update_query({"pagelen": PAGELEN, **(params or {})})
        page = await self._first_page(first)
        visited = {str(first)}
        while True:
            yield page
            if page.next is None or not page.values:
                return
            url = require_same_origin(URL(page.next), self._base, what="a 'next' link")
            if str(url) in visited:
                logger.warning("GET %s: 'next' repeats a page already read; stopping", page.url)
                return
            visited.add(str(url))
            page = parse_page(await self._get(url), url=redact(url), page_number=page.number + 1)

    async def _first_page(self, url: URL) -> Page:
        try:
            return parse_page(await self._get(url), url=redact(url), page_number=1)
        except FetchFailedError as exc:
            if exc.status != 400 or "pagelen" not in str(exc).lower():
                raise
        smaller = url.update_query(pagelen=FALLBACK_PAGELEN)
        logger.info("GET %s: pagelen %d refused; asking %d", redact(url), PAGELEN, FALLBACK_PAGELEN)
        return parse_page(await self._get(smaller), url=redact(smaller), page_number=1)

    async def _get(self, url: URL) -> bytes:
        """The body of a 2xx answer, after retries and 429 waits; else the mapped error."""
        policy, shown = self._retry, redact(url)
        failures = throttles = 0
        while True:
            status: int | None = None
            try:
                status, body = await self._exchange(url)
            except TRANSIENT_ERRORS as exc:
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                if 200 <= status < 300:
                    return body
                if status == 429:
                    throttles += 1
                    await self._wait_throttled(shown, throttles)
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

    async def _wait_throttled(self, shown: str, throttles: int) -> None:
        self.stats.throttled += 1
        if throttles > self._retry.max_throttles:
            raise FetchFailedError(
                f"GET {shown}: still rate limited (429) after {throttles - 1} waits",
                url=shown,
                status=429,
            )
        delay = self._retry.throttle_delay(throttles)
        logger.warning("GET %s: rate limited (429); waiting %.0fs", shown, delay)
        await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        self.stats.seconds_slept += seconds
        await self._sleep(seconds)

    async def _exchange(self, url: URL) -> tuple[int, bytes]:
        """One GET, following same-origin redirects by hand (never sending auth elsewhere)."""
        headers = {"Authorization": self._auth.header(), "Accept": "application/json"}
        for _ in range(MAX_REDIRECTS + 1):
            async with self._semaphore:
                self.stats.requests += 1
                logger.debug("GET %s", redact(url))
                async with self._session.get(
                    url, headers=headers, allow_redirects=False, timeout=self._timeout
                ) as response:
                    status, body = response.status, await response.read()
                    location = response.headers.get("Location")
            if status not in REDIRECT_STATUSES or location is None:
                return status, body
            url = require_same_origin(url.join(URL(location)), self._base, what="a redirect")
        shown = redact(url)
        raise FetchFailedError(f"GET {shown}: more than {MAX_REDIRECTS} redirects", url=shown)
