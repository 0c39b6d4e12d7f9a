"""Turning a final (non-retried) error status into the right exception. Pure.

401 stops the run (AuthenticationError naming the auth mode, never the secret); 403 and 404
mean this credential may not see the scope (ForbiddenError; a 403 names missing token scopes);
410 names the change id that removed the endpoint; other 4xx fail the scope with the body's
message. Imports only ``exporter.errors`` and sibling pure modules.
"""

from __future__ import annotations

import re

from exporter.bitbucket.pagination import ErrorBody, parse_error_body
from exporter.errors import (
    ApiError,
    AuthenticationError,
    FetchFailedError,
    ForbiddenError,
    GoneError,
)

CHANGE_ID = re.compile(r"\bCHANGE-\d+\b")


def _said(body: ErrorBody) -> str:
    parts = [part for part in (body.message, body.detail) if part]
    return f": {' - '.join(parts)}" if parts else ""


def error_for_status(
    status: int, body: bytes | str, *, method: str, url: str, auth_description: str
) -> ApiError:
    """The exception for a final error answer. ``url`` must already be free of credentials."""
    parsed = parse_error_body(body)
    where = f"{method} {url}"
    if status == 401:
        return AuthenticationError(
            f"the API refused the credential ({auth_description}) on {where} (401)"
            f"{_said(parsed)}; check that the token is valid and not expired",
            method=method,
            url=url,
            status=status,
        )
    if status == 403:
        if parsed.required:
            scopes = ", ".join(parsed.missing_scopes)
            granted = ", ".join(parsed.granted) or "none"
            text = f"403 on {where}: the token lacks the scope(s) {scopes} (granted: {granted})"
        else:
            text = f"403 on {where}: this credential may not read it{_said(parsed)}"
        return ForbiddenError(text, method=method, url=url, status=status)
    if status == 404:
        return ForbiddenError(
            f"404 on {where}: not found, or not visible to this credential{_said(parsed)}",
            method=method,
            url=url,
            status=status,
        )
    if status == 410:
        match = CHANGE_ID.search(f"{parsed.message} {parsed.detail or ''}")
        change = match.group(0) if match else "no change id given"
        return GoneError(
            f"410 Gone on {where}: Bitbucket removed this endpoint ({change}){_said(parsed)}",
            method=method,
            url=url,
            status=status,
        )
    return FetchFailedError(
        f"{status} on {where}{_said(parsed)}", method=method, url=url, status=status
    )
