"""Shared end-to-end fixtures: a real `vmsbridge serve` subprocess on loopback.

- ``server`` (session): one server on free ports, temp data dir, an API key made with
  ``vmsbridge keys create --org e2e --json``.
- ``server_factory`` (function): ``server_factory(env={...}, s3_port=..., org=...)`` starts
  another one with extra environment (e.g. ``VMSBRIDGE_PRESIGN_EXPIRES=1`` or
  ``VMSBRIDGE_S3_PUBLIC_URL`` pointing at a `FaultProxy`); stopped after the test.

A `RunningServer` has ``api_url``, ``s3_url``, ``data_dir``, ``api_key``, ``org_id``,
``key_id``, ``env`` (for CLI subprocesses: includes VMSBRIDGE_API_URL/KEY), ``logs()``
(its stdout+stderr so far) and ``metrics()`` (the text of ``/metrics``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port

#: The CLI, run by this interpreter (so the venv's vmsbridge, no wrapper process in between).
VMSBRIDGE = [sys.executable, "-c", "from vmsbridge.cli import main; main()"]


@dataclass
class RunningServer:
    """A `vmsbridge serve` subprocess and what a test needs to talk to it."""

    api_url: str
    s3_url: str
    data_dir: Path
    api_key: str
    org_id: str
    key_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def logs(self) -> str:
        """The server's output so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        """The text of the server's ``/metrics``."""
        with urllib.request.urlopen(f"{self.api_url}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    def create_key(self, org: str) -> dict[str, str]:
        """Another API key (another organisation): ``{key, id, org_id}``."""
        return _create_key(self.data_dir, org, self.env)


def _base_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VMSBRIDGE_") and k not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def _create_key(data_dir: Path, org: str, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [*VMSBRIDGE, "keys", "create", "--org", org, "--json", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"vmsbridge keys create failed: {out.stderr or out.stdout}")
    return dict(json.loads(out.stdout))


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vmsbridge serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"vmsbridge serve not ready after {timeout}s:\n{log.read_text()}")


def start_server(
    base: Path,
    *,
    env: dict[str, str] | None = None,
    s3_port: int | None = None,
    org: str = "e2e",
) -> RunningServer:
    """Start `vmsbridge serve` with a fresh data dir under `base`; returns when /readyz is ok."""
    data_dir = base / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port, s3_port = free_port(), s3_port or free_port()
    full_env = _base_env(env)
    key = _create_key(data_dir, org, full_env)
    log_path = base / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                *VMSBRIDGE,
                "serve",
                "--port",
                str(port),
                "--s3-port",
                str(s3_port),
                "--data-dir",
                str(data_dir),
                "--log-level",
                "warning",
            ],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    api_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(api_url, proc, log_path)
    except BaseException:
        _stop(proc)
        raise
    client_env = dict(full_env, VMSBRIDGE_API_URL=api_url, VMSBRIDGE_API_KEY=key["key"])
    return RunningServer(
        api_url=api_url,
        s3_url=f"http://127.0.0.1:{s3_port}",
        data_dir=data_dir,
        api_key=key["key"],
        org_id=key["org_id"],
        key_id=key["id"],
        process=proc,
        log_path=log_path,
        env=client_env,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One `vmsbridge serve` for the session (default settings)."""
    running = start_server(tmp_path_factory.mktemp("serve"))
    yield running
    _stop(running.process)


@pytest.fixture
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with custom settings: ``server_factory(env={...}, s3_port=...)``."""
    started: list[RunningServer] = []

    def factory(**kwargs: Any) -> RunningServer:
        running = start_server(tmp_path_factory.mktemp("serve"), **kwargs)
        started.append(running)
        return running

    yield factory
    for running in started:
        _stop(running.process)
