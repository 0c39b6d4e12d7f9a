"""The HTTP side of bbaccess: credentials, the client (retries, pacing, same-origin rule) and
pure parsing of Bitbucket's answers. May import ``exporter.errors`` only.
"""

from exporter.bitbucket.auth import Auth, BasicAuth, BearerAuth
from exporter.bitbucket.client import BitbucketClient
from exporter.bitbucket.pagination import ErrorBody, Page, parse_error_body, parse_page
from exporter.bitbucket.responses import error_for_status
from exporter.bitbucket.retry import ClientStats, RetryPolicy

__all__ = [
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "BitbucketClient",
    "ClientStats",
    "ErrorBody",
    "Page",
    "RetryPolicy",
    "error_for_status",
    "parse_error_body",
    "parse_page",
]
