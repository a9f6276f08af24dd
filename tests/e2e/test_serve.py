"""`vmsbridge serve` as a real process on loopback, driven like a user would: the CLI for keys
# ruff: noqa: E501  (URLs and command lines read best on one line)
and reaping, plain HTTP for the API and presigned uploads."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port, wait_for_port

VMSBRIDGE = [sys.executable, "-c", "from vmsbridge.cli import main; main()"]
PART = 64 * 1024


class Serve:
    """One `vmsbridge serve` process; output goes to a file (read with `.output()`)."""

    def __init__(self, data_dir: Path, env: dict[str, str], *extra: str) -> None:
        self.data_dir = data_dir
        self.env = env
        self.port = free_port()
        self.s3_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra
        self.log = data_dir.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *VMSBRIDGE,
                    "serve",
                    "--port",
                    str(self.port),
                    "--s3-port",
                    str(self.s3_port),
                    "--data-dir",
                    str(self.data_dir),
                    *self.extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        wait_for_port(self.port, timeout=60)
        deadline = time.monotonic() + 30
        while "vmsbridge API:" not in self.output():
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cli(env: dict[str, str], *args: str) -> str:
    """Run a `vmsbridge` command; return its stdout (fails the test on a non-zero exit)."""
    r = subprocess.run([*VMSBRIDGE, *args], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r.stdout


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("VMSBRIDGE_")}
    e["VMSBRIDGE_S3_MIN_PART_SIZE"] = str(PART)
    e["NO_PROXY"] = "127.0.0.1,localhost"
    yield e


def upload_flow(url: str, key: str, incident_id: str, video: bytes) -> dict[str, Any]:
    """The spec's flow with plain HTTP calls, as an exporter would make them."""
    h = {"x-api-key": key}
    with httpx.Client(base_url=url, headers=h, timeout=60) as api, httpx.Client(timeout=60) as s3:
        created = api.get(
            f"/v1/vms/incidents/{incident_id}/create_multipart_upload",
            params={"file_id": "abc1", "filename": "test.mov"},
        ).json()
        parts = [video[i : i + PART] for i in range(0, len(video), PART)]
        urls = api.post(
            f"/v1/vms/incidents/{incident_id}/upload_urls",
            json={
                "files": {
                    "fileId1": {"part_count": len(parts), **created},
                    "fileId2": {"filename": "myThumbnail.jpg"},
                }
            },
        ).json()["uploads"]
        etags = [
            s3.put(u, content=p).headers["etag"]
            for u, p in zip(urls["fileId1"]["signed_urls"], parts, strict=True)
        ]
        assert s3.put(urls["fileId2"]["signed_urls"], content=b"jpeg").status_code == 200
        done = api.post(
            f"/v1/vms/incidents/{incident_id}/complete_multipart_upload",
            json={**created, "parts": etags},
        )
        assert done.status_code == 200, done.text
        r = api.put(
            f"/v1/vms/incidents/{incident_id}",
            json={
                "vms_incident": {
                    "title": "Hey There!!",
                    "incident_at": "2023-02-02T11:04:12.987Z",
                    "uploaded_videos": [
                        {
                            "id": "good-file-2",
                            "s3_key": created["s3_key"],
                            "s3_thumbnail_key": urls["fileId2"]["s3_key"],
                            "size": len(video),
                            "sha256": hashlib.sha256(video).hexdigest(),
                        }
                    ],
                    "failed_videos": [{"id": "bad-file-2", "errors": ["G64 export failed"]}],
                }
            },
        )
        assert r.status_code == 201, r.text
        return dict(r.json())


def test_serve_keys_upload_restart_reap(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    server = Serve(data, env).start()
    try:
        out = server.output()
        assert "access key id:" in out and "secret access key:" in out
        assert f"http://127.0.0.1:{server.s3_port}" in out
        created = json.loads(
            cli(env, "keys", "create", "--org", "acme", "--json", "--data-dir", str(data))
        )
        assert set(created) == {"key", "id", "org_id"} and created["key"].startswith("vmsb_")
        key = created["key"]
        video = os.urandom(3 * PART + 17)
        incident = upload_flow(server.url, key, "8d1635ed-f747-427c-9b35-d83a08d08ab5", video)
        assert incident["vms_incident"]["uploaded_videos"][0]["size"] == len(video)
        assert httpx.get(f"{server.url}/readyz").json()["status"] == "ok"
        listed = cli(env, "keys", "list", "--data-dir", str(data))
        assert created["id"] in listed and "acme" in listed and key not in listed
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode == 0, server.output()

    # Restart on the same data: same credentials (not printed again), same data.
    again = Serve(data, env).start()
    try:
        assert "secret access key" not in again.output()
        h = {"x-api-key": key}
        r = httpx.get(
            f"{again.url}/v1/vms/incidents/8d1635ed-f747-427c-9b35-d83a08d08ab5", headers=h
        )
        assert r.json() == incident
        dl = httpx.get(
            f"{again.url}/v1/vms/incidents/8d1635ed-f747-427c-9b35-d83a08d08ab5/videos/good-file-2/download_url",
            headers=h,
        ).json()
        assert httpx.get(dl["url"]).content == video

        # A stale multipart upload is reaped in the store and the database.
        stale = httpx.get(
            f"{again.url}/v1/vms/incidents/i2/create_multipart_upload",
            params={"file_id": "f", "filename": "stale.mov"},
            headers=h,
        ).json()
        out = cli(
            env,
            "reap",
            "--older-than",
            "0s",
            "--data-dir",
            str(data),
            "--s3-port",
            str(again.s3_port),
        )
        assert stale["s3_key"] in out and "reaped 1 upload(s)" in out
        r = httpx.get(f"{again.url}/v1/vms/incidents/i2/list_parts", params=stale, headers=h)
        assert r.status_code == 404 and r.json()["code"] == "NoSuchUpload"
        out = cli(
            env,
            "reap",
            "--older-than",
            "24h",
            "--data-dir",
            str(data),
            "--s3-port",
            str(again.s3_port),
        )
        assert "reaped 0 upload(s)" in out

        # Revoking the key locks it out.
        cli(env, "keys", "revoke", created["id"], "--data-dir", str(data))
        r = httpx.get(f"{again.url}/v1/vms/incidents", headers=h)
        assert r.status_code == 401 and r.json()["code"] == "InvalidApiKey"
    finally:
        again.stop()


def test_serve_workers(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    server = Serve(data, env, "--workers", "2").start()
    try:
        key = json.loads(
            cli(env, "keys", "create", "--org", "w", "--json", "--data-dir", str(data))
        )["key"]
        video = os.urandom(PART + 1)
        body = upload_flow(server.url, key, "inc-w", video)
        with httpx.Client(base_url=server.url, headers={"x-api-key": key}) as c:
            for _ in range(20):
                assert c.get("/v1/vms/incidents/inc-w").json() == body
        assert "API workers:    2" in server.output()
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode == 0, server.output()


def test_no_s3_needs_an_endpoint(tmp_path: Path, env: dict[str, str]) -> None:
    r = subprocess.run(
        [*VMSBRIDGE, "serve", "--no-s3", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "VMSBRIDGE_S3_ENDPOINT_URL" in r.stderr


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["serve", "--port", "{busy}", "--s3-port", "{free}"], "--port"),
        (["serve", "--port", "{free}", "--s3-port", "{busy}"], "--s3-port"),
        (["s3", "serve", "--port", "{busy}", "--data-dir", "{data}/objects"], "--port"),
    ],
)
def test_port_in_use_is_one_clear_line(
    tmp_path: Path, env: dict[str, str], command: list[str], flag: str
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        args = [a.format(busy=busy, free=free_port(), data=tmp_path / "data") for a in command]
        r = subprocess.run(
            [
                *VMSBRIDGE,
                *args,
                *(["--data-dir", str(tmp_path / "data")] if args[0] == "serve" else []),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.strip() == f"port {busy} is already in use; pick another with {flag}"
    assert "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "data" / "vmsbridge.db").exists()  # stopped before migrating


def test_serve_on_postgresql(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.helpers import create_pg_database, drop_pg_database, pg_available, pg_required

    if not pg_available():
        if pg_required():
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required (VMSBRIDGE_TEST_REQUIRE_PG=1)")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
    name, url = create_pg_database()
    env = {**env, "VMSBRIDGE_DATABASE_URL": url.replace("postgresql+asyncpg://", "postgresql://")}
    data = tmp_path / "data"
    try:
        server = Serve(data, env).start()
        try:
            assert "postgresql+asyncpg://" in server.output()
            key = json.loads(cli(env, "keys", "create", "--org", "pg", "--json"))["key"]
            body = upload_flow(server.url, key, "inc-pg", os.urandom(2 * PART))
        finally:
            server.stop()
        assert not (data / "vmsbridge.db").exists()  # the metadata went to PostgreSQL
        again = Serve(data, env).start()
        try:
            r = httpx.get(f"{again.url}/v1/vms/incidents/inc-pg", headers={"x-api-key": key})
            assert r.json() == body
        finally:
            again.stop()
    finally:
        drop_pg_database(name)


def test_presigned_urls_are_logged_without_their_query(tmp_path: Path, env: dict[str, str]) -> None:
    """A presigned URL is a bearer credential: the server's log shows which object was
    uploaded, never the signature that would let a log reader upload it again."""
    data = tmp_path / "data"
    server = Serve(data, env).start()
    try:
        key = json.loads(
            cli(env, "keys", "create", "--org", "acme", "--json", "--data-dir", str(data))
        )["key"]
        upload_flow(server.url, key, "inc-log", os.urandom(2 * PART + 1))
    finally:
        server.stop()
    out = server.output()
    assert "/inc-log/abc1_test.mov?[presigned query redacted]" in out
    for secret_part in ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token"):
        assert secret_part not in out
