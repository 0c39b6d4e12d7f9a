"""The simulator's HTTP side: ``build_app`` (an aiohttp application) and ``run_simulator``.

Imports aiohttp and the rest of ``exporter.simulator``. One catch-all handler runs every request
through the same steps: log it, apply latency and connection/status faults, authenticate, count
it against the rate limit, route it, page it, trim it by ``fields``, apply body faults.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from exporter.simulator.endpoints import Call, Reply, route
from exporter.simulator.faults import (
    BODY_FAULTS,
    FaultKind,
    FaultPlan,
    corrupt_page,
    truncated_json,
)
from exporter.simulator.gate import RateLimiter, authenticate
from exporter.simulator.org import Org
from exporter.simulator.paging import BadRequestError, apply_fields, page_envelope, parse_paging
from exporter.simulator.shapes import error_json

RATE_LIMIT_TEXT = "Rate limit for this resource has been exceeded"


@dataclass
class SimulatorState:
    org: Org
    faults: FaultPlan
    limiter: RateLimiter | None
    requests: list[str] = field(default_factory=list)
    cache: dict[tuple[str, str], tuple[int, list[Any]]] = field(default_factory=dict)


STATE = web.AppKey("simulator_state", SimulatorState)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def _page_number(request: web.Request) -> int:
    try:
        return int(request.query.get("page", "1"))
    except ValueError:
        return 1


def _reset(request: web.Request) -> web.Response:
    """Drop the connection without an answer."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


def _answer(state: SimulatorState, request: web.Request, call: Call) -> web.Response:
    found = route(request.path)
    if found is None:
        return _json(404, error_json(f"Resource not found: {request.path}"))
    handler, params = found
    reply = handler(call, params)
    if isinstance(reply, Reply):
        body = reply.body
        if reply.status != 200:
            return _json(reply.status, body)
    else:
        try:
            page, pagelen = parse_paging(request.query)
        except BadRequestError as exc:
            return _json(400, error_json(str(exc)))
        body = page_envelope(
            reply.items, page=page, pagelen=pagelen, url=request.url, render=reply.render
        )
    fields = request.query.get("fields")
    if fields:
        body = apply_fields(body, fields)
    return _json(200, body)


async def dispatch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.requests.append(request.path_qs)
    faults = state.faults.take(request.path, _page_number(request))
    delay = state.faults.latency + sum(f.latency for f in faults if f.kind is FaultKind.LATENCY)
    if delay > 0:
        await asyncio.sleep(delay)
    kinds = [f.kind for f in faults]
    if FaultKind.RESET in kinds:
        return _reset(request)
    for fault in faults:
        if fault.kind is FaultKind.STATUS:
            return _json(fault.status, error_json("Something went wrong", "Simulated fault"))
    caller = authenticate(state.org, request.headers.get("Authorization"))
    if caller is None:
        challenge = {"WWW-Authenticate": 'Basic realm="Bitbucket.org HTTP"'}
        return _json(401, error_json("Unauthorized", "Invalid or missing credentials"), challenge)
    if state.limiter is not None and not state.limiter.allow(caller.credential):
        return web.Response(status=429, text=RATE_LIMIT_TEXT, content_type="text/plain")
    call = Call(state.org, caller, f"{request.url.scheme}://{request.url.raw_authority}")
    call.cache = state.cache
    response = _answer(state, request, call)
    body_faults = [k for k in kinds if k in BODY_FAULTS]
    if response.status != 200 or not body_faults:
        return response
    return _corrupt(response, body_faults, request)


def _corrupt(response: web.Response, kinds: list[FaultKind], request: web.Request) -> web.Response:
    assert response.text is not None
    body = json.loads(response.text)
    for kind in kinds:
        if kind is FaultKind.MALFORMED:
            return web.Response(
                status=200, body=truncated_json(body), content_type="application/json"
            )
        if isinstance(body, dict):
            body = corrupt_page(body, kind, request.url)
    return _json(200, body)


def build_app(
    org: Org,
    *,
    faults: FaultPlan | None = None,
    rate_limit: tuple[int, float] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """An aiohttp app serving ``org``; ``rate_limit`` is (requests, window seconds), off if None."""
    limiter = RateLimiter(*rate_limit, clock=clock) if rate_limit else None
    app = web.Application()
    app[STATE] = SimulatorState(org, faults if faults is not None else FaultPlan(), limiter)
    app.router.add_get("/{tail:.*}", dispatch)
    return app


@dataclass
class SimulatorHandle:
    """A running simulator: where it listens, what it serves, and what it was asked."""

    base_url: str
    state: SimulatorState

    @property
    def org(self) -> Org:
        return self.state.org

    @property
    def faults(self) -> FaultPlan:
        return self.state.faults

    @property
    def requests(self) -> list[str]:
        """Path and query of every request received, in order."""
        return self.state.requests

    @property
    def request_count(self) -> int:
        return len(self.state.requests)


@asynccontextmanager
async def run_simulator(
    org: Org,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: FaultPlan | None = None,
    rate_limit: tuple[int, float] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[SimulatorHandle]:
    """Serve ``org`` on ``host:port`` (0: any free port) for the duration of the block."""
    app = build_app(org, faults=faults, rate_limit=rate_limit, clock=clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield SimulatorHandle(f"http://{bound_host}:{bound_port}", app[STATE])
    finally:
        await runner.cleanup()
