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
from collections.abc import Sequence
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import selectinload

from vmsbridge.auth.models import ApiKey
from vmsbridge.auth.service import KEY_COLUMNS, Caller, caller_from_row, hash_key
from vmsbridge.config import Settings
from vmsbridge.db import Database, utcnow
from vmsbridge.errors import ApiError, field_error, pydantic_errors
from vmsbridge.storage import base as storage
from vmsbridge.storage.keys import filename_from_key, is_identifier, key_belongs_to
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

    infos: list[tuple[storage.ObjectInfo, storage.ObjectInfo | None]] = []
    tasks = [asyncio.ensure_future(check(i, v)) for i, v in enumerate(body.uploaded_videos)]
    try:
        if tasks:
            infos = await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise

    now = utcnow()
    rows = [
        _video_values(v, UPLOADED, now, info.size, info.etag)
        for v, (info, _) in zip(body.uploaded_videos, infos, strict=True)
    ] + [_video_values(v, FAILED, now, None, None) for v in body.failed_videos]
    upsert_incident, upsert_video = _UPSERTS[db.dialect]

    key = {"org_id": caller.org_id, "incident_id": incident_id, "now": now}

    def write(conn: Connection) -> tuple[bool, dict[str, Any]]:
        # The row is created if missing, and locked (PostgreSQL; SQLite holds the write lock).
        if upsert_incident is _PG_UPSERT_LOCK:
            pk, incident_at, received_at, created = conn.execute(upsert_incident, key).one()
        else:
            created = conn.execute(upsert_incident, key).first() is not None
            pk, incident_at, received_at = conn.execute(_LOCK_INCIDENT, key).one()
        conn.execute(
            _UPDATE_INCIDENT,
            {"b_pk": pk, **_changed_fields(body, created, now, incident_at, received_at)},
        )
        if rows:
            conn.execute(upsert_video, [{"incident_pk": pk, **r} for r in rows])
        out = _incident_from_rows(conn.execute(_LOAD_BY_PK, {"pk": pk}).all(), 0)
        assert out is not None
        return created, {"vms_incident": out}

    return await db.write(write)


_inc = cast(Table, Incident.__table__)
_vid = cast(Table, Video.__table__)
_INCIDENT_COLUMNS = (
    _inc.c.pk,
    _inc.c.incident_id,
    _inc.c.title,
    _inc.c.description,
    _inc.c.incident_at,
    _inc.c.created_at,
    _inc.c.updated_at,
    _inc.c.longitude,
    _inc.c.latitude,
)
_VIDEO_COLUMNS = (
    _vid.c.video_id,
    _vid.c.status,
    _vid.c.started_at,
    _vid.c.ended_at,
    _vid.c.camera_id,
    _vid.c.camera_name,
    _vid.c.camera_description,
    _vid.c.camera_longitude,
    _vid.c.camera_latitude,
    _vid.c.s3_key,
    _vid.c.s3_thumbnail_key,
    _vid.c.size,
    _vid.c.sha256,
    _vid.c.upload_errors,
)
_INC_WITH_VIDEOS = _inc.outerjoin(_vid, _vid.c.incident_pk == _inc.c.pk)
#: An incident and its videos (one row per video, or one row with NULL video columns).
_LOAD_BY_PK = (
    select(*_INCIDENT_COLUMNS, *_VIDEO_COLUMNS)
    .select_from(_INC_WITH_VIDEOS)
    .where(_inc.c.pk == bindparam("pk"))
    .order_by(_vid.c.pk)
)
#: GET in one statement: the key (`KEY_COLUMNS`), the incident of its organisation (NULLs when
#: there is none) and its videos. One statement is one snapshot, with no BEGIN/COMMIT.
_GET = (
    select(*KEY_COLUMNS, *_INCIDENT_COLUMNS, *_VIDEO_COLUMNS)
    .select_from(
        # Left-deep (key, then incident, then videos): SQLite would materialise a nested join.
        ApiKey.__table__.outerjoin(
            _inc,
            (_inc.c.org_id == ApiKey.__table__.c.org_id)
            & (_inc.c.incident_id == bindparam("incident_id")),
        ).outerjoin(_vid, _vid.c.incident_pk == _inc.c.pk)
    )
    .where(ApiKey.__table__.c.key_hash == bindparam("digest"))
    .order_by(_vid.c.pk)
)
#: The SET clause follows the parameters given (SQLAlchemy caches one form per set of keys).
_UPDATE_INCIDENT = update(_inc).where(_inc.c.pk == bindparam("b_pk"))
_LOCK_INCIDENT = (
    select(_inc.c.pk, _inc.c.incident_at, _inc.c.received_at)
    .where(_inc.c.org_id == bindparam("org_id"), _inc.c.incident_id == bindparam("incident_id"))
    .with_for_update()
)


#: The columns of a new incident row: its ids, and every time set to the request's `now`.
_NEW_INCIDENT: dict[str, Any] = {
    "org_id": bindparam("org_id"),
    "incident_id": bindparam("incident_id"),
    **{
        column: bindparam("now")
        for column in ("created_at", "updated_at", "received_at", "modified_at", "sort_at")
    },
}


def _upserts(ins: Any) -> tuple[Any, Any]:
    new_incident = (
        ins(_inc)
        .values(**_NEW_INCIDENT)
        .on_conflict_do_nothing(index_elements=["org_id", "incident_id"])
        .returning(_inc.c.pk)
    )
    video = ins(_vid)
    # Every column is written, so a video that moves between the lists is replaced whole.
    video = video.on_conflict_do_update(
        index_elements=["incident_pk", "video_id"],
        set_={
            c.name: video.excluded[c.name]
            for c in _vid.c
            if c.name not in ("pk", "incident_pk", "video_id")
        },
    )
    return new_incident, video


_pg_new_incident = postgresql.insert(_inc).values(**_NEW_INCIDENT)
#: PostgreSQL: create-or-lock in one round trip. The conflict branch's update (of a column the
#: PUT sets anyway) locks the row like SELECT ... FOR UPDATE; `xmax = 0` holds only for a row
#: this statement inserted (the usual PostgreSQL idiom for "created?").
_PG_UPSERT_LOCK = _pg_new_incident.on_conflict_do_update(
    index_elements=["org_id", "incident_id"],
    set_={"modified_at": _pg_new_incident.excluded.modified_at},
).returning(_inc.c.pk, _inc.c.incident_at, _inc.c.received_at, literal_column("(xmax = 0)"))
_UPSERTS = {
    "postgresql": (_PG_UPSERT_LOCK, _upserts(postgresql.insert)[1]),
    "sqlite": _upserts(sqlite.insert),
}


def _changed_fields(
    body: IncidentIn,
    created: bool,
    now: dt.datetime,
    incident_at: dt.datetime | None,
    received_at: dt.datetime,
) -> dict[str, Any]:
    sent = body.model_fields_set
    out: dict[str, Any] = {
        name: getattr(body, name)
        for name in ("title", "description", "latitude", "longitude")
        if name in sent
    }
    if "incident_at" in sent:
        incident_at = out["incident_at"] = to_utc_naive(body.incident_at)
    if body.created_at is not None:
        out["created_at"] = to_utc_naive(body.created_at)
    if body.updated_at is not None:
        out["updated_at"] = to_utc_naive(body.updated_at)
    elif not created:
        out["updated_at"] = now
    out["modified_at"] = now
    out["sort_at"] = incident_at or received_at
    return out


def _video_values(
    v: UploadedVideoIn | FailedVideoIn,
    status: str,
    now: dt.datetime,
    size: int | None,
    etag: str | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {
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
    """The incident object as GET returns it (inside `vms_incident`), from the ORM object."""
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


def _incident_from_rows(rows: Sequence[Sequence[Any]], start: int) -> dict[str, Any] | None:
    """`incident_json` from the rows of `_LOAD_BY_PK`/`_GET` (the incident's columns begin at
    `start`, the video columns follow); None when the incident is missing."""
    if not rows or rows[0][start] is None:
        return None
    first = rows[0]
    _, incident_id, title, description, incident_at, created_at, updated_at, lon, lat = first[
        start : start + 9
    ]
    uploaded: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    v0 = start + 9
    for row in rows:
        (
            video_id,
            status,
            started_at,
            ended_at,
            camera_id,
            camera_name,
            camera_description,
            camera_longitude,
            camera_latitude,
            s3_key,
            s3_thumbnail_key,
            size,
            sha256,
            upload_errors,
        ) = row[v0:]
        if video_id is None:
            continue
        video: dict[str, Any] = {
            "id": video_id,
            "started_at": format_time(started_at),
            "ended_at": format_time(ended_at),
            "camera_id": camera_id,
            "camera_name": camera_name,
            "camera_description": camera_description,
            "camera_longitude": camera_longitude,
            "camera_latitude": camera_latitude,
        }
        if status == UPLOADED:
            video["s3_key"] = s3_key
            video["s3_thumbnail_key"] = s3_thumbnail_key
            video["size"] = size
            video["sha256"] = sha256
            uploaded.append(video)
        else:
            video["upload_errors"] = list(upload_errors or [])
            failed.append(video)
    return {
        "id": incident_id,
        "title": title,
        "description": description,
        "incident_at": format_time(incident_at),
        "created_at": format_time(created_at),
        "updated_at": format_time(updated_at),
        "longitude": lon,
        "latitude": lat,
        "uploaded_videos": uploaded,
        "failed_videos": failed,
    }


async def get_incident(db: Database, key: str, incident_id: str) -> dict[str, Any]:
    """`{"vms_incident": {...}}` for the caller owning `key`: authentication and the read in one
    statement. 401/403 for the key first, then 400 for a bad id, then 404 (also for another
    organisation's incident)."""
    digest = hash_key(key)
    # An invalid id is answered after authentication (400), and never sent to the database.
    params = {"digest": digest, "incident_id": incident_id if is_identifier(incident_id) else ""}
    rows = await db.fetch(_GET, params)
    caller_from_row(rows[0] if rows else None, digest)
    check_identifier("incident_id", incident_id)
    out = _incident_from_rows(rows, len(KEY_COLUMNS))
    if out is None:
        raise ApiError("NoSuchIncident")
    return {"vms_incident": out}


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
