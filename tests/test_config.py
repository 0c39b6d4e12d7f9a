"""Settings from the environment: every bad input gets a clear error saying what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.bitbucket import BasicAuth, BearerAuth
from exporter.config import settings_from_env
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
