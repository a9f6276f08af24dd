"""Initial schema: organisations, API keys, incidents, videos, upload sessions.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "org_id",
            sa.String(36),
            sa.ForeignKey("organisations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("permissions", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_api_keys_org_id", "api_keys", ["org_id"])
    op.create_table(
        "incidents",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "org_id",
            sa.String(36),
            sa.ForeignKey("organisations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("incident_id", sa.String(128), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("incident_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("modified_at", sa.DateTime(), nullable=False),
        sa.Column("sort_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("org_id", "incident_id", name="uq_incidents_org_incident"),
    )
    op.create_index("ix_incidents_org_sort", "incidents", ["org_id", "sort_at", "pk"])
    op.create_table(
        "videos",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "incident_pk",
            sa.Integer(),
            sa.ForeignKey("incidents.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("video_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("camera_id", sa.Text(), nullable=True),
        sa.Column("camera_name", sa.Text(), nullable=True),
        sa.Column("camera_description", sa.Text(), nullable=True),
        sa.Column("camera_latitude", sa.Float(), nullable=True),
        sa.Column("camera_longitude", sa.Float(), nullable=True),
        sa.Column("s3_key", sa.Text(), nullable=True),
        sa.Column("s3_thumbnail_key", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("etag", sa.String(100), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("upload_errors", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("incident_pk", "video_id", name="uq_videos_incident_video"),
    )
    op.create_table(
        "upload_sessions",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "org_id",
            sa.String(36),
            sa.ForeignKey("organisations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("incident_id", sa.String(128), nullable=False),
        sa.Column("file_id", sa.String(128), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("s3_key", sa.Text(), nullable=False),
        sa.Column("upload_id", sa.String(1024), nullable=False),
        sa.Column("api_key_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(), nullable=False),
        sa.Column("etag", sa.String(100), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
    )
    op.create_index(
        "ix_upload_sessions_lookup", "upload_sessions", ["org_id", "incident_id", "upload_id"]
    )
    op.create_index("ix_upload_sessions_state_created", "upload_sessions", ["state", "created_at"])


def downgrade() -> None:
    op.drop_table("upload_sessions")
    op.drop_table("videos")
    op.drop_table("incidents")
    op.drop_table("api_keys")
    op.drop_table("organisations")
