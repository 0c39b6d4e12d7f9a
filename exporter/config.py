"""Settings for a run, from flags, the environment and an optional ``bbaccess.toml``, validated
once. The only module that reads the environment and the configuration file.

Each setting comes from the first of: its command-line flag, its environment variable, the
configuration file, the default. ``load_settings`` also says where each value came from (for
``bbaccess config``); secrets are never part of that answer.

The configuration file is ``--config PATH``, else ``$BBACCESS_CONFIG``, else
``$XDG_CONFIG_HOME/bbaccess/bbaccess.toml`` (``~/.config/bbaccess/bbaccess.toml``) when it exists.
Environment variables:

- ``BITBUCKET_API_URL``: the API origin (default ``https://api.bitbucket.org``); plain ``http://``
  only on loopback.
- ``BITBUCKET_EMAIL`` + ``BITBUCKET_API_TOKEN`` (or ``BITBUCKET_API_TOKEN_FILE``): an Atlassian
  API token, sent as HTTP Basic.
- ``BITBUCKET_ACCESS_TOKEN`` (or ``BITBUCKET_ACCESS_TOKEN_FILE``): an OAuth 2.0 access token, sent
  as Bearer.
- ``BBACCESS_DB``: the database.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from exporter.bitbucket import DEFAULT_RATE, Auth, BasicAuth, BearerAuth, RetryPolicy, parse_rate
from exporter.bitbucket.origin import check_base_url
from exporter.crawl.plan import DEFAULT_DEADLINE_SECONDS
from exporter.errors import ConfigError

DEFAULT_API_URL = "https://api.bitbucket.org"
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 60.0
CONFIG_NAME = "bbaccess.toml"

CREDENTIALS_HELP = (
    "set BITBUCKET_EMAIL and BITBUCKET_API_TOKEN (an Atlassian API token, sent as HTTP Basic), "
    "or BITBUCKET_ACCESS_TOKEN (an OAuth 2.0 access token, sent as Bearer), or give a "
    "[credential] in bbaccess.toml"
)


@dataclass(frozen=True)
class Settings:
    """Everything a snapshot run needs. Build with ``load_settings`` (or ``settings_from_env``)."""

    db_path: Path
    api_url: str
    auth: Auth | None
    workspaces: tuple[str, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: The client-side request budget: at most ``rate[0]`` requests in any ``rate[1]`` seconds,
    #: for each credential (Bitbucket limits per user).
    rate: tuple[int, float] = parse_rate(DEFAULT_RATE)
    #: Seconds between progress lines while a run goes on.
    progress_every: float = 60.0
    #: Each credential's cap on requests for the night (None: only the rate and the deadline).
    max_requests: int | None = None
    #: Seconds after the start past which no per-object scope is started (None: no deadline).
    deadline: float | None = DEFAULT_DEADLINE_SECONDS
    #: Credentials of single workspaces (slug -> credential): such a workspace is read with its
    #: own credential only.
    workspace_auth: Mapping[str, Auth] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """Where a setting's value came from, as ``bbaccess config`` shows it."""

    value: str
    origin: str


def default_config_path(env: Mapping[str, str]) -> Path | None:
    """``$BBACCESS_CONFIG``, else the XDG location if a file is there."""
    if env.get("BBACCESS_CONFIG"):
        return Path(env["BBACCESS_CONFIG"])
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    candidate = base / "bbaccess" / CONFIG_NAME
    return candidate if candidate.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"no configuration file at {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None


def read_secret_file(path: str, key: str) -> str:
    """A secret kept in a file (systemd credentials, Docker secrets): its first line."""
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"{key}: cannot read {path} ({error.strerror})") from None
    if not secret:
        raise ConfigError(f"{key}: {path} is empty")
    return secret


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_deadline(text: str) -> float | None:
    """``6h``, ``90m``, ``1h30m``, ``45s`` -> seconds; ``none`` -> no deadline."""
    cleaned = text.strip().lower()
    if cleaned == "none":
        return None
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        raise ValueError(f"takes a duration such as 6h, 90m, 1h30m or 45s, or 'none'; not {text!r}")
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"must be longer than 0 s (or 'none'), not {text!r}")
    return total


class _Resolver:
    """Picks each value from flag, environment, file or default, and remembers where from."""

    def __init__(
        self, flags: Mapping[str, Any], env: Mapping[str, str], file: Mapping[str, Any],
        file_name: str,
    ) -> None:  # fmt: skip
        self.flags, self.env, self.file, self.file_name = flags, env, file, file_name
        self.sources: dict[str, Source] = {}

    def pick(
        self, key: str, flag: str, env_name: str | None, default: Any
    ) -> tuple[Any, str]:
        """The raw value of ``key`` and the name to blame in a message."""
        if self.flags.get(key) not in (None, (), []):
            return self.flags[key], flag
        if env_name and self.env.get(env_name, "").strip():
            return self.env[env_name].strip(), env_name
        if key in self.file:
            return self.file[key], f"{self.file_name}: {key}"
        return default, "default"

    def take(
        self, key: str, flag: str, env_name: str | None, default: Any,
        convert: Callable[[Any], Any],
    ) -> Any:  # fmt: skip
        raw, origin = self.pick(key, flag, env_name, default)
        try:
            value = convert(raw)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{flag if origin == 'default' else origin}: {error}") from None
        self.sources[key] = Source("" if raw is None else _shown(raw), origin)
        return value


def _shown(raw: Any) -> str:
    if isinstance(raw, list | tuple):
        return ", ".join(str(x) for x in raw)
    return str(raw)


def _int_between(low: int, high: int | None) -> Callable[[Any], int]:
    def convert(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int | str) or (
            isinstance(raw, str) and not raw.strip().isdigit()
        ):
            raise ValueError(f"must be a whole number, not {raw!r}")
        value = int(raw)
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bound}, not {value}")
        return value

    return convert


def _positive_float(raw: Any) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError(f"must be a positive number of seconds, not {raw}")
    return value


def _workspaces(raw: Any) -> tuple[str, ...]:
    values = [raw] if isinstance(raw, str) else list(raw or ())
    for slug in values:
        if not isinstance(slug, str) or not slug or "/" in slug or slug.strip() != slug:
            raise ValueError(f"takes workspace slugs such as 'acme', not {slug!r}")
    return tuple(dict.fromkeys(values))


def _api_url(raw: Any) -> str:
    url = str(raw).strip()
    check_base_url(url)
    return url.rstrip("/")


def _optional_path(raw: Any) -> Path | None:
    return None if raw is None else Path(raw)


def _rate(raw: Any) -> tuple[int, float]:
    return parse_rate(str(raw))


def _optional_count(raw: Any) -> int | None:
    return None if raw is None else _int_between(1, None)(raw)


def _deadline(raw: Any) -> float | None:
    return parse_deadline(str(raw))


FILE_KEYS = ("db", "api_url", "rate", "concurrency", "timeout", "max_requests", "deadline",
             "workspaces", "credential", "credentials")  # fmt: skip
CREDENTIAL_KEYS = ("email", "api_token", "api_token_file", "access_token", "access_token_file")


def _credential(values: Mapping[str, Any], where: str) -> Auth:
    """A credential from a table of the configuration file (or the environment's variables)."""
    unknown = sorted(set(values) - set(CREDENTIAL_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; a credential takes "
                          f"{', '.join(CREDENTIAL_KEYS)}")  # fmt: skip
    secret = {}
    for name in ("api_token", "access_token"):
        if values.get(name) and values.get(f"{name}_file"):
            raise ConfigError(f"{where}: give {name} or {name}_file, not both")
        if values.get(f"{name}_file"):
            secret[name] = read_secret_file(str(values[f"{name}_file"]), f"{where}.{name}_file")
        elif values.get(name):
            secret[name] = str(values[name]).strip()
    email = str(values.get("email") or "").strip()
    if secret.get("access_token"):
        if email or secret.get("api_token"):
            raise ConfigError(f"{where}: both an access token and an email/API token are set; "
                              "keep one so that it is clear which credential is used")
        return BearerAuth(secret["access_token"], origin=where)
    if email and secret.get("api_token"):
        if "@" not in email:
            raise ConfigError(  # the value is not shown: it may be a token set by mistake
                f"{where}: the email must be the Atlassian account's email address (it has no "
                "'@'); is it swapped with the API token?"
            )
        return BasicAuth(email, secret["api_token"], origin=where)
    missing = "the API token" if email else "the email" if secret.get("api_token") else None
    if missing:
        raise ConfigError(f"{where}: {missing} is not set")
    raise ConfigError(f"{where}: no credential; {CREDENTIALS_HELP}")


def _env_credential(env: Mapping[str, str]) -> Auth | None:
    if env.get("BITBUCKET_APP_PASSWORD"):
        raise ConfigError(
            "BITBUCKET_APP_PASSWORD is set, but Bitbucket removed app passwords on 2026-07-28; "
            f"{CREDENTIALS_HELP}"
        )
    names = {
        "email": "BITBUCKET_EMAIL", "api_token": "BITBUCKET_API_TOKEN",
        "api_token_file": "BITBUCKET_API_TOKEN_FILE", "access_token": "BITBUCKET_ACCESS_TOKEN",
        "access_token_file": "BITBUCKET_ACCESS_TOKEN_FILE",
    }  # fmt: skip
    values = {key: env[name].strip() for key, name in names.items() if env.get(name, "").strip()}
    if not values:
        return None
    token = values.get("api_token") or values.get("api_token_file")
    bearer = values.get("access_token") or values.get("access_token_file")
    if bearer and (values.get("email") or token):
        raise ConfigError(
            "both BITBUCKET_ACCESS_TOKEN and BITBUCKET_EMAIL/BITBUCKET_API_TOKEN are set; "
            "unset one of them so that it is clear which credential is used"
        )
    if not bearer and not (values.get("email") and token):
        missing = "BITBUCKET_API_TOKEN" if values.get("email") else "BITBUCKET_EMAIL"
        raise ConfigError(f"{missing} is not set; {CREDENTIALS_HELP}")
    origin = "BITBUCKET_ACCESS_TOKEN" if bearer else "BITBUCKET_EMAIL + BITBUCKET_API_TOKEN"
    if values.get("api_token_file") or values.get("access_token_file"):
        origin += "_FILE"
    return _credential(values, origin)


def _swapped_email_message(error: ConfigError) -> ConfigError:
    text = str(error)
    if "swapped" in text and text.startswith("BITBUCKET_EMAIL"):
        return ConfigError(
            "BITBUCKET_EMAIL must be the Atlassian account's email address (it has no '@'); "
            "is it swapped with BITBUCKET_API_TOKEN?"
        )
    return error


def _check_file_keys(file: Mapping[str, Any], name: str) -> None:
    unknown = sorted(set(file) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(f"{name}: unknown key {unknown[0]!r}; known keys: {', '.join(FILE_KEYS)}")


def _credentials(
    env: Mapping[str, str], file: Mapping[str, Any], name: str, sources: dict[str, Source]
) -> tuple[Auth | None, dict[str, Auth]]:
    try:
        auth = _env_credential(env)
    except ConfigError as error:
        raise _swapped_email_message(error) from None
    # The file's credential is checked even when the environment's wins: a mistake in the file
    # must not wait for the night the environment changes.
    from_file = None
    if "credential" in file:
        where = f"{name}: credential"
        from_file = _credential(_table(file["credential"], where), where)
    if auth is not None:
        sources["credential"] = Source(auth.describe(), "environment")
    elif from_file is not None:
        auth = from_file
        sources["credential"] = Source(auth.describe(), name)
    per_workspace: dict[str, Auth] = {}
    for slug, table in _table(file.get("credentials", {}), f"{name}: credentials").items():
        where = f"{name}: credentials.{slug}"
        per_workspace[slug] = _credential(_table(table, where), where)
        sources[f"credentials.{slug}"] = Source(per_workspace[slug].describe(), name)
    if auth is None and not per_workspace:
        raise ConfigError(f"no credentials: {CREDENTIALS_HELP}")
    return auth, per_workspace


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table ([...] in TOML)")
    return value


def load_settings(
    *,
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    need_db: bool = True,
) -> tuple[Settings, dict[str, Source]]:
    """The settings of a run and where each came from. ``flags`` holds the command-line values
    by key (None where a flag was not given); ``config_path`` None means the default location.
    Without ``need_db`` (commands that only talk to the API) a missing database is allowed."""
    env = os.environ if env is None else env
    path = config_path if config_path is not None else default_config_path(env)
    file = read_config_file(path) if path is not None else {}
    name = str(path) if path is not None else CONFIG_NAME
    _check_file_keys(file, name)
    pick = _Resolver(flags, env, file, name)
    db = pick.take("db", "--db", "BBACCESS_DB", None, _optional_path)
    if db is None and need_db:
        raise ConfigError(f"no database: give --db PATH, BBACCESS_DB or db = ... in {name}")
    take = pick.take
    settings = Settings(
        db_path=db or Path(),
        api_url=take("api_url", "BITBUCKET_API_URL", "BITBUCKET_API_URL", DEFAULT_API_URL,
                     _api_url),
        auth=None,
        workspaces=take("workspaces", "--workspace", None, (), _workspaces),
        concurrency=take("concurrency", "--concurrency", None, DEFAULT_CONCURRENCY,
                         _int_between(1, 64)),
        timeout=take("timeout", "--timeout", None, DEFAULT_TIMEOUT, _positive_float),
        rate=take("rate", "--rate", None, DEFAULT_RATE, _rate),
        max_requests=take("max_requests", "--max-requests", None, None, _optional_count),
        deadline=take("deadline", "--deadline", None, "6h", _deadline),
    )  # fmt: skip
    auth, per_workspace = _credentials(env, file, name, pick.sources)
    workspaces = settings.workspaces
    if auth is None and not workspaces:
        # Only per-workspace credentials: read those workspaces.
        workspaces = tuple(per_workspace)
    orphans = [slug for slug in workspaces if auth is None and slug not in per_workspace]
    if orphans:
        raise ConfigError(
            f"workspace {orphans[0]!r} has no credential to read it: add [credentials."
            f"{orphans[0]}] or a default [credential] to {name}, or set BITBUCKET_EMAIL and "
            "BITBUCKET_API_TOKEN"
        )
    settings = replace(settings, auth=auth, workspace_auth=per_workspace, workspaces=workspaces)
    return settings, pick.sources


def settings_from_env(
    *,
    db_path: Path,
    workspaces: tuple[str, ...] = (),
    concurrency: int | None = None,
    timeout: float | None = None,
    rate: str | None = None,
    max_requests: int | None = None,
    deadline: str | None = None,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> Settings:
    """Settings from flags and the environment (and a configuration file, if any)."""
    flags = {"db": db_path, "workspaces": workspaces, "concurrency": concurrency,
             "timeout": timeout, "rate": rate, "max_requests": max_requests,
             "deadline": deadline}  # fmt: skip
    env = os.environ if env is None else env
    return load_settings(flags=flags, env=env, config_path=config_path)[0]
