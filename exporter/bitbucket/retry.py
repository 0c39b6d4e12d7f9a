"""The retry policy as named data, the delays it prescribes, and the client's counters. Pure.

Transient failures (5xx in ``RETRY_STATUSES``, timeouts, dropped connections) back off with full
jitter; a 429 is not a failure but a request to slow down: the whole client pauses (doubling from
a base per consecutive 429, capped; see ``throttle.py``) and it does not consume attempts.
Bitbucket sends no Retry-After, so none is read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

DEFAULT_ATTEMPTS = 5
DEFAULT_BASE_DELAY = 1.0
DEFAULT_MAX_DELAY = 60.0
DEFAULT_THROTTLE_BASE = 60.0
DEFAULT_THROTTLE_CAP = 600.0
#: A generous bound so that a server answering 429 forever cannot hang a run.
DEFAULT_MAX_THROTTLES = 20


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = DEFAULT_ATTEMPTS
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    throttle_base: float = DEFAULT_THROTTLE_BASE
    throttle_cap: float = DEFAULT_THROTTLE_CAP
    max_throttles: int = DEFAULT_MAX_THROTTLES

    RETRY_STATUSES: ClassVar[frozenset[int]] = frozenset({500, 502, 503, 504})

    def backoff_delay(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**(retry_number - 1))]."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** max(retry_number - 1, 0))
        return rng.uniform(0.0, ceiling)

    def throttle_delay(self, throttle_number: int) -> float:
        """The pause after the n-th consecutive 429: doubling from base, capped."""
        return min(self.throttle_cap, self.throttle_base * 2.0 ** max(throttle_number - 1, 0))


@dataclass
class ClientStats:
    """What the client did: HTTP requests sent, retries, 429s seen, seconds slept in backoff and
    429 pauses, seconds waited on the rate budget, and repeated rows dropped from listings."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    seconds_slept: float = 0.0
    budget_wait_seconds: float = 0.0
    duplicate_rows: int = 0
    #: Further pages that first pages announced by their ``size`` (read concurrently).
    pages_foreseen: int = 0
    #: Seconds of the 429 pauses begun, and when (time.monotonic()) the current one ends.
    throttle_seconds: float = 0.0
    pause_ends: float = 0.0
