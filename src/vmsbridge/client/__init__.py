"""vmsbridge.client: the SDK that exports incidents to a vmsbridge (or ALO VMS API) server.

An independent package over httpx: it imports nothing else from vmsbridge.

    from vmsbridge.client import Client, VideoFile

    with Client("http://127.0.0.1:8000", api_key) as client:
        result = client.push_incident({"id": "inc-1", "title": "Door"}, [VideoFile("cam1.mp4")])
    print(result.ok, result.incident["uploaded_videos"])
"""

from ._client import DEFAULT_CONCURRENCY, AsyncClient, Client
from ._errors import (
    APIError,
    IntegrityError,
    ManifestError,
    NotFoundError,
    SourceError,
    StoreError,
    TransportError,
    UploadFailed,
    VMSBridgeError,
)
from ._journal import Journal, default_state_dir
from ._manifest import load_manifest, parse_manifest
from ._models import (
    FailedVideo,
    Incident,
    ProgressEvent,
    PushResult,
    UploadedVideo,
    VideoFile,
)
from ._parts import (
    DEFAULT_MIN_PART_SIZE,
    DEFAULT_MULTIPART_THRESHOLD,
    choose_part_size,
    format_size,
    parse_size,
    part_size,
)
from ._thumbnail import first_keyframe_jpeg

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MIN_PART_SIZE",
    "DEFAULT_MULTIPART_THRESHOLD",
    "APIError",
    "AsyncClient",
    "Client",
    "FailedVideo",
    "Incident",
    "IntegrityError",
    "Journal",
    "ManifestError",
    "NotFoundError",
    "ProgressEvent",
    "PushResult",
    "SourceError",
    "StoreError",
    "TransportError",
    "UploadFailed",
    "UploadedVideo",
    "VMSBridgeError",
    "VideoFile",
    "choose_part_size",
    "default_state_dir",
    "first_keyframe_jpeg",
    "format_size",
    "load_manifest",
    "parse_manifest",
    "parse_size",
    "part_size",
]
