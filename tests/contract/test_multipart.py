"""Multipart uploads: the happy path and every error S3 defines for Complete."""

from __future__ import annotations

import hashlib

import pytest
from botocore.exceptions import ClientError

from .conftest import MIB, MIN_PART, Store


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def _part(n: int, size: int = MIN_PART) -> bytes:
    return bytes([n % 251]) * size


def _start(store: Store, key: str = "video.mp4") -> str:
    resp = store.s3.create_multipart_upload(Bucket=store.bucket, Key=key, ContentType="video/mp4")
    return str(resp["UploadId"])


def _upload(store: Store, upload_id: str, n: int, data: bytes, key: str = "video.mp4") -> str:
    resp = store.s3.upload_part(
        Bucket=store.bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data
    )
    return str(resp["ETag"])


def _complete(store: Store, upload_id: str, parts: list[tuple[int, str]], key: str = "video.mp4"):
    return store.s3.complete_multipart_upload(
        Bucket=store.bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
    )


def test_multipart_round_trip_and_etag(store: Store) -> None:
    upload_id = _start(store)
    datas = [_part(1), _part(2), b"tail" * 1000]
    etags = [_upload(store, upload_id, i + 1, d) for i, d in enumerate(datas)]
    assert etags == [f'"{hashlib.md5(d).hexdigest()}"' for d in datas]

    listed = store.s3.list_parts(Bucket=store.bucket, Key="video.mp4", UploadId=upload_id)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == [
        (i + 1, etags[i], len(d)) for i, d in enumerate(datas)
    ]
    uploads = store.s3.list_multipart_uploads(Bucket=store.bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("video.mp4", upload_id)]

    done = _complete(store, upload_id, list(enumerate(etags, 1)))
    expected = hashlib.md5(b"".join(hashlib.md5(d).digest() for d in datas)).hexdigest()
    assert done["ETag"] == f'"{expected}-3"'

    got = store.s3.get_object(Bucket=store.bucket, Key="video.mp4")
    assert got["ETag"] == done["ETag"]
    assert got["ContentType"] == "video/mp4"
    assert got["ContentLength"] == sum(map(len, datas))
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(b"".join(datas)).digest()
    # The upload is gone once completed.
    assert "Uploads" not in store.s3.list_multipart_uploads(Bucket=store.bucket)
    with pytest.raises(ClientError) as exc:
        store.s3.list_parts(Bucket=store.bucket, Key="video.mp4", UploadId=upload_id)
    assert _code(exc) == "NoSuchUpload"
    # A range across the part boundary.
    rng = store.s3.get_object(
        Bucket=store.bucket, Key="video.mp4", Range=f"bytes={MIN_PART - 2}-{MIN_PART + 1}"
    )
    assert rng["Body"].read() == _part(1)[-2:] + _part(2)[:2]


def test_second_complete_returns_same_etag(store: Store) -> None:
    upload_id = _start(store)
    parts = [(1, _upload(store, upload_id, 1, _part(1))), (2, _upload(store, upload_id, 2, b"x"))]
    first = _complete(store, upload_id, parts)
    second = _complete(store, upload_id, parts)
    assert second["ETag"] == first["ETag"]
    assert store.s3.head_object(Bucket=store.bucket, Key="video.mp4")["ETag"] == first["ETag"]


def test_reupload_replaces_part(store: Store) -> None:
    upload_id = _start(store)
    _upload(store, upload_id, 1, b"old part")
    new = _upload(store, upload_id, 1, b"new part!")
    listed = store.s3.list_parts(Bucket=store.bucket, Key="video.mp4", UploadId=upload_id)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == [(1, new, 9)]
    _complete(store, upload_id, [(1, new)])
    assert store.s3.get_object(Bucket=store.bucket, Key="video.mp4")["Body"].read() == b"new part!"


def test_complete_with_unknown_part_or_etag_is_invalid_part(store: Store) -> None:
    upload_id = _start(store)
    e1 = _upload(store, upload_id, 1, _part(1))
    with pytest.raises(ClientError) as exc:
        _complete(store, upload_id, [(1, e1), (2, e1)])
    assert _code(exc) == "InvalidPart"
    assert _status(exc) == 400
    with pytest.raises(ClientError) as exc:
        _complete(store, upload_id, [(1, '"0123456789abcdef0123456789abcdef"')])
    assert _code(exc) == "InvalidPart"


@pytest.mark.embedded_only  # moto (5.2) completes an out-of-order part list
def test_complete_out_of_order_is_invalid_part_order(store: Store) -> None:
    upload_id = _start(store)
    e1 = _upload(store, upload_id, 1, _part(1))
    e2 = _upload(store, upload_id, 2, _part(2))
    with pytest.raises(ClientError) as exc:
        _complete(store, upload_id, [(2, e2), (1, e1)])
    assert _code(exc) == "InvalidPartOrder"
    assert _status(exc) == 400


def test_small_non_final_part_is_entity_too_small(store: Store) -> None:
    upload_id = _start(store)
    e1 = _upload(store, upload_id, 1, b"x" * MIB)
    e2 = _upload(store, upload_id, 2, b"y")
    with pytest.raises(ClientError) as exc:
        _complete(store, upload_id, [(1, e1), (2, e2)])
    assert _code(exc) == "EntityTooSmall"
    assert _status(exc) == 400
    # A single small part is fine: it is the last one.
    _complete(store, upload_id, [(2, e2)])
    assert store.s3.get_object(Bucket=store.bucket, Key="video.mp4")["Body"].read() == b"y"


@pytest.mark.embedded_only  # moto (5.2) answers 500 to UploadPart for an unknown upload
def test_unknown_upload_is_no_such_upload(store: Store) -> None:
    bogus = "0" * 48
    with pytest.raises(ClientError) as exc:
        store.s3.upload_part(
            Bucket=store.bucket, Key="video.mp4", UploadId=bogus, PartNumber=1, Body=b"x"
        )
    assert _code(exc) == "NoSuchUpload"
    assert _status(exc) == 404
    with pytest.raises(ClientError) as exc:
        _complete(store, bogus, [(1, '"0123456789abcdef0123456789abcdef"')])
    assert _code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        store.s3.list_parts(Bucket=store.bucket, Key="video.mp4", UploadId=bogus)
    assert _code(exc) == "NoSuchUpload"


@pytest.mark.embedded_only  # moto (5.2) answers 500 to UploadPart after an abort
def test_abort_drops_upload(store: Store) -> None:
    upload_id = _start(store)
    _upload(store, upload_id, 1, b"data")
    store.s3.abort_multipart_upload(Bucket=store.bucket, Key="video.mp4", UploadId=upload_id)
    with pytest.raises(ClientError) as exc:
        store.s3.list_parts(Bucket=store.bucket, Key="video.mp4", UploadId=upload_id)
    assert _code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        store.s3.upload_part(
            Bucket=store.bucket, Key="video.mp4", UploadId=upload_id, PartNumber=2, Body=b"x"
        )
    assert _code(exc) == "NoSuchUpload"
    assert "Uploads" not in store.s3.list_multipart_uploads(Bucket=store.bucket)
    with pytest.raises(ClientError) as exc:
        store.s3.head_object(Bucket=store.bucket, Key="video.mp4")
    assert _status(exc) == 404


def test_part_number_above_10000_is_invalid(store: Store) -> None:
    _check_part_number(store, 10001)


@pytest.mark.embedded_only  # moto (5.2) answers NoSuchUpload for part number 0
def test_part_number_zero_is_invalid(store: Store) -> None:
    _check_part_number(store, 0)


def _check_part_number(store: Store, number: int) -> None:
    upload_id = _start(store)
    with pytest.raises(ClientError) as exc:
        store.s3.upload_part(
            Bucket=store.bucket, Key="video.mp4", UploadId=upload_id, PartNumber=number, Body=b"x"
        )
    assert _code(exc) == "InvalidArgument"
    assert _status(exc) == 400


def test_complete_with_no_parts_is_malformed_xml(store: Store) -> None:
    upload_id = _start(store)
    _upload(store, upload_id, 1, b"data")
    with pytest.raises(ClientError) as exc:
        store.s3.complete_multipart_upload(
            Bucket=store.bucket, Key="video.mp4", UploadId=upload_id, MultipartUpload={"Parts": []}
        )
    assert _code(exc) == "MalformedXML"
    assert _status(exc) == 400


def test_list_parts_pagination_and_uploads_listing(store: Store) -> None:
    upload_id = _start(store, "a/one")
    other = _start(store, "b/two")
    for n in range(1, 6):
        _upload(store, upload_id, n, bytes([n]), key="a/one")
    page = store.s3.list_parts(Bucket=store.bucket, Key="a/one", UploadId=upload_id, MaxParts=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    assert page["IsTruncated"] is True
    page = store.s3.list_parts(
        Bucket=store.bucket,
        Key="a/one",
        UploadId=upload_id,
        PartNumberMarker=page["NextPartNumberMarker"],
    )
    assert [p["PartNumber"] for p in page["Parts"]] == [3, 4, 5]
    assert page["IsTruncated"] is False
    uploads = store.s3.list_multipart_uploads(Bucket=store.bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("a/one", upload_id), ("b/two", other)]
    only_b = store.s3.list_multipart_uploads(Bucket=store.bucket, Prefix="b/")["Uploads"]
    assert [u["UploadId"] for u in only_b] == [other]


def test_multipart_object_reads_across_part_boundaries(store: Store) -> None:
    """Ranges that start, end and span at part boundaries; copy, overwrite and delete of a
    multipart object (the embedded store keeps its parts as separate files)."""
    upload_id = _start(store, "parts.bin")
    datas = [bytes(range(256)) * (MIN_PART // 256), _part(2), b"0123456789" * 100_003]
    etags = [_upload(store, upload_id, i + 1, d, key="parts.bin") for i, d in enumerate(datas)]
    _complete(store, upload_id, list(enumerate(etags, 1)), key="parts.bin")
    whole = b"".join(datas)
    got = store.s3.get_object(Bucket=store.bucket, Key="parts.bin")["Body"].read()
    assert got == whole
    b1, b2 = len(datas[0]), len(datas[0]) + len(datas[1])
    for first, last in [
        (0, 0),
        (b1 - 1, b1),
        (b1, b1),
        (b1 - 5, b2 + 5),
        (b2, len(whole) - 1),
        (10, len(whole) - 10),
    ]:
        resp = store.s3.get_object(
            Bucket=store.bucket, Key="parts.bin", Range=f"bytes={first}-{last}"
        )
        assert resp["Body"].read() == whole[first : last + 1], (first, last)
    tail = store.s3.get_object(Bucket=store.bucket, Key="parts.bin", Range="bytes=-7")
    assert tail["Body"].read() == whole[-7:]

    store.s3.copy_object(
        Bucket=store.bucket, Key="copy.bin", CopySource={"Bucket": store.bucket, "Key": "parts.bin"}
    )
    copied = store.s3.get_object(Bucket=store.bucket, Key="copy.bin")
    assert copied["Body"].read() == whole
    assert copied["ETag"] == f'"{hashlib.md5(whole).hexdigest()}"'

    store.s3.put_object(Bucket=store.bucket, Key="parts.bin", Body=b"small now")
    assert store.s3.get_object(Bucket=store.bucket, Key="parts.bin")["Body"].read() == b"small now"
    if store.data_dir is not None:
        names = sorted(p.name for p in (store.data_dir / store.bucket).glob("parts*.v"))
        assert len(names) == 1, names  # the three part files went with the old version
    store.s3.delete_object(Bucket=store.bucket, Key="parts.bin")
    store.s3.delete_object(Bucket=store.bucket, Key="copy.bin")
    if store.data_dir is not None:
        assert not list((store.data_dir / store.bucket).glob("*.v"))
