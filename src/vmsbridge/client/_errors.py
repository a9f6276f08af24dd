"""Every exception the SDK raises, in one tree.

::

    VMSBridgeError                 base class: catch this to catch everything below
    ├── APIError                   the API answered with an error (status, code, message)
    │   └── NotFoundError          ... and that error was a 404 (missing incident, unknown upload)
    ├── TransportError             the API or the store could not be reached (connection refused,
    │                              reset, timeout), after every retry
    ├── StoreError                 the object store refused a presigned request
    │                              (``status``, ``code``, ``message`` from its S3 XML error)
    ├── IntegrityError             bytes did not arrive intact (part ETag is not the MD5 sent,
    │                              size or multipart ETag of the finished object differ)
    ├── SourceError                a local file is missing, unreadable or changed while uploading
    ├── UploadFailed               one file could not be uploaded; ``reasons`` says why
    └── ManifestError              a push manifest (JSON incident body) is invalid

`push_incident` never raises `UploadFailed` for a single video: a video that cannot be uploaded
is reported in the result's ``failed`` list (and in the incident's ``failed_videos``). It raises
only when the incident itself cannot be written (`APIError`, `TransportError`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "IntegrityError",
    "ManifestError",
    "NotFoundError",
    "SourceError",
    "StoreError",
    "TransportError",
    "UploadFailed",
    "VMSBridgeError",
]


class VMSBridgeError(Exception):
    """Base class of every error raised by `vmsbridge.client`."""


class APIError(VMSBridgeError):
    """The API answered with an error status.

    Attributes: ``status`` (HTTP status), ``code`` (the server's error code, e.g.
    ``"NoSuchUpload"``), ``message`` (human readable), ``body`` (the decoded JSON body, if any).
    """

    def __init__(
        self, status: int, message: str, code: str | None = None, body: Any = None
    ) -> None:
        self.status = status
        self.message = message
        self.code = code
        self.body = body
        super().__init__(f"{status} {code or 'Error'}: {message}")


class NotFoundError(APIError):
    """The API answered 404 (unknown incident, upload session or video)."""


class TransportError(VMSBridgeError):
    """The API or the store could not be reached, after every retry."""


class StoreError(VMSBridgeError):
    """The object store refused a presigned request (status, S3 error code and message)."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"store answered {status} {code or ''}: {message}".replace("  ", " "))


class IntegrityError(VMSBridgeError):
    """The bytes stored differ from the bytes sent (ETag, size or multipart ETag mismatch)."""


class SourceError(VMSBridgeError):
    """A local file is missing, unreadable, or changed while it was being uploaded."""


class UploadFailed(VMSBridgeError):
    """A file could not be uploaded. ``video_id`` names it; ``reasons`` lists why."""

    def __init__(self, video_id: str, reasons: list[str]) -> None:
        self.video_id = video_id
        self.reasons = reasons
        super().__init__(f"{video_id}: " + "; ".join(reasons))


class ManifestError(VMSBridgeError):
    """A push manifest is not a valid incident body."""
