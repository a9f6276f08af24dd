"""Push manifests: the spec's incident body with local paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmsbridge.client import ManifestError, load_manifest, parse_manifest


def test_wrapped_manifest(tmp_path: Path) -> None:
    body = {
        "vms_incident": {
            "id": "inc-1",
            "title": "Hey There!!",
            "latitude": 1.5,
            "longitude": 2.5,
            "custom": "kept",
            "uploaded_videos": [
                {
                    "id": "good-file-2",
                    "path": "videos/a.mp4",
                    "thumbnail_path": "a.jpg",
                    "camera_name": "Camera 01a",
                    "started_at": "2024-02-02T11:49:22Z",
                    "camera_id": "01000000-0001-babe-0007-48ea632b7f71",
                    "vendor_field": 7,
                },
                {"path": "/abs/b.mov"},
                {"id": "old", "s3_key": "vms/x/y/inc-1/old_o.mov"},
            ],
            "failed_videos": [{"id": "bad", "errors": ["G64 export failed"]}],
        }
    }
    path = tmp_path / "m.json"
    path.write_text(json.dumps(body))
    incident, videos = load_manifest(path)
    assert incident.id == "inc-1" and incident.title == "Hey There!!"
    assert incident.latitude == 1.5
    payload = incident.payload()
    assert payload["custom"] == "kept"
    assert "id" not in payload
    assert payload["uploaded_videos"] == [{"id": "old", "s3_key": "vms/x/y/inc-1/old_o.mov"}]
    assert payload["failed_videos"] == [{"id": "bad", "errors": ["G64 export failed"]}]
    a, b = videos
    assert Path(a.path) == tmp_path / "videos" / "a.mp4"
    assert Path(a.thumbnail_path or "") == tmp_path / "a.jpg"
    assert a.id == "good-file-2" and a.camera_name == "Camera 01a"
    assert a.metadata() == {
        "vendor_field": 7,
        "started_at": "2024-02-02T11:49:22Z",
        "camera_id": "01000000-0001-babe-0007-48ea632b7f71",
        "camera_name": "Camera 01a",
    }
    assert Path(b.path) == Path("/abs/b.mov") and b.id is None


def test_flat_manifest_and_id_override() -> None:
    incident, videos = parse_manifest(
        {"title": "t", "uploaded_videos": [{"path": "x.mp4"}]}, incident_id="given"
    )
    assert incident.id == "given" and len(videos) == 1
    incident, _ = parse_manifest({"id": "mine", "uploaded_videos": []}, incident_id="given")
    assert incident.id == "given"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "JSON object"),
        ({"title": "no id"}, "no incident"),
        ({"id": 5}, "must be a string"),
        ({"vms_incident": []}, "must be an object"),
        ({"id": "i", "uploaded_videos": ["x"]}, "video #1 must be an object"),
        ({"id": "i", "uploaded_videos": [{"id": "v"}]}, 'neither a local "path"'),
        ({"id": "i", "uploaded_videos": [{"path": ""}]}, "non-empty string"),
        ({"id": "i", "uploaded_videos": [{"path": "a", "id": 3}]}, '"id" must be a string'),
        ({"id": "i", "failed_videos": {"a": 1}}, "must be a list"),
    ],
)
def test_bad_manifests(data: object, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(data)


def test_unreadable_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(bad)
