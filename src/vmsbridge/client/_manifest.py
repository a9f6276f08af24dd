"""Push manifests: the spec's incident body, with a local ``path`` on each video to upload."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._errors import ManifestError
from ._models import _VIDEO_FIELDS, Incident, VideoFile

__all__ = ["load_manifest", "parse_manifest"]

_VIDEO_KNOWN = {"path", "id", "thumbnail_path", *_VIDEO_FIELDS}


def load_manifest(
    path: str | os.PathLike[str], *, incident_id: str | None = None
) -> tuple[Incident, list[VideoFile]]:
    """Read a manifest file; see `parse_manifest`. Relative video paths are relative to it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"manifest {p} is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {p} is not valid JSON: {exc}") from None
    return parse_manifest(data, base_dir=p.parent, incident_id=incident_id)


def parse_manifest(
    data: Any, *, base_dir: str | os.PathLike[str] = ".", incident_id: str | None = None
) -> tuple[Incident, list[VideoFile]]:
    """Split an incident body into the incident and the videos to upload.

    The body may be wrapped (``{"vms_incident": {...}}``) or flat. The incident id is its
    ``id`` field, or `incident_id` (which wins). Entries of ``uploaded_videos`` (or ``videos``)
    with a ``path`` become `VideoFile`s; entries without one (already uploaded, with an
    ``s3_key``) and ``failed_videos`` are passed to the API unchanged. Raises `ManifestError`.
    """
    if not isinstance(data, dict):
        raise ManifestError("a manifest must be a JSON object (an incident body)")
    body = data.get("vms_incident", data)
    if not isinstance(body, dict):
        raise ManifestError('"vms_incident" must be an object')
    body = dict(body)
    ident = incident_id or body.get("id")
    if not ident:
        raise ManifestError('the manifest has no incident "id" (or pass --incident-id)')
    if not isinstance(ident, str):
        raise ManifestError('the incident "id" must be a string')
    videos: list[VideoFile] = []
    passthrough: list[dict[str, Any]] = []
    entries = (body.pop("uploaded_videos", None) or []) + (body.pop("videos", None) or [])
    if not isinstance(entries, list):
        raise ManifestError('"uploaded_videos" must be a list')
    base = Path(base_dir)
    for i, entry in enumerate(entries):
        where = f"video #{i + 1}"
        if not isinstance(entry, dict):
            raise ManifestError(f"{where} must be an object")
        if "path" not in entry:
            if "s3_key" not in entry:
                raise ManifestError(f'{where} has neither a local "path" nor an "s3_key"')
            passthrough.append(entry)
            continue
        if not isinstance(entry["path"], str) or not entry["path"]:
            raise ManifestError(f'{where}: "path" must be a non-empty string')
        video_id = entry.get("id")
        if video_id is not None and not isinstance(video_id, str):
            raise ManifestError(f'{where}: "id" must be a string')
        thumb = entry.get("thumbnail_path")
        if thumb is not None and not isinstance(thumb, str):
            raise ManifestError(f'{where}: "thumbnail_path" must be a string')
        known = {k: entry[k] for k in _VIDEO_KNOWN - {"path", "thumbnail_path", "id"} if k in entry}
        videos.append(
            VideoFile(
                path=base / entry["path"],
                id=video_id,
                thumbnail_path=(base / thumb) if thumb else None,
                extra={k: v for k, v in entry.items() if k not in _VIDEO_KNOWN},
                **known,
            )
        )
    failed = body.pop("failed_videos", None) or []
    if not isinstance(failed, list):
        raise ManifestError('"failed_videos" must be a list')
    if passthrough:
        body["uploaded_videos"] = passthrough
    if failed:
        body["failed_videos"] = failed
    body.pop("id", None)
    try:
        incident = Incident.from_dict(body, incident_id=ident)
    except (TypeError, ValueError) as exc:
        raise ManifestError(str(exc)) from None
    return incident, videos
