"""The real CLI against the simulator on 127.0.0.1.

The CLI runs its own event loop (``asyncio.run``), so the simulator serves from a thread of its
own. Tests change the org (churn) only between runs, while the server is idle.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import main
from exporter.crawl.records import group_key
from exporter.simulator import (
    ADMIN_EMAIL,
    ADMIN_TOKEN,
    Org,
    TruthChange,
    generate_org,
)
from exporter.store.database import stage_path
from tests.sim_thread import ThreadedSimulator


@dataclass
class Cli:
    """Runs ``bbaccess`` in-process, capturing what it prints."""

    db: Path
    stdout: str = ""
    stderr: str = ""
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, *args: str) -> int:
        out, err = io.StringIO(), io.StringIO()
        argv = [args[0], "--db", str(self.db), *args[1:]]
        self.calls.append(argv)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        self.stdout, self.stderr = out.getvalue(), err.getvalue()
        return code

    def diff_json(self, *args: str) -> dict[str, Any]:
        assert self("diff", "--format", "json", *args) == 0, self.stderr
        document: dict[str, Any] = json.loads(self.stdout)
        return document

    def staged(self, table: str) -> int:
        """Rows in a table of the stage: 0 with no stage file (a run removes it at its end)."""
        try:
            return int(self.sql(f"SELECT count(*) FROM stage.{table}")[0][0])
        except sqlite3.OperationalError:  # no stage file, or not made yet
            return 0

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        """Rows of the database; the ``stage_*`` tables from the stage file beside it."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            if stage_path(self.db).exists():
                conn.execute("ATTACH DATABASE ? AS stage", (str(stage_path(self.db)),))
            return conn.execute(query, params).fetchall()


@pytest.fixture
def org() -> Org:
    return generate_org("small", seed=7)


@pytest.fixture
def simulator(org: Org) -> Iterator[ThreadedSimulator]:
    with ThreadedSimulator(org) as sim:
        yield sim


@pytest.fixture
def cli(tmp_path: Path, simulator: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in ("BITBUCKET_ACCESS_TOKEN", "BITBUCKET_APP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BITBUCKET_API_URL", simulator.base_url)
    monkeypatch.setenv("BITBUCKET_EMAIL", ADMIN_EMAIL)
    monkeypatch.setenv("BITBUCKET_API_TOKEN", ADMIN_TOKEN)
    return Cli(tmp_path / "access.db")


def churn_rng(day: int) -> random.Random:
    return random.Random(f"integration-{day}")


def truth_key(change: TruthChange, project_keys: dict[str, str]) -> tuple[object, ...]:
    """A ground-truth change in the shape the diff reports it."""
    attribute, old, new = change.attribute, change.old, change.new
    if attribute == "parent_uuid":
        attribute = "project"
        old = project_keys.get(old or "", old)
        new = project_keys.get(new or "", new)
    return (
        change.change,
        change.object_type,
        change.object_uuid,
        change.subject_uuid,
        change.source,
        attribute,
        old,
        new,
    )


def explicit_truth_key(change: TruthChange, org: Org) -> tuple[object, ...]:
    """A ground-truth change of an explicit grant or a group membership, in the diff's shape:
    groups are keyed by workspace uuid and slug; a group's grant on a project has the source
    ``project group``; membership changes read ``added to group`` and ``removed from group``."""
    uuids = {ws.slug: ws.uuid for ws in org.workspaces.values()}

    def group(full_slug: str) -> str:
        ws_slug, slug = full_slug.split(":", 1)
        return group_key(uuids[ws_slug], slug)

    if change.source == "membership":
        kind = "added to group" if change.change == "granted" else "removed from group"
        return (kind, "group", group(change.object_uuid), change.subject_uuid, "membership",
                None, change.old, change.new)  # fmt: skip
    subject = change.subject_uuid or ""
    by_group = not subject.startswith("{")
    source = "project group" if by_group and change.source == "project" else change.source
    return (
        change.change,
        change.object_type,
        change.object_uuid,
        group(subject) if by_group else subject,
        source,
        None,
        change.old,
        change.new,
    )


def diff_key(row: dict[str, Any]) -> tuple[object, ...]:
    return (
        row["change"],
        row["object_type"],
        row["object_uuid"],
        row["subject_uuid"],
        row["source"],
        row["attribute"],
        row["old_value"],
        row["new_value"],
    )


def project_keys(org: Org) -> dict[str, str]:
    return {p.uuid: p.key for ws in org.workspaces.values() for p in ws.projects.values()}
