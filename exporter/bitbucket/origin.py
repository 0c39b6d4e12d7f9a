"""The same-origin rule, as pure functions on URLs (no I/O).

The Authorization header goes only to the configured API origin (scheme, host, port). Plain
``http://`` is accepted only on loopback. URLs shown to people are stripped of credentials.
"""

from __future__ import annotations

import ipaddress

from yarl import URL

from exporter.errors import ConfigError, UnsafeUrlError

Origin = tuple[str, str, int | None]

#: Query parameters that may carry a secret and are never shown.
SECRET_PARAMS = frozenset({"access_token", "token", "password"})


def origin_of(url: URL) -> Origin:
    return (url.scheme.lower(), (url.host or "").lower(), url.port)


def is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str) -> URL:
    """Validate the configured API base URL; ConfigError says what is wrong."""
    url = URL(base_url)
    if url.scheme not in {"http", "https"} or not url.host:
        raise ConfigError(f"base URL {redact(url)!r} is not an http(s) URL with a host")
    if url.user is not None or url.password is not None:
        raise ConfigError("base URL must not contain credentials; use the token settings")
    if url.scheme == "http" and not is_loopback(url.host):
        raise ConfigError(
            f"base URL {redact(url)} uses plain http:// on a non-loopback host; use https://"
        )
    return url


def redact(url: URL | str) -> str:
    """The URL as it may be shown: no user info, no secret-bearing query parameters."""
    parsed = URL(url) if isinstance(url, str) else url
    if parsed.user is not None or parsed.password is not None:
        parsed = parsed.with_user(None)
    if any(key.lower() in SECRET_PARAMS for key in parsed.query):
        kept = [(k, v) for k, v in parsed.query.items() if k.lower() not in SECRET_PARAMS]
        parsed = parsed.with_query(kept)
    return str(parsed)


def require_same_origin(target: URL, base: URL, *, what: str, method: str = "GET") -> URL:
    """Return ``target`` if it is on ``base``'s origin; else raise UnsafeUrlError."""
    if not target.is_absolute() or origin_of(target) != origin_of(base):
        raise UnsafeUrlError(
            f"refused to follow {what} to {redact(target)}: it leaves the API origin "
            f"{base.scheme}://{base.host}:{base.port}",
            method=method,
            url=redact(target),
        )
    return target
