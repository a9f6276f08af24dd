"""Request and response schemas of the upload endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from vmsbridge.config import S3_MAX_PARTS


class FileEntryIn(BaseModel):
    """One entry of `upload_urls`' `files`: multipart (part_count, s3_key, upload_id) or a single
    file (filename). Which fields are required is checked by the service, naming the field."""

    model_config = ConfigDict(extra="ignore")

    part_count: int | None = Field(None, ge=1, le=S3_MAX_PARTS)
    s3_key: str | None = None
    upload_id: str | None = None
    filename: str | None = None


class UploadUrlsIn(BaseModel):
    """Body of `POST .../upload_urls`."""

    model_config = ConfigDict(extra="ignore")

    files: dict[str, FileEntryIn] = Field(description="File objects by file id.")


class CompleteIn(BaseModel):
    """Body of `POST .../complete_multipart_upload`: ETags in part order, quoted or not."""

    model_config = ConfigDict(extra="ignore")

    s3_key: str = Field(min_length=1)
    upload_id: str = Field(min_length=1)
    parts: list[str] = Field(min_length=1, max_length=S3_MAX_PARTS)


class MultipartOut(BaseModel):
    """`{s3_key, upload_id}`: create and abort."""

    s3_key: str
    upload_id: str


class CompleteOut(MultipartOut):
    """Completion: the object's ETag (unquoted, `<md5>-N`) and size in bytes."""

    etag: str
    size: int


class UploadEntryOut(BaseModel):
    """One entry of `uploads`: a list of part URLs (multipart, part 1 first) or one URL."""

    s3_key: str
    signed_urls: list[str] | str


class UploadUrlsOut(BaseModel):
    """Answer of `upload_urls`. `max_upload_size_mb` is -1 when unlimited."""

    incident_id: str
    max_upload_size_mb: int
    uploads: dict[str, UploadEntryOut]


class PartOut(BaseModel):
    """One uploaded part (ETag unquoted)."""

    part_number: int
    etag: str
    size: int


class ListPartsOut(MultipartOut):
    """Answer of `list_parts`: every part uploaded so far, ascending."""

    parts: list[PartOut]
