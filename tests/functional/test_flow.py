"""The spec's full flow, end to end with real presigned PUTs to the store."""

from __future__ import annotations

import hashlib
import os
import re

from .conftest import (
    MIN_PART,
    Api,
    assert_error,
    md5,
    new_id,
    start_multipart,
    upload_multipart,
    upload_single,
)

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_full_flow_single_multipart_failed_and_get_shape(api: Api) -> None:
    inc = new_id()
    video = os.urandom(3 * MIN_PART + 123)  # 4 parts, the last one short
    done = await upload_multipart(api, inc, "abc1", "test.mov", video)
    assert done["s3_key"] == f"vms/{api.org_id}/{api.key_id}/{inc}/abc1_test.mov"
    assert done["size"] == len(video)
    parts = [video[i : i + MIN_PART] for i in range(0, len(video), MIN_PART)]
    expected = hashlib.md5(b"".join(bytes.fromhex(md5(p)) for p in parts)).hexdigest()
    assert done["etag"] == f"{expected}-{len(parts)}"
    thumb = b"\xff\xd8thumbnail"
    thumb_key = await upload_single(api, inc, "abc1-thumb", "test.jpg", thumb)

    payload = {
        "vms_incident": {
            "title": "Hey There!!",
            "description": "Something else description",
            "created_at": "2024-02-02T11:04:41.03Z",
            "updated_at": "2024-02-02T12:01:19.643Z",
            "incident_at": "2023-02-02T11:04:12.987Z",
            "latitude": 0.0,
            "longitude": 0.0,
            "uploaded_videos": [
                {
                    "id": "good-file-2",
                    "started_at": "2024-02-02T11:49:22Z",
                    "ended_at": "2024-02-02T11:51:32Z",
                    "camera_id": "01000000-0001-babe-0007-48ea632b7f71",
                    "camera_name": "192.168.0.241 - Camera - 01a",
                    "camera_description": "",
                    "camera_latitude": 0.0,
                    "camera_longitude": 0.0,
                    "s3_key": done["s3_key"],
                    "s3_thumbnail_key": thumb_key,
                    "size": len(video),
                    "sha256": hashlib.sha256(video).hexdigest(),
                }
            ],
            "failed_videos": [
                {
                    "id": "bad-file-2",
                    "started_at": "2024-02-02T11:49:22Z",
                    "ended_at": "2024-02-02T11:51:32Z",
                    "camera_id": "01000000-0001-babe-0007-48ea632b7f71",
                    "camera_name": "192.168.0.241 - Camera - 01",
                    "camera_description": "",
                    "camera_latitude": 0.0,
                    "camera_longitude": 0.0,
                    "errors": ["G64 export failed with: No video available for the camera."],
                }
            ],
        }
    }
    r = await api.client.put(f"/v1/vms/incidents/{inc}", headers=api.headers, json=payload)
    assert r.status_code == 201, r.text
    put_body = r.json()
    r = await api.client.get(f"/v1/vms/incidents/{inc}", headers=api.headers)
    assert r.status_code == 200
    assert r.json() == put_body
    got = put_body["vms_incident"]
    # The spec's example structure, key for key (plus camera_id, size, sha256).
    assert set(got) == {
        "id", "title", "description", "incident_at", "created_at", "updated_at",
        "longitude", "latitude", "uploaded_videos", "failed_videos",
    }  # fmt: skip
    assert got["id"] == inc
    assert got["title"] == "Hey There!!"
    assert got["incident_at"] == "2023-02-02T11:04:12.987Z"
    assert got["created_at"] == "2024-02-02T11:04:41.030Z"
    assert got["updated_at"] == "2024-02-02T12:01:19.643Z"
    assert got["latitude"] == 0 and got["longitude"] == 0
    (up,) = got["uploaded_videos"]
    assert set(up) == {
        "id", "started_at", "ended_at", "camera_id", "camera_name", "camera_description",
        "camera_longitude", "camera_latitude", "s3_key", "s3_thumbnail_key", "size", "sha256",
    }  # fmt: skip
    assert up["started_at"] == "2024-02-02T11:49:22.000Z"
    assert up["s3_key"] == done["s3_key"] and up["s3_thumbnail_key"] == thumb_key
    assert up["size"] == len(video) and up["sha256"] == hashlib.sha256(video).hexdigest()
    assert up["camera_id"] == "01000000-0001-babe-0007-48ea632b7f71"
    assert up["camera_description"] == ""
    (failed,) = got["failed_videos"]
    assert set(failed) == {
        "id", "started_at", "ended_at", "camera_id", "camera_name", "camera_description",
        "camera_longitude", "camera_latitude", "upload_errors",
    }  # fmt: skip
    assert failed["upload_errors"] == ["G64 export failed with: No video available for the camera."]
    for t in (got["incident_at"], got["created_at"], up["started_at"], failed["ended_at"]):
        assert TIME.match(t)

    # The bytes are there: download through download_url and compare.
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/videos/good-file-2/download_url", headers=api.headers
    )
    assert r.status_code == 200, r.text
    dl = await api.http.get(r.json()["url"])
    assert dl.status_code == 200
    assert dl.content == video
    assert "test.mov" in dl.headers.get("content-disposition", "")
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/videos/good-file-2/download_url",
        params={"thumbnail": "true"},
        headers=api.headers,
    )
    assert (await api.http.get(r.json()["url"])).content == thumb


async def test_flat_body_and_bearer_auth(api: Api) -> None:
    inc = new_id()
    key = await upload_single(api, inc, "f1", "clip.mp4", b"video bytes")
    r = await api.client.put(
        f"/v1/vms/incidents/{inc}",
        headers={"Authorization": f"Bearer {api.key}"},
        json={"title": "flat", "uploaded_videos": [{"id": "v1", "s3_key": key}]},
    )
    assert r.status_code == 201, r.text
    v = r.json()["vms_incident"]["uploaded_videos"][0]
    assert v["size"] == len(b"video bytes") and v["sha256"] is None
    assert r.json()["vms_incident"]["failed_videos"] == []


async def test_update_merges_videos_by_id(api: Api) -> None:
    inc = new_id()
    k1 = await upload_single(api, inc, "f1", "a.mp4", b"a")
    k2 = await upload_single(api, inc, "f2", "b.mp4", b"bb")
    url = f"/v1/vms/incidents/{inc}"
    r = await api.client.put(
        url,
        headers=api.headers,
        json={
            "title": "one",
            "uploaded_videos": [{"id": "v1", "s3_key": k1, "camera_name": "cam1"}],
            "failed_videos": [{"id": "v2", "upload_errors": ["timeout"]}],
        },
    )
    assert r.status_code == 201
    created_at = r.json()["vms_incident"]["created_at"]
    # v2 now uploaded (failed -> uploaded), v3 added failed; v1 untouched; title kept.
    r = await api.client.put(
        url,
        headers=api.headers,
        json={
            "uploaded_videos": [{"id": "v2", "s3_key": k2}],
            "failed_videos": [{"id": "v3", "errors": ["camera offline"]}],
        },
    )
    assert r.status_code == 200, r.text
    got = r.json()["vms_incident"]
    assert got["title"] == "one"
    assert got["created_at"] == created_at
    assert [v["id"] for v in got["uploaded_videos"]] == ["v1", "v2"]
    assert got["uploaded_videos"][0]["camera_name"] == "cam1"
    assert got["uploaded_videos"][1]["size"] == 2
    assert [v["id"] for v in got["failed_videos"]] == ["v3"]
    # v1 uploaded -> failed: replaced, s3 fields gone.
    r = await api.client.put(
        url, headers=api.headers, json={"failed_videos": [{"id": "v1", "errors": ["lost"]}]}
    )
    got = r.json()["vms_incident"]
    assert [v["id"] for v in got["uploaded_videos"]] == ["v2"]
    assert {v["id"]: v["upload_errors"] for v in got["failed_videos"]} == {
        "v1": ["lost"],
        "v3": ["camera offline"],
    }
    # A PUT with nothing but a title updates it and keeps every video.
    r = await api.client.put(url, headers=api.headers, json={"title": None})
    assert r.json()["vms_incident"]["title"] is None
    assert len(r.json()["vms_incident"]["failed_videos"]) == 2


async def test_abort_flow(api: Api) -> None:
    inc = new_id()
    created, urls = await start_multipart(api, inc, "f1", "big.mov", 2)
    url = urls[0]
    assert (await api.http.put(url, content=os.urandom(MIN_PART))).status_code == 200
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/list_parts", params=created, headers=api.headers
    )
    assert r.status_code == 200
    assert [(p["part_number"], p["size"]) for p in r.json()["parts"]] == [(1, MIN_PART)]
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/abort_multipart_upload", params=created, headers=api.headers
    )
    assert r.status_code == 200, r.text
    assert r.json() == created
    # Idempotent.
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/abort_multipart_upload", params=created, headers=api.headers
    )
    assert r.status_code == 200 and r.json() == created
    # The upload is gone: the old part URL no longer works, complete is a 404.
    assert (await api.http.put(url, content=b"x")).status_code == 404
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/complete_multipart_upload",
        headers=api.headers,
        json={**created, "parts": ["abc"]},
    )
    assert_error(r, 404, "NoSuchUpload")
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls",
        headers=api.headers,
        json={"files": {"f1": {"part_count": 2, **created}}},
    )
    assert_error(r, 404, "NoSuchUpload")


async def test_complete_is_idempotent_and_abort_after_complete_is_409(api: Api) -> None:
    inc = new_id()
    data = os.urandom(MIN_PART + 10)
    done = await upload_multipart(api, inc, "f1", "x.mov", data)
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/list_parts",
        params={"s3_key": done["s3_key"], "upload_id": done["upload_id"]},
        headers=api.headers,
    )
    assert_error(r, 409, "UploadCompleted")
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/complete_multipart_upload",
        headers=api.headers,
        json={"s3_key": done["s3_key"], "upload_id": done["upload_id"], "parts": ["x"]},
    )
    assert r.status_code == 200 and r.json() == done
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/abort_multipart_upload",
        params={"s3_key": done["s3_key"], "upload_id": done["upload_id"]},
        headers=api.headers,
    )
    assert_error(r, 409, "UploadCompleted")
    info = await api.store.head_object(done["s3_key"])
    assert info.size == len(data)


async def test_complete_with_wrong_etag_is_invalid_part(api: Api) -> None:
    inc = new_id()
    created, urls = await start_multipart(api, inc, "f1", "a.mov", 1)
    await api.http.put(urls[0], content=b"abc")
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/complete_multipart_upload",
        headers=api.headers,
        json={**created, "parts": ["0" * 32]},
    )
    assert_error(r, 400, "InvalidPart")
    # Still open: completing with the right ETag works.
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/complete_multipart_upload",
        headers=api.headers,
        json={**created, "parts": [f'"{md5(b"abc")}"']},
    )
    assert r.status_code == 200, r.text
    assert r.json()["size"] == 3


async def test_upload_urls_shapes_and_max_upload_size(api: Api) -> None:
    inc = new_id()
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls", headers=api.headers, json={"files": {}}
    )
    assert r.status_code == 200
    assert r.json() == {"incident_id": inc, "max_upload_size_mb": -1, "uploads": {}}
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/create_multipart_upload",
        params={"file_id": "fileId1", "filename": "test.mov"},
        headers=api.headers,
    )
    created = r.json()
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls",
        headers=api.headers,
        json={
            "files": {
                "fileId1": {"part_count": 3, **created},
                "fileId2": {"filename": "myThumbnail.jpg"},
            }
        },
    )
    body = r.json()
    assert set(body) == {"incident_id", "max_upload_size_mb", "uploads"}
    urls = body["uploads"]["fileId1"]["signed_urls"]
    assert [re.search(r"partNumber=(\d+)", u).group(1) for u in urls] == ["1", "2", "3"]  # type: ignore[union-attr]
    assert all("X-Amz-Signature=" in u and "uploadId=" in u for u in urls)
    assert body["uploads"]["fileId2"]["s3_key"].endswith(f"/{inc}/fileId2_myThumbnail.jpg")
    assert isinstance(body["uploads"]["fileId2"]["signed_urls"], str)
