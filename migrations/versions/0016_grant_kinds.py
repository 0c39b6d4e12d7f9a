"""``grant_versions`` keeps a grant's subject type, object type and permission as one number.

Every version of a grant held three texts: ``subject_type`` (``user``), ``object_type``
(``repository``) and ``permission`` (``admin``), about 20 of the 43 bytes of a row. After 365
nights of ``medium`` the table held 170,000 versions; at ``huge`` one night is 4.9 million. Now a
row keeps ``grant_kind``, one byte: ``subject * 64 + object * 16 + permission``, each the index of
its value in (``user``, ``group``), (``repository``, ``project``, ``workspace``, ``group``) and
(``read``, ``write``, ``admin``, ``create-repo``, ``member``, ``collaborator``, ``owner``,
``create-project``, ``none``). A permission outside these is kept as listed in
``permission_text`` (its index then 15). The three columns remain, computed from these as a row
is read (virtual generated columns, SQLite 3.31 or later): every view and query reads them as
before, and no view changes.

A version of a subject or object type outside these (none is written by any version of
bbaccess) stops the upgrade with a message, and the database is as it was. Going back writes the
texts out again.

The SQL is written out in full so that this revision never changes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from exporter.errors import DatabaseError

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_KEYS = (
    "CONSTRAINT pk_grant_versions PRIMARY KEY (id), "
    "CONSTRAINT fk_grant_versions_scope_id_scopes FOREIGN KEY(scope_id) REFERENCES scopes (id), "
    "CONSTRAINT fk_grant_versions_subject_id_names FOREIGN KEY(subject_id) REFERENCES names (id), "
    "CONSTRAINT fk_grant_versions_object_id_names FOREIGN KEY(object_id) REFERENCES names (id)"
)
INDEXES = (
    "CREATE UNIQUE INDEX ix_grant_versions_open ON grant_versions (scope_id, subject_id, "
    "object_id) WHERE valid_to IS NULL",
    "CREATE INDEX ix_grant_versions_subject ON grant_versions (subject_id)",
    "CREATE INDEX ix_grant_versions_object ON grant_versions (object_id, subject_id)",
    "CREATE INDEX ix_grant_versions_valid_from ON grant_versions (valid_from)",
    "CREATE INDEX ix_grant_versions_valid_to ON grant_versions (valid_to) "
    "WHERE valid_to IS NOT NULL",
)

#: The versions whose types no ``grant_kind`` names.
UNKNOWN_TYPES = """SELECT count(*), min(id) FROM grant_versions
 WHERE subject_type NOT IN ('user', 'group')
    OR object_type NOT IN ('repository', 'project', 'workspace', 'group')"""

UPGRADE = (
    "CREATE TABLE grant_versions_by_kind (id INTEGER NOT NULL, scope_id INTEGER NOT NULL, "
    "subject_type TEXT GENERATED ALWAYS AS "
    "(CASE grant_kind >> 6 WHEN 0 THEN 'user' WHEN 1 THEN 'group' END) VIRTUAL, "
    "subject_id INTEGER NOT NULL, "
    "object_type TEXT GENERATED ALWAYS AS (CASE (grant_kind >> 4) & 3 WHEN 0 THEN 'repository' "
    "WHEN 1 THEN 'project' WHEN 2 THEN 'workspace' WHEN 3 THEN 'group' END) VIRTUAL, "
    "object_id INTEGER NOT NULL, "
    "permission TEXT GENERATED ALWAYS AS (coalesce(permission_text, CASE grant_kind & 15 "
    "WHEN 0 THEN 'read' WHEN 1 THEN 'write' WHEN 2 THEN 'admin' WHEN 3 THEN 'create-repo' "
    "WHEN 4 THEN 'member' WHEN 5 THEN 'collaborator' WHEN 6 THEN 'owner' "
    "WHEN 7 THEN 'create-project' WHEN 8 THEN 'none' END)) VIRTUAL, "
    "valid_from INTEGER NOT NULL, valid_to INTEGER, grant_kind INTEGER NOT NULL, "
    f"permission_text TEXT, {_KEYS})",
    """INSERT INTO grant_versions_by_kind (id, scope_id, subject_id, object_id, valid_from,
                                    valid_to, grant_kind, permission_text)
       SELECT g.id, g.scope_id, g.subject_id, g.object_id, g.valid_from, g.valid_to,
              CASE g.subject_type WHEN 'user' THEN 0 WHEN 'group' THEN 64 END
              + CASE g.object_type WHEN 'repository' THEN 0 WHEN 'project' THEN 16
                                   WHEN 'workspace' THEN 32 WHEN 'group' THEN 48 END
              + CASE g.permission WHEN 'read' THEN 0 WHEN 'write' THEN 1 WHEN 'admin' THEN 2
                                  WHEN 'create-repo' THEN 3 WHEN 'member' THEN 4
                                  WHEN 'collaborator' THEN 5 WHEN 'owner' THEN 6
                                  WHEN 'create-project' THEN 7 WHEN 'none' THEN 8
                                  ELSE 15 END,
              CASE WHEN g.permission IN ('read', 'write', 'admin', 'create-repo', 'member',
                                         'collaborator', 'owner', 'create-project', 'none')
                   THEN NULL ELSE g.permission END
         FROM grant_versions g ORDER BY g.id""",
    "DROP TABLE grant_versions",
    "ALTER TABLE grant_versions_by_kind RENAME TO grant_versions",
    *INDEXES,
)
DOWNGRADE = (
    "CREATE TABLE grant_versions_by_text (id INTEGER NOT NULL, scope_id INTEGER NOT NULL, "
    "subject_type TEXT NOT NULL, subject_id INTEGER NOT NULL, object_type TEXT NOT NULL, "
    "object_id INTEGER NOT NULL, permission TEXT NOT NULL, valid_from INTEGER NOT NULL, "
    f"valid_to INTEGER, {_KEYS})",
    """INSERT INTO grant_versions_by_text (id, scope_id, subject_type, subject_id, object_type,
                                    object_id, permission, valid_from, valid_to)
       SELECT id, scope_id, subject_type, subject_id, object_type, object_id, permission,
              valid_from, valid_to
         FROM grant_versions ORDER BY id""",
    "DROP TABLE grant_versions",
    "ALTER TABLE grant_versions_by_text RENAME TO grant_versions",
    *INDEXES,
)


def _run(statements: tuple[str, ...]) -> None:
    # The views read the table by name: the renaming need not rewrite them.
    op.execute("PRAGMA legacy_alter_table = ON")
    try:
        for statement in statements:
            op.execute(statement)
    finally:
        op.execute("PRAGMA legacy_alter_table = OFF")


def upgrade() -> None:
    unknown, first = op.get_bind().exec_driver_sql(UNKNOWN_TYPES).one()
    if unknown:
        raise DatabaseError(
            f"{unknown} grant version(s) have a subject or object type this version of bbaccess "
            f"does not know (the first: id {first}), so the database was not upgraded and is as "
            "it was; use the bbaccess that wrote it, and report this message"
        )
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
