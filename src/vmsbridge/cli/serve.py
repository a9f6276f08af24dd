"""`vmsbridge serve`: the API and (by default) the embedded S3-compatible store, in one process.

Two `uvicorn.Server`s share one asyncio loop: the API on `--port` and the store on `--s3-port`.
The store is skipped when `VMSBRIDGE_S3_ENDPOINT_URL` points at another S3 or with `--no-s3`.
Start order: migrations, store, bucket, API. SIGINT/SIGTERM stop the API first, then the store.

`--workers N` (N > 1): the parent binds the API port (with SO_REUSEPORT, so a port in use is
still one clear line), migrates and makes the bucket once, then starts N API worker processes.
Each worker binds and listens on its own SO_REUSEPORT socket, so the kernel spreads new
connections evenly across workers; with one shared listening socket, a busy worker kept
accepting keep-alive connections while another sat idle. The parent itself serves the embedded
store (one writer of its directory).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import app


def _settings(**overrides: Any) -> Any:
    from vmsbridge.config import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if shown == "::":
        shown = "::1"
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def bind(host: str, port: int, flag: str, *, reuse_port: bool = False) -> Any:
    """A socket bound to (host, port), made before anything starts so that a port in use is
    one clear line and exit 1 (uvicorn would raise SystemExit inside a task: a traceback).
    `reuse_port`: SO_REUSEPORT, so that worker processes can bind the same port."""
    import errno
    import socket

    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on connections accepted from a
    # socket whose proto says TCP (proto 0 meant Nagle + delayed ACKs: 40 ms per response).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "is already in use"
        elif exc.errno == errno.EACCES:
            reason = "needs privileges to bind"
        else:
            reason = f"cannot be bound on {host} ({exc.strerror or exc})"
        typer.echo(f"port {port} {reason}; pick another with {flag}", err=True)
        raise typer.Exit(1) from None
    return sock


class _PresignedQueryFilter(logging.Filter):
    """Cut the query string off access-log lines for presigned URLs.

    A presigned URL is a bearer credential until it expires: whoever reads it in a log could
    upload over the object. uvicorn decides per connection whether to log from the process-wide
    `uvicorn.access` logger, so the API's access log also logs the embedded store's requests
    (whatever the store's own `access_log=False` says); this filter keeps their paths and drops
    their queries. The record's args are uvicorn's: (client, method, path?query, version, status).
    """

    MARK = "?[presigned query redacted]"

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, sep, query = args[2].partition("?")
            if sep and "x-amz-" in query.lower():
                record.args = (*args[:2], path + self.MARK, *args[3:])
        return True


def _redact_presigned_queries() -> None:
    """Install `_PresignedQueryFilter` on uvicorn's access logger (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _PresignedQueryFilter) for f in access.filters):
        access.addFilter(_PresignedQueryFilter())


def _server(asgi: Any, **kwargs: Any) -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        # Signals are handled once for both servers (see `_serve`), not by each server.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(asgi, lifespan="on", timeout_graceful_shutdown=10, **kwargs)
    _redact_presigned_queries()  # after Config: it (re)configures uvicorn's loggers
    return _Server(config)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="API interface [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="API port [default: 8000]")] = None,
    s3_port: Annotated[
        int | None, typer.Option("--s3-port", help="Embedded store port [default: 9000]")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="VMSBRIDGE_DATA_DIR",
            help="SQLite file and the store's objects [default: ./vmsbridge-data]",
        ),
    ] = None,
    no_s3: Annotated[
        bool, typer.Option("--no-s3", help="Do not start the embedded store (API only).")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="API worker processes [default: 1]", min=1, max=64)
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Serve the VMS incident API and the embedded S3-compatible store."""
    settings = _settings(host=host, port=port, s3_port=s3_port, data_dir=data_dir, workers=workers)
    if no_s3 and settings.embedded_s3:
        typer.echo(
            "--no-s3 needs an object store: set VMSBRIDGE_S3_ENDPOINT_URL (and the S3 settings)",
            err=True,
        )
        raise typer.Exit(2)
    import asyncio

    # Bind both ports first: a port in use stops us with one line, before migrations or keys.
    api_sock = bind(settings.host, settings.port, "--port", reuse_port=settings.workers > 1)
    s3_sock = bind(settings.host, settings.s3_port, "--s3-port") if settings.embedded_s3 else None
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    try:
        runner(_serve(settings, api_sock, s3_sock, log_level))
    except KeyboardInterrupt:  # pragma: no cover
        pass


async def _serve(settings: Any, api_sock: Any, s3_sock: Any, log_level: str) -> None:
    import asyncio

    from vmsbridge.db import Database
    from vmsbridge.storage.client import S3Gateway

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    try:
        await db.migrate()
    finally:
        await db.dispose()

    servers: list[Any] = []
    s3_server = None
    gw_kwargs: dict[str, Any] = {}
    if settings.embedded_s3:
        from vmsbridge.s3 import create_s3_app, load_or_create_credentials

        ak, sk, generated = load_or_create_credentials(
            settings.data_dir, settings.s3_access_key_id, settings.s3_secret_access_key
        )
        if generated:
            typer.echo("Generated credentials for the embedded S3 store (saved in the data")
            typer.echo("directory, shown only this once):")
            typer.echo(f"  access key id:     {ak}")
            typer.echo(f"  secret access key: {sk}")
        s3_asgi = create_s3_app(
            settings.data_dir / "objects",
            {ak: sk},
            region=settings.s3_region,
            min_part_size=settings.s3_min_part_size,
        )
        s3_server = _server(
            s3_asgi,
            host=settings.host,
            port=settings.s3_port,
            log_level="warning",
            access_log=False,  # presigned URLs carry signatures in their query
        )
        endpoint = _url(settings.host, settings.s3_port)
        gw_kwargs = {"endpoint_url": endpoint, "access_key_id": ak, "secret_access_key": sk}
        if not settings.s3_public_url:
            settings.s3_public_url = endpoint
        servers.append(s3_server)
        s3_task = asyncio.create_task(s3_server.serve(sockets=[s3_sock]))
        while not s3_server.started:
            if s3_task.done():
                s3_task.result()
                raise SystemExit(1)
            await asyncio.sleep(0.02)

    store = S3Gateway.from_settings(settings, **gw_kwargs)
    await store.ensure_bucket()

    try:
        if settings.workers > 1:
            await store.close()
            await _serve_workers(settings, api_sock, gw_kwargs, log_level)
        else:
            await _serve_one(settings, api_sock, store, s3_server is not None, log_level)
    finally:
        await store.close()
        if s3_server is not None:
            s3_server.should_exit = True
            await s3_task


async def _serve_one(settings: Any, sock: Any, store: Any, embedded: bool, log_level: str) -> None:
    import asyncio
    import signal

    from vmsbridge.app import create_app

    api = create_app(settings, store=store)
    api_server = _server(api, log_level=log_level, access_log=True)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        api_server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    api_task = asyncio.create_task(api_server.serve(sockets=[sock]))
    while not api_server.started and not api_task.done():  # noqa: ASYNC110 (uvicorn has no event)
        await asyncio.sleep(0.02)
    if api_server.started:
        _banner(settings, embedded, settings.port)
    await api_task


def _banner(settings: Any, embedded: bool, port: int) -> None:
    api_url = _url(settings.host, port)
    typer.echo(f"vmsbridge API:  {api_url}/v1/vms/incidents  (docs {api_url}/docs)")
    if embedded:
        typer.echo(
            f"S3 store:       {_url(settings.host, settings.s3_port)}  (bucket "
            f"{settings.s3_bucket}, presigned URLs use {settings.s3_public_url})"
        )
    else:
        typer.echo(f"S3 store:       {settings.s3_endpoint_url} (bucket {settings.s3_bucket})")
    typer.echo(f"database:       {_safe_db_url(settings.effective_database_url)}")
    public = str(settings.s3_public_url)
    if embedded and settings.host in ("0.0.0.0", "::") and "127.0.0.1" in public:
        typer.echo(
            "note: presigned URLs point at 127.0.0.1; set VMSBRIDGE_S3_PUBLIC_URL to the "
            "address other machines reach the store at"
        )
    typer.echo("Create a key:   vmsbridge keys create --org NAME")


def _safe_db_url(url: str) -> str:
    import re

    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


# ---- several API processes ----


def worker_main() -> None:
    """Entry of one API worker process (`vmsbridge serve --workers N`): serve its own
    SO_REUSEPORT socket on the API port until SIGTERM. Configuration comes from the parent in
    `VMSBRIDGE_WORKER_CONFIG`."""
    import asyncio
    import json
    import os

    import uvicorn

    from vmsbridge.app import create_app
    from vmsbridge.config import Settings
    from vmsbridge.storage.client import S3Gateway

    cfg = json.loads(os.environ.pop("VMSBRIDGE_WORKER_CONFIG"))
    settings = Settings.model_validate(cfg["settings"])
    sock = bind(settings.host, settings.port, "--port", reuse_port=True)
    sock.listen(2048)

    async def main() -> None:
        store = S3Gateway.from_settings(settings, **cfg["gateway"])
        config = uvicorn.Config(
            create_app(settings, store=store), lifespan="on", log_level=cfg["log_level"]
        )
        try:
            await uvicorn.Server(config).serve(sockets=[sock])
        finally:
            await store.close()

    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    runner(main())


async def _serve_workers(
    settings: Any, sock: Any, gw_kwargs: dict[str, Any], log_level: str
) -> None:
    import asyncio
    import json
    import os
    import signal
    import subprocess
    import sys

    # The parent's socket only holds the port (bound, never listening: the kernel gives
    # connections only to the workers' listening sockets).
    cfg = {
        "settings": json.loads(settings.model_dump_json()),
        "gateway": gw_kwargs,
        "log_level": log_level,
    }
    env = {**os.environ, "VMSBRIDGE_WORKER_CONFIG": json.dumps(cfg)}
    code = "from vmsbridge.cli.serve import worker_main; worker_main()"
    # Starting processes blocks briefly; this happens once, before serving anything.
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env)  # noqa: S603, ASYNC220
        for _ in range(settings.workers)
    ]
    _banner(settings, bool(gw_kwargs), settings.port)
    typer.echo(f"API workers:    {settings.workers} (pids {', '.join(str(p.pid) for p in procs)})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set() and all(p.poll() is None for p in procs):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        await asyncio.to_thread(p.wait, 20)
    sock.close()
