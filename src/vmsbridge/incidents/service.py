"""Incidents: create/update with videos merged by id, read, list, download URLs.

Concurrency: a PUT runs in one write transaction. The incident row is created with
`INSERT ... ON CONFLICT DO NOTHING` and then locked (`SELECT ... FOR UPDATE` on PostgreSQL; on
SQLite the transaction already holds the write lock, `BEGIN IMMEDIATE`), and each video is
upserted by (incident, video id). Two concurrent PUTs adding different videos keep both.

Objects are checked (HEAD) before the transaction starts, so no lock is held during store calls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from vmsbridge.auth.service import Caller
from vmsbridge.config import Settings
from vmsbridge.db import Database, utcnow
from vmsbridge.errors import ApiError, field_error, pydantic_errors
from vmsbridge.storage import base as storage
from vmsbridge.storage.keys import filename_from_key, key_belongs_to
from vmsbridge.uploads.service import check_identifier, find_filename, storage_error

from .models import Incident, Video
from .schemas import FailedVideoIn, IncidentIn, UploadedVideoIn, format_time, to_utc_naive

UPLOADED = "uploaded"
FAILED = "failed"
#: HEAD requests in flight per PUT.
HEAD_CONCURRENCY = 8


def parse_incident(payload: Any) -> IncidentIn:
    """Validate a PUT body, wrapped (`{"vms_incident": {...}}`) or flat."""
    if not isinstance(payload, dict):
        raise field_error("body", "must be a JSON object")
    prefix: tuple[str, ...] = ()
    if "vms_incident" in payload:
        payload = payload["vms_incident"]
        prefix = ("vms_incident",)
        if not isinstance(payload, dict):
            raise field_error("vms_incident", "must be a JSON object")
    try:
        return IncidentIn.model_validate(payload)
    except ValidationError as exc:
        errors = pydantic_errors(exc.errors(include_url=False), prefix)
        first = errors[0]
        raise ApiError(
            "ValidationError", f"{first['field']}: {first['message']}", errors=errors
        ) from None


def _check_ids(body: IncidentIn) -> None:
    seen: dict[str, str] = {}
    for list_name, videos in (
        ("uploaded_videos", body.uploaded_videos),
        ("failed_videos", body.failed_videos),
    ):
        for i, v in enumerate(videos):
            where = f"{list_name}.{i}.id"
            if v.id in seen:
                raise ApiError(
                    "DuplicateVideoId",
                    f"video id {v.id!r} appears more than once ({seen[v.id]} and {where})",
                    errors=[{"field": where, "message": "duplicate video id"}],
                )
            seen[v.id] = where


async def _check_object(
    store: storage.ObjectStore,
    settings: Settings,
    caller: Caller,
    incident_id: str,
    field: str,
    key: str,
    expected_size: int | None,
) -> storage.ObjectInfo:
    if not key_belongs_to(key, caller.org_id, incident_id):
        raise field_error(
            field,
            f"must be a key made for this organisation and incident "
            f"(vms/{caller.org_id}/.../{incident_id}/...)",
            "InvalidS3Key",
        )
    try:
        info = await store.head_object(key)
    except storage.ObjectNotFound:
        raise field_error(
            field, "no object has been uploaded under this key", "UploadNotFound"
        ) from None
    except storage.StorageError as exc:
        raise storage_error(exc) from None
    if expected_size is not None and expected_size != info.size:
        raise field_error(
            field.rsplit(".", 1)[0] + ".size",
            f"is {expected_size} but the stored object has {info.size} bytes",
            "SizeMismatch",
        )
    limit = settings.max_upload_size_mb
    if limit != -1 and info.size > limit * 1024 * 1024:
        raise field_error(field, f"the object is larger than {limit} MB", "EntityTooLarge")
    return info


async def put_incident(
    db: Database,
    store: storage.ObjectStore,
    settings: Settings,
    caller: Caller,
    incident_id: str,
    payload: Any,
) -> tuple[bool, dict[str, Any]]:
    """Create or update an incident; return (created, the GET body)."""
    check_identifier("incident_id", incident_id)
    body = parse_incident(payload)
    _check_ids(body)

    # Check every referenced object before writing anything.
    sem = asyncio.Semaphore(HEAD_CONCURRENCY)

    async def check(
        i: int, v: UploadedVideoIn
    ) -> tuple[storage.ObjectInfo, storage.ObjectInfo | None]:
        async with sem:
            where = f"uploaded_videos.{i}"
            info = await _check_object(
                store, settings, caller, incident_id, f"{where}.s3_key", v.s3_key, v.size
            )
            thumb = None
            if v.s3_thumbnail_key:
                thumb = await _check_object(
                    store,
                    settings,
                    caller,
                    incident_id,
                    f"{where}.s3_thumbnail_key",
                    v.s3_thumbnail_key,
                    None,
                )
            return info, thumb

    tasks = [asyncio.ensure_future(check(i, v)) for i, v in enumerate(body.uploaded_videos)]
    try:
        infos = await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise

    now = utcnow()
    async with db.write_session() as s:
        created = await _upsert_incident_row(s, db.dialect, caller.org_id, incident_id, now)
        inc = (
            await s.execute(
                select(Incident)
                .where(Incident.org_id == caller.org_id, Incident.incident_id == incident_id)
                .with_for_update()
            )
        ).scalar_one()
        _apply_fields(inc, body, created, now)
        rows = [
            _video_values(inc.pk, v, UPLOADED, now, info.size, info.etag)
            for v, (info, _) in zip(body.uploaded_videos, infos, strict=True)
        ] + [_video_values(inc.pk, v, FAILED, now, None, None) for v in body.failed_videos]
        for values in rows:
            await _upsert_video(s, db.dialect, values)
        await s.flush()
        out = await _load(s, caller.org_id, incident_id)
        assert out is not None
        return created, {"vms_incident": incident_json(out)}


async def _upsert_incident_row(
    s: AsyncSession, dialect: str, org_id: str, incident_id: str, now: dt.datetime
) -> bool:
    ins = postgresql.insert(Incident) if dialect == "postgresql" else sqlite.insert(Incident)
    stmt = (
        ins.values(
            org_id=org_id,
            incident_id=incident_id,
            created_at=now,
            updated_at=now,
            received_at=now,
            modified_at=now,
            sort_at=now,
        )
        .on_conflict_do_nothing(index_elements=["org_id", "incident_id"])
        .returning(Incident.pk)
    )
    return (await s.execute(stmt)).first() is not None


def _apply_fields(inc: Incident, body: IncidentIn, created: bool, now: dt.datetime) -> None:
    sent = body.model_fields_set
    for name in ("title", "description", "latitude", "longitude"):
        if name in sent:
            setattr(inc, name, getattr(body, name))
    if "incident_at" in sent:
        inc.incident_at = to_utc_naive(body.incident_at)
    if body.created_at is not None:
        inc.created_at = to_utc_naive(body.created_at)  # type: ignore[assignment]
    if body.updated_at is not None:
        inc.updated_at = to_utc_naive(body.updated_at)  # type: ignore[assignment]
    elif not created:
        inc.updated_at = now
    inc.modified_at = now
    inc.sort_at = inc.incident_at or inc.received_at


def _video_values(
    incident_pk: int,
    v: UploadedVideoIn | FailedVideoIn,
    status: str,
    now: dt.datetime,
    size: int | None,
    etag: str | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "incident_pk": incident_pk,
        "video_id": v.id,
        "status": status,
        "started_at": to_utc_naive(v.started_at),
        "ended_at": to_utc_naive(v.ended_at),
        "camera_id": v.camera_id,
        "camera_name": v.camera_name,
        "camera_description": v.camera_description,
        "camera_latitude": v.camera_latitude,
        "camera_longitude": v.camera_longitude,
        "s3_key": None,
        "s3_thumbnail_key": None,
        "size": size,
        "etag": etag.strip('"') if etag else None,
        "sha256": None,
        "upload_errors": None,
        "updated_at": now,
    }
    # Every column is written, so a video that moves between the lists is replaced whole.
    if isinstance(v, UploadedVideoIn):
        values["s3_key"] = v.s3_key
        values["s3_thumbnail_key"] = v.s3_thumbnail_key
        values["sha256"] = v.sha256.lower() if v.sha256 else None
    else:
        values["upload_errors"] = list(v.upload_errors)
    return values


async def _upsert_video(s: AsyncSession, dialect: str, values: dict[str, Any]) -> None:
    ins = postgresql.insert(Video) if dialect == "postgresql" else sqlite.insert(Video)
    stmt = ins.values(**values)
    changes = {k: getattr(stmt.excluded, k) for k in values if k not in ("incident_pk", "video_id")}
    await s.execute(
        stmt.on_conflict_do_update(index_elements=["incident_pk", "video_id"], set_=changes)
    )


async def _load(s: AsyncSession, org_id: str, incident_id: str) -> Incident | None:
    return (
        await s.execute(
            select(Incident)
            .where(Incident.org_id == org_id, Incident.incident_id == incident_id)
            .options(selectinload(Incident.videos))
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


def _video_json(v: Video) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": v.video_id,
        "started_at": format_time(v.started_at),
        "ended_at": format_time(v.ended_at),
        "camera_id": v.camera_id,
        "camera_name": v.camera_name,
        "camera_description": v.camera_description,
        "camera_longitude": v.camera_longitude,
        "camera_latitude": v.camera_latitude,
    }
    if v.status == UPLOADED:
        out.update(
            s3_key=v.s3_key, s3_thumbnail_key=v.s3_thumbnail_key, size=v.size, sha256=v.sha256
        )
    else:
        out["upload_errors"] = list(v.upload_errors or [])
    return out


def incident_json(inc: Incident) -> dict[str, Any]:
    """The incident object as GET returns it (inside `vms_incident`)."""
    return {
        "id": inc.incident_id,
        "title": inc.title,
        "description": inc.description,
        "incident_at": format_time(inc.incident_at),
        "created_at": format_time(inc.created_at),
        "updated_at": format_time(inc.updated_at),
        "longitude": inc.longitude,
        "latitude": inc.latitude,
        "uploaded_videos": [_video_json(v) for v in inc.videos if v.status == UPLOADED],
        "failed_videos": [_video_json(v) for v in inc.videos if v.status == FAILED],
    }


async def get_incident(db: Database, caller: Caller, incident_id: str) -> dict[str, Any]:
    """`{"vms_incident": {...}}`, or 404 (also for another organisation's incident)."""
    check_identifier("incident_id", incident_id)
    async with db.session() as s:
        inc = await _load(s, caller.org_id, incident_id)
        if inc is None:
            raise ApiError("NoSuchIncident")
        return {"vms_incident": incident_json(inc)}


async def list_incidents(
    db: Database,
    caller: Caller,
    *,
    page: int,
    per_page: int,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> dict[str, Any]:
    """A page of the organisation's incidents, newest first (by incident_at, else received)."""
    conds = [Incident.org_id == caller.org_id]
    if since is not None:
        conds.append(Incident.incident_at >= to_utc_naive(since))
    if until is not None:
        conds.append(Incident.incident_at < to_utc_naive(until))
    async with db.session() as s:
        total = (
            await s.execute(select(func.count()).select_from(Incident).where(*conds))
        ).scalar_one()
        rows = (
            (
                await s.execute(
                    select(Incident)
                    .where(*conds)
                    .order_by(Incident.sort_at.desc(), Incident.pk.desc())
                    .offset((page - 1) * per_page)
                    .limit(per_page)
                    .options(selectinload(Incident.videos))
                )
            )
            .scalars()
            .all()
        )
        return {
            "vms_incidents": [incident_json(r) for r in rows],
            "page": page,
            "per_page": per_page,
            "total": total,
        }


async def download_url(
    db: Database,
    store: storage.ObjectStore,
    settings: Settings,
    caller: Caller,
    incident_id: str,
    video_id: str,
    *,
    thumbnail: bool = False,
) -> dict[str, Any]:
    """A presigned GET URL for an uploaded video (or its thumbnail), named after its file."""
    check_identifier("incident_id", incident_id)
    check_identifier("video_id", video_id)
    async with db.session() as s:
        row = (
            await s.execute(
                select(Video)
                .join(Incident, Video.incident_pk == Incident.pk)
                .where(
                    Incident.org_id == caller.org_id,
                    Incident.incident_id == incident_id,
                    Video.video_id == video_id,
                    Video.status == UPLOADED,
                )
            )
        ).scalar_one_or_none()
        if row is None or row.s3_key is None:
            raise ApiError("NoSuchVideo")
        key = row.s3_key
        if thumbnail:
            if not row.s3_thumbnail_key:
                raise ApiError("NoSuchVideo", "The video has no thumbnail.")
            key = row.s3_thumbnail_key
        filename = await find_filename(s, caller.org_id, key) or filename_from_key(key)
    expires = settings.presign_expires
    return {
        "incident_id": incident_id,
        "video_id": video_id,
        "s3_key": key,
        "url": store.presign_get(key, expires, filename=filename),
        "expires_in": expires,
    }
