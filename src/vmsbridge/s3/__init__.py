"""The embedded S3-compatible object store: an ASGI app over a local directory.

`create_s3_app(data_dir, credentials)` builds the app; run it with any ASGI server (the
`vmsbridge s3 serve` command and `vmsbridge serve` use uvicorn). `load_or_create_credentials`
gives the store its one access key, persisted in the data directory.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    ASGIApp = Callable[
        [
            MutableMapping[str, Any],
            Callable[[], Awaitable[MutableMapping[str, Any]]],
            Callable[[MutableMapping[str, Any]], Awaitable[None]],
        ],
        Awaitable[None],
    ]

__all__ = ["CREDENTIALS_FILE", "create_s3_app", "load_or_create_credentials"]

CREDENTIALS_FILE = ".s3-credentials.json"


def create_s3_app(
    data_dir: Path,
    credentials: dict[str, str],
    *,
    region: str = "us-east-1",
    min_part_size: int = 5 * 1024 * 1024,
) -> ASGIApp:
    """Build the store's ASGI app.

    `credentials` maps access key id -> secret access key. Objects, multipart staging and temp
    files all live under `data_dir` (one filesystem, so renames are atomic); it is created if
    missing. `min_part_size` is the smallest non-final multipart part (S3: 5 MiB).
    """
    from .app import S3App

    return S3App(Path(data_dir), credentials, region=region, min_part_size=min_part_size)


def load_or_create_credentials(
    data_dir: Path, access_key_id: str | None = None, secret_access_key: str | None = None
) -> tuple[str, str, bool]:
    """(access key id, secret, generated) for the store.

    Given both values, use them. Otherwise load `data_dir/.s3-credentials.json`, or generate an
    AKIA-style id and a 40-character secret, save them there (mode 0600) and return
    generated=True so the caller can show them once.
    """
    if access_key_id and secret_access_key:
        return access_key_id, secret_access_key, False
    data_dir = Path(data_dir)
    path = data_dir / CREDENTIALS_FILE
    try:
        saved = json.loads(path.read_text())
        return saved["access_key_id"], saved["secret_access_key"], False
    except FileNotFoundError:
        pass
    upper = string.ascii_uppercase + string.digits
    key_id = "AKIA" + "".join(secrets.choice(upper) for _ in range(16))
    alphabet = string.ascii_letters + string.digits + "+/"
    secret = "".join(secrets.choice(alphabet) for _ in range(40))
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"access_key_id": key_id, "secret_access_key": secret}, f)
        f.flush()
        os.fsync(f.fileno())
    try:
        # link() fails if another process created the file first: then theirs wins.
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink()
        saved = json.loads(path.read_text())
        return saved["access_key_id"], saved["secret_access_key"], False
    tmp.unlink()
    return key_id, secret, True
