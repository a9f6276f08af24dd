"""The SDK's value types: what you push (`Incident`, `VideoFile`) and what you get back."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["FailedVideo", "Incident", "ProgressEvent", "PushResult", "UploadedVideo", "VideoFile"]

_INCIDENT_FIELDS = (
    "title",
    "description",
    "incident_at",
    "created_at",
    "updated_at",
    "latitude",
    "longitude",
)
_VIDEO_FIELDS = (
    "started_at",
    "ended_at",
    "camera_id",
    "camera_name",
    "camera_description",
    "camera_latitude",
    "camera_longitude",
)


@dataclass
class VideoFile:
    """A local video to upload, with the metadata the incident records about it.

    `id` defaults to a safe identifier made from the file name. `thumbnail_path` is an existing
    JPEG; without one, `push_incident` makes one from the first key frame (unless disabled).
    `extra` holds any other video fields, passed to the API unchanged.
    """

    path: str | os.PathLike[str]
    id: str | None = None
    thumbnail_path: str | os.PathLike[str] | None = None
    started_at: str | None = None
    ended_at: str | None = None
    camera_id: str | None = None
    camera_name: str | None = None
    camera_description: str | None = None
    camera_latitude: float | None = None
    camera_longitude: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The video's fields for the incident body (without id, keys or errors)."""
        out = dict(self.extra)
        for name in _VIDEO_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass
class Incident:
    """An incident's own fields. `extra` holds any other fields, passed to the API unchanged
    (including ``uploaded_videos``/``failed_videos`` entries that need no upload)."""

    id: str
    title: str | None = None
    description: str | None = None
    incident_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, incident_id: str | None = None) -> Incident:
        """Build from an incident body (wrapped in ``vms_incident`` or flat)."""
        body = dict(data.get("vms_incident", data))
        ident = incident_id or body.pop("id", None)
        body.pop("id", None)
        if not ident or not isinstance(ident, str):
            raise ValueError("the incident needs an id")
        known = {k: body.pop(k) for k in _INCIDENT_FIELDS if k in body}
        return cls(id=ident, extra=body, **known)

    def payload(self) -> dict[str, Any]:
        """The incident's fields for the PUT body (the id is in the URL)."""
        out = dict(self.extra)
        for name in _INCIDENT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass
class UploadedVideo:
    """A video stored whole: where, how big, its SHA-256, and how many bytes this run sent."""

    id: str
    s3_key: str
    size: int
    sha256: str
    etag: str
    s3_thumbnail_key: str | None = None
    bytes_sent: int = 0
    #: True when the journal said it was already stored and nothing was sent.
    skipped: bool = False


@dataclass
class FailedVideo:
    """A video that could not be uploaded, with the reasons (sent as ``upload_errors``)."""

    id: str
    errors: list[str]


@dataclass
class PushResult:
    """What `push_incident` did. `response` is the server's body for the incident PUT;
    `incident` is the ``vms_incident`` inside it."""

    incident_id: str
    response: dict[str, Any]
    created: bool
    uploaded: list[UploadedVideo]
    failed: list[FailedVideo]

    @property
    def incident(self) -> dict[str, Any]:
        """The incident as the server returned it (unwrapped)."""
        inner = self.response.get("vms_incident", self.response)
        return inner if isinstance(inner, dict) else self.response

    @property
    def ok(self) -> bool:
        """True when every video arrived."""
        return not self.failed

    @property
    def bytes_sent(self) -> int:
        """Bytes of file content sent by this run (retries included)."""
        return sum(v.bytes_sent for v in self.uploaded)


@dataclass
class ProgressEvent:
    """A progress report for the ``progress=`` callback.

    kind: ``start`` (``total`` = file size, ``done`` = bytes already stored by an earlier run),
    ``advance`` (``advance`` bytes sent, negative when a failed attempt is rolled back),
    ``done``, ``failed`` (``message`` says why), ``skipped`` (already uploaded).
    """

    kind: Literal["start", "advance", "done", "failed", "skipped"]
    video_id: str
    file_id: str
    total: int = 0
    done: int = 0
    advance: int = 0
    message: str = ""
