"""Functional tests: the app in-process over httpx, a real SQL database (SQLite and PostgreSQL:
every test runs on both) and the real embedded S3 store served over HTTP on loopback, reached
through the real `S3Gateway`; uploads are real presigned PUTs.

Each test gets its own organisations and keys, so tests share one database per run (migrated
once per app start, which is a no-op after the first).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    ServerThread,
    create_pg_database,
    drop_pg_database,
    pg_available,
    pg_required,
)
from vmsbridge.app import create_app
from vmsbridge.auth.service import create_key
from vmsbridge.config import Settings
from vmsbridge.s3 import create_s3_app
from vmsbridge.storage.client import S3Gateway

#: Small parts keep multipart tests fast; the store enforces this minimum like S3 enforces 5 MiB.
MIN_PART = 64 * 1024
ACCESS_KEY = "AKIAFUNCTIONALTEST01"
SECRET_KEY = "functional-test-secret-key-0123456789abcd"


@pytest.fixture(scope="session")
def s3_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded store, on loopback, for the whole run."""
    root = tmp_path_factory.mktemp("s3")
    app = create_s3_app(root, {ACCESS_KEY: SECRET_KEY}, min_part_size=MIN_PART)
    with ServerThread(app) as server:
        yield server.url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database per run and kind."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "vmsbridge.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    if not pg_available():
        if pg_required():
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is required (VMSBRIDGE_TEST_REQUIRE_PG=1)")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
    name, url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


def make_settings(tmp: Path, database_url: str, s3_url: str, **extra: Any) -> Settings:
    """Settings for an app on the test database and store."""
    return Settings(
        data_dir=tmp,
        database_url=database_url,
        s3_endpoint_url=s3_url,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
        s3_bucket="functional",
        **extra,
    )


@dataclass
class Api:
    """A running app: `client` talks to it in-process; `http` is a plain client for presigned
    URLs; `headers` authenticate as a fresh organisation's key (`org_id`, `key_id`)."""

    app: Any
    client: httpx.AsyncClient
    http: httpx.AsyncClient
    store: S3Gateway
    settings: Settings
    headers: dict[str, str]
    org_id: str
    key_id: str
    key: str

    async def new_key(
        self, org: str | None = None, permissions: list[str] | None = None
    ) -> tuple[dict[str, str], str, str]:
        """(headers, org_id, key_id) of a new key, in a new organisation unless `org` is given."""
        async with self.app.state.db.write_session() as s:
            k = await create_key(s, org or f"org-{uuid.uuid4().hex[:10]}", permissions=permissions)
        return {"x-api-key": k.key}, k.org_id, k.id

    async def count(self, table: str) -> int:
        """Rows in a table (to assert that a rejected request changed nothing)."""
        from sqlalchemy import text

        async with self.app.state.db.session() as s:
            return int((await s.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


@pytest.fixture
async def api(
    database_url: str, s3_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Api]:
    """The app with a fresh organisation and key."""
    extra = getattr(request, "param", {}) or {}
    settings = make_settings(tmp_path, database_url, s3_url, **extra)
    store = S3Gateway.from_settings(settings)
    await store.ensure_bucket()
    app = create_app(settings, store=store)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as client,
        httpx.AsyncClient(timeout=30) as http,
    ):
        k = Api(app, client, http, store, settings, {}, "", "", "")
        k.headers, k.org_id, k.key_id = await k.new_key()
        k.key = k.headers["x-api-key"]
        yield k
    await store.close()


# ---- upload helpers ----


def md5(data: bytes) -> str:
    """Hex MD5 (S3's ETag of a single part)."""
    return hashlib.md5(data).hexdigest()


async def upload_single(
    api: Api, incident_id: str, file_id: str, filename: str, data: bytes, headers: Any = None
) -> str:
    """Upload one small file through a presigned PUT; return its s3_key."""
    r = await api.client.post(
        f"/v1/vms/incidents/{incident_id}/upload_urls",
        headers=headers or api.headers,
        json={"files": {file_id: {"filename": filename}}},
    )
    assert r.status_code == 200, r.text
    entry = r.json()["uploads"][file_id]
    assert isinstance(entry["signed_urls"], str)
    put = await api.http.put(entry["signed_urls"], content=data)
    assert put.status_code == 200, put.text
    return str(entry["s3_key"])


async def start_multipart(
    api: Api,
    incident_id: str,
    file_id: str,
    filename: str,
    part_count: int,
    headers: Any = None,
) -> tuple[dict[str, Any], list[str]]:
    """create_multipart_upload, then upload_urls for `part_count` parts: (the session
    `{s3_key, upload_id}`, the part URLs in part order)."""
    h = headers or api.headers
    r = await api.client.get(
        f"/v1/vms/incidents/{incident_id}/create_multipart_upload",
        params={"file_id": file_id, "filename": filename},
        headers=h,
    )
    assert r.status_code == 200, r.text
    created = dict(r.json())
    r = await api.client.post(
        f"/v1/vms/incidents/{incident_id}/upload_urls",
        headers=h,
        json={"files": {file_id: {"part_count": part_count, **created}}},
    )
    assert r.status_code == 200, r.text
    urls = r.json()["uploads"][file_id]["signed_urls"]
    assert isinstance(urls, list) and len(urls) == part_count
    return created, urls


async def put_parts(api: Api, urls: list[str], data: bytes, part_size: int = MIN_PART) -> list[str]:
    """PUT `data` in `part_size` slices to the first part URLs; return their ETags in order."""
    etags = []
    for i, start in enumerate(range(0, len(data), part_size)):
        put = await api.http.put(urls[i], content=data[start : start + part_size])
        assert put.status_code == 200, put.text
        etags.append(put.headers["etag"])
    return etags


async def upload_multipart(
    api: Api,
    incident_id: str,
    file_id: str,
    filename: str,
    data: bytes,
    part_size: int = MIN_PART,
    headers: Any = None,
) -> dict[str, Any]:
    """Create, upload every part through presigned URLs, complete; return the completion."""
    part_count = -(-len(data) // part_size)
    created, urls = await start_multipart(api, incident_id, file_id, filename, part_count, headers)
    etags = await put_parts(api, urls, data, part_size)
    r = await api.client.post(
        f"/v1/vms/incidents/{incident_id}/complete_multipart_upload",
        headers=headers or api.headers,
        json={**created, "parts": etags},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The answer is an error of the catalogue's shape."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"status", "message", "code"}, body
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in r.text
    if code is not None:
        assert body["code"] == code, body
    return dict(body)


def new_id(prefix: str = "inc") -> str:
    """A fresh identifier."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
