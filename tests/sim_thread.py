"""The simulator served from a thread of its own, so that the CLI (which runs its own event loop),
a synchronous client or a child process can talk to it. Used by the integration tests and the
benchmarks."""

from __future__ import annotations

import asyncio
import threading

from exporter.simulator import FaultPlan, Org, SimulatorHandle, run_simulator


class ThreadedSimulator:
    """``with ThreadedSimulator(org, latency=0.1) as sim: sim.base_url, sim.request_count``."""

    def __init__(
        self,
        org: Org,
        *,
        latency: float = 0.0,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        self.org = org
        self.faults = FaultPlan(latency=latency)
        self.rate_limit = rate_limit
        self.handle: SimulatorHandle | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with run_simulator(
            self.org, faults=self.faults, rate_limit=self.rate_limit
        ) as handle:
            self.handle = handle
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedSimulator:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the simulator did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    @property
    def base_url(self) -> str:
        assert self.handle is not None
        return self.handle.base_url

    @property
    def request_count(self) -> int:
        assert self.handle is not None
        return self.handle.request_count
