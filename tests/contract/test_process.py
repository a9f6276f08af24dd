"""The store as users run it: `vmsbridge s3 serve` in its own process.

Covers the command (credential generation, env fallbacks) and the memory bound: a 1 GiB multipart
upload round-trips byte-identically while the server's peak resident memory (VmHWM) stays under
200 MiB.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for_port

from .conftest import MIB, make_client

VMSBRIDGE = str(Path(sys.executable).with_name("vmsbridge"))


@contextmanager
def serve(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str], list[str]]]:
    """Run `vmsbridge s3 serve`; yield (url, process, the lines it printed before listening)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VMSBRIDGE_S3_")}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [VMSBRIDGE, "s3", "serve", "--data-dir", str(data_dir), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("S3 endpoint:"):
                break
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", proc, lines
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_cli_generates_credentials_once_then_reuses_them(tmp_path: Path) -> None:
    with serve(tmp_path) as (url, _, lines):
        printed = "\n".join(lines)
        saved = json.loads((tmp_path / ".s3-credentials.json").read_text())
        assert saved["access_key_id"].startswith("AKIA") and len(saved["access_key_id"]) == 20
        assert len(saved["secret_access_key"]) == 40
        assert saved["access_key_id"] in printed and saved["secret_access_key"] in printed
        assert url in printed
        mode = stat.S_IMODE((tmp_path / ".s3-credentials.json").stat().st_mode)
        assert mode == 0o600
        s3 = make_client(url, saved["access_key_id"], saved["secret_access_key"])
        s3.create_bucket(Bucket="cli")
    with serve(tmp_path) as (url, _, lines):
        assert saved["secret_access_key"] not in "\n".join(lines)
        s3 = make_client(url, saved["access_key_id"], saved["secret_access_key"])
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["cli"]


def test_cli_credentials_from_environment(tmp_path: Path) -> None:
    env = {
        "VMSBRIDGE_S3_ACCESS_KEY_ID": "AKIAFROMENV000000000",
        "VMSBRIDGE_S3_SECRET_ACCESS_KEY": "s3cr3t",
    }
    with serve(tmp_path, env=env) as (url, _, lines):
        assert "s3cr3t" not in "\n".join(lines)
        s3 = make_client(url, "AKIAFROMENV000000000", "s3cr3t")
        s3.create_bucket(Bucket="env")
        assert not (tmp_path / ".s3-credentials.json").exists()


def test_cli_default_store_is_the_one_vmsbridge_serve_uses(tmp_path: Path) -> None:
    """Without --data-dir: objects in $VMSBRIDGE_DATA_DIR/objects and the credentials file
    `vmsbridge serve` reads ($VMSBRIDGE_DATA_DIR/.s3-credentials.json), not a second one."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMSBRIDGE_")}
    env["VMSBRIDGE_DATA_DIR"] = str(tmp_path / "vd")
    proc = subprocess.Popen(
        [VMSBRIDGE, "s3", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        printed = []
        for line in proc.stdout:
            printed.append(line)
            if line.startswith("S3 endpoint:"):
                break
        wait_for_port(port)
        saved = json.loads((tmp_path / "vd" / ".s3-credentials.json").read_text())
        assert saved["secret_access_key"] in "".join(printed)
        assert not (tmp_path / "vd" / "objects" / ".s3-credentials.json").exists()
        s3 = make_client(
            f"http://127.0.0.1:{port}", saved["access_key_id"], saved["secret_access_key"]
        )
        s3.create_bucket(Bucket="shared")
        assert (tmp_path / "vd" / "objects" / "shared").is_dir()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


PART = 64 * MIB
PARTS = 16  # 1 GiB


def _part_data(n: int) -> bytes:
    # Repeatable and fast (randbytes is ~1 GB/s); only a few parts are in memory at once.
    return random.Random(n).randbytes(PART)


@pytest.mark.slow
def test_one_gib_multipart_round_trip_in_bounded_memory(tmp_path: Path) -> None:
    env = {
        "VMSBRIDGE_S3_ACCESS_KEY_ID": "AKIABIG0000000000000",
        "VMSBRIDGE_S3_SECRET_ACCESS_KEY": "big",
    }
    with serve(tmp_path, env=env) as (url, proc, _):
        s3 = make_client(url, "AKIABIG0000000000000", "big", max_pool_connections=4)
        s3.create_bucket(Bucket="big")
        upload_id = s3.create_multipart_upload(Bucket="big", Key="1gib.bin")["UploadId"]
        md5s: dict[int, bytes] = {}
        sha256s: dict[int, bytes] = {}

        def put(n: int) -> dict[str, object]:
            data = _part_data(n)
            md5s[n] = hashlib.md5(data).digest()
            sha256s[n] = hashlib.sha256(data).digest()
            etag = s3.upload_part(
                Bucket="big", Key="1gib.bin", UploadId=upload_id, PartNumber=n, Body=data
            )["ETag"]
            return {"PartNumber": n, "ETag": etag}

        with ThreadPoolExecutor(3) as pool:
            parts = list(pool.map(put, range(1, PARTS + 1)))
        done = s3.complete_multipart_upload(
            Bucket="big", Key="1gib.bin", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        expected_etag = hashlib.md5(b"".join(md5s[n] for n in range(1, PARTS + 1))).hexdigest()
        assert done["ETag"] == f'"{expected_etag}-{PARTS}"'

        # Stream it back and compare part by part (sha256 of each 64 MiB slice).
        got = s3.get_object(Bucket="big", Key="1gib.bin")
        assert got["ContentLength"] == PART * PARTS
        body = got["Body"]
        for n in range(1, PARTS + 1):
            h = hashlib.sha256()
            remaining = PART
            while remaining:
                chunk = body.read(min(remaining, 4 * MIB))
                assert chunk, "object ended early"
                h.update(chunk)
                remaining -= len(chunk)
            assert h.digest() == sha256s[n], f"part {n} differs"
        assert body.read(1) == b""

        peak = _peak_rss_mib(proc.pid)
        print(f"\nembedded store peak RSS (VmHWM) during the 1 GiB round trip: {peak:.1f} MiB")
        assert peak < 200, f"server peak RSS {peak:.1f} MiB"
    leftovers = [p for p in (tmp_path / ".tmp").iterdir()]
    assert leftovers == []
