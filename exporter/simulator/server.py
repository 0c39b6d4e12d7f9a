"""The simulator's HTTP side: ``build_app`` (an aiohttp application) and ``run_simulator``.

Imports aiohttp and the rest of ``exporter.simulator``. One catch-all handler runs every request
through the same steps: log it, apply latency and connection/status faults, authenticate (401),
count it against the rate limit (429), check the token's scopes (403), route it (404), filter and
sort it (``q``, ``sort``), page it, trim it by ``fields``, apply body faults.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from yarl import URL

from exporter.simulator.endpoints import Call, Listing, Reply
from exporter.simulator.faults import (
    BODY_FAULTS,
    LOGIN_PAGE,
    Fault,
    FaultKind,
    FaultPlan,
    corrupt_page,
    truncated_json,
)
from exporter.simulator.gate import Caller, RateLimiter, authenticate
from exporter.simulator.org import Org
from exporter.simulator.paging import (
    MAX_PAGELEN,
    BadRequestError,
    apply_fields,
    page_envelope,
    parse_paging,
)
from exporter.simulator.query import parse_query, sort_items
from exporter.simulator.routes import ENDPOINT_NAMES, Endpoint, route
from exporter.simulator.shapes import error_json

RATE_LIMIT_TEXT = "Rate limit for this resource has been exceeded"
SCOPE_MESSAGE = "Your credentials lack one or more required privilege scopes."
SLOW_BODY_CHUNKS = 8


@dataclass
class SimulatorState:
    org: Org
    faults: FaultPlan
    limiter: RateLimiter | None
    requests: list[str] = field(default_factory=list)
    cache: dict[tuple[str, str], tuple[int, list[Any]]] = field(default_factory=dict)
    pagelen_limits: dict[str, int] = field(default_factory=dict)  # endpoint name -> maximum


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


def _listing_body(
    state: SimulatorState, request: web.Request, endpoint: Endpoint, listing: Listing
) -> Any:
    """The page envelope of ``listing`` after ``q`` and ``sort``; BadRequestError on bad input."""
    query = request.query
    maximum = state.pagelen_limits.get(endpoint.name, MAX_PAGELEN)
    page, pagelen = parse_paging(query, maximum)
    items, render = listing.items, listing.render
    if "q" in query or "sort" in query:
        rendered = [render(item) for item in items]
        if query.get("q"):
            keep = parse_query(query["q"])
            rendered = [item for item in rendered if keep(item)]
        if query.get("sort"):
            rendered = sort_items(rendered, query["sort"])
        items, render = rendered, _same
    return page_envelope(items, page=page, pagelen=pagelen, url=request.url, render=render)


def _same(item: Any) -> Any:
    return item


def _answer(
    state: SimulatorState, request: web.Request, call: Call, found: tuple[Endpoint, dict[str, str]]
) -> web.Response:
    endpoint, params = found
    if not endpoint.queryable and ("q" in request.query or "sort" in request.query):
        return _json(400, error_json("This endpoint does not support the q or sort parameters"))
    reply = endpoint.handler(call, params)
    if isinstance(reply, Reply):
        if reply.status != 200:
            return _json(reply.status, reply.body)
        body = reply.body
    else:
        try:
            body = _listing_body(state, request, endpoint, reply)
        except BadRequestError as exc:
            return _json(400, error_json(str(exc)))
    fields = request.query.get("fields")
    if fields and isinstance(body, dict):
        body = apply_fields(body, fields)
    return _json(200, body)


def _refusal(
    state: SimulatorState, request: web.Request, endpoint: Endpoint | None
) -> web.Response | Caller:
    """The caller, or the 401/429/403 that refuses the request."""
    caller = authenticate(state.org, request.headers.get("Authorization"))
    if caller is None:
        challenge = {"WWW-Authenticate": 'Basic realm="Bitbucket.org HTTP"'}
        return _json(401, error_json("Unauthorized", "Invalid or missing credentials"), challenge)
    if state.limiter is not None and not state.limiter.allow(caller.credential):
        return web.Response(status=429, text=RATE_LIMIT_TEXT, content_type="text/plain")
    if endpoint is not None and caller.missing_scopes(endpoint.scopes):
        detail = {"required": list(endpoint.scopes), "granted": sorted(caller.scopes)}
        return _json(403, error_json(SCOPE_MESSAGE, detail))
    return caller


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Answer one request ``delay`` seconds after it arrived: the latency is the time the answer
    takes, the simulator's own work included (as a real server's is), not added on top of it."""
    arrived = asyncio.get_running_loop().time()
    state = request.app[STATE]
    state.requests.append(request.path_qs)
    found = route(request.path)
    delay = state.faults.delay(request.path_qs)
    faults = state.faults.take(
        request.path,
        _page_number(request),
        endpoint=found[0].name if found else None,
        url=request.path_qs,
    )
    delay += sum(f.latency for f in faults if f.kind is FaultKind.LATENCY)
    response = _respond(state, request, found, faults)
    remaining = arrived + delay - asyncio.get_running_loop().time()
    if remaining > 0:
        await asyncio.sleep(remaining)
    if response is None:
        return _reset(request)
    body_faults = [f for f in faults if f.kind in BODY_FAULTS]
    if response.status != 200 or not body_faults:
        return response
    return await _corrupt(response, body_faults, request, state.faults.foreign_origin)


def _respond(
    state: SimulatorState,
    request: web.Request,
    found: tuple[Endpoint, dict[str, str]] | None,
    faults: list[Fault],
) -> web.Response | None:
    """The answer before body faults; None for a connection reset."""
    kinds = [f.kind for f in faults]
    if FaultKind.RESET in kinds:
        return None
    for fault in faults:
        if fault.kind is FaultKind.STATUS:
            return _json(fault.status, error_json("Something went wrong", "Simulated fault"))
        if fault.kind is FaultKind.FOREIGN_REDIRECT:
            location = str(state.faults.foreign(request.url))
            return web.Response(status=302, headers={"Location": location})
        if fault.kind is FaultKind.HTML_PAGE:
            return web.Response(status=200, text=LOGIN_PAGE, content_type="text/html")
    caller = _refusal(state, request, found[0] if found else None)
    if not isinstance(caller, Caller):
        return caller
    if found is None:
        return _json(404, error_json(f"Resource not found: {request.path}"))
    api = f"{request.url.scheme}://{request.url.raw_authority}"
    call = Call(state.org, caller, api, state.cache, dict(request.query))
    return _answer(state, request, call, found)


async def _corrupt(
    response: web.Response, faults: list[Fault], request: web.Request, foreign: URL
) -> web.StreamResponse:
    assert response.text is not None
    body = json.loads(response.text)
    for fault in faults:
        if fault.kind is FaultKind.MALFORMED:
            return web.Response(
                status=200, body=truncated_json(body), content_type="application/json"
            )
        if isinstance(body, dict):
            body = corrupt_page(body, fault.kind, request.url, foreign)
    data = json.dumps(body).encode()
    for fault in faults:
        if fault.kind is FaultKind.TRUNCATED:
            return await _stream(request, data, cut=True, seconds=0.0)
        if fault.kind is FaultKind.SLOW_BODY:
            return await _stream(request, data, cut=False, seconds=fault.latency)
    return web.Response(status=200, body=data, content_type="application/json")


async def _stream(
    request: web.Request, data: bytes, *, cut: bool, seconds: float
) -> web.StreamResponse:
    """Send ``data`` in chunks over ``seconds``; with ``cut``, only half of it, then close."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = len(data)
    await response.prepare(request)
    size = max(1, len(data) // SLOW_BODY_CHUNKS)
    end = len(data) // 2 if cut else len(data)
    for start in range(0, end, size):
        await response.write(data[start : min(start + size, end)])
        if seconds > 0:
            await asyncio.sleep(seconds / SLOW_BODY_CHUNKS)
    if cut:
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


def build_app(
    org: Org,
    *,
    faults: FaultPlan | None = None,
    rate_limit: tuple[int, float] | None = None,
    clock: Callable[[], float] = time.monotonic,
    pagelen_limits: Mapping[str, int] | None = None,
) -> web.Application:
    """An aiohttp app serving ``org``; ``rate_limit`` is (requests, window seconds), off if None;
    ``pagelen_limits`` lowers the maximum pagelen of named endpoints (see ``routes``)."""
    limits = dict(pagelen_limits or {})
    unknown = set(limits) - ENDPOINT_NAMES
    if unknown:
        raise ValueError(f"unknown endpoints in pagelen_limits: {sorted(unknown)}")
    limiter = RateLimiter(*rate_limit, clock=clock) if rate_limit else None
    app = web.Application()
    plan = faults if faults is not None else FaultPlan()
    app[STATE] = SimulatorState(org, plan, limiter, pagelen_limits=limits)
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
    pagelen_limits: Mapping[str, int] | None = None,
) -> AsyncIterator[SimulatorHandle]:
    """Serve ``org`` on ``host:port`` (0: any free port) for the duration of the block."""
    app = build_app(
        org, faults=faults, rate_limit=rate_limit, clock=clock, pagelen_limits=pagelen_limits
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield SimulatorHandle(f"http://{bound_host}:{bound_port}", app[STATE])
    finally:
        await runner.cleanup()
