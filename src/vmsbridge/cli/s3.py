"""`vmsbridge s3`: run the embedded S3-compatible store on its own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ._app import app

s3_app = typer.Typer(help="The embedded S3-compatible object store.", no_args_is_help=True)
app.add_typer(s3_app, name="s3")


@s3_app.command()
def serve(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Directory the objects (and generated credentials) are kept in. Default: "
            "the store of `vmsbridge serve`: objects in $VMSBRIDGE_DATA_DIR/objects and "
            "credentials in $VMSBRIDGE_DATA_DIR/.s3-credentials.json (VMSBRIDGE_DATA_DIR "
            "defaults to ./vmsbridge-data), so both commands serve the same store with the "
            "same keys.",
            show_default=False,
        ),
    ] = None,
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
    """Serve the embedded S3-compatible store (path-style, SigV4) from a local directory.

    Credentials: --access-key-id/--secret-access-key (or their environment variables), else
    the ones saved in the credentials file (see --data-dir), else generated, saved there
    (mode 0600) and printed once.
    """
    import uvicorn

    from vmsbridge.s3 import CREDENTIALS_FILE, create_s3_app, load_or_create_credentials

    from .serve import bind

    if bool(access_key_id) != bool(secret_access_key):
        raise typer.BadParameter("give both --access-key-id and --secret-access-key, or neither")
    if data_dir is None:
        # The layout of `vmsbridge serve` (see config.Settings): one credentials file for both.
        root = Path(os.environ.get("VMSBRIDGE_DATA_DIR") or "./vmsbridge-data")
        data_dir, credentials_dir = root / "objects", root
    else:
        credentials_dir = data_dir
    sock = bind(host, port, "--port")
    key_id, secret, generated = load_or_create_credentials(
        credentials_dir, access_key_id, secret_access_key
    )
    app = create_s3_app(data_dir, {key_id: secret}, region=region, min_part_size=min_part_size)
    if generated:
        typer.echo(
            f"Generated S3 credentials (saved in {credentials_dir / CREDENTIALS_FILE}; "
            "shown only once):"
        )
        typer.echo(f"  access key id:     {key_id}")
        typer.echo(f"  secret access key: {secret}")
    shown_host = f"[{host}]" if ":" in host else host
    typer.echo(f"S3 endpoint: http://{shown_host}:{port}  (path-style, region {region})")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[sock])
