"""The one exception tree of bbaccess.

::

    ExporterError                 anything bbaccess raises on purpose
    ├── ConfigError               bad flags, environment or file; exit code 2
    ├── DatabaseError             the database cannot be used (newer schema, locked); exit code 2
    │   └── SnapshotRunningError  another snapshot holds the database
    └── ApiError                  an answer from the API that was not what we asked for
        ├── AuthenticationError   401: the credential was refused; stops the run, exit code 3
        ├── ScopeError            the scope cannot be read; the run goes on
        │   ├── ForbiddenError    401/403/404 on one listing: this credential may not see it
        │   ├── GoneError         410: the endpoint was removed (names the change id)
        │   └── FetchFailedError  gave up after retries, or the answer was malformed
        └── UnsafeUrlError        a ``next`` link or redirect leaving the configured origin

Errors raised for an HTTP exchange carry ``method``, ``url`` (never with credentials) and, where
there was one, ``status``. Messages never contain a secret.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How the observation of one scope ended. Only ``ok`` changes facts."""

    OK = "ok"  # every page read: the facts are the scope's whole truth at that moment
    FORBIDDEN = "forbidden"  # 401/403/404: this credential may not see it
    FAILED = "failed"  # gave up after retries, or the answer was malformed
    SKIPPED = "skipped"  # the plan left it for a later night (request budget or deadline)


class ExporterError(Exception):
    """Base of every error bbaccess raises on purpose."""


class InterruptedAfterMergeError(ExporterError):
    """Ctrl-C (or a signal) arrived once the snapshot had been merged: it is complete, and only
    the run's own tidying up and its summary were cut short."""

    def __init__(self, snapshot_id: int) -> None:
        super().__init__(
            f"interrupted after snapshot {snapshot_id} was merged: the snapshot is complete "
            "(bbaccess snapshots lists it); only the run's summary was not printed"
        )
        self.snapshot_id = snapshot_id


class ConfigError(ExporterError):
    """The configuration (flags, environment) is invalid; the message says what to do."""


class DatabaseError(ExporterError):
    """The database cannot be used as it is."""


class SnapshotRunningError(DatabaseError):
    """Another snapshot is running against the same database."""


class ApiError(ExporterError):
    """An HTTP exchange with the API did not give what was asked for."""

    def __init__(
        self, message: str, *, method: str = "GET", url: str = "", status: int | None = None
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status = status


class AuthenticationError(ApiError):
    """The API refused the credential (401). The run stops."""


class ScopeError(ApiError):
    """One scope could not be read; the run records it and goes on."""

    outcome = Outcome.FAILED


class ForbiddenError(ScopeError):
    """This credential may not see the scope (401/403/404 on a listing)."""

    outcome = Outcome.FORBIDDEN


class GoneError(ScopeError):
    """The endpoint answered 410 Gone; the message names the change id."""


class FetchFailedError(ScopeError):
    """Retries were exhausted, or the answer was malformed."""


class UnsafeUrlError(ApiError):
    """A link or redirect pointed away from the configured API origin."""
