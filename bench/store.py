"""Ingest throughput of the embedded S3 store vs. a raw socket receiver and moto's server.

Each server runs in its own process on loopback. N parallel streams each PUT 64 MiB at once:
UploadParts through presigned URLs for our store and moto (what an exporter does: unsigned
payload, no SHA-256 of the body on either side), a plain PUT for the raw receivers. A raw
receiver is the floor of the work any such server must do: read the HTTP body, MD5 it, write it
to a file and fsync it. Two of them, both in Python like the store:

- "raw threaded" (the upper bound the ratio is taken against): a thread per connection that
  `recv_into`s a reused 1 MiB buffer, MD5s it and writes it; every step releases the GIL, so
  streams use both cores. Nothing an HTTP server in Python can do is cheaper.
- "raw naive": one asyncio loop doing the MD5, the write and the fsync itself (blocking the
  loop); shown for reference only: a single core caps it, so it is no upper bound.

Our store does the same work plus HTTP parsing, SigV4, a temp-file rename and metadata.
Median of 3 runs per cell; aggregate MB/s = total bytes / wall time.

    python bench/store.py [--runs 3] [--streams 1,4,8] [--size-mib 64]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import free_port, wait_for_port

VMSBRIDGE = str(Path(sys.executable).with_name("vmsbridge"))
KEY_ID, SECRET = "AKIABENCH00000000000", "bench-secret"


# --- the raw receiver (runs as `python bench/store.py --raw-server PORT DIR`) ------------------


async def _raw_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, d: Path) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            md5 = hashlib.md5()
            path = d / f"raw-{os.getpid()}-{id(writer)}-{time.monotonic_ns()}"
            # Blocking file I/O on the loop on purpose: this is the naive baseline.
            with open(path, "wb", buffering=0) as f:  # noqa: ASYNC230
                remaining = length
                while remaining:
                    chunk = await reader.read(min(remaining, 1 << 20))
                    if not chunk:
                        return
                    md5.update(chunk)
                    f.write(chunk)
                    remaining -= len(chunk)
                os.fsync(f.fileno())
            path.unlink()
            etag = md5.hexdigest().encode()
            writer.write(b'HTTP/1.1 200 OK\r\nETag: "' + etag + b'"\r\nContent-Length: 0\r\n\r\n')
            await writer.drain()
    finally:
        writer.close()


def raw_server(port: int, d: Path) -> None:
    """A minimal HTTP PUT receiver: body -> MD5 + file + fsync -> 200."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _raw_handle(r, w, d), "127.0.0.1", port, limit=1 << 20
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def raw_threaded_server(port: int, d: Path) -> None:
    """The best-case receiver: per connection, one thread `recv_into`s reused 1 MiB buffers
    while a second MD5s and writes the previous one (as our store overlaps receiving with
    hashing); fsync at the end. Every step releases the GIL."""
    import queue
    import socketserver

    buf_size = 1 << 20

    def sink(
        jobs: queue.Queue[tuple[memoryview, bytearray | None] | None],
        free: queue.Queue[bytearray],
        fd: int,
    ) -> str:
        md5 = hashlib.md5()
        while (job := jobs.get()) is not None:
            view, buf = job
            md5.update(view)
            while view:
                view = view[os.write(fd, view) :]
            if buf is not None:
                free.put(buf)
        os.fsync(fd)
        return md5.hexdigest()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            from concurrent.futures import ThreadPoolExecutor

            sock: socket.socket = self.request
            free: queue.Queue[bytearray] = queue.Queue()
            for _ in range(3):
                free.put(bytearray(buf_size))
            pending = b""
            with ThreadPoolExecutor(1) as worker:
                while True:
                    while b"\r\n\r\n" not in pending:
                        more = sock.recv(65536)
                        if not more:
                            return
                        pending += more
                    head, _, pending = pending.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    path = d / f"rawt-{threading.get_ident()}-{time.monotonic_ns()}"
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    jobs: queue.Queue[tuple[memoryview, bytearray | None] | None]
                    jobs = queue.Queue()
                    done = worker.submit(sink, jobs, free, fd)
                    try:
                        first, pending = pending[:length], pending[length:]
                        remaining = length - len(first)
                        if first:
                            jobs.put((memoryview(first), None))
                        while remaining:
                            buf = free.get()
                            filled = 0
                            want = min(remaining, buf_size)
                            view = memoryview(buf)
                            while filled < want:
                                n = sock.recv_into(view[filled:want])
                                if not n:
                                    return
                                filled += n
                            jobs.put((view[:filled], buf))
                            remaining -= filled
                    finally:
                        jobs.put(None)
                        etag = done.result().encode()
                        os.close(fd)
                        path.unlink()
                    sock.sendall(
                        b'HTTP/1.1 200 OK\r\nETag: "' + etag + b'"\r\nContent-Length: 0\r\n\r\n'
                    )

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    with Server(("127.0.0.1", port), Handler) as server:
        server.serve_forever()


def granian_app() -> object:
    """Factory for `--asgi-server granian`: the store's app, configured from the environment."""
    from vmsbridge.s3 import create_s3_app

    data = Path(os.environ["BENCH_STORE_DIR"])
    return create_s3_app(data, {KEY_ID: SECRET})


def start_ours(server: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    """Our store: `vmsbridge s3 serve` (uvicorn + httptools + uvloop), or the same app under
    granian (not a dependency: `pip install granian` to compare)."""
    if server == "uvicorn":
        cmd = [
            VMSBRIDGE, "s3", "serve", "--data-dir", str(data_dir), "--port", str(port),
            "--access-key-id", KEY_ID, "--secret-access-key", SECRET,
        ]  # fmt: skip
        return start(cmd, port)
    env = {**os.environ, "BENCH_STORE_DIR": str(data_dir)}
    cmd = [
        sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--loop", "uvloop",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--working-dir", str(Path(__file__).parent), "store:granian_app",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return proc


# --- the client ---------------------------------------------------------------------------


def put_all(urls: list[str], data: bytes) -> float:
    """PUT `data` to every URL at once (one thread and connection each); return wall seconds."""
    errors: list[str] = []
    barrier = threading.Barrier(len(urls) + 1)

    def one(url: str) -> None:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
        conn.connect()
        barrier.wait()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("PUT", path, body=data, headers={"Content-Length": str(len(data))})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            errors.append(f"{resp.status} {body[:300]!r}")
        conn.close()

    threads = [threading.Thread(target=one, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(errors[0])
    return elapsed


def s3_target(url: str, key_id: str, secret: str) -> Callable[[int], list[str]]:
    """Presigned UploadPart URLs for `n` parts of a fresh multipart upload."""
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    s3.create_bucket(Bucket="bench")
    state: dict[str, str] = {}

    def urls(n: int) -> list[str]:
        if "upload" in state:  # free the previous run's parts
            s3.abort_multipart_upload(Bucket="bench", Key="obj", UploadId=state["upload"])
        state["upload"] = s3.create_multipart_upload(Bucket="bench", Key="obj")["UploadId"]
        return [
            s3.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": "bench",
                    "Key": "obj",
                    "UploadId": state["upload"],
                    "PartNumber": i + 1,
                },
                ExpiresIn=3600,
            )
            for i in range(n)
        ]

    return urls


def start(cmd: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--no-moto", action="store_true")
    parser.add_argument(
        "--asgi-server",
        choices=["uvicorn", "granian"],
        default="uvicorn",
        help="server for our store (granian: pip install granian first)",
    )
    parser.add_argument("--raw-server", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--raw-threaded", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_server:
        raw_server(int(args.raw_server[0]), Path(args.raw_server[1]))
        return
    if args.raw_threaded:
        raw_threaded_server(int(args.raw_threaded[0]), Path(args.raw_threaded[1]))
        return

    streams = [int(s) for s in args.streams.split(",")]
    size = args.size_mib * 1024 * 1024
    data = random.Random(0).randbytes(size)
    work = Path(tempfile.mkdtemp(prefix="vmsbridge-bench-store-", dir=os.environ.get("TMPDIR")))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ours_port, raw_port, moto_port = free_port(), free_port(), free_port()
        rawt_port = free_port()
        procs.append(start_ours(args.asgi_server, ours_port, work / "ours"))
        (work / "raw").mkdir()
        procs.append(
            start(
                [sys.executable, __file__, "--raw-server", str(raw_port), str(work / "raw")],
                raw_port,
            )
        )
        procs.append(
            start(
                [sys.executable, __file__, "--raw-threaded", str(rawt_port), str(work / "raw")],
                rawt_port,
            )
        )
        targets: dict[str, Callable[[int], list[str]]] = {
            "ours": s3_target(f"http://127.0.0.1:{ours_port}", KEY_ID, SECRET),
            "raw threaded": lambda n: [f"http://127.0.0.1:{rawt_port}/obj{i}" for i in range(n)],
            "raw naive": lambda n: [f"http://127.0.0.1:{raw_port}/obj{i}" for i in range(n)],
        }
        if not args.no_moto:
            procs.append(
                start(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                    moto_port,
                )
            )
            targets["moto"] = s3_target(f"http://127.0.0.1:{moto_port}", "testing", "testing")

        print(
            f"{os.cpu_count()} CPUs; {args.size_mib} MiB per stream; median of {args.runs} runs; "
            f"our store under {args.asgi_server}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        )
        header = (
            "streams", "ours MB/s", "raw threaded MB/s", "raw naive MB/s", "moto MB/s",
            "ours ÷ raw threaded", "ours ÷ moto",
        )  # fmt: skip
        print("\n| " + " | ".join(header) + " |")
        print("|" + "|".join("---:" for _ in header) + "|")
        for n in streams:
            result: dict[str, float] = {}
            for name, target in targets.items():
                rates = []
                for _ in range(args.runs):
                    urls = target(n)
                    rates.append(n * size / put_all(urls, data) / 1e6)
                result[name] = statistics.median(rates)
            moto = f"{result['moto']:.0f}" if "moto" in result else "-"
            vs_moto = f"{result['ours'] / result['moto']:.2f}" if "moto" in result else "-"
            cells = [
                str(n),
                f"{result['ours']:.0f}",
                f"{result['raw threaded']:.0f}",
                f"{result['raw naive']:.0f}",
                moto,
                f"{result['ours'] / result['raw threaded']:.2f}",
                vs_moto,
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
