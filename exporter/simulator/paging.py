"""Bitbucket-style paging and ``fields=`` trimming, as pure functions over JSON-like values.

Imports only the standard library and ``yarl`` (for building ``next``/``previous`` from the URL
the client used). Pages are 1-based; ``pagelen`` defaults to 10 and may not exceed 100, or a
lower per-endpoint maximum; beyond it the answer is 400 ``Invalid pagelen``, as Bitbucket's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from yarl import URL

DEFAULT_PAGELEN = 10
MAX_PAGELEN = 100

T = TypeVar("T")
FieldTree = dict[str, "FieldTree | None"]  # None: keep the whole subtree


class BadRequestError(Exception):
    """The query cannot be served; the message goes into a 400 error body."""


def parse_paging(query: Mapping[str, str], max_pagelen: int = MAX_PAGELEN) -> tuple[int, int]:
    """(page, pagelen) from the query string, or BadRequestError."""
    try:
        pagelen = int(query.get("pagelen", min(DEFAULT_PAGELEN, max_pagelen)))
    except ValueError:
        raise BadRequestError("Invalid pagelen") from None
    if not 1 <= pagelen <= max_pagelen:
        raise BadRequestError("Invalid pagelen")
    try:
        page = int(query.get("page", 1))
    except ValueError:
        raise BadRequestError("Invalid page") from None
    if page < 1:
        raise BadRequestError("Invalid page")
    return page, pagelen


def page_envelope(
    items: Sequence[T], *, page: int, pagelen: int, url: URL, render: Callable[[T], Any]
) -> dict[str, Any]:
    """One page of ``items``; ``next``/``previous`` are ``url`` with only ``page`` changed."""
    start = (page - 1) * pagelen
    envelope: dict[str, Any] = {
        "size": len(items),
        "page": page,
        "pagelen": pagelen,
        "values": [render(item) for item in items[start : start + pagelen]],
    }
    if start + pagelen < len(items):
        envelope["next"] = str(url.update_query(page=page + 1))
    if page > 1:
        envelope["previous"] = str(url.update_query(page=page - 1))
    return envelope


def _insert(tree: FieldTree, path: list[str]) -> None:
    head, rest = path[0], path[1:]
    if head in tree and tree[head] is None:
        return
    if not rest:
        tree[head] = None
        return
    child = tree.setdefault(head, {})
    assert child is not None
    _insert(child, rest)


def _keep(value: Any, tree: FieldTree | None) -> Any:
    if tree is None:
        return value
    if isinstance(value, list):
        return [_keep(item, tree) for item in value]
    if isinstance(value, dict):
        if "*" in tree:
            return {k: _keep(v, tree.get(k, tree["*"])) for k, v in value.items()}
        return {k: _keep(v, tree[k]) for k, v in value.items() if k in tree}
    return value


def _drop(value: Any, path: list[str]) -> Any:
    if isinstance(value, list):
        return [_drop(item, path) for item in value]
    if not isinstance(value, dict) or path[0] not in value:
        return value
    if len(path) == 1:
        return {k: v for k, v in value.items() if k != path[0]}
    return {k: (_drop(v, path[1:]) if k == path[0] else v) for k, v in value.items()}


def apply_fields(value: Any, spec: str) -> Any:
    """Trim ``value`` by a Bitbucket ``fields`` spec.

    Plain terms (``next,values.user.uuid``) form a whitelist of dotted paths; ``-x`` removes a
    path; ``+x`` adds one (a no-op unless there is a whitelist, since everything is kept then).
    """
    terms = [t.strip() for t in spec.split(",") if t.strip()]
    whitelist: FieldTree = {}
    removals = []
    for term in terms:
        if term.startswith("-"):
            removals.append(term[1:].split("."))
        else:
            _insert(whitelist, term.lstrip("+").split("."))
    if any(not t.startswith(("-", "+")) for t in terms):
        value = _keep(value, whitelist)
    for path in removals:
        value = _drop(value, path)
    return value
