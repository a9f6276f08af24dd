"""SigV4 authentication: header-signed requests and presigned URLs (used with plain httpx)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import botocore.auth
import httpx
import pytest
from botocore.exceptions import ClientError

from .conftest import Store, make_client


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _presign(store: Store, method: str, key: str, expires: int = 600, **params: str) -> str:
    return str(
        store.s3.generate_presigned_url(
            method, Params={"Bucket": store.bucket, "Key": key, **params}, ExpiresIn=expires
        )
    )


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dt.timedelta]]:
    """Shift the time botocore signs with: append a timedelta to move its clock."""
    shift: list[dt.timedelta] = []
    real = botocore.auth.get_current_datetime

    def shifted(remove_tzinfo: bool = True) -> dt.datetime:
        return real(remove_tzinfo) + sum(shift, dt.timedelta())

    monkeypatch.setattr(botocore.auth, "get_current_datetime", shifted)
    yield shift


def test_presigned_put_then_get_with_httpx(store: Store) -> None:
    put_url = _presign(store, "put_object", "incident/video.mp4")
    resp = httpx.put(put_url, content=b"exported video bytes")
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"] == f'"{hashlib.md5(b"exported video bytes").hexdigest()}"'
    get_url = _presign(
        store,
        "get_object",
        "incident/video.mp4",
        ResponseContentDisposition='attachment; filename="video.mp4"',
    )
    resp = httpx.get(get_url)
    assert resp.status_code == 200
    assert resp.content == b"exported video bytes"
    assert resp.headers["content-disposition"] == 'attachment; filename="video.mp4"'
    resp = httpx.get(get_url, headers={"Range": "bytes=0-7"})
    assert resp.status_code == 206
    assert resp.content == b"exported"


def test_presigned_upload_part(store: Store) -> None:
    upload_id = store.s3.create_multipart_upload(Bucket=store.bucket, Key="mp")["UploadId"]
    url = store.s3.generate_presigned_url(
        "upload_part",
        Params={"Bucket": store.bucket, "Key": "mp", "UploadId": upload_id, "PartNumber": 1},
        ExpiresIn=600,
    )
    resp = httpx.put(url, content=b"part one")
    assert resp.status_code == 200, resp.text
    store.s3.complete_multipart_upload(
        Bucket=store.bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": resp.headers["etag"]}]},
    )
    assert store.s3.get_object(Bucket=store.bucket, Key="mp")["Body"].read() == b"part one"


@pytest.mark.embedded_only  # moto does not check presigned signatures
def test_tampered_presigned_url_is_signature_mismatch(store: Store) -> None:
    url = _presign(store, "put_object", "k")
    sig = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    resp = httpx.put(_with_query(url, **{"X-Amz-Signature": flipped}), content=b"x")
    assert resp.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in resp.text
    # A URL signed for one key does not work for another.
    other = url.replace("/k?", "/other?")
    resp = httpx.put(other, content=b"x")
    assert resp.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in resp.text
    # ...nor for another method.
    resp = httpx.get(url)
    assert resp.status_code == 403
    assert store.s3.list_objects_v2(Bucket=store.bucket)["KeyCount"] == 0


@pytest.mark.embedded_only
def test_expired_presigned_url_is_access_denied(store: Store, clock: list[dt.timedelta]) -> None:
    store.s3.put_object(Bucket=store.bucket, Key="k", Body=b"data")
    clock.append(dt.timedelta(hours=-2))
    expired = _presign(store, "get_object", "k", expires=3600)
    clock.append(dt.timedelta(minutes=90))  # signed 30 minutes ago, valid one hour
    valid = _presign(store, "get_object", "k", expires=3600)
    resp = httpx.get(expired)
    assert resp.status_code == 403
    assert "<Code>AccessDenied</Code>" in resp.text
    assert "expired" in resp.text
    assert httpx.get(valid).content == b"data"


@pytest.mark.embedded_only
@pytest.mark.parametrize("expires", [0, 604801])
def test_presign_lifetime_outside_one_week_is_access_denied(store: Store, expires: int) -> None:
    store.s3.put_object(Bucket=store.bucket, Key="k", Body=b"data")
    url = _presign(store, "get_object", "k", expires=expires)
    assert f"X-Amz-Expires={expires}" in url
    resp = httpx.get(url)
    assert resp.status_code == 403
    assert "<Code>AccessDenied</Code>" in resp.text


@pytest.mark.embedded_only
def test_unknown_access_key_is_invalid_access_key_id(store: Store) -> None:
    stranger = make_client(store.url, access_key_id="AKIAUNKNOWN000000000")
    with pytest.raises(ClientError) as exc:
        stranger.list_objects_v2(Bucket=store.bucket)
    assert _code(exc) == "InvalidAccessKeyId"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    url = stranger.generate_presigned_url(
        "get_object", Params={"Bucket": store.bucket, "Key": "k"}, ExpiresIn=60
    )
    resp = httpx.get(url)
    assert resp.status_code == 403
    assert "<Code>InvalidAccessKeyId</Code>" in resp.text


@pytest.mark.embedded_only
def test_wrong_secret_is_signature_mismatch(store: Store) -> None:
    wrong = make_client(store.url, secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as exc:
        wrong.put_object(Bucket=store.bucket, Key="k", Body=b"x" * 100_000)
    assert _code(exc) == "SignatureDoesNotMatch"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # The connection stays usable for the next, correct request.
    store.s3.put_object(Bucket=store.bucket, Key="k", Body=b"ok")


@pytest.mark.embedded_only
def test_clock_skew_is_refused(store: Store, clock: list[dt.timedelta]) -> None:
    clock.append(dt.timedelta(minutes=-20))
    with pytest.raises(ClientError) as exc:
        store.s3.list_objects_v2(Bucket=store.bucket)
    assert _code(exc) == "RequestTimeTooSkewed"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    clock.append(dt.timedelta(minutes=10))  # 10 minutes off: within S3's 15
    store.s3.list_objects_v2(Bucket=store.bucket)


@pytest.mark.embedded_only
def test_anonymous_request_is_access_denied(store: Store) -> None:
    resp = httpx.get(f"{store.url}/{store.bucket}?list-type=2")
    assert resp.status_code == 403
    assert "<Code>AccessDenied</Code>" in resp.text
    resp = httpx.put(f"{store.url}/{store.bucket}/anon", content=b"x")
    assert resp.status_code == 403


@pytest.mark.parametrize("key", ["dir/ä b+c=d.mp4", "a/b/c~d!e'f(g)h*i", "x/%41 literal percent"])
def test_presigned_urls_with_special_characters(store: Store, key: str) -> None:
    resp = httpx.put(_presign(store, "put_object", key), content=key.encode())
    assert resp.status_code == 200, resp.text
    resp = httpx.get(_presign(store, "get_object", key))
    assert resp.status_code == 200, resp.text
    assert resp.content == key.encode()
    listed = [o["Key"] for o in store.s3.list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert listed == [key]
