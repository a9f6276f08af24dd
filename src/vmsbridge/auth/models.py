"""ORM models: organisations and API keys."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from vmsbridge.db import Base, utcnow


def new_uuid() -> str:
    """A random UUID as text (portable across SQLite and PostgreSQL)."""
    return str(uuid.uuid4())


class Organisation(Base):
    """A tenant. Every incident, upload and key belongs to exactly one."""

    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(), default=utcnow)


class ApiKey(Base):
    """An API key. Only the SHA-256 of the key is stored (see `vmsbridge.auth.service`)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    org_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The first characters of the key, to recognise it in listings (`vmsb_AbCd...`).
    key_prefix: Mapped[str] = mapped_column(String(16))
    #: Space-separated permissions, e.g. "vms".
    permissions: Mapped[str] = mapped_column(String(200), default="vms")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(), nullable=True)

    @property
    def permission_set(self) -> set[str]:
        """The permissions as a set."""
        return set(self.permissions.split())
