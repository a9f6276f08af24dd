"""The API application: `create_app(settings, store=...)` builds it, with no import-time globals.

Lifespan: migrations run on start; a store the app built itself (from settings) is closed on
exit, a store passed in belongs to the caller. `app.state` holds `settings`, `db`, `store` and
`metrics`.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic.json_schema import models_json_schema
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmsbridge import __version__
from vmsbridge.config import Settings
from vmsbridge.db import Database
from vmsbridge.errors import CATALOGUE, ApiError, ErrorBody, error_responses, pydantic_errors
from vmsbridge.storage.base import ObjectStore, StorageError

log = logging.getLogger("vmsbridge.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_error(send: Send, err: ApiError) -> None:
    import json

    body = json.dumps(err.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for bodies over `limit` bytes: by Content-Length up front, and by counting the bytes
    actually received (chunked bodies, lying headers). API bodies are small JSON documents, so
    the body is read here (at most `limit` bytes) and replayed to the app."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, ApiError("ValidationError", "Bad Content-Length."))
                    return
                if declared > self.limit:
                    await _send_error(send, self._too_large())
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_error(send, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> ApiError:
        # Made only when needed: building it on every request showed up in profiles (2.5%).
        return ApiError("RequestTooLarge", f"The request body is larger than {self.limit} bytes.")


class Metrics:
    """Request counts by (method, route, status) and durations, in Prometheus text format.

    Per process: with several API processes, Prometheus scrapes each and sums (the usual
    model); nothing here changes an API answer, so it is not shared state in DESIGN's sense.
    """

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.duration_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.duration_count: dict[tuple[str, str], int] = defaultdict(int)
        self.duration_buckets: dict[tuple[str, str], list[int]] = {}
        self.in_flight = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        self.requests[(method, route, str(status))] += 1
        key = (method, route)
        self.duration_sum[key] += seconds
        self.duration_count[key] += 1
        buckets = self.duration_buckets.setdefault(key, [0] * len(self.BUCKETS))
        for i, bound in enumerate(self.BUCKETS):
            if seconds <= bound:
                buckets[i] += 1

    def render(self) -> str:
        """The exposition text."""

        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        lines = [
            "# HELP vmsbridge_http_requests_total HTTP requests by method, route and status.",
            "# TYPE vmsbridge_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            lines.append(
                f'vmsbridge_http_requests_total{{method="{esc(method)}",route="{esc(route)}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP vmsbridge_http_request_duration_seconds HTTP request durations.",
            "# TYPE vmsbridge_http_request_duration_seconds histogram",
        ]
        for (method, route), count in sorted(self.duration_count.items()):
            labels = f'method="{esc(method)}",route="{esc(route)}"'
            for bound, n in zip(self.BUCKETS, self.duration_buckets[(method, route)], strict=True):
                lines.append(
                    f'vmsbridge_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n}'
                )
            lines.append(
                f'vmsbridge_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}'
            )
            lines.append(
                f"vmsbridge_http_request_duration_seconds_sum{{{labels}}} "
                f"{self.duration_sum[(method, route)]:.6f}"
            )
            lines.append(f"vmsbridge_http_request_duration_seconds_count{{{labels}}} {count}")
        lines += [
            "# HELP vmsbridge_http_requests_in_flight Requests being served.",
            "# TYPE vmsbridge_http_requests_in_flight gauge",
            f"vmsbridge_http_requests_in_flight {self.in_flight}",
        ]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Times every HTTP request and records it under its route template (not its raw path, so
    ids do not explode the label space); unmatched paths count as `<unmatched>`."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight -= 1
            route = scope.get("route")
            path = getattr(route, "path", None) or "<unmatched>"
            self.metrics.observe(scope["method"], path, status, time.perf_counter() - start)


_collected_before_freeze = False

_STATUS_CODES = {404: "NotFound", 405: "MethodNotAllowed", 413: "RequestTooLarge"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        raw = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in raw):
            err = ApiError("MalformedJSON")
        else:
            errors = pydantic_errors(raw)
            first = errors[0] if errors else {"field": "request", "message": "invalid"}
            err = ApiError(
                "ValidationError", f"{first['field']}: {first['message']}", errors=errors
            )
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code)
        if code is None:
            code = next(
                (c for c, (s, _) in CATALOGUE.items() if s == exc.status_code), "ValidationError"
            )
        err = ApiError(code)
        return JSONResponse(err.body(), status_code=err.status, headers=exc.headers)

    @app.exception_handler(StorageError)
    async def _storage(_request: Request, exc: StorageError) -> JSONResponse:
        log.warning("storage error: %s (%s)", exc, exc.code)
        err = ApiError("StorageUnavailable")
        return JSONResponse(err.body(), status_code=err.status, headers={"Retry-After": "1"})

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeoutError)
    @app.exception_handler(ConnectionError)
    async def _database(_request: Request, exc: Exception) -> JSONResponse:
        # Connection lost/refused, pool exhausted, SQLite busy beyond its timeout: transient.
        log.warning("database unavailable: %s", type(exc).__name__)
        err = ApiError("DatabaseUnavailable")
        return JSONResponse(err.body(), status_code=err.status, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        err = ApiError("InternalError")
        return JSONResponse(err.body(), status_code=err.status)


def _install_ops_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        """The process is up (checks nothing else)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: database and object store",
        responses=error_responses(503),
    )
    async def readyz(request: Request) -> JSONResponse:
        """200 when the database and the object store answer, else 503 `NotReady`."""
        checks: dict[str, str] = {}
        try:
            await request.app.state.db.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            await request.app.state.store.check()
            checks["storage"] = "ok"
        except Exception as exc:
            checks["storage"] = f"error: {type(exc).__name__}"
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ok", **checks})
        err = ApiError("NotReady", "Not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()))
        return JSONResponse({**err.body(), **checks}, status_code=503)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (this process)",
        response_class=PlainTextResponse,
    )
    async def metrics(request: Request) -> PlainTextResponse:
        """Request counts by route and status, and request durations."""
        return PlainTextResponse(
            request.app.state.metrics.render(),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )


def _custom_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    from vmsbridge.incidents.schemas import IncidentIn, IncidentPutBody
    from vmsbridge.uploads.schemas import CompleteIn, UploadUrlsIn

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, defs = models_json_schema(
            [
                (m, "validation")
                for m in (IncidentIn, IncidentPutBody, UploadUrlsIn, CompleteIn, ErrorBody)
            ],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, value in defs.get("$defs", {}).items():
            components.setdefault(name, value)
        # The PUT body is flat or wrapped: say so.
        put = schema["paths"]["/v1/vms/incidents/{incident_id}"]["put"]
        put["requestBody"]["content"]["application/json"]["schema"] = {
            "oneOf": [
                {"$ref": "#/components/schemas/IncidentPutBody"},
                {"$ref": "#/components/schemas/IncidentIn"},
            ]
        }
        security: dict[str, dict[str, str]] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
        schema["components"]["securitySchemes"] = security
        for path, ops in schema["paths"].items():
            if path.startswith("/v1/"):
                for op in ops.values():
                    op["security"] = [{"ApiKey": []}, {"Bearer": []}]
        app.openapi_schema = schema
        return schema

    return openapi


def create_app(settings: Settings, *, store: ObjectStore | None = None) -> FastAPI:
    """Build the API application.

    `store`: the object store to use (the caller owns it). None: an `S3Gateway` built from
    `settings` (needs `VMSBRIDGE_S3_ENDPOINT_URL` and credentials), closed on shutdown.
    """
    own_store = store is None
    if store is None:
        from vmsbridge.storage.client import S3Gateway

        store = S3Gateway.from_settings(settings)
    db = Database(settings.effective_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.migrate()
        # What exists now (modules, botocore's service models, SQLAlchemy's and pydantic's
        # structures, the app) lives as long as the process. Left in the collector's oldest
        # generation, every full collection walked all of it: ~100 ms pauses (collecting
        # nothing) every second or so under load, which were the p99 of GET and PUT. Frozen,
        # a full collection walks only what requests left behind. (The collection before it,
        # so as not to freeze startup garbage, runs once per process: tests start many apps.)
        global _collected_before_freeze
        if not _collected_before_freeze:
            gc.collect()
            _collected_before_freeze = True
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            if own_store:
                await app.state.store.close()
            await db.dispose()

    app = FastAPI(
        title="vmsbridge VMS incident API",
        version=__version__,
        description=(
            "The VMS incident API (ALO's, wire-for-wire) plus extensions. Every error is "
            "`{status, message, code}`; validation errors add `errors` naming each field."
        ),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.store = store
    app.state.metrics = Metrics()

    _install_error_handlers(app)
    _install_ops_routes(app)
    from vmsbridge.incidents.routes import router as incidents_router
    from vmsbridge.uploads.routes import router as uploads_router

    app.include_router(uploads_router)
    app.include_router(incidents_router)
    app.openapi = _custom_openapi(app)  # type: ignore[method-assign]

    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
