"""Server configuration: one validated `Settings` object, read from `VMSBRIDGE_*` variables.

The defaults make `vmsbridge serve` a working single-machine install: a SQLite file and the
embedded S3-compatible store, both under `data_dir`. CLI flags override the environment by
passing keyword arguments (`Settings(port=8080)`); tests build their own `Settings` the same way.

The client (`vmsbridge.client`) does not use this module: it imports nothing from the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: S3's own limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html).
S3_MIN_PART_SIZE = 5 * 1024 * 1024
S3_MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
S3_MAX_PARTS = 10_000
#: SigV4 presigned URLs live at most seven days.
S3_MAX_PRESIGN_EXPIRES = 604_800


class Settings(BaseSettings):
    """Every server setting, each one also an environment variable `VMSBRIDGE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="VMSBRIDGE_", extra="ignore")

    # Where the SQLite file and the embedded store's objects live.
    data_dir: Path = Path("./vmsbridge-data")
    # SQLAlchemy async URL. Unset: SQLite at `{data_dir}/vmsbridge.db`.
    # PostgreSQL: `postgresql+asyncpg://user:pass@host:5432/db` (`postgresql://` is accepted too).
    database_url: str | None = None

    # API listener.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)

    # Object storage. `s3_endpoint_url` unset: start the embedded store on `s3_port` and use it.
    s3_endpoint_url: str | None = None
    # The scheme://host[:port] clients use in presigned URLs (defaults to the endpoint URL).
    s3_public_url: str | None = None
    s3_port: int = Field(9000, ge=0, le=65535)
    s3_bucket: str = "vmsbridge"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    # Embedded store only: the smallest non-final multipart part (S3: 5 MiB). Tests lower it.
    s3_min_part_size: int = Field(S3_MIN_PART_SIZE, ge=1)

    # Lifetime of presigned URLs handed to clients, in seconds.
    presign_expires: int = Field(7200, ge=1, le=S3_MAX_PRESIGN_EXPIRES)
    # Largest upload accepted, in MB; -1 means unlimited (reported as such by `upload_urls`).
    max_upload_size_mb: int = Field(-1, ge=-1)
    # Largest JSON request body the API reads.
    max_body_bytes: int = Field(1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _normalise(self) -> Self:
        if self.database_url:
            url = self.database_url
            for plain in ("postgresql://", "postgres://"):
                if url.startswith(plain):
                    url = "postgresql+asyncpg://" + url[len(plain) :]
            if url.startswith("sqlite:///"):
                url = "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
            self.database_url = url
        if self.s3_endpoint_url:
            self.s3_endpoint_url = self.s3_endpoint_url.rstrip("/")
        if self.s3_public_url:
            self.s3_public_url = self.s3_public_url.rstrip("/")
        if self.max_upload_size_mb == 0:
            raise ValueError("max_upload_size_mb must be -1 (unlimited) or a positive number")
        return self

    @property
    def embedded_s3(self) -> bool:
        """True when the server runs and uses its own embedded S3-compatible store."""
        return self.s3_endpoint_url is None

    @property
    def effective_database_url(self) -> str:
        """The database URL in use: the configured one, or the SQLite file in `data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'vmsbridge.db').resolve()}"
