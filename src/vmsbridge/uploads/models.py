"""ORM model: multipart upload sessions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vmsbridge.db import Base, utcnow

OPEN = "open"
COMPLETING = "completing"  # claimed by a complete call, the store is assembling the object
COMPLETED = "completed"
ABORTING = "aborting"  # claimed by a reaper, being aborted in the store
ABORTED = "aborted"


class UploadSession(Base):
    """A multipart upload started through `create_multipart_upload`.

    Every later call names it by (org, incident, s3_key, upload_id); anything else is a 404.
    """

    __tablename__ = "upload_sessions"
    __table_args__ = (
        Index("ix_upload_sessions_lookup", "org_id", "incident_id", "upload_id"),
        # The reaper's scan: open sessions, oldest first.
        Index("ix_upload_sessions_state_created", "state", "created_at"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("organisations.id", ondelete="CASCADE")
    )
    incident_id: Mapped[str] = mapped_column(String(128))
    file_id: Mapped[str] = mapped_column(String(128))
    filename: Mapped[str] = mapped_column(Text)
    s3_key: Mapped[str] = mapped_column(Text)
    upload_id: Mapped[str] = mapped_column(String(1024))
    api_key_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(), default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default=OPEN)
    state_changed_at: Mapped[dt.datetime] = mapped_column(DateTime(), default=utcnow)
    #: Set when completed: the object's ETag (unquoted) and size.
    etag: Mapped[str | None] = mapped_column(String(100), nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
