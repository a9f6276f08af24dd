"""FastAPI dependencies: the app's database, store and settings, and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vmsbridge.config import Settings
from vmsbridge.db import Database
from vmsbridge.errors import ApiError
from vmsbridge.storage.base import ObjectStore

from .service import Caller, authenticate


def get_db(request: Request) -> Database:
    """The app's database."""
    db: Database = request.app.state.db
    return db


def get_store(request: Request) -> ObjectStore:
    """The app's object store."""
    store: ObjectStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
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
    """The caller, authenticated in a short read transaction of its own.

    Runs before the endpoint's parameters are validated, so an unauthenticated request gets 401
    whatever else is wrong with it.
    """
    key = api_key_from(request)
    if not key:
        raise ApiError("MissingApiKey", headers={"WWW-Authenticate": "Bearer"})
    async with get_db(request).session() as s:
        return await authenticate(s, key)


DbDep = Annotated[Database, Depends(get_db)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CallerDep = Annotated[Caller, Depends(require_vms_key)]
