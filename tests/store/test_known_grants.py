"""A listing's open grants as the writer holds them while tonight's pages arrive."""

from __future__ import annotations

import pytest

from exporter.store import known_grants
from exporter.store.known_grants import KnownGrants


def known(*rows: tuple[int, str, str, str]) -> KnownGrants:
    grants = KnownGrants()
    grants.extend(rows)
    return grants.ready()


@pytest.mark.parametrize("colliding", [False, True], ids=["digests", "equal high halves"])
def test_only_a_row_as_it_was_seen_first_time_is_left_unstaged(
    monkeypatch: pytest.MonkeyPatch, colliding: bool
) -> None:
    if colliding:  # every key's high half the same: the low half tells them apart
        digest = known_grants.key_digest
        monkeypatch.setattr(known_grants, "key_digest", lambda s, o: (7, digest(s, o)[1]))
    grants = known((1, "{a}", "{r}", "read"), (2, "{b}", "{r}", "write"), (3, "{c}", "{r}", "read"))
    assert grants.unchanged("{a}", "{r}", "read")
    assert not grants.unchanged("{a}", "{r}", "read")  # a repeat is staged: the last copy counts
    assert not grants.unchanged("{b}", "{r}", "admin")  # changed
    assert not grants.unchanged("{d}", "{r}", "read")  # new
    assert not grants.unchanged("{a}", "{s}", "read")  # another object
    assert grants.gone() == [3]


def test_nothing_seen_leaves_every_version_gone() -> None:
    grants = known((5, "{a}", "{r}", "read"), (9, "{b}", "{r}", "read"))
    assert sorted(grants.gone()) == [5, 9] and len(grants) == 2


def test_a_key_is_not_confused_with_another_that_joins_to_the_same_text() -> None:
    grants = known((1, "{a}{", "r}", "read"))
    assert not grants.unchanged("{a}", "{r}", "read")
