"""Pure parts of the HTTP side, tested with no network and no event loop."""

from __future__ import annotations

import base64
import json
import random

import pytest

from exporter.bitbucket import (
    BasicAuth,
    BearerAuth,
    RetryPolicy,
    error_for_status,
    parse_error_body,
    parse_page,
)
from exporter.bitbucket.origin import check_base_url, redact
from exporter.errors import (
    AuthenticationError,
    ConfigError,
    FetchFailedError,
    ForbiddenError,
    GoneError,
)

URL = "https://api.bitbucket.org/2.0/workspaces/acme/permissions?pagelen=100"


def test_parse_page_reads_values_next_and_size() -> None:
    body = json.dumps(
        {
            "pagelen": 100,
            "size": 3,
            "page": 1,
            "next": "https://api.bitbucket.org/2.0/workspaces/acme/permissions?page=2",
            "values": [{"permission": "owner"}, {"permission": "member"}],
        }
    )
    page = parse_page(body.encode(), url=URL, page_number=1)
    assert page.values == [{"permission": "owner"}, {"permission": "member"}]
    assert page.next == "https://api.bitbucket.org/2.0/workspaces/acme/permissions?page=2"
    assert page.size == 3
    assert (page.url, page.number) == (URL, 1)


def test_last_page_has_no_next_and_size_may_be_absent() -> None:
    page = parse_page('{"values": []}', url=URL, page_number=4)
    assert page.next is None and page.size is None and page.values == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("<html>Bad gateway</html>", "not valid JSON"),
        ('["a"]', "expected a JSON object, got list"),
        ('{"size": 0}', "no 'values' list"),
        ('{"values": {"a": 1}}', "no 'values' list"),
        ('{"values": [1]}', "values[0] is not an object"),
        ('{"values": [], "next": 7}', "'next' is not a URL"),
    ],
)
def test_malformed_page_names_endpoint_page_and_problem(body: str, problem: str) -> None:
    with pytest.raises(FetchFailedError) as caught:
        parse_page(body, url=URL, page_number=3)
    assert URL in str(caught.value)
    assert "page 3" in str(caught.value)
    assert problem in str(caught.value)


def test_error_body_with_string_detail() -> None:
    body = (
        '{"type":"error","error":{"message":"CHANGE-2770 - Functionality has been '
        'deprecated","detail":"Please read the changelog entry for more details."}}'
    )
    parsed = parse_error_body(body)
    assert parsed.message == "CHANGE-2770 - Functionality has been deprecated"
    assert parsed.detail == "Please read the changelog entry for more details."
    assert parsed.required == ()


def test_error_body_with_scope_detail() -> None:
    body = (
        '{"type":"error","error":{"message":"Your credentials lack one or more required '
        'privilege scopes.","detail":{"required":["account"],"granted":["team"]}}}'
    )
    parsed = parse_error_body(body.encode())
    assert parsed.required == ("account",)
    assert parsed.granted == ("team",)
    assert parsed.missing_scopes == ("account",)


def test_error_body_tolerates_text_plain() -> None:
    parsed = parse_error_body(b"Rate limit for this resource has been exceeded")
    assert parsed.message == "Rate limit for this resource has been exceeded"
    assert parse_error_body(b"").message == ""
    assert parse_error_body('{"unexpected": true}').message == '{"unexpected": true}'


def _error(status: int, body: str) -> Exception:
    return error_for_status(
        status,
        body,
        method="GET",
        url=URL,
        auth_description=BasicAuth("a@b.c", "s3cret").describe(),
    )


def test_status_mapping() -> None:
    assert isinstance(_error(401, ""), AuthenticationError)
    assert isinstance(_error(404, ""), ForbiddenError)
    assert "404" in str(_error(404, ""))
    gone = _error(410, '{"type":"error","error":{"message":"CHANGE-2770 - deprecated"}}')
    assert isinstance(gone, GoneError) and "CHANGE-2770" in str(gone)
    bad = _error(400, '{"type":"error","error":{"message":"Invalid field name: bogus"}}')
    assert isinstance(bad, FetchFailedError) and "Invalid field name: bogus" in str(bad)
    assert bad.status == 400 and bad.url == URL


def test_403_names_missing_scope_not_granted_one() -> None:
    error = _error(
        403,
        json.dumps(
            {
                "type": "error",
                "error": {
                    "message": "Your credentials lack one or more required privilege scopes.",
                    "detail": {
                        "required": ["read:permission:bitbucket", "read:workspace:bitbucket"],
                        "granted": ["read:workspace:bitbucket"],
                    },
                },
            }
        ),
    )
    assert isinstance(error, ForbiddenError)
    assert "lacks the scope(s) read:permission:bitbucket " in str(error)


def test_basic_header_is_email_colon_token_base64() -> None:
    auth = BasicAuth("admin@example.com", "tok3n")
    assert auth.header() == "Basic " + base64.b64encode(b"admin@example.com:tok3n").decode()
    assert auth.describe() == (
        "HTTP Basic as admin@example.com (BITBUCKET_EMAIL + BITBUCKET_API_TOKEN)"
    )
    assert BearerAuth("abc").header() == "Bearer abc"


def test_auth_never_shows_the_secret() -> None:
    for auth in (BasicAuth("admin@example.com", "tok3n-secret"), BearerAuth("tok3n-secret")):
        assert "tok3n-secret" not in repr(auth)
        assert "tok3n-secret" not in str(auth)
        assert "tok3n-secret" not in auth.describe()


@pytest.mark.parametrize(
    "url",
    [
        "http://api.bitbucket.org",
        "http://10.0.0.5:8080",
        "ftp://api.bitbucket.org",
        "https://u:p@api.bitbucket.org",
    ],
)
def test_refused_base_urls(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_base_url(url)
    assert ":p@" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.bitbucket.org",
        "http://127.0.0.1:8000",
        "http://127.3.4.5",
        "http://localhost:9",
        "http://[::1]:80",
    ],
)
def test_accepted_base_urls(url: str) -> None:
    assert check_base_url(url).host


def test_redact_strips_credentials() -> None:
    shown = redact("https://me:pw@api.bitbucket.org/2.0/x?access_token=zzz&page=2")
    assert shown == "https://api.bitbucket.org/2.0/x?page=2"


def test_backoff_is_bounded_full_jitter() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    rng = random.Random(1)
    for retry in range(1, 10):
        ceiling = min(5.0, 2.0 ** (retry - 1))
        assert all(0 <= policy.backoff_delay(retry, rng) <= ceiling for _ in range(50))


def test_throttle_delay_doubles_then_caps() -> None:
    policy = RetryPolicy()
    assert [policy.throttle_delay(n) for n in range(1, 6)] == [60, 120, 240, 480, 600]
