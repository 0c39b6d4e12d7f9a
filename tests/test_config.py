"""Settings from the environment: every bad input gets a clear error saying what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.bitbucket import BasicAuth, BearerAuth
from exporter.config import load_settings, settings_from_env
from exporter.errors import ConfigError

DB = Path("x.db")
BASIC = {"BITBUCKET_EMAIL": "ana@example.com", "BITBUCKET_API_TOKEN": "tok-secret"}


def test_basic_and_bearer_credentials() -> None:
    basic = settings_from_env(db_path=DB, env=BASIC)
    assert isinstance(basic.auth, BasicAuth) and basic.api_url == "https://api.bitbucket.org"
    bearer = settings_from_env(db_path=DB, env={"BITBUCKET_ACCESS_TOKEN": "oauth"})
    assert isinstance(bearer.auth, BearerAuth)
    assert "tok-secret" not in repr(basic) and "oauth" not in repr(bearer)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no credentials"),
        ({"BITBUCKET_EMAIL": "ana@example.com"}, "BITBUCKET_API_TOKEN is not set"),
        ({"BITBUCKET_API_TOKEN": "t"}, "BITBUCKET_EMAIL is not set"),
        ({**BASIC, "BITBUCKET_ACCESS_TOKEN": "o"}, "unset one of them"),
        ({"BITBUCKET_APP_PASSWORD": "p"}, "removed app passwords"),
        ({"BITBUCKET_EMAIL": "ana", "BITBUCKET_API_TOKEN": "t"}, "email address"),
        ({**BASIC, "BITBUCKET_API_URL": "http://api.example.com"}, "http"),
        ({**BASIC, "BITBUCKET_API_URL": "ftp://x"}, "http"),
    ],
)
def test_bad_environment_is_refused_with_a_clear_message(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        settings_from_env(db_path=DB, env=env)
    assert "tok-secret" not in str(refused.value)


def test_loopback_http_is_allowed() -> None:
    settings = settings_from_env(
        db_path=DB, env={**BASIC, "BITBUCKET_API_URL": "http://127.0.0.1:7990/"}
    )
    assert settings.api_url == "http://127.0.0.1:7990"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": "lots"}, "--rate"),
        ({"rate": "0/h"}, "--rate"),
        ({"concurrency": 0}, "--concurrency"),
        ({"timeout": 0}, "--timeout"),
        ({"workspaces": ("acme/repo",)}, "--workspace"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_env(db_path=DB, env=BASIC, **options)  # type: ignore[arg-type]


def test_rate_is_parsed_into_a_budget() -> None:
    assert settings_from_env(db_path=DB, env=BASIC, rate="100/10m").rate == (100, 600.0)
    assert settings_from_env(db_path=DB, env=BASIC).rate == (900, 3600.0)


def test_a_swapped_email_is_not_echoed() -> None:
    env = {"BITBUCKET_EMAIL": "ATATT3xSecretToken", "BITBUCKET_API_TOKEN": "ana@example.com"}
    with pytest.raises(ConfigError, match="swapped") as refused:
        settings_from_env(db_path=DB, env=env)
    assert "ATATT3xSecretToken" not in str(refused.value)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_flags_then_environment_then_file_then_defaults(tmp_path: Path) -> None:
    config = write(tmp_path / "bbaccess.toml", """
db = "from-file.db"
rate = "500/h"
concurrency = 4
deadline = "2h"
workspaces = ["acme"]
[credential]
email = "file@example.com"
api_token = "file-secret"
""")
    settings, sources = load_settings(flags={"concurrency": 6}, env=BASIC, config_path=config)
    assert settings.db_path == Path("from-file.db") and sources["db"].origin.endswith(": db")
    assert settings.concurrency == 6 and sources["concurrency"].origin == "--concurrency"
    assert settings.rate == (500, 3600.0) and settings.deadline == 7200
    assert settings.workspaces == ("acme",)
    # The environment's credential wins over the file's.
    assert isinstance(settings.auth, BasicAuth) and settings.auth.email == "ana@example.com"
    assert sources["credential"].origin == "environment"
    assert settings.timeout == 60.0 and sources["timeout"].origin == "default"
    env_db = load_settings(flags={}, env={**BASIC, "BBACCESS_DB": "env.db"}, config_path=config)
    assert env_db[0].db_path == Path("env.db") and env_db[1]["db"].origin == "BBACCESS_DB"
    from_file = load_settings(flags={}, env={}, config_path=config)[0]
    assert isinstance(from_file.auth, BasicAuth) and from_file.auth.email == "file@example.com"
    assert "file-secret" not in repr(from_file) and "bbaccess.toml" in from_file.auth.describe()


def test_secrets_from_files_for_systemd_and_docker(tmp_path: Path) -> None:
    token = write(tmp_path / "token", "env-file-secret\n")
    settings = settings_from_env(db_path=DB, env={"BITBUCKET_EMAIL": "ana@example.com",
                                                  "BITBUCKET_API_TOKEN_FILE": str(token)})
    assert isinstance(settings.auth, BasicAuth) and settings.auth.token == "env-file-secret"
    config = write(tmp_path / "b.toml", f"""
db = "x.db"
[credential]
access_token_file = "{tmp_path / 'oauth'}"
""")
    write(tmp_path / "oauth", "bearer-secret")
    bearer = load_settings(flags={}, env={}, config_path=config)[0].auth
    assert isinstance(bearer, BearerAuth) and bearer.token == "bearer-secret"
    missing = {"BITBUCKET_EMAIL": "ana@example.com", "BITBUCKET_API_TOKEN_FILE": "/nope/token"}
    with pytest.raises(ConfigError, match=r"BITBUCKET_API_TOKEN_FILE.*cannot read /nope/token"):
        settings_from_env(db_path=DB, env=missing)


def test_a_credential_per_workspace(tmp_path: Path) -> None:
    config = write(tmp_path / "bbaccess.toml", """
db = "x.db"
[credentials.acme]
email = "acme-admin@example.com"
api_token = "acme-secret"
[credentials.globex]
access_token = "globex-secret"
""")
    settings, sources = load_settings(flags={}, env={}, config_path=config)
    assert settings.auth is None and settings.workspaces == ("acme", "globex")
    assert isinstance(settings.workspace_auth["acme"], BasicAuth)
    assert isinstance(settings.workspace_auth["globex"], BearerAuth)
    shown = " ".join(f"{k} {s.value} {s.origin}" for k, s in sources.items())
    assert "acme-secret" not in shown and "globex-secret" not in shown
    assert "credentials.acme" in shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('db = "x.db"\nrate = "lots"', r"bbaccess.toml: rate: rate 'lots' is not"),
        ('db = "x.db"\nconcurency = 4', "unknown key 'concurency'"),
        ('db = "x.db"\nconcurrency = "many"', "bbaccess.toml: concurrency: must be a whole"),
        ('db = "x.db"\ndeadline = "soon"', "bbaccess.toml: deadline: takes a duration"),
        ('db = "x.db"\n[credential]\nemail = "a@b.c"', r"credential: the API token is not set"),
        ('db = "x.db"\n[credential]\nemail = "a@b.c"\napi_token = "t"\napi_token_file = "f"',
         "api_token or api_token_file, not both"),
        ('db = "x.db"\n[credentials.acme]\npassword = "p"', "credentials.acme: unknown key"),
        ("db = [", "not valid TOML"),
    ],
)
def test_a_bad_configuration_file_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    config = write(tmp_path / "bbaccess.toml", text)
    with pytest.raises(ConfigError, match=message):
        load_settings(flags={}, env=BASIC, config_path=config)


def test_no_database_anywhere_says_where_to_give_one() -> None:
    with pytest.raises(ConfigError, match="--db PATH, BBACCESS_DB or db ="):
        load_settings(flags={}, env=BASIC, config_path=None)


def test_a_named_workspace_without_a_credential_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path / "bbaccess.toml", """
db = "x.db"
workspaces = ["acme", "globex"]
[credentials.acme]
email = "acme-admin@example.com"
api_token = "acme-secret"
""")
    with pytest.raises(ConfigError, match=r"workspace 'globex' has no credential to read it"):
        load_settings(flags={}, env={}, config_path=config)
