"""A tiny Bitbucket on 127.0.0.1 and an injected clock, for the HTTP-side tests.

Named apart from ``conftest`` so that test modules can import it without clashing with other
conftest files of the suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

EMAIL = "admin@example.com"
TOKEN = "ATATT3xFfGF0-secret-token-value"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeBitbucket:
    """A local server: routes are set per test; every request is recorded."""

    base_url: str = ""
    routes: dict[str, Handler] = field(default_factory=dict)
    seen: list[web.Request] = field(default_factory=list)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        handler = self.routes.get(request.path)
        if handler is None:
            return web.json_response(
                {"type": "error", "error": {"message": "no route"}}, status=404
            )
        return await handler(request)


@dataclass
class RecordingSleep:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class FakeClock:
    """A clock that only moves when ``sleep`` is awaited (the budget's clock and sleep)."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


def most_in_any_window(starts: Sequence[float], window: float) -> int:
    """The largest number of ``starts`` inside any half-open interval ``window`` long."""
    ordered = sorted(starts)
    return max((sum(1 for t in ordered if s <= t < s + window) for s in ordered), default=0)


async def serve() -> tuple[FakeBitbucket, web.AppRunner]:
    fake = FakeBitbucket()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", fake.dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}"
    return fake, runner


Answer = tuple[int, Any]


def scripted(*answers: Answer) -> Any:
    """A handler giving these (status, body) answers in turn (the last one forever).

    A str body is sent as text/plain (as Bitbucket's 429), anything else as JSON.
    """
    queue = list(answers)

    async def handler(request: web.Request) -> web.StreamResponse:
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)

    return handler
