"""FastAPI dependencies: the app's database, store and settings, and the authenticated caller.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in its thread pool, and that
hop (and its wait for the GIL under load) cost more than the whole database read of a GET.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vmsbridge.config import Settings
from vmsbridge.db import Database
from vmsbridge.errors import ApiError
from vmsbridge.storage.base import ObjectStore

from .service import KEY_LOOKUP, Caller, caller_from_row, hash_key


async def get_db(request: Request) -> Database:
    """The app's database."""
    db: Database = request.app.state.db
    return db


async def get_store(request: Request) -> ObjectStore:
    """The app's object store."""
    store: ObjectStore = request.app.state.store
    return store


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def api_key_from(request: Request) -> str | None:
    """The key from `x-api-key` or `Authorization: Bearer KEY`."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def require_vms_key(request: Request) -> Caller:
    """The caller, authenticated with one indexed SELECT of its own (`Database.read`).

    Runs before the endpoint's parameters are validated, so an unauthenticated request gets 401
    whatever else is wrong with it. Nothing is cached: a revoked key gets 401 at once.
    """
    key = require_key(request)
    db: Database = request.app.state.db
    digest = hash_key(key)
    rows = await db.fetch(KEY_LOOKUP, {"digest": digest})
    return caller_from_row(rows[0] if rows else None, digest)


def require_key(request: Request) -> str:
    """The request's API key; 401 `MissingApiKey` without one."""
    key = api_key_from(request)
    if not key:
        raise ApiError("MissingApiKey", headers={"WWW-Authenticate": "Bearer"})
    return key


DbDep = Annotated[Database, Depends(get_db)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CallerDep = Annotated[Caller, Depends(require_vms_key)]
