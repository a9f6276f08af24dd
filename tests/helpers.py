"""Small helpers shared by every test layer: free ports, waiting for listeners, PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path

PG_ADMIN_DSN = os.environ.get("VMSBRIDGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    """Block until something accepts connections on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def pg_required() -> bool:
    """CI sets VMSBRIDGE_TEST_REQUIRE_PG=1: PostgreSQL tests must run there, never skip."""
    return os.environ.get("VMSBRIDGE_TEST_REQUIRE_PG") == "1"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_available() -> bool:
    """True when the PostgreSQL server on 127.0.0.1:5432 answers."""
    try:
        asyncio.run(_pg_admin("SELECT 1"))
    except Exception:
        return False
    return True


def create_pg_database() -> tuple[str, str]:
    """Create a fresh, uniquely named database; return (its name, its SQLAlchemy async URL)."""
    name = f"vmsb_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


def drop_pg_database(name: str) -> None:
    """Drop a database made by `create_pg_database` (terminating leftover connections)."""
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class ServerThread:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a background thread (real HTTP on loopback).

    Use as a context manager; `url` is `http://127.0.0.1:PORT`. The thread has its own event
    loop, so the app is independent of the test's loop.
    """

    def __init__(self, app: object, port: int | None = None) -> None:
        import threading

        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="auto",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)


def make_mp4(path: Path) -> Path:
    """Encode a tiny real MP4 (10 frames of 64x48 MPEG-4 at 10 fps) with PyAV; return `path`."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([i * 20]) * plane.buffer_size)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
