"""Incident endpoints (thin: parse, authenticate, call the service)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from vmsbridge.auth.deps import CallerDep, DbDep, SettingsDep, StoreDep, require_key
from vmsbridge.errors import error_responses, loads_json
from vmsbridge.uploads.routes import AUTH_ERRORS, json_body

from . import service
from .schemas import DownloadUrlOut, IncidentEnvelope, IncidentIn, IncidentList

router = APIRouter(prefix="/v1/vms/incidents", tags=["incidents"])


@router.get(
    "",
    response_model=IncidentList,
    responses=error_responses(400, *AUTH_ERRORS),
    summary="List incidents (extension)",
)
async def list_incidents(
    caller: CallerDep,
    db: DbDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
    since: Annotated[dt.datetime | None, Query(description="incident_at >= since")] = None,
    until: Annotated[dt.datetime | None, Query(description="incident_at < until")] = None,
) -> Any:
    """The organisation's incidents, newest first (by `incident_at`, else when received)."""
    return await service.list_incidents(
        db, caller, page=page, per_page=per_page, since=since, until=until
    )


@router.get(
    "/{incident_id}",
    response_model=IncidentEnvelope,
    responses=error_responses(400, 404, *AUTH_ERRORS),
    summary="Get An Incident",
)
async def get_incident(incident_id: str, request: Request) -> Any:
    """The incident with its uploaded and failed videos."""
    # Authenticated inside the service's single statement (not `CallerDep`: one round trip, one
    # snapshot). The body is built as plain JSON and returned as is: `response_model` documents
    # it, and FastAPI does not validate a `Response` again.
    body = await service.get_incident(request.app.state.db, require_key(request), incident_id)
    return JSONResponse(body)


@router.put(
    "/{incident_id}",
    response_model=IncidentEnvelope,
    status_code=200,
    responses={
        201: {"model": IncidentEnvelope, "description": "Created"},
        **error_responses(400, *AUTH_ERRORS),
    },
    openapi_extra=json_body(IncidentIn),
    summary="Create/Update Incident",
)
async def put_incident(incident_id: str, request: Request, caller: CallerDep) -> Any:
    """Create (201) or update (200) an incident. The body may be flat or wrapped in
    `vms_incident`; videos are merged by id. The answer is what GET returns."""
    # The app's parts straight from its state: each FastAPI dependency costs its resolution.
    state = request.app.state
    payload = loads_json(await request.body())
    created, body = await service.put_incident(
        state.db, state.store, state.settings, caller, incident_id, payload
    )
    return JSONResponse(body, status_code=201 if created else 200)


@router.get(
    "/{incident_id}/videos/{video_id}/download_url",
    response_model=DownloadUrlOut,
    responses=error_responses(400, 404, *AUTH_ERRORS),
    summary="Presigned download URL of an uploaded video (extension)",
)
async def download_url(
    incident_id: str,
    video_id: str,
    caller: CallerDep,
    db: DbDep,
    store: StoreDep,
    settings: SettingsDep,
    thumbnail: Annotated[bool, Query(description="The thumbnail instead of the video")] = False,
) -> Any:
    """A presigned GET URL, served with the file's name as its content-disposition."""
    return await service.download_url(
        db, store, settings, caller, incident_id, video_id, thumbnail=thumbnail
    )
