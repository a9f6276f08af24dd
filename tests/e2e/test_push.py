"""`vmsbridge push` end to end: the real CLI against a real `vmsbridge serve` on loopback, with
files made here (random bytes; a short MP4 encoded with PyAV) and a fault-injecting proxy between
the client and the store."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from vmsbridge.client import Client, NotFoundError

from ..helpers import make_mp4
from .conftest import VMSBRIDGE, RunningServer
from .faultproxy import FaultProxy

MiB = 1024 * 1024


def _random_file(path: Path, size: int, seed: int) -> Path:
    rng = random.Random(seed)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(8 * MiB, left)
            f.write(rng.randbytes(n))
            left -= n
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def _push_cmd(server: RunningServer, state: Path, *args: str) -> list[str]:
    return [*VMSBRIDGE, "push", "--state-dir", str(state), "--json", *args]


def _push(
    server: RunningServer, state: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _push_cmd(server, state, *args),
        env=server.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _downloaded_sha256(server: RunningServer, incident: str, video_id: str) -> tuple[str, int]:
    with Client(server.api_url, server.api_key) as client:
        url = client.download_url(incident, video_id)["url"]
    h, n = hashlib.sha256(), 0
    with httpx.stream("GET", url, timeout=60) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_bytes(1 * MiB):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _videos(body: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {v["id"]: v for v in body["vms_incident"][kind]}


@pytest.fixture
def proxied(server_factory: Callable[..., RunningServer], request: pytest.FixtureRequest) -> Any:
    """A server whose presigned URLs point at a FaultProxy in front of its store."""
    from tests.helpers import free_port

    env = getattr(request, "param", {})
    s3_port = free_port()
    with FaultProxy(s3_port) as proxy:
        running = server_factory(s3_port=s3_port, env={"VMSBRIDGE_S3_PUBLIC_URL": proxy.url, **env})
        yield running, proxy


# -- the round trip -------------------------------------------------------------------------------


@pytest.mark.slow
def test_300mb_multipart_and_two_small_files_round_trip(
    server: RunningServer, tmp_path: Path
) -> None:
    big = _random_file(tmp_path / "camera-1.bin", 300 * 1000 * 1000, seed=1)
    small = _random_file(tmp_path / "camera-2.bin", 3 * MiB + 7, seed=2)
    clip = make_mp4(tmp_path / "clip.mp4")
    out = _push(
        server,
        tmp_path / "state",
        "--incident-id",
        "e2e-roundtrip",
        "--title",
        "Round trip",
        "--incident-at",
        "2024-02-02T11:04:12.987Z",
        "--latitude",
        "45.5",
        "--longitude",
        "-73.6",
        "--camera-name",
        "Lobby",
        str(big),
        str(small),
        str(clip),
    )
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    incident = body["vms_incident"]
    assert incident["title"] == "Round trip" and incident["latitude"] == 45.5
    assert incident["failed_videos"] == []
    uploaded = _videos(body, "uploaded_videos")
    assert set(uploaded) == {"camera-1", "camera-2", "clip"}
    for path, vid in ((big, "camera-1"), (small, "camera-2"), (clip, "clip")):
        digest = _sha256(path)
        assert uploaded[vid]["sha256"] == digest
        assert uploaded[vid]["size"] == path.stat().st_size
        assert uploaded[vid]["camera_name"] == "Lobby"
        assert _downloaded_sha256(server, "e2e-roundtrip", vid) == (digest, path.stat().st_size)
    assert uploaded["clip"]["s3_thumbnail_key"].endswith(".jpg")
    assert uploaded["camera-1"]["s3_thumbnail_key"] is None  # random bytes: no thumbnail
    assert "36 parts" in out.stderr  # 300 MB in 8 MiB parts: multipart, not one PUT

    # the same push again uploads nothing
    again = _push(server, tmp_path / "state", "--incident-id", "e2e-roundtrip", str(big))
    assert again.returncode == 0, again.stderr
    assert "0 B sent" in again.stderr or "already uploaded" in again.stderr


# -- resume after kill -9 -------------------------------------------------------------------------


def _journal_parts(state: Path) -> int:
    path = state / "journal.sqlite3"
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT count(*) FROM parts").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_kill_9_then_the_same_command_resumes(proxied: Any, tmp_path: Path) -> None:
    server, proxy = proxied
    size = 120 * MiB  # 15 parts of 8 MiB
    video = _random_file(tmp_path / "long.bin", size, seed=3)
    state = tmp_path / "state"
    args = ("--incident-id", "e2e-resume", "--concurrency", "2", str(video))
    proxy.slow(40 * MiB)  # about 3 s for the file: time to kill it half way

    first = subprocess.Popen(
        _push_cmd(server, state, *args),
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _journal_parts(state) < 4:
        assert first.poll() is None, "the push ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert first.returncode == -signal.SIGKILL
    journaled = _journal_parts(state)
    assert 4 <= journaled < 15
    sent_first = proxy.bytes_up

    proxy.clear()
    proxy.reset_counters()
    second = _push(server, state, *args)
    assert second.returncode == 0, second.stderr
    sent_second = proxy.bytes_up
    assert "already stored" in second.stderr  # it resumed, not restarted
    # parts recorded before the kill were not sent again
    assert sent_second <= size - journaled * 8 * MiB + 64 * 1024
    assert sent_second < size
    uploaded = _videos(json.loads(second.stdout), "uploaded_videos")
    assert uploaded["long"]["sha256"] == _sha256(video)
    assert _downloaded_sha256(server, "e2e-resume", "long") == (_sha256(video), size)
    print(f"\nresume: first run sent {sent_first} bytes, second {sent_second} of {size}")


# -- faults between the client and the store ------------------------------------------------------


def test_cut_reset_and_slow_connections_are_survived(proxied: Any, tmp_path: Path) -> None:
    server, proxy = proxied
    big = _random_file(tmp_path / "big.bin", 40 * MiB, seed=4)
    small = _random_file(tmp_path / "small.bin", 2 * MiB, seed=5)
    proxy.cut_after(MiB + MiB // 2, times=2)  # below the small file too: every connection trips
    proxy.reset_after(1 * MiB, times=2)
    proxy.slow(30 * MiB, times=2)
    out = _push(
        server,
        tmp_path / "state",
        "--incident-id",
        "e2e-faults",
        "--multipart-threshold",
        "16MiB",
        "--no-thumbnails",
        str(big),
        str(small),
    )
    assert out.returncode == 0, out.stderr
    assert proxy.faults["cut"] == 2 and proxy.faults["reset"] == 2
    assert "retry" in out.stderr
    uploaded = _videos(json.loads(out.stdout), "uploaded_videos")
    for path, vid in ((big, "big"), (small, "small")):
        assert uploaded[vid]["sha256"] == _sha256(path)
        assert _downloaded_sha256(server, "e2e-faults", vid)[0] == _sha256(path)


@pytest.mark.parametrize("proxied", [{"VMSBRIDGE_PRESIGN_EXPIRES": "1"}], indirect=True)
def test_urls_that_expire_during_the_upload(proxied: Any, tmp_path: Path) -> None:
    server, proxy = proxied
    video = _random_file(tmp_path / "v.bin", 48 * MiB, seed=6)
    proxy.slow(16 * MiB)  # 3 s at least: every URL fetched at the start has expired by the end
    out = _push(
        server,
        tmp_path / "state",
        "--incident-id",
        "e2e-expiry",
        "--multipart-threshold",
        "16MiB",
        "--concurrency",
        "2",
        str(video),
    )
    assert out.returncode == 0, out.stderr
    assert "URLs expired" in out.stderr  # fresh URLs were fetched mid-upload
    assert _downloaded_sha256(server, "e2e-expiry", "v")[0] == _sha256(video)


# -- failures are reported, uploads aborted -------------------------------------------------------


def test_missing_file_and_a_part_the_store_keeps_failing(proxied: Any, tmp_path: Path) -> None:
    server, proxy = proxied
    big = _random_file(tmp_path / "big.bin", 30 * MiB, seed=7)
    ok = _random_file(tmp_path / "ok.bin", 1000, seed=8)
    proxy.fail_matching(b"partNumber=2&")
    out = _push(
        server,
        tmp_path / "state",
        "--incident-id",
        "e2e-failures",
        "--multipart-threshold",
        "10MiB",
        "--retries",
        "2",
        str(big),
        str(tmp_path / "missing.mp4"),
        str(ok),
    )
    assert out.returncode == 1, out.stderr
    body = json.loads(out.stdout)
    failed = _videos(body, "failed_videos")
    assert set(failed) == {"big", "missing"}
    assert "part 2/" in failed["big"]["upload_errors"][0]
    assert "No such file" in failed["missing"]["upload_errors"][0]
    assert set(_videos(body, "uploaded_videos")) == {"ok"}
    assert proxy.faults["match"] == 3  # the first try and 2 retries
    # the multipart upload was aborted: the server no longer knows it
    uploads = set()
    for line in proxy.request_lines:
        target = urlsplit(line.split()[1])
        query = parse_qs(target.query)
        if "uploadId" in query:
            key = unquote(target.path).split("/", 2)[2]  # /bucket/key
            uploads.add((key, query["uploadId"][0]))
    assert len(uploads) == 1
    ((s3_key, upload_id),) = uploads
    with Client(server.api_url, server.api_key) as client, pytest.raises(NotFoundError):
        client.list_parts("e2e-failures", s3_key, upload_id)
    # and nothing was left in the journal to resume
    db = sqlite3.connect(tmp_path / "state" / "journal.sqlite3")
    assert db.execute("SELECT count(*) FROM uploads WHERE upload_id IS NOT NULL").fetchone() == (0,)
    db.close()
    assert os.path.exists(ok)
