"""``bbaccess check`` and ``bbaccess get``: wiring and printing. Neither touches the database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from exporter.check import WorkspaceCheck, check_credentials
from exporter.cli_output import EXIT_AUTH, EXIT_GAPS, EXIT_OK
from exporter.config import load_settings
from exporter.crawl.plan import (
    NightBudget,
    NightPlan,
    WorkspaceTurn,
    night_line,
    plan_night,
    rationed_plan,
    rotation,
    total_line,
    workspaces_in_order,
)
from exporter.errors import ConfigError
from exporter.readers import make_readers
from exporter.render import table

COLUMNS = ("workspace", "kind", "readable", "size", "detail")


def _rows(checks: list[WorkspaceCheck]) -> list[dict[str, Any]]:
    return [{"workspace": c.workspace, "kind": k.kind, "readable": k.readable, "size": k.size,
             "detail": k.detail} for c in checks for k in c.kinds]  # fmt: skip


#: Requests a credential makes before any listing: ``/2.0/user/workspaces``.
SPENT = 1


def _credential_plan(checks: list[WorkspaceCheck], night: NightBudget) -> NightPlan:
    """One credential's night, its workspaces sharing its budget as a snapshot shares it: every
    workspace read whole, in turn; those that do not fit left for the next nights."""
    turns = workspaces_in_order(WorkspaceTurn(c.workspace, c.workspace, 0, c.pages())
                                for c in checks)  # fmt: skip
    scopes = {c.workspace: 2 * c.objects() for c in checks}
    share = rotation(turns, night, spent=SPENT)
    if not share.rationed:
        plan = plan_night(workspace_requests=share.requests, per_object=sum(scopes.values()),
                          never_observed=sum(scopes.values()), budget=night)  # fmt: skip
        return replace(plan, workspaces=share)
    tonight = sum(scopes[t.uuid] for t in turns[: share.tonight])
    return rationed_plan(share, turns, per_object=tonight, never_observed=tonight,
                         scopes=scopes, budget=night, spent=SPENT)  # fmt: skip


def plan_lines(checks: list[WorkspaceCheck], night: NightBudget) -> list[str]:
    """Tonight's plan from the sizes the listings report: each workspace's share, then one line
    per credential (each has its own budget, which its workspaces share), and with several
    credentials, when some leave workspaces for later nights, the line of them all."""
    lines = [f"{c.workspace}: about {c.pages()} requests for its workspace-wide listings, "
             f"{2 * c.objects()} per-object scopes" for c in checks]
    by_credential: dict[str, list[WorkspaceCheck]] = {}
    for check in checks:
        by_credential.setdefault(check.credential, []).append(check)
    plans = {name: _credential_plan(group, night) for name, group in by_credential.items()}
    for name, plan in plans.items():
        line = night_line(plan, night, "from the sizes the listings report", first=False)
        lines.append(line if len(plans) == 1 else f"{line} ({name})")
    rotations = [p.workspaces for p in plans.values() if p.workspaces is not None]
    if len(rotations) > 1 and any(r.rationed for r in rotations):
        lines.append(total_line(rotations, sum(r.requests for r in rotations)))
    return lines


async def run_check(flags: Mapping[str, Any], config: Path | None) -> int:
    settings, _ = load_settings(flags=flags, config_path=config, need_db=False)
    async with aiohttp.ClientSession() as session:
        readers = make_readers(session, settings, sleep=asyncio.sleep, clock=time.monotonic)
        checks, problems = await check_credentials(readers, settings.workspaces)
    for check in checks:
        admin = {True: "administrator", False: "not an administrator", None: "role unknown"}
        print(f"{check.workspace}: {check.credential}, {admin[check.administrator]}")
    if checks:
        print(table(_rows(checks), COLUMNS))
    night = NightBudget(settings.rate, settings.max_requests, settings.deadline)
    for line in plan_lines(checks, night):
        print(line)
    for problem in problems:
        print(f"problem: {problem}")
    if any("refused the credential" in p for p in problems):
        return EXIT_AUTH
    unreadable = any(k.readable not in ("ok",) and not k.readable.startswith("no ")
                     for c in checks for k in c.kinds)  # fmt: skip
    return EXIT_GAPS if unreadable or problems else EXIT_OK


async def run_get(path: str, *, paginate: bool, config: Path | None) -> int:
    settings, _ = load_settings(flags={}, config_path=config, need_db=False)
    if settings.auth is None:
        raise ConfigError("get uses the default credential: set one in the environment or as "
                          "[credential] in bbaccess.toml")
    async with aiohttp.ClientSession() as session:
        reader = make_readers(session, settings, sleep=asyncio.sleep, clock=time.monotonic)[None]
        if paginate:
            values: list[Any] = []
            async for page in reader.client.iter_pages(path):
                values.extend(page.values)
            answer: Any = values
        else:
            answer = await reader.client.get_json(path)
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return EXIT_OK
