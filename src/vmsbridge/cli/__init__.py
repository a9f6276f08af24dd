"""The `vmsbridge` command line. One module per command group; heavy imports stay inside the
commands so that `vmsbridge --help` is quick."""

from __future__ import annotations

from . import keys, push, reap, s3, serve  # noqa: F401  (each module registers its commands)
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
