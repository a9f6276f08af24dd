"""Alembic environment for vmsbridge.

The server runs migrations programmatically (`vmsbridge.db.Database.migrate`), handing us an open
connection in `config.attributes["connection"]`. Run by hand (`alembic -c ...`), this file builds
an async engine from `sqlalchemy.url` or `VMSBRIDGE_DATABASE_URL` instead.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import vmsbridge.auth.models
import vmsbridge.incidents.models
import vmsbridge.uploads.models  # noqa: F401  (register every table on Base.metadata)
from vmsbridge.db import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("VMSBRIDGE_DATABASE_URL")
    if not url:
        from vmsbridge.config import Settings

        url = Settings().effective_database_url
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_async(url))


main()
