"""Faults and latency the simulator injects on demand: ``FaultPlan`` holding ``Fault`` rules.

Imports only the standard library and ``yarl``. A plan is mutable while the server runs, so a test
can add or clear rules between requests. A rule matches a path prefix and optionally a page
number, and fires ``times`` times (None: always). Everything is deterministic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from yarl import URL

FOREIGN_ORIGIN = URL("http://evil.example")


class FaultKind(StrEnum):
    STATUS = "status"  # answer ``status`` (500/502/503) with a JSON error body
    RESET = "reset"  # close the connection unanswered (aiohttp retries a GET once: use times=2)
    MALFORMED = "malformed"  # a truncated JSON body
    MISSING_VALUES = "missing_values"  # a page envelope without "values"
    FOREIGN_NEXT = "foreign_next"  # "next" points to http://evil.example
    REPEAT_NEXT = "repeat_next"  # "next" points to the same page
    LATENCY = "latency"  # wait ``latency`` seconds, then answer normally


BODY_FAULTS = frozenset(
    {FaultKind.MALFORMED, FaultKind.MISSING_VALUES, FaultKind.FOREIGN_NEXT, FaultKind.REPEAT_NEXT}
)


@dataclass
class Fault:
    kind: FaultKind
    path_prefix: str = "/"
    page: int | None = None
    times: int | None = 1
    status: int = 503
    latency: float = 0.0
    fired: int = 0

    def matches(self, path: str, page: int) -> bool:
        return (
            path.startswith(self.path_prefix)
            and (self.page is None or self.page == page)
            and (self.times is None or self.fired < self.times)
        )


@dataclass
class FaultPlan:
    """The rules in force; ``latency`` delays every request (seconds)."""

    rules: list[Fault] = field(default_factory=list)
    latency: float = 0.0

    def add(self, kind: FaultKind | str, **options: Any) -> Fault:
        rule = Fault(FaultKind(kind), **options)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()
        self.latency = 0.0

    def take(self, path: str, page: int) -> list[Fault]:
        """The rules matching this request; each one counts as fired."""
        matched = [rule for rule in self.rules if rule.matches(path, page)]
        for rule in matched:
            rule.fired += 1
        return matched


def corrupt_page(envelope: dict[str, Any], kind: FaultKind, url: URL) -> dict[str, Any]:
    """The envelope as a faulty server would send it (``url`` is this page's URL)."""
    corrupted = dict(envelope)
    if kind is FaultKind.MISSING_VALUES:
        corrupted.pop("values", None)
    elif kind is FaultKind.REPEAT_NEXT:
        corrupted["next"] = str(url)
    elif kind is FaultKind.FOREIGN_NEXT:
        own = URL(envelope.get("next") or str(url))
        corrupted["next"] = str(FOREIGN_ORIGIN.with_path(own.path).with_query(own.query))
    return corrupted


def truncated_json(payload: Any) -> bytes:
    """The JSON text of ``payload`` cut in half: not parseable."""
    text = json.dumps(payload).encode()
    return text[: max(1, len(text) // 2)]
