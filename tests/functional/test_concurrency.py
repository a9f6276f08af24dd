"""No lost updates, over real HTTP: the app runs in uvicorn on loopback (its own event loop and
thread) and the requests really overlap."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import ServerThread
from vmsbridge.app import create_app

from .conftest import (
    MIN_PART,
    Api,
    make_settings,
    new_id,
    put_parts,
    start_multipart,
    upload_single,
)


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
    created, urls = await start_multipart(api, inc, "f1", "big.mov", 3)
    data = os.urandom(3 * MIN_PART)
    etags = await put_parts(api, urls, data)
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


class _HeldCompletes:
    """The real store, except that `complete_multipart_upload` and `abort_multipart_upload`
    wait until `release` is set (and count their calls): a store call that stays in flight as
    long as the test wants."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.completes = 0
        self.aborts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def complete_multipart_upload(self, key: str, upload_id: str, etags: list[str]) -> Any:
        self.completes += 1
        self.entered.set()
        await self.release.wait()
        return await self._store.complete_multipart_upload(key, upload_id, etags)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        self.aborts += 1
        self.entered.set()
        await self.release.wait()
        await self._store.abort_multipart_upload(key, upload_id)


async def test_writes_are_not_blocked_while_a_complete_is_in_flight(
    api: Api, database_url: str, s3_url: str, tmp_path: Path
) -> None:
    inc = new_id()
    created, urls = await start_multipart(api, inc, "f1", "big.mov", 2)
    data = os.urandom(2 * MIN_PART)
    etags = await put_parts(api, urls, data)
    held = _HeldCompletes(api.store)
    app = create_app(make_settings(tmp_path, database_url, s3_url), store=held)  # type: ignore[arg-type]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://api", headers=api.headers
        ) as c,
    ):
        complete = {**created, "parts": etags}
        first = asyncio.ensure_future(
            c.post(f"/v1/vms/incidents/{inc}/complete_multipart_upload", json=complete)
        )
        await asyncio.wait_for(held.entered.wait(), 30)
        second = asyncio.ensure_future(
            c.post(f"/v1/vms/incidents/{inc}/complete_multipart_upload", json=complete)
        )
        # While the store is assembling the object, other writes go through (on SQLite the
        # complete used to hold the database's write lock until the store answered)...
        other = new_id()
        r = await asyncio.wait_for(
            c.put(
                f"/v1/vms/incidents/{other}",
                json={"title": "meanwhile", "failed_videos": [{"id": "v1", "errors": ["x"]}]},
            ),
            30,
        )
        assert r.status_code == 201, r.text
        # ...the upload cannot be aborted or given more URLs under the complete's feet...
        r = await c.get(f"/v1/vms/incidents/{inc}/abort_multipart_upload", params=created)
        assert r.status_code == 409 and r.json()["code"] == "UploadCompleted", r.text
        r = await c.post(
            f"/v1/vms/incidents/{inc}/upload_urls",
            json={"files": {"f1": {"part_count": 2, **created}}},
        )
        assert r.status_code == 409, r.text
        # ...and the second complete waits for the first one's result.
        assert not first.done() and not second.done()
        held.release.set()
        answers = await asyncio.gather(first, second)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["size"] == len(data) and answers[0].json()["etag"].endswith("-2")
    assert held.completes == 1


async def test_a_refused_complete_gives_the_session_back(api: Api) -> None:
    inc = new_id()
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/create_multipart_upload",
        params={"file_id": "f1", "filename": "big.mov"},
        headers=api.headers,
    )
    created = r.json()
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/complete_multipart_upload",
        headers=api.headers,
        json={**created, "parts": ["0" * 32]},
    )
    assert r.status_code == 400 and r.json()["code"] == "InvalidPart", r.text
    # Not stuck "completing": it can still be aborted.
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/abort_multipart_upload", params=created, headers=api.headers
    )
    assert r.status_code == 200, r.text


async def test_writes_are_not_blocked_while_an_abort_is_in_flight(
    api: Api, database_url: str, s3_url: str, tmp_path: Path
) -> None:
    inc = new_id()
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/create_multipart_upload",
        params={"file_id": "f1", "filename": "big.mov"},
        headers=api.headers,
    )
    created = r.json()
    held = _HeldCompletes(api.store)
    app = create_app(make_settings(tmp_path, database_url, s3_url), store=held)  # type: ignore[arg-type]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://api", headers=api.headers
        ) as c,
    ):
        url = f"/v1/vms/incidents/{inc}/abort_multipart_upload"
        first = asyncio.ensure_future(c.get(url, params=created))
        await asyncio.wait_for(held.entered.wait(), 30)
        second = asyncio.ensure_future(c.get(url, params=created))
        r = await asyncio.wait_for(
            c.put(f"/v1/vms/incidents/{new_id()}", json={"title": "meanwhile"}), 30
        )
        assert r.status_code == 201, r.text
        assert not first.done() and not second.done()
        held.release.set()
        answers = await asyncio.gather(first, second)
        r = await c.get(f"/v1/vms/incidents/{inc}/list_parts", params=created)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[1].json() == created
    assert held.aborts == 1
    assert r.status_code == 404 and r.json()["code"] == "NoSuchUpload", r.text
