"""Pure parsing of Bitbucket answers (the page envelope and the error body) and the pure rules
of paging: which page URLs may be read concurrently and which rows are repeats. No I/O.

Envelope: ``{size, page, pagelen, next, previous, values}``; only ``values`` is always there and
``next`` is absent on the last page. Error body: ``{"type": "error", "error": {"message",
"detail"}}`` where ``detail`` is a string or an object such as ``{"required": [...], "granted":
[...]}``; some answers (429) are ``text/plain``. Imports only ``exporter.errors``.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from exporter.errors import FetchFailedError

#: How much of a non-JSON error body is kept in a message.
MAX_TEXT_BODY = 300
#: How much of an HTML page's title is kept in a message.
MAX_TITLE = 80
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
HTML_PAGE = "an HTML page, not valid JSON (a proxy or login page?)"


@dataclass(frozen=True)
class Page:
    """One page of a listing; ``url`` (no credentials) and ``number`` say where it came from.

    ``size``, ``pagelen`` and ``page`` are what the page reported, None when absent.
    """

    values: list[dict[str, Any]]
    next: str | None
    size: int | None
    url: str = ""
    number: int = 1
    pagelen: int | None = None
    page: int | None = None


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


def _one_line(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]


def html_page(text: str) -> str | None:
    """What to say of a body that is an HTML page (a proxy's error page, a login page), with its
    title; None if it is not one. JSON never begins with ``<``."""
    if not text.lstrip().startswith("<"):
        return None
    found = _TITLE.search(text)
    title = _one_line(found[1], MAX_TITLE) if found else ""
    return f"{HTML_PAGE}, titled {title!r}" if title else HTML_PAGE


def not_json(body: bytes | str, error: ValueError) -> str:
    """What is wrong with a body that should have been JSON."""
    found = html_page(_text(body))
    return f"the body is {found}" if found else f"the body is not valid JSON ({error})"


def _malformed(url: str, page_number: int, problem: str) -> FetchFailedError:
    return FetchFailedError(f"GET {url} page {page_number}: {problem}", url=url, status=200)


def parse_page(body: bytes | str, *, url: str, page_number: int) -> Page:
    """Parse one page envelope; FetchFailedError names the endpoint, page and problem."""
    try:
        data = json.loads(_text(body))
    except ValueError as exc:
        raise _malformed(url, page_number, not_json(body, exc)) from None
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
    return Page(
        values=values,
        next=next_url,
        size=_count(data.get("size")),
        url=url,
        number=page_number,
        pagelen=_count(data.get("pagelen")),
        page=_count(data.get("page")),
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def fan_out_urls(first: Page) -> list[str] | None:
    """The URLs of pages 2..last if the first page allows reading them concurrently, else None.

    Building page URLs is allowed only here: the first page must report ``page`` 1, ``pagelen``
    and ``size``, hold a full page of values, and have a ``next`` whose ``page`` parameter is 2.
    Each URL is that ``next`` with only ``page`` replaced, so ``fields``, ``pagelen`` and any
    other parameter stay exactly as Bitbucket wrote them. Otherwise the caller follows ``next``.
    """
    if first.next is None or first.size is None or not first.pagelen or first.page != 1:
        return None
    if len(first.values) != first.pagelen:
        return None
    last = math.ceil(first.size / first.pagelen)
    parts = urlsplit(first.next)
    items = parts.query.split("&")
    where = [i for i, item in enumerate(items) if item.partition("=")[0] == "page"]
    if last < 2 or len(where) != 1 or items[where[0]] != "page=2":
        return None
    at = where[0]
    return [
        urlunsplit(parts._replace(query="&".join([*items[:at], f"page={n}", *items[at + 1 :]])))
        for n in range(2, last + 1)
    ]


RowKey = Callable[[dict[str, Any]], Hashable]


class SeenRows:
    """Drops rows whose key was already seen near them in one listing.

    Offset paging repeats a row on the next page when rows are added while a listing is read: a
    repeat lies within a page or two of the first sight. Only the keys of the last ``window``
    pages are kept, so that memory does not grow with the listing (a listing of 4.7 million
    grants held 1.2 GB of keys); a repeat farther apart is still dropped by the store, whose
    staging tables keep one row per key. Rows whose key is None are always kept (the caller's
    parser reports what they lack).
    """

    def __init__(self, key: RowKey | None, *, window: int = 2) -> None:
        self._key = key
        self._recent: deque[set[Hashable]] = deque(maxlen=window)
        self.dropped = 0

    def filter(self, page: Page) -> Page:
        if self._key is None:
            return page
        kept = []
        keys: set[Hashable] = set()
        for row in page.values:
            key = self._key(row)
            if key is not None:
                if key in keys or any(key in earlier for earlier in self._recent):
                    continue
                keys.add(key)
            kept.append(row)
        self._recent.append(keys)
        self.dropped += len(page.values) - len(kept)
        return page if len(kept) == len(page.values) else replace(page, values=kept)


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
        return ErrorBody(message=html_page(text) or _one_line(text, MAX_TEXT_BODY))
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ErrorBody(message=_one_line(text, MAX_TEXT_BODY))
    message = _one_line(str(error.get("message") or ""), MAX_TEXT_BODY)
    detail = error.get("detail")
    if isinstance(detail, dict):
        required, granted = _strings(detail.get("required")), _strings(detail.get("granted"))
        return ErrorBody(message, json.dumps(detail, sort_keys=True), required, granted)
    return ErrorBody(message, None if detail is None else _one_line(str(detail), MAX_TEXT_BODY))
