"""``bbaccess check`` and ``bbaccess get``: wiring and printing. Neither touches the database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from exporter.check import WorkspaceCheck, check_credentials
from exporter.cli_output import EXIT_AUTH, EXIT_GAPS, EXIT_OK
from exporter.config import load_settings
from exporter.crawl.plan import NightBudget, night_line, plan_night
from exporter.errors import ConfigError
from exporter.readers import make_readers
from exporter.render import table

COLUMNS = ("workspace", "kind", "readable", "size", "detail")


def _rows(checks: list[WorkspaceCheck]) -> list[dict[str, Any]]:
    return [{"workspace": c.workspace, "kind": k.kind, "readable": k.readable, "size": k.size,
             "detail": k.detail} for c in checks for k in c.kinds]  # fmt: skip


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
    for check in checks:
        per_object = 2 * check.objects()
        plan = plan_night(workspace_requests=check.pages() + 1, per_object=per_object,
                          never_observed=per_object, budget=night)  # fmt: skip
        line = night_line(plan, night, "from the sizes the listings report", first=False)
        print(f"{check.workspace}: {line}")
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
