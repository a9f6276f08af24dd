"""Pure rules of the embedded store: key and bucket validation, Range parsing, multipart ETags."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vmsbridge.s3 import errors
from vmsbridge.s3.app import S3App
from vmsbridge.s3.multipart import multipart_etag, normalise_etag
from vmsbridge.s3.objects import _decode_name, _segment, validate_bucket_name, validate_key


@pytest.mark.parametrize("key", ["a", "a/b/c.mp4", "a/", "dir//x", "./x", "...", "a..b", "é/日本"])
def test_valid_keys(key: str) -> None:
    validate_key(key)


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", errors.InvalidArgument),
        ("../x", errors.InvalidArgument),
        ("a/../b", errors.InvalidArgument),
        ("..", errors.InvalidArgument),
        ("/abs", errors.InvalidArgument),
        ("a\x00b", errors.InvalidArgument),
        ("k" * 1025, errors.KeyTooLongError),
        ("é" * 513, errors.KeyTooLongError),
    ],
)
def test_invalid_keys(key: str, error: type[errors.S3Error]) -> None:
    with pytest.raises(error):
        validate_key(key)


@pytest.mark.parametrize("name", ["abc", "my-bucket.v2", "a" * 63, "0bucket"])
def test_valid_bucket_names(name: str) -> None:
    validate_bucket_name(name)


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "Upper", "under_score", "-x-", "a..b", "a.-b", "10.0.0.1", ".tmp", "xn--abc"],
)
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(errors.InvalidBucketName):
        validate_bucket_name(name)


def test_segment_encoding_never_collides() -> None:
    long_seg = "y" * 300
    names = {
        _segment("a", ".d", "#d"),
        _segment("a", ".o", "#o"),
        _segment("a.d", ".o", "#o"),
        _segment("a.o", ".d", "#d"),
        _segment(long_seg, ".d", "#d"),
        _segment(long_seg, ".o", "#o"),
    }
    assert len(names) == 6
    assert all(len(n.encode()) <= 255 - 20 for n in names)
    assert _decode_name(_segment("a.d", ".o", "#o")) == ("o", "a.d")
    assert _decode_name(_segment(long_seg, ".d", "#d")) == ("d", None)
    assert _decode_name("x.3f2a.v") == ("", None)


SIZE = 1000


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=0-", (0, 999)),
        ("bytes=-1", (999, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=500-99999", (500, 999)),
        ("bytes=5-1", None),  # invalid: whole object, as S3
        ("bytes=0-1,5-6", None),  # several ranges: S3 sends the whole object
        ("items=0-1", None),
        ("bytes=x-y", None),
    ],
)
def test_range_parsing(spec: str, expected: tuple[int, int] | None) -> None:
    assert S3App._range(spec, SIZE) == expected


@pytest.mark.parametrize("spec", ["bytes=1000-", "bytes=1000-2000", "bytes=-0"])
def test_unsatisfiable_ranges(spec: str) -> None:
    with pytest.raises(errors.InvalidRange):
        S3App._range(spec, SIZE)


def test_range_on_empty_object() -> None:
    with pytest.raises(errors.InvalidRange):
        S3App._range("bytes=0-", 0)


def test_multipart_etag() -> None:
    md5s = [hashlib.md5(b"a").digest(), hashlib.md5(b"b").digest()]
    assert multipart_etag(md5s) == hashlib.md5(b"".join(md5s)).hexdigest() + "-2"
    assert normalise_etag(' "ABC" ') == "abc"


def test_parts_reader_reads_and_seeks_across_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmsbridge.s3 import objects

    monkeypatch.setattr(objects, "EAGER_PARTS", 1)  # the later parts open as reached
    d = tmp_path
    datas = [b"abc", b"", b"defgh", b"ij"]
    parts = []
    for i, data in enumerate(datas):
        (d / f"p{i}.v").write_bytes(data)
        parts.append([f"p{i}.v", len(data)])
    whole = b"".join(datas)
    with objects.PartsReader(d, parts) as r:
        assert r.read() == whole
        assert r.read(5) == b""
        for first in range(len(whole) + 1):
            for n in range(len(whole) + 2):
                r.seek(first)
                assert r.read(n) == whole[first : first + n], (first, n)
        r.seek(-2, 2)
        assert r.read(100) == b"ij"
        assert sum(f is not None for f in r._files) <= 2  # one eager, one lazy at most
    assert objects.data_files({"data": "x.v", "data_parts": parts}) == [p[0] for p in parts]
    assert objects.data_files({"data": "x.v"}) == ["x.v"]


def test_parts_reader_with_a_lazy_part_gone_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmsbridge.s3 import objects

    monkeypatch.setattr(objects, "EAGER_PARTS", 1)
    for name in ("a.v", "b.v"):
        (tmp_path / name).write_bytes(b"xy")
    with objects.PartsReader(tmp_path, [["a.v", 2], ["b.v", 2]]) as r:
        (tmp_path / "a.v").unlink()  # opened already: still readable
        (tmp_path / "b.v").unlink()  # not opened yet: the object was replaced
        assert r.read(2) == b"xy"
        with pytest.raises(errors.S3Error):
            r.read(2)
