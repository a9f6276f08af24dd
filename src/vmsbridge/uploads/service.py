"""Upload sessions: the multipart life cycle and presigned upload URLs.

Sessions are looked up by (org, incident, s3_key, upload_id): anything else, including another
organisation's session or a session of another incident, is a 404 `NoSuchUpload`.

States: open -> completing -> completed (completing -> open again when the store refuses the
parts), open -> aborted, open -> aborting -> aborted (the reaper). Complete and abort are
idempotent:
- complete claims the session (open -> completing) in a short transaction, calls the store with
  no transaction open (assembling a large object takes seconds, and on SQLite a transaction
  would hold the database's write lock, stalling every other writer), then records the result
  in a second short transaction. A concurrent complete finds the session completing and polls
  until the result is recorded, so both answer the same and the store completes once. A claim
  older than `CLAIM_STALE_AFTER` (its process died between the steps) is taken over: the store's
  complete is idempotent, and an upload the store already forgot is recognised by a HEAD of the
  object (its multipart ETag names as many parts);
- complete of a completed session returns the recorded answer;
- abort claims the session the same way (open -> aborting -> aborted) and drops the parts with
  no transaction open; abort of an aborted session answers 200 again;
- abort of a completed (or completing) session is 409 `UploadCompleted` (the object exists;
  pretending to have aborted it would be a lie), complete of an aborted one 404 `NoSuchUpload`
  (as S3 answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import mimetypes
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vmsbridge.auth.service import Caller
from vmsbridge.config import Settings
from vmsbridge.db import Database, utcnow
from vmsbridge.errors import ApiError, field_error
from vmsbridge.storage import base as storage
from vmsbridge.storage.keys import filename_problem, is_identifier, object_key

from .models import ABORTED, ABORTING, COMPLETED, COMPLETING, OPEN, UploadSession
from .schemas import CompleteIn, UploadUrlsIn

IDENTIFIER_RULE = "must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"


def check_identifier(field: str, value: str) -> None:
    """400 `InvalidIdentifier` naming `field` unless `value` is a valid identifier."""
    if not is_identifier(value):
        raise field_error(field, IDENTIFIER_RULE, "InvalidIdentifier")


def check_filename(field: str, value: str) -> None:
    """400 `InvalidFilename` naming `field` unless `value` is a valid base name."""
    problem = filename_problem(value)
    if problem:
        raise field_error(field, problem, "InvalidFilename")


def storage_error(exc: storage.StorageError) -> ApiError:
    """The API answer for a storage failure."""
    if isinstance(exc, storage.NoSuchUpload):
        return ApiError("NoSuchUpload")
    if isinstance(exc, storage.InvalidPart):
        return ApiError("InvalidPart", str(exc) or None)
    if isinstance(exc, storage.InvalidPartOrder):
        return ApiError("InvalidPartOrder")
    if isinstance(exc, storage.EntityTooSmall):
        return ApiError("EntityTooSmall", str(exc) or None)
    return ApiError("StorageUnavailable")


def _content_type(filename: str) -> str | None:
    return mimetypes.guess_type(filename)[0]


async def create_multipart_upload(
    db: Database,
    store: storage.ObjectStore,
    caller: Caller,
    incident_id: str,
    file_id: str,
    filename: str,
) -> dict[str, str]:
    """Start a multipart upload of one file of an incident; record the session."""
    check_identifier("incident_id", incident_id)
    check_identifier("file_id", file_id)
    check_filename("filename", filename)
    key = object_key(caller.org_id, caller.key_id, incident_id, file_id, filename)
    try:
        upload_id = await store.create_multipart_upload(key, _content_type(filename))
    except storage.StorageError as exc:
        raise storage_error(exc) from None
    try:
        async with db.write_session() as s:
            s.add(
                UploadSession(
                    org_id=caller.org_id,
                    incident_id=incident_id,
                    file_id=file_id,
                    filename=filename,
                    s3_key=key,
                    upload_id=upload_id,
                    api_key_id=caller.key_id,
                    state=OPEN,
                )
            )
    except BaseException:
        # Not recorded, so nobody could ever complete or reap it: abort it now (best effort).
        with contextlib.suppress(Exception):
            await store.abort_multipart_upload(key, upload_id)
        raise
    return {"s3_key": key, "upload_id": upload_id}


async def _find(
    s: AsyncSession,
    caller: Caller,
    incident_id: str,
    s3_key: str,
    upload_id: str,
    *,
    lock: bool = False,
) -> UploadSession:
    query = select(UploadSession).where(
        UploadSession.org_id == caller.org_id,
        UploadSession.incident_id == incident_id,
        UploadSession.upload_id == upload_id,
        UploadSession.s3_key == s3_key,
    )
    if lock:
        query = query.with_for_update()
    row = (await s.execute(query)).scalar_one_or_none()
    if row is None:
        raise ApiError("NoSuchUpload")
    return row


def _require_open(row: UploadSession) -> None:
    if row.state == COMPLETED:
        raise ApiError("UploadCompleted")
    if row.state == COMPLETING:
        raise ApiError("UploadCompleted", "The multipart upload is being completed.")
    if row.state != OPEN:
        raise ApiError("NoSuchUpload", "The multipart upload has been aborted.")


async def upload_urls(
    db: Database,
    store: storage.ObjectStore,
    settings: Settings,
    caller: Caller,
    incident_id: str,
    body: UploadUrlsIn,
) -> dict[str, Any]:
    """Presigned URLs: a list of part URLs for each multipart entry, one PUT URL otherwise."""
    check_identifier("incident_id", incident_id)
    # Validate every entry before looking anything up: a bad request changes nothing.
    multipart: dict[str, tuple[str, str, int]] = {}
    single: dict[str, str] = {}
    for file_id, entry in body.files.items():
        where = f"files.{file_id}"
        check_identifier(where, file_id)
        fields = entry.model_fields_set & {"part_count", "s3_key", "upload_id"}
        if fields or entry.filename is None:
            missing = [
                f for f in ("part_count", "s3_key", "upload_id") if getattr(entry, f) is None
            ]
            if missing and not fields:
                raise field_error(
                    f"{where}.filename",
                    "required (or part_count, s3_key and upload_id for a multipart upload)",
                )
            if missing:
                raise ApiError(
                    "ValidationError",
                    f"{where}.{missing[0]}: required for a multipart upload",
                    errors=[
                        {"field": f"{where}.{m}", "message": "required for a multipart upload"}
                        for m in missing
                    ],
                )
            assert entry.s3_key is not None and entry.upload_id is not None
            assert entry.part_count is not None
            multipart[file_id] = (entry.s3_key, entry.upload_id, entry.part_count)
        else:
            check_filename(f"{where}.filename", entry.filename)
            single[file_id] = entry.filename
    if multipart:
        async with db.session() as s:
            for s3_key, upload_id, _ in multipart.values():
                _require_open(await _find(s, caller, incident_id, s3_key, upload_id))
    expires = settings.presign_expires
    uploads: dict[str, Any] = {}
    for file_id in body.files:
        if file_id in multipart:
            s3_key, upload_id, count = multipart[file_id]
            urls = store.presign_upload_parts(s3_key, upload_id, list(range(1, count + 1)), expires)
            uploads[file_id] = {"s3_key": s3_key, "signed_urls": urls}
        else:
            key = object_key(caller.org_id, caller.key_id, incident_id, file_id, single[file_id])
            uploads[file_id] = {"s3_key": key, "signed_urls": store.presign_put(key, expires)}
    return {
        "incident_id": incident_id,
        "max_upload_size_mb": settings.max_upload_size_mb,
        "uploads": uploads,
    }


#: A completing claim this old is taken over by the next complete (its process died).
CLAIM_STALE_AFTER = dt.timedelta(seconds=120)
#: How often a complete that found the session completing looks again (grows to the maximum).
_POLL_FIRST, _POLL_MAX = 0.01, 0.25


async def complete_multipart_upload(
    db: Database,
    store: storage.ObjectStore,
    settings: Settings,
    caller: Caller,
    incident_id: str,
    body: CompleteIn,
) -> dict[str, Any]:
    """Complete the upload, once; every later (or concurrent) call gets the same answer.

    No transaction is open while the store assembles the object (see the module docstring).
    """
    check_identifier("incident_id", incident_id)
    pause = _POLL_FIRST
    while True:
        async with db.write_session() as s:
            row = await _find(s, caller, incident_id, body.s3_key, body.upload_id, lock=True)
            if row.state == COMPLETED:
                return _completed(row)
            if row.state not in (OPEN, COMPLETING):
                raise ApiError("NoSuchUpload", "The multipart upload has been aborted.")
            now = utcnow()
            claimed = row.state == OPEN or row.state_changed_at < now - CLAIM_STALE_AFTER
            if claimed:
                row.state = COMPLETING
                row.state_changed_at = now
            pk, key, upload_id = row.pk, row.s3_key, row.upload_id
        if claimed:
            break
        # Another call is completing it: wait for its result (or for its claim to go stale).
        await asyncio.sleep(pause)
        pause = min(pause * 2, _POLL_MAX)

    try:
        try:
            done = await store.complete_multipart_upload(key, upload_id, body.parts)
            etag, size = done.etag, done.size
        except storage.NoSuchUpload:
            # The store may have completed it while its result was not recorded (a crash, a
            # lost connection): then the object exists with a multipart ETag of as many parts.
            info = await _head_or_none(store, key)
            if info is None or not info.etag.endswith(f"-{len(body.parts)}"):
                raise ApiError("NoSuchUpload") from None
            etag, size = info.etag, info.size
        except storage.StorageError as exc:
            raise storage_error(exc) from None
    except ApiError:
        # Wrong parts, store unavailable, gone: give the session back (if still our claim), so
        # the client can retry or abort.
        await _give_back(db, pk, COMPLETING, now)
        raise

    async with db.write_session() as s:
        # First recorded result wins (a stale claim's owner may have recorded the same one).
        await s.execute(
            update(UploadSession)
            .where(UploadSession.pk == pk, UploadSession.state.in_((OPEN, COMPLETING)))
            .values(state=COMPLETED, state_changed_at=utcnow(), etag=etag.strip('"'), size=size)
        )
        row = (
            await s.execute(
                select(UploadSession)
                .where(UploadSession.pk == pk)
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        if row.state != COMPLETED:
            raise ApiError("NoSuchUpload", "The multipart upload has been aborted.")
        return _completed(row)


async def _give_back(
    db: Database, pk: int, claimed: str, claimed_at: dt.datetime | None = None
) -> None:
    """Return a session claimed as `claimed` (COMPLETING or ABORTING) to OPEN, if the claim still
    stands: same state and, when `claimed_at` is given, the same claim time (a stale claim may
    have been taken over meanwhile)."""
    where = [UploadSession.pk == pk, UploadSession.state == claimed]
    if claimed_at is not None:
        where.append(UploadSession.state_changed_at == claimed_at)
    async with db.write_session() as s:
        await s.execute(
            update(UploadSession).where(*where).values(state=OPEN, state_changed_at=utcnow())
        )


async def _head_or_none(store: storage.ObjectStore, key: str) -> storage.ObjectInfo | None:
    try:
        return await store.head_object(key)
    except storage.ObjectNotFound:
        return None
    except storage.StorageError as exc:
        raise storage_error(exc) from None


def _completed(row: UploadSession) -> dict[str, Any]:
    return {"s3_key": row.s3_key, "upload_id": row.upload_id, "etag": row.etag, "size": row.size}


async def abort_multipart_upload(
    db: Database,
    store: storage.ObjectStore,
    caller: Caller,
    incident_id: str,
    s3_key: str,
    upload_id: str,
) -> dict[str, str]:
    """Abort the upload and drop its parts. Aborting twice is fine; after completion: 409.

    Like complete: claim (open -> aborting) in a short transaction, drop the parts in the store
    with no transaction open (thousands of parts take a while), record aborted. A concurrent
    abort (or the reaper) holding the claim is waited for; a stale claim is taken over.
    """
    check_identifier("incident_id", incident_id)
    pause = _POLL_FIRST
    while True:
        async with db.write_session() as s:
            row = await _find(s, caller, incident_id, s3_key, upload_id, lock=True)
            answer = {"s3_key": row.s3_key, "upload_id": row.upload_id}
            if row.state == COMPLETED:
                raise ApiError("UploadCompleted")
            if row.state == COMPLETING:
                raise ApiError("UploadCompleted", "The multipart upload is being completed.")
            if row.state == ABORTED:
                return answer
            now = utcnow()
            claimed = row.state == OPEN or row.state_changed_at < now - CLAIM_STALE_AFTER
            if claimed:
                row.state = ABORTING
                row.state_changed_at = now
            pk = row.pk
        if claimed:
            break
        await asyncio.sleep(pause)
        pause = min(pause * 2, _POLL_MAX)
    try:
        await store.abort_multipart_upload(answer["s3_key"], answer["upload_id"])
    except storage.NoSuchUpload:
        pass  # already gone from the store: the goal is reached
    except storage.StorageError as exc:
        # The store is unreachable: give the session back (a retry, or the reaper, ends it).
        await _give_back(db, pk, ABORTING, now)
        raise storage_error(exc) from None
    async with db.write_session() as s:
        await s.execute(
            update(UploadSession)
            .where(UploadSession.pk == pk, UploadSession.state == ABORTING)
            .values(state=ABORTED, state_changed_at=utcnow())
        )
    return answer


async def list_parts(
    db: Database,
    store: storage.ObjectStore,
    caller: Caller,
    incident_id: str,
    s3_key: str,
    upload_id: str,
) -> dict[str, Any]:
    """The parts uploaded so far (for resuming an upload)."""
    check_identifier("incident_id", incident_id)
    async with db.session() as s:
        row = await _find(s, caller, incident_id, s3_key, upload_id)
        _require_open(row)
    try:
        parts = await store.list_parts(row.s3_key, row.upload_id)
    except storage.StorageError as exc:
        raise storage_error(exc) from None
    return {
        "s3_key": row.s3_key,
        "upload_id": row.upload_id,
        "parts": [{"part_number": p.part_number, "etag": p.etag, "size": p.size} for p in parts],
    }


async def find_filename(s: AsyncSession, org_id: str, s3_key: str) -> str | None:
    """The client's filename for a multipart-uploaded key, when there is a session for it."""
    row = (
        await s.execute(
            select(UploadSession.filename)
            .where(UploadSession.org_id == org_id, UploadSession.s3_key == s3_key)
            .limit(1)
        )
    ).first()
    return row[0] if row else None


# ---- reaping stale sessions ----

#: A session claimed by a reaper that died is claimed again after this long.
RECLAIM_AFTER = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Reaped:
    """One session the reaper aborted."""

    org_id: str
    incident_id: str
    s3_key: str
    upload_id: str
    created_at: dt.datetime
    store_result: str  # "aborted" or "already gone"


@dataclass(frozen=True, slots=True)
class ReapResult:
    """What a reaper run did: sessions aborted, and (s3_key, why) for those it could not."""

    reaped: list[Reaped]
    failed: list[tuple[str, str]]


async def reap(
    db: Database, store: storage.ObjectStore, older_than: dt.timedelta, *, limit: int = 10_000
) -> ReapResult:
    """Abort open sessions created more than `older_than` ago, in the store and the database.

    Safe to run from several machines at once: each session is claimed with a conditional
    UPDATE (open -> aborting) in its own transaction, and only the reaper whose UPDATE changed
    the row aborts it. No lock is held while the store is called.
    """
    now = utcnow()
    cutoff = now - older_than
    async with db.session() as s:
        candidates = (
            await s.execute(
                select(UploadSession.pk, UploadSession.state, UploadSession.state_changed_at)
                .where(
                    ((UploadSession.state == OPEN) & (UploadSession.created_at < cutoff))
                    | (
                        (UploadSession.state == ABORTING)
                        & (UploadSession.state_changed_at < now - RECLAIM_AFTER)
                    )
                )
                .order_by(UploadSession.created_at)
                .limit(limit)
            )
        ).all()
    done: list[Reaped] = []
    failed: list[tuple[str, str]] = []
    for pk, state, changed in candidates:
        async with db.write_session() as s:
            claim = (
                update(UploadSession)
                .where(UploadSession.pk == pk, UploadSession.state == state)
                .values(state=ABORTING, state_changed_at=utcnow())
            )
            if state == ABORTING:
                claim = claim.where(UploadSession.state_changed_at == changed)
            if (await s.execute(claim)).rowcount != 1:  # type: ignore[attr-defined]
                continue  # another reaper (or a client's complete/abort) got there first
            row = (
                await s.execute(select(UploadSession).where(UploadSession.pk == pk))
            ).scalar_one()
        try:
            await store.abort_multipart_upload(row.s3_key, row.upload_id)
            result = "aborted"
        except storage.NoSuchUpload:
            result = "already gone"
        except storage.StorageError as exc:
            # The store is unreachable: give the session back (a later run retries it).
            await _give_back(db, pk, ABORTING)
            failed.append((row.s3_key, f"{type(exc).__name__}: {exc}"))
            continue
        async with db.write_session() as s:
            await s.execute(
                update(UploadSession)
                .where(UploadSession.pk == pk, UploadSession.state == ABORTING)
                .values(state=ABORTED, state_changed_at=utcnow())
            )
        done.append(
            Reaped(row.org_id, row.incident_id, row.s3_key, row.upload_id, row.created_at, result)
        )
        await asyncio.sleep(0)
    return ReapResult(done, failed)
