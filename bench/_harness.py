"""Shared benchmark plumbing: a real `vmsbridge serve` on loopback, API keys, child-process
resource accounting, and side-by-side tables.

Benchmarks measure; they never assert. Each prints our figure, the peer's, and the ratio.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

VMSBRIDGE = str(Path(sys.executable).with_name("vmsbridge"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


@dataclass
class Server:
    api_url: str
    s3_url: str
    data_dir: Path
    api_key: str
    access_key_id: str
    secret_access_key: str
    proc: subprocess.Popen[bytes]


@contextmanager
def running_server(
    *, workers: int = 1, env: dict[str, str] | None = None, data_dir: Path | None = None
) -> Iterator[Server]:
    """Start `vmsbridge serve` (API + embedded store) on free ports; yield its coordinates."""
    own_dir = data_dir is None
    data = Path(tempfile.mkdtemp(prefix="vmsb-bench-")) if data_dir is None else data_dir
    api_port, s3_port = free_port(), free_port()
    full_env = {**os.environ, **(env or {}), "VMSBRIDGE_DATA_DIR": str(data)}
    cmd = [VMSBRIDGE, "serve", "--port", str(api_port), "--s3-port", str(s3_port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    log = open(data.parent / f"{data.name}.log", "wb")
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(api_port)
        wait_for_port(s3_port)
        key = json.loads(
            subprocess.run(
                [VMSBRIDGE, "keys", "create", "--org", "bench", "--json"],
                env=full_env,
                check=True,
                capture_output=True,
            ).stdout
        )
        creds = json.loads((data / ".s3-credentials.json").read_text())
        yield Server(
            api_url=f"http://127.0.0.1:{api_port}",
            s3_url=f"http://127.0.0.1:{s3_port}",
            data_dir=data,
            api_key=key["key"],
            access_key_id=creds["access_key_id"],
            secret_access_key=creds["secret_access_key"],
            proc=proc,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if own_dir:
            shutil.rmtree(data, ignore_errors=True)
            Path(log.name).unlink(missing_ok=True)


@dataclass
class ChildRun:
    wall: float
    cpu: float  # user + system seconds of the child
    max_rss_mib: float
    returncode: int


def run_measured(cmd: Sequence[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run a command; return its wall time, CPU seconds and peak RSS (from wait4's rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace")[-2000:])
    return ChildRun(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss_mib=usage.ru_maxrss / 1024,
        returncode=proc.returncode,
    )


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def machine_line() -> str:
    return (
        f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a GitHub-flavoured markdown table (pastes straight into bench/RESULTS.md)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(_fmt(v) for v in row) + " |")
    sys.stdout.flush()


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        if v >= 1:
            return f"{v:.2f}"
        return f"{v:.3f}"
    return str(v)


def make_random_file(path: Path, size: int, seed: int = 1) -> Path:
    """Write `size` pseudo-random bytes (fast, repeatable, incompressible) unless present."""
    if path.exists() and path.stat().st_size == size:
        return path
    import random

    rng = random.Random(seed)
    chunk = 8 * 1024 * 1024
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(rng.randbytes(n))
            left -= n
    return path
