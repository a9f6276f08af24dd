"""Extensions: listing, download_url, readyz, healthz, metrics, OpenAPI, reaping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest

from vmsbridge.app import create_app
from vmsbridge.storage.client import S3Gateway

from .conftest import Api, assert_error, make_settings, new_id, upload_single


async def test_list_paging_order_and_filters(api: Api) -> None:
    headers, _, _ = await api.new_key()  # a fresh organisation: the list is exactly ours
    ids = []
    for day in range(1, 8):
        inc = new_id()
        ids.append(inc)
        r = await api.client.put(
            f"/v1/vms/incidents/{inc}",
            headers=headers,
            json={"title": f"day {day}", "incident_at": f"2024-03-0{day}T10:00:00Z"},
        )
        assert r.status_code == 201
    newest_first = list(reversed(ids))
    r = await api.client.get("/v1/vms/incidents", params={"per_page": 3}, headers=headers)
    body = r.json()
    assert body["total"] == 7 and body["page"] == 1 and body["per_page"] == 3
    assert [i["id"] for i in body["vms_incidents"]] == newest_first[:3]
    r = await api.client.get(
        "/v1/vms/incidents", params={"per_page": 3, "page": 3}, headers=headers
    )
    assert [i["id"] for i in r.json()["vms_incidents"]] == newest_first[6:]
    r = await api.client.get(
        "/v1/vms/incidents", params={"per_page": 3, "page": 4}, headers=headers
    )
    assert r.json()["vms_incidents"] == []
    r = await api.client.get(
        "/v1/vms/incidents",
        params={"since": "2024-03-02T00:00:00Z", "until": "2024-03-05T00:00:00+00:00"},
        headers=headers,
    )
    assert [i["title"] for i in r.json()["vms_incidents"]] == ["day 4", "day 3", "day 2"]
    assert r.json()["total"] == 3
    # Full objects, the same as GET returns.
    one = (await api.client.get(f"/v1/vms/incidents/{ids[0]}", headers=headers)).json()
    r = await api.client.get("/v1/vms/incidents", params={"per_page": 100}, headers=headers)
    assert r.json()["vms_incidents"][-1] == one["vms_incident"]


async def test_download_url_errors(api: Api) -> None:
    inc = new_id()
    key = await upload_single(api, inc, "f1", "a.mp4", b"abc")
    await api.client.put(
        f"/v1/vms/incidents/{inc}",
        headers=api.headers,
        json={
            "uploaded_videos": [{"id": "v1", "s3_key": key}],
            "failed_videos": [{"id": "v2", "errors": ["x"]}],
        },
    )
    base = f"/v1/vms/incidents/{inc}/videos"
    r = await api.client.get(f"{base}/v1/download_url", headers=api.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["expires_in"] == api.settings.presign_expires and body["s3_key"] == key
    assert (await api.http.get(body["url"])).content == b"abc"
    assert_error(
        await api.client.get(f"{base}/v2/download_url", headers=api.headers), 404, "NoSuchVideo"
    )
    assert_error(
        await api.client.get(f"{base}/v9/download_url", headers=api.headers), 404, "NoSuchVideo"
    )
    r = await api.client.get(f"{base}/v1/download_url?thumbnail=true", headers=api.headers)
    assert_error(r, 404, "NoSuchVideo")


async def test_health_ready_metrics(api: Api) -> None:
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await api.client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok", "storage": "ok"}
    await api.client.get("/v1/vms/incidents", headers=api.headers)
    await api.client.get(f"/v1/vms/incidents/{new_id()}", headers=api.headers)
    r = await api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert (
        'vmsbridge_http_requests_total{method="GET",route="/v1/vms/incidents",status="200"} 1'
        in text
    )
    assert (
        'vmsbridge_http_requests_total{method="GET",route="/v1/vms/incidents/{incident_id}",'
        'status="404"} 1' in text
    )
    assert "vmsbridge_http_request_duration_seconds_count" in text
    assert "# TYPE vmsbridge_http_request_duration_seconds histogram" in text


async def test_readyz_reports_a_dead_store(api: Api) -> None:
    from vmsbridge.storage.client import S3Gateway

    dead = S3Gateway(
        endpoint_url="http://127.0.0.1:9",
        bucket="x",
        region="us-east-1",
        access_key_id="a",
        secret_access_key="b",
        max_attempts=1,
        connect_timeout=1,
    )
    api.app.state.store = dead
    try:
        r = await api.client.get("/readyz")
        body = assert_error(r, 503, "NotReady")
        assert body["database"] == "ok" and body["storage"].startswith("error")
        # A store failure during a request is a 503 StorageUnavailable, never a 500.
        r = await api.client.get(
            f"/v1/vms/incidents/{new_id()}/create_multipart_upload",
            params={"file_id": "f", "filename": "a.mov"},
            headers=api.headers,
        )
        assert_error(r, 503, "StorageUnavailable")
    finally:
        api.app.state.store = api.store
        await dead.close()


async def test_openapi_describes_every_endpoint(api: Api) -> None:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    paths = spec["paths"]
    expected = {
        "/v1/vms/incidents": {"get"},
        "/v1/vms/incidents/{incident_id}": {"get", "put"},
        "/v1/vms/incidents/{incident_id}/create_multipart_upload": {"get"},
        "/v1/vms/incidents/{incident_id}/upload_urls": {"post"},
        "/v1/vms/incidents/{incident_id}/complete_multipart_upload": {"post"},
        "/v1/vms/incidents/{incident_id}/abort_multipart_upload": {"get"},
        "/v1/vms/incidents/{incident_id}/list_parts": {"get"},
        "/v1/vms/incidents/{incident_id}/videos/{video_id}/download_url": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    for path, ops in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            assert "401" in op["responses"], (path, method)
            assert op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/ErrorBody"
            )
            if method in ("put", "post"):
                assert "requestBody" in op, (path, method)
    schemas = spec["components"]["schemas"]
    for name in ("IncidentIn", "IncidentPutBody", "UploadUrlsIn", "CompleteIn", "ErrorBody"):
        assert name in schemas
    assert "sha256" in schemas["UploadedVideoIn"]["properties"]


@pytest.mark.parametrize("api", [{"max_upload_size_mb": 1}], indirect=True)
async def test_max_upload_size(api: Api) -> None:
    inc = new_id()
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls", headers=api.headers, json={"files": {}}
    )
    assert r.json()["max_upload_size_mb"] == 1
    key = await upload_single(api, inc, "f1", "big.mp4", b"x" * (1024 * 1024 + 1))
    r = await api.client.put(
        f"/v1/vms/incidents/{inc}",
        headers=api.headers,
        json={"uploaded_videos": [{"id": "v", "s3_key": key}]},
    )
    assert_error(r, 400, "EntityTooLarge")


async def test_reap_aborts_only_stale_open_sessions_once(api: Api) -> None:
    from sqlalchemy import update

    from vmsbridge.db import utcnow
    from vmsbridge.uploads.models import UploadSession
    from vmsbridge.uploads.service import reap

    inc = new_id()
    sessions = []
    for i in range(3):
        r = await api.client.get(
            f"/v1/vms/incidents/{inc}/create_multipart_upload",
            params={"file_id": f"f{i}", "filename": "a.mov"},
            headers=api.headers,
        )
        sessions.append(r.json())
    # Two of them are two days old.
    old = utcnow() - dt.timedelta(days=2)
    async with api.app.state.db.write_session() as s:
        await s.execute(
            update(UploadSession)
            .where(
                UploadSession.upload_id.in_([sessions[0]["upload_id"], sessions[1]["upload_id"]])
            )
            .values(created_at=old)
        )
    # Several reapers at once: each stale session is aborted exactly once.
    import asyncio

    results = await asyncio.gather(
        *(reap(api.app.state.db, api.store, dt.timedelta(hours=24)) for _ in range(3))
    )
    reaped = [r.s3_key for res in results for r in res.reaped]
    mine = sorted(k for k in reaped if f"/{inc}/" in k)
    assert mine == sorted([sessions[0]["s3_key"], sessions[1]["s3_key"]])
    for sess, gone in zip(sessions, (True, True, False), strict=True):
        r = await api.client.get(
            f"/v1/vms/incidents/{inc}/list_parts", params=sess, headers=api.headers
        )
        assert r.status_code == (404 if gone else 200)
    again = await reap(api.app.state.db, api.store, dt.timedelta(hours=24))
    assert not [r for r in again.reaped if f"/{inc}/" in r.s3_key]


async def test_database_down_is_503_not_500(s3_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "postgresql+asyncpg://postgres@127.0.0.1:1/none", s3_url)
    store = S3Gateway.from_settings(settings)
    app = create_app(settings, store=store)  # lifespan not run: the database is down
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://a") as c:
        r = await c.get("/v1/vms/incidents", headers={"x-api-key": "vmsb_x"})
        assert_error(r, 503, "DatabaseUnavailable")
        r = await c.get("/readyz")
        body = assert_error(r, 503, "NotReady")
        assert body["database"].startswith("error")
    await store.close()


async def test_ten_thousand_part_urls(api: Api) -> None:
    inc = new_id()
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/create_multipart_upload",
        params={"file_id": "f1", "filename": "huge.mov"},
        headers=api.headers,
    )
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls",
        headers=api.headers,
        json={"files": {"f1": {"part_count": 10_000, **r.json()}}},
    )
    assert r.status_code == 200
    urls = r.json()["uploads"]["f1"]["signed_urls"]
    assert len(urls) == 10_000
    assert "partNumber=10000&" in urls[-1] and "partNumber=1&" in urls[0]
