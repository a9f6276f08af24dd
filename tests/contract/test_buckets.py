"""Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from .conftest import Store


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_created_bucket_is_listed_and_headed(store: Store) -> None:
    names = [b["Name"] for b in store.s3.list_buckets()["Buckets"]]
    assert store.bucket in names
    head = store.s3.head_bucket(Bucket=store.bucket)
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.embedded_only  # moto mimics us-east-1's legacy 200 for a re-create
def test_create_existing_bucket_is_already_owned(store: Store) -> None:
    with pytest.raises(ClientError) as exc:
        store.s3.create_bucket(Bucket=store.bucket)
    assert _code(exc) == "BucketAlreadyOwnedByYou"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


def test_missing_bucket_is_404(store: Store) -> None:
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(ClientError) as exc:
        store.s3.list_objects_v2(Bucket=missing)
    assert _code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        store.s3.put_object(Bucket=missing, Key="k", Body=b"x")
    assert _code(exc) == "NoSuchBucket"
    # HEAD errors carry no body: botocore falls back to the status code.
    with pytest.raises(ClientError) as exc:
        store.s3.head_bucket(Bucket=missing)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_bucket_only_when_empty(store: Store) -> None:
    store.s3.put_object(Bucket=store.bucket, Key="a/b/c", Body=b"x")
    with pytest.raises(ClientError) as exc:
        store.s3.delete_bucket(Bucket=store.bucket)
    assert _code(exc) == "BucketNotEmpty"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    store.s3.delete_object(Bucket=store.bucket, Key="a/b/c")
    store.s3.delete_bucket(Bucket=store.bucket)
    names = [b["Name"] for b in store.s3.list_buckets()["Buckets"]]
    assert store.bucket not in names
    with pytest.raises(ClientError) as exc:
        store.s3.delete_bucket(Bucket=store.bucket)
    assert _code(exc) == "NoSuchBucket"


@pytest.mark.embedded_only  # moto creates buckets with any name
@pytest.mark.parametrize("name", ["ab", "UPPER-case", "a_b_c", "-leading", "192.168.1.1", "x" * 64])
def test_invalid_bucket_names_are_refused(store: Store, name: str) -> None:
    from botocore.exceptions import ParamValidationError

    # botocore refuses some names itself; either way nothing is created.
    with pytest.raises((ClientError, ParamValidationError)) as exc:
        store.s3.create_bucket(Bucket=name)
    if isinstance(exc.value, ClientError):
        assert exc.value.response["Error"]["Code"] == "InvalidBucketName"


@pytest.mark.embedded_only  # looks at the data directory
def test_bucket_name_taken_by_a_file_in_the_data_dir(store: Store) -> None:
    assert store.data_dir is not None
    (store.data_dir / "not-a-bucket.db").write_bytes(b"sqlite")
    with pytest.raises(ClientError) as exc:
        store.s3.create_bucket(Bucket="not-a-bucket.db")
    assert _code(exc) == "BucketAlreadyExists"
    names = [b["Name"] for b in store.s3.list_buckets()["Buckets"]]
    assert "not-a-bucket.db" not in names
    with pytest.raises(ClientError) as exc:
        store.s3.head_bucket(Bucket="not-a-bucket.db")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
