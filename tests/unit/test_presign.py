"""Our SigV4 presigner against botocore's `generate_presigned_url`: the URLs must be identical."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import botocore.session
import pytest
from botocore.config import Config

from vmsbridge.storage.presign import (
    SIGV4_MAX_EXPIRES,
    SigV4Presigner,
    content_disposition,
    sigv4_signing_key,
)

# botocore 1.43 reads the clock through `botocore.compat.get_current_datetime`, imported by name
# into `botocore.auth` (naive UTC). Patching it there freezes the signer's instant.
CLOCK_TARGET = "botocore.auth.get_current_datetime"
INSTANT = datetime(2026, 12, 4, 15, 4, 5, 123456)  # naive = UTC, as botocore uses it

ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

KEYS = [
    "simple.mp4",
    "vms/42/7/INC-2024.001/file_1_camera export.mp4",
    "with space and  double  space",
    "unicodé/vidéo-東京-🎥.mkv",
    "plus+equals=amp&semi;comma,colon:",
    "tilde~under_score-dash.dot",
    "percent%20literal%2F%",
    "quote\"apos'hash#question?star*",
    "brackets[]{}()<>|^`\\",
    "a//double/slash/",
    "/leading-slash",
    "dots/../and/./here",
    "x" * 900,
]
ENDPOINTS = [
    "http://127.0.0.1:9000",
    "http://localhost:9000",
    "http://s3.example.com",
    "http://s3.example.com:80",
    "https://s3.example.com",
    "https://S3.Example.COM:443",
    "https://s3.example.com:8443",
    "http://[::1]:9000",
    "http://proxy.example.com:8080/s3",
]
REGIONS = ["us-east-1", "eu-west-3", "ap-southeast-2", "garage"]
EXPIRIES = [1, 60, 3600, 7200, SIGV4_MAX_EXPIRES]
TOKENS = [None, "FQoGZXIvYXdzEJr//////////wEaDO+token/with=specials"]
UPLOAD_IDS = [
    "2~Zm9vYmFy",
    "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA",
    "id/with+plus=and/slash",
    "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
]


_SESSION = botocore.session.get_session()  # one session: the S3 model is loaded once


@functools.cache
def _botocore_client(endpoint: str, region: str, token: str | None) -> Any:
    return _SESSION.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        aws_session_token=token,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def frozen() -> Iterator[None]:
    with mock.patch(CLOCK_TARGET, return_value=INSTANT):
        yield


def _pair(endpoint: str, region: str, token: str | None = None) -> tuple[Any, SigV4Presigner]:
    ours = SigV4Presigner(
        endpoint,
        region=region,
        access_key_id=ACCESS,
        secret_access_key=SECRET,
        session_token=token,
    )
    return _botocore_client(endpoint, region, token), ours


# One case per key, with a rotating endpoint/region/expiry/token, so every value of every dimension
# meets several others without a full cross product.
CASES = [
    (key, endpoint, region, expires, token)
    for key, endpoint, region, expires, token in zip(
        KEYS * 3,
        itertools.cycle(ENDPOINTS),
        itertools.cycle(REGIONS),
        itertools.cycle(EXPIRIES),
        itertools.cycle([*TOKENS, None]),
        strict=False,
    )
]


@pytest.mark.usefixtures("frozen")
@pytest.mark.parametrize(("key", "endpoint", "region", "expires", "token"), CASES)
def test_put_object_identical(
    key: str, endpoint: str, region: str, expires: int, token: str | None
) -> None:
    boto, ours = _pair(endpoint, region, token)
    expected = boto.generate_presigned_url(
        "put_object", Params={"Bucket": "vmsbridge", "Key": key}, ExpiresIn=expires
    )
    assert ours.presign_put("vmsbridge", key, expires, now=INSTANT) == expected


@pytest.mark.usefixtures("frozen")
@pytest.mark.parametrize(("key", "endpoint", "region", "expires", "token"), CASES)
def test_get_object_identical(
    key: str, endpoint: str, region: str, expires: int, token: str | None
) -> None:
    boto, ours = _pair(endpoint, region, token)
    expected = boto.generate_presigned_url(
        "get_object", Params={"Bucket": "my-bucket.v2", "Key": key}, ExpiresIn=expires
    )
    assert ours.presign_get("my-bucket.v2", key, expires, now=INSTANT) == expected


FILENAMES = [
    "export.mp4",
    "camera 1 (north).mp4",
    'say "hi".mp4',
    "back\\slash.avi",
    "vidéo-été.mp4",
    "東京駅-カメラ.mkv",
    "semi;colon,comma=eq&amp+plus%pct~t.mov",
]


@pytest.mark.usefixtures("frozen")
@pytest.mark.parametrize("filename", FILENAMES)
@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "https://s3.example.com"])
def test_get_object_with_disposition_identical(filename: str, endpoint: str) -> None:
    boto, ours = _pair(endpoint, "eu-west-3", TOKENS[1])
    disposition = content_disposition(filename)
    expected = boto.generate_presigned_url(
        "get_object",
        Params={"Bucket": "b", "Key": f"k/{filename}", "ResponseContentDisposition": disposition},
        ExpiresIn=900,
    )
    got = ours.presign_get(
        "b", f"k/{filename}", 900, response_content_disposition=disposition, now=INSTANT
    )
    assert got == expected


@pytest.mark.usefixtures("frozen")
@pytest.mark.parametrize("upload_id", UPLOAD_IDS)
@pytest.mark.parametrize(
    ("endpoint", "region", "token"),
    list(zip(ENDPOINTS, REGIONS * 3, TOKENS * 5, strict=False)),
)
def test_upload_parts_identical(
    upload_id: str, endpoint: str, region: str, token: str | None
) -> None:
    boto, ours = _pair(endpoint, region, token)
    key = "vms/1/2/inc/f_ünï code+&=~%.mp4"
    numbers = [1, 2, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, 9999, 10_000]
    expected = [
        boto.generate_presigned_url(
            "upload_part",
            Params={"Bucket": "vmsbridge", "Key": key, "UploadId": upload_id, "PartNumber": n},
            ExpiresIn=7200,
        )
        for n in numbers
    ]
    assert ours.presign_upload_parts("vmsbridge", key, upload_id, numbers, 7200, now=INSTANT) == (
        expected
    )
    assert (
        ours.presign_upload_part("vmsbridge", key, upload_id, 9, 7200, now=INSTANT) == (expected[2])
    )


@pytest.mark.usefixtures("frozen")
def test_batch_keeps_given_order_and_accepts_iterables() -> None:
    _, ours = _pair("http://127.0.0.1:9000", "us-east-1")
    by_list = ours.presign_upload_parts("b", "k", "u", [3, 1, 2], 60, now=INSTANT)
    by_range = ours.presign_upload_parts("b", "k", "u", range(1, 4), 60, now=INSTANT)
    by_gen = ours.presign_upload_parts("b", "k", "u", (n for n in (3, 1, 2)), 60, now=INSTANT)
    assert by_list == by_gen
    assert by_list == [by_range[2], by_range[0], by_range[1]]
    assert [dict(parse_qsl(urlsplit(u).query))["partNumber"] for u in by_list] == ["3", "1", "2"]
    assert ours.presign_upload_parts("b", "k", "u", [], 60, now=INSTANT) == []


def test_emitted_query_order_is_botocores() -> None:
    _, ours = _pair("http://127.0.0.1:9000", "us-east-1", "tok")
    url = ours.presign_upload_part("b", "k", "u", 5, 60, now=INSTANT)
    names = [name for name, _ in parse_qsl(urlsplit(url).query)]
    assert names == [
        "uploadId",
        "partNumber",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ]
    assert f"X-Amz-Credential={ACCESS}%2F20261204%2Fus-east-1%2Fs3%2Faws4_request" in url
    assert "X-Amz-Date=20261204T150405Z" in url


def test_clock_aware_and_naive_instants_agree() -> None:
    _, ours = _pair("http://127.0.0.1:9000", "us-east-1")
    paris = timezone(timedelta(hours=1))
    naive = ours.presign_put("b", "k", 60, now=INSTANT)
    assert ours.presign_put("b", "k", 60, now=INSTANT.replace(tzinfo=UTC)) == naive
    assert (
        ours.presign_put("b", "k", 60, now=(INSTANT + timedelta(hours=1)).replace(tzinfo=paris))
        == naive
    )


def test_default_clock_is_now() -> None:
    _, ours = _pair("http://127.0.0.1:9000", "us-east-1")
    before = datetime.now(UTC).replace(microsecond=0)
    url = ours.presign_put("b", "k", 60)
    after = datetime.now(UTC)
    stamp = datetime.strptime(dict(parse_qsl(urlsplit(url).query))["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    assert before <= stamp.replace(tzinfo=UTC) <= after


@pytest.mark.usefixtures("frozen")
def test_live_clock_reuse_within_a_second_is_exact() -> None:
    # Without `now`, the auth part of the query is cached for the current second: the cache
    # must key on the expiry, and must move on with the clock.
    boto, ours = _pair("http://127.0.0.1:9000", "eu-west-3", TOKENS[1])
    epoch = INSTANT.replace(tzinfo=UTC, microsecond=0).timestamp()
    with mock.patch("vmsbridge.storage.presign.time.time", return_value=epoch + 0.9):
        for expires in (60, 3600, 60):
            expected = boto.generate_presigned_url(
                "put_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=expires
            )
            assert ours.presign_put("b", "k", expires) == expected
    later = INSTANT + timedelta(seconds=1)
    with (
        mock.patch("vmsbridge.storage.presign.time.time", return_value=epoch + 1),
        mock.patch(CLOCK_TARGET, return_value=later),
    ):
        expected = boto.generate_presigned_url(
            "put_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60
        )
        assert ours.presign_put("b", "k", 60) == expected


def test_quoting_matches_urllib_on_every_code_point_class() -> None:
    # The regex-based encoders must equal botocore's `quote(..., safe=...)` byte for byte.
    from urllib.parse import quote

    from vmsbridge.storage.presign import _q, _quote_key

    samples = ["".join(map(chr, range(i, i + 64))) for i in range(0, 0x800, 64)]
    samples += ["東京/駅 🎥~%+=&", "", "plain", "a//b/", "\u00e9\u0301"]
    for text in samples:
        assert _q(text) == quote(text, safe="-_.~")
        assert _quote_key(text) == quote(text, safe="/~")


def test_signing_key_cached_per_day() -> None:
    _, ours = _pair("http://127.0.0.1:9000", "eu-west-3")
    key = ours.signing_key("20261204")
    assert key == sigv4_signing_key(SECRET, "20261204", "eu-west-3", "s3")
    assert ours.signing_key("20261204") is key
    assert ours.signing_key("20261205") != key
    # A URL signed on the next day uses the next day's key and scope.
    url = ours.presign_put("b", "k", 60, now=INSTANT + timedelta(days=1))
    assert "%2F20261205%2Feu-west-3%2F" in url


def test_signing_key_matches_aws_documented_example() -> None:
    # https://docs.aws.amazon.com/general/latest/gr/signature-v4-examples.html
    key = sigv4_signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam"
    )
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


@pytest.mark.parametrize("expires", [0, -1, SIGV4_MAX_EXPIRES + 1, 1.5, True])
def test_bad_expiry_refused(expires: Any) -> None:
    _, ours = _pair("http://127.0.0.1:9000", "us-east-1")
    with pytest.raises(ValueError, match="expires"):
        ours.presign_put("b", "k", expires)
    with pytest.raises(ValueError, match="expires"):
        ours.presign_upload_parts("b", "k", "u", [1], expires)


@pytest.mark.parametrize("numbers", [[0], [1, 10_001], [-3, 2], [True]])
def test_bad_part_numbers_refused(numbers: list[int]) -> None:
    _, ours = _pair("http://127.0.0.1:9000", "us-east-1")
    with pytest.raises(ValueError, match="part numbers"):
        ours.presign_upload_parts("b", "k", "u", numbers, 60)


@pytest.mark.parametrize("url", ["ftp://host", "127.0.0.1:9000", "http://", "http://h/?q=1"])
def test_bad_base_url_refused(url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        SigV4Presigner(url, region="r", access_key_id="a", secret_access_key="s")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("a.mp4", 'attachment; filename="a.mp4"'),
        ('q"uote.mp4', 'attachment; filename="q\\"uote.mp4"; filename*=UTF-8\'\'q%22uote.mp4'),
        ("été.mp4", "attachment; filename=\"_t_.mp4\"; filename*=UTF-8''%C3%A9t%C3%A9.mp4"),
    ],
)
def test_content_disposition(filename: str, expected: str) -> None:
    value = content_disposition(filename)
    assert value == expected
    assert value.isascii()
