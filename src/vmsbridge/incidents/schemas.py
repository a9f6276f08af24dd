"""Request and response schemas of the incident endpoints (apart from the ORM models).

Unknown JSON fields are ignored (DESIGN.md). Times are ISO 8601 in (a time without an offset is
taken as UTC) and UTC with milliseconds out (`2024-02-02T11:04:41.030Z`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from vmsbridge.storage.keys import is_identifier

Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]


def to_utc_naive(value: dt.datetime | None) -> dt.datetime | None:
    """Stored form of a time: naive UTC."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def format_time(value: dt.datetime | None) -> str | None:
    """`2024-02-02T11:04:41.030Z` (stored times are naive UTC)."""
    if value is None:
        return None
    if value.year >= 1000:  # isoformat is C and ~10x faster than strftime (a GET formats five)
        return value.isoformat(timespec="milliseconds") + "Z"
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=100_000)


class VideoIn(_In):
    """A video object of the spec, as the client sends it."""

    id: str = Field(description="Unique id of the video within the incident.")
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    camera_id: str | None = None
    camera_name: str | None = None
    camera_description: str | None = None
    camera_longitude: Longitude | None = None
    camera_latitude: Latitude | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        if not is_identifier(v):
            raise ValueError(
                "must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
            )
        return v


class UploadedVideoIn(VideoIn):
    """An uploaded video: `s3_key` is required and must name a stored object."""

    s3_key: str = Field(description="Key returned by create_multipart_upload or upload_urls.")
    s3_thumbnail_key: str | None = None
    size: int | None = Field(None, ge=0, description="Bytes; must equal the stored object's.")
    sha256: Sha256 | None = Field(None, description="SHA-256 of the file, hex (as reported).")


class FailedVideoIn(VideoIn):
    """A video that could not be uploaded. `errors` is accepted as an alias of `upload_errors`."""

    upload_errors: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("upload_errors", "errors")
    )


class IncidentIn(_In):
    """Body of `PUT /v1/vms/incidents/{incident_id}` (flat or wrapped in `vms_incident`)."""

    title: str | None = None
    description: str | None = None
    incident_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    uploaded_videos: list[UploadedVideoIn] = Field(default_factory=list, max_length=10_000)
    failed_videos: list[FailedVideoIn] = Field(default_factory=list, max_length=10_000)


class IncidentPutBody(BaseModel):
    """The wrapped form of the PUT body (the spec's example). The flat form is `IncidentIn`."""

    vms_incident: IncidentIn


# ---- responses (documentation of what the services return) ----


class _VideoOutBase(BaseModel):
    id: str
    started_at: str | None = None
    ended_at: str | None = None
    camera_id: str | None = None
    camera_name: str | None = None
    camera_description: str | None = None
    camera_longitude: float | None = None
    camera_latitude: float | None = None


class UploadedVideoOut(_VideoOutBase):
    """An uploaded video as GET returns it."""

    s3_key: str
    s3_thumbnail_key: str | None = None
    size: int | None = None
    sha256: str | None = None


class FailedVideoOut(_VideoOutBase):
    """A failed video as GET returns it."""

    upload_errors: list[str]


class IncidentOut(BaseModel):
    """An incident as GET returns it."""

    id: str
    title: str | None = None
    description: str | None = None
    incident_at: str | None = None
    created_at: str
    updated_at: str
    longitude: float | None = None
    latitude: float | None = None
    uploaded_videos: list[UploadedVideoOut]
    failed_videos: list[FailedVideoOut]


class IncidentEnvelope(BaseModel):
    """`{"vms_incident": {...}}`: the body of GET and PUT."""

    vms_incident: IncidentOut


class IncidentList(BaseModel):
    """A page of incidents, newest first."""

    vms_incidents: list[IncidentOut]
    page: int
    per_page: int
    total: int


class DownloadUrlOut(BaseModel):
    """A presigned GET URL for an uploaded video (or its thumbnail)."""

    incident_id: str
    video_id: str
    s3_key: str
    url: str
    expires_in: int
