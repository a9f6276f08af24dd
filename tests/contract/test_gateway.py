"""`S3Gateway` against real S3 implementations: moto's standalone server and our embedded store.

Every byte goes over loopback HTTP: parts and objects are uploaded through the gateway's
presigned URLs with httpx, exactly as an exporter does, and the gateway's answers (ETags, sizes,
errors) are checked against what S3 specifies. The embedded store checks presigned signatures,
so on it these tests also prove our presigner's URLs are accepted; moto does not check them.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ServerThread, free_port
from vmsbridge.config import S3_MIN_PART_SIZE, Settings
from vmsbridge.storage import (
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    NoSuchUpload,
    ObjectNotFound,
    S3Gateway,
    StorageError,
    StorageUnavailable,
)
from vmsbridge.storage.client import _translated
from vmsbridge.storage.presign import content_disposition

ACCESS = "AKIAVMSBRIDGETEST"
SECRET = "contract/test+secret=key"
REGION = "eu-west-3"
BUCKET = f"gateway-{uuid.uuid4().hex[:12]}"
# The embedded store takes its minimum part size as a setting: keep parts small there.
EMBEDDED_MIN_PART = 64 * 1024


@dataclass(frozen=True)
class Store:
    name: str
    url: str
    min_part_size: int


@pytest.fixture(scope="module")
def moto_target() -> Iterator[Store]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        # moto enforces S3's real 5 MiB minimum part size.
        yield Store("moto", f"http://127.0.0.1:{port}", S3_MIN_PART_SIZE)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def embedded_target() -> Iterator[Store]:
    from vmsbridge.s3 import create_s3_app

    with tempfile.TemporaryDirectory(prefix="vmsb-gateway-") as data_dir:
        app = create_s3_app(
            Path(data_dir), {ACCESS: SECRET}, region=REGION, min_part_size=EMBEDDED_MIN_PART
        )
        with ServerThread(app) as server:
            yield Store("embedded", server.url, EMBEDDED_MIN_PART)


# Not named `store`: tests/contract/conftest.py parametrizes every test that uses a fixture of
# that name (with its own boto3-based Store).
@pytest.fixture(params=["moto", "embedded"])
def target(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_target")  # type: ignore[no-any-return]


def _gateway(target: Store, **kwargs: Any) -> S3Gateway:
    options: dict[str, Any] = {
        "endpoint_url": target.url,
        "bucket": BUCKET,
        "region": REGION,
        "access_key_id": ACCESS,
        "secret_access_key": SECRET,
        **kwargs,
    }
    return S3Gateway(**options)


@pytest.fixture
async def gateway(target: Store) -> AsyncIterator[S3Gateway]:
    async with _gateway(target) as gw:
        await gw.ensure_bucket()
        yield gw


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def _key(name: str = "vidéo 1 (north).mp4") -> str:
    # Server-made keys look like this; the space and the é exercise path encoding end to end.
    return f"vms/1/2/INC-{uuid.uuid4().hex[:12]}/f1_{name}"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(digests).hexdigest()}-{len(parts)}"


async def _put_parts(
    http: httpx.AsyncClient, gateway: S3Gateway, key: str, upload_id: str, parts: list[bytes]
) -> list[str]:
    """Upload `parts` as parts 1..N through presigned URLs; return the ETags S3 answered."""
    urls = gateway.presign_upload_parts(key, upload_id, list(range(1, len(parts) + 1)), 600)
    etags = []
    for url, body in zip(urls, parts, strict=True):
        response = await http.put(url, content=body)
        assert response.status_code == 200, response.text
        etags.append(response.headers["etag"])
    return etags


# -- bucket -------------------------------------------------------------------------------


async def test_ensure_bucket_twice_then_check(target: Store) -> None:
    name = f"ensure-{uuid.uuid4().hex[:10]}"
    async with _gateway(target, bucket=name) as gw:
        with pytest.raises(StorageUnavailable):
            await gw.check()  # not created yet
        await gw.ensure_bucket()
        await gw.ensure_bucket()
        await gw.check()


async def test_ensure_bucket_us_east_1_has_no_location_constraint(target: Store) -> None:
    # us-east-1 refuses an explicit LocationConstraint on AWS; other regions require one.
    async with _gateway(target, bucket=f"use1-{uuid.uuid4().hex[:10]}", region="us-east-1") as gw:
        await gw.ensure_bucket()
        await gw.check()


# -- multipart ----------------------------------------------------------------------------


async def test_multipart_roundtrip(
    target: Store, gateway: S3Gateway, http: httpx.AsyncClient
) -> None:
    key = _key()
    parts = [
        b"a" * target.min_part_size,
        bytes(range(256)) * (target.min_part_size // 256),
        b"tail bytes",
    ]
    upload_id = await gateway.create_multipart_upload(key, content_type="video/mp4")
    etags = await _put_parts(http, gateway, key, upload_id, parts)
    assert [e.strip('"') for e in etags] == [_md5(p) for p in parts]

    listed = await gateway.list_parts(key, upload_id)
    assert [(p.part_number, p.size, p.etag) for p in listed] == [
        (i, len(p), _md5(p)) for i, p in enumerate(parts, start=1)
    ]

    # Quoted and unquoted ETags are both accepted.
    mixed = [etags[0], etags[1].strip('"'), etags[2]]
    done = await gateway.complete_multipart_upload(key, upload_id, mixed)
    assert done.key == key
    assert done.etag == _multipart_etag(parts)
    assert done.etag.endswith("-3")
    assert done.size == sum(map(len, parts))

    info = await gateway.head_object(key)
    assert (info.key, info.size, info.etag) == (key, done.size, done.etag)

    # The object reads back whole through a presigned GET.
    response = await http.get(gateway.presign_get(key, 60))
    assert response.status_code == 200
    assert response.content == b"".join(parts)


async def test_list_parts_follows_pages(
    target: Store, gateway: S3Gateway, http: httpx.AsyncClient
) -> None:
    key = _key()
    upload_id = await gateway.create_multipart_upload(key)
    parts = [f"part {i}".encode() for i in range(1, 8)]
    await _put_parts(http, gateway, key, upload_id, parts)
    async with _gateway(target, list_parts_page_size=2) as paged:
        listed = await paged.list_parts(key, upload_id)
    assert [p.part_number for p in listed] == list(range(1, 8))
    assert [p.etag for p in listed] == [_md5(p) for p in parts]
    await gateway.abort_multipart_upload(key, upload_id)


async def test_list_parts_of_new_upload_is_empty(gateway: S3Gateway) -> None:
    key = _key()
    upload_id = await gateway.create_multipart_upload(key)
    assert await gateway.list_parts(key, upload_id) == []
    await gateway.abort_multipart_upload(key, upload_id)


async def test_complete_with_wrong_etag_is_invalid_part(
    gateway: S3Gateway, http: httpx.AsyncClient
) -> None:
    key = _key()
    upload_id = await gateway.create_multipart_upload(key)
    await _put_parts(http, gateway, key, upload_id, [b"only part"])
    with pytest.raises(InvalidPart) as caught:
        await gateway.complete_multipart_upload(key, upload_id, ["0" * 32])
    assert caught.value.code == "InvalidPart"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_complete_with_missing_part_is_invalid_part(
    gateway: S3Gateway, http: httpx.AsyncClient
) -> None:
    key = _key()
    upload_id = await gateway.create_multipart_upload(key)
    etags = await _put_parts(http, gateway, key, upload_id, [b"only part"])
    with pytest.raises(InvalidPart):
        await gateway.complete_multipart_upload(key, upload_id, [etags[0], _md5(b"never sent")])


async def test_complete_without_parts_is_invalid_part(gateway: S3Gateway) -> None:
    key = _key()
    upload_id = await gateway.create_multipart_upload(key)
    with pytest.raises(InvalidPart):
        await gateway.complete_multipart_upload(key, upload_id, [])
    await gateway.abort_multipart_upload(key, upload_id)


async def test_complete_with_small_non_final_part_is_entity_too_small(
    target: Store, gateway: S3Gateway, http: httpx.AsyncClient
) -> None:
    key = _key()
    upload_id = await gateway.create_multipart_upload(key)
    parts = [b"x" * (target.min_part_size - 1), b"last"]
    etags = await _put_parts(http, gateway, key, upload_id, parts)
    with pytest.raises(EntityTooSmall):
        await gateway.complete_multipart_upload(key, upload_id, etags)


async def test_store_invalid_part_order_maps_to_ours(
    target: Store, gateway: S3Gateway, http: httpx.AsyncClient
) -> None:
    # The gateway numbers parts itself (etags[i] is part i+1), so it never sends them out of
    # order; this checks that the store's own InvalidPartOrder answer still maps to ours.
    if target.name == "moto":
        pytest.skip("moto 5.2 never answers InvalidPartOrder (its check does not track order)")
    key = _key()
    upload_id = await gateway.create_multipart_upload(key)
    etags = await _put_parts(http, gateway, key, upload_id, [b"one", b"two"])
    client = await gateway._get_client()
    with pytest.raises(InvalidPartOrder), _translated("CompleteMultipartUpload"):
        await client.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]
            },
        )


MOTO_COMPLETE_UNKNOWN = "moto 5.2 answers 500 (a KeyError) to completing an unknown upload"


async def test_unknown_upload_is_no_such_upload(gateway: S3Gateway) -> None:
    key = _key()
    bogus = "bm90LWFuLXVwbG9hZA"
    with pytest.raises(NoSuchUpload):
        await gateway.list_parts(key, bogus)
    with pytest.raises(NoSuchUpload):
        await gateway.abort_multipart_upload(key, bogus)


async def test_complete_unknown_upload_is_no_such_upload(target: Store, gateway: S3Gateway) -> None:
    if target.name == "moto":
        pytest.skip(MOTO_COMPLETE_UNKNOWN)
    with pytest.raises(NoSuchUpload):
        await gateway.complete_multipart_upload(_key(), "bm90LWFuLXVwbG9hZA", [_md5(b"x")])


async def test_abort_then_no_such_upload(
    target: Store, gateway: S3Gateway, http: httpx.AsyncClient
) -> None:
    key = _key()
    upload_id = await gateway.create_multipart_upload(key)
    etags = await _put_parts(http, gateway, key, upload_id, [b"some bytes"])
    await gateway.abort_multipart_upload(key, upload_id)
    with pytest.raises(NoSuchUpload):
        await gateway.list_parts(key, upload_id)
    with pytest.raises(NoSuchUpload):
        await gateway.abort_multipart_upload(key, upload_id)
    if target.name != "moto":  # MOTO_COMPLETE_UNKNOWN
        with pytest.raises(NoSuchUpload):
            await gateway.complete_multipart_upload(key, upload_id, etags)
    with pytest.raises(ObjectNotFound):
        await gateway.head_object(key)


async def test_completed_upload_is_gone(gateway: S3Gateway, http: httpx.AsyncClient) -> None:
    key = _key()
    upload_id = await gateway.create_multipart_upload(key)
    etags = await _put_parts(http, gateway, key, upload_id, [b"single small last part"])
    done = await gateway.complete_multipart_upload(key, upload_id, etags)
    assert done.etag == _multipart_etag([b"single small last part"])
    with pytest.raises(NoSuchUpload):
        await gateway.list_parts(key, upload_id)


# -- single objects -----------------------------------------------------------------------


async def test_head_of_missing_object(gateway: S3Gateway) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        await gateway.head_object(_key("missing.mp4"))
    assert caught.value.code == "NoSuchKey"


async def test_presigned_put_then_head(gateway: S3Gateway, http: httpx.AsyncClient) -> None:
    key = _key("clip +=&~%.mp4")
    body = b"\x00\x01video" * 1000
    response = await http.put(gateway.presign_put(key, 300), content=body)
    assert response.status_code == 200, response.text
    info = await gateway.head_object(key)
    assert (info.key, info.size, info.etag) == (key, len(body), _md5(body))


@pytest.mark.parametrize("filename", ["export.mp4", 'caméra 1 "nord".mp4'])
async def test_presigned_get_with_filename(
    gateway: S3Gateway, http: httpx.AsyncClient, filename: str
) -> None:
    key = _key()
    body = b"some video bytes"
    assert (await http.put(gateway.presign_put(key, 300), content=body)).status_code == 200
    response = await http.get(gateway.presign_get(key, 300, filename=filename))
    assert response.status_code == 200, response.text
    assert response.content == body
    assert response.headers["content-disposition"] == content_disposition(filename)


async def test_presigned_urls_use_public_url(target: Store, http: httpx.AsyncClient) -> None:
    # The server reaches the store at 127.0.0.1; clients are told "localhost". The signature
    # covers the host clients use, so the URL works from their side.
    public = target.url.replace("127.0.0.1", "localhost")
    async with _gateway(target, public_url=public) as gw:
        await gw.ensure_bucket()
        key = _key()
        url = gw.presign_put(key, 300)
        assert url.startswith(f"{public}/{BUCKET}/")
        assert (await http.put(url, content=b"hello")).status_code == 200
        assert (await gw.head_object(key)).size == 5


async def test_concurrent_calls_share_one_client(gateway: S3Gateway) -> None:
    keys = [_key() for _ in range(40)]
    results = await asyncio.gather(*(gateway.head_object(k) for k in keys), return_exceptions=True)
    assert all(isinstance(r, ObjectNotFound) for r in results)


# -- failures and construction ------------------------------------------------------------


async def test_unreachable_endpoint_is_storage_unavailable() -> None:
    dead = Store("dead", f"http://127.0.0.1:{free_port()}", S3_MIN_PART_SIZE)
    async with _gateway(dead, max_attempts=1, connect_timeout=1) as gw:
        with pytest.raises(StorageUnavailable) as caught:
            await gw.head_object("k")
        assert caught.value.__cause__ is None
        with pytest.raises(StorageUnavailable):
            await gw.create_multipart_upload("k")
        with pytest.raises(StorageUnavailable):
            await gw.check()
        with pytest.raises(StorageUnavailable):
            await gw.ensure_bucket()
        # Presigning needs no network.
        assert gw.presign_put("k", 60).startswith(f"{dead.url}/{BUCKET}/k?")


async def test_wrong_credentials_are_a_storage_error(target: Store) -> None:
    if target.name == "moto":
        pytest.skip("moto's server accepts any credentials")
    async with _gateway(target, secret_access_key="wrong") as gw:
        with pytest.raises(StorageError) as caught:
            await gw.create_multipart_upload(_key())
        assert caught.value.code == "SignatureDoesNotMatch"
        with pytest.raises(StorageUnavailable):
            await gw.check()


async def test_close_then_reuse(target: Store) -> None:
    gw = _gateway(target)
    await gw.ensure_bucket()  # opens lazily
    await gw.close()
    await gw.close()  # idempotent
    await gw.check()  # reopens
    await gw.close()


def test_from_settings_overrides() -> None:
    settings = Settings(
        s3_endpoint_url="http://s3.internal:9000/",
        s3_public_url="https://files.example.com",
        s3_bucket="b",
        s3_region="eu-west-3",
        s3_access_key_id="env-key",
        s3_secret_access_key="env-secret",
    )
    gw = S3Gateway.from_settings(settings)
    assert (gw.endpoint_url, gw.public_url, gw.bucket, gw.region) == (
        "http://s3.internal:9000",
        "https://files.example.com",
        "b",
        "eu-west-3",
    )
    assert gw.presign_put("k", 60).startswith("https://files.example.com/b/k?")
    assert "X-Amz-Credential=env-key%2F" in gw.presign_put("k", 60)

    embedded = S3Gateway.from_settings(
        Settings(),
        endpoint_url="http://127.0.0.1:9123",
        access_key_id="embedded",
        secret_access_key="s3cret",
    )
    assert embedded.public_url == "http://127.0.0.1:9123"
    assert "X-Amz-Credential=embedded%2F" in embedded.presign_put("k", 60)


def test_from_settings_requires_endpoint_and_credentials() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        S3Gateway.from_settings(Settings(), access_key_id="a", secret_access_key="s")
    with pytest.raises(ValueError, match="credentials"):
        S3Gateway.from_settings(Settings(s3_endpoint_url="http://h:9000"))
