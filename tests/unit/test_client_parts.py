"""Pure helpers of the client SDK: part sizes, sizes, backoff, Retry-After, URLs, ETags."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools

import pytest

from vmsbridge.client._parts import (
    S3_MAX_PART_SIZE,
    S3_MAX_PARTS,
    S3_MIN_PART_SIZE,
    GiB,
    MiB,
    backoff_delay,
    clean_etag,
    etag_matches,
    format_size,
    multipart_etag,
    parse_retry_after,
    parse_size,
    part_count,
    part_range,
    part_size,
    presigned_expiry,
    redact_url,
    safe_identifier,
)


@pytest.mark.parametrize(
    ("file_size", "expected"),
    [
        (0, 8 * MiB),
        (1, 8 * MiB),
        (100 * 1000 * 1000, 8 * MiB),
        (8 * MiB * 10_000, 8 * MiB),  # exactly 10,000 parts of the minimum
        (8 * MiB * 10_000 + 1, 9 * MiB),  # one byte more: the part grows, to a whole MiB
        (100 * GiB, 11 * MiB),
        (1024 * GiB, 105 * MiB),
    ],
)
def test_part_size(file_size: int, expected: int) -> None:
    size = part_size(file_size)
    assert size == expected
    assert size >= S3_MIN_PART_SIZE
    assert part_count(file_size, size) <= S3_MAX_PARTS


def test_part_size_limits() -> None:
    biggest = S3_MAX_PART_SIZE * S3_MAX_PARTS
    assert part_size(biggest) == S3_MAX_PART_SIZE
    assert part_count(biggest, part_size(biggest)) == S3_MAX_PARTS
    with pytest.raises(ValueError, match="needs parts over"):
        part_size(biggest + 1)
    with pytest.raises(ValueError):
        part_size(-1)
    # a smaller minimum (tests lower the store's) is honoured exactly
    assert part_size(10 * MiB, min_part_size=5 * MiB) == 5 * MiB


def test_part_count_and_ranges_cover_the_file_exactly() -> None:
    for file_size in (1, 8 * MiB - 1, 8 * MiB, 8 * MiB + 1, 300 * 1000 * 1000):
        size = part_size(file_size)
        n = part_count(file_size, size)
        ranges = [part_range(i, size, file_size) for i in range(1, n + 1)]
        assert ranges[0][0] == 0
        assert sum(length for _, length in ranges) == file_size
        for (o1, l1), (o2, _) in itertools.pairwise(ranges):
            assert o1 + l1 == o2
        assert all(0 < length <= size for _, length in ranges)
    assert part_count(0, 8 * MiB) == 1
    assert part_range(1, 8 * MiB, 0) == (0, 0)
    with pytest.raises(ValueError):
        part_range(2, 8 * MiB, 8 * MiB)
    with pytest.raises(ValueError):
        part_range(0, 8 * MiB, 8 * MiB)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100MB", 100_000_000),
        ("100mb", 100_000_000),
        ("64MiB", 64 * MiB),
        ("64M", 64 * MiB),
        ("1.5GB", 1_500_000_000),
        ("2GiB", 2 * GiB),
        ("123", 123),
        (" 10 kB ", 10_000),
        ("0", 0),
        (42, 42),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "10XB", "-5MB", "ten", "1e3"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(999) == "999 B"
    assert format_size(1_500_000) == "1.5 MB"
    assert format_size(3 * 10**12) == "3.0 TB"


def test_backoff_grows_with_jitter_and_cap() -> None:
    lows = [backoff_delay(a, base=0.5, cap=30, rand=lambda: 0.0) for a in range(1, 10)]
    highs = [backoff_delay(a, base=0.5, cap=30, rand=lambda: 1.0) for a in range(1, 10)]
    assert highs[:4] == [0.5, 1.0, 2.0, 4.0]
    assert lows[:4] == [0.25, 0.5, 1.0, 2.0]
    assert max(highs) == 30 and highs[-1] == 30
    assert all(
        lo <= backoff_delay(a, base=0.5) <= hi
        for a, lo, hi in zip(range(1, 10), lows, highs, strict=True)
    )


def test_parse_retry_after() -> None:
    now = dt.datetime(2024, 3, 4, 19, 38, 27, tzinfo=dt.UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Mon, 04 Mar 2024 19:38:37 GMT", now=now) == 10.0
    assert parse_retry_after("Mon, 04 Mar 2024 19:00:00 GMT", now=now) == 0.0  # past
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None


def test_presigned_expiry_and_redaction() -> None:
    url = (
        "http://127.0.0.1:9000/b/k.mov?partNumber=1&uploadId=x&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Date=20240304T193827Z&X-Amz-Expires=7200&X-Amz-Signature=abc"
    )
    expected = dt.datetime(2024, 3, 4, 19, 38, 27, tzinfo=dt.UTC).timestamp() + 7200
    assert presigned_expiry(url) == expected
    assert presigned_expiry("http://h/k") is None
    assert presigned_expiry("http://h/k?X-Amz-Date=bad&X-Amz-Expires=1") is None
    assert redact_url(url) == "http://127.0.0.1:9000/b/k.mov"


def test_etags() -> None:
    md5 = hashlib.md5(b"abc").hexdigest()
    assert etag_matches(f'"{md5}"', md5)
    assert etag_matches(md5.upper(), md5)
    assert etag_matches(f'W/"{md5}"', md5)
    assert not etag_matches(None, md5)
    assert not etag_matches('"0123"', md5)
    assert clean_etag(' "AbC-2" ') == "abc-2"
    parts = [hashlib.md5(b"a").hexdigest(), hashlib.md5(b"b").hexdigest()]
    joined = hashlib.md5(bytes.fromhex(parts[0]) + bytes.fromhex(parts[1])).hexdigest()
    assert multipart_etag(parts) == f"{joined}-2"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cam 1 (north)", "cam-1-north"),
        ("Ωmega", "mega"),
        ("...", "video"),
        ("a" * 200, "a" * 128),
        ("ok_id-1.2", "ok_id-1.2"),
    ],
)
def test_safe_identifier(name: str, expected: str) -> None:
    assert safe_identifier(name) == expected


@pytest.mark.parametrize(
    ("file_size", "expected"),
    [
        (0, 8 * MiB),
        (300 * 1000 * 1000, 8 * MiB),  # up to 512 MiB: the minimum, fine-grained resume
        (512 * MiB, 8 * MiB),
        (512 * MiB + 1, 9 * MiB),
        (1024 * MiB, 16 * MiB),
        (4096 * MiB, 64 * MiB),
        (5 * 1000**3, 64 * MiB),  # grows no further than 64 MiB ...
        (64 * MiB * 10_000 + 1, 65 * MiB),  # ... unless 10,000 parts need it
    ],
)
def test_choose_part_size(file_size: int, expected: int) -> None:
    from vmsbridge.client import choose_part_size

    assert choose_part_size(file_size) == expected
    assert part_count(file_size, expected) <= 10_000


def test_choose_part_size_honours_a_bigger_minimum() -> None:
    from vmsbridge.client import choose_part_size

    assert choose_part_size(1024 * MiB, min_part_size=100 * MiB) == 100 * MiB
    assert choose_part_size(10 * MiB, min_part_size=5 * MiB) == 5 * MiB
    with pytest.raises(ValueError):
        choose_part_size(-1)
