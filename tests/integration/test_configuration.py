"""A configuration file with a credential per workspace, against the simulator."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.cli_output import EXIT_AUTH, EXIT_FAILED, EXIT_GAPS, EXIT_OK
from exporter.simulator import ADMIN_EMAIL, ADMIN_TOKEN, MEMBER_EMAIL, MEMBER_TOKEN, Org
from tests.integration.conftest import Cli, ThreadedSimulator


@pytest.fixture
def configured(
    cli: Cli, simulator: ThreadedSimulator, org: Org, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Cli, Path, str]:  # fmt: skip
    """No credential in the environment: a member by default, the admin for one workspace."""
    for name in ("BITBUCKET_EMAIL", "BITBUCKET_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    admin_ws = sorted(w.slug for w in org.workspaces.values())[0]
    token = tmp_path / "admin-token"
    token.write_text(ADMIN_TOKEN + "\n")
    config = tmp_path / "bbaccess.toml"
    config.write_text(f"""
api_url = "{simulator.base_url}"
rate = "100000/s"
[credential]
email = "{MEMBER_EMAIL}"
api_token = "{MEMBER_TOKEN}"
[credentials.{admin_ws}]
email = "{ADMIN_EMAIL}"
api_token_file = "{token}"
""")
    monkeypatch.delenv("BITBUCKET_API_URL")
    return cli, config, admin_ws


def test_each_workspace_is_read_with_its_own_credential(
    configured: tuple[Cli, Path, str], org: Org
) -> None:
    cli, config, admin_ws = configured
    assert cli("snapshot", "--config", str(config)) == EXIT_GAPS, cli.stderr
    assert f"for workspace {admin_ws}" in cli.stderr and "for the default credential" in cli.stderr
    rows = cli.sql(
        "SELECT s.label, o.outcome FROM observations o JOIN scopes s ON s.id = o.scope_id "
        "WHERE s.kind = 'repository_permissions'"
    )
    outcomes = {label.split("/")[3]: outcome for label, outcome in rows}
    assert outcomes.pop(admin_ws) == "ok" and set(outcomes.values()) == {"forbidden"}
    # Explicit grants only where the credential may read them.
    explicit = cli.sql(
        "SELECT s.label FROM observations o JOIN scopes s ON s.id = o.scope_id "
        "WHERE s.parent_scope_id IS NOT NULL AND o.outcome = 'ok'"
    )
    assert explicit and all(f"/{admin_ws}/" in label for (label,) in explicit)


def test_config_shows_every_setting_and_where_it_came_from(
    configured: tuple[Cli, Path, str]
) -> None:
    cli, config, admin_ws = configured
    assert cli("config", "--config", str(config), "--concurrency", "3") == EXIT_OK, cli.stderr
    lines = {line.split()[0]: line for line in cli.stdout.splitlines()[1:]}
    assert lines["concurrency"].split()[1:] == ["3", "--concurrency"]
    assert lines["rate"].endswith(f"{config}: rate")
    assert lines["timeout"].split()[1:] == ["60.0", "default"]
    assert f"credentials.{admin_ws}" in lines and ADMIN_EMAIL in lines[f"credentials.{admin_ws}"]
    assert MEMBER_TOKEN not in cli.stdout and ADMIN_TOKEN not in cli.stdout


def test_check_proves_each_kind_with_one_request_and_writes_nothing(
    cli: Cli, simulator: ThreadedSimulator, org: Org
) -> None:
    before = simulator.request_count
    assert cli("check") == EXIT_OK, cli.stdout + cli.stderr
    workspaces = len(org.workspaces)
    # /2.0/user/workspaces, then one request for each of ten kinds in every workspace.
    assert simulator.request_count - before == 1 + 10 * workspaces
    assert not cli.db.exists()
    assert cli.stdout.count(" ok ") + cli.stdout.count(" ok\n") >= 10 * workspaces
    assert "administrator" in cli.stdout and "requests tonight" in cli.stdout


def test_check_names_what_a_member_cannot_read(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITBUCKET_EMAIL", MEMBER_EMAIL)
    monkeypatch.setenv("BITBUCKET_API_TOKEN", MEMBER_TOKEN)
    assert cli("check") == EXIT_GAPS
    assert "not an administrator" in cli.stdout
    assert "repository_permissions   forbidden" in cli.stdout
    monkeypatch.setenv("BITBUCKET_API_TOKEN", "expired-token")
    assert cli("check") == EXIT_AUTH
    assert "refused the credential" in cli.stdout and "expired-token" not in cli.stdout


def get(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["get", *args])
    return code, out.getvalue(), err.getvalue()


def test_get_answers_raw_json_through_the_same_client(cli: Cli, org: Org) -> None:
    slug = sorted(w.slug for w in org.workspaces.values())[0]
    code, out, _ = get(f"/2.0/workspaces/{slug}")
    assert code == EXIT_OK and json.loads(out)["slug"] == slug
    code, out, _ = get(f"/2.0/repositories/{slug}", "--paginate")
    repositories = org.workspace(slug)
    assert code == EXIT_OK and repositories is not None
    assert len(json.loads(out)) == len(repositories.repositories)
    code, _, err = get("/2.0/workspaces")  # 410: removed by CHANGE-2770
    assert code == EXIT_FAILED and "CHANGE-2770" in err
    code, _, err = get("https://elsewhere.example/2.0/workspaces/acme")
    assert code != EXIT_OK and "elsewhere.example" in err


def test_each_credential_has_its_own_budget(configured: tuple[Cli, Path, str]) -> None:
    """Bitbucket limits per user: a night's cap holds for each credential, not for the run."""
    cli, config, _ = configured
    assert cli("snapshot", "--config", str(config), "--max-requests", "20") == EXIT_GAPS
    (total,) = cli.sql("SELECT requests FROM snapshots")[0]
    read = cli.sql(
        "SELECT count(*) FROM observations o JOIN scopes s ON s.id = o.scope_id "
        "WHERE s.parent_scope_id IS NOT NULL AND o.outcome = 'ok'"
    )[0][0]
    # The admin's 20 requests went to its workspace's listings and explicit grants; the
    # member's to the other workspaces and the workspace list, on top. One cap for the run
    # would have left nothing for explicit grants after about 20 requests of listings.
    assert read > 0 and total > 20
    assert "fit tonight after" in cli.stderr and "--max-requests 20" in cli.stderr


def test_each_credential_gets_its_own_plan_line(
    configured: tuple[Cli, Path, str], org: Org
) -> None:
    cli, config, admin_ws = configured
    assert cli("snapshot", "--config", str(config)) == EXIT_GAPS
    assert cli("snapshot", "--config", str(config)) == EXIT_GAPS
    plans = [line for line in cli.stderr.splitlines() if " plan: " in line]
    assert len(plans) == 2
    assert any(line.endswith(f"(workspace {admin_ws})") for line in plans)
    assert any(line.endswith("(the default credential)") for line in plans)
