"""The object-storage contract the API server relies on, and the errors it raises.

The server only ever speaks S3 (DESIGN.md, "Object storage gateway"). `ObjectStore` is the small
interface the services use; `vmsbridge.storage.client.S3Gateway` implements it on any S3 endpoint
with aiobotocore, and presigns URLs with our own SigV4 presigner. No botocore exception leaks past
the gateway: every vendor error becomes one of the `StorageError` subclasses below.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


class StorageError(Exception):
    """Base of every storage failure. `code` is S3's error code where there is one."""

    code = "StorageError"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        if code:
            self.code = code


class ObjectNotFound(StorageError):
    """The object does not exist."""

    code = "NoSuchKey"


class NoSuchUpload(StorageError):
    """The multipart upload does not exist (never created, completed then gone, or aborted)."""

    code = "NoSuchUpload"


class InvalidPart(StorageError):
    """A listed part was never uploaded, or its ETag does not match."""

    code = "InvalidPart"


class InvalidPartOrder(StorageError):
    """The part list is not in ascending order."""

    code = "InvalidPartOrder"


class EntityTooSmall(StorageError):
    """A part other than the last is smaller than the minimum part size."""

    code = "EntityTooSmall"


class StorageUnavailable(StorageError):
    """The store could not be reached or answered with a server error."""

    code = "ServiceUnavailable"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What HEAD tells about a stored object. `etag` is unquoted."""

    key: str
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One uploaded part of a multipart upload. `etag` is unquoted."""

    part_number: int
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class CompletedObject:
    """The result of completing a multipart upload. `etag` is unquoted (`<md5hex>-N`)."""

    key: str
    etag: str
    size: int


class ObjectStore(abc.ABC):
    """Operations on one bucket. Keys are made by the server, never taken from a client."""

    @abc.abstractmethod
    async def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist; succeed when it does."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Raise `StorageUnavailable` unless the bucket answers (used by `/readyz`)."""

    @abc.abstractmethod
    async def create_multipart_upload(self, key: str, content_type: str | None = None) -> str:
        """Start a multipart upload of `key`; return its upload id."""

    @abc.abstractmethod
    async def complete_multipart_upload(
        self, key: str, upload_id: str, etags: list[str]
    ) -> CompletedObject:
        """Complete with `etags[i]` as part i+1 (quoted or not).

        Raises `NoSuchUpload`, `InvalidPart`, `InvalidPartOrder` or `EntityTooSmall`.
        """

    @abc.abstractmethod
    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        """Abort the upload and drop its parts. Raises `NoSuchUpload` when it is unknown."""

    @abc.abstractmethod
    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        """Every uploaded part, ascending (all pages). Raises `NoSuchUpload`."""

    @abc.abstractmethod
    async def head_object(self, key: str) -> ObjectInfo:
        """Size and ETag of `key`. Raises `ObjectNotFound`."""

    @abc.abstractmethod
    def presign_put(self, key: str, expires: int) -> str:
        """A presigned URL for a single-request PUT of `key` (signed headers: host only)."""

    @abc.abstractmethod
    def presign_upload_parts(
        self, key: str, upload_id: str, part_numbers: list[int], expires: int
    ) -> list[str]:
        """Presigned UploadPart URLs, one per part number, in the order given. Must be fast:
        10,000 URLs is one `upload_urls` request."""

    @abc.abstractmethod
    def presign_get(self, key: str, expires: int, filename: str | None = None) -> str:
        """A presigned GET URL (with `response-content-disposition` when `filename` is given)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""
