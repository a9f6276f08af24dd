"""Safety and durability of the embedded store: traversal keys, short bodies, aws-chunked bodies
(also as boto3 really sends them, over HTTPS), and what is left on disk afterwards.

All embedded-only: they look at the store's data directory or at checks moto does not make.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.helpers import free_port

from . import rawhttp
from .conftest import ACCESS_KEY_ID, MIB, SECRET_ACCESS_KEY, Store

pytestmark = pytest.mark.embedded_only


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _tmp_empty(store: Store) -> bool:
    assert store.data_dir is not None
    return not any((store.data_dir / ".tmp").iterdir())


def _wait_tmp_empty(store: Store) -> None:
    """The server removes a dropped body's temp file when it sees the disconnect."""
    deadline = time.monotonic() + 10
    while not _tmp_empty(store):
        assert time.monotonic() < deadline, "temp file left behind"
        time.sleep(0.02)


@pytest.mark.parametrize(
    "raw_key",
    [
        "../escape",
        "a/../../escape",
        "%2e%2e/escape",
        "a/%2E%2E/%2e%2e/escape",
        "/etc/passwd-like",
        "a%00b",
        "..",
    ],
)
def test_traversal_keys_are_refused(store: Store, raw_key: str) -> None:
    assert store.data_dir is not None
    before = _files(store.data_dir.parent)
    url = f"{store.url}/{store.bucket}/{raw_key}"
    for method, body in (("PUT", b"evil"), ("GET", b""), ("DELETE", b"")):
        headers = rawhttp.sign(method, url, body)
        status, resp_body, _ = rawhttp.request(method, url, body, headers)
        assert status == 400, (method, resp_body)
        assert b"<Code>InvalidArgument</Code>" in resp_body
    assert _files(store.data_dir.parent) == before


def test_short_put_body_leaves_nothing(store: Store) -> None:
    assert store.data_dir is not None
    before = _files(store.data_dir)
    url = f"{store.url}/{store.bucket}/short"
    headers = rawhttp.sign("PUT", url, unsigned_payload=True)
    rawhttp.send_short_body(url, headers, declared=4 * MIB, sent=b"x" * (2 * MIB + 17))
    _wait_tmp_empty(store)
    with pytest.raises(ClientError) as exc:
        store.s3.head_object(Bucket=store.bucket, Key="short")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert _files(store.data_dir) == before


def test_short_part_body_leaves_nothing(store: Store) -> None:
    assert store.data_dir is not None
    upload_id = store.s3.create_multipart_upload(Bucket=store.bucket, Key="mp")["UploadId"]
    before = _files(store.data_dir)
    url = f"{store.url}/{store.bucket}/mp?partNumber=1&uploadId={upload_id}"
    headers = rawhttp.sign("PUT", url, unsigned_payload=True)
    rawhttp.send_short_body(url, headers, declared=6 * MIB, sent=b"y" * MIB)
    _wait_tmp_empty(store)
    parts = store.s3.list_parts(Bucket=store.bucket, Key="mp", UploadId=upload_id)
    assert parts.get("Parts", []) == []
    assert _files(store.data_dir) == before


def _aws_chunked(data: bytes, chunk: int, trailer: str | None) -> bytes:
    out = b""
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n"
    if trailer:
        out += trailer.encode() + b"\r\n"
    return out + b"\r\n"


@pytest.mark.parametrize("good", [True, False])
def test_aws_chunked_unsigned_trailer(store: Store, good: bool) -> None:
    data = os.urandom(300_000)
    crc = zlib.crc32(data if good else data[1:])
    value = base64.b64encode(crc.to_bytes(4, "big")).decode()
    body = _aws_chunked(data, 65536, f"x-amz-checksum-crc32:{value}")
    url = f"{store.url}/{store.bucket}/chunked"
    headers = rawhttp.sign(
        "PUT",
        url,
        body,
        {
            "Content-Encoding": "aws-chunked",
            "X-Amz-Decoded-Content-Length": str(len(data)),
            "X-Amz-Trailer": "x-amz-checksum-crc32",
        },
        trailer="x-amz-checksum-crc32",
    )
    assert headers["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    status, resp_body, resp_headers = rawhttp.request("PUT", url, body, headers)
    if good:
        assert status == 200, resp_body
        assert resp_headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
        got = store.s3.get_object(Bucket=store.bucket, Key="chunked")
        assert got["Body"].read() == data
        assert "ContentEncoding" not in got  # aws-chunked is transport, not stored
    else:
        assert status == 400
        assert b"<Code>BadDigest</Code>" in resp_body
        with pytest.raises(ClientError):
            store.s3.head_object(Bucket=store.bucket, Key="chunked")
        assert _tmp_empty(store)


def test_aws_chunked_truncated_is_refused(store: Store) -> None:
    data = b"z" * 100_000
    body = _aws_chunked(data, 65536, None)[:-40]  # cut inside the last chunk
    url = f"{store.url}/{store.bucket}/cut"
    headers = rawhttp.sign(
        "PUT",
        url,
        body,
        {
            "Content-Encoding": "aws-chunked",
            "X-Amz-Decoded-Content-Length": str(len(data)),
        },
        trailer="x-amz-checksum-crc32",
    )
    status, resp_body, _ = rawhttp.request("PUT", url, body, headers)
    assert status == 400
    assert b"<Code>IncompleteBody</Code>" in resp_body
    assert _tmp_empty(store)


# --- boto3 over HTTPS: aws-chunked with a CRC32 trailer, exactly as boto3 sends it ------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def https_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    import uvicorn

    from vmsbridge.s3 import create_s3_app

    tmp = tmp_path_factory.mktemp("https")
    cert, key = _self_signed(tmp)
    app = create_s3_app(tmp / "data", {ACCESS_KEY_ID: SECRET_ACCESS_KEY}, min_part_size=MIB)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    yield f"https://127.0.0.1:{port}", cert
    server.should_exit = True
    thread.join(timeout=30)


def test_boto3_over_https_sends_aws_chunked_and_it_is_decoded(
    store: Store, https_store: tuple[str, Path]
) -> None:
    url, cert = https_store
    s3 = _client_with_ca(url, cert)
    seen: list[dict[str, str]] = []

    def record(request: object, **_: object) -> None:
        seen.append(
            {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        )

    s3.meta.events.register("before-send.s3.*", record)
    s3.create_bucket(Bucket="tls")
    data = os.urandom(3 * MIB + 5)
    put = s3.put_object(Bucket="tls", Key="obj", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    sent = seen[-1]
    assert sent["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert sent["Content-Encoding"] == "aws-chunked"
    upload_id = s3.create_multipart_upload(Bucket="tls", Key="mp")["UploadId"]
    e1 = s3.upload_part(Bucket="tls", Key="mp", UploadId=upload_id, PartNumber=1, Body=data)
    e2 = s3.upload_part(Bucket="tls", Key="mp", UploadId=upload_id, PartNumber=2, Body=b"end")
    assert seen[-1]["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    s3.complete_multipart_upload(
        Bucket="tls",
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": e1["ETag"]}, {"PartNumber": 2, "ETag": e2["ETag"]}]
        },
    )
    assert s3.get_object(Bucket="tls", Key="obj")["Body"].read() == data
    assert s3.get_object(Bucket="tls", Key="mp")["Body"].read() == data + b"end"


def _client_with_ca(url: str, cert: Path) -> object:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name="us-east-1",
        verify=str(cert),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_concurrent_overwrites_leave_one_object_and_no_orphans(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    assert store.data_dir is not None
    bodies = [bytes([i]) * (256 * 1024 + i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda b: store.s3.put_object(Bucket=store.bucket, Key="hot/key", Body=b), bodies
            )
        )
    got = store.s3.get_object(Bucket=store.bucket, Key="hot/key")["Body"].read()
    assert got in bodies
    byte_files = [p for p in (store.data_dir / store.bucket).rglob("*.v")]
    assert len(byte_files) == 1
    assert byte_files[0].read_bytes() == got
    store.s3.delete_object(Bucket=store.bucket, Key="hot/key")
    assert not (store.data_dir / store.bucket / "hot.d").exists()  # empty directories pruned
