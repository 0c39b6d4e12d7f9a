"""``bbaccess snapshot`` and ``diff`` against the simulator, read back from the real SQLite file."""

from __future__ import annotations

import base64

import pytest

from exporter.cli_output import EXIT_AUTH, EXIT_GAPS, EXIT_OK, EXIT_USAGE
from exporter.simulator import (
    ADMIN_EMAIL,
    ADMIN_TOKEN,
    MEMBER_EMAIL,
    MEMBER_TOKEN,
    OAUTH_TOKEN,
    Org,
    apply_churn,
)
from tests.integration.conftest import (
    Cli,
    ThreadedSimulator,
    churn_rng,
    diff_key,
    explicit_truth_key,
    project_keys,
    truth_key,
)


def test_diff_equals_the_churn_ground_truth_change_for_change(cli: Cli, org: Org) -> None:
    assert cli("snapshot") == EXIT_OK, cli.stderr
    first = cli.diff_json()
    assert first["changes"] == [] and first["baseline_count"] > 100

    churn = apply_churn(org, rng=churn_rng(1), rate=0.05)
    assert cli("snapshot") == EXIT_OK, cli.stderr

    expected = sorted(
        [truth_key(c, project_keys(org)) for c in churn.changes]
        + [explicit_truth_key(c, org) for c in churn.explicit_changes]
    )
    reported = cli.diff_json()
    assert reported["from_snapshot_id"] == 1 and reported["to_snapshot_id"] == 2
    assert sorted(diff_key(r) for r in reported["changes"]) == expected
    assert reported["unverified"] == []
    kinds = {c[0] for c in expected}
    assert {"granted", "revoked", "created", "deleted", "changed"} <= kinds
    assert {"added to group", "removed from group"} <= kinds
    sources = {c[4] for c in expected}
    assert {"direct", "group", "project", "membership"} <= sources

    view = cli.sql(
        "SELECT change, object_type, object_uuid, subject_uuid, source, attribute, "
        "old_value, new_value FROM access_changes WHERE snapshot_id = 2"
    )
    assert sorted(view) == expected


def test_deleted_repository_grants_are_revoked_with_reason(cli: Cli, org: Org) -> None:
    assert cli("snapshot") == EXIT_OK
    ws = (
        org.workspace("acme")
        if "acme" in {w.slug for w in org.workspaces.values()}
        else next(iter(org.workspaces.values()))
    )
    repo = next(
        r
        for r in ws.repositories.values()
        if any(k[0] == r.uuid for k in ws.effective_permissions())
    )
    ws.remove_repository(repo.uuid)
    assert cli("snapshot") == EXIT_OK
    rows = [r for r in cli.diff_json()["changes"] if r["object_uuid"] == repo.uuid]
    assert {r["change"] for r in rows} == {"revoked", "deleted"}
    assert all(r["reason"] == "deleted repository" for r in rows if r["change"] == "revoked")


def test_forbidden_listing_is_unverified_never_revoked(
    cli: Cli, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("snapshot") == EXIT_OK
    apply_churn(org, rng=churn_rng(2), rate=0.05)
    # A plain member may not read the workspace-wide permission listings: 403 each.
    monkeypatch.setenv("BITBUCKET_EMAIL", MEMBER_EMAIL)
    monkeypatch.setenv("BITBUCKET_API_TOKEN", MEMBER_TOKEN)
    assert cli("snapshot") == EXIT_GAPS
    assert "forbidden: /2.0/workspaces/" in cli.stdout
    document = cli.diff_json()
    assert not [r for r in document["changes"] if r["source"] == "effective"]
    unverified = {u["label"]: u["outcome"] for u in document["unverified"]}
    assert unverified and set(unverified.values()) == {"forbidden"}
    assert {label.split("/")[-1] if "/1.0/" not in label else "groups" for label in unverified} \
        == {"repositories", "groups"}
    # Explicit grants are not read without admin rights: unverified, counted, never revoked.
    assert {u["outcome"] for u in document["unverified_per_object"]} == {"not attempted"}
    assert not [r for r in document["changes"] if r["source"] not in (None, "workspace")]


def test_failed_page_fails_its_scope_and_the_run_goes_on(
    cli: Cli, org: Org, simulator: ThreadedSimulator
) -> None:
    assert cli("snapshot") == EXIT_OK
    churn = apply_churn(org, rng=churn_rng(3), rate=0.05)
    slug = sorted(w.slug for w in org.workspaces.values())[0]
    simulator.faults.add(
        "malformed", path_prefix=f"/2.0/workspaces/{slug}/permissions/repositories", times=None
    )
    assert cli("snapshot") == EXIT_GAPS
    assert f"failed: /2.0/workspaces/{slug}/permissions/repositories" in cli.stdout
    assert "page 1" in cli.stdout
    failed = cli.diff_json()
    assert [u["label"] for u in failed["unverified"]] == [
        f"/2.0/workspaces/{slug}/permissions/repositories"
    ]
    ws_uuid = org.workspace(slug).uuid
    assert not [
        r for r in failed["changes"] if r["source"] == "effective" and r["workspace"] == slug
    ]

    # The next good night says what changed since the last night that saw it: nothing is lost.
    simulator.faults.clear()
    assert cli("snapshot") == EXIT_OK
    expected = sorted(
        [truth_key(c, project_keys(org)) for c in churn.changes]
        + [explicit_truth_key(c, org) for c in churn.explicit_changes]
    )
    assert (
        sorted(diff_key(r) for r in cli.diff_json("--from", "1", "--to", "3")["changes"])
        == expected
    )
    assert ws_uuid


def test_refused_credential_stops_the_run_and_names_the_mode(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITBUCKET_API_TOKEN", "wrong-token-123")
    assert cli("snapshot") == EXIT_AUTH
    assert "HTTP Basic as admin@example.com" in cli.stderr
    assert "wrong-token-123" not in cli.stderr + cli.stdout
    assert cli.sql("SELECT status FROM snapshots") == [("failed",)]
    assert cli.sql("SELECT count(*) FROM grants") == [(0,)]
    assert b"wrong-token-123" not in cli.db.read_bytes()


def test_no_secret_reaches_the_database_or_output(cli: Cli) -> None:
    assert cli("snapshot", "-v") == EXIT_OK
    basic = base64.b64encode(f"{ADMIN_EMAIL}:{ADMIN_TOKEN}".encode())
    assert ADMIN_TOKEN not in cli.stdout + cli.stderr and basic.decode() not in cli.stderr
    assert ADMIN_TOKEN.encode() not in cli.db.read_bytes() and basic not in cli.db.read_bytes()


def test_workspace_option_limits_the_run(cli: Cli, org: Org) -> None:
    slug = sorted(w.slug for w in org.workspaces.values())[-1]
    assert cli("snapshot", "--workspace", slug) == EXIT_OK
    assert {r[0] for r in cli.sql("SELECT DISTINCT workspace FROM access_at")} == {slug}
    assert cli("snapshot", "--workspace", "no-such-workspace") == EXIT_GAPS
    assert "no-such-workspace" in cli.stdout


def test_missing_credentials_is_a_usage_error(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BITBUCKET_API_TOKEN")
    assert cli("snapshot") == EXIT_USAGE
    assert "BITBUCKET_API_TOKEN is not set" in cli.stderr


def test_plain_http_is_refused_off_loopback(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITBUCKET_API_URL", "http://bitbucket.example.com")
    assert cli("snapshot") == EXIT_USAGE
    assert "http" in cli.stderr


def test_a_workspace_named_twice_is_read_once(cli: Cli, org: Org) -> None:
    ws = sorted(org.workspaces.values(), key=lambda w: w.slug)[0]
    assert cli("snapshot", "--workspace", ws.slug, "--workspace", ws.uuid) == EXIT_OK, cli.stdout
    # Six workspace-wide listings, and two explicit-grant scopes per repository and project.
    per_object = 2 * (len(ws.repositories) + len(ws.projects))
    assert cli.sql("SELECT scopes_ok FROM snapshots") == [(6 + per_object,)]


def test_a_workspace_no_longer_listed_is_a_gap_not_a_revocation(cli: Cli, org: Org) -> None:
    assert cli("snapshot") == EXIT_OK
    ws = sorted(org.workspaces.values(), key=lambda w: w.slug)[0]
    admin = org.user_by_email(ADMIN_EMAIL)
    assert admin is not None
    ws.remove_member(admin.uuid)  # the credential loses the workspace
    assert cli("snapshot") == EXIT_GAPS
    assert f"workspace '{ws.slug}' is no longer listed" in cli.stdout
    document = cli.diff_json()
    assert not [r for r in document["changes"] if r["workspace"] == ws.slug]
    assert len([u for u in document["unverified"] if f"/{ws.slug}" in u["label"]]) == 6


def test_bearer_token_reaches_no_output_or_database(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BITBUCKET_EMAIL")
    monkeypatch.delenv("BITBUCKET_API_TOKEN")
    monkeypatch.setenv("BITBUCKET_ACCESS_TOKEN", OAUTH_TOKEN)
    assert cli("snapshot", "-v") == EXIT_OK
    assert OAUTH_TOKEN not in cli.stdout + cli.stderr
    assert OAUTH_TOKEN.encode() not in cli.db.read_bytes()
