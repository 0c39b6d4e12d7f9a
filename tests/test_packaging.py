"""The wheel carries every package of exporter/ and the migrations (what a pip install runs)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from exporter.store.database import MIGRATIONS_DIRS, migrations_dir

ROOT = Path(__file__).resolve().parents[1]


def _setuptools() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        table: dict[str, object] = tomllib.load(handle)["tool"]["setuptools"]
    return table


def test_every_package_of_exporter_is_listed_for_the_wheel() -> None:
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "exporter").rglob("__init__.py")
    }
    listed = set(_setuptools()["packages"])  # type: ignore[call-overload]
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"


def test_the_migrations_travel_as_exporter_migrations() -> None:
    package_dir = _setuptools()["package-dir"]
    assert package_dir == {"exporter.migrations": "migrations"}
    assert (ROOT / "migrations" / "__init__.py").is_file()
    assert (ROOT / "migrations" / "versions" / "__init__.py").is_file()
    # In a checkout the top-level folder is found; in a wheel, the one inside the package.
    assert migrations_dir() == ROOT / "migrations"
    assert MIGRATIONS_DIRS[0] == ROOT / "exporter" / "migrations"
