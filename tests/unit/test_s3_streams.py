"""aws-chunked decoding (the S3 documentation's signed-chunk example) and the checksums."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from vmsbridge.s3 import errors, sigv4, streams

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
SIGS = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]


def _auth() -> sigv4.AuthResult:
    # https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html (example)
    return sigv4.AuthResult(
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        payload_hash=sigv4.STREAMING_SIGNED,
        presigned=False,
        seed_signature=SEED,
        signing_key=sigv4.signing_key(SECRET, "20130524", "us-east-1", "s3"),
        amz_date="20130524T000000Z",
        scope="20130524/us-east-1/s3/aws4_request",
    )


def _doc_body(sigs: list[str]) -> bytes:
    return (
        f"10000;chunk-signature={sigs[0]}\r\n".encode()
        + b"a" * 65536
        + f"\r\n400;chunk-signature={sigs[1]}\r\n".encode()
        + b"a" * 1024
        + f"\r\n0;chunk-signature={sigs[2]}\r\n\r\n".encode()
    )


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
def test_signed_chunks_from_the_documentation(piece: int) -> None:
    decoder = streams.AwsChunkedDecoder(_auth())
    body = _doc_body(SIGS)
    out = b""
    for i in range(0, len(body), piece):
        out += b"".join(bytes(p) for p in decoder.feed(body[i : i + piece]))
    decoder.finish()
    assert out == b"a" * 66560


def test_wrong_chunk_signature_is_refused() -> None:
    decoder = streams.AwsChunkedDecoder(_auth())
    with pytest.raises(errors.SignatureDoesNotMatch):
        decoder.feed(_doc_body([SIGS[0], SIGS[0], SIGS[2]]))


def test_unsigned_chunks_with_trailer() -> None:
    decoder = streams.AwsChunkedDecoder()
    body = b"3\r\nabc\r\n2\r\nde\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n"
    out = b"".join(bytes(p) for p in decoder.feed(body))
    decoder.finish()
    assert out == b"abcde"
    assert decoder.trailers == {"x-amz-checksum-crc32": "AAAA"}


def test_truncated_chunked_body_is_incomplete() -> None:
    decoder = streams.AwsChunkedDecoder()
    decoder.feed(b"10\r\nshort")
    with pytest.raises(errors.IncompleteBody):
        decoder.finish()


def test_garbage_chunk_size() -> None:
    with pytest.raises(errors.IncompleteBody):
        streams.AwsChunkedDecoder().feed(b"zz\r\n")


CHECK = b"123456789"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("crc32", (0xCBF43926).to_bytes(4, "big")),
        ("crc32c", (0xE3069283).to_bytes(4, "big")),
        ("crc64nvme", (0xAE8B14860A799888).to_bytes(8, "big")),
        ("sha1", hashlib.sha1(CHECK).digest()),
        ("sha256", hashlib.sha256(CHECK).digest()),
    ],
)
def test_checksum_check_values(algorithm: str, expected: bytes) -> None:
    c = streams.new_checksum(algorithm)
    c.update(CHECK[:4])
    c.update(memoryview(CHECK[4:]))
    assert c.digest() == expected


def test_crc32_matches_zlib_on_random_data() -> None:
    data = bytes(range(256)) * 33
    c = streams.new_checksum("crc32")
    c.update(data)
    assert base64.b64encode(c.digest()) == base64.b64encode(zlib.crc32(data).to_bytes(4, "big"))


def test_unknown_checksum_algorithm() -> None:
    with pytest.raises(errors.InvalidRequest):
        streams.new_checksum("md4")
