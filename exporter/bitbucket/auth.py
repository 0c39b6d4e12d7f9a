"""Credentials for the Bitbucket API: how they become an Authorization header.

Imports nothing from the project. ``describe()`` and ``repr()`` never show the secret, so both
are safe in log lines and error messages.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BasicAuth:
    """An Atlassian API token sent as HTTP Basic, with the account's email as user name."""

    email: str
    token: str = field(repr=False)
    #: Where it was configured, for messages.
    origin: str = field(default="BITBUCKET_EMAIL + BITBUCKET_API_TOKEN", compare=False)

    def header(self) -> str:
        raw = f"{self.email}:{self.token}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def describe(self) -> str:
        return f"HTTP Basic as {self.email} ({self.origin})"


@dataclass(frozen=True)
class BearerAuth:
    """An OAuth 2.0 access token sent as ``Authorization: Bearer``."""

    token: str = field(repr=False)
    origin: str = field(default="BITBUCKET_ACCESS_TOKEN", compare=False)

    def header(self) -> str:
        return f"Bearer {self.token}"

    def describe(self) -> str:
        return f"Bearer token ({self.origin})"


Auth = BasicAuth | BearerAuth
