"""Pure parsing of Bitbucket answers: the page envelope and the error body. No I/O.

Envelope: ``{size, page, pagelen, next, previous, values}``; only ``values`` is always there and
``next`` is absent on the last page. Error body: ``{"type": "error", "error": {"message",
"detail"}}`` where ``detail`` is a string or an object such as ``{"required": [...], "granted":
[...]}``; some answers (429) are ``text/plain``. Imports only ``exporter.errors``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from exporter.errors import FetchFailedError

#: How much of a non-JSON error body is kept in a message.
MAX_TEXT_BODY = 300


@dataclass(frozen=True)
class Page:
    """One page of a listing; ``url`` (no credentials) and ``number`` say where it came from."""

    values: list[dict[str, Any]]
    next: str | None
    size: int | None
    url: str = ""
    number: int = 1


@dataclass(frozen=True)
class ErrorBody:
    """What an error answer said. ``required``/``granted`` are scopes from a 403's detail."""

    message: str
    detail: str | None = None
    required: tuple[str, ...] = field(default=())
    granted: tuple[str, ...] = field(default=())

    @property
    def missing_scopes(self) -> tuple[str, ...]:
        missing = tuple(s for s in self.required if s not in self.granted)
        return missing or self.required


def _text(body: bytes | str) -> str:
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body


def _malformed(url: str, page_number: int, problem: str) -> FetchFailedError:
    return FetchFailedError(f"GET {url} page {page_number}: {problem}", url=url, status=200)


def parse_page(body: bytes | str, *, url: str, page_number: int) -> Page:
    """Parse one page envelope; FetchFailedError names the endpoint, page and problem."""
    try:
        data = json.loads(_text(body))
    except ValueError as exc:
        raise _malformed(url, page_number, f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _malformed(url, page_number, f"expected a JSON object, got {type(data).__name__}")
    values = data.get("values")
    if not isinstance(values, list):
        raise _malformed(url, page_number, "the page has no 'values' list")
    for index, value in enumerate(values):
        if not isinstance(value, dict):
            raise _malformed(url, page_number, f"values[{index}] is not an object")
    next_url = data.get("next")
    if next_url is not None and (not isinstance(next_url, str) or not next_url):
        raise _malformed(url, page_number, f"'next' is not a URL: {next_url!r}")
    size = data.get("size")
    if isinstance(size, bool) or not isinstance(size, int):
        size = None
    return Page(values=values, next=next_url, size=size, url=url, number=page_number)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    if isinstance(value, str):
        return (value,)
    return ()


def parse_error_body(body: bytes | str) -> ErrorBody:
    """Pull message and detail out of an error answer; never raises."""
    text = _text(body).strip()
    try:
        data = json.loads(text)
    except ValueError:
        return ErrorBody(message=text[:MAX_TEXT_BODY])
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ErrorBody(message=text[:MAX_TEXT_BODY])
    message = str(error.get("message") or "").strip()
    detail = error.get("detail")
    if isinstance(detail, dict):
        required, granted = _strings(detail.get("required")), _strings(detail.get("granted"))
        return ErrorBody(message, json.dumps(detail, sort_keys=True), required, granted)
    return ErrorBody(message, None if detail is None else str(detail))
