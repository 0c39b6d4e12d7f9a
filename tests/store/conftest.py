"""Fixtures shared by the store's tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exporter.store.database import open_database


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database at the head revision, made once a module: each example copies it
    rather than running the migrations again."""
    path = tmp_path_factory.mktemp("template") / "template.db"

    async def make() -> None:
        engine = await open_database(path)
        await engine.dispose()

    asyncio.run(make())
    return path
