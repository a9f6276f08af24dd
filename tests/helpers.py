"""Small helpers shared by every test layer: free ports, waiting for listeners, PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid

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
