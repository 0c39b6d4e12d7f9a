"""``q=`` (a subset of BBQL) and ``sort=`` over rendered JSON items, as pure functions.

Imports only the standard library and ``exporter.simulator.paging`` (for ``BadRequestError``).
A query is clauses ``path op value`` joined by ``AND`` / ``OR`` (``AND`` binds tighter; no
parentheses). ``path`` is dotted (``repository.name``, ``user.uuid``); ``op`` is one of
``= != ~ !~ > >= < <=`` (``~`` is case-insensitive containment); ``value`` is a double-quoted
string, ``true``, ``false``, ``null`` or a number. Permissions and roles compare by rank, as in
Bitbucket (``permission>"read"`` means write or admin); other strings compare as text. ``sort``
takes one dotted path, ``-`` for descending; items without the field sort first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from exporter.simulator.paging import BadRequestError

#: Ranks of the permission and role words (read < write < create-repo < admin; member < owner).
RANKS = {
    "none": -1, "read": 0, "write": 1, "create-repo": 2, "admin": 3,
    "member": 0, "collaborator": 1, "create-project": 2, "owner": 3,
}  # fmt: skip
_CLAUSE = re.compile(
    r"""\s*(?P<path>[A-Za-z_][\w.]*)\s*(?P<op>!=|>=|<=|!~|=|~|>|<)\s*"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|true|false|null|-?\d+(?:\.\d+)?)\s*"""
    r"""(?P<join>AND\b|OR\b|$)""",
    re.IGNORECASE,
)
Predicate = Callable[[Any], bool]


def lookup(item: Any, path: str) -> Any:
    """The value at a dotted path of a JSON item, or None."""
    for part in path.split("."):
        if not isinstance(item, dict):
            return None
        item = item.get(part)
    return item


def _ordered(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, str) and isinstance(right, str) and left in RANKS and right in RANKS:
        return RANKS[left], RANKS[right]
    return left, right


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("=", "!="):
        return bool(left == right) == (op == "=")
    if op in ("~", "!~"):
        found = isinstance(left, str) and str(right).lower() in left.lower()
        return found == (op == "~")
    if left is None or right is None:
        return False
    a, b = _ordered(left, right)
    try:
        return bool({">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op])
    except TypeError:
        return False


def _clause(path: str, op: str, raw: str) -> Predicate:
    value = json.loads(raw)
    return lambda item: _compare(op, lookup(item, path), value)


def parse_query(text: str) -> Predicate:
    """A predicate over rendered items, or BadRequestError for a query this subset rejects."""
    groups: list[list[Predicate]] = [[]]
    position = 0
    while position < len(text):
        match = _CLAUSE.match(text, position)
        if match is None or match.end() == position:
            raise BadRequestError(f"Invalid query: {text[position:]!r}")
        groups[-1].append(_clause(match["path"], match["op"], match["value"]))
        if match["join"].upper() == "OR":
            groups.append([])
        position = match.end()
    if not groups[0] or not groups[-1]:
        raise BadRequestError("Invalid query: empty clause")
    return lambda item: any(all(p(item) for p in group) for group in groups)


def sort_items(items: list[Any], spec: str) -> list[Any]:
    """``items`` sorted by one dotted field; ``-field`` for descending."""
    path = spec.lstrip("-")
    if not re.fullmatch(r"[A-Za-z_][\w.]*", path):
        raise BadRequestError(f"Invalid sort field: {spec!r}")

    def key(item: Any) -> tuple[bool, Any]:
        value = lookup(item, path)
        if isinstance(value, str) and value in RANKS and path.endswith("permission"):
            return True, RANKS[value]
        return value is not None, value if isinstance(value, int | float) else str(value)

    return sorted(items, key=key, reverse=spec.startswith("-"))
