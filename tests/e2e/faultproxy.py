"""A fault-injecting TCP proxy for end-to-end tests (asyncio, in a background thread).

Put it between the client and the object store (point the server's presigned-URL host at it
with ``VMSBRIDGE_S3_PUBLIC_URL=proxy.url``; SigV4 signs the Host header, which a TCP proxy passes
through unchanged). It forwards bytes both ways and, by rule:

- ``cut_after(n, times)``: the next `times` connections are closed (FIN) once `n` bytes went up;
- ``reset_after(n, times)``: ... reset (RST) instead;
- ``slow(rate, times=None)``: client-to-store bytes are paced to `rate` bytes/s (every
  connection, or the next `times` ones);
- ``fail_matching(pattern, times=None)``: a connection is reset as soon as the client sends
  `pattern` (e.g. ``b"partNumber=2&"`` for one part of a multipart upload), forever or `times`.

It counts what it forwarded (``bytes_up``, ``bytes_down``), the faults it injected
(``faults``), and keeps each request line it saw (``request_lines``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["FaultProxy"]

_REQUEST_LINE = re.compile(rb"(?:GET|PUT|POST|HEAD|DELETE) [^ \r\n]+ HTTP/1\.[01]")


@dataclass
class _Rule:
    kind: str  # cut | reset | slow | match
    times: int | None  # None: every connection
    after: int = 0
    rate: float = 0.0
    pattern: bytes = b""


@dataclass
class _Conn:
    cut: _Rule | None = None
    slow: _Rule | None = None
    sent: int = 0
    epoch: int = 0
    tail: bytes = b""
    matches: list[_Rule] = field(default_factory=list)


class FaultProxy:
    """``with FaultProxy(upstream_port) as proxy: ... proxy.url ...``"""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.rules: list[_Rule] = []
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.faults: Counter[str] = Counter()
        self.request_lines: list[str] = []
        self._epoch = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        # Every open stream of the proxy's loop, so that shutdown can close them all.
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- rules -----------------------------------------------------------------------------

    def cut_after(self, n: int, times: int = 1) -> None:
        self._add(_Rule("cut", times, after=n))

    def reset_after(self, n: int, times: int = 1) -> None:
        self._add(_Rule("reset", times, after=n))

    def slow(self, rate: float, times: int | None = None) -> None:
        self._add(_Rule("slow", times, rate=rate))

    def fail_matching(self, pattern: bytes, times: int | None = None) -> None:
        self._add(_Rule("match", times, pattern=pattern))

    def clear(self) -> None:
        """Drop every rule (connections already slowed stay slowed)."""
        with self._lock:
            self.rules.clear()

    def reset_counters(self) -> None:
        """Zero the counters; bytes of connections opened before this call are not counted."""
        with self._lock:
            self._epoch += 1
            self.bytes_up = self.bytes_down = self.connections = 0
            self.faults.clear()
            self.request_lines.clear()

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self.rules.append(rule)

    def _take(self, kind: str) -> _Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.kind == kind and (rule.times is None or rule.times > 0):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            # Close everything inside the loop before stopping it: a transport left "closing",
            # or a connect still in flight, would otherwise be garbage-collected later and
            # raise a ResourceWarning in whatever test runs then.
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            with contextlib.suppress(Exception):
                done.result(timeout=15)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
        # Aborted transports report connection_lost on the next iterations of the loop.
        for _ in range(3):
            await asyncio.sleep(0)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    # -- forwarding -------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        conn = _Conn(epoch=self._epoch)
        conn.cut = self._take("cut") or self._take("reset")
        conn.slow = self._take("slow")
        with self._lock:
            conn.matches = [r for r in self.rules if r.kind == "match"]
        self._writers.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _reset(writer)
                return
            self._writers.add(up_writer)
            down = asyncio.ensure_future(self._pump_down(up_reader, writer))
            try:
                await self._pump_up(reader, up_writer, writer, conn)
            finally:
                if conn.cut is None or not writer.is_closing():
                    with contextlib.suppress(Exception):
                        up_writer.write_eof()
                await asyncio.wait({down}, timeout=30)
                down.cancel()
                for w in (writer, up_writer):
                    with contextlib.suppress(Exception):
                        w.close()
                    self._writers.discard(w)
        finally:
            writer.close()  # a no-op when already closing
            self._writers.discard(writer)

    async def _pump_up(
        self,
        reader: asyncio.StreamReader,
        up: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        conn: _Conn,
    ) -> None:
        while True:
            data = await reader.read(64 * 1024)
            if not data:
                return
            window = conn.tail + data
            with self._lock:
                self.request_lines.extend(m.group().decode() for m in _REQUEST_LINE.finditer(data))
            for rule in conn.matches:
                if rule.pattern in window and (rule.times is None or rule.times > 0):
                    if rule.times is not None:
                        rule.times -= 1
                    with self._lock:
                        self.faults["match"] += 1
                    _reset(client)
                    _reset(up)
                    return
            conn.tail = window[-256:]
            if conn.cut is not None and conn.sent + len(data) >= conn.cut.after:
                keep = max(0, conn.cut.after - conn.sent)
                await self._forward(up, data[:keep], conn)
                with self._lock:
                    self.faults[conn.cut.kind] += 1
                if conn.cut.kind == "reset":
                    _reset(client)
                    _reset(up)
                else:
                    client.close()
                    up.close()
                return
            await self._forward(up, data, conn)

    async def _forward(self, up: asyncio.StreamWriter, data: bytes, conn: _Conn) -> None:
        if not data:
            return
        up.write(data)
        await up.drain()
        conn.sent += len(data)
        with self._lock:
            if conn.epoch == self._epoch:
                self.bytes_up += len(data)
        if conn.slow is not None:
            await asyncio.sleep(len(data) / conn.slow.rate)

    async def _pump_down(self, up: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            while data := await up.read(64 * 1024):
                client.write(data)
                await client.drain()
                with self._lock:
                    self.bytes_down += len(data)
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                client.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
