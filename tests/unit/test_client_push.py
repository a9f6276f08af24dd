"""`push_incident` and the API methods against an in-memory fake of the API and the store,
plugged in through ``transport=httpx.MockTransport``: multipart, retries, URL refresh, ETag
checks, resume from the journal, failure reporting, thumbnails."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest

from vmsbridge.client import (
    APIError,
    AsyncClient,
    Client,
    NotFoundError,
    ProgressEvent,
    TransportError,
    VideoFile,
)
from vmsbridge.client._parts import CHUNK_SIZE, MiB, multipart_etag

from ..helpers import make_mp4

API = "http://api.test"
STORE = "http://store.test/bucket"


class Crash(BaseException):
    """Stands for kill -9: not an Exception, so nothing in the SDK handles it."""


class FakeVMS(httpx.AsyncBaseTransport):
    """Just enough of the API and an S3 store, in memory, with fault hooks. It is its own
    transport (not a MockTransport, which reads request bodies whole) so that it sees the
    chunks a request body is streamed in."""

    def __init__(self) -> None:
        self.key = "secret"
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}  # upload_id -> {s3_key, parts}
        self.incidents: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.puts: list[tuple[str, int | None]] = []  # (s3_key, part number) per store PUT
        self.bytes_received = 0
        self.max_chunk = 0
        # fault hooks: part number (0 = single PUT) -> list of statuses to answer, in turn
        self.part_faults: dict[int, list[int]] = {}
        self.always_fail_part: int | None = None
        self.bad_etag_parts: list[int] = []
        self.expire_next = 0
        self.crash_after_puts: int | None = None
        self.api_faults: dict[str, list[int]] = {}
        self.connect_errors: dict[str, int] = {}
        self._n = 0

    def transport(self) -> httpx.AsyncBaseTransport:
        return self

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "store.test":
            return await self.store(request)
        await request.aread()
        return await self.api(request)

    # -- the store --------------------------------------------------------------------------

    async def store(self, request: httpx.Request) -> httpx.Response:
        assert "x-api-key" not in request.headers  # the API key never goes to the store
        q = parse_qs(request.url.query.decode())
        key = request.url.path.removeprefix("/bucket/")
        number = int(q["partNumber"][0]) if "partNumber" in q else 0
        if request.method == "GET":
            return httpx.Response(200, content=self.objects[key])
        if self.crash_after_puts is not None and len(self.puts) >= self.crash_after_puts:
            raise Crash
        data = b""
        async for chunk in request.stream:  # type: ignore[union-attr]
            self.max_chunk = max(self.max_chunk, len(chunk))
            data += chunk
        self.bytes_received += len(data)
        self.puts.append((key, number or None))
        assert int(request.headers["content-length"]) == len(data)
        if self.expire_next:
            self.expire_next -= 1
            return _s3_error(403, "AccessDenied", "Request has expired")
        if number == self.always_fail_part:
            return _s3_error(500, "InternalError", "disk on fire")
        if self.part_faults.get(number):
            status = self.part_faults[number].pop(0)
            headers = {"retry-after": "3"} if status in (429, 503) else {}
            return _s3_error(status, "SlowDown" if status == 503 else "Bad", "nope", headers)
        md5 = hashlib.md5(data).hexdigest()
        etag = md5
        if number in self.bad_etag_parts:
            self.bad_etag_parts.remove(number)
            etag = "0" * 32
        if number:
            self.uploads[q["uploadId"][0]]["parts"][number] = (md5, data)
        else:
            self.objects[key] = data
        return httpx.Response(200, headers={"etag": f'"{etag}"'})

    # -- the API ----------------------------------------------------------------------------

    async def api(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1/vms/incidents")
        op = path.rsplit("/", 1)[-1] if path.count("/") > 1 else "incident"
        self.calls[op] += 1
        if self.connect_errors.get(op):
            self.connect_errors[op] -= 1
            raise httpx.ConnectError("connection refused", request=request)
        if self.api_faults.get(op):
            return _api_error(self.api_faults[op].pop(0), "Unavailable", "try later")
        if request.headers.get("x-api-key") != self.key:
            return _api_error(401, "Unauthorized", "unknown API key")
        q = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        body = json.loads(request.content) if request.content else None
        incident = path.strip("/").split("/")[0]
        if op == "create_multipart_upload":
            self._n += 1
            upload_id = f"up{self._n}"
            key = f"vms/org/key/{incident}/{q['file_id']}_{q['filename']}"
            self.uploads[upload_id] = {"s3_key": key, "parts": {}}
            return httpx.Response(200, json={"s3_key": key, "upload_id": upload_id})
        if op == "upload_urls":
            out = {}
            for file_id, spec in body["files"].items():
                if "upload_id" in spec:
                    if spec["upload_id"] not in self.uploads:
                        return _api_error(404, "NoSuchUpload", "no such upload")
                    key = spec["s3_key"]
                    urls: Any = [
                        self._url(key, partNumber=n, uploadId=spec["upload_id"])
                        for n in range(1, spec["part_count"] + 1)
                    ]
                else:
                    key = f"vms/org/key/{incident}/{file_id}_{spec['filename']}"
                    urls = self._url(key)
                out[file_id] = {"s3_key": key, "signed_urls": urls}
            return httpx.Response(
                200, json={"incident_id": incident, "max_upload_size_mb": -1, "uploads": out}
            )
        if op in ("list_parts", "abort_multipart_upload", "complete_multipart_upload"):
            args = body if op == "complete_multipart_upload" else q
            upload = self.uploads.get(args["upload_id"])
            if upload is None:
                if op == "abort_multipart_upload":
                    return httpx.Response(200, json={"s3_key": args["s3_key"]})
                return _api_error(404, "NoSuchUpload", "no such upload")
            if op == "list_parts":
                parts = [
                    {"part_number": n, "etag": f'"{md5}"', "size": len(data)}
                    for n, (md5, data) in sorted(upload["parts"].items())
                ]
                return httpx.Response(200, json={"s3_key": upload["s3_key"], "parts": parts})
            del self.uploads[args["upload_id"]]
            if op == "abort_multipart_upload":
                return httpx.Response(200, json={"s3_key": upload["s3_key"]})
            stored = upload["parts"]
            assert [p.strip('"') for p in body["parts"]] == [stored[n][0] for n in sorted(stored)]
            data = b"".join(stored[n][1] for n in sorted(stored))
            self.objects[upload["s3_key"]] = data
            etag = multipart_etag([stored[n][0] for n in sorted(stored)])
            return httpx.Response(
                200,
                json={
                    "s3_key": upload["s3_key"],
                    "upload_id": args["upload_id"],
                    "etag": f'"{etag}"',
                    "size": len(data),
                },
            )
        if op == "incident" and request.method == "GET":
            if incident not in self.incidents:
                return _api_error(404, "NoSuchIncident", "no such incident")
            return httpx.Response(200, json={"vms_incident": self.incidents[incident]})
        if op == "incident" and request.method == "PUT":
            inner = body.get("vms_incident", body)
            for v in inner.get("uploaded_videos", []):
                if v["s3_key"] not in self.objects:
                    return _api_error(400, "NoSuchKey", f"{v['s3_key']} is not stored")
            created = incident not in self.incidents
            self.incidents[incident] = {"id": incident, **inner}
            return httpx.Response(
                201 if created else 200, json={"vms_incident": self.incidents[incident]}
            )
        return _api_error(404, "NotFound", "no route")

    def _url(self, key: str, **params: Any) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        query = urlencode({**params, "X-Amz-Date": stamp, "X-Amz-Expires": 3600})
        return f"{STORE}/{key}?{query}"


def _s3_error(status: int, code: str, message: str, headers: Any = None) -> httpx.Response:
    xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return httpx.Response(status, content=xml.encode(), headers=headers or {})


def _api_error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"status": status, "message": message, "code": code})


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakeVMS:
    return FakeVMS()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _file(tmp_path: Path, name: str, size: int, seed: int = 0) -> Path:
    path = tmp_path / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def _client(fake: FakeVMS, state: Path, **options: Any) -> AsyncClient:
    defaults: dict[str, Any] = {
        "transport": fake.transport(),
        "multipart_threshold": 10 * MiB,
        "min_part_size": 5 * MiB,
        "concurrency": 4,
        "retries": 3,
        "state_dir": state,
    }
    client = AsyncClient(API, fake.key, **(defaults | options))
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client._sleep = no_sleep
    client.sleeps = sleeps  # type: ignore[attr-defined]
    return client


def _key_of(fake: FakeVMS, incident: str, video_id: str) -> str:
    (video,) = [v for v in fake.incidents[incident]["uploaded_videos"] if v["id"] == video_id]
    return str(video["s3_key"])


# -- the happy path -------------------------------------------------------------------------------


async def test_push_small_and_multipart_files(fake: FakeVMS, state: Path, tmp_path: Path) -> None:
    big = _file(tmp_path, "big cam.mp4", 21 * MiB + 5, seed=1)
    small = _file(tmp_path, "small.mov", 1000, seed=2)
    events: list[ProgressEvent] = []
    async with _client(fake, state) as client:
        result = await client.push_incident(
            {"id": "inc-1", "title": "Door"},
            [VideoFile(big, camera_name="cam 1"), small],
            progress=events.append,
            thumbnails=False,
        )
    assert result.ok and result.created
    assert [v.id for v in result.uploaded] == ["big-cam", "small"]
    stored = fake.incidents["inc-1"]
    assert stored["title"] == "Door" and stored["failed_videos"] == []
    for path, vid in ((big, "big-cam"), (small, "small")):
        data = path.read_bytes()
        assert fake.objects[_key_of(fake, "inc-1", vid)] == data
        (entry,) = [v for v in stored["uploaded_videos"] if v["id"] == vid]
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert stored["uploaded_videos"][0]["camera_name"] == "cam 1"
    # 5 parts of 5 MiB (the last one small), one single PUT; nothing left open
    assert Counter(n is not None for _, n in fake.puts) == {True: 5, False: 1}
    assert fake.uploads == {}
    # bodies were streamed in bounded chunks, never a whole part at once
    assert 0 < fake.max_chunk <= CHUNK_SIZE
    # progress adds up to the bytes of each file
    for vid, path in (("big-cam", big), ("small", small)):
        sent = sum(e.advance for e in events if e.kind == "advance" and e.video_id == vid)
        assert sent == path.stat().st_size
        assert any(e.kind == "done" and e.video_id == vid for e in events)
    assert result.bytes_sent == big.stat().st_size + small.stat().st_size


def test_sync_facade(fake: FakeVMS, state: Path, tmp_path: Path) -> None:
    video = _file(tmp_path, "a.mp4", 100)
    with Client(API, fake.key, transport=fake.transport(), state_dir=state) as client:
        result = client.push_incident({"id": "inc-s"}, [video], thumbnails=False)
        assert result.ok
        assert client.get_incident("inc-s")["uploaded_videos"][0]["id"] == "a"
        with pytest.raises(NotFoundError) as info:
            client.get_incident("nope")
        assert (info.value.status, info.value.code) == (404, "NoSuchIncident")


# -- retries and integrity ------------------------------------------------------------------------


async def test_5xx_and_429_are_retried_honouring_retry_after(
    fake: FakeVMS, state: Path, tmp_path: Path
) -> None:
    big = _file(tmp_path, "v.mp4", 12 * MiB)
    fake.part_faults = {2: [503, 429]}
    async with _client(fake, state) as client:
        result = await client.push_incident({"id": "i"}, [big], thumbnails=False)
        sleeps = client.sleeps  # type: ignore[attr-defined]
    assert result.ok
    assert fake.objects[_key_of(fake, "i", "v")] == big.read_bytes()
    assert len(sleeps) == 2 and min(sleeps) >= 3.0  # Retry-After: 3 beats the short backoff
    assert [n for _, n in fake.puts].count(2) == 3


async def test_etag_mismatch_resends_the_part(fake: FakeVMS, state: Path, tmp_path: Path) -> None:
    big = _file(tmp_path, "v.mp4", 12 * MiB)
    fake.bad_etag_parts = [1]
    async with _client(fake, state) as client:
        result = await client.push_incident({"id": "i"}, [big], thumbnails=False)
    assert result.ok
    assert [n for _, n in fake.puts].count(1) == 2
    assert fake.objects[_key_of(fake, "i", "v")] == big.read_bytes()


async def test_expired_urls_are_refreshed(fake: FakeVMS, state: Path, tmp_path: Path) -> None:
    big = _file(tmp_path, "v.mp4", 12 * MiB)
    fake.expire_next = 2
    async with _client(fake, state, concurrency=1) as client:
        result = await client.push_incident({"id": "i"}, [big], thumbnails=False)
        assert client.sleeps == []  # type: ignore[attr-defined]  # no backoff: fresh URLs at once
    assert result.ok
    assert fake.calls["upload_urls"] == 3
    assert fake.objects[_key_of(fake, "i", "v")] == big.read_bytes()


async def test_a_part_that_keeps_failing_fails_its_file_only(
    fake: FakeVMS, state: Path, tmp_path: Path
) -> None:
    big = _file(tmp_path, "big.mp4", 16 * MiB)
    small = _file(tmp_path, "small.mp4", 10)
    fake.always_fail_part = 3
    async with _client(fake, state, retries=2) as client:
        result = await client.push_incident({"id": "i"}, [big, small], thumbnails=False)
    assert not result.ok
    assert [v.id for v in result.uploaded] == ["small"]
    (failed,) = result.failed
    assert failed.id == "big"
    assert "part 3/4" in failed.errors[0] and "gave up after 3 attempts" in failed.errors[0]
    assert fake.calls["abort_multipart_upload"] == 1 and fake.uploads == {}  # no orphan
    stored = fake.incidents["i"]
    assert stored["failed_videos"][0]["id"] == "big"
    assert "disk on fire" in stored["failed_videos"][0]["upload_errors"][0]


async def test_a_4xx_from_the_store_fails_at_once(
    fake: FakeVMS, state: Path, tmp_path: Path
) -> None:
    video = _file(tmp_path, "v.mp4", 100)
    fake.part_faults = {0: [400]}
    async with _client(fake, state) as client:
        result = await client.push_incident({"id": "i"}, [video], thumbnails=False)
    assert [f.id for f in result.failed] == ["v"]
    assert "400" in result.failed[0].errors[0]
    assert len(fake.puts) == 1


async def test_missing_and_unreadable_files_are_reported(
    fake: FakeVMS, state: Path, tmp_path: Path
) -> None:
    ok = _file(tmp_path, "ok.mp4", 10)
    async with _client(fake, state) as client:
        result = await client.push_incident(
            {"id": "i"},
            [VideoFile(tmp_path / "gone.mp4", id="gone"), VideoFile(tmp_path, id="dir"), ok],
            thumbnails=False,
        )
    assert [v.id for v in result.uploaded] == ["ok"]
    errors = {f.id: f.errors[0] for f in result.failed}
    assert "No such file" in errors["gone"] and "gone.mp4" in errors["gone"]
    assert "not a regular file" in errors["dir"] or "directory" in errors["dir"].lower()
    assert {v["id"] for v in fake.incidents["i"]["failed_videos"]} == {"gone", "dir"}


async def test_a_read_error_mid_upload_fails_the_file_and_aborts(
    fake: FakeVMS, state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmsbridge.client import _upload

    big = _file(tmp_path, "big.mp4", 16 * MiB)
    calls = Counter[str]()
    real = _upload._read_hashed
    fail_at = (16 * MiB // _upload.CHUNK_SIZE) * 3 // 4  # three quarters through the file

    def flaky(f: Any, n: int, hashes: Any) -> bytes:
        calls["reads"] += 1
        if calls["reads"] == fail_at:
            raise OSError(5, "Input/output error")
        return real(f, n, hashes)

    monkeypatch.setattr(_upload, "_read_hashed", flaky)
    async with _client(fake, state, concurrency=1) as client:
        result = await client.push_incident({"id": "i"}, [big], thumbnails=False)
    assert [f.id for f in result.failed] == ["big"]
    assert "Input/output error" in result.failed[0].errors[0]
    assert fake.calls["abort_multipart_upload"] == 1 and fake.uploads == {}


# -- resume ---------------------------------------------------------------------------------------


async def _crash_midway(fake: FakeVMS, state: Path, big: Path, after: int = 2) -> None:
    fake.crash_after_puts = after
    async with _client(fake, state, concurrency=1) as client:
        with pytest.raises(Crash):
            await client.push_incident({"id": "i"}, [big], thumbnails=False)
    fake.crash_after_puts = None


async def test_resume_after_a_crash_sends_only_the_missing_parts(
    fake: FakeVMS, state: Path, tmp_path: Path
) -> None:
    big = _file(tmp_path, "v.mp4", 26 * MiB)  # 6 parts of 5 MiB
    await _crash_midway(fake, state, big)
    assert len(fake.puts) == 2 and len(fake.uploads) == 1  # the upload stays open to resume
    received = fake.bytes_received
    async with _client(fake, state) as client:
        result = await client.push_incident({"id": "i"}, [big], thumbnails=False)
    assert result.ok
    assert fake.calls["create_multipart_upload"] == 1 and fake.calls["list_parts"] == 1
    assert sorted(n for _, n in fake.puts[2:]) == [3, 4, 5, 6]
    assert result.bytes_sent == fake.bytes_received - received == 26 * MiB - 10 * MiB
    assert fake.objects[_key_of(fake, "i", "v")] == big.read_bytes()
    assert result.uploaded[0].sha256 == hashlib.sha256(big.read_bytes()).hexdigest()

    # and once finished, the same push sends nothing at all
    puts = len(fake.puts)
    async with _client(fake, state) as client:
        again = await client.push_incident({"id": "i"}, [big], thumbnails=False)
    assert again.ok and again.uploaded[0].skipped and len(fake.puts) == puts
    assert again.uploaded[0].s3_key == result.uploaded[0].s3_key


async def test_a_part_the_journal_missed_is_kept_when_its_md5_matches(
    fake: FakeVMS, state: Path, tmp_path: Path
) -> None:
    from vmsbridge.client._journal import Journal

    big = _file(tmp_path, "v.mp4", 26 * MiB)
    await _crash_midway(fake, state, big, after=3)
    journal = Journal.in_dir(state)
    entry = journal.find(f"{API}/v1", "i", "v")
    assert entry is not None and sorted(entry.parts) == [1, 2, 3]
    journal.drop_parts(entry, [3])  # as if killed between the store's answer and the commit
    journal.close()
    async with _client(fake, state) as client:
        result = await client.push_incident({"id": "i"}, [big], thumbnails=False)
    assert result.ok and sorted(n for _, n in fake.puts[3:]) == [4, 5, 6]


async def test_an_upload_the_server_forgot_starts_over(
    fake: FakeVMS, state: Path, tmp_path: Path
) -> None:
    big = _file(tmp_path, "v.mp4", 16 * MiB)
    await _crash_midway(fake, state, big)
    fake.uploads.clear()  # reaped on the server
    async with _client(fake, state) as client:
        result = await client.push_incident({"id": "i"}, [big], thumbnails=False)
    assert result.ok and fake.calls["create_multipart_upload"] == 2
    assert sorted(n for _, n in fake.puts[2:]) == [1, 2, 3, 4]
    assert fake.objects[_key_of(fake, "i", "v")] == big.read_bytes()


async def test_a_changed_file_starts_over(fake: FakeVMS, state: Path, tmp_path: Path) -> None:
    big = _file(tmp_path, "v.mp4", 16 * MiB)
    await _crash_midway(fake, state, big)
    big.write_bytes(random.Random(9).randbytes(16 * MiB))
    os.utime(big, ns=(1, 1))
    async with _client(fake, state) as client:
        result = await client.push_incident({"id": "i"}, [big], thumbnails=False)
    assert result.ok and fake.calls["abort_multipart_upload"] == 1 and fake.uploads == {}
    assert fake.objects[_key_of(fake, "i", "v")] == big.read_bytes()


# -- thumbnails -----------------------------------------------------------------------------------


async def test_thumbnails_from_the_first_key_frame(
    fake: FakeVMS, state: Path, tmp_path: Path
) -> None:
    video = make_mp4(tmp_path / "clip.mp4")
    noise = _file(tmp_path, "noise.mp4", 5000)
    given = _file(tmp_path, "given.jpg", 50)
    async with _client(fake, state) as client:
        result = await client.push_incident(
            {"id": "i"},
            [video, noise, VideoFile(_file(tmp_path, "x.mp4", 9), thumbnail_path=given)],
        )
    assert result.ok
    by_id = {v.id: v for v in result.uploaded}
    thumb = fake.objects[by_id["clip"].s3_thumbnail_key or ""]
    assert thumb[:2] == b"\xff\xd8" and thumb[-2:] == b"\xff\xd9"  # a JPEG
    assert by_id["noise"].s3_thumbnail_key is None  # does not decode: skipped, not failed
    assert fake.objects[by_id["x"].s3_thumbnail_key or ""] == given.read_bytes()
    stored = {v["id"]: v for v in fake.incidents["i"]["uploaded_videos"]}
    assert stored["clip"]["s3_thumbnail_key"] == by_id["clip"].s3_thumbnail_key
    assert "s3_thumbnail_key" not in stored["noise"]

    puts = len(fake.puts)
    async with _client(fake, state) as client:
        again = await client.push_incident({"id": "i"}, [video])
    assert again.uploaded[0].s3_thumbnail_key == by_id["clip"].s3_thumbnail_key
    assert len(fake.puts) == puts  # neither the video nor its thumbnail is sent again


# -- the API calls --------------------------------------------------------------------------------


async def test_a_wrong_key_fails_fast_before_any_upload(
    fake: FakeVMS, state: Path, tmp_path: Path
) -> None:
    video = _file(tmp_path, "v.mp4", 10)
    client = AsyncClient(API, "wrong", transport=fake.transport(), state_dir=state)
    async with client:
        with pytest.raises(APIError) as info:
            await client.push_incident({"id": "i"}, [video])
    assert (info.value.status, info.value.code, info.value.message) == (
        401,
        "Unauthorized",
        "unknown API key",
    )
    assert fake.puts == []


async def test_idempotent_calls_are_retried(fake: FakeVMS, state: Path) -> None:
    fake.incidents["i"] = {"id": "i"}
    fake.api_faults["incident"] = [503, 500]
    fake.connect_errors["list_parts"] = 1
    async with _client(fake, state) as client:
        assert (await client.get_incident("i"))["id"] == "i"
        assert len(client.sleeps) == 2  # type: ignore[attr-defined]
        with pytest.raises(NotFoundError):  # retried after the connection error, then 404
            await client.list_parts("i", "k", "nope")
    assert fake.calls["list_parts"] == 2


async def test_create_multipart_upload_is_not_retried_after_a_500(
    fake: FakeVMS, state: Path
) -> None:
    fake.api_faults["create_multipart_upload"] = [500]
    async with _client(fake, state) as client:
        with pytest.raises(APIError) as info:
            await client.create_multipart_upload("i", "f", "f.mp4")
    assert info.value.status == 500 and fake.calls["create_multipart_upload"] == 1


async def test_retries_run_out(fake: FakeVMS, state: Path) -> None:
    fake.connect_errors["incident"] = 10
    async with _client(fake, state, retries=2) as client:
        with pytest.raises(TransportError, match="after 3 attempts"):
            await client.get_incident("i")


async def test_error_bodies_that_are_not_json() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(418, text="I am a teapot")

    async with AsyncClient(API, "k", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(APIError, match="I am a teapot") as info:
            await client.list_incidents()
    assert info.value.status == 418 and info.value.code is None


async def test_api_url_and_key_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"url": "http://x", "expires_in": 60})

    for base in ("http://h:1", "http://h:1/", "http://h:1/v1"):
        async with AsyncClient(base, "k", transport=httpx.MockTransport(handler)) as client:
            assert (await client.download_url("i", "v"))["expires_in"] == 60
    assert {str(r.url) for r in seen} == {"http://h:1/v1/vms/incidents/i/videos/v/download_url"}
    assert all(r.headers["x-api-key"] == "k" for r in seen)
