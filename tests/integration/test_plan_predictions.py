"""The plan's predictions hold against the rolling window as the run really meets it: with a
fake clock that the budget's waits advance, the per-object scopes started before the deadline are
exactly the number the plan said would fit, and none starts after it."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from exporter.bitbucket import BasicAuth
from exporter.bitbucket.budget import requests_startable
from exporter.config import Settings
from exporter.export import run_snapshot
from exporter.simulator import ADMIN_EMAIL, ADMIN_TOKEN, Org
from tests.sim_thread import ThreadedSimulator

FIT = re.compile(r"(\d+) fit tonight after (\d+) requests")


class FakeTime:
    """A clock that only the run's own waits move forward."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.starts: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


@pytest.mark.parametrize(("limit", "hours"), [(30, 2.0), (40, 1.5)])
def test_the_deadline_stops_exactly_where_the_rolling_window_said(
    tmp_path: Path, simulator: ThreadedSimulator, org: Org, caplog: pytest.LogCaptureFixture,
    limit: int, hours: float,
) -> None:
    window, deadline = 3600.0, hours * 3600
    settings = Settings(db_path=tmp_path / "a.db", api_url=simulator.base_url,
                        auth=BasicAuth(ADMIN_EMAIL, ADMIN_TOKEN), rate=(limit, window),
                        deadline=deadline)  # fmt: skip
    time = FakeTime()
    caplog.set_level(logging.INFO, logger="exporter.export")
    result = asyncio.run(run_snapshot(settings, sleep=time.sleep, clock=time.clock))

    fit, after = map(int, FIT.findall(caplog.text)[-1])
    allowed = requests_startable(deadline, limit=limit, window=window)
    assert fit == allowed - after > 0
    per_object = sum(2 * (len(ws.repositories) + len(ws.projects))
                     for ws in org.workspaces.values())  # fmt: skip
    assert result.summary.outcomes["skipped"] == per_object - fit
    # Every request the budget let through started before the deadline; one more could not.
    assert result.counters.requests == allowed
    assert result.plan is not None and result.plan.tonight == fit
    assert time.now - 1000.0 < deadline
