"""What a run tells its user while it goes: progress with an ETA (the plan lines are
``export.night_line`` and ``export.per_object_line``).

The arithmetic is pure (``budget_seconds``, ``eta_seconds``, the progress line); ``show_progress``
is the loop that prints it: a bar redrawn every second on a terminal, a log line a minute
otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TextIO

from exporter.bitbucket.budget import start_offset

log = logging.getLogger(__name__)

BAR_WIDTH = 24


@dataclass(frozen=True)
class Plan:
    listings: int
    expected_requests: int
    basis: str  # why we expect that many: "as snapshot 12", "one page per listing"
    rate: tuple[int, float]  # the budget: requests per window seconds
    #: The estimate counts one page per listing (a first run): the pages that first pages
    #: announce are added as they come, and the count is a lower bound until every listing began.
    grows: bool = False

    def expecting(self, foreseen: int) -> int:
        return self.expected_requests + foreseen if self.grows else self.expected_requests


def budget_seconds(requests: int, rate: tuple[int, float]) -> float:
    """The least time before the last of ``requests`` can start under a rolling window of
    ``rate``.

    A rolling window releases requests a window's worth at a time, not at a steady pace: at
    900/h the first 900 go at once and the 901st waits a whole hour, so 1,000 requests take at
    least an hour, not 400 s. Hence ``start_offset``'s steps, never a straight line.
    """
    limit, window = rate
    return start_offset(requests, limit=limit, window=window)


def eta_seconds(
    plan: Plan, done: int, elapsed: float, *, paused: float = 0.0, pause_left: float = 0.0
) -> float:
    """Seconds left: the slower of the pace so far and what the budget allows (until the last
    expected request may start, following the window's steps). ``paused`` is the length of the
    429 pauses begun so far, ``pause_left`` what remains of the current one: the pace is taken
    over the time not paused, and nothing finishes before the pause ends."""
    remaining = max(plan.expected_requests - done, 0)
    active = max(elapsed - (paused - pause_left), 0.0)
    by_pace = (remaining * active / done if done else 0.0) + pause_left
    by_budget = max(budget_seconds(done + remaining, plan.rate) - elapsed, pause_left)
    return max(by_pace, by_budget)


@dataclass(frozen=True)
class Counts:
    """What a run has done so far, as the progress line shows it."""

    requests: int
    listings: int
    waited: float  # on the rate budget
    paused: float = 0.0  # 429 pauses begun
    pause_left: float = 0.0  # of the current one
    foreseen: int = 0  # pages announced by the first pages' sizes


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_line(
    plan: Plan, *, done: int, listings_done: int, elapsed: float, waited: float, bar: bool = False,
    paused: float = 0.0, pause_left: float = 0.0, foreseen: int = 0,
) -> str:  # fmt: skip
    if plan.grows:
        grown = plan.expecting(foreseen)
        plan = replace(plan, expected_requests=max(grown, done))
    share = min(done / plan.expected_requests, 1.0) if plan.expected_requests else 1.0
    filled = round(share * BAR_WIDTH)
    head = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] " if bar else "progress: "
    return (
        f"{head}{done}/{'≥' if plan.grows else '~'}{plan.expected_requests} requests, "
        f"{listings_done}/{plan.listings} "
        f"listings, {duration(elapsed)} elapsed, {duration(waited)} waited on the budget, "
        f"ETA {duration(eta_seconds(plan, done, elapsed, paused=paused, pause_left=pause_left))}"
        + (f", paused {duration(pause_left)} more after a 429" if pause_left > 0 else "")
    )


async def show_progress(
    plan: Plan,
    counts: Callable[[], Counts],
    *,
    every: float = 60.0,
    stream: TextIO | None = None,
) -> None:
    """Report ``counts()`` until cancelled."""
    out = sys.stderr if stream is None else stream
    on_terminal = out.isatty()
    started = time.monotonic()
    try:
        while True:
            await asyncio.sleep(1.0 if on_terminal else every)
            now = counts()
            line = progress_line(
                plan,
                done=now.requests,
                listings_done=now.listings,
                elapsed=time.monotonic() - started,
                waited=now.waited,
                bar=on_terminal,
                paused=now.paused,
                pause_left=now.pause_left,
                foreseen=now.foreseen,
            )
            if on_terminal:
                out.write("\r" + line[:160].ljust(160))
                out.flush()
            else:
                log.info("%s", line)
    finally:
        if on_terminal:
            out.write("\r" + " " * 160 + "\r")
            out.flush()
