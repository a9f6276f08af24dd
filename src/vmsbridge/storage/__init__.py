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

__all__ = [
    "CompletedObject",
    "EntityTooSmall",
    "InvalidPart",
    "InvalidPartOrder",
    "NoSuchUpload",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "PartInfo",
    "StorageError",
    "StorageUnavailable",
]
