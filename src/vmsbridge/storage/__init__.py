"""Object storage gateway: the server's only way to its bytes is the S3 API."""

from .base import (
    CompletedObject,
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    NoSuchUpload,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
    StorageError,
    StorageUnavailable,
)
from .client import S3Gateway
from .presign import SIGV4_MAX_EXPIRES, SigV4Presigner, content_disposition, sigv4_signing_key

__all__ = [
    "SIGV4_MAX_EXPIRES",
    "CompletedObject",
    "EntityTooSmall",
    "InvalidPart",
    "InvalidPartOrder",
    "NoSuchUpload",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "PartInfo",
    "S3Gateway",
    "SigV4Presigner",
    "StorageError",
    "StorageUnavailable",
    "content_disposition",
    "sigv4_signing_key",
]
