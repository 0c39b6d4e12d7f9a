"""SQLAlchemy tables. Alembic (``migrations/``) owns the real schema; these mirror it for queries.

Fact tables (``objects``, ``grant_versions``) hold versions: ``valid_from`` is the snapshot whose ok
observation first showed the row, ``valid_to`` the first snapshot whose ok observation of the same
scope no longer showed it (NULL while current). ``stage_*`` tables hold what a running snapshot has
fetched; they are merged into the fact tables when the snapshot completes. They live in the
stage file beside the database (``database.STAGE_TABLES_DDL`` creates them there), which a
snapshot run removes at its start and its end; ``begin`` empties what another writer left. Staged
objects, grants and names are plain heaps, appended as pages arrive; the merge keys them.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Computed,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

from exporter.store.sql import GRANT_COLUMNS

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", Text, nullable=False),
    Column("finished_at", Text),
    Column("status", Text, nullable=False),
    Column("tool_version", Text, nullable=False),
    Column("requests", Integer, nullable=False, default=0),
    Column("retries", Integer, nullable=False, default=0),
    Column("throttled", Integer, nullable=False, default=0),
    Column("wait_seconds", Float, nullable=False, default=0.0),
    Column("backoff_seconds", Float, nullable=False, default=0.0),
    Column("scopes_ok", Integer, nullable=False, default=0),
    Column("scopes_forbidden", Integer, nullable=False, default=0),
    Column("scopes_failed", Integer, nullable=False, default=0),
    Column("scopes_skipped", Integer, nullable=False, default=0),
    Column("message", Text),
    sqlite_autoincrement=True,
)

scopes = Table(
    "scopes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("workspace_uuid", Text, nullable=False),
    Column("object_type", Text, nullable=False),
    Column("object_uuid", Text, nullable=False),
    Column("parent_scope_id", Integer, ForeignKey("scopes.id")),
    Column("label", Text, nullable=False),
    #: Where the access in its grants comes from: workspace, effective, direct, group, project,
    #: project group, membership (None for listings of objects).
    Column("source", Text),
    UniqueConstraint("kind", "object_uuid"),
)

#: A scope's reads as runs (migration 0018): one row for the reads of a scope with the same
#: outcome, detail and requests in consecutive snapshots, from ``first_snapshot_id`` to
#: ``last_snapshot_id``; every snapshot between them read it so. A merge extends the scope's run
#: that ended at the snapshot before its own (``writer.MERGE_RUNS``), or opens one; a snapshot
#: that failed or died between them (which reads nothing) starts new runs (until a prune removes
#: it). After 365 nights of ``medium`` at 0.5 % of the facts changed a night, 938 runs take 28 KB
#: where 231,184 rows took 3.5 MB, three times one snapshot. Kept by scope and outcome: nearly
#: every question is a scope's (its latest ok read at or before a snapshot: the run that starts
#: last at or before it, ``min(last, snapshot)``, one look-up). The view ``observations`` shows a
#: row per scope and snapshot read, as the table was.
observation_runs = Table(
    "observation_runs",
    metadata,
    Column("scope_id", Integer, ForeignKey("scopes.id"), nullable=False),
    Column("outcome", Text, nullable=False),
    Column("first_snapshot_id", Integer, ForeignKey("snapshots.id"), nullable=False),
    Column("last_snapshot_id", Integer, ForeignKey("snapshots.id"), nullable=False),
    Column("detail", Text),
    #: Set when the scope was closed without being read: 'deleted' (its object left its parent's
    #: listing). Such a row counts as an ok observation with no facts; it is a run of its own.
    Column("closure", Text),
    #: Requests each read of the run took (pages read); the planner's estimate for the next run.
    Column("requests", Integer, nullable=False, default=0),
    PrimaryKeyConstraint("scope_id", "outcome", "first_snapshot_id"),
    sqlite_with_rowid=False,
)

objects = Table(
    "objects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scope_id", Integer, ForeignKey("scopes.id"), nullable=False),
    Column("uuid", Text, nullable=False),
    Column("object_type", Text, nullable=False),
    Column("slug", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("is_private", Boolean),
    Column("parent_uuid", Text),
    Column("valid_from", Integer, nullable=False),
    Column("valid_to", Integer),
)

#: Grant versions, their subject and object by id in ``names`` (migration 0010); the ``grants``
#: view shows them with their uuids. Subject type, object type and permission are computed from
#: ``grant_kind`` and ``permission_text`` (``sql.GRANT_COLUMNS``, migration 0016).
grant_versions = Table(
    "grant_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scope_id", Integer, ForeignKey("scopes.id"), nullable=False),
    Column("subject_type", Text, Computed(GRANT_COLUMNS["subject_type"], persisted=False)),
    Column("subject_id", Integer, ForeignKey("names.id"), nullable=False),
    Column("object_type", Text, Computed(GRANT_COLUMNS["object_type"], persisted=False)),
    Column("object_id", Integer, ForeignKey("names.id"), nullable=False),
    Column("permission", Text, Computed(GRANT_COLUMNS["permission"], persisted=False)),
    Column("valid_from", Integer, nullable=False),
    Column("valid_to", Integer),
    Column("grant_kind", Integer, nullable=False),
    Column("permission_text", Text),
)

users = Table(
    "users",
    metadata,
    Column("uuid", Text, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("nickname", Text),
    Column("account_id", Text),
    Column("last_seen", Integer),
    sqlite_with_rowid=False,  # looked up by uuid for every row a view labels
)

#: Every object's newest label, recomputed by the writer when a snapshot completes
#: (``sql.LABELS_SQL``); read through the ``object_labels`` view.
labels = Table(
    "labels",
    metadata,
    Column("uuid", Text, primary_key=True),
    Column("object_type", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("name", Text),
    Column("workspace_uuid", Text),
    sqlite_with_rowid=False,
)

#: Every uuid a grant or a view shows, with its id (what ``grant_versions`` refers to) and the
#: name it goes by: a user's display name, an object's label, else the uuid itself. A uuid gets
#: its row (and id) from the merge that first stores a grant of it (``stage_names``); its name is
#: brought up to date with ``labels`` (``sql.REFRESH_LABELS``, ``sql.REFRESH_NAMES``). Indexed by
#: name (``ix_names_name``) so that a view filtered by a name starts from it.
names = Table(
    "names",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uuid", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
)

#: The change log: what each complete snapshot changed since the complete one before it, baseline
#: rows apart (written by the merge, ``sql.LOG_CHANGES``; read through ``access_changes``). An
#: entry names the versions it compares and its kind, not their values (migration 0015).
change_log = Table(
    "change_log",
    metadata,
    Column("snapshot_id", Integer, nullable=False),
    Column("id", Integer, nullable=False),  # numbers the entry within its snapshot
    #: What changed, by ``change_kinds``: the fact (the table whose versions ``old_id`` and
    #: ``new_id`` name), the change, the attribute, the form of the reason.
    Column("kind", Integer, nullable=False),
    #: The version valid at the complete snapshot before (NULL: none) and the one valid at
    #: ``snapshot_id`` (NULL: none).
    Column("old_id", Integer),
    Column("new_id", Integer),
    #: For a membership change: how many repositories the group reaches (its reason).
    Column("reach", Integer),
    PrimaryKeyConstraint("snapshot_id", "id"),
    sqlite_with_rowid=False,
)

#: What each ``kind`` of ``change_log`` stands for (``sql.CHANGE_KINDS``): fixed rows.
change_kinds = Table(
    "change_kinds",
    metadata,
    Column("kind", Integer, primary_key=True),
    Column("fact", Text, nullable=False),  # 'grant' or 'object'
    Column("change", Text, nullable=False),
    Column("attribute", Text),
    #: The reason as ``access_changes`` says it: ``<object>`` is the grant's object type,
    #: ``<reach>`` the entry's ``reach``.
    Column("reason", Text),
)

#: The scopes a complete snapshot read ok for the first time: every version such a scope opened
#: then is a ``baseline`` row of ``access_changes``, not copied into ``change_log``.
baseline_scopes = Table(
    "baseline_scopes",
    metadata,
    Column("snapshot_id", Integer, nullable=False),
    Column("scope_id", Integer, nullable=False),
    Column("from_snapshot_id", Integer, nullable=False),
    PrimaryKeyConstraint("snapshot_id", "scope_id"),
    sqlite_with_rowid=False,
)

#: The open effective grants (``repository_permissions``) that no recorded source explains, by
#: their key: kept by the merge (``unexplained``), read by ``current_access_sources``.
unexplained_access = Table(
    "unexplained_access",
    metadata,
    # Key columns first, in the key's order: SQLite 3.40's quick_check reports a WITHOUT ROWID
    # table whose key is in another order as damaged ("NULL value in ...").
    Column("subject_id", Integer, nullable=False),
    Column("object_id", Integer, nullable=False),
    Column("scope_id", Integer, nullable=False),
    PrimaryKeyConstraint("subject_id", "object_id", "scope_id"),
    sqlite_with_rowid=False,
)

stage_observations = Table(
    "stage_observations",
    metadata,
    Column("snapshot_id", Integer, nullable=False),
    Column("scope_id", Integer, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("detail", Text),
    Column("requests", Integer, nullable=False, default=0),
    # The scope's grants were staged as what changed (``KnownGrants``), not whole.
    Column("delta", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("snapshot_id", "scope_id"),
)

stage_objects = Table(
    "stage_objects",
    metadata,
    Column("snapshot_id", Integer, nullable=False),
    Column("scope_id", Integer, nullable=False),
    Column("uuid", Text, nullable=False),
    Column("object_type", Text, nullable=False),
    Column("slug", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("is_private", Boolean),
    Column("parent_uuid", Text),
)

stage_grants = Table(
    "stage_grants",
    metadata,
    Column("snapshot_id", Integer, nullable=False),
    Column("scope_id", Integer, nullable=False),
    Column("subject_id", Integer, nullable=False),
    Column("object_id", Integer, nullable=False),
    Column("grant_kind", Integer, nullable=False),
    Column("permission_text", Text),
)

stage_users = Table(
    "stage_users",
    metadata,
    Column("snapshot_id", Integer, nullable=False),
    Column("scope_id", Integer, nullable=False),
    Column("uuid", Text, nullable=False),
    Column("display_name", Text, nullable=False),
    Column("nickname", Text),
    Column("account_id", Text),
)

#: The open versions of a scope staged as what changed that no page of it showed tonight.
stage_gone = Table(
    "stage_gone",
    metadata,
    Column("snapshot_id", Integer, nullable=False),
    Column("scope_id", Integer, nullable=False),
    Column("grant_id", Integer, nullable=False),
)
