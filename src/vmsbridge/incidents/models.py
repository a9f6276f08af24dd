"""ORM models: incidents and their videos."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from vmsbridge.db import Base, utcnow


class Incident(Base):
    """One incident of one organisation. `incident_id` is the client's id (unique per org)."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("org_id", "incident_id", name="uq_incidents_org_incident"),
        # Listing newest first within an organisation.
        Index("ix_incidents_org_sort", "org_id", "sort_at", "pk"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("organisations.id", ondelete="CASCADE")
    )
    incident_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    incident_at: Mapped[dt.datetime | None] = mapped_column(DateTime(), nullable=True)
    # created_at/updated_at: as the external system reports them (the spec), or when we first
    # saw / last changed the incident when the client does not send them.
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(), default=utcnow)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Server bookkeeping.
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(), default=utcnow)
    modified_at: Mapped[dt.datetime] = mapped_column(DateTime(), default=utcnow)
    #: incident_at, or received_at when there is none: the listing order.
    sort_at: Mapped[dt.datetime] = mapped_column(DateTime(), default=utcnow)

    videos: Mapped[list[Video]] = relationship(
        back_populates="incident",
        order_by="Video.pk",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Video(Base):
    """A video of an incident, uploaded (`s3_key` set) or failed (`upload_errors` set)."""

    __tablename__ = "videos"
    __table_args__ = (UniqueConstraint("incident_pk", "video_id", name="uq_videos_incident_video"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_pk: Mapped[int] = mapped_column(
        Integer, ForeignKey("incidents.pk", ondelete="CASCADE")
    )
    video_id: Mapped[str] = mapped_column(String(128))
    #: "uploaded" or "failed"
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(), nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(), nullable=True)
    camera_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    camera_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    camera_description: Mapped[str | None] = mapped_column(Text, nullable=True)
    camera_latitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    camera_longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    s3_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    s3_thumbnail_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Size and ETag from HEAD on the stored object; sha256 as the client reported it.
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    etag: Mapped[str | None] = mapped_column(String(100), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    upload_errors: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(), default=utcnow)

    incident: Mapped[Incident] = relationship(back_populates="videos")
