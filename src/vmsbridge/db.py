"""The metadata database: one SQLAlchemy 2 async code path for SQLite and PostgreSQL.

SQLite (the embedded default) runs in WAL mode with foreign keys on and a generous busy timeout.
Python's sqlite3 driver starts transactions lazily and only before DML, which lets two writers
read the same snapshot and then fail to upgrade their locks (SQLITE_BUSY_SNAPSHOT, no retry).
So we take over transaction control (the recipe in SQLAlchemy's pysqlite documentation) and write
transactions begin with `BEGIN IMMEDIATE`: a writer takes the database's write lock before it
reads, waits for it under `busy_timeout`, and never loses an update. Read-only requests use a
plain deferred `BEGIN`.

On PostgreSQL the same code uses row locks (`SELECT ... FOR UPDATE`, `INSERT ... ON CONFLICT`).

Hot paths (authentication, incident GET and PUT) use `read(fn)` / `write(fn)`: `fn` is a plain
function of a synchronous SQLAlchemy `Connection` that runs the whole transaction. On PostgreSQL
it runs through the async engine (`run_sync`: one asyncpg round trip per statement, no thread).
On a SQLite file it runs on the event loop's thread, on a connection of its own, with no thread
hop at all. Why: aiosqlite runs every statement, BEGIN and COMMIT on a worker thread, and under
load that thread waits for the GIL while the event loop holds it (up to the 5 ms switch
interval, per statement): py-spy showed 32 concurrent GETs spending most of their time there
(158 req/s, p99 509 ms). A SQLite statement on an indexed lookup takes microseconds, so running it
inline costs less than the hop. It never blocks the loop on a lock: that connection has no busy
timeout, and a busy database (another process or connection holding the write lock) is retried
with `asyncio.sleep` between attempts, for as long as the busy timeout of the async path. `fn`
must not await (it cannot), so a write transaction holds SQLite's write lock only for its
statements.

Migrations (Alembic, `vmsbridge/migrations`) run programmatically: `await db.migrate()`. No
`alembic.ini` is needed at runtime.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Dialect, Engine, Select, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import NullPool, SingletonThreadPool
from sqlalchemy.util import greenlet_spawn

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: How long a SQLite writer waits for the write lock (ms). Writes are short (no store call runs
#: inside a transaction); the margin covers checkpoints and a slow disk.
SQLITE_BUSY_TIMEOUT_MS = 60_000
#: PostgreSQL connections per API process (fixed: see `Database.__init__`).
PG_POOL_SIZE = 20
PG_POOL_OVERFLOW = 0
#: Arbitrary constant for the PostgreSQL advisory lock that serialises concurrent migrations.
_MIGRATION_LOCK_ID = 0x766D7362  # "vmsb"


def _sqlite_busy(exc: OperationalError) -> bool:
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    return isinstance(orig, sqlite3.OperationalError) and code is not None and code & 0xFF in (5, 6)


def _is_disconnect(exc: BaseException) -> bool:
    import asyncpg

    return isinstance(
        exc, OSError | asyncpg.exceptions.ConnectionDoesNotExistError | asyncpg.InterfaceError
    )


class _Plan:
    """A SELECT compiled once for a driver: its SQL, bind names in positional order, and the
    dialect's result processor of each column (None when the driver's value is already right).
    Bind values are passed as they are (the hot statements bind plain strings)."""

    def __init__(self, stmt: Select[Any], dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.stmt = stmt
        self.dialect = dialect
        self.sql = str(compiled)
        self.names = list(compiled.positiontup or [])
        self.processors: list[Any] | None = None
        self.ready = False

    def set_types(self, coltypes: Sequence[Any]) -> None:
        """Pick each column's result processor for the driver's column type codes."""
        processors = [
            col.type.dialect_impl(self.dialect).result_processor(self.dialect, coltype)
            for col, coltype in zip(self.stmt.selected_columns, coltypes, strict=True)
        ]
        self.processors = processors if any(processors) else None
        self.ready = True

    async def prepare(self, conn: Any) -> None:
        """Learn the result column types (processors depend on them) from the server."""
        attributes = (await conn.prepare(self.sql)).get_attributes()
        self.set_types([attr.type.oid for attr in attributes])

    def process(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        procs = self.processors
        if procs is None:
            return rows
        return [
            tuple(v if p is None or v is None else p(v) for p, v in zip(procs, row, strict=True))
            for row in rows
        ]


class Base(DeclarativeBase):
    """Declarative base of every ORM model."""


def utcnow() -> dt.datetime:
    """Now, as a naive UTC datetime (how every time is stored)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Database:
    """Engines and session factories for one database URL.

    `session()` is for reads, `write_session()` for requests that change anything (on SQLite it
    begins with `BEGIN IMMEDIATE`). Both commit on success and roll back on error: one
    transaction per request.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if ":memory:" not in url:
                path = url.split("///", 1)[1]
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            # A fixed pool, no overflow: with the default 5 (+10 overflow) and 32 concurrent
            # clients, every connection returned beyond the pool size was closed and the next
            # burst opened it again (a TCP + TLS-probe handshake each: py-spy showed connects on
            # GETs). Requests hold a connection for a statement or a short transaction, so 20
            # per process serve far more clients; beyond that a request waits for one.
            kwargs["pool_size"] = PG_POOL_SIZE
            kwargs["max_overflow"] = PG_POOL_OVERFLOW
            # No pool_pre_ping: it cost a round trip (BEGIN; ROLLBACK around it outside
            # autocommit: three) on every checkout. A connection found dead instead fails its
            # request with 503 DatabaseUnavailable (Retry-After: 1), and SQLAlchemy then
            # invalidates the whole pool, so one failed request replaces every stale
            # connection; `read()` retries once on its own.
        if self.is_sqlite and ":memory:" in url:
            kwargs["poolclass"] = NullPool
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            self._configure_sqlite(self.engine)
        self.write_engine = self.engine.execution_options(vmsbridge_write=True)
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)
        #: Reads through `read()` on PostgreSQL: autocommit, no BEGIN/ROLLBACK round trips (each
        #: `fn` there is one statement, or accepts statements seeing different snapshots).
        self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._plans: dict[Select[Any], _Plan] = {}
        #: SQLite file: the inline engine of `read()`/`write()` (see the module docstring). Each
        #: thread keeps one connection open: checking a connection out of a pool and SQLAlchemy's
        #: BEGIN/COMMIT bookkeeping cost several times the statement itself (130 µs vs 25 µs).
        #: The driver runs in autocommit mode: a read is one statement, its own transaction;
        #: a write emits BEGIN IMMEDIATE ... COMMIT itself.
        self._inline: Engine | None = None
        self._inline_local = threading.local()
        self._inline_conns: list[Connection] = []
        self._inline_lock = threading.Lock()
        if self.is_sqlite and ":memory:" not in url:
            self._inline = create_engine(
                "sqlite+pysqlite:///" + url.split("///", 1)[1],
                poolclass=SingletonThreadPool,
                connect_args={"check_same_thread": False, "timeout": 0},
            )
            self._configure_sqlite(self._inline, busy_timeout_ms=0, emit_begin=False)

    @staticmethod
    def _configure_sqlite(
        engine: AsyncEngine | Engine,
        busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
        *,
        emit_begin: bool = True,
    ) -> None:
        sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Autocommit at the driver level: we emit BEGIN ourselves (see module docstring).
            dbapi_connection.isolation_level = None
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        if not emit_begin:
            return

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("vmsbridge_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read transaction."""
        async with self._read() as s, s.begin():
            yield s

    @asynccontextmanager
    async def write_session(self) -> AsyncIterator[AsyncSession]:
        """A write transaction (SQLite: `BEGIN IMMEDIATE`)."""
        async with self._write() as s, s.begin():
            yield s

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """`fn(connection)` in a read transaction (SQLite) or in autocommit mode (PostgreSQL:
        every statement sees its own snapshot, so a consistent `fn` reads with one statement).
        `fn` may be called again when SQLite is busy: it must have no other side effects."""
        if self._inline is not None:
            return await self._sqlite_inline(fn, write=False)
        try:
            async with self._autocommit_engine.connect() as conn:
                return await conn.run_sync(fn)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # The connection was dead (a database restart): the pool is invalidated; read again.
        async with self._autocommit_engine.connect() as conn:
            return await conn.run_sync(fn)

    async def fetch(self, stmt: Select[Any], params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        """The rows of one SELECT (one statement: one snapshot, no transaction around it).

        For the hottest reads (authentication, GET incident). On PostgreSQL the statement is
        compiled once and run on the pooled asyncpg connection itself, with SQLAlchemy's result
        processing for each column: SQLAlchemy's async Connection (greenlet, execution context,
        checkout and reset of a Connection) cost ~200 µs of CPU per statement here against
        ~25 µs for asyncpg's own `fetch` (measured, sequential, same connection).
        """
        if self._inline is not None:
            # Same idea on SQLite: the sqlite3 connection itself (~10 µs against ~25 µs).
            plan = self._plans.get(stmt)
            if plan is None:
                plan = self._plans[stmt] = _Plan(stmt, self._inline.dialect)
                plan.set_types([None] * len(stmt.selected_columns))
            args = [params[name] for name in plan.names]
            sql = plan.sql
            rows = await self._sqlite_inline(
                lambda conn: conn.connection.driver_connection.execute(sql, args).fetchall(),  # type: ignore[union-attr]
                write=False,
            )
            return plan.process(rows)
        if self.dialect != "postgresql":
            return await self.read(lambda conn: conn.execute(stmt, params).all())
        plan = self._plans.get(stmt)
        if plan is None:
            plan = self._plans[stmt] = _Plan(stmt, self.engine.dialect)
        args = [params[name] for name in plan.names]
        for attempt in (1, 2):
            raw = await self.engine.raw_connection()
            driver: Any = raw.driver_connection
            try:
                if not plan.ready:
                    await plan.prepare(driver)
                rows = await driver.fetch(plan.sql, *args)
            except BaseException as exc:
                if _is_disconnect(exc):
                    await greenlet_spawn(raw.invalidate, exc)
                    if attempt == 1:
                        continue  # the server restarted: read again on a fresh connection
                    raise ConnectionError(f"database connection lost: {exc}") from exc
                raw.close()
                raise
            raw.close()
            return plan.process(rows)
        raise AssertionError("unreachable")

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """`fn(connection)` in one write transaction (SQLite: `BEGIN IMMEDIATE`), committed when
        it returns, rolled back when it raises."""
        if self._inline is not None:
            return await self._sqlite_inline(fn, write=True)
        async with self.write_engine.begin() as conn:
            return await conn.run_sync(fn)

    def _inline_connection(self) -> Connection:
        conn: Connection | None = getattr(self._inline_local, "conn", None)
        if conn is None or conn.closed:
            assert self._inline is not None
            conn = self._inline_local.conn = self._inline.connect()
            with self._inline_lock:
                self._inline_conns.append(conn)
        return conn

    async def _sqlite_inline(self, fn: Callable[[Connection], T], *, write: bool) -> T:
        conn = self._inline_connection()
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        # Writers hold the lock for well under a millisecond (no awaits inside): look again
        # soon, and never sleep long, or a waiting writer falls behind the ones that keep coming.
        pause = 0.0002
        while True:
            started = False
            try:
                if not write:
                    return fn(conn)
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                started = True
                try:
                    result = fn(conn)
                except BaseException:
                    # SQLite may have rolled back already (some errors end the transaction).
                    if conn.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
                        conn.exec_driver_sql("ROLLBACK")
                    raise
                conn.exec_driver_sql("COMMIT")
                return result
            except OperationalError as exc:
                # Busy: retry while the loop serves others. A writer only retries when it could
                # not begin (nothing ran); a reader may retry whenever (it changed nothing).
                if not _sqlite_busy(exc) or (write and started) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.005)

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def migrate(self) -> None:
        """Upgrade the schema to the newest migration. Safe to run from several processes at
        once: PostgreSQL takes an advisory lock, SQLite the write lock."""
        async with self.write_engine.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                )
            await conn.run_sync(_upgrade)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        if self._inline is not None:
            with self._inline_lock:
                conns, self._inline_conns = self._inline_conns, []
            for conn in conns:
                conn.close()
            self._inline.dispose()


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
