"""Object keys and the identifiers they are made of (DESIGN.md, "Wire contract").

Keys are made by the server, never taken from a client:
`vms/{org_id}/{api_key_id}/{incident_id}/{file_id}_{filename}`. Because identifiers and filenames
are validated first, a key can never escape its organisation's prefix (no `/`, no `..`).
"""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_FILENAME_BYTES = 255


def is_identifier(value: str) -> bool:
    """True for 1-128 characters of `A-Z a-z 0-9 . _ -` starting with a letter or digit."""
    return _IDENTIFIER.fullmatch(value) is not None


def filename_problem(value: str) -> str | None:
    """None when `value` is an acceptable base name, else why it is not."""
    if not value:
        return "must not be empty"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        return f"must be at most {MAX_FILENAME_BYTES} bytes of UTF-8"
    if value in (".", ".."):
        return "must not be '.' or '..'"
    if "/" in value or "\\" in value:
        return "must not contain '/' or '\\'"
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        return "must not contain NUL or control characters"
    return None


def object_key(org_id: str, api_key_id: str, incident_id: str, file_id: str, filename: str) -> str:
    """The object key of one uploaded file. Arguments must already be validated."""
    return f"vms/{org_id}/{api_key_id}/{incident_id}/{file_id}_{filename}"


def org_prefix(org_id: str) -> str:
    """Every object of an organisation lies under this prefix."""
    return f"vms/{org_id}/"


def key_belongs_to(key: str, org_id: str, incident_id: str) -> bool:
    """True when `key` has the shape of a key made for this organisation and incident."""
    parts = key.split("/")
    return (
        len(parts) == 5
        and parts[0] == "vms"
        and parts[1] == org_id
        and bool(parts[2])
        and parts[3] == incident_id
        and filename_problem(parts[4]) is None
    )


def filename_from_key(key: str, file_id: str | None = None) -> str:
    """The client's filename in a key (`{file_id}_{filename}`): best effort without the file id."""
    last = key.rsplit("/", 1)[-1]
    if file_id and last.startswith(file_id + "_"):
        return last[len(file_id) + 1 :]
    return last.split("_", 1)[1] if "_" in last else last
