"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from typing import Any

from vmsbridge.db import Base

from .conftest import Api


async def test_migrated_schema_matches_models(api: Api) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def diff(conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(conn)
        return list(compare_metadata(ctx, Base.metadata))

    async with api.app.state.db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []


async def test_migrate_twice_is_a_no_op(api: Api) -> None:
    await api.app.state.db.migrate()
    r = await api.client.get("/readyz")
    assert r.status_code == 200
