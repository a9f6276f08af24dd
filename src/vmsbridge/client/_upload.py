"""The transfer engine behind `AsyncClient.push_incident`.

How bytes move: every request body is streamed from the file in `CHUNK_SIZE` reads done in a
thread (hashing the chunk there too: hashlib releases the GIL), so memory is bounded by
concurrency x chunk, never by file or part size. One semaphore of ``concurrency`` slots covers
every PUT of every file; files themselves go a few at a time.

Integrity: each PUT's ETag must equal the MD5 of the bytes sent, else the PUT is retried. A
multipart object's final ETag is checked against the MD5-of-MD5s; its size against the file.
The whole file's SHA-256 is computed in order: while sending for a single PUT, and by a
sequential pass in a thread, concurrent with the (out of order) parallel parts, for multipart.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast
from xml.etree import ElementTree

import httpx

from ._errors import (
    IntegrityError,
    NotFoundError,
    SourceError,
    StoreError,
    TransportError,
    VMSBridgeError,
)
from ._journal import Fingerprint, Journal, JournalEntry
from ._models import FailedVideo, Incident, ProgressEvent, PushResult, UploadedVideo, VideoFile
from ._parts import (
    CHUNK_SIZE,
    S3_MAX_PARTS,
    backoff_delay,
    choose_part_size,
    clean_etag,
    format_size,
    multipart_etag,
    parse_retry_after,
    part_count,
    part_range,
    presigned_expiry,
    redact_url,
    safe_identifier,
)
from ._thumbnail import first_keyframe_jpeg

if TYPE_CHECKING:
    from ._client import AsyncClient, ProgressCallback

log = logging.getLogger("vmsbridge.client")
T = TypeVar("T")

#: How many times in a row one PUT may meet an expired URL (and fetch fresh ones) before the
#: file fails: with a sane URL lifetime this never happens twice.
MAX_URL_REFRESHES = 20
#: Files uploaded at once (their parts share the ``concurrency`` slots).
MAX_FILES_AT_ONCE = 4
#: Threads that read and hash (plus one for the whole-file SHA-256 pass). Reads come from the
#: page cache or read-ahead and hashing releases the GIL, so a few threads keep every core busy;
#: more only add glibc malloc arenas, each keeping freed chunk buffers (measured: 10 threads
#: for 8 slots cost ~30 MiB more peak RSS than 4 with 2-4 MiB chunks, for no speed).
IO_THREADS = max(4, min(os.cpu_count() or 1, 16))
#: Read size of the sequential SHA-256 pass (into one reused buffer).
HASH_READ = 4 * 1024 * 1024


@dataclass
class _Source:
    """Bytes to upload: a file on disk, or bytes in memory (a generated thumbnail)."""

    name: str
    fingerprint: Fingerprint
    data: bytes | None = None

    @property
    def size(self) -> int:
        return self.fingerprint.size

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        return open(self.fingerprint.path, "rb")


@dataclass
class _Stored:
    s3_key: str
    etag: str
    size: int
    sha256: str
    bytes_sent: int
    skipped: bool


def _readable(path: str) -> Fingerprint:
    """The file's fingerprint; raises OSError (with a clear reason) when it cannot be read."""
    fp = Fingerprint.of(path)
    if not os.path.isfile(fp.path):
        raise IsADirectoryError(21, "not a regular file")
    with open(fp.path, "rb"):
        pass
    return fp


def _read_hashed(f: IO[bytes], n: int, hashes: tuple[Any, ...]) -> bytes:
    data = f.read(n)
    for h in hashes:
        h.update(data)
    return data


def _hash_range(src: _Source, offset: int, length: int, algo: str) -> str:
    h = hashlib.new(algo, usedforsecurity=False)
    buf = memoryview(bytearray(min(HASH_READ, max(length, 1))))
    with src.open() as f:
        f.seek(offset)
        remaining = length
        while remaining:
            n = cast(io.BufferedIOBase, f).readinto(buf[: min(len(buf), remaining)])
            if not n:
                raise SourceError(f"{src.name} shrank while it was being uploaded")
            h.update(buf[:n])
            remaining -= n
    return h.hexdigest()


def _open_at(src: _Source, offset: int) -> IO[bytes]:
    f = src.open()
    try:
        f.seek(offset)
    except BaseException:
        f.close()
        raise
    return f


def _s3_error(body: bytes) -> tuple[str | None, str]:
    """(Code, Message) of an S3 XML error body (best effort)."""
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 (a small error document from our store)
    except ElementTree.ParseError:
        return None, body.decode("utf-8", "replace").strip()[:300]
    return root.findtext("Code"), (root.findtext("Message") or "").strip()


def _looks_expired(code: str | None, message: str) -> bool:
    return "expire" in message.lower() or code in {"AccessDenied", "ExpiredToken"}


def _first_error(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class _UrlSet:
    """The presigned URLs of one file, refreshed through ``upload_urls`` when they expire."""

    def __init__(self, pusher: Pusher, file_id: str, spec: dict[str, Any], size: int) -> None:
        self.pusher = pusher
        self.file_id = file_id
        self.spec = spec
        self.size = size
        self.urls: list[str] = []
        self.s3_key: str | None = None
        self.expiry: float | None = None
        self.generation = 0
        self._lock = asyncio.Lock()

    async def get(self, index: int) -> tuple[str, int]:
        """URL number `index` (0-based) and the generation it belongs to."""
        if not self.urls:
            await self.refresh(self.generation)
        elif self.expiry is not None and time.time() >= self.expiry:
            log.info("%s: URLs expired; fetching fresh ones", self.file_id)
            await self.refresh(self.generation)
        return self.urls[index], self.generation

    async def refresh(self, seen: int) -> None:
        """Fetch a fresh set, unless another task already did since generation `seen`."""
        async with self._lock:
            if self.generation != seen:
                return
            c = self.pusher.client
            body = await c.upload_urls(self.pusher.incident_id, {self.file_id: self.spec})
            limit = body.get("max_upload_size_mb", -1)
            if isinstance(limit, int | float) and limit > 0 and self.size > limit * 1000 * 1000:
                raise StoreError(413, "EntityTooLarge", f"the server accepts at most {limit} MB")
            try:
                entry = body["uploads"][self.file_id]
                signed = entry["signed_urls"]
            except (KeyError, TypeError):
                raise VMSBridgeError(f"upload_urls gave no URL for {self.file_id}") from None
            self.urls = [signed] if isinstance(signed, str) else list(signed)
            self.s3_key = entry.get("s3_key")
            self.expiry = presigned_expiry(self.urls[0]) if self.urls else None
            self.generation += 1


class Pusher:
    """One `push_incident` run: uploads the files, then writes the incident."""

    def __init__(
        self,
        client: AsyncClient,
        incident_id: str,
        *,
        journal: Journal | None,
        progress: ProgressCallback | None,
    ) -> None:
        self.client = client
        self.incident_id = incident_id
        self.journal = journal
        self.progress = progress
        self.slots = asyncio.Semaphore(client.concurrency)
        self.file_slots = asyncio.Semaphore(max(1, min(MAX_FILES_AT_ONCE, client.concurrency)))
        self.executor = ThreadPoolExecutor(
            max_workers=min(client.concurrency, IO_THREADS) + 1, thread_name_prefix="vmsbridge-io"
        )

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _emit(self, event: ProgressEvent) -> None:
        if self.progress is None:
            return
        try:
            self.progress(event)
        except Exception:  # a broken progress bar must not break the upload
            log.exception("progress callback failed")

    # -- the incident -----------------------------------------------------------------------------

    async def push(
        self, incident: Incident, videos: list[VideoFile], *, thumbnails: bool
    ) -> PushResult:
        # Fail fast on a wrong key or URL, before reading any file (404: a new incident).
        try:
            await self.client.get_incident(self.incident_id)
        except NotFoundError:
            pass
        ids = self._assign_ids(videos)
        outcomes = await asyncio.gather(
            *(self._push_video(v, vid, thumbnails) for v, vid in zip(videos, ids, strict=True))
        )
        body = incident.payload()
        uploaded_payload: list[dict[str, Any]] = list(body.pop("uploaded_videos", None) or [])
        failed_payload: list[dict[str, Any]] = list(body.pop("failed_videos", None) or [])
        uploaded: list[UploadedVideo] = []
        failed: list[FailedVideo] = []
        for video, outcome in zip(videos, outcomes, strict=True):
            if isinstance(outcome, UploadedVideo):
                uploaded.append(outcome)
                entry = {"id": outcome.id, **video.metadata(), "s3_key": outcome.s3_key}
                if outcome.s3_thumbnail_key:
                    entry["s3_thumbnail_key"] = outcome.s3_thumbnail_key
                entry.update(size=outcome.size, sha256=outcome.sha256)
                uploaded_payload.append(entry)
            else:
                failed.append(outcome)
                failed_payload.append(
                    {"id": outcome.id, **video.metadata(), "upload_errors": outcome.errors}
                )
        body["uploaded_videos"] = uploaded_payload
        body["failed_videos"] = failed_payload
        status, response = await self.client._put_incident(self.incident_id, {"vms_incident": body})
        return PushResult(
            incident_id=self.incident_id,
            response=response,
            created=status == 201,
            uploaded=uploaded,
            failed=failed,
        )

    @staticmethod
    def _assign_ids(videos: list[VideoFile]) -> list[str]:
        taken = {v.id for v in videos if v.id}
        ids: list[str] = []
        for v in videos:
            if v.id:
                ids.append(v.id)
                continue
            base = safe_identifier(os.path.splitext(os.path.basename(os.fspath(v.path)))[0])
            ident, n = base, 2
            while ident in taken:
                ident, n = f"{base}-{n}", n + 1
            taken.add(ident)
            ids.append(ident)
        return ids

    # -- one video --------------------------------------------------------------------------------

    async def _push_video(
        self, video: VideoFile, vid: str, thumbnails: bool
    ) -> UploadedVideo | FailedVideo:
        path = os.fspath(video.path)
        try:
            fp = await self._thread(_readable, path)
        except OSError as exc:
            reason = f"cannot read {path}: {exc.strerror or exc}"
            log.error("%s: %s", vid, reason)
            self._emit(ProgressEvent("failed", vid, vid, message=reason))
            return FailedVideo(vid, [reason])
        async with self.file_slots:
            thumb_job: asyncio.Task[_Source | None] | None = None
            if video.thumbnail_path is None and thumbnails:
                thumb_job = asyncio.create_task(self._make_thumbnail(vid, fp))
            try:
                stored = await self._upload(vid, vid, os.path.basename(path), _Source(path, fp))
            except (VMSBridgeError, OSError) as exc:
                if thumb_job:
                    thumb_job.cancel()
                reason = str(exc) if isinstance(exc, VMSBridgeError) else f"{path}: {exc}"
                log.error("%s failed: %s", vid, reason)
                self._emit(ProgressEvent("failed", vid, vid, message=reason))
                return FailedVideo(vid, [reason])
            thumb_key = await self._push_thumbnail(video, vid, fp, thumb_job)
        return UploadedVideo(
            id=vid,
            s3_key=stored.s3_key,
            size=stored.size,
            sha256=stored.sha256,
            etag=stored.etag,
            s3_thumbnail_key=thumb_key,
            bytes_sent=stored.bytes_sent,
            skipped=stored.skipped,
        )

    def _thumb_file_id(self, vid: str) -> str:
        return f"{vid[:118]}-thumbnail"

    async def _make_thumbnail(self, vid: str, fp: Fingerprint) -> _Source | None:
        # A generated thumbnail is identified by its video's fingerprint.
        tpath = fp.path + "#thumbnail"
        entry = self._journal_find(self._thumb_file_id(vid))
        if entry is not None and entry.complete and entry.fingerprint.path == tpath:
            if entry.fingerprint.mtime_ns == fp.mtime_ns:
                # Uploaded by an earlier run: `_upload` will find the same fingerprint and skip.
                return _Source(f"{vid} thumbnail", entry.fingerprint, b"")
        data = await self._thread(first_keyframe_jpeg, fp.path)
        if data is None:
            return None
        return _Source(f"{vid} thumbnail", Fingerprint(tpath, len(data), fp.mtime_ns), data)

    async def _push_thumbnail(
        self,
        video: VideoFile,
        vid: str,
        fp: Fingerprint,
        job: asyncio.Task[_Source | None] | None,
    ) -> str | None:
        try:
            if video.thumbnail_path is not None:
                tpath = os.fspath(video.thumbnail_path)
                src: _Source | None = _Source(tpath, Fingerprint.of(tpath))
                filename = os.path.basename(tpath)
            else:
                src = await job if job else None
                filename = safe_identifier(os.path.splitext(os.path.basename(fp.path))[0]) + ".jpg"
            if src is None:
                return None
            stored = await self._upload(vid, self._thumb_file_id(vid), filename, src)
            return stored.s3_key
        except (VMSBridgeError, OSError) as exc:
            log.warning("%s: thumbnail not uploaded: %s", vid, exc)
            return None

    def _journal_find(self, file_id: str) -> JournalEntry | None:
        if self.journal is None:
            return None
        return self.journal.find(self.client.api_url, self.incident_id, file_id)

    # -- one file (a video or a thumbnail) --------------------------------------------------------

    async def _upload(self, vid: str, file_id: str, filename: str, src: _Source) -> _Stored:
        entry = self._journal_find(file_id)
        if entry is not None and entry.complete and entry.sha256 and entry.etag:
            if entry.fingerprint == src.fingerprint:
                log.info("%s: already uploaded (%s), skipping", file_id, entry.s3_key)
                self._emit(ProgressEvent("skipped", vid, file_id, total=entry.fingerprint.size))
                return _Stored(
                    entry.s3_key, entry.etag, entry.fingerprint.size, entry.sha256, 0, True
                )
        if src.size >= self.client.multipart_threshold and src.size > 0:
            return await self._multipart(vid, file_id, filename, src, entry)
        if entry is not None and entry.upload_id:
            await self._abort_quietly(entry)
        return await self._single(vid, file_id, filename, src)

    async def _single(self, vid: str, file_id: str, filename: str, src: _Source) -> _Stored:
        log.info("%s: uploading %s (%s, one PUT)", file_id, src.name, format_size(src.size))
        self._emit(ProgressEvent("start", vid, file_id, total=src.size))
        urls = _UrlSet(self, file_id, {"filename": filename}, src.size)
        counter = [0]
        etag, _md5, sha = await self._put(urls, 0, src, 0, src.size, file_id, counter, sha=True)
        assert sha is not None and urls.s3_key is not None
        if self.journal is not None:
            entry = self.journal.begin(
                self.client.api_url,
                self.incident_id,
                file_id,
                src.fingerprint,
                s3_key=urls.s3_key,
                upload_id=None,
                part_size=None,
            )
            self.journal.complete(entry, etag=etag, sha256=sha)
        self._emit(ProgressEvent("done", vid, file_id, total=src.size))
        return _Stored(urls.s3_key, etag, src.size, sha, counter[0], False)

    async def _multipart(
        self, vid: str, file_id: str, filename: str, src: _Source, entry: JournalEntry | None
    ) -> _Stored:
        c = self.client
        size = src.size
        psize = choose_part_size(size, min_part_size=c.min_part_size)
        if (
            entry is not None
            and entry.upload_id
            and not entry.complete
            and entry.fingerprint == src.fingerprint
            and entry.part_size
            and entry.part_size >= c.min_part_size
            and part_count(size, entry.part_size) <= S3_MAX_PARTS
        ):
            psize = entry.part_size  # resume with the parts the earlier run cut
        count = part_count(size, psize)
        known: dict[int, tuple[str, str]] = {}  # part number -> (etag, md5) already stored
        if entry is not None and entry.upload_id and not entry.complete:
            if entry.fingerprint == src.fingerprint and entry.part_size == psize:
                known = await self._reconcile(entry, src, psize, count)
                if not known and entry.upload_id is None:
                    entry = None
            else:
                log.info("%s: file changed since the last run; starting over", file_id)
                await self._abort_quietly(entry)
                entry = None
        if entry is None or entry.upload_id is None or entry.complete:
            created = await c.create_multipart_upload(self.incident_id, file_id, filename)
            journal_entry = JournalEntry(
                0,
                src.fingerprint,
                created["s3_key"],
                created["upload_id"],
                psize,
                "uploading",
                None,
                None,
            )
            if self.journal is not None:
                journal_entry = self.journal.begin(
                    c.api_url,
                    self.incident_id,
                    file_id,
                    src.fingerprint,
                    s3_key=created["s3_key"],
                    upload_id=created["upload_id"],
                    part_size=psize,
                )
            entry = journal_entry
        assert entry.upload_id is not None
        upload_id: str = entry.upload_id
        counter = [0]
        try:
            return await self._multipart_parts(
                vid, file_id, src, entry, psize, count, known, counter
            )
        except (VMSBridgeError, OSError) as exc:
            # The file failed: leave nothing behind on the server (kill -9 or Ctrl-C skip this,
            # so that the next run resumes instead).
            log.info("%s: aborting multipart upload after: %s", file_id, exc)
            try:
                await c.abort_multipart_upload(self.incident_id, entry.s3_key, upload_id)
            except VMSBridgeError as abort_exc:
                log.error("%s: could not abort upload %s: %s", file_id, upload_id, abort_exc)
            else:
                if self.journal is not None and entry.row:
                    self.journal.forget(entry)
            raise

    async def _multipart_parts(
        self,
        vid: str,
        file_id: str,
        src: _Source,
        entry: JournalEntry,
        psize: int,
        count: int,
        known: dict[int, tuple[str, str]],
        counter: list[int],
    ) -> _Stored:
        c = self.client
        size = src.size
        assert entry.upload_id is not None
        done_bytes = sum(part_range(n, psize, size)[1] for n in known)
        log.info(
            "%s: uploading %s (%s, %d parts of %s%s)",
            file_id,
            src.name,
            format_size(size),
            count,
            format_size(psize),
            f", {len(known)} already stored" if known else "",
        )
        self._emit(ProgressEvent("start", vid, file_id, total=size, done=done_bytes))
        sha_job = asyncio.ensure_future(self._thread(_hash_range, src, 0, size, "sha256"))
        try:
            spec = {"s3_key": entry.s3_key, "upload_id": entry.upload_id, "part_count": count}
            urls = _UrlSet(self, file_id, spec, size)
            results: dict[int, tuple[str, str]] = dict(known)
            todo: Iterator[int] = iter([n for n in range(1, count + 1) if n not in known])

            async def worker() -> None:
                for number in todo:
                    offset, length = part_range(number, psize, size)
                    label = f"{file_id} part {number}/{count}"
                    etag, md5, _ = await self._put(
                        urls, number - 1, src, offset, length, label, counter, vid=vid
                    )
                    results[number] = (etag, md5)
                    if self.journal is not None:
                        self.journal.add_part(entry, number, etag, md5, length)

            try:
                async with asyncio.TaskGroup() as tg:
                    for _ in range(min(c.concurrency, count - len(known))):
                        tg.create_task(worker())
            except BaseExceptionGroup as group:
                raise _first_error(group) from None
            sha256 = await sha_job
        finally:
            if not sha_job.done():
                sha_job.cancel()
        if Fingerprint.of(src.fingerprint.path) != src.fingerprint:
            raise SourceError(f"{src.name} changed while it was being uploaded")
        md5s = [results[n][1] for n in range(1, count + 1)]
        done = await c.complete_multipart_upload(
            self.incident_id,
            entry.s3_key,
            entry.upload_id,
            [results[n][0] for n in range(1, count + 1)],
        )
        stored_size = done.get("size")
        if isinstance(stored_size, int) and stored_size != size:
            raise IntegrityError(f"stored {stored_size} bytes of a {size}-byte file")
        expected = multipart_etag(md5s)
        etag = clean_etag(done.get("etag")) or expected
        if "-" in etag and etag != expected:
            raise IntegrityError(f"multipart ETag {etag} is not {expected} (the parts sent)")
        if self.journal is not None:
            self.journal.complete(entry, etag=etag, sha256=sha256)
        self._emit(ProgressEvent("done", vid, file_id, total=size))
        return _Stored(entry.s3_key, etag, size, sha256, counter[0], False)

    async def _reconcile(
        self, entry: JournalEntry, src: _Source, psize: int, count: int
    ) -> dict[int, tuple[str, str]]:
        """Parts of an earlier run still good on the server: the journal and ``list_parts``
        agree on their ETag (or, for a part the journal missed, the ETag is the local MD5)."""
        assert entry.upload_id is not None
        try:
            listing = await self.client.list_parts(self.incident_id, entry.s3_key, entry.upload_id)
        except NotFoundError:
            log.info("%s: the server no longer knows the upload; starting over", entry.s3_key)
            if self.journal is not None:
                self.journal.forget(entry)
            entry.upload_id = None
            return {}
        keep: dict[int, tuple[str, str]] = {}
        for part in listing.get("parts") or []:
            number, etag = int(part["part_number"]), clean_etag(part.get("etag"))
            if not 1 <= number <= count:
                continue
            offset, length = part_range(number, psize, src.size)
            if part.get("size") not in (None, length):
                continue
            mine = entry.parts.get(number)
            if mine is not None and clean_etag(mine[0]) == etag:
                keep[number] = (etag, mine[1])
            elif mine is None and etag == await self._thread(
                _hash_range, src, offset, length, "md5"
            ):
                keep[number] = (etag, etag)
                if self.journal is not None:
                    self.journal.add_part(entry, number, etag, etag, length)
        stale = [n for n in entry.parts if n not in keep]
        if stale and self.journal is not None:
            self.journal.drop_parts(entry, stale)
        log.info("%s: resuming, %d of %d parts already stored", entry.s3_key, len(keep), count)
        return keep

    async def _abort_quietly(self, entry: JournalEntry) -> None:
        if entry.upload_id:
            try:
                await self.client.abort_multipart_upload(
                    self.incident_id, entry.s3_key, entry.upload_id
                )
            except VMSBridgeError as exc:
                log.info("could not abort stale upload %s: %s", entry.upload_id, exc)
        if self.journal is not None:
            self.journal.forget(entry)

    # -- one PUT, with retries --------------------------------------------------------------------

    async def _put(
        self,
        urls: _UrlSet,
        index: int,
        src: _Source,
        offset: int,
        length: int,
        label: str,
        counter: list[int],
        *,
        sha: bool = False,
        vid: str | None = None,
    ) -> tuple[str, str, str | None]:
        """PUT bytes [offset, offset+length) of `src` to URL `index`; returns (etag, md5, sha256).

        Retries transport errors, timeouts, 5xx, 429 (honouring Retry-After) and ETag
        mismatches with backoff; fetches fresh URLs on an expired-URL 403; raises at once on
        other 4xx (StoreError), when retries run out, or when the file cannot be read.
        """
        c = self.client
        attempt = refreshes = 0
        vid = vid or urls.file_id
        while True:
            sent = 0

            def on_bytes(n: int) -> None:
                nonlocal sent
                sent += n
                counter[0] += n
                self._emit(ProgressEvent("advance", vid, urls.file_id, advance=n))

            error: Exception | None = None
            async with self.slots:
                url, generation = await urls.get(index)
                try:
                    resp, md5, sha256 = await self._put_once(
                        url, src, offset, length, on_bytes, sha
                    )
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    error = exc
            retry_after: float | None = None
            if error is None:
                if 200 <= resp.status_code < 300:
                    if clean_etag(resp.headers.get("etag")) == md5:
                        return md5, md5, sha256
                    error = IntegrityError(
                        f"{label}: ETag {resp.headers.get('etag')} is not the MD5 {md5} sent"
                    )
                else:
                    code, message = _s3_error(resp.content)
                    status = resp.status_code
                    if status == 403 and _looks_expired(code, message):
                        refreshes += 1
                        self._emit(ProgressEvent("advance", vid, urls.file_id, advance=-sent))
                        if refreshes > MAX_URL_REFRESHES:
                            raise StoreError(status, code, f"{label}: {message}")
                        log.info("%s: URLs expired (%s); fetching fresh ones", label, message)
                        await urls.refresh(generation)
                        continue
                    if status not in (408, 429) and status < 500:
                        raise StoreError(status, code, f"{label}: {message or 'refused'}")
                    error = StoreError(status, code, f"{label}: {message}")
                    retry_after = parse_retry_after(resp.headers.get("retry-after"))
            if sent:
                self._emit(ProgressEvent("advance", vid, urls.file_id, advance=-sent))
            attempt += 1
            if attempt > c.retries:
                desc = (
                    f"{type(error).__name__}: {error}"
                    if isinstance(error, httpx.HTTPError)
                    else str(error)
                )
                msg = f"{label}: gave up after {attempt} attempts: {desc}"
                if isinstance(error, IntegrityError):
                    raise IntegrityError(msg)
                if isinstance(error, StoreError):
                    raise StoreError(error.status, error.code, msg)
                raise TransportError(msg)
            delay = backoff_delay(attempt, base=c.backoff, cap=c.max_backoff)
            if retry_after is not None:
                delay = max(delay, min(retry_after, 300.0))
            log.warning(
                "%s to %s: %s; retry %d/%d in %.1fs",
                label,
                redact_url(url),
                error if not isinstance(error, httpx.HTTPError) else type(error).__name__,
                attempt,
                c.retries,
                delay,
            )
            await c._sleep(delay)

    async def _put_once(
        self,
        url: str,
        src: _Source,
        offset: int,
        length: int,
        on_bytes: Callable[[int], None],
        want_sha: bool,
    ) -> tuple[httpx.Response, str, str | None]:
        md5 = hashlib.md5(usedforsecurity=False)
        sha = hashlib.sha256() if want_sha else None
        hashes = (md5, sha) if sha is not None else (md5,)

        async def body() -> Any:
            f = await self._thread(_open_at, src, offset)
            try:
                remaining = length
                while remaining:
                    chunk = await self._thread(_read_hashed, f, min(CHUNK_SIZE, remaining), hashes)
                    if not chunk:
                        raise SourceError(f"{src.name} shrank while it was being uploaded")
                    remaining -= len(chunk)
                    on_bytes(len(chunk))
                    yield chunk
                    del chunk  # not held while the next one is read
            finally:
                f.close()

        resp = await self.client._store.put(
            url, content=body(), headers={"Content-Length": str(length)}
        )
        return resp, md5.hexdigest(), (sha.hexdigest() if sha is not None else None)
