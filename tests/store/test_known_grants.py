"""A listing's open grants as the writer holds them while tonight's pages arrive."""

from __future__ import annotations

import pytest

from exporter.store.known_grants import KnownGrants, grant_key


def known(*rows: tuple[int, int, int, str]) -> KnownGrants:
    """Open grants given as (version id, subject id, object id, permission), in this order."""
    grants = KnownGrants()
    grants.extend((version, grant_key(subject, obj), permission)
                  for version, subject, obj, permission in rows)  # fmt: skip
    return grants.ready()


@pytest.mark.parametrize("ordered", [True, False], ids=["in key order", "in any order"])
def test_only_a_row_as_it_was_seen_first_time_is_left_unstaged(ordered: bool) -> None:
    rows = [(1, 10, 90, "read"), (2, 11, 90, "write"), (3, 12, 90, "read")]
    grants = known(*(rows if ordered else rows[::-1]))
    assert grants.unchanged(10, 90, "read")
    assert not grants.unchanged(10, 90, "read")  # a repeat is staged: the last copy counts
    assert not grants.unchanged(11, 90, "admin")  # changed
    assert not grants.unchanged(13, 90, "read")  # new
    assert not grants.unchanged(10, 91, "read")  # another object
    assert grants.gone() == [3]


def test_nothing_seen_leaves_every_version_gone() -> None:
    grants = known((5, 1, 2, "read"), (9, 3, 2, "read"))
    assert sorted(grants.gone()) == [5, 9] and len(grants) == 2


def test_subject_and_object_are_not_confused() -> None:
    grants = known((1, 2, 1, "read"))
    assert not grants.unchanged(1, 2, "read")  # the same two ids the other way round
    assert grant_key(1, 2) != grant_key(2, 1)
    # Ids as large as a 32-bit half holds keep apart from their neighbours' keys.
    assert grant_key(1, 2**32 - 1) < grant_key(2, 0)
