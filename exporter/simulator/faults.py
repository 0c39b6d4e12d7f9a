"""Faults and latency the simulator injects on demand: ``FaultPlan`` holding ``Fault`` rules.

Imports only the standard library and ``yarl``. A plan is mutable while the server runs, so a test
can add or clear rules between requests. A rule matches a path prefix, optionally an endpoint
name (see ``routes``) and a page number, fires with probability ``rate`` and at most ``times``
times (None: always). Rules of one ``group`` share one draw per request and split it: each
fires on a band of its own ``rate``, so at most one of them fires, and together they fire at the
sum of their rates. ``foreign_next`` and ``foreign_redirect`` point at
``FaultPlan.foreign_origin`` (by default an unreachable host; a test may point it at a server of
its own to see what reaches it).
Every request is answered ``latency`` plus up to ``jitter`` seconds after it arrived: the
simulator's own work happens within that time, as a real server's does.

Everything is deterministic by ``seed``: whether a rule fires, and the jitter, are drawn from a
hash of (seed, rule, request path and query, how many times that exact URL was asked before),
not from a shared random stream, so concurrent clients see the same faults in any order.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from yarl import URL

FOREIGN_ORIGIN = URL("http://evil.example")


class FaultKind(StrEnum):
    STATUS = "status"  # answer ``status`` (500/502/503) with a JSON error body
    RESET = "reset"  # close the connection unanswered (aiohttp retries a GET once: use times=2)
    MALFORMED = "malformed"  # a complete response whose JSON text is cut short: not parseable
    TRUNCATED = "truncated"  # Content-Length promises the whole body; half comes, then a close
    SLOW_BODY = "slow_body"  # the body trickles out in chunks over ``latency`` seconds
    MISSING_VALUES = "missing_values"  # a page envelope without "values"
    FOREIGN_NEXT = "foreign_next"  # "next" points to the plan's foreign origin
    FOREIGN_REDIRECT = "foreign_redirect"  # 302 to the same path and query on the foreign origin
    HTML_PAGE = "html_page"  # 200 with an HTML login page, as a proxy or SSO gateway answers
    REPEAT_NEXT = "repeat_next"  # "next" points to the same page
    LATENCY = "latency"  # wait ``latency`` seconds, then answer normally


BODY_FAULTS = frozenset(
    {
        FaultKind.MALFORMED,
        FaultKind.MISSING_VALUES,
        FaultKind.FOREIGN_NEXT,
        FaultKind.REPEAT_NEXT,
        FaultKind.TRUNCATED,
        FaultKind.SLOW_BODY,
    }
)


def unit_draw(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class Fault:
    kind: FaultKind
    path_prefix: str = "/"
    page: int | None = None
    times: int | None = 1
    status: int = 503
    latency: float = 0.0
    fired: int = 0
    rate: float = 1.0
    endpoint: str | None = None
    #: Rules of one group share one draw per request; at most one of them fires.
    group: str | None = None

    def matches(self, path: str, page: int, endpoint: str | None = None) -> bool:
        return (
            path.startswith(self.path_prefix)
            and (self.endpoint is None or self.endpoint == endpoint)
            and (self.page is None or self.page == page)
            and (self.times is None or self.fired < self.times)
        )


@dataclass
class FaultPlan:
    """The rules in force; every request waits ``latency`` + up to ``jitter`` seconds."""

    rules: list[Fault] = field(default_factory=list)
    latency: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    foreign_origin: URL = FOREIGN_ORIGIN
    _asked: Counter[str] = field(default_factory=Counter, repr=False)

    def add(self, kind: FaultKind | str, **options: Any) -> Fault:
        rule = Fault(FaultKind(kind), **options)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()
        self.latency = 0.0
        self.jitter = 0.0

    def take(
        self, path: str, page: int, *, endpoint: str | None = None, url: str | None = None
    ) -> list[Fault]:
        """The rules that fire on this request (``url``: its path and query); each counts."""
        key = url or path
        nth = self._asked[key]
        self._asked[key] += 1
        fired = []
        bands: dict[str, float] = {}  # where the next rule of each group begins its band
        for index, rule in enumerate(self.rules):
            if not rule.matches(path, page, endpoint):
                continue
            if rule.group is not None:
                low = bands.get(rule.group, 0.0)
                bands[rule.group] = low + rule.rate
                if low <= unit_draw(self.seed, rule.group, key, nth) < low + rule.rate:
                    fired.append(rule)
            elif rule.rate >= 1.0 or unit_draw(self.seed, index, key, nth) < rule.rate:
                fired.append(rule)
        for rule in fired:
            rule.fired += 1
        return fired

    def foreign(self, url: URL) -> URL:
        """``url``'s path and query on the foreign origin."""
        return self.foreign_origin.with_path(url.path).with_query(url.query)

    def delay(self, url: str) -> float:
        """Seconds to wait before answering ``url`` (path and query)."""
        if self.jitter <= 0:
            return self.latency
        return self.latency + self.jitter * unit_draw(self.seed, "jitter", url, self._asked[url])


def corrupt_page(
    envelope: dict[str, Any], kind: FaultKind, url: URL, foreign: URL = FOREIGN_ORIGIN
) -> dict[str, Any]:
    """The envelope as a faulty server would send it (``url`` is this page's URL; ``foreign`` the
    origin a foreign ``next`` points to)."""
    corrupted = dict(envelope)
    if kind is FaultKind.MISSING_VALUES:
        corrupted.pop("values", None)
    elif kind is FaultKind.REPEAT_NEXT:
        corrupted["next"] = str(url)
    elif kind is FaultKind.FOREIGN_NEXT:
        own = URL(envelope.get("next") or str(url))
        corrupted["next"] = str(foreign.with_path(own.path).with_query(own.query))
    return corrupted


LOGIN_PAGE = """<!DOCTYPE html>
<html><head><title>Sign in - Corporate SSO</title></head>
<body><form method="post" action="/login"><input name="user"><input name="password"
type="password"><button>Sign in</button></form></body></html>
"""


def truncated_json(payload: Any) -> bytes:
    """The JSON text of ``payload`` cut in half: not parseable."""
    text = json.dumps(payload).encode()
    return text[: max(1, len(text) // 2)]
