"""The README's cookbook answers on the demo database, and Datasette's metadata fits the views.

Every ```sql block between ``<!-- cookbook -->`` and ``<!-- /cookbook -->`` in README.md runs on a
database built by ``bbaccess demo`` (the seeded small org, two snapshots) and must answer with rows,
unless its first line is ``-- may be empty``. exporter/datasette-metadata.json must be what
``python -m tests.datasette_metadata`` writes, its canned query ``diff`` must be the diff's SQL,
and every view and column it describes must exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import sqlite3
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import build_parser, main
from exporter.demo import run_demo
from exporter.store.explain import sources_sql
from exporter.store.sql import (
    ACCESS_CHANGES_SQL,
    CHANGE_KINDS,
    DIFF_SQL,
    LATEST_ACCESS_CHANGES_SQL,
)
from tests import datasette_metadata

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
METADATA = ROOT / "exporter" / "datasette-metadata.json"
START, END = "<!-- cookbook -->", "<!-- /cookbook -->"
MAY_BE_EMPTY = "-- may be empty"
SQL_BLOCK = re.compile(r"^```sql[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
MINIMUM_QUERIES = 12

#: The views the metadata must describe (the README's public interface, the most asked).
DESCRIBED_VIEWS = {
    "access_changes", "access_at", "current_access", "current_access_sources",
    "current_repository_permissions", "current_explicit_grants", "current_group_members",
    "scope_freshness", "current_objects", "latest_access_changes",
}


def cookbook(readme: str) -> str:
    """The README's text between the cookbook markers; AssertionError when they are missing."""
    assert readme.count(START) == 1, f"README.md must hold the line {START} exactly once"
    assert readme.count(END) == 1, f"README.md must hold the line {END} exactly once"
    start, end = readme.index(START) + len(START), readme.index(END)
    assert start <= end, f"{START} must come before {END}"
    return readme[start:end]


def sql_blocks(text: str) -> list[tuple[str, str]]:
    """(the sentence before it, the SQL) for every ```sql block of ``text``."""
    blocks = []
    for match in SQL_BLOCK.finditer(text):
        paragraphs = [p.strip() for p in text[:match.start()].split("\n\n") if p.strip()]
        blocks.append((paragraphs[-1] if paragraphs else "", match.group(1)))
    return blocks


def _readme_blocks() -> list[tuple[str, str]]:
    # For the parameters: a README without markers has no query to run, and fails
    # test_the_cookbook_is_in_its_place_with_enough_queries.
    try:
        return sql_blocks(cookbook(README.read_text(encoding="utf-8")))
    except AssertionError:
        return []


BLOCKS = _readme_blocks()


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database built by ``bbaccess demo`` with its default seed and churn.

    ``command_demo`` without ``cli.main``, whose logging set-up (``basicConfig(force=True)``)
    would outlive this module in the test session.
    """
    path = tmp_path_factory.mktemp("readme-sql") / "bbaccess-demo.db"
    args = build_parser().parse_args(["demo", "--db", str(path)])
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = asyncio.run(run_demo(db_path=args.db, seed=args.seed, churn_rate=args.churn))
    assert status == 0, out.getvalue()
    return path


@pytest.fixture
def demo(demo_db: Path) -> Iterator[sqlite3.Connection]:
    """The demo database, read-only: a cookbook query only reads."""
    conn = sqlite3.connect(f"{demo_db.as_uri()}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def _metadata() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(METADATA.read_text(encoding="utf-8"))
    return data


def _columns(conn: sqlite3.Connection, view: str) -> list[str]:
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{view}")')]


# The cookbook.

def test_the_cookbook_is_in_its_place_with_enough_queries() -> None:
    readme = README.read_text(encoding="utf-8")
    blocks = sql_blocks(cookbook(readme))
    assert len(blocks) >= MINIMUM_QUERIES, f"{len(blocks)} queries, at least {MINIMUM_QUERIES}"
    supporting = readme.index("### Supporting views and tables")
    assert supporting < readme.index(START) < readme.index(END) < readme.index("## Development")
    for sentence, sql in blocks:
        assert sentence and not sentence.startswith(("```", "#")), (
            f"say in one sentence what this answers:\n{sql}")


def test_the_markers_are_required() -> None:
    with pytest.raises(AssertionError, match="cookbook"):
        cookbook("# bbaccess\n\n```sql\nSELECT 1;\n```\n")
    with pytest.raises(AssertionError):
        cookbook(f"{END}\n```sql\nSELECT 1;\n```\n{START}\n")
    text = (f"before\n\n```sql\nSELECT 0;\n```\n{START}\n"
            f"What one is:\n\n```sql\nSELECT 1;\n```\n{END}")
    assert sql_blocks(cookbook(text)) == [("What one is:", "SELECT 1;\n")]


@pytest.mark.parametrize(("sentence", "sql"), BLOCKS,
                         ids=[f"{i:02d}-{s[:50]}" for i, (s, _) in enumerate(BLOCKS, 1)])
def test_a_cookbook_query_answers_on_the_demo_database(
    demo: sqlite3.Connection, sentence: str, sql: str
) -> None:
    try:
        rows = demo.execute(sql).fetchall()
    except sqlite3.Error as error:
        pytest.fail(f"{error} in the query for: {sentence}\n{sql}")
    if sql.lstrip().startswith(MAY_BE_EMPTY):
        assert "empty" in sentence, f"say in the sentence why it may be empty: {sentence}"
    else:
        assert rows, f"no rows on the demo database for: {sentence}\n{sql}"


# Datasette's metadata.

def test_the_metadata_file_is_what_its_script_writes() -> None:
    assert METADATA.read_text(encoding="utf-8") == datasette_metadata.render(), (
        "run: python -m tests.datasette_metadata")


def test_the_canned_query_diff_is_the_diff_sql() -> None:
    databases = _metadata()["databases"]
    assert list(databases) == ["bbaccess-demo"]  # the README's instructions say so
    query = databases["bbaccess-demo"]["queries"]["diff"]
    assert query["sql"] == DIFF_SQL
    assert query["params"] == ["a", "b"]
    assert query["title"]


def test_the_canned_query_answers_like_access_changes(demo: sqlite3.Connection) -> None:
    # Datasette passes parameters as text, from the query string.
    diff = demo.execute(DIFF_SQL, {"a": "1", "b": "2"}).fetchall()
    view = demo.execute("SELECT * FROM access_changes WHERE snapshot_id = 2").fetchall()
    assert diff

    def normal(rows: list[Any]) -> list[str]:
        return sorted(repr((int(r[0]), r[1], int(r[2]), *r[3:])) for r in rows)

    assert normal(diff) == normal(view)


def test_every_described_view_and_column_exists(demo: sqlite3.Connection) -> None:
    views = {name for (name,) in demo.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}
    for database in _metadata()["databases"].values():
        tables = database["tables"]
        assert set(tables) >= DESCRIBED_VIEWS
        for view, described in tables.items():
            assert view in views, f"the metadata describes {view}, which is no view"
            assert described["description"]
            missing = set(described["columns"]) - set(_columns(demo, view))
            assert not missing, f"{view} has no column {sorted(missing)}"


def test_every_column_of_a_described_view_is_described(demo: sqlite3.Connection) -> None:
    for database in _metadata()["databases"].values():
        for view, described in database["tables"].items():
            undescribed = [c for c in _columns(demo, view) if not described["columns"].get(c)]
            assert not undescribed, (
                f"describe {view}.{undescribed} in tests/datasette_metadata.py, then run: "
                "python -m tests.datasette_metadata")


def test_the_metadata_ships_in_the_wheel() -> None:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        package_data = tomllib.load(handle)["tool"]["setuptools"]["package-data"]
    assert METADATA.name in package_data["exporter"]


#: Questions about one name, as people ask them: each must start from the index on the name and
#: never read ``grants`` whole (at ``huge``, 5 million rows: 10 s to more than a minute).
BY_NAME = [
    "SELECT * FROM current_access WHERE subject_name = 'x'",
    "SELECT * FROM current_repository_permissions WHERE object_name = 'x'",
    "SELECT * FROM current_repositories WHERE project = 'x'",
    "SELECT * FROM access_at WHERE subject_name = 'x' AND snapshot_id IN (1, 2)",
    "SELECT * FROM current_access_sources WHERE repository = 'x'",
    "SELECT * FROM current_access_sources WHERE user_name = 'x'",
]
WHOLE_READ = re.compile(r"^SCAN (g|e|ef|m)\b|AUTOMATIC")


@pytest.mark.parametrize("sql", BY_NAME)
def test_a_question_about_one_name_starts_from_it(demo: sqlite3.Connection, sql: str) -> None:
    plan = [row[3] for row in demo.execute(f"EXPLAIN QUERY PLAN {sql}")]
    assert not [step for step in plan if WHOLE_READ.search(step)], plan
    assert any("ix_names_name" in step or "ix_labels_label" in step for step in plan), plan


def test_the_view_of_sources_is_the_sql_who_can_access_runs(demo: sqlite3.Connection) -> None:
    """``current_access_sources`` (written by a migration) and ``who-can-access --sql`` (built
    by the code) are the same SQL: a change to one needs a migration for the other."""
    (sql,) = demo.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'current_access_sources'"
    ).fetchone()
    assert sql == f"CREATE VIEW current_access_sources AS\n{sources_sql(at_snapshot=False)}"


def test_the_views_of_changes_are_the_code_s_and_read_its_kinds(
    demo: sqlite3.Connection,
) -> None:
    """``access_changes`` and ``latest_access_changes`` (written by a migration) are the code's
    SQL, the latter with each branch starting from the latest complete snapshot; the kinds of
    change log entries in the database are the code's."""
    views = dict(demo.execute("SELECT name, sql FROM sqlite_master WHERE name IN "
                              "('access_changes', 'latest_access_changes')"))  # fmt: skip
    assert views == {
        "access_changes": f"CREATE VIEW access_changes AS\n{ACCESS_CHANGES_SQL}",
        "latest_access_changes": f"CREATE VIEW latest_access_changes AS\n"
        f"{LATEST_ACCESS_CHANGES_SQL}",
    }
    assert demo.execute("SELECT * FROM change_kinds ORDER BY kind").fetchall() == list(
        CHANGE_KINDS
    )


@pytest.mark.parametrize("command", [["who-can-access", "acme/api"], ["diff"]])
def test_the_sql_a_command_prints_reads_in_a_terminal(
    command: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--sql`` prints the SQL to read or paste: no line wider than 100 characters."""
    assert main([command[0], "--sql", "--db", str(tmp_path / "none.db"), *command[1:]]) == 0
    printed = capsys.readouterr().out
    assert "SELECT" in printed
    wide = [line for line in printed.splitlines() if len(line) > 100]
    assert not wide, wide
