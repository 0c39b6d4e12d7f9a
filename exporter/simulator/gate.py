"""Who is calling and whether they may: credential checks and the rolling-window rate limit.

Imports only the standard library and ``exporter.simulator.org``. Like Bitbucket: HTTP Basic with
the account's email and an API token, or ``Bearer`` with an OAuth token or a workspace access
token. An API token sent as Bearer is refused, as is a wrong token. A caller carries the scopes of
its token; ``missing_scopes`` says which of an endpoint's required scopes it lacks. The rate
limit counts requests per credential over a rolling window and takes its clock as a parameter,
so tests need not sleep.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from exporter.simulator.org import DEFAULT_SCOPES, Org

API_TOKEN = "api_token"
OAUTH = "oauth"
ACCESS_TOKEN = "access_token"


@dataclass(frozen=True)
class Caller:
    user_uuid: str  # "" for an access token, which acts for a workspace, not a user
    credential: str  # what the rate limit counts against: "token:<user>" or "oauth:<token>"
    kind: str = API_TOKEN
    scopes: frozenset[str] = DEFAULT_SCOPES
    workspace_uuid: str | None = None  # the one workspace an access token acts for

    def missing_scopes(self, required: tuple[str, ...]) -> list[str]:
        return [scope for scope in required if scope not in self.scopes]


def _basic(org: Org, encoded: str) -> Caller | None:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    email, _, token = decoded.partition(":")
    user = org.user_by_email(email)
    if user is None or org.api_tokens.get(token) != user.uuid:
        return None
    return Caller(user.uuid, f"token:{user.uuid}", API_TOKEN, org.scopes_of(token))


def authenticate(org: Org, header: str | None) -> Caller | None:
    """The caller named by an ``Authorization`` header, or None (answer 401)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "basic":
        return _basic(org, value.strip())
    if scheme.lower() == "bearer":
        return _bearer(org, value.strip())
    return None


def _bearer(org: Org, token: str) -> Caller | None:
    scopes = org.scopes_of(token)
    if token in org.oauth_tokens:
        return Caller(org.oauth_tokens[token], f"oauth:{token}", OAUTH, scopes)
    if token in org.access_tokens:
        ws = org.access_tokens[token]
        return Caller("", f"access:{token}", ACCESS_TOKEN, scopes, workspace_uuid=ws)
    return None


class RateLimiter:
    """At most ``limit`` requests per ``window`` seconds per credential, rolling."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def allow(self, credential: str) -> bool:
        """Count one request; False when it is over the limit (rejected ones do not count)."""
        now = self.clock()
        times = self._seen.setdefault(credential, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True
