"""`vmsbridge s3`: run the embedded S3-compatible store on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app

s3_app = typer.Typer(help="The embedded S3-compatible object store.", no_args_is_help=True)
app.add_typer(s3_app, name="s3")


@s3_app.command()
def serve(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Directory the objects are kept in.")
    ] = Path("./vmsbridge-data/objects"),  # where `vmsbridge serve` keeps its objects too
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 9000,
    access_key_id: Annotated[
        str | None,
        typer.Option(
            envvar="VMSBRIDGE_S3_ACCESS_KEY_ID", help="Access key id (default: generated)."
        ),
    ] = None,
    secret_access_key: Annotated[
        str | None,
        typer.Option(
            envvar="VMSBRIDGE_S3_SECRET_ACCESS_KEY",
            help="Secret access key (default: generated).",
            show_default=False,
        ),
    ] = None,
    region: Annotated[str, typer.Option(help="Region reported to clients.")] = "us-east-1",
    min_part_size: Annotated[
        int, typer.Option(help="Smallest non-final multipart part, in bytes (S3: 5 MiB).", min=1)
    ] = 5 * 1024 * 1024,
) -> None:
    """Serve the embedded S3-compatible store (path-style, SigV4) from a local directory."""
    import uvicorn

    from vmsbridge.s3 import create_s3_app, load_or_create_credentials

    if bool(access_key_id) != bool(secret_access_key):
        raise typer.BadParameter("give both --access-key-id and --secret-access-key, or neither")
    key_id, secret, generated = load_or_create_credentials(
        data_dir, access_key_id, secret_access_key
    )
    app = create_s3_app(data_dir, {key_id: secret}, region=region, min_part_size=min_part_size)
    if generated:
        typer.echo("Generated S3 credentials (saved in the data directory; shown only once):")
        typer.echo(f"  access key id:     {key_id}")
        typer.echo(f"  secret access key: {secret}")
    shown_host = f"[{host}]" if ":" in host else host
    typer.echo(f"S3 endpoint: http://{shown_host}:{port}  (path-style, region {region})")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
        lifespan="on",
    )
