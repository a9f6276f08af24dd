"""Pure arithmetic and parsing: part sizes, byte sizes, backoff, Retry-After, URL expiry, ETags.

Nothing here does I/O; every function is unit-tested on its edge cases.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import math
import random
import re
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs, urlsplit, urlunsplit

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: S3's limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html): every part
#: but the last at least 5 MiB, at most 5 GiB, at most 10,000 parts.
S3_MIN_PART_SIZE = 5 * MiB
S3_MAX_PART_SIZE = 5 * GiB
S3_MAX_PARTS = 10_000

#: Our smallest part: bigger than S3's minimum so that a request's fixed cost stays small.
DEFAULT_MIN_PART_SIZE = 8 * MiB
#: The spec's threshold: "For large files (100+ MB) you will need to upload in chunks".
DEFAULT_MULTIPART_THRESHOLD = 100 * 1000 * 1000
#: How much of a file is read (and held) at a time while streaming a request body. Each chunk
#: costs a thread hop and a trip through httpx/h11/asyncio (~0.25 ms of CPU), so 1 MiB chunks
#: spent ~0.2 CPU-s per GiB on that alone; a slot holds about three chunks at once (the one
#: being read, the one httpx is sending, the unsent rest copied into the socket transport's
#: buffer), so 4 MiB chunks cost ~12 MiB a slot. 2 MiB halves the per-chunk cost at ~6 MiB a slot.
CHUNK_SIZE = 2 * MiB


def part_size(
    file_size: int,
    *,
    min_part_size: int = DEFAULT_MIN_PART_SIZE,
    max_parts: int = S3_MAX_PARTS,
    max_part_size: int = S3_MAX_PART_SIZE,
) -> int:
    """The part size for a multipart upload of `file_size` bytes.

    At least `min_part_size`; grown (in whole MiB) so that the file needs at most `max_parts`
    parts. Raises ValueError if that would exceed `max_part_size` (a file over ~48.8 TiB with
    S3's limits) or if the arguments are negative.
    """
    if file_size < 0 or min_part_size <= 0 or max_parts <= 0:
        raise ValueError("sizes must be positive")
    size = max(min_part_size, math.ceil(file_size / max_parts))
    if size > min_part_size:
        size = math.ceil(size / MiB) * MiB  # round numbers are easier to read in logs
    if size > max_part_size:
        raise ValueError(
            f"a file of {file_size} bytes needs parts over {max_part_size} bytes "
            f"to fit in {max_parts} parts"
        )
    return size


#: Parts a large file is cut into (parts grow past the minimum to get there, up to
#: `MAX_GROWN_PART_SIZE`). Every part costs a request, a journal row and, in the store, fsyncs
#: of the part and its record: on a 1 GiB push (2-core box, loopback, embedded store) 16 MiB
#: parts instead of 8 took ~0.2 CPU-s less in the client and ~0.2 in the store and ~8% less
#: time; 32-64 MiB gained a little more. Files up to 512 MiB keep the 8 MiB minimum, so retries
#: and resumes of them stay fine-grained.
TARGET_PARTS = 64
MAX_GROWN_PART_SIZE = 64 * MiB


def choose_part_size(file_size: int, *, min_part_size: int = DEFAULT_MIN_PART_SIZE) -> int:
    """The part size the client uses for a file of `file_size` bytes.

    `part_size` with the minimum raised so that a big file has about `TARGET_PARTS` parts (in
    whole MiB, at most `MAX_GROWN_PART_SIZE`, never below `min_part_size`): 8 MiB parts up to
    512 MiB, 16 MiB for 1 GiB, 64 MiB from 4 GiB. Raises ValueError as `part_size` does.
    """
    if file_size < 0 or min_part_size <= 0:
        raise ValueError("sizes must be positive")
    grown = min(MAX_GROWN_PART_SIZE, math.ceil(file_size / TARGET_PARTS / MiB) * MiB)
    return part_size(file_size, min_part_size=max(min_part_size, grown))


def part_count(file_size: int, size: int) -> int:
    """How many parts of `size` bytes a file of `file_size` bytes takes (at least 1)."""
    return max(1, math.ceil(file_size / size))


def part_range(number: int, size: int, file_size: int) -> tuple[int, int]:
    """(offset, length) of part `number` (1-based) of a file split in parts of `size` bytes."""
    if number < 1:
        raise ValueError("part numbers start at 1")
    offset = (number - 1) * size
    if offset >= file_size and not (number == 1 and file_size == 0):
        raise ValueError(f"part {number} is past the end of a {file_size}-byte file")
    return offset, min(size, file_size - offset)


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "k": KiB,
    "kib": KiB,
    "m": MiB,
    "mib": MiB,
    "g": GiB,
    "gib": GiB,
    "t": 1024**4,
    "tib": 1024**4,
}


def parse_size(text: str | int) -> int:
    """Parse a byte size: ``123``, ``100MB`` (10^6), ``64MiB`` or ``64M`` (2^20), ``1.5GB``.

    Units are case-insensitive. Raises ValueError on anything else.
    """
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    m = _SIZE_RE.match(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (try 100MB, 64MiB or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(n: float) -> str:
    """Human-readable byte count, decimal units (``1.5 GB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 30.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `attempt` (1-based): exponential with equal jitter.

    The ceiling doubles each attempt (``base``, ``2*base``, ...) up to `cap`; the delay is
    uniform in [ceiling/2, ceiling], so that clients that failed together do not retry together.
    """
    ceiling: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rand() * ceiling / 2


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks us to wait (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def presigned_expiry(url: str) -> float | None:
    """The POSIX time at which a SigV4 presigned URL expires, or None if it does not say."""
    query = parse_qs(urlsplit(url).query)
    try:
        signed = dt.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        expires = int(query["X-Amz-Expires"][0])
    except (KeyError, IndexError, ValueError):
        return None
    return signed.replace(tzinfo=dt.UTC).timestamp() + expires


def redact_url(url: str) -> str:
    """A URL without its query string (presigned URLs carry credentials there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def clean_etag(etag: str | None) -> str:
    """An ETag without quotes or weak prefix, lower-cased (``W/"AB"`` -> ``ab``)."""
    if not etag:
        return ""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"').lower()


def etag_matches(etag: str | None, md5_hex: str) -> bool:
    """True when a single-part ETag is the MD5 of the bytes sent."""
    return clean_etag(etag) == md5_hex.lower()


def multipart_etag(part_md5s: Iterable[str]) -> str:
    """S3's ETag of a completed multipart object: MD5 of the concatenated part MD5s, ``-N``."""
    digests = [bytes.fromhex(m) for m in part_md5s]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"  # noqa: S324


_ID_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def safe_identifier(text: str, *, fallback: str = "video") -> str:
    """Turn a file name into a valid API identifier (``A-Z a-z 0-9 . _ -``, 1-128 chars)."""
    ident = _ID_BAD.sub("-", text).strip("-._")[:128].rstrip("-._")
    return ident or fallback
