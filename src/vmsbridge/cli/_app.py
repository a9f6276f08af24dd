"""The root `vmsbridge` typer application; command modules register themselves on it."""

from __future__ import annotations

import typer

from vmsbridge import __version__

app = typer.Typer(
    name="vmsbridge",
    help="Get video incidents out of video management systems and into S3-compatible storage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Get video incidents out of video management systems and into S3-compatible storage."""


@app.command()
def version() -> None:
    """Print the vmsbridge version."""
    typer.echo(__version__)
