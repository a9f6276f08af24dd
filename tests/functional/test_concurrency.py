"""No lost updates, over real HTTP: the app runs in uvicorn on loopback (its own event loop and
thread) and the requests really overlap."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from tests.helpers import ServerThread
from vmsbridge.app import create_app

from .conftest import MIN_PART, Api, make_settings, new_id, upload_single


async def test_concurrent_puts_keep_every_video(
    api: Api, database_url: str, s3_url: str, tmp_path: Path
) -> None:
    inc = new_id()
    n = 8
    keys = [
        await upload_single(api, inc, f"f{i}", f"v{i}.mp4", os.urandom(100 + i)) for i in range(n)
    ]
    app = create_app(make_settings(tmp_path, database_url, s3_url))
    with ServerThread(app) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=api.headers, timeout=60) as c:
            # Rounds of concurrent PUTs, each adding one different video (the first round
            # also races to create the incident).
            rs = await asyncio.gather(
                *(
                    c.put(
                        f"/v1/vms/incidents/{inc}",
                        json={
                            "title": f"writer {i}",
                            "uploaded_videos": [{"id": f"v{i}", "s3_key": keys[i]}],
                        },
                    )
                    for i in range(n)
                )
            )
            statuses = sorted(r.status_code for r in rs)
            assert statuses == [200] * (n - 1) + [201], [r.text for r in rs]
            r = await c.get(f"/v1/vms/incidents/{inc}")
    got = r.json()["vms_incident"]
    assert sorted(v["id"] for v in got["uploaded_videos"]) == sorted(f"v{i}" for i in range(n))
    assert {v["size"] for v in got["uploaded_videos"]} == {100 + i for i in range(n)}


async def test_concurrent_completes_give_one_object_and_identical_answers(
    api: Api, database_url: str, s3_url: str, tmp_path: Path
) -> None:
    inc = new_id()
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/create_multipart_upload",
        params={"file_id": "f1", "filename": "big.mov"},
        headers=api.headers,
    )
    created = r.json()
    data = os.urandom(3 * MIN_PART)
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls",
        headers=api.headers,
        json={"files": {"f1": {"part_count": 3, **created}}},
    )
    etags = []
    for i, url in enumerate(r.json()["uploads"]["f1"]["signed_urls"]):
        put = await api.http.put(url, content=data[i * MIN_PART : (i + 1) * MIN_PART])
        etags.append(put.headers["etag"])
    app = create_app(make_settings(tmp_path, database_url, s3_url))
    with ServerThread(app) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=api.headers, timeout=60) as c:
            rs = await asyncio.gather(
                *(
                    c.post(
                        f"/v1/vms/incidents/{inc}/complete_multipart_upload",
                        json={**created, "parts": etags},
                    )
                    for _ in range(4)
                )
            )
    assert [r.status_code for r in rs] == [200] * 4, [r.text for r in rs]
    answers = [r.json() for r in rs]
    assert all(a == answers[0] for a in answers)
    assert answers[0]["size"] == len(data) and answers[0]["etag"].endswith("-3")
    info = await api.store.head_object(created["s3_key"])
    assert info.size == len(data) and info.etag == answers[0]["etag"]
    dl = await api.http.get(api.store.presign_get(created["s3_key"], 60))
    assert dl.content == data
