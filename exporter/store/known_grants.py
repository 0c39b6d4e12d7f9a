"""A listing's open grants, held compactly while tonight's pages of it are staged.

A workspace-wide listing (the effective permissions of a workspace: 100,000 rows at ``huge``)
changes by a few percent a night. Staging every row, then comparing millions of staged rows
with millions of open versions in the merge, cost most of the merge and most of the bytes a
night writes. Instead the writer loads the listing's open grants once, when its first page
arrives, and stages only what differs: a row whose key is new or whose permission changed, and
apart (``stage_gone``) the versions that no page showed. The merge of such a scope (``delta``
in ``stage_observations``) reads those only.

Each open grant is held as its key (the ids of its subject and object in ``names``, in one 64-bit
integer), its version's id and its permission's code: 13 bytes, not the hundreds a tuple of
strings costs. A key seen a second time (paging drift can repeat a row) is always staged, so that
the merge keeps the last copy of the key as it does for every staged row.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import islice
from operator import le
from typing import Any

#: Permission codes are one byte: a listing with more distinct values is staged whole.
MAX_CODES = 255


def grant_key(subject_id: int, object_id: int) -> int:
    """A grant's key within its scope as one integer: the ids of its subject and object (each
    below 2^31, as SQLite computes the same key in signed 64 bits: ``names`` would need two
    billion uuids)."""
    return subject_id << 32 | object_id


class KnownGrants:
    """The open grants of one scope: which of tonight's rows need staging, and which versions
    no row showed."""

    __slots__ = ("_codes", "_ids", "_keys", "_permissions", "_seen")

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._keys, self._ids = array("Q"), array("q")
        self._permissions = bytearray()
        self._seen = bytearray()

    def extend(self, rows: Iterable[Sequence[Any]]) -> None:
        """Add open grants: (version id, key, permission), as the database gives them (the key
        is ``grant_key`` of the subject's and the object's ids). ``ready`` must follow the last
        of them."""
        codes = self._codes
        for version_id, key, permission in rows:
            code = codes.get(permission)
            if code is None:
                code = codes[str(permission)] = len(codes)
                if code >= MAX_CODES:
                    raise ValueError("more distinct permissions than one byte can name")
            self._keys.append(key)
            self._ids.append(version_id)
            self._permissions.append(code)

    def ready(self) -> KnownGrants:
        """Order the grants by key for lookups, unless they came in that order (the database
        gives them so: sorting 4.7 million at ``huge`` took about 3 s of a night)."""
        keys = self._keys
        if not all(map(le, keys, islice(keys, 1, None))):
            order = sorted(range(len(self._ids)), key=keys.__getitem__)
            self._keys = array("Q", (keys[i] for i in order))
            self._ids = array("q", (self._ids[i] for i in order))
            self._permissions = bytearray(self._permissions[i] for i in order)
        # Version ids in 4 bytes while they fit (for decades of nights at huge's churn).
        if not self._ids or max(self._ids) < 2**32:
            self._ids = array("I", self._ids)
        self._seen = bytearray(len(self._ids))
        return self

    def __len__(self) -> int:
        return len(self._ids)

    def unchanged(self, subject_id: int, object_id: int, permission: str) -> bool:
        """Whether tonight's row is its key's open version as it is, seen for the first time
        tonight: such a row need not be staged. Marks the key seen."""
        key = grant_key(subject_id, object_id)
        i = bisect_left(self._keys, key)
        if i == len(self._keys) or self._keys[i] != key:
            return False
        if self._seen[i]:
            return False  # a repeat: staged, so that the last copy counts
        self._seen[i] = 1
        return self._codes.get(permission) == self._permissions[i]

    def gone(self) -> list[int]:
        """The ids of the open versions whose key no row showed."""
        return [self._ids[i] for i, seen in enumerate(self._seen) if not seen]
