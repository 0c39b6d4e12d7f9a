"""Each credential's side of a run: a client and its own rate budget (Bitbucket limits per
user), and what all of them counted together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from exporter.bitbucket import Auth, BitbucketClient, RateBudget
from exporter.config import Settings
from exporter.crawl.records import ScopeTarget
from exporter.crawl.scopes import ScopeSpec
from exporter.observe import Pages
from exporter.store.writer import RunCounters


@dataclass
class Reader:
    """One credential's side of a run: its client, its rate budget, and when the run began on
    the budget's clock (deadlines are measured on it)."""

    name: str  # "the default credential" or the workspace it reads
    client: BitbucketClient
    budget: RateBudget
    started: float

    def pages(self, spec: ScopeSpec, target: ScopeTarget) -> Callable[[], Pages]:
        return lambda: spec.pages(self.client, target)


#: Each credential's reader: None for the default credential, else the workspace slug.
Readers = dict[str | None, Reader]


def make_readers(
    session: aiohttp.ClientSession,
    settings: Settings,
    *,
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float],
) -> Readers:
    """A client and a rate budget for each credential: the default one (key None) and each
    workspace's own."""
    credentials: dict[str | None, Auth] = {}
    credentials.update(settings.workspace_auth.items())
    if settings.auth is not None:
        credentials[None] = settings.auth
    readers: Readers = {}
    for key, auth in credentials.items():
        budget = RateBudget(*settings.rate, clock=clock, sleep=sleep)
        client = BitbucketClient(
            session, base_url=settings.api_url, auth=auth, concurrency=settings.concurrency,
            retry=settings.retry, sleep=sleep, timeout=settings.timeout, budget=budget,
        )  # fmt: skip
        name = "the default credential" if key is None else f"workspace {key}"
        readers[key] = Reader(name, client, budget, budget.now())
    return readers


def counters_of(readers: Readers) -> RunCounters:
    """What every credential's client counted, added up."""
    stats = [reader.client.stats for reader in readers.values()]
    return RunCounters(
        requests=sum(s.requests for s in stats),
        retries=sum(s.retries for s in stats),
        throttled=sum(s.throttled for s in stats),
        wait_seconds=sum(s.budget_wait_seconds for s in stats),
        backoff_seconds=sum(s.seconds_slept for s in stats),
    )
