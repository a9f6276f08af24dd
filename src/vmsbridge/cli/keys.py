"""`vmsbridge keys`: create, list and revoke API keys (and their organisations)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import app

keys_app = typer.Typer(help="API keys and organisations.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="VMSBRIDGE_DATA_DIR",
        help="Data directory (SQLite file). VMSBRIDGE_DATABASE_URL overrides the database.",
    ),
]


def settings_for(data_dir: Path | None) -> Any:
    """Settings from the environment, with `--data-dir` applied."""
    from vmsbridge.config import Settings

    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def run_db(data_dir: Path | None, fn: Any) -> Any:
    """Migrate the database, then run `await fn(db)` and return its result."""
    import asyncio

    from vmsbridge.db import Database

    async def main() -> Any:
        db = Database(settings_for(data_dir).effective_database_url)
        try:
            await db.migrate()
            return await fn(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


@keys_app.command("create")
def create(
    org: Annotated[str, typer.Option("--org", help="Organisation name (created if needed).")],
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "",
    permission: Annotated[
        list[str] | None, typer.Option("--permission", help="Permission (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {key, id, org_id}.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Create an API key; the key is printed once and only its hash is stored."""
    from vmsbridge.auth.service import create_key

    if not org.strip():
        raise typer.BadParameter("must not be empty", param_hint="--org")

    async def fn(db: Any) -> Any:
        async with db.write_session() as s:
            return await create_key(s, org, name=name, permissions=permission or ["vms"])

    k = run_db(data_dir, fn)
    if as_json:
        typer.echo(json.dumps({"key": k.key, "id": k.id, "org_id": k.org_id}))
        return
    typer.echo(f"API key for organisation {k.org_name!r} (shown once; store it now):")
    typer.echo(f"  {k.key}")
    typer.echo(f"  id: {k.id}   org_id: {k.org_id}")


@keys_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List keys (never the keys themselves)."""
    from vmsbridge.auth.service import list_keys
    from vmsbridge.incidents.schemas import format_time

    async def fn(db: Any) -> Any:
        async with db.session() as s:
            return [
                {
                    "id": k.id,
                    "org": o.name,
                    "org_id": o.id,
                    "name": k.name,
                    "prefix": k.key_prefix,
                    "permissions": k.permissions,
                    "created": format_time(k.created_at),
                    "revoked": format_time(k.revoked_at),
                }
                for k, o in await list_keys(s)
            ]

    rows = run_db(data_dir, fn)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "org", "name", "key", "permissions", "created", "revoked")
    for r in rows:
        table.add_row(
            r["id"],
            r["org"],
            r["name"],
            r["prefix"] + "…",
            r["permissions"],
            r["created"],
            r["revoked"] or "",
        )
    console = Console()
    if not console.is_terminal:  # piped: do not squeeze ids to 80 columns
        console = Console(width=250)
    console.print(table)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (see `keys list`).")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key: it is refused (401) from now on."""
    from vmsbridge.auth.service import revoke_key

    async def fn(db: Any) -> bool:
        async with db.write_session() as s:
            return await revoke_key(s, key_id)

    if not run_db(data_dir, fn):
        typer.echo(f"no key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
