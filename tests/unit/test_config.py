"""Settings: environment, normalisation, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vmsbridge.config import Settings


def test_defaults_make_a_single_machine_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("VMSBRIDGE_"):
            monkeypatch.delenv(name)
    s = Settings()
    assert s.embedded_s3
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert s.effective_database_url.endswith("vmsbridge-data/vmsbridge.db")
    assert s.max_upload_size_mb == -1 and s.presign_expires == 7200
    assert s.max_body_bytes == 1024 * 1024


def test_environment_and_normalisation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMSBRIDGE_DATABASE_URL", "postgresql://u:p@db:5432/v")
    monkeypatch.setenv("VMSBRIDGE_S3_ENDPOINT_URL", "https://s3.example.com/")
    monkeypatch.setenv("VMSBRIDGE_DATA_DIR", "/srv/vmsb")
    s = Settings()
    assert s.database_url == "postgresql+asyncpg://u:p@db:5432/v"
    assert s.s3_endpoint_url == "https://s3.example.com"
    assert not s.embedded_s3
    assert s.data_dir == Path("/srv/vmsb")
    assert Settings(database_url="sqlite:///x.db").database_url == "sqlite+aiosqlite:///x.db"


@pytest.mark.parametrize(
    "kwargs",
    [{"max_upload_size_mb": 0}, {"presign_expires": 604_801}, {"port": 70000}, {"workers": 0}],
)
def test_invalid_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Settings(**kwargs)  # type: ignore[arg-type]
