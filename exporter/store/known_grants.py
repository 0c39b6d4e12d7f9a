"""A listing's open grants, held compactly while tonight's pages of it are staged.

A workspace-wide listing (the effective permissions of a workspace: 100,000 rows at ``huge``)
changes by a few percent a night. Staging every row, then comparing millions of staged rows
with millions of open versions in the merge, cost most of the merge and most of the bytes a
night writes. Instead the writer loads the listing's open grants once, when its first page
arrives, and stages only what differs: a row whose key is new or whose permission changed, and
apart (``stage_gone``) the versions that no page showed. The merge of such a scope (``delta``
in ``stage_observations``) reads those only.

Each open grant is held as a 96-bit digest of its key (subject and object: ``key_digest``), its
version's id and its permission's code: 18 bytes, not the hundreds a tuple of strings costs. A
key seen a second time (paging drift can repeat a row) is always staged, so that the merge keeps
the last copy of the key as it does for every staged row.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

#: Permission codes are one byte: a listing with more distinct values is staged whole.
MAX_CODES = 255
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


def key_digest(subject_uuid: str, object_uuid: str) -> tuple[int, int]:
    """A 96-bit digest of a grant's key within its scope, as a 64-bit and a 32-bit part, from
    Python's string hashes (SipHash, keyed anew by each process): the 64 bits mix the hashes of
    its two uuids, the 32 bits hash them joined (uuids are of one length: no two keys join
    alike). Two keys share the first part by a chance of about 2^-64, and then the second by
    2^-32 more, as the joined strings differ. It is taken for every open grant loaded and for
    every row of tonight's pages, 10 million a night at ``huge``: 0.25 µs each, where a
    ``blake2b`` digest took 1 µs, in the process that fetches. A digest never outlives the run
    that took it, so a per-process key is no matter."""
    return hash((subject_uuid, object_uuid)) & _U64, hash(subject_uuid + object_uuid) & _U32


class KnownGrants:
    """The open grants of one scope: which of tonight's rows need staging, and which versions
    no row showed."""

    __slots__ = ("_codes", "_high", "_ids", "_low", "_permissions", "_seen")

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self._high, self._low, self._ids = array("Q"), array("I"), array("q")
        self._permissions = bytearray()
        self._seen = bytearray()

    def extend(self, rows: Iterable[Sequence[Any]]) -> None:
        """Add open grants: (version id, subject uuid, object uuid, permission), as the
        database gives them. ``ready`` must follow the last of them."""
        for version_id, subject_uuid, object_uuid, permission in rows:
            code = self._codes.setdefault(str(permission), len(self._codes))
            if code >= MAX_CODES:
                raise ValueError("more distinct permissions than one byte can name")
            high, low = key_digest(str(subject_uuid), str(object_uuid))
            self._high.append(high)
            self._low.append(low)
            self._ids.append(int(version_id))
            self._permissions.append(code)

    def ready(self) -> KnownGrants:
        """Order the grants for lookups (by the high half of the digest alone: a lookup
        compares the low half among equal ones)."""
        order = sorted(range(len(self._ids)), key=self._high.__getitem__)
        self._high = array("Q", (self._high[i] for i in order))
        self._low = array("Q", (self._low[i] for i in order))
        # Version ids in 4 bytes while they fit (for decades of nights at huge's churn).
        small = not self._ids or max(self._ids) < 2**32
        self._ids = array("I" if small else "q", (self._ids[i] for i in order))
        self._permissions = bytearray(self._permissions[i] for i in order)
        self._seen = bytearray(len(order))
        return self

    def __len__(self) -> int:
        return len(self._ids)

    def unchanged(self, subject_uuid: str, object_uuid: str, permission: str) -> bool:
        """Whether tonight's row is its key's open version as it is, seen for the first time
        tonight: such a row need not be staged. Marks the key seen."""
        high, low = key_digest(subject_uuid, object_uuid)
        i = bisect_left(self._high, high)
        while i < len(self._high) and self._high[i] == high:
            if self._low[i] == low:
                if self._seen[i]:
                    return False  # a repeat: staged, so that the last copy counts
                self._seen[i] = 1
                return self._codes.get(permission) == self._permissions[i]
            i += 1
        return False

    def gone(self) -> list[int]:
        """The ids of the open versions whose key no row showed."""
        return [self._ids[i] for i, seen in enumerate(self._seen) if not seen]
