"""Authentication, permissions, and tenant isolation on every endpoint."""

from __future__ import annotations

import os

import pytest

from .conftest import MIN_PART, Api, assert_error, new_id, upload_multipart, upload_single

ENDPOINTS = [
    ("GET", "/v1/vms/incidents"),
    ("GET", "/v1/vms/incidents/i1"),
    ("PUT", "/v1/vms/incidents/i1"),
    ("GET", "/v1/vms/incidents/i1/create_multipart_upload?file_id=f&filename=a"),
    ("POST", "/v1/vms/incidents/i1/upload_urls"),
    ("POST", "/v1/vms/incidents/i1/complete_multipart_upload"),
    ("GET", "/v1/vms/incidents/i1/abort_multipart_upload?s3_key=k&upload_id=u"),
    ("GET", "/v1/vms/incidents/i1/list_parts?s3_key=k&upload_id=u"),
    ("GET", "/v1/vms/incidents/i1/videos/v1/download_url"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_auth_on_every_endpoint(api: Api, method: str, path: str) -> None:
    before = await api.count("upload_sessions"), await api.count("incidents")
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "MissingApiKey"),
        ({"x-api-key": ""}, 401, "MissingApiKey"),
        ({"Authorization": "Basic abc"}, 401, "MissingApiKey"),
        ({"x-api-key": "vmsb_unknown"}, 401, "InvalidApiKey"),
        ({"Authorization": "Bearer vmsb_unknown"}, 401, "InvalidApiKey"),
    ]
    no_perm, _, _ = await api.new_key(permissions=["other"])
    cases.append((no_perm, 403, "MissingPermission"))
    for headers, status, code in cases:
        r = await api.client.request(method, path, headers=headers, json={})
        assert_error(r, status, code)
    assert (await api.count("upload_sessions"), await api.count("incidents")) == before


async def test_revoked_key_is_401(api: Api) -> None:
    from vmsbridge.auth.service import revoke_key

    headers, _, key_id = await api.new_key()
    r = await api.client.get("/v1/vms/incidents", headers=headers)
    assert r.status_code == 200
    async with api.app.state.db.write_session() as s:
        assert await revoke_key(s, key_id)
    r = await api.client.get("/v1/vms/incidents", headers=headers)
    assert_error(r, 401, "InvalidApiKey")


async def test_keys_of_one_org_share_its_incidents(api: Api) -> None:
    other_key, org, _ = await api.new_key()
    inc = new_id()
    r = await api.client.put(f"/v1/vms/incidents/{inc}", headers=api.headers, json={"title": "t"})
    assert r.status_code == 201
    # Same organisation name -> same organisation.
    from vmsbridge.auth.service import create_key

    async with api.app.state.db.session() as s:
        from sqlalchemy import text

        name = (
            await s.execute(
                text("SELECT name FROM organisations WHERE id = :id"), {"id": api.org_id}
            )
        ).scalar_one()
    async with api.app.state.db.write_session() as s:
        k2 = await create_key(s, name)
    assert k2.org_id == api.org_id
    r = await api.client.get(f"/v1/vms/incidents/{inc}", headers={"x-api-key": k2.key})
    assert r.status_code == 200
    assert org != api.org_id
    r = await api.client.get(f"/v1/vms/incidents/{inc}", headers=other_key)
    assert_error(r, 404, "NoSuchIncident")


async def test_org_b_sees_nothing_of_org_a(api: Api) -> None:
    """Organisation B's key against organisation A's incident and uploads: every endpoint
    answers exactly as for something that does not exist, and A's data is unchanged."""
    inc = new_id()
    data = os.urandom(MIN_PART + 5)
    done = await upload_multipart(api, inc, "f1", "a.mov", data)
    thumb = await upload_single(api, inc, "t1", "a.jpg", b"jpg")
    r = await api.client.put(
        f"/v1/vms/incidents/{inc}",
        headers=api.headers,
        json={
            "title": "A's",
            "uploaded_videos": [{"id": "v1", "s3_key": done["s3_key"], "s3_thumbnail_key": thumb}],
        },
    )
    assert r.status_code == 201
    a_view = r.json()
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/create_multipart_upload",
        params={"file_id": "f2", "filename": "b.mov"},
        headers=api.headers,
    )
    open_upload = r.json()

    b, org_b, _ = await api.new_key()
    missing = new_id()

    async def both(method: str, tmpl: str, **kw: object) -> None:
        ra = await api.client.request(method, tmpl.format(inc=inc), headers=b, **kw)  # type: ignore[arg-type]
        rm = await api.client.request(method, tmpl.format(inc=missing), headers=b, **kw)  # type: ignore[arg-type]
        assert ra.status_code == rm.status_code == 404, (ra.text, rm.text)
        assert ra.json() == rm.json()

    await both("GET", "/v1/vms/incidents/{inc}")
    await both("GET", "/v1/vms/incidents/{inc}/videos/v1/download_url")
    await both("GET", "/v1/vms/incidents/{inc}/list_parts", params=open_upload)
    await both("GET", "/v1/vms/incidents/{inc}/abort_multipart_upload", params=open_upload)
    await both(
        "POST",
        "/v1/vms/incidents/{inc}/upload_urls",
        json={"files": {"f2": {"part_count": 1, **open_upload}}},
    )
    await both(
        "POST",
        "/v1/vms/incidents/{inc}/complete_multipart_upload",
        json={**open_upload, "parts": ["x"]},
    )
    await both(
        "POST",
        "/v1/vms/incidents/{inc}/complete_multipart_upload",
        json={"s3_key": done["s3_key"], "upload_id": done["upload_id"], "parts": ["x"]},
    )
    # B's list is empty; B cannot attach A's objects to its own incident of the same id.
    r = await api.client.get("/v1/vms/incidents", headers=b)
    assert r.json()["vms_incidents"] == [] and r.json()["total"] == 0
    r = await api.client.put(
        f"/v1/vms/incidents/{inc}",
        headers=b,
        json={"uploaded_videos": [{"id": "v1", "s3_key": done["s3_key"]}]},
    )
    assert_error(r, 400, "InvalidS3Key")
    # B's upload_urls for a single file lands under B's prefix, never A's.
    r = await api.client.post(
        f"/v1/vms/incidents/{inc}/upload_urls",
        headers=b,
        json={"files": {"f1": {"filename": "a.mov"}}},
    )
    assert r.json()["uploads"]["f1"]["s3_key"].startswith(f"vms/{org_b}/")
    # B's PUT of the same incident id creates B's own incident; A's is untouched.
    r = await api.client.put(f"/v1/vms/incidents/{inc}", headers=b, json={"title": "B's"})
    assert r.status_code == 201
    assert r.json()["vms_incident"]["uploaded_videos"] == []
    r = await api.client.get(f"/v1/vms/incidents/{inc}", headers=api.headers)
    assert r.json() == a_view
    r = await api.client.get(
        f"/v1/vms/incidents/{inc}/list_parts", params=open_upload, headers=api.headers
    )
    assert r.status_code == 200
