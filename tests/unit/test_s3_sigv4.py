"""SigV4 verification against the worked examples in the S3 documentation.

https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vmsbridge.s3 import errors, sigv4

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDS = {KEY_ID: SECRET}
WHEN = datetime(2013, 5, 24, 0, 0, 30, tzinfo=UTC)


def _header_request(signature: str) -> dict[str, object]:
    auth = (
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        f"Signature={signature}"
    )
    return {
        "method": "GET",
        "raw_path": "/test.txt",
        "raw_query": "",
        "query": {},
        "headers": {
            "host": ["examplebucket.s3.amazonaws.com"],
            "range": ["bytes=0-9"],
            "x-amz-content-sha256": [sigv4.EMPTY_SHA256],
            "x-amz-date": ["20130524T000000Z"],
            "authorization": [auth],
        },
        "credentials": CREDS,
    }


GOOD_HEADER_SIG = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


def test_header_auth_example_verifies() -> None:
    result = sigv4.verify(**_header_request(GOOD_HEADER_SIG), now=WHEN)  # type: ignore[arg-type]
    assert result.access_key_id == KEY_ID
    assert result.payload_hash == sigv4.EMPTY_SHA256
    assert not result.presigned


def test_header_auth_wrong_signature() -> None:
    bad = GOOD_HEADER_SIG[:-1] + "0"
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv4.verify(**_header_request(bad), now=WHEN)  # type: ignore[arg-type]


def test_header_auth_clock_skew() -> None:
    later = datetime(2013, 5, 24, 0, 16, 0, tzinfo=UTC)
    with pytest.raises(errors.RequestTimeTooSkewed):
        sigv4.verify(**_header_request(GOOD_HEADER_SIG), now=later)  # type: ignore[arg-type]


def test_header_auth_unknown_key() -> None:
    with pytest.raises(errors.InvalidAccessKeyId):
        sigv4.verify(
            **{**_header_request(GOOD_HEADER_SIG), "credentials": {"OTHER": "x"}}, now=WHEN
        )  # type: ignore[arg-type]


PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)


def _presigned(query: str) -> dict[str, object]:
    from urllib.parse import parse_qsl

    return {
        "method": "GET",
        "raw_path": "/test.txt",
        "raw_query": query,
        "query": dict(parse_qsl(query)),
        "headers": {"host": ["examplebucket.s3.amazonaws.com"]},
        "credentials": CREDS,
    }


def test_presigned_example_verifies_until_it_expires() -> None:
    result = sigv4.verify(**_presigned(PRESIGNED_QUERY), now=WHEN)  # type: ignore[arg-type]
    assert result.presigned
    assert result.payload_hash == sigv4.UNSIGNED_PAYLOAD
    expired = datetime(2013, 5, 25, 0, 0, 1, tzinfo=UTC)
    with pytest.raises(errors.AccessDenied, match="expired"):
        sigv4.verify(**_presigned(PRESIGNED_QUERY), now=expired)  # type: ignore[arg-type]


def test_presigned_tampered_query_fails() -> None:
    tampered = PRESIGNED_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=86401")
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv4.verify(**_presigned(tampered), now=WHEN)  # type: ignore[arg-type]


@pytest.mark.parametrize("expires", ["0", "604801", "-5", "soon"])
def test_presigned_expires_out_of_range(expires: str) -> None:
    query = PRESIGNED_QUERY.replace("X-Amz-Expires=86400", f"X-Amz-Expires={expires}")
    with pytest.raises(errors.AccessDenied):
        sigv4.verify(**_presigned(query), now=WHEN)  # type: ignore[arg-type]


def test_anonymous_is_access_denied() -> None:
    with pytest.raises(errors.AccessDenied):
        sigv4.verify(**{**_presigned(""), "query": {}}, now=WHEN)  # type: ignore[arg-type]


def test_canonical_query_sorts_and_encodes() -> None:
    assert sigv4.canonical_query("b=2&a=%7E x&uploads") == "a=~%20x&b=2&uploads="
    assert sigv4.canonical_query("X-Amz-Signature=abc&k=v", exclude="X-Amz-Signature") == "k=v"


def test_signing_key_example() -> None:
    # From the SigV4 documentation's derived-key example.
    key = sigv4.signing_key(SECRET, "20130524", "us-east-1", "s3")
    assert len(key) == 32
    assert key == sigv4.signing_key(SECRET, "20130524", "us-east-1", "s3")
