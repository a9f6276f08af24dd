"""Every malformed request gets a 4xx with {status, message, code} and changes nothing."""
# ruff: noqa: E501  (case tables read best one case per line)

from __future__ import annotations

import pytest

from .conftest import Api, assert_error, new_id, upload_multipart, upload_single

BAD_IDS = [
    "../etc",
    "a/b",
    "-leading-dash",
    ".hidden",
    "has space",
    "semi;colon",
    "x" * 129,
    "nul\x00byte",
    "ctrl\x07char",
    "ümlaut",
]
BAD_FILENAMES = [
    "",
    ".",
    "..",
    "../../etc/passwd",
    "dir/file.mov",
    "back\\slash.mov",
    "nul\x00.mov",
    "tab\tname.mov",
    "newline\n.mov",
    "é" * 128,  # 256 bytes of UTF-8
]


async def _snapshot(api: Api) -> tuple[int, int, int]:
    return (
        await api.count("upload_sessions"),
        await api.count("incidents"),
        await api.count("videos"),
    )


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_invalid_incident_id_is_400_everywhere(api: Api, bad: str) -> None:
    before = await _snapshot(api)
    from urllib.parse import quote

    path = f"/v1/vms/incidents/{quote(bad, safe='')}"
    calls = [
        api.client.get(f"{path}/create_multipart_upload?file_id=f1&filename=a.mov", headers=api.headers),
        api.client.post(f"{path}/upload_urls", headers=api.headers, json={"files": {"f": {"filename": "a"}}}),
        api.client.put(path, headers=api.headers, json={"title": "x"}),
        api.client.get(path, headers=api.headers),
        api.client.post(f"{path}/complete_multipart_upload", headers=api.headers, json={"s3_key": "k", "upload_id": "u", "parts": ["e"]}),
        api.client.get(f"{path}/abort_multipart_upload?s3_key=k&upload_id=u", headers=api.headers),
        api.client.get(f"{path}/list_parts?s3_key=k&upload_id=u", headers=api.headers),
        api.client.get(f"{path}/videos/v1/download_url", headers=api.headers),
    ]  # fmt: skip
    for call in calls:
        r = await call
        # A '/' in the id makes a different path: 404 NotFound; anything else: 400.
        if "/" in bad:
            assert_error(r, 404)
        else:
            body = assert_error(r, 400, "InvalidIdentifier")
            assert body["errors"][0]["field"] == "incident_id"
    assert await _snapshot(api) == before


@pytest.mark.parametrize("bad", [b for b in BAD_IDS if "/" not in b])
async def test_invalid_file_id(api: Api, bad: str) -> None:
    before = await _snapshot(api)
    inc = new_id()
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/create_multipart_upload",
        params={"file_id": bad, "filename": "a.mov"},
        headers=api.headers,
    )
    assert_error(r, 400, "InvalidIdentifier")
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls",
        headers=api.headers,
        json={"files": {bad: {"filename": "a.mov"}}},
    )
    body = assert_error(r, 400, "InvalidIdentifier")
    assert body["errors"][0]["field"] == f"files.{bad}"
    assert await _snapshot(api) == before


@pytest.mark.parametrize("bad", BAD_FILENAMES)
async def test_invalid_filename(api: Api, bad: str) -> None:
    before = await _snapshot(api)
    inc = new_id()
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/create_multipart_upload",
        params={"file_id": "f1", "filename": bad},
        headers=api.headers,
    )
    assert_error(r, 400, "InvalidFilename")
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls",
        headers=api.headers,
        json={"files": {"f1": {"filename": bad}}},
    )
    body = assert_error(r, 400, "InvalidFilename")
    assert body["errors"][0]["field"] == "files.f1.filename"
    assert await _snapshot(api) == before


async def test_missing_query_parameters(api: Api) -> None:
    inc = new_id()
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/create_multipart_upload", headers=api.headers
    )
    body = assert_error(r, 400, "ValidationError")
    assert {e["field"] for e in body["errors"]} == {"file_id", "filename"}
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/abort_multipart_upload?s3_key=x", headers=api.headers
    )
    body = assert_error(r, 400, "ValidationError")
    assert [e["field"] for e in body["errors"]] == ["upload_id"]


async def _created(api: Api, inc: str) -> dict[str, str]:
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/create_multipart_upload",
        params={"file_id": "f1", "filename": "a.mov"},
        headers=api.headers,
    )
    assert r.status_code == 200
    return dict(r.json())


@pytest.mark.parametrize(
    ("entry", "code", "field"),
    [
        ({"part_count": 0}, "ValidationError", "files.f1.part_count"),
        ({"part_count": 10_001}, "ValidationError", "files.f1.part_count"),
        ({"part_count": -1}, "ValidationError", "files.f1.part_count"),
        ({"part_count": "three"}, "ValidationError", "files.f1.part_count"),
        ({"part_count": 2, "s3_key": None}, "ValidationError", "files.f1.s3_key"),
        ({"part_count": 2, "upload_id": None}, "ValidationError", "files.f1.upload_id"),
        ({"part_count": None}, "ValidationError", "files.f1.part_count"),
    ],
)
async def test_upload_urls_bad_multipart_entries(
    api: Api, entry: dict[str, object], code: str, field: str
) -> None:
    inc = new_id()
    created = await _created(api, inc)
    body_entry = {"part_count": 2, **created, **entry}
    body_entry = {k: v for k, v in body_entry.items() if v is not None}
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls",
        headers=api.headers,
        json={"files": {"f1": body_entry}},
    )
    body = assert_error(r, 400, code)
    assert body["errors"][0]["field"] == field


async def test_upload_urls_entry_without_anything_names_filename(api: Api) -> None:
    r = await api.client.post(
        f"/v1/vms/incidents/{new_id()}/upload_urls",
        headers=api.headers,
        json={"files": {"f1": {}}},
    )
    body = assert_error(r, 400, "ValidationError")
    assert body["errors"][0]["field"] == "files.f1.filename"


@pytest.mark.parametrize(
    "body",
    [{}, {"files": []}, {"files": "x"}, {"files": {"f1": "x"}}, [], "files", 12],
)
async def test_upload_urls_wrong_types(api: Api, body: object) -> None:
    r = await api.client.post(
        f"/v1/vms/incidents/{new_id()}/upload_urls", headers=api.headers, json=body
    )
    assert_error(r, 400, "ValidationError")


async def test_unknown_upload_id_and_wrong_s3_key(api: Api) -> None:
    inc = new_id()
    created = await _created(api, inc)
    wrong = [
        {"s3_key": created["s3_key"], "upload_id": "not-an-upload"},
        {"s3_key": created["s3_key"] + "x", "upload_id": created["upload_id"]},
        {"s3_key": "test2.MP4", "upload_id": created["upload_id"]},
    ]
    for w in wrong:
        r = await api.client.post(
            f"/v1/vms/incidents/{inc}/upload_urls",
            headers=api.headers,
            json={"files": {"f1": {"part_count": 1, **w}}},
        )
        assert_error(r, 404, "NoSuchUpload")
        r = await api.client.post(
            f"/v1/vms/incidents/{inc}/complete_multipart_upload",
            headers=api.headers,
            json={**w, "parts": ["abc"]},
        )
        assert_error(r, 404, "NoSuchUpload")
        for op in ("abort_multipart_upload", "list_parts"):
            r = await api.client.get(f"/v1/vms/incidents/{inc}/{op}", params=w, headers=api.headers)
            assert_error(r, 404, "NoSuchUpload")
    # The session cannot be used under another incident either.
    other = new_id()
    r = await api.client.get(
        f"/v1/vms/incidents/{other}/list_parts", params=created, headers=api.headers
    )
    assert_error(r, 404, "NoSuchUpload")
    r = await api.client.get(
        f"/v1/vms/incidents/{other}/abort_multipart_upload", params=created, headers=api.headers
    )
    assert_error(r, 404, "NoSuchUpload")
    # ... and it is still open and usable under its own.
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/list_parts", params=created, headers=api.headers
    )
    assert r.status_code == 200 and r.json()["parts"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"s3_key": "k", "upload_id": "u"},
        {"s3_key": "k", "upload_id": "u", "parts": []},
        {"s3_key": "k", "upload_id": "u", "parts": "abc"},
        {"s3_key": 1, "upload_id": "u", "parts": ["a"]},
        {"upload_id": "u", "parts": ["a"]},
    ],
)
async def test_complete_bad_bodies(api: Api, body: object) -> None:
    r = await api.client.post(
        f"/v1/vms/incidents/{new_id()}/complete_multipart_upload", headers=api.headers, json=body
    )
    assert_error(r, 400, "ValidationError")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{", "MalformedJSON"),
        (b"", "MalformedJSON"),
        (b"not json", "MalformedJSON"),
        (b'{"title": NaN}', "MalformedJSON"),
        (b"\xff\xfe", "MalformedJSON"),
        (b"[]", "ValidationError"),
        (b'"string"', "ValidationError"),
        (b'{"vms_incident": []}', "ValidationError"),
    ],
)
async def test_put_non_json_bodies(api: Api, raw: bytes, code: str) -> None:
    inc = new_id()
    before = await _snapshot(api)
    for path in (f"/v1/vms/incidents/{inc}", f"/v1/vms/incidents/{inc}/upload_urls"):
        method = api.client.put if path.endswith(inc) else api.client.post
        r = await method(
            path, headers={**api.headers, "content-type": "application/json"}, content=raw
        )
        assert_error(r, 400, code)
    assert await _snapshot(api) == before


async def _existing_incident(api: Api) -> tuple[str, str, dict[str, object]]:
    inc = new_id()
    key = await upload_single(api, inc, "f1", "a.mp4", b"0123456789")
    r = await api.client.put(
        f"/v1/vms/incidents/{inc}",
        headers=api.headers,
        json={"title": "orig", "latitude": 1.5, "uploaded_videos": [{"id": "v1", "s3_key": key}]},
    )
    assert r.status_code == 201
    return inc, key, r.json()


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"latitude": 90.1}, "ValidationError", "latitude"),
        ({"latitude": -91}, "ValidationError", "latitude"),
        ({"longitude": 180.5}, "ValidationError", "longitude"),
        ({"longitude": "east"}, "ValidationError", "longitude"),
        ({"incident_at": "yesterday"}, "ValidationError", "incident_at"),
        ({"created_at": "2024-13-45T00:00:00Z"}, "ValidationError", "created_at"),
        ({"title": 12}, "ValidationError", "title"),
        ({"title": ["x"]}, "ValidationError", "title"),
        ({"uploaded_videos": {}}, "ValidationError", "uploaded_videos"),
        ({"uploaded_videos": [{"id": "v2"}]}, "ValidationError", "uploaded_videos.0.s3_key"),
        ({"uploaded_videos": [{"s3_key": "k"}]}, "ValidationError", "uploaded_videos.0.id"),
        ({"failed_videos": [{"id": "../x", "errors": []}]}, "ValidationError", "failed_videos.0.id"),
        ({"failed_videos": [{"id": "v9", "errors": "oops"}]}, "ValidationError", "failed_videos.0.errors"),
        ({"failed_videos": [{"id": "v9", "camera_latitude": 200}]}, "ValidationError", "failed_videos.0.camera_latitude"),
        ({"failed_videos": [{"id": "v9", "started_at": "noon"}]}, "ValidationError", "failed_videos.0.started_at"),
        ({"failed_videos": [{"id": "v1", "errors": ["x"]}, {"id": "v1", "errors": ["y"]}]}, "DuplicateVideoId", "failed_videos.1.id"),
    ],
)  # fmt: skip
async def test_put_bad_fields(api: Api, payload: dict[str, object], code: str, field: str) -> None:
    inc, _, original = await _existing_incident(api)
    before = await _snapshot(api)
    for body in (payload, {"vms_incident": payload}):
        r = await api.client.put(f"/v1/vms/incidents/{inc}", headers=api.headers, json=body)
        err = assert_error(r, 400, code)
        prefix = "vms_incident." if "vms_incident" in body and code == "ValidationError" else ""
        assert err["errors"][0]["field"] == prefix + field, err
    assert await _snapshot(api) == before
    r = await api.client.get(f"/v1/vms/incidents/{inc}", headers=api.headers)
    assert r.json() == original


async def test_put_video_in_both_lists(api: Api) -> None:
    inc, key, original = await _existing_incident(api)
    r = await api.client.put(
        f"/v1/vms/incidents/{inc}",
        headers=api.headers,
        json={
            "uploaded_videos": [{"id": "dup", "s3_key": key}],
            "failed_videos": [{"id": "dup", "errors": ["x"]}],
        },
    )
    err = assert_error(r, 400, "DuplicateVideoId")
    assert err["errors"][0]["field"] == "failed_videos.0.id"
    assert (
        await api.client.get(f"/v1/vms/incidents/{inc}", headers=api.headers)
    ).json() == original


async def test_put_s3_key_checks(api: Api) -> None:
    inc, key, original = await _existing_incident(api)
    other_inc = new_id()
    other_key = await upload_single(api, other_inc, "f9", "b.mp4", b"abc")
    _, org_b, key_b = await api.new_key()
    cases = [
        (f"vms/{org_b}/{key_b}/{inc}/f1_a.mp4", "InvalidS3Key"),  # another organisation
        (other_key, "InvalidS3Key"),  # another incident
        ("test.mov", "InvalidS3Key"),
        (f"vms/{api.org_id}/{api.key_id}/{inc}/../../x", "InvalidS3Key"),
        (f"vms/{api.org_id}/{api.key_id}/{inc}/f2_missing.mp4", "UploadNotFound"),
    ]
    for bad, code in cases:
        r = await api.client.put(
            f"/v1/vms/incidents/{inc}",
            headers=api.headers,
            json={"uploaded_videos": [{"id": "v2", "s3_key": bad}]},
        )
        err = assert_error(r, 400, code)
        assert err["errors"][0]["field"] == "uploaded_videos.0.s3_key"
        r = await api.client.put(
            f"/v1/vms/incidents/{inc}",
            headers=api.headers,
            json={"uploaded_videos": [{"id": "v2", "s3_key": key, "s3_thumbnail_key": bad}]},
        )
        err = assert_error(r, 400, code)
        assert err["errors"][0]["field"] == "uploaded_videos.0.s3_thumbnail_key"
    # size must match the stored object; sha256 must be 64 hex digits.
    r = await api.client.put(
        f"/v1/vms/incidents/{inc}",
        headers=api.headers,
        json={"uploaded_videos": [{"id": "v2", "s3_key": key, "size": 11}]},
    )
    err = assert_error(r, 400, "SizeMismatch")
    assert err["errors"][0]["field"] == "uploaded_videos.0.size"
    for bad_sha in ("abc", "g" * 64, 5):
        r = await api.client.put(
            f"/v1/vms/incidents/{inc}",
            headers=api.headers,
            json={"uploaded_videos": [{"id": "v2", "s3_key": key, "sha256": bad_sha}]},
        )
        assert_error(r, 400, "ValidationError")
    r = await api.client.put(
        f"/v1/vms/incidents/{inc}",
        headers=api.headers,
        json={"uploaded_videos": [{"id": "v2", "s3_key": key, "size": -1}]},
    )
    assert_error(r, 400, "ValidationError")
    assert (
        await api.client.get(f"/v1/vms/incidents/{inc}", headers=api.headers)
    ).json() == original


async def test_oversized_bodies_are_413(api: Api) -> None:
    inc = new_id()
    big = b'{"title": "' + b"x" * (1024 * 1024) + b'"}'
    r = await api.client.put(f"/v1/vms/incidents/{inc}", headers=api.headers, content=big)
    assert_error(r, 413, "RequestTooLarge")

    async def chunks():  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b"x" * 65536

    r = await api.client.put(f"/v1/vms/incidents/{inc}", headers=api.headers, content=chunks())
    assert_error(r, 413, "RequestTooLarge")
    r = await api.client.get(f"/v1/vms/incidents/{inc}", headers=api.headers)
    assert_error(r, 404, "NoSuchIncident")


async def test_unknown_routes_and_methods(api: Api) -> None:
    assert_error(await api.client.get("/v1/nothing", headers=api.headers), 404, "NotFound")
    assert_error(await api.client.get("/", headers=api.headers), 404, "NotFound")
    r = await api.client.delete(f"/v1/vms/incidents/{new_id()}", headers=api.headers)
    assert_error(r, 405, "MethodNotAllowed")
    r = await api.client.post(f"/v1/vms/incidents/{new_id()}", headers=api.headers)
    assert_error(r, 405, "MethodNotAllowed")


async def test_list_bad_parameters(api: Api) -> None:
    for params in (
        {"per_page": 101},
        {"per_page": 0},
        {"page": 0},
        {"page": "x"},
        {"since": "soon"},
    ):
        r = await api.client.get("/v1/vms/incidents", params=params, headers=api.headers)
        body = assert_error(r, 400, "ValidationError")
        assert body["errors"][0]["field"] == next(iter(params))


async def test_unknown_fields_are_ignored(api: Api) -> None:
    inc = new_id()
    r = await api.client.put(
        f"/v1/vms/incidents/{inc}",
        headers=api.headers,
        json={"title": "t", "extra": {"deep": [1]}, "failed_videos": [{"id": "v", "x": 1}]},
    )
    assert r.status_code == 201
    assert "extra" not in r.json()["vms_incident"]


async def test_complete_then_upload_urls_is_409(api: Api) -> None:
    import os

    inc = new_id()
    done = await upload_multipart(api, inc, "f1", "a.mov", os.urandom(1000))
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls",
        headers=api.headers,
        json={
            "files": {
                "f1": {"part_count": 1, "s3_key": done["s3_key"], "upload_id": done["upload_id"]}
            }
        },
    )
    assert_error(r, 409, "UploadCompleted")
