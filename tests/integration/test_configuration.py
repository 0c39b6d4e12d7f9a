"""A configuration file with a credential per workspace, against the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli_output import EXIT_GAPS, EXIT_OK
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
