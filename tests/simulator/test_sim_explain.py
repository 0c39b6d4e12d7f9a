"""The simulator's explanation of access (``explain_access``): every source of every effective
permission, agreeing with ``Workspace.effective_permissions``."""

from __future__ import annotations

import random

import pytest

from exporter.simulator import apply_churn, generate_org
from exporter.simulator.explain import Access, Source, explain_access
from exporter.simulator.org import (
    PROJECT_TO_REPO,
    REPO_PERMISSIONS,
    REPO_RANK,
    Group,
    Project,
    Repository,
    Workspace,
)

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


def _check_against_effective(ws: Workspace) -> None:
    explained = explain_access(ws)
    effective = ws.effective_permissions()
    assert explained.keys() == effective.keys()
    assert {key: access.level for key, access in explained.items()} == effective
    for access in explained.values():
        assert access.sources and list(access.sources) == sorted(access.sources)
        assert access.level == REPO_PERMISSIONS[max(s.rank for s in access.sources)]


def _naive_sources(ws: Workspace, repo_uuid: str, user: str) -> list[Source]:
    """Every source of ``user`` on the repository, straight from the tables, pair by pair."""
    repo = ws.repositories[repo_uuid]
    project = ws.projects.get(repo.project_uuid)
    found: list[Source] = []
    if user not in ws.members:
        return found
    if (perm := ws.repo_user_grants.get(repo_uuid, {}).get(user)) is not None:
        found.append(Source("direct", perm, None, None))
    for slug, perm in ws.repo_group_grants.get(repo_uuid, {}).items():
        if slug in ws.groups and user in ws.groups[slug].members:
            found.append(Source("group", perm, slug, None))
    if project is not None:
        if (perm := ws.project_user_grants.get(project.uuid, {}).get(user)) is not None:
            found.append(Source("project", perm, None, project.key))
        for slug, perm in ws.project_group_grants.get(project.uuid, {}).items():
            if slug in ws.groups and user in ws.groups[slug].members:
                found.append(Source("project group", perm, slug, project.key))
    if ws.members[user] == "owner":
        found.append(Source("workspace owner", "admin", None, None))
    return sorted(found)


# -- generated orgs -----------------------------------------------------------------------------


def test_medium_after_churn_matches_effective_permissions_exactly() -> None:
    org = generate_org("medium")
    for ws in org.workspaces.values():
        _check_against_effective(ws)
    rng = random.Random(11)
    for _ in range(4):
        apply_churn(org, rng=rng, rate=0.02)
        for ws in org.workspaces.values():
            _check_against_effective(ws)


@pytest.mark.parametrize("seed", [1, 2])
def test_small_after_churn_lists_exactly_the_naive_sources(seed: int) -> None:
    org = generate_org("small", seed=seed)
    apply_churn(org, rng=random.Random(seed), rate=0.05)
    for ws in org.workspaces.values():
        _check_against_effective(ws)
        explained = explain_access(ws)
        users = set(ws.members)
        for group in ws.groups.values():
            users |= group.members
        for repo_uuid in ws.repositories:
            for user in users:
                sources = _naive_sources(ws, repo_uuid, user)
                access = explained.get((repo_uuid, user))
                assert (access.sources if access else ()) == tuple(sources)


def test_every_source_kind_occurs_in_a_generated_org() -> None:
    org = generate_org("medium")
    kinds = {
        source.kind
        for ws in org.workspaces.values()
        for access in explain_access(ws).values()
        for source in access.sources
    }
    assert kinds == {"direct", "group", "project", "project group", "workspace owner"}


# -- hand-built cases, one per source kind ------------------------------------------------------


def test_direct_read_and_group_write_give_write_with_both_sources() -> None:
    ws = _workspace()
    ws.grant_repo_user("{r1}", ALICE, "read")
    ws.grant_repo_group("{r1}", "devs", "write")
    explained = explain_access(ws)
    assert explained[("{r1}", ALICE)] == Access(
        "write", (Source("direct", "read", None, None), Source("group", "write", "devs", None))
    )
    assert explained[("{r1}", BOB)] == Access("write", (Source("group", "write", "devs", None),))
    assert ("{r1}", CAROL) not in explained
    assert ("{r2}", ALICE) not in explained
    _check_against_effective(ws)


def test_project_create_repo_gives_write_on_every_repository_of_the_project() -> None:
    ws = _workspace()
    ws.add_repository(Repository("{r3}", "lib", "lib", True, "{p1}"))
    ws.grant_project_user("{p1}", CAROL, "create-repo")
    explained = explain_access(ws)
    for repo in ("{r1}", "{r3}"):
        assert explained[(repo, CAROL)] == Access(
            "write", (Source("project", "create-repo", None, "P1"),)
        )
    assert ("{r2}", CAROL) not in explained
    _check_against_effective(ws)


def test_group_grant_on_the_project_is_a_project_group_source() -> None:
    ws = _workspace()
    ws.grant_project_group("{p2}", "devs", "admin")
    explained = explain_access(ws)
    for user in (ALICE, BOB):
        assert explained[("{r2}", user)] == Access(
            "admin", (Source("project group", "admin", "devs", "P2"),)
        )
    assert ("{r1}", ALICE) not in explained
    _check_against_effective(ws)


def test_owner_with_no_grant_is_admin_through_ownership() -> None:
    ws = _workspace()
    explained = explain_access(ws)
    owner = Access("admin", (Source("workspace owner", "admin", None, None),))
    assert explained == {("{r1}", OWNER): owner, ("{r2}", OWNER): owner}
    _check_against_effective(ws)


def test_owner_with_lower_grants_keeps_every_source() -> None:
    ws = _workspace()
    ws.grant_repo_user("{r1}", OWNER, "read")
    ws.grant_project_user("{p1}", OWNER, "write")
    assert explain_access(ws)[("{r1}", OWNER)] == Access(
        "admin",
        (
            Source("direct", "read", None, None),
            Source("project", "write", None, "P1"),
            Source("workspace owner", "admin", None, None),
        ),
    )
    _check_against_effective(ws)


def test_lower_sources_are_listed_beside_the_highest() -> None:
    ws = _workspace()
    ws.grant_repo_user("{r1}", ALICE, "admin")
    ws.grant_repo_group("{r1}", "devs", "read")
    ws.grant_project_user("{p1}", ALICE, "read")
    ws.grant_project_group("{p1}", "devs", "create-repo")
    assert explain_access(ws)[("{r1}", ALICE)] == Access(
        "admin",
        (
            Source("direct", "admin", None, None),
            Source("group", "read", "devs", None),
            Source("project", "read", None, "P1"),
            Source("project group", "create-repo", "devs", "P1"),
        ),
    )
    _check_against_effective(ws)


def test_former_member_gets_nothing() -> None:
    ws = _workspace()
    ws.grant_repo_user("{r1}", ALICE, "admin")
    ws.grant_repo_group("{r2}", "devs", "write")
    ws.grant_project_user("{p1}", ALICE, "write")
    ws.grant_project_group("{p2}", "devs", "read")
    assert ("{r1}", ALICE) in explain_access(ws)
    ws.remove_member(ALICE)
    explained = explain_access(ws)
    assert not any(user == ALICE for _, user in explained)
    assert explained[("{r2}", BOB)].level == "write"
    _check_against_effective(ws)


def test_group_member_outside_the_workspace_gets_nothing() -> None:
    ws = _workspace()
    ws.groups["devs"].members.add("{stranger}")
    ws.invalidate()
    ws.grant_repo_group("{r1}", "devs", "write")
    ws.grant_project_group("{p2}", "devs", "read")
    explained = explain_access(ws)
    assert not any(user == "{stranger}" for _, user in explained)
    _check_against_effective(ws)


def test_grant_to_a_group_that_no_longer_exists_is_not_a_source() -> None:
    ws = _workspace()
    ws.add_group(Group("ops", "Ops", {ALICE, CAROL}))
    ws.grant_repo_group("{r1}", "ops", "admin")
    ws.grant_project_group("{p1}", "ops", "admin")
    ws.grant_repo_group("{r1}", "devs", "read")
    assert explain_access(ws)[("{r1}", CAROL)].level == "admin"
    del ws.groups["ops"]
    ws.invalidate()
    explained = explain_access(ws)
    assert explained[("{r1}", ALICE)] == Access("read", (Source("group", "read", "devs", None),))
    assert ("{r1}", CAROL) not in explained
    assert all(s.group != "ops" for access in explained.values() for s in access.sources)
    _check_against_effective(ws)


def test_source_rank_maps_project_permissions_to_repository_ones() -> None:
    for perm, repo_perm in PROJECT_TO_REPO.items():
        for kind in ("project", "project group"):
            assert Source(kind, perm, None, "P").rank == REPO_RANK[repo_perm]
    for perm in REPO_PERMISSIONS:
        assert Source("direct", perm, None, None).rank == REPO_RANK[perm]
