"""Every error the API can answer, in one catalogue (one place to read every 4xx/5xx).

Each entry is (HTTP status, default message). An `ApiError` carries a catalogue code and is
rendered as `{"status": 404, "message": "...", "code": "NoSuchUpload"}`; validation errors add
`"errors": [{"field": "files.f1.part_count", "message": "..."}]` naming each bad field.

Handlers in `vmsbridge.app` turn FastAPI's own errors (validation, unknown route, wrong method),
storage failures and anything unexpected into the same shape: never a stack trace, and never a
500 for bad input.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

#: code -> (status, default message)
CATALOGUE: dict[str, tuple[int, str]] = {
    # 400: the request is wrong; nothing was changed.
    "ValidationError": (400, "The request is invalid."),
    "MalformedJSON": (400, "The request body is not valid JSON."),
    "InvalidIdentifier": (
        400,
        "Identifiers are 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit.",
    ),
    "InvalidFilename": (
        400,
        "A filename is a base name of 1-255 bytes without '/', '\\', NUL or control characters.",
    ),
    "InvalidS3Key": (400, "The s3_key does not belong to this organisation and incident."),
    "UploadNotFound": (400, "The s3_key does not name an uploaded object."),
    "SizeMismatch": (400, "The video's size does not match the stored object."),
    "EntityTooLarge": (400, "The uploaded object is larger than the server accepts."),
    "DuplicateVideoId": (400, "A video id appears more than once in the request."),
    "InvalidPart": (400, "A listed part was never uploaded, or its ETag does not match."),
    "InvalidPartOrder": (400, "The parts are not in ascending order."),
    "EntityTooSmall": (400, "A part other than the last is smaller than the minimum part size."),
    # 401/403: who is asking.
    "MissingApiKey": (401, "Send your API key in 'x-api-key' or 'Authorization: Bearer'."),
    "InvalidApiKey": (401, "The API key is unknown or revoked."),
    "MissingPermission": (403, "The API key does not have the 'vms' permission."),
    # 404: missing, or belonging to another organisation (indistinguishable on purpose).
    "NotFound": (404, "No such endpoint."),
    "NoSuchIncident": (404, "The incident does not exist."),
    "NoSuchUpload": (404, "The multipart upload does not exist."),
    "NoSuchVideo": (404, "The incident has no uploaded video with that id."),
    "MethodNotAllowed": (405, "The method is not allowed on this endpoint."),
    # 409: the upload is in a state that forbids the operation.
    "UploadCompleted": (409, "The multipart upload has already been completed."),
    "UploadAborted": (409, "The multipart upload has been aborted."),
    "RequestTooLarge": (413, "The request body is too large."),
    # 5xx: our side.
    "InternalError": (500, "Internal server error."),
    "StorageUnavailable": (503, "The object store is unavailable; try again."),
    "DatabaseUnavailable": (503, "The database is unavailable or busy; try again."),
    "NotReady": (503, "The server is not ready."),
}


class ApiError(Exception):
    """An error answer from the catalogue. `errors` names bad fields (validation only)."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in CATALOGUE:  # a programming error, caught by the unit tests
            raise KeyError(f"unknown error code {code!r}")
        self.code = code
        self.status, default = CATALOGUE[code]
        self.message = message or default
        self.errors = errors
        self.headers = headers
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """The JSON answer."""
        out: dict[str, Any] = {"status": self.status, "message": self.message, "code": self.code}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


def field_error(field: str, message: str, code: str = "ValidationError") -> ApiError:
    """A 400 naming one bad field."""
    return ApiError(code, f"{field}: {message}", errors=[{"field": field, "message": message}])


def pydantic_errors(errors: list[Any], prefix: tuple[Any, ...] = ()) -> list[dict[str, str]]:
    """Turn pydantic/FastAPI error dicts into `[{"field", "message"}]`.

    FastAPI locations start with where the value came from (`body`, `query`, `path`); that part is
    dropped so a field reads as the client wrote it (`files.f1.part_count`).
    """
    out = []
    for err in errors:
        loc = list(prefix) + list(err.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        field = ".".join(str(p) for p in loc) or "body"
        msg = str(err.get("msg", "invalid value"))
        out.append({"field": field, "message": msg})
    return out


class FieldError(BaseModel):
    """One bad field of a request."""

    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer. `code` is one of the catalogue's codes."""

    status: int
    message: str
    code: str = Field(json_schema_extra={"enum": list(sorted(CATALOGUE))})
    errors: list[FieldError] | None = Field(
        None, description="Validation errors only: each bad field."
    )


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given error statuses (each with the codes it can carry)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        codes = sorted(c for c, (s, _) in CATALOGUE.items() if s == status)
        out[status] = {"model": ErrorBody, "description": "Error: " + ", ".join(codes)}
    return out


def loads_json(raw: bytes) -> Any:
    """Parse a request body; 400 `MalformedJSON` for anything that is not strict JSON."""
    import json

    def _reject(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    if not raw.strip():
        raise ApiError("MalformedJSON", "The request body is empty; send a JSON object.")
    try:
        return json.loads(raw, parse_constant=_reject)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError("MalformedJSON") from None


def validate_body(model: Any, payload: Any) -> Any:
    """`model.model_validate(payload)`, with 400 `ValidationError` naming each bad field."""
    from pydantic import ValidationError

    if not isinstance(payload, dict):
        raise field_error("body", "must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = pydantic_errors(exc.errors(include_url=False))
        first = errors[0]
        raise ApiError(
            "ValidationError", f"{first['field']}: {first['message']}", errors=errors
        ) from None
