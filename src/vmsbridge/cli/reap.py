"""`vmsbridge reap`: abort stale multipart uploads in the store and the database."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import app

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """`90s`, `30m`, `24h`, `7d` (or a bare number of seconds)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not m:
        raise typer.BadParameter(f"{text!r}: use a number with s, m, h or d (e.g. 24h)")
    return dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2) or "s"])


def store_for(settings: Any, s3_port: int | None) -> Any:
    """The gateway: the configured S3, or the embedded store of `settings.data_dir`."""
    from vmsbridge.storage.client import S3Gateway

    if not settings.embedded_s3:
        return S3Gateway.from_settings(settings)
    from vmsbridge.s3 import load_or_create_credentials

    ak, sk, _ = load_or_create_credentials(
        settings.data_dir, settings.s3_access_key_id, settings.s3_secret_access_key
    )
    port = s3_port or settings.s3_port
    return S3Gateway.from_settings(
        settings, endpoint_url=f"http://127.0.0.1:{port}", access_key_id=ak, secret_access_key=sk
    )


@app.command()
def reap(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age limit: 30m, 24h, 7d ...")
    ] = "24h",
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", envvar="VMSBRIDGE_DATA_DIR", help="Data directory.")
    ] = None,
    s3_port: Annotated[
        int | None, typer.Option("--s3-port", help="Port of the embedded store (when embedded).")
    ] = None,
) -> None:
    """Abort open multipart uploads older than the limit, in the store and the database.

    Safe to run from several machines at once (each upload is claimed by exactly one reaper).
    """
    import asyncio

    from vmsbridge.config import Settings
    from vmsbridge.db import Database
    from vmsbridge.uploads.service import reap as reap_sessions

    age = parse_duration(older_than)
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()

    async def main() -> Any:
        db = Database(settings.effective_database_url)
        store = store_for(settings, s3_port)
        try:
            await db.migrate()
            return await reap_sessions(db, store, age)
        finally:
            await store.close()
            await db.dispose()

    result = asyncio.run(main())
    for r in result.reaped:
        typer.echo(
            f"aborted {r.s3_key} (upload {r.upload_id[:16]}…, created "
            f"{r.created_at:%Y-%m-%dT%H:%M:%SZ}, store: {r.store_result})"
        )
    for key, why in result.failed:
        typer.echo(f"could not abort {key}: {why}", err=True)
    typer.echo(f"reaped {len(result.reaped)} upload(s) older than {older_than}")
    if result.failed:
        raise typer.Exit(1)
