"""The org model's effective-permission rules, generation and churn."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from exporter.simulator import (
    ADMIN_EMAIL,
    MEMBER_EMAIL,
    Org,
    apply_churn,
    churn,
    churn_until,
    diff_explicit,
    diff_states,
    effective_permissions,
    explicit_state,
    fact_count,
    generate_org,
    observable_state,
)
from exporter.simulator.org import Group, Project, Repository, Workspace

ALICE, BOB, CAROL, OWNER = "{a}", "{b}", "{c}", "{o}"


def _workspace() -> Workspace:
    ws = Workspace("{ws}", "acme", "Acme")
    for user in (ALICE, BOB, CAROL):
        ws.set_member(user, "member")
    ws.set_member(OWNER, "owner")
    ws.add_project(Project("{p1}", "P1", "One"))
    ws.add_project(Project("{p2}", "P2", "Two"))
    ws.add_repository(Repository("{r1}", "api", "api", True, "{p1}"))
    ws.add_repository(Repository("{r2}", "web", "web", True, "{p2}"))
    ws.add_group(Group("devs", "Devs", {ALICE, BOB}))
    return ws


def test_no_source_gives_no_row_but_owners_get_admin_everywhere() -> None:
    ws = _workspace()
    assert effective_permissions(ws) == {("{r1}", OWNER): "admin", ("{r2}", OWNER): "admin"}


def test_direct_user_grant() -> None:
    ws = _workspace()
    ws.grant_repo_user("{r1}", ALICE, "write")
    assert effective_permissions(ws)[("{r1}", ALICE)] == "write"
    assert ("{r2}", ALICE) not in effective_permissions(ws)


def test_group_grant_reaches_every_member() -> None:
    ws = _workspace()
    ws.grant_repo_group("{r1}", "devs", "read")
    perms = effective_permissions(ws)
    assert perms[("{r1}", ALICE)] == perms[("{r1}", BOB)] == "read"
    assert ("{r1}", CAROL) not in perms


def test_project_grants_are_inherited_and_create_repo_counts_as_write() -> None:
    ws = _workspace()
    ws.add_repository(Repository("{r3}", "lib", "lib", True, "{p1}"))
    ws.grant_project_user("{p1}", CAROL, "create-repo")
    ws.grant_project_group("{p1}", "devs", "admin")
    perms = effective_permissions(ws)
    for repo in ("{r1}", "{r3}"):
        assert perms[(repo, CAROL)] == "write"
        assert perms[(repo, ALICE)] == "admin"
    assert ("{r2}", CAROL) not in perms


def test_highest_source_wins() -> None:
    ws = _workspace()
    ws.grant_repo_user("{r1}", ALICE, "admin")
    ws.grant_repo_group("{r1}", "devs", "write")
    ws.grant_project_user("{p1}", BOB, "read")
    perms = effective_permissions(ws)
    assert perms[("{r1}", ALICE)] == "admin"
    assert perms[("{r1}", BOB)] == "write"
    ws.grant_repo_user("{r1}", OWNER, "read")
    assert effective_permissions(ws)[("{r1}", OWNER)] == "admin"


def test_cache_is_dropped_on_change_and_leavers_lose_everything() -> None:
    ws = _workspace()
    ws.grant_repo_group("{r1}", "devs", "write")
    assert effective_permissions(ws)[("{r1}", ALICE)] == "write"
    ws.remove_member(ALICE)
    assert ("{r1}", ALICE) not in effective_permissions(ws)
    assert ALICE not in ws.groups["devs"].members


def _fingerprint(org: Org) -> object:
    return observable_state(org), sorted(u.display_name for u in org.users.values())


def test_generation_is_deterministic() -> None:
    assert _fingerprint(generate_org("small", seed=7)) == _fingerprint(generate_org("small", 7))
    assert _fingerprint(generate_org("small", seed=7)) != _fingerprint(generate_org("small", 8))


def test_small_org_has_the_realistic_shape() -> None:
    org = generate_org("small")
    repos = [r for ws in org.workspaces.values() for r in ws.repositories.values()]
    assert 2 <= len(org.workspaces) <= 3 and 20 <= len(repos) <= 40
    assert any(not r.is_private for r in repos)
    assert any(not r.name.isascii() for r in repos)
    assert any(not u.display_name.isascii() for u in org.users.values())
    homes = Counter(u for ws in org.workspaces.values() for u in ws.members)
    assert sum(1 for n in homes.values() if n > 1) > 2
    ungranted = [
        r for ws in org.workspaces.values() for r in ws.repositories.values()
        if not ws.repo_user_grants.get(r.uuid) and not ws.repo_group_grants.get(r.uuid)
    ]  # fmt: skip
    assert ungranted
    admin, member = org.user_by_email(ADMIN_EMAIL), org.user_by_email(MEMBER_EMAIL)
    assert admin is not None and member is not None
    assert all(ws.members[admin.uuid] == "owner" for ws in org.workspaces.values())
    assert all(ws.members[member.uuid] == "member" for ws in org.workspaces.values())


def test_medium_org_size() -> None:
    org = generate_org("medium")
    assert sum(len(ws.repositories) for ws in org.workspaces.values()) == 300


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_churn_changes_every_kind_and_reports_the_observable_diff(seed: int) -> None:
    org = generate_org("small", seed=seed)
    before = observable_state(org)
    result = apply_churn(org, rng=random.Random(seed))
    assert result.changes == diff_states(before, observable_state(org))
    verbs = {event.split()[0] for event in result.events}
    assert {"hired", "created", "deleted", "renamed", "moved", "made", "raised", "lowered"} <= verbs
    assert any(" left " in e for e in result.events)
    assert any(e.startswith(("added", "removed")) for e in result.events)
    kinds = {(c.change, c.object_type) for c in result.changes}
    assert {("created", "repository"), ("deleted", "repository")} <= kinds
    assert {("granted", "workspace"), ("revoked", "workspace")} <= kinds
    attributes = {c.attribute for c in result.changes if c.change == "changed"}
    assert {"slug", "name", "is_private", "parent_uuid"} <= attributes


def test_churn_on_medium_gives_all_grant_change_kinds() -> None:
    org = generate_org("medium")
    result = apply_churn(org, rng=random.Random(3), rate=0.05)
    kinds = {c.change for c in result.changes if c.source == "effective"}
    assert kinds == {"granted", "revoked", "raised", "lowered"}
    renamed = next(c for c in result.changes if c.attribute == "slug")
    assert any(renamed.object_uuid in ws.repositories for ws in org.workspaces.values())


def test_explicit_truth_covers_every_source_and_group_membership() -> None:
    org = generate_org("medium")
    before = explicit_state(org)
    result = apply_churn(org, rng=random.Random(4), rate=0.02)
    assert result.explicit_changes == diff_explicit(before, explicit_state(org))
    sources = {c.source for c in result.explicit_changes}
    assert sources == {"direct", "group", "project", "membership"}
    assert {c.change for c in result.explicit_changes if c.source == "direct"} >= {
        "granted", "revoked", "raised", "lowered"
    }  # fmt: skip
    assert all(c.source in ("workspace", "effective", None) for c in result.changes)


def test_a_day_of_churn_until_stops_at_the_first_change_that_reaches_its_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org = generate_org("medium")
    state, explicit = observable_state(org), explicit_state(org)
    facts = fact_count(org)
    assert facts == (len(state.roles) + len(state.effective) + len(explicit.grants)
                     + len(explicit.memberships))
    rng = random.Random(5)
    quiet = churn_until(org, rng=rng, changes=0)
    assert (quiet.events, quiet.changes, quiet.explicit_changes) == ([], [], [])
    counted: list[int] = []
    truth = churn._truth

    def counting(*args: Any) -> churn.ChurnResult:
        result = truth(*args)
        counted.append(len(result.changes) + len(result.explicit_changes))
        return result

    monkeypatch.setattr(churn, "_truth", counting)
    target = 0.005 * facts
    kinds: set[str] = set()
    for _ in range(20):
        before, explicit_before = observable_state(org), explicit_state(org)
        counted.clear()
        day = churn_until(org, rng=rng, changes=target)
        assert day.changes == diff_states(before, observable_state(org))
        assert day.explicit_changes == diff_explicit(explicit_before, explicit_state(org))
        assert counted[-1] == len(day.changes) + len(day.explicit_changes) >= target
        assert all(n < target for n in counted[:-1])  # it stopped at the first count reached
        kinds |= {event.split()[0] for event in day.events}
    assert len(kinds) >= 5  # a day's changes are of every kind, drawn by weight


def test_a_day_of_churn_until_counted_by_batches_counts_fewer_times_and_stops_at_its_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org = generate_org("medium")
    counted: list[int] = []
    truth = churn._truth

    def counting(*args: Any) -> churn.ChurnResult:
        result = truth(*args)
        counted.append(len(result.changes) + len(result.explicit_changes))
        return result

    monkeypatch.setattr(churn, "_truth", counting)
    rng = random.Random(7)
    target = 0.05 * fact_count(org)  # a heavy day: many changes, so that batches grow
    counts = changed = 0
    for _ in range(5):
        before, explicit_before = observable_state(org), explicit_state(org)
        counted.clear()
        day = churn_until(org, rng=rng, changes=target, most_per_count=64)
        assert day.changes == diff_states(before, observable_state(org))
        assert day.explicit_changes == diff_explicit(explicit_before, explicit_state(org))
        assert counted[-1] == len(day.changes) + len(day.explicit_changes) >= target
        assert all(n < target for n in counted[:-1])
        counts, changed = counts + len(counted), changed + len(day.events)
    # counted once before the first change, then once a batch: far fewer times than it changed
    assert counts < changed / 2


def test_large_has_the_reference_size() -> None:
    org = generate_org("large")
    spaces = list(org.workspaces.values())
    assert len(spaces) == 5 and len(org.users) == 2002
    assert sum(len(ws.repositories) for ws in spaces) == 10_000
    assert sum(len(ws.groups) for ws in spaces) == 300
    assert sum(len(ws.projects) for ws in spaces) == 500
    assert 350_000 <= sum(len(ws.effective_permissions()) for ws in spaces) <= 450_000


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="huge"):
        generate_org("gigantic")
