"""Alembic environment: migrations run over an async SQLite engine, in batch mode.

The CLI hands over an open connection (``config.attributes["connection"]``); run by hand,
``alembic -x db=PATH upgrade head`` opens one itself.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from exporter.store.schema import metadata

config = context.config


def run_with(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    path = context.get_x_argument(as_dictionary=True).get("db", "bbaccess.db")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as connection:
            # One real transaction, as bbaccess opens one: the sqlite3 driver would otherwise
            # commit each CREATE and DROP on its own, and a migration that fails half-way would
            # leave a schema of neither revision.
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
            await connection.run_sync(run_with)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(url="sqlite://", target_metadata=metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    shared = config.attributes.get("connection")
    if shared is not None:
        run_with(shared)
    else:
        asyncio.run(run_async())
