"""The HTTP side of bbaccess: credentials, the client (retries, pacing, same-origin rule) and
pure parsing of Bitbucket's answers. May import ``exporter.errors`` only.
"""

from exporter.bitbucket.auth import Auth, BasicAuth, BearerAuth
from exporter.bitbucket.budget import DEFAULT_RATE, RateBudget, parse_rate
from exporter.bitbucket.client import BitbucketClient
from exporter.bitbucket.pagination import ErrorBody, Page, RowKey, parse_error_body, parse_page
from exporter.bitbucket.responses import error_for_status
from exporter.bitbucket.retry import ClientStats, RetryPolicy

__all__ = [
    "DEFAULT_RATE",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "BitbucketClient",
    "ClientStats",
    "ErrorBody",
    "Page",
    "RateBudget",
    "RetryPolicy",
    "RowKey",
    "error_for_status",
    "parse_error_body",
    "parse_page",
    "parse_rate",
]
