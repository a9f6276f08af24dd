"""API keys: generation, hashing, lookup, creation, listing, revocation.

A key is `vmsb_` + 32 random bytes (urlsafe base64): recognisable in logs and secret scanners,
and high-entropy. Only its SHA-256 is stored. A slow password KDF (bcrypt, argon2) exists to make
guessing *low-entropy* secrets expensive; with 256 random bits there is nothing to guess, so a
fast hash is as safe and lets us find a key with one indexed lookup by hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vmsbridge.db import utcnow
from vmsbridge.errors import ApiError

from .models import ApiKey, Organisation

KEY_PREFIX = "vmsb_"
VMS_PERMISSION = "vms"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the key's id and its organisation."""

    key_id: str
    org_id: str


def generate_key() -> str:
    """A new random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """SHA-256 hex of a key: what the database stores."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def authenticate(session: AsyncSession, key: str) -> Caller:
    """The caller owning `key`; 401 when unknown or revoked, 403 without the `vms` permission."""
    digest = hash_key(key)
    row = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == digest))
    ).scalar_one_or_none()
    # The lookup is by hash; compare again in constant time for good measure.
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        raise ApiError("InvalidApiKey")
    if VMS_PERMISSION not in row.permission_set:
        raise ApiError("MissingPermission")
    return Caller(key_id=row.id, org_id=row.org_id)


_keys = ApiKey.__table__.c
#: What `caller_from_row` needs of an API key row (select these first, in this order).
KEY_COLUMNS = (_keys.id, _keys.org_id, _keys.key_hash, _keys.permissions, _keys.revoked_at)
#: The key of a digest (`hash_key`).
KEY_LOOKUP = select(*KEY_COLUMNS).where(_keys.key_hash == bindparam("digest"))


def caller_from_row(row: Sequence[Any] | None, digest: str) -> Caller:
    """The caller of a key row (`KEY_COLUMNS` first); 401 when there is none or it is revoked,
    403 without the `vms` permission."""
    if row is None or not hmac.compare_digest(row[2], digest) or row[4] is not None:
        raise ApiError("InvalidApiKey")
    if VMS_PERMISSION not in row[3].split():
        raise ApiError("MissingPermission")
    return Caller(key_id=row[0], org_id=row[1])


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A freshly created key: `key` is shown once and never stored."""

    key: str
    id: str
    org_id: str
    org_name: str


async def create_key(
    session: AsyncSession, org_name: str, *, name: str = "", permissions: list[str] | None = None
) -> CreatedKey:
    """Create a key for organisation `org_name`, creating the organisation when needed."""
    org = (
        await session.execute(select(Organisation).where(Organisation.name == org_name))
    ).scalar_one_or_none()
    if org is None:
        org = Organisation(name=org_name)
        session.add(org)
        await session.flush()
    key = generate_key()
    perms = " ".join(sorted(set(permissions or [VMS_PERMISSION])))
    row = ApiKey(
        org_id=org.id, name=name, key_hash=hash_key(key), key_prefix=key[:12], permissions=perms
    )
    session.add(row)
    await session.flush()
    return CreatedKey(key=key, id=row.id, org_id=org.id, org_name=org.name)


async def list_keys(session: AsyncSession) -> list[tuple[ApiKey, Organisation]]:
    """Every key with its organisation, oldest first."""
    rows = await session.execute(
        select(ApiKey, Organisation)
        .join(Organisation, ApiKey.org_id == Organisation.id)
        .order_by(ApiKey.created_at, ApiKey.id)
    )
    return [(k, o) for k, o in rows.tuples()]


async def revoke_key(session: AsyncSession, key_id: str) -> bool:
    """Revoke a key by id. False when there is no such key; revoking twice is fine."""
    exists = (await session.execute(select(ApiKey.id).where(ApiKey.id == key_id))).first()
    if exists is None:
        return False
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return True
