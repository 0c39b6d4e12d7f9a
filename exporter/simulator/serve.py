"""``bbaccess simulate``'s engine: parse its options and serve a generated org until cancelled.

Imports the standard library and ``exporter.simulator``; ``cli.py`` owns the command, the event
loop and printing (it passes ``announce``). Only loopback hosts are accepted: the simulator's
credentials are public.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from exporter.simulator.faults import FaultKind, FaultPlan
from exporter.simulator.generate import ADMIN_EMAIL, ADMIN_TOKEN, PRESETS, generate_org
from exporter.simulator.server import run_simulator

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})
#: The 5xx statuses a ``fault_rate`` answers with, each a third of the faults.
FAULT_STATUSES = (500, 502, 503)
_UNITS = {"ms": 0.001, "s": 1.0, "": 1.0}
_WINDOWS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_WINDOWS.update(d=86400.0, day=86400.0)


def parse_latency(text: str) -> float:
    """Seconds from ``100ms``, ``1.5s`` or ``0``; ValueError on anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", text)
    if match is None or (match[2] is None and float(match[1]) != 0):
        raise ValueError(f"invalid latency {text!r}: write it like 100ms or 0.5s")
    return float(match[1]) * _UNITS[match[2] or ""]


def fault_plan(*, seed: int, latency: float, fault_rate: float) -> FaultPlan:
    """Every request delayed by ``latency``; ``fault_rate`` of them (1.0: every one) answered
    with one of ``FAULT_STATUSES``."""
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError(f"invalid fault rate {fault_rate}: it must be between 0 and 1")
    plan = FaultPlan(latency=latency, seed=seed)
    if fault_rate > 0:
        # One draw per request, split between the statuses: three independent draws at a third
        # of the rate each let (2/3)^3 of the requests through at a rate of 1.0.
        for status in FAULT_STATUSES:
            plan.add(FaultKind.STATUS, status=status, times=None, rate=fault_rate / 3,
                     group="fault_rate")  # fmt: skip
    return plan


async def serve(
    *,
    preset: str,
    seed: int,
    host: str,
    port: int,
    latency: float,
    rate_limit: tuple[int, float] | None,
    fault_rate: float,
    announce: Callable[[str], None],
) -> None:
    """Generate the org, serve it, tell the user how to point the exporter at it, and run until
    cancelled (the server is closed on the way out)."""
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"refusing to serve on {host!r}: use 127.0.0.1 or localhost")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    plan = fault_plan(seed=seed, latency=latency, fault_rate=fault_rate)
    org = await asyncio.to_thread(generate_org, preset, seed)
    # "localhost" may resolve to ::1 as well: bind the IPv4 loopback only, name it as asked
    async with run_simulator(
        org, host="127.0.0.1", port=port, faults=plan, rate_limit=rate_limit
    ) as handle:
        base_url = handle.base_url.replace("127.0.0.1", host)
        announce(f"Simulated Bitbucket Cloud ({preset} org, seed {seed}) at {base_url}")
        announce("Point the exporter at it with:")
        announce(f"  export BITBUCKET_API_URL={base_url}")
        announce(f"  export BITBUCKET_EMAIL={ADMIN_EMAIL}")
        announce(f"  export BITBUCKET_API_TOKEN={ADMIN_TOKEN}")
        announce("Press Ctrl-C to stop.")
        await asyncio.Event().wait()
