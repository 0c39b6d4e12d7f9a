"""Settings for a run, from flags and the environment, validated once.

The only module that reads the environment. Variables:

- ``BITBUCKET_API_URL``: the API origin (default ``https://api.bitbucket.org``); plain ``http://``
  only on loopback.
- ``BITBUCKET_EMAIL`` + ``BITBUCKET_API_TOKEN``: an Atlassian API token, sent as HTTP Basic.
- ``BITBUCKET_ACCESS_TOKEN``: an OAuth 2.0 access token, sent as Bearer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from exporter.bitbucket import DEFAULT_RATE, Auth, BasicAuth, BearerAuth, RetryPolicy, parse_rate
from exporter.bitbucket.origin import check_base_url
from exporter.crawl.plan import DEFAULT_DEADLINE_SECONDS
from exporter.errors import ConfigError

DEFAULT_API_URL = "https://api.bitbucket.org"
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 60.0

CREDENTIALS_HELP = (
    "set BITBUCKET_EMAIL and BITBUCKET_API_TOKEN (an Atlassian API token, sent as HTTP Basic), "
    "or BITBUCKET_ACCESS_TOKEN (an OAuth 2.0 access token, sent as Bearer)"
)


@dataclass(frozen=True)
class Settings:
    """Everything a snapshot run needs. Build with ``settings_from_env``."""

    db_path: Path
    api_url: str
    auth: Auth
    workspaces: tuple[str, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: The client-side request budget: at most ``rate[0]`` requests in any ``rate[1]`` seconds.
    rate: tuple[int, float] = parse_rate(DEFAULT_RATE)
    #: Seconds between progress lines while a run goes on.
    progress_every: float = 60.0
    #: The night's cap on requests (None: only the rate and the deadline limit the run).
    max_requests: int | None = None
    #: Seconds after the start past which no per-object scope is started (None: no deadline).
    deadline: float | None = DEFAULT_DEADLINE_SECONDS


def auth_from_env(env: Mapping[str, str]) -> Auth:
    email = env.get("BITBUCKET_EMAIL", "").strip()
    token = env.get("BITBUCKET_API_TOKEN", "").strip()
    bearer = env.get("BITBUCKET_ACCESS_TOKEN", "").strip()
    if env.get("BITBUCKET_APP_PASSWORD"):
        raise ConfigError(
            "BITBUCKET_APP_PASSWORD is set, but Bitbucket removed app passwords on 2026-07-28; "
            f"{CREDENTIALS_HELP}"
        )
    if bearer and (email or token):
        raise ConfigError(
            "both BITBUCKET_ACCESS_TOKEN and BITBUCKET_EMAIL/BITBUCKET_API_TOKEN are set; "
            "unset one of them so that it is clear which credential is used"
        )
    if bearer:
        return BearerAuth(bearer)
    if email and token:
        if "@" not in email:
            raise ConfigError(  # the value is not shown: it may be a token set by mistake
                "BITBUCKET_EMAIL must be the Atlassian account's email address (it has no '@'); "
                "is it swapped with BITBUCKET_API_TOKEN?"
            )
        return BasicAuth(email, token)
    if email or token:
        missing = "BITBUCKET_API_TOKEN" if email else "BITBUCKET_EMAIL"
        raise ConfigError(f"{missing} is not set; {CREDENTIALS_HELP}")
    raise ConfigError(f"no credentials: {CREDENTIALS_HELP}")


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_deadline(text: str) -> float | None:
    """``6h``, ``90m``, ``1h30m``, ``45s`` -> seconds; ``none`` -> no deadline."""
    cleaned = text.strip().lower()
    if cleaned == "none":
        return None
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        raise ConfigError(
            f"--deadline takes a duration such as 6h, 90m, 1h30m or 45s, or 'none'; not {text!r}"
        )
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"--deadline must be longer than 0 s (or 'none'), not {text!r}")
    return total


def settings_from_env(
    *,
    db_path: Path,
    workspaces: tuple[str, ...] = (),
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    rate: str = DEFAULT_RATE,
    max_requests: int | None = None,
    deadline: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    api_url = env.get("BITBUCKET_API_URL", "").strip() or DEFAULT_API_URL
    check_base_url(api_url)
    if concurrency < 1 or concurrency > 64:
        raise ConfigError(f"--concurrency must be between 1 and 64, not {concurrency}")
    if timeout <= 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, not {timeout}")
    try:
        budget = parse_rate(rate)
    except ValueError as error:
        raise ConfigError(f"--rate: {error}") from None
    for slug in workspaces:
        if not slug or "/" in slug or slug.strip() != slug:
            raise ConfigError(f"--workspace takes a workspace slug such as 'acme', not {slug!r}")
    if max_requests is not None and max_requests < 1:
        raise ConfigError(f"--max-requests must be a positive number, not {max_requests}")
    return Settings(
        db_path=db_path,
        max_requests=max_requests,
        deadline=DEFAULT_DEADLINE_SECONDS if deadline is None else parse_deadline(deadline),
        api_url=api_url.rstrip("/"),
        auth=auth_from_env(env),
        workspaces=tuple(dict.fromkeys(workspaces)),
        concurrency=concurrency,
        timeout=timeout,
        rate=budget,
    )
