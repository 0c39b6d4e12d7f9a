"""Shared by the simulator's tests: an HTTP session, the well-known credentials as headers, and a
GET that returns the status and the decoded body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from exporter.simulator import ADMIN_EMAIL, ADMIN_TOKEN, MEMBER_EMAIL, MEMBER_TOKEN

ADMIN = {"Authorization": aiohttp.encode_basic_auth(ADMIN_EMAIL, ADMIN_TOKEN)}
MEMBER = {"Authorization": aiohttp.encode_basic_auth(MEMBER_EMAIL, MEMBER_TOKEN)}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] = ADMIN
) -> tuple[int, Any]:
    """The status and body of a GET: decoded JSON, or the text of any other answer."""
    async with session.get(url, headers=headers) as response:
        text = await response.text()
        if response.content_type == "application/json":
            return response.status, json.loads(text)
        return response.status, text
