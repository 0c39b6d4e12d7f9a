"""Fixtures for the HTTP-side tests (see ``bb_fake`` for the fake server)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from exporter.bitbucket import BasicAuth, BitbucketClient, RetryPolicy
from tests.client.bb_fake import EMAIL, TOKEN, FakeBitbucket, RecordingSleep, serve


@pytest.fixture
async def bitbucket() -> AsyncIterator[FakeBitbucket]:
    fake, runner = await serve()
    yield fake
    await runner.cleanup()


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeBitbucket]:
    """A second server: another origin (another port) that must never see a request."""
    fake, runner = await serve()
    yield fake
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def make_client(
    session: aiohttp.ClientSession, sleep: RecordingSleep
) -> Callable[..., BitbucketClient]:
    def make(base_url: str, **options: Any) -> BitbucketClient:
        options.setdefault("auth", BasicAuth(EMAIL, TOKEN))
        options.setdefault("retry", RetryPolicy())
        options.setdefault("sleep", sleep)
        return BitbucketClient(session, base_url=base_url, rng=random.Random(7), **options)

    return make
