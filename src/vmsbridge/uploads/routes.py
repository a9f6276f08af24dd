"""Upload endpoints (thin: parse, authenticate, call the service)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from vmsbridge.auth.deps import CallerDep, DbDep, SettingsDep, StoreDep
from vmsbridge.errors import error_responses, loads_json, validate_body

from . import service
from .schemas import (
    CompleteIn,
    CompleteOut,
    ListPartsOut,
    MultipartOut,
    UploadUrlsIn,
    UploadUrlsOut,
)

router = APIRouter(prefix="/v1/vms/incidents", tags=["uploads"])

AUTH_ERRORS = (401, 403, 413, 503)


def json_body(model: type[Any]) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON request body (we parse it ourselves)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


@router.get(
    "/{incident_id}/create_multipart_upload",
    response_model=MultipartOut,
    responses=error_responses(400, *AUTH_ERRORS),
    summary="Create Multipart Upload",
)
async def create_multipart_upload(
    incident_id: str,
    caller: CallerDep,
    db: DbDep,
    store: StoreDep,
    file_id: Annotated[str, Query(description="Unique id of the file being uploaded")],
    filename: Annotated[str, Query(description="Name of the file being uploaded")],
) -> Any:
    """Start a multipart upload; the answer's `s3_key` and `upload_id` name it from now on."""
    return await service.create_multipart_upload(db, store, caller, incident_id, file_id, filename)


@router.post(
    "/{incident_id}/upload_urls",
    response_model=UploadUrlsOut,
    responses=error_responses(400, 404, 409, *AUTH_ERRORS),
    openapi_extra=json_body(UploadUrlsIn),
    summary="Get Upload Urls",
)
async def upload_urls(
    incident_id: str,
    request: Request,
    caller: CallerDep,
    db: DbDep,
    store: StoreDep,
    settings: SettingsDep,
) -> Any:
    """Presigned URLs: a list of part URLs (part 1 first) for a multipart entry, one PUT URL
    for a single-file entry."""
    body = validate_body(UploadUrlsIn, loads_json(await request.body()))
    return await service.upload_urls(db, store, settings, caller, incident_id, body)


@router.post(
    "/{incident_id}/complete_multipart_upload",
    response_model=CompleteOut,
    responses=error_responses(400, 404, *AUTH_ERRORS),
    openapi_extra=json_body(CompleteIn),
    summary="Complete Multipart Upload",
)
async def complete_multipart_upload(
    incident_id: str,
    request: Request,
    caller: CallerDep,
    db: DbDep,
    store: StoreDep,
    settings: SettingsDep,
) -> Any:
    """Complete the upload from its parts' ETags in part order. Idempotent."""
    body = validate_body(CompleteIn, loads_json(await request.body()))
    return await service.complete_multipart_upload(db, store, settings, caller, incident_id, body)


@router.get(
    "/{incident_id}/abort_multipart_upload",
    response_model=MultipartOut,
    responses=error_responses(400, 404, 409, *AUTH_ERRORS),
    summary="Abort Multipart Upload",
)
async def abort_multipart_upload(
    incident_id: str,
    caller: CallerDep,
    db: DbDep,
    store: StoreDep,
    s3_key: Annotated[str, Query()],
    upload_id: Annotated[str, Query()],
) -> Any:
    """Abort the upload and drop its parts. Idempotent; 409 after completion."""
    return await service.abort_multipart_upload(db, store, caller, incident_id, s3_key, upload_id)


@router.get(
    "/{incident_id}/list_parts",
    response_model=ListPartsOut,
    responses=error_responses(400, 404, 409, *AUTH_ERRORS),
    summary="List uploaded parts (extension, for resuming)",
)
async def list_parts(
    incident_id: str,
    caller: CallerDep,
    db: DbDep,
    store: StoreDep,
    s3_key: Annotated[str, Query()],
    upload_id: Annotated[str, Query()],
) -> Any:
    """The parts uploaded so far: number, ETag (unquoted) and size, ascending."""
    return await service.list_parts(db, store, caller, incident_id, s3_key, upload_id)
