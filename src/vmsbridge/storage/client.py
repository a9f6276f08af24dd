"""`S3Gateway`: the `ObjectStore` contract on any S3 endpoint (aiobotocore + our presigner).

Calls (create/complete/abort/list parts, HEAD, bucket) go through one long-lived aiobotocore
client with path-style addressing; URLs are presigned locally by `SigV4Presigner`, which needs no
network and no event loop. Every botocore error is turned into a `StorageError` subclass here,
so nothing vendor-specific leaks into the services:

* `NoSuchKey` / HEAD 404 -> `ObjectNotFound`; `NoSuchUpload`, `InvalidPart`, `InvalidPartOrder`,
  `EntityTooSmall` -> the class of that name;
* connection failures, timeouts, HTTP 5xx, `SlowDown` -> `StorageUnavailable`;
* anything else -> `StorageError` carrying S3's code.

Lifecycle: `await gateway.start()` (or `async with gateway:`) opens the client, `await
gateway.close()` releases its connections; both in the event loop that makes the calls (the
HTTP connection pool is bound to it). Calls made before `start()` open the client lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

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
from .presign import SigV4Presigner, content_disposition

if TYPE_CHECKING:
    from vmsbridge.config import Settings

__all__ = ["S3Gateway"]

_ERRORS_BY_CODE: dict[str, type[StorageError]] = {
    "NoSuchKey": ObjectNotFound,
    "NoSuchUpload": NoSuchUpload,
    "InvalidPart": InvalidPart,
    "InvalidPartOrder": InvalidPartOrder,
    "EntityTooSmall": EntityTooSmall,
    # Throttling and transient server-side states: the store is (momentarily) unavailable.
    "SlowDown": StorageUnavailable,
    "ServiceUnavailable": StorageUnavailable,
    "InternalError": StorageUnavailable,
    "RequestTimeout": StorageUnavailable,
}


_session: Any = None


def _shared_session() -> Any:
    """One aiobotocore session per process: its loader caches the parsed S3 service model, so
    opening a client costs milliseconds instead of re-reading botocore's JSON every time."""
    global _session
    if _session is None:
        _session = get_session()
    return _session


class _NoSuchBucket(StorageError):
    """The bucket does not exist (only used inside `ensure_bucket`)."""

    code = "NoSuchBucket"


def _unquote(etag: str) -> str:
    return etag.strip().strip('"')


@contextlib.contextmanager
def _translated(what: str, *, missing: type[StorageError] | None = None) -> Iterator[None]:
    """Turn botocore failures inside the block into `StorageError`s (`raise ... from None`).

    `missing` is the error for a bare 404 (HEAD has no body, hence no S3 error code).
    """
    try:
        yield
    except ClientError as exc:
        _raise_client_error(exc, what, missing)
    except (BotoConnectionError, HTTPClientError) as exc:
        raise StorageUnavailable(
            f"{what}: object store unreachable ({type(exc).__name__})"
        ) from None
    except BotoCoreError as exc:
        raise StorageError(f"{what}: {exc}", code=type(exc).__name__) from None


def _raise_client_error(
    exc: ClientError, what: str, missing: type[StorageError] | None
) -> NoReturn:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = f"{what}: {error.get('Message') or code or status}"
    cls = _ERRORS_BY_CODE.get(code)
    if cls is None and status == 404 and missing is not None and code in ("", "404", "NotFound"):
        cls = missing
    if cls is None and status >= 500:
        cls = StorageUnavailable
    if cls is None:
        raise StorageError(message, code=code or str(status)) from None
    raise cls(message) from None


class S3Gateway(ObjectStore):
    """One bucket on one S3 endpoint.

    `endpoint_url` is where the server sends its S3 calls; `public_url` (default: the endpoint)
    is the `scheme://host[:port][/prefix]` written into presigned URLs, i.e. the address clients
    reach the store at. `max_pool_connections` bounds concurrent S3 calls; `max_attempts` counts
    the first try (botocore "standard" retry mode: retries throttling, 5xx and connection errors
    with backoff).
    """

    def __init__(
        self,
        *,
        endpoint_url: str,
        bucket: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        public_url: str | None = None,
        session_token: str | None = None,
        max_pool_connections: int = 64,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        list_parts_page_size: int = 1000,
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.public_url = (public_url or endpoint_url).rstrip("/")
        self.bucket = bucket
        self.region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._session_token = session_token
        self._list_parts_page_size = list_parts_page_size
        self.presigner = SigV4Presigner(
            self.public_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
        )
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
            # botocore >= 1.36 adds CRC checksums to uploads and validates them on downloads by
            # default; many S3-compatible stores reject or lack them. Only where S3 requires it.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock: asyncio.Lock | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        **kwargs: Any,
    ) -> S3Gateway:
        """A gateway configured by `settings`; explicit arguments override it.

        The server passes the embedded store's URL and credentials here (it knows them at start);
        with an external store they come from `VMSBRIDGE_S3_*`. Extra keyword arguments go to the
        constructor (pool size, timeouts, ...). Raises `ValueError` when the endpoint or the
        credentials are missing.
        """
        endpoint = endpoint_url or settings.s3_endpoint_url
        access = access_key_id or settings.s3_access_key_id
        secret = secret_access_key or settings.s3_secret_access_key
        if not endpoint:
            raise ValueError(
                "no S3 endpoint: set VMSBRIDGE_S3_ENDPOINT_URL or pass the embedded store's URL"
            )
        if not access or not secret:
            raise ValueError(
                "S3 credentials missing: set VMSBRIDGE_S3_ACCESS_KEY_ID and "
                "VMSBRIDGE_S3_SECRET_ACCESS_KEY (presigning needs them explicitly)"
            )
        return cls(
            endpoint_url=endpoint,
            public_url=settings.s3_public_url,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key_id=access,
            secret_access_key=secret,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"S3Gateway(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r})"

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the S3 client (idempotent). Optional: the first call opens it too."""
        await self._get_client()

    async def close(self) -> None:
        """Release connections. The gateway can be started again afterwards."""
        stack, self._stack, self._client = self._stack, None, None
        self._lock = None  # a later start() may run on another event loop
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                self._client = await stack.enter_async_context(
                    _shared_session().create_client(
                        "s3",
                        endpoint_url=self.endpoint_url,
                        region_name=self.region,
                        aws_access_key_id=self._access_key_id,
                        aws_secret_access_key=self._secret_access_key,
                        aws_session_token=self._session_token,
                        config=self._config,
                    )
                )
                self._stack = stack
        return self._client

    # -- bucket -----------------------------------------------------------------------------

    async def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist; succeed when it does (also under a race)."""
        client = await self._get_client()
        try:
            with _translated(f"HeadBucket {self.bucket}", missing=_NoSuchBucket):
                await client.head_bucket(Bucket=self.bucket)
            return
        except StorageError as exc:
            if exc.code != "NoSuchBucket":
                raise
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            with _translated(f"CreateBucket {self.bucket}"):
                await client.create_bucket(**params)
        except StorageError as exc:
            if exc.code == "BucketAlreadyOwnedByYou":
                return
            if exc.code == "BucketAlreadyExists":
                # Someone else's bucket (AWS), or ours created concurrently (some stores):
                # it is fine only if we can use it.
                await self.check()
                return
            raise

    async def check(self) -> None:
        """Raise `StorageUnavailable` unless the bucket answers a HEAD."""
        client = await self._get_client()
        try:
            with _translated(f"HeadBucket {self.bucket}"):
                await client.head_bucket(Bucket=self.bucket)
        except StorageUnavailable:
            raise
        except StorageError as exc:
            raise StorageUnavailable(f"bucket {self.bucket!r} does not answer: {exc}") from None

    # -- multipart --------------------------------------------------------------------------

    async def create_multipart_upload(self, key: str, content_type: str | None = None) -> str:
        """Start a multipart upload of `key`; return its upload id."""
        client = await self._get_client()
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if content_type:
            params["ContentType"] = content_type
        with _translated(f"CreateMultipartUpload {key}"):
            response = await client.create_multipart_upload(**params)
        return str(response["UploadId"])

    async def complete_multipart_upload(
        self, key: str, upload_id: str, etags: list[str]
    ) -> CompletedObject:
        """Complete with `etags[i]` as part i+1 (quoted or not); return key, ETag and size.

        Raises `NoSuchUpload`, `InvalidPart` (also for an empty list), `InvalidPartOrder` or
        `EntityTooSmall`. The size comes from a HEAD of the new object (CompleteMultipartUpload
        does not report it). Completing an upload that is already complete may repeat the answer
        (AWS, for a while; the embedded store) or raise `NoSuchUpload` (once S3 forgot the id):
        callers that promise idempotence keep their own record of the result.
        """
        if not etags:  # S3 would answer MalformedXML; to the caller it is a missing part
            raise InvalidPart(f"CompleteMultipartUpload {key}: at least one part is required")
        client = await self._get_client()
        parts = [
            {"PartNumber": number, "ETag": f'"{_unquote(etag)}"'}
            for number, etag in enumerate(etags, start=1)
        ]
        with _translated(f"CompleteMultipartUpload {key}", missing=NoSuchUpload):
            response = await client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        info = await self.head_object(key)
        etag = _unquote(str(response.get("ETag") or "")) or info.etag
        return CompletedObject(key=key, etag=etag, size=info.size)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        """Abort the upload and drop its parts. Raises `NoSuchUpload` when it is unknown."""
        client = await self._get_client()
        with _translated(f"AbortMultipartUpload {key}", missing=NoSuchUpload):
            await client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    async def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        """Every uploaded part, ascending, following `IsTruncated` pages. Raises `NoSuchUpload`."""
        client = await self._get_client()
        parts: list[PartInfo] = []
        marker = 0
        while True:
            with _translated(f"ListParts {key}", missing=NoSuchUpload):
                response = await client.list_parts(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MaxParts=self._list_parts_page_size,
                    PartNumberMarker=marker,
                )
            page = response.get("Parts", [])
            parts.extend(
                PartInfo(
                    part_number=int(p["PartNumber"]),
                    size=int(p["Size"]),
                    etag=_unquote(str(p["ETag"])),
                )
                for p in page
            )
            next_marker = int(response.get("NextPartNumberMarker") or 0)
            if not response.get("IsTruncated") or not page or next_marker <= marker:
                break
            marker = next_marker
        parts.sort(key=lambda p: p.part_number)
        return parts

    # -- objects ----------------------------------------------------------------------------

    async def head_object(self, key: str) -> ObjectInfo:
        """Size and ETag (unquoted) of `key`. Raises `ObjectNotFound`."""
        client = await self._get_client()
        with _translated(f"HeadObject {key}", missing=ObjectNotFound):
            response = await client.head_object(Bucket=self.bucket, Key=key)
        return ObjectInfo(
            key=key, size=int(response["ContentLength"]), etag=_unquote(str(response["ETag"]))
        )

    # -- presigned URLs (local computation, no I/O) -----------------------------------------

    def presign_put(self, key: str, expires: int, *, now: datetime | None = None) -> str:
        """A presigned PutObject URL for `key` (signed headers: host only)."""
        return self.presigner.presign_put(self.bucket, key, expires, now=now)

    def presign_upload_parts(
        self,
        key: str,
        upload_id: str,
        part_numbers: list[int],
        expires: int,
        *,
        now: datetime | None = None,
    ) -> list[str]:
        """Presigned UploadPart URLs, one per part number, in the order given (a few µs each)."""
        return self.presigner.presign_upload_parts(
            self.bucket, key, upload_id, part_numbers, expires, now=now
        )

    def presign_get(
        self,
        key: str,
        expires: int,
        filename: str | None = None,
        *,
        now: datetime | None = None,
    ) -> str:
        """A presigned GET URL; with `filename`, the response is an attachment of that name."""
        disposition = content_disposition(filename) if filename is not None else None
        return self.presigner.presign_get(
            self.bucket, key, expires, response_content_disposition=disposition, now=now
        )
