"""``who-can-access`` and ``access`` against the simulator's ground truth of levels and sources."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from exporter.cli_output import EXIT_OK, EXIT_USAGE
from exporter.simulator import ADMIN_EMAIL, ADMIN_TOKEN, Org, apply_churn, generate_org
from exporter.simulator.explain import explain_access
from tests.integration.conftest import Cli
from tests.sim_thread import ThreadedSimulator

FAST = ("--rate", "100000/s")


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Org, Cli]]:
    """The medium org after a day of churn, snapshotted twice with every scope read."""
    org = generate_org("medium", seed=4)
    with ThreadedSimulator(org) as sim, pytest.MonkeyPatch.context() as env:
        env.setenv("BITBUCKET_API_URL", sim.base_url)
        env.setenv("BITBUCKET_EMAIL", ADMIN_EMAIL)
        env.setenv("BITBUCKET_API_TOKEN", ADMIN_TOKEN)
        env.delenv("BITBUCKET_ACCESS_TOKEN", raising=False)
        cli = Cli(tmp_path_factory.mktemp("who") / "access.db")
        assert cli("snapshot", *FAST) == EXIT_OK, cli.stdout + cli.stderr
        apply_churn(org, rng=random.Random("who"), rate=0.05)
        assert cli("snapshot", *FAST) == EXIT_OK, cli.stdout + cli.stderr
        yield org, cli


def truth_of(org: Org) -> dict[str, dict[str, tuple[str, set[tuple[object, ...]]]]]:
    """{repository label: {user uuid: (level, {(source, granted, group, project)})}}."""
    found: dict[str, dict[str, tuple[str, set[tuple[object, ...]]]]] = {}
    for ws in org.workspaces.values():
        for (repo, user), access in explain_access(ws).items():
            label = f"{ws.slug}/{ws.repositories[repo].slug}"
            sources = {(s.kind, s.permission, s.group, s.project) for s in access.sources}
            found.setdefault(label, {})[user] = (access.level, sources)
    return found


def reported(document: dict[str, Any]) -> dict[str, tuple[str, set[tuple[object, ...]]]]:
    def tail(label: str | None) -> str | None:
        return None if label is None else label.split("/", 1)[1]

    found = {}
    for a in document["access"]:
        if a["effective"] is not None:
            sources = {
                (s["source"], s["granted"], tail(s["via_group"]), tail(s["via_project"]))
                for s in a["sources"]
            }
            found[a["user_uuid"]] = (a["effective"], sources)
    return found


def test_every_repository_equals_the_ground_truth(medium: tuple[Org, Cli]) -> None:
    org, cli = medium
    truth = truth_of(org)
    ws = next(iter(org.workspaces.values()))
    assert len(ws.repositories) >= 250
    kinds: set[object] = set()
    for label in sorted(f"{ws.slug}/{r.slug}" for r in ws.repositories.values()):
        assert cli("who-can-access", label, "--format", "json") == EXIT_OK, cli.stderr
        document = json.loads(cli.stdout)
        assert document["repository"] == label and document["snapshot_id"] == 2
        assert reported(document) == truth.get(label, {}), label
        # Every source was observed: nothing is flagged.
        assert not [a["flags"] for a in document["access"] if a["effective"] and a["flags"]]
        kinds |= {s[0] for _, sources in truth.get(label, {}).values() for s in sources}
    assert kinds == {"direct", "group", "project", "project group", "workspace owner"}


def test_access_of_one_person_equals_the_ground_truth(medium: tuple[Org, Cli]) -> None:
    org, cli = medium
    truth = truth_of(org)
    ws = next(iter(org.workspaces.values()))
    user = next(u for u, role in sorted(ws.members.items()) if role == "member"
                and sum(user_key == u for _, user_key in ws.effective_permissions()) > 3)
    assert cli("access", org.users[user].nickname, "--format", "json") == EXIT_OK, cli.stderr
    document = json.loads(cli.stdout)
    mine = {a["repository"]: reported({"access": [a]})[user] for a in document["access"]
            if a["effective"] is not None}
    expected = {label: users[user] for label, users in truth.items() if user in users}
    assert mine == expected and mine


def test_names_that_fit_several_users_list_them(medium: tuple[Org, Cli]) -> None:
    org, cli = medium
    first = next(iter(org.users.values())).display_name.split()[0]
    assert cli("access", first) == EXIT_USAGE
    assert "name one of them by uuid or nickname" in cli.stderr
    assert cli("who-can-access", "nope/nothing") == EXIT_USAGE
    assert "no repository 'nope/nothing'" in cli.stderr


def test_table_names_sources_and_freshness(medium: tuple[Org, Cli]) -> None:
    org, cli = medium
    ws = next(iter(org.workspaces.values()))
    repo = next(r for r in ws.repositories.values() if ws.repo_group_grants.get(r.uuid))
    assert cli("who-can-access", f"{ws.slug}/{repo.slug}") == EXIT_OK
    assert "users with effective access" in cli.stdout
    assert "group" in cli.stdout and "snapshot 2" in cli.stdout and "workspace owner" in cli.stdout


def test_access_no_recorded_source_explains_is_flagged_with_the_reason(cli: Cli, org: Org) -> None:
    # The workspace-wide listings only: no explicit grant of any repository is observed yet.
    assert cli("snapshot", "--max-requests", "1") == EXIT_OK
    ws = sorted(org.workspaces.values(), key=lambda w: w.slug)[0]
    repo = next(r for r in ws.repositories.values() if ws.repo_user_grants.get(r.uuid))
    user = next(u for u in sorted(ws.repo_user_grants[repo.uuid]) if ws.members[u] != "owner")
    assert cli("who-can-access", f"{ws.slug}/{repo.slug}", "--format", "json") == EXIT_OK
    mine = next(a for a in json.loads(cli.stdout)["access"] if a["user_uuid"] == user)
    # Groups and roles are read whole every night; explicit grants have not been reached yet.
    assert mine["effective"] and mine["sources"] == []
    assert any(f.startswith(f"no recorded source explains {mine['effective']}: not observed yet:")
               and "the repository's user grants" in f for f in mine["flags"])
    assert cli("who-can-access", f"{ws.slug}/{repo.slug}") == EXIT_OK
    assert "to check:" in cli.stdout and "not observed yet" in cli.stdout


def test_a_grant_above_the_effective_level_is_flagged(
    cli: Cli, org: Org, simulator: ThreadedSimulator
) -> None:
    assert cli("snapshot") == EXIT_OK
    ws = sorted(org.workspaces.values(), key=lambda w: w.slug)[0]
    repo, user = next(
        (r, u) for r in ws.repositories.values()
        for u, p in sorted(ws.repo_user_grants.get(r.uuid, {}).items())
        if p == "read" and ws.members.get(u) != "owner"
        and ws.effective_permissions().get((r.uuid, u)) == "read"
    )  # fmt: skip
    ws.grant_repo_user(repo.uuid, user, "admin")
    # Tonight the effective listing fails: the explicit grant is newer than the effective level.
    simulator.faults.add("malformed", endpoint="workspace_repository_permissions", times=None)
    assert cli("snapshot") != EXIT_OK
    assert cli("who-can-access", f"{ws.slug}/{repo.slug}", "--format", "json") == EXIT_OK
    mine = next(a for a in json.loads(cli.stdout)["access"] if a["user_uuid"] == user)
    assert mine["effective"] == "read"
    assert any(s["source"] == "direct" and s["granted"] == "admin" for s in mine["sources"])
    assert any("direct grants admin but the effective level is read" in f for f in mine["flags"])


def test_a_name_means_the_repository_that_bore_it_at_that_snapshot(cli: Cli, org: Org) -> None:
    ws = sorted(org.workspaces.values(), key=lambda w: w.slug)[0]
    old = sorted(ws.repositories.values(), key=lambda r: r.slug)[0]
    renamed = sorted(ws.repositories.values(), key=lambda r: r.slug)[1]
    was = renamed.slug
    assert cli("snapshot") == EXIT_OK
    # Deleted, then another repository created under the same name; another one renamed.
    ws.remove_repository(old.uuid)
    again = replace(old, uuid="{again}")
    ws.add_repository(again)
    ws.update_repository(renamed.uuid, slug=was + "-v2")
    assert cli("snapshot") == EXIT_OK
    name = f"{ws.slug}/{old.slug}"
    assert cli("who-can-access", name, "--format", "json") == EXIT_OK, cli.stderr
    assert {a["repository_uuid"] for a in json.loads(cli.stdout)["access"]} <= {"{again}"}
    assert cli("who-can-access", name, "--at", "1", "--format", "json") == EXIT_OK, cli.stderr
    assert {a["repository_uuid"] for a in json.loads(cli.stdout)["access"]} == {old.uuid}
    # A renamed repository is found by its old name at an old snapshot, and by its new one.
    for label, at in ((f"{ws.slug}/{was}", "1"), (f"{ws.slug}/{was}-v2", "2")):
        assert cli("who-can-access", label, "--at", at, "--format", "json") == EXIT_OK
        assert {a["repository_uuid"] for a in json.loads(cli.stdout)["access"]} == {renamed.uuid}
