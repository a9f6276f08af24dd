"""Object operations: PutObject, GetObject (Range), HeadObject, DeleteObject, ListObjectsV2,
and the payload integrity headers (Content-MD5, x-amz-checksum-*)."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest
from botocore.exceptions import ClientError

from . import rawhttp
from .conftest import Store


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def test_put_get_head_delete_round_trip(store: Store) -> None:
    body = b"hello, object store\n" * 1000
    put = store.s3.put_object(
        Bucket=store.bucket,
        Key="dir/sub/file name+plus.bin",
        Body=body,
        ContentType="video/mp4",
        Metadata={"camera": "lobby-1"},
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = store.s3.get_object(Bucket=store.bucket, Key="dir/sub/file name+plus.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "video/mp4"
    assert got["ContentLength"] == len(body)
    assert got["Metadata"] == {"camera": "lobby-1"}
    head = store.s3.head_object(Bucket=store.bucket, Key="dir/sub/file name+plus.bin")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == put["ETag"]
    assert head["LastModified"] == got["LastModified"]
    store.s3.delete_object(Bucket=store.bucket, Key="dir/sub/file name+plus.bin")
    with pytest.raises(ClientError) as exc:
        store.s3.get_object(Bucket=store.bucket, Key="dir/sub/file name+plus.bin")
    assert _code(exc) == "NoSuchKey"
    assert _status(exc) == 404


def test_overwrite_replaces_object(store: Store) -> None:
    store.s3.put_object(Bucket=store.bucket, Key="k", Body=b"first version")
    store.s3.put_object(Bucket=store.bucket, Key="k", Body=b"second")
    assert store.s3.get_object(Bucket=store.bucket, Key="k")["Body"].read() == b"second"
    listed = store.s3.list_objects_v2(Bucket=store.bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("k", 6)]


def test_empty_object(store: Store) -> None:
    put = store.s3.put_object(Bucket=store.bucket, Key="empty", Body=b"")
    assert put["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    got = store.s3.get_object(Bucket=store.bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0


def test_head_missing_object_is_404_without_body(store: Store) -> None:
    with pytest.raises(ClientError) as exc:
        store.s3.head_object(Bucket=store.bucket, Key="nope")
    assert _status(exc) == 404


def test_delete_missing_object_is_204(store: Store) -> None:
    resp = store.s3.delete_object(Bucket=store.bucket, Key="never-was")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_object_and_prefix_of_same_name_coexist(store: Store) -> None:
    store.s3.put_object(Bucket=store.bucket, Key="a", Body=b"A")
    store.s3.put_object(Bucket=store.bucket, Key="a/b", Body=b"AB")
    store.s3.put_object(Bucket=store.bucket, Key="a/", Body=b"folder")
    assert store.s3.get_object(Bucket=store.bucket, Key="a")["Body"].read() == b"A"
    assert store.s3.get_object(Bucket=store.bucket, Key="a/b")["Body"].read() == b"AB"
    assert store.s3.get_object(Bucket=store.bucket, Key="a/")["Body"].read() == b"folder"
    keys = [o["Key"] for o in store.s3.list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert keys == ["a", "a/", "a/b"]


def test_long_and_unicode_keys(store: Store) -> None:
    long_segment = "x" * 300 + "é" * 100  # one segment longer than a file name may be
    keys = [f"vms/org/{long_segment}/v.mp4", f"vms/org/{long_segment}", "vidéo/日本語 ключ.mp4"]
    for i, key in enumerate(keys):
        store.s3.put_object(Bucket=store.bucket, Key=key, Body=str(i).encode())
    for i, key in enumerate(keys):
        assert store.s3.get_object(Bucket=store.bucket, Key=key)["Body"].read() == str(i).encode()
    listed = [o["Key"] for o in store.s3.list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())
    under = store.s3.list_objects_v2(Bucket=store.bucket, Prefix=f"vms/org/{long_segment}/")
    assert [o["Key"] for o in under["Contents"]] == [keys[0]]


@pytest.mark.embedded_only  # moto accepts any key length
def test_key_too_long(store: Store) -> None:
    with pytest.raises(ClientError) as exc:
        store.s3.put_object(Bucket=store.bucket, Key="k" * 1025, Body=b"x")
    assert _code(exc) == "KeyTooLongError"
    assert _status(exc) == 400


# --- Range ---------------------------------------------------------------------------------

BODY = bytes(range(256)) * 40  # 10240 bytes


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=10000-", 10000, 10239),
        ("bytes=-100", 10140, 10239),
        ("bytes=10200-99999", 10200, 10239),
        ("bytes=-999999", 0, 10239),
    ],
)
def test_range_get(store: Store, spec: str, first: int, last: int) -> None:
    store.s3.put_object(Bucket=store.bucket, Key="r", Body=BODY)
    got = store.s3.get_object(Bucket=store.bucket, Key="r", Range=spec)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {first}-{last}/{len(BODY)}"
    assert got["Body"].read() == BODY[first : last + 1]
    assert got["ContentLength"] == last - first + 1


def test_range_past_end_is_416(store: Store) -> None:
    store.s3.put_object(Bucket=store.bucket, Key="r", Body=BODY)
    with pytest.raises(ClientError) as exc:
        store.s3.get_object(Bucket=store.bucket, Key="r", Range="bytes=10240-")
    assert _code(exc) == "InvalidRange"
    assert _status(exc) == 416


# --- ListObjectsV2 -------------------------------------------------------------------------

KEYS = ["a.txt", "b/1", "b/2", "b/c/3", "c/4", "d", "e/5/6"]


def _fill(store: Store) -> None:
    for key in KEYS:
        store.s3.put_object(Bucket=store.bucket, Key=key, Body=key.encode())


def test_list_prefix_and_delimiter(store: Store) -> None:
    _fill(store)
    everything = store.s3.list_objects_v2(Bucket=store.bucket)
    assert [o["Key"] for o in everything["Contents"]] == KEYS
    assert everything["KeyCount"] == len(KEYS)
    assert everything["IsTruncated"] is False
    assert everything["Contents"][0]["Size"] == len(b"a.txt")
    assert everything["Contents"][0]["ETag"] == f'"{hashlib.md5(b"a.txt").hexdigest()}"'

    top = store.s3.list_objects_v2(Bucket=store.bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a.txt", "d"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["b/", "c/", "e/"]
    assert top["KeyCount"] == 5

    under_b = store.s3.list_objects_v2(Bucket=store.bucket, Prefix="b/", Delimiter="/")
    assert [o["Key"] for o in under_b["Contents"]] == ["b/1", "b/2"]
    assert [p["Prefix"] for p in under_b["CommonPrefixes"]] == ["b/c/"]

    partial = store.s3.list_objects_v2(Bucket=store.bucket, Prefix="b/c")
    assert [o["Key"] for o in partial["Contents"]] == ["b/c/3"]
    none = store.s3.list_objects_v2(Bucket=store.bucket, Prefix="zzz")
    assert none["KeyCount"] == 0
    assert "Contents" not in none


def test_list_pagination_with_continuation_token(store: Store) -> None:
    _fill(store)
    seen: list[str] = []
    prefixes: list[str] = []
    token = None
    pages = 0
    while True:
        kwargs = {"Bucket": store.bucket, "MaxKeys": 2, "Delimiter": "/"}
        if token:
            kwargs["ContinuationToken"] = token
        page = store.s3.list_objects_v2(**kwargs)
        pages += 1
        assert page["KeyCount"] <= 2
        seen += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == ["a.txt", "d"]
    assert prefixes == ["b/", "c/", "e/"]
    assert pages == 3

    paginator = store.s3.get_paginator("list_objects_v2")
    keys = [
        o["Key"]
        for p in paginator.paginate(Bucket=store.bucket, PaginationConfig={"PageSize": 3})
        for o in p["Contents"]
    ]
    assert keys == KEYS


def test_list_max_keys_zero(store: Store) -> None:
    _fill(store)
    page = store.s3.list_objects_v2(Bucket=store.bucket, MaxKeys=0)
    assert page["KeyCount"] == 0
    assert page["IsTruncated"] is False


def test_list_start_after(store: Store) -> None:
    _fill(store)
    page = store.s3.list_objects_v2(Bucket=store.bucket, StartAfter="b/2")
    assert [o["Key"] for o in page["Contents"]] == ["b/c/3", "c/4", "d", "e/5/6"]


def test_list_v1(store: Store) -> None:
    _fill(store)
    page = store.s3.list_objects(Bucket=store.bucket, MaxKeys=3)
    assert [o["Key"] for o in page["Contents"]] == KEYS[:3]
    assert page["IsTruncated"] is True
    rest = store.s3.list_objects(Bucket=store.bucket, Marker="b/2")
    assert [o["Key"] for o in rest["Contents"]] == KEYS[3:]


def test_delete_objects_batch(store: Store) -> None:
    _fill(store)
    resp = store.s3.delete_objects(
        Bucket=store.bucket, Delete={"Objects": [{"Key": "a.txt"}, {"Key": "b/1"}, {"Key": "nope"}]}
    )
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["a.txt", "b/1", "nope"]
    left = [o["Key"] for o in store.s3.list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert left == [k for k in KEYS if k not in ("a.txt", "b/1")]


# --- integrity -----------------------------------------------------------------------------


@pytest.mark.embedded_only  # moto (5.2) ignores Content-MD5 on PutObject
def test_content_md5_is_checked(store: Store) -> None:
    good = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    store.s3.put_object(Bucket=store.bucket, Key="ok", Body=b"payload", ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as exc:
        store.s3.put_object(Bucket=store.bucket, Key="bad", Body=b"payload", ContentMD5=bad)
    assert _code(exc) == "BadDigest"
    assert _status(exc) == 400
    with pytest.raises(ClientError) as exc:
        store.s3.head_object(Bucket=store.bucket, Key="bad")
    assert _status(exc) == 404


# CRC32C needs awscrt in botocore (not installed); it is covered by the raw test below.
@pytest.mark.parametrize("algorithm", ["CRC32", "SHA256", "SHA1"])
def test_checksums_sent_by_boto3_are_accepted_and_verified(store: Store, algorithm: str) -> None:
    body = b"checksummed body " * 100
    put = store.s3.put_object(Bucket=store.bucket, Key="c", Body=body, ChecksumAlgorithm=algorithm)
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert store.s3.get_object(Bucket=store.bucket, Key="c")["Body"].read() == body


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.embedded_only  # moto (5.2) does not verify x-amz-checksum-* values
def test_wrong_checksum_is_bad_digest(store: Store) -> None:
    with pytest.raises(ClientError) as exc:
        store.s3.put_object(
            Bucket=store.bucket, Key="c", Body=b"actual body", ChecksumCRC32=_crc32_b64(b"other")
        )
    assert _code(exc) in ("BadDigest", "InvalidRequest")
    assert _status(exc) == 400
    with pytest.raises(ClientError) as exc:
        store.s3.head_object(Bucket=store.bucket, Key="c")
    assert _status(exc) == 404


@pytest.mark.embedded_only  # moto does not verify x-amz-content-sha256
def test_payload_hash_mismatch_is_refused(store: Store) -> None:
    url = f"{store.url}/{store.bucket}/tampered"
    headers = rawhttp.sign("PUT", url, b"signed body")
    status, body, _ = rawhttp.request("PUT", url, b"other body!", headers)
    assert status == 400
    assert b"<Code>XAmzContentSHA256Mismatch</Code>" in body
    status, _, _ = rawhttp.request("HEAD", url, b"", rawhttp.sign("HEAD", url))
    assert status == 404


@pytest.mark.embedded_only  # moto does not verify checksums
@pytest.mark.parametrize(
    ("header", "good"),
    [
        # Check values of the standard test input "123456789".
        ("x-amz-checksum-crc32c", (0xE3069283).to_bytes(4, "big")),
        ("x-amz-checksum-crc32", (0xCBF43926).to_bytes(4, "big")),
        ("x-amz-checksum-crc64nvme", (0xAE8B14860A799888).to_bytes(8, "big")),
        ("x-amz-checksum-sha256", hashlib.sha256(b"123456789").digest()),
    ],
)
def test_checksum_headers_raw(store: Store, header: str, good: bytes) -> None:
    url = f"{store.url}/{store.bucket}/check"
    value = base64.b64encode(good).decode()
    headers = rawhttp.sign("PUT", url, b"123456789", {header: value})
    status, body, resp_headers = rawhttp.request("PUT", url, b"123456789", headers)
    assert status == 200, body
    assert resp_headers[header] == value
    wrong = base64.b64encode(bytes(len(good))).decode()
    headers = rawhttp.sign("PUT", url, b"123456789", {header: wrong})
    status, body, _ = rawhttp.request("PUT", url, b"123456789", headers)
    assert status == 400
    assert b"<Code>BadDigest</Code>" in body


TRICKY = [
    "a",
    "a/",
    "a/b",
    "a.b",
    "a0",
    "a-/x",
    "a/b/c",
    "a/b.c/d",
    "a/b/c/",
    "b",
    "b//c",
    "é",
    "z" * 230 + "/x",
    "z" * 230 + "/y/z",
    "zz",
    "日本/語",
]


def _reference(keys: list[str], prefix: str, delimiter: str) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for key in sorted(keys, key=lambda k: k.encode()):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if delimiter and delimiter in rest:
            cp = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if (cp, True) not in out:
                out.append((cp, True))
        else:
            out.append((key, False))
    return out


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b", "z", "b/"])
@pytest.mark.parametrize("delimiter", ["", "/", "."])
def test_listing_matches_reference_model(store: Store, prefix: str, delimiter: str) -> None:
    for key in TRICKY:
        store.s3.put_object(Bucket=store.bucket, Key=key, Body=b"")
    for page_size in (1, 3, 1000):
        got: list[tuple[str, bool]] = []
        kwargs: dict[str, object] = {"Bucket": store.bucket, "Prefix": prefix, "MaxKeys": page_size}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        while True:
            page = store.s3.list_objects_v2(**kwargs)
            items = [(o["Key"], False) for o in page.get("Contents", [])]
            items += [(p["Prefix"], True) for p in page.get("CommonPrefixes", [])]
            assert len(items) == page["KeyCount"] <= page_size
            got += sorted(items, key=lambda t: t[0].encode())
            if not page["IsTruncated"]:
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
        assert got == _reference(TRICKY, prefix, delimiter), page_size


def test_conditional_get(store: Store) -> None:
    etag = store.s3.put_object(Bucket=store.bucket, Key="c", Body=b"cond")["ETag"]
    assert store.s3.get_object(Bucket=store.bucket, Key="c", IfMatch=etag)["Body"].read() == b"cond"
    with pytest.raises(ClientError) as exc:
        store.s3.get_object(
            Bucket=store.bucket, Key="c", IfMatch='"00000000000000000000000000000000"'
        )
    assert _status(exc) == 412
    with pytest.raises(ClientError) as exc:
        store.s3.get_object(Bucket=store.bucket, Key="c", IfNoneMatch=etag)
    assert _status(exc) == 304


def test_presigned_get_of_missing_key_is_no_such_key(store: Store) -> None:
    import httpx

    url = store.s3.generate_presigned_url(
        "get_object", Params={"Bucket": store.bucket, "Key": "missing"}, ExpiresIn=60
    )
    resp = httpx.get(url)
    assert resp.status_code == 404
    assert "<Code>NoSuchKey</Code>" in resp.text


def test_copy_object(store: Store) -> None:
    body = b"copy me " * 1000
    store.s3.put_object(
        Bucket=store.bucket, Key="src", Body=body, ContentType="video/mp4", Metadata={"a": "1"}
    )
    copied = store.s3.copy_object(
        Bucket=store.bucket, Key="dst/copy", CopySource={"Bucket": store.bucket, "Key": "src"}
    )
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = store.s3.get_object(Bucket=store.bucket, Key="dst/copy")
    assert got["Body"].read() == body
    assert got["ContentType"] == "video/mp4"
    assert got["Metadata"] == {"a": "1"}
    store.s3.copy_object(
        Bucket=store.bucket,
        Key="src",
        CopySource={"Bucket": store.bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        ContentType="text/plain",
        Metadata={"b": "2"},
    )
    head = store.s3.head_object(Bucket=store.bucket, Key="src")
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as exc:
        store.s3.copy_object(
            Bucket=store.bucket, Key="x", CopySource={"Bucket": store.bucket, "Key": "missing"}
        )
    assert _code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        store.s3.copy_object(
            Bucket=store.bucket, Key="src", CopySource={"Bucket": store.bucket, "Key": "src"}
        )
    assert _code(exc) == "InvalidRequest"
