"""The client-wide slow-down after a 429: one pause that every request of the client waits out.

Bitbucket's limit is per user, so a 429 to one request means every request is over the limit.
The first 429 closes the gate for ``RetryPolicy.throttle_delay(streak)`` seconds, the streak
counting consecutive 429 pauses (doubling from the base, capped) and resetting after a success.
Requests are tagged with the *epoch* (the number of pauses begun) they were sent in: a 429 to a
request sent before the current pause began is part of the same burst, so it joins that pause
instead of doubling it, and only a success sent after the latest pause resets the streak.
Imports only its siblings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from exporter.bitbucket.retry import RetryPolicy


class ThrottleGate:
    def __init__(self, policy: RetryPolicy, pause: Callable[[float], Awaitable[None]]) -> None:
        self._policy, self._pause = policy, pause
        self._open = asyncio.Event()
        self._open.set()
        #: Pauses begun so far, and consecutive ones not yet followed by a success.
        self.epoch = 0
        self.streak = 0

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait_open(self) -> int:
        """Wait out any pause; the epoch a request sent now belongs to."""
        await self._open.wait()
        return self.epoch

    def begins_pause(self, epoch: int) -> bool:
        """Whether a 429 to a request sent in ``epoch`` begins a new pause (else joins one)."""
        return epoch == self.epoch

    def next_delay(self) -> float:
        return self._policy.throttle_delay(self.streak + 1)

    def succeeded(self, epoch: int) -> None:
        if epoch == self.epoch:
            self.streak = 0

    async def throttled(self, epoch: int) -> float:
        """After a 429 to a request sent in ``epoch``: pause everyone, or join the pause.

        Returns the seconds this call paused (0 when it joined a pause begun by another).
        """
        if not self.begins_pause(epoch):
            await self._open.wait()
            return 0.0
        delay = self.next_delay()
        self.epoch += 1
        self.streak += 1
        self._open.clear()
        try:
            await self._pause(delay)
        finally:
            self._open.set()
        return delay
