"""`AsyncClient` (the SDK) and `Client` (its synchronous facade)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ._errors import APIError, NotFoundError, TransportError
from ._journal import Journal
from ._models import Incident, ProgressEvent, PushResult, VideoFile
from ._parts import (
    DEFAULT_MIN_PART_SIZE,
    DEFAULT_MULTIPART_THRESHOLD,
    backoff_delay,
    parse_retry_after,
)

__all__ = ["DEFAULT_CONCURRENCY", "AsyncClient", "Client"]

log = logging.getLogger("vmsbridge.client")

#: Parts in flight at once, chosen by measurement (500 MB file, 2-core box, embedded store):
#: straight to the store on loopback the push is CPU-bound and 2/4/8/16 are within noise
#: (4.0-5.6 s, ~100-125 MB/s); through a link capped at 20 MB/s per connection (like a long-RTT
#: WAN path) 2/4/8/16 give 27/45/71/87 MB/s. 8 gets most of that gain at moderate memory: a slot
#: costs ~4 MB (1 GiB push, 2 MiB chunks: peak RSS 64/72/86/101/126 MB at 1/2/4/8/16).
DEFAULT_CONCURRENCY = 8

ProgressCallback = Callable[[ProgressEvent], None]
T = TypeVar("T")

# Statuses worth retrying even for a request that may have been processed: the server says it
# did not (429, 503) or the answer came from a proxy in front of it (502, 504).
_RETRY_ALWAYS = {429, 502, 503, 504}


class AsyncClient:
    """The vmsbridge / ALO VMS API client.

    ``api_url`` is the server's base URL (``http://host:8000``; ``/v1`` is added unless present);
    ``api_key`` is sent as ``x-api-key`` to the API only, never to the object store.

    Options: ``transport`` (an httpx transport, for tests), ``concurrency`` (parts in flight),
    ``multipart_threshold`` (bytes; files this big or bigger go multipart), ``min_part_size``,
    ``retries`` (per request, after the first try), ``backoff``/``max_backoff`` (seconds),
    ``timeout`` (seconds without progress before a request is abandoned and retried),
    ``state_dir`` (where the resume journal lives), ``resume`` (False: no journal).

    Low-level methods mirror the API's endpoints one to one and return its decoded JSON;
    `push_incident` does a whole export. Use as ``async with AsyncClient(...) as client:``.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        min_part_size: int = DEFAULT_MIN_PART_SIZE,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 60.0,
        state_dir: str | os.PathLike[str] | None = None,
        resume: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not api_key:
            raise ValueError("an API key is required")
        base = api_url.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self.api_url = base
        self.concurrency = concurrency
        self.multipart_threshold = multipart_threshold
        self.min_part_size = min_part_size
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.state_dir = state_dir
        self.resume = resume
        timeouts = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        self._api = httpx.AsyncClient(
            base_url=base,
            headers={"x-api-key": api_key, "user-agent": "vmsbridge-client"},
            timeout=timeouts,
            transport=transport,
        )
        # One pool for the store: every part of every file shares its connections.
        pool = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency)
        self._store = httpx.AsyncClient(
            timeout=timeouts, limits=pool, transport=transport, headers={"user-agent": "vmsbridge"}
        )
        self._journal: Journal | None = None
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pools and the journal."""
        await self._api.aclose()
        await self._store.aclose()
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # -- the API, one method per endpoint -------------------------------------------------------

    async def create_multipart_upload(
        self, incident_id: str, file_id: str, filename: str
    ) -> dict[str, Any]:
        """Start a multipart upload; returns ``{"s3_key", "upload_id"}``."""
        return await self._call(
            "GET",
            f"/vms/incidents/{incident_id}/create_multipart_upload",
            params={"file_id": file_id, "filename": filename},
            idempotent=False,  # a retry after a lost answer would start a second upload
        )

    async def upload_urls(
        self, incident_id: str, files: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Presigned PUT URLs: ``files`` maps a file id to ``{"filename"}`` (one URL) or to
        ``{"s3_key", "upload_id", "part_count"}`` (one URL per part). Returns the API's body
        (``uploads[file_id]["signed_urls"]``, ``max_upload_size_mb``)."""
        return await self._call(
            "POST", f"/vms/incidents/{incident_id}/upload_urls", json={"files": dict(files)}
        )

    async def complete_multipart_upload(
        self, incident_id: str, s3_key: str, upload_id: str, parts: Sequence[str]
    ) -> dict[str, Any]:
        """Finish a multipart upload from the part ETags in part order; returns
        ``{"s3_key", "upload_id", "etag", "size"}``."""
        return await self._call(
            "POST",
            f"/vms/incidents/{incident_id}/complete_multipart_upload",
            json={"s3_key": s3_key, "upload_id": upload_id, "parts": list(parts)},
        )

    async def abort_multipart_upload(
        self, incident_id: str, s3_key: str, upload_id: str
    ) -> dict[str, Any]:
        """Abort a multipart upload (idempotent); returns ``{"s3_key", "upload_id"}``."""
        return await self._call(
            "GET",
            f"/vms/incidents/{incident_id}/abort_multipart_upload",
            params={"s3_key": s3_key, "upload_id": upload_id},
        )

    async def list_parts(self, incident_id: str, s3_key: str, upload_id: str) -> dict[str, Any]:
        """Parts the store holds for an open upload: ``{"parts": [{"part_number", "etag",
        "size"}]}``. Raises `NotFoundError` when the upload is unknown, finished or aborted."""
        return await self._call(
            "GET",
            f"/vms/incidents/{incident_id}/list_parts",
            params={"s3_key": s3_key, "upload_id": upload_id},
        )

    async def get_incident(self, incident_id: str) -> dict[str, Any]:
        """The incident (the ``vms_incident`` object). Raises `NotFoundError` when missing."""
        body = await self._call("GET", f"/vms/incidents/{incident_id}")
        return _unwrap(body)

    async def put_incident(self, incident_id: str, incident: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update an incident (body wrapped in ``vms_incident`` or flat); returns the
        incident as stored (unwrapped)."""
        _, body = await self._put_incident(incident_id, incident)
        return _unwrap(body)

    async def download_url(self, incident_id: str, video_id: str) -> dict[str, Any]:
        """A presigned GET URL for an uploaded video: ``{"url", "expires_in"}``."""
        return await self._call(
            "GET", f"/vms/incidents/{incident_id}/videos/{video_id}/download_url"
        )

    async def list_incidents(self, *, page: int = 1, per_page: int = 50) -> dict[str, Any]:
        """One page of the organisation's incidents, as the API returns it."""
        return await self._call(
            "GET", "/vms/incidents", params={"page": page, "per_page": per_page}
        )

    # -- the whole export ------------------------------------------------------------------------

    async def push_incident(
        self,
        incident: Incident | Mapping[str, Any],
        videos: Sequence[VideoFile | str | os.PathLike[str]],
        *,
        progress: ProgressCallback | None = None,
        thumbnails: bool = True,
    ) -> PushResult:
        """Upload every video, then create/update the incident with ``uploaded_videos`` and
        ``failed_videos``; returns a `PushResult`.

        Files at or over ``multipart_threshold`` go multipart (parallel parts, resumable through
        the journal); smaller ones take one presigned PUT. A video that cannot be uploaded is
        reported in ``failed_videos`` (its multipart upload aborted) and the others still go.
        A video without ``thumbnail_path`` gets a JPEG of its first key frame when `thumbnails`
        is true and it decodes. ``progress`` receives `ProgressEvent`s. Raises `APIError` or
        `TransportError` only when the incident itself cannot be written.
        """
        from ._upload import Pusher

        if not isinstance(incident, Incident):
            incident = Incident.from_dict(dict(incident))
        files = [v if isinstance(v, VideoFile) else VideoFile(path=v) for v in videos]
        journal = self._open_journal() if self.resume else None
        pusher = Pusher(self, incident.id, journal=journal, progress=progress)
        try:
            return await pusher.push(incident, files, thumbnails=thumbnails)
        finally:
            pusher.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _open_journal(self) -> Journal:
        if self._journal is None:
            self._journal = Journal.in_dir(self.state_dir)
            self._journal.prune()  # entries untouched for 30 days: the server reaped those uploads
        return self._journal

    async def _put_incident(
        self, incident_id: str, incident: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        return await self._request("PUT", f"/vms/incidents/{incident_id}", json=dict(incident))

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        _, body = await self._request(method, path, params=params, json=json, idempotent=idempotent)
        return body

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        """One API call with retries: transport errors and 5xx for idempotent calls, only
        connection failures, 429 and 502-504 for the others. Raises APIError/TransportError."""
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                resp = await self._api.request(method, path, params=params, json=json)
            except httpx.TransportError as exc:
                connect_failed = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if (idempotent or connect_failed) and attempt < self.retries:
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    raise TransportError(
                        f"{method} {path}: {type(exc).__name__}: {exc} "
                        f"(after {attempt + 1} attempts)"
                    ) from exc
            else:
                status = resp.status_code
                retryable = status in _RETRY_ALWAYS or (idempotent and status >= 500)
                if status < 400:
                    return status, _json(resp)
                if not retryable or attempt >= self.retries:
                    raise api_error(resp)
                problem = f"answered {status}"
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
            attempt += 1
            delay = backoff_delay(attempt, base=self.backoff, cap=self.max_backoff)
            if retry_after is not None:
                delay = max(delay, min(retry_after, 300.0))
            log.warning(
                "%s %s %s; retry %d/%d in %.1fs",
                method,
                path,
                problem,
                attempt,
                self.retries,
                delay,
            )
            await self._sleep(delay)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {"data": body}


def _unwrap(body: dict[str, Any]) -> dict[str, Any]:
    inner = body.get("vms_incident")
    return inner if isinstance(inner, dict) else body


def api_error(resp: httpx.Response) -> APIError:
    """The `APIError` for an error answer (``{"status", "message", "code"}``, or plain text)."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    message = code = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail")
        code = body.get("code")
        if isinstance(message, list | dict):
            message = str(message)
    if not message:
        message = resp.text.strip()[:500] or resp.reason_phrase or "error"
    cls = NotFoundError if resp.status_code == 404 else APIError
    return cls(resp.status_code, str(message), code, body)


class Client:
    """Synchronous facade over `AsyncClient` (same arguments, same methods, blocking).

    It runs its own event loop, so do not use it from inside a running one.
    """

    def __init__(self, api_url: str, api_key: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = AsyncClient(api_url, api_key, **options)

    @property
    def aio(self) -> AsyncClient:
        """The underlying `AsyncClient`."""
        return self._client

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and its event loop."""
        if not self._loop.is_closed():
            # After a KeyboardInterrupt the push's tasks are still pending on the loop: cancel
            # them (a cancelled multipart upload is kept, for the next run to resume).
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._run(asyncio.gather(*pending, return_exceptions=True))
            self._run(self._client.aclose())
            self._loop.close()

    def _run(self, coro: Awaitable[T]) -> T:
        return self._loop.run_until_complete(coro)

    def create_multipart_upload(
        self, incident_id: str, file_id: str, filename: str
    ) -> dict[str, Any]:
        """See `AsyncClient.create_multipart_upload`."""
        return self._run(self._client.create_multipart_upload(incident_id, file_id, filename))

    def upload_urls(
        self, incident_id: str, files: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Any]:
        """See `AsyncClient.upload_urls`."""
        return self._run(self._client.upload_urls(incident_id, files))

    def complete_multipart_upload(
        self, incident_id: str, s3_key: str, upload_id: str, parts: Sequence[str]
    ) -> dict[str, Any]:
        """See `AsyncClient.complete_multipart_upload`."""
        return self._run(
            self._client.complete_multipart_upload(incident_id, s3_key, upload_id, parts)
        )

    def abort_multipart_upload(
        self, incident_id: str, s3_key: str, upload_id: str
    ) -> dict[str, Any]:
        """See `AsyncClient.abort_multipart_upload`."""
        return self._run(self._client.abort_multipart_upload(incident_id, s3_key, upload_id))

    def list_parts(self, incident_id: str, s3_key: str, upload_id: str) -> dict[str, Any]:
        """See `AsyncClient.list_parts`."""
        return self._run(self._client.list_parts(incident_id, s3_key, upload_id))

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        """See `AsyncClient.get_incident`."""
        return self._run(self._client.get_incident(incident_id))

    def put_incident(self, incident_id: str, incident: Mapping[str, Any]) -> dict[str, Any]:
        """See `AsyncClient.put_incident`."""
        return self._run(self._client.put_incident(incident_id, incident))

    def download_url(self, incident_id: str, video_id: str) -> dict[str, Any]:
        """See `AsyncClient.download_url`."""
        return self._run(self._client.download_url(incident_id, video_id))

    def list_incidents(self, *, page: int = 1, per_page: int = 50) -> dict[str, Any]:
        """See `AsyncClient.list_incidents`."""
        return self._run(self._client.list_incidents(page=page, per_page=per_page))

    def push_incident(
        self,
        incident: Incident | Mapping[str, Any],
        videos: Sequence[VideoFile | str | os.PathLike[str]],
        *,
        progress: ProgressCallback | None = None,
        thumbnails: bool = True,
    ) -> PushResult:
        """See `AsyncClient.push_incident`."""
        return self._run(
            self._client.push_incident(incident, videos, progress=progress, thumbnails=thumbnails)
        )
