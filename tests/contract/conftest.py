"""The S3 contract suite runs every test against each S3 implementation we support.

`store` is parametrized over the embedded store (in-process, real HTTP on loopback through
uvicorn) and moto's standalone server. Tests marked `embedded_only` run on the embedded store
alone (moto does not check signatures, for example). Each test gets a fresh bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.helpers import ServerThread, free_port, wait_for_port

ACCESS_KEY_ID = "AKIAVMSBRIDGETEST000"
SECRET_ACCESS_KEY = "contract-test-secret-0000000000000000000"
REGION = "us-east-1"
MIB = 1024 * 1024
#: Smallest non-final part. moto's is fixed at 5 MiB, so tests that run on both use it.
MIN_PART = 5 * MIB


@dataclass
class Store:
    """One S3 implementation under test, with a fresh bucket."""

    kind: str
    url: str
    s3: object  # boto3 S3 client, path-style, SigV4
    bucket: str
    data_dir: Path | None = None

    def client(self, **config: object) -> object:
        """Another boto3 client against this store (e.g. other credentials or config)."""
        return make_client(self.url, **config)


def make_client(
    url: str,
    access_key_id: str = ACCESS_KEY_ID,
    secret_access_key: str = SECRET_ACCESS_KEY,
    **config: object,
) -> object:
    """A boto3 S3 client for `url`: path-style, SigV4 (also for presigning), no retries."""
    cfg = Config(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 1, "mode": "standard"},
        **config,  # type: ignore[arg-type]
    )
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=REGION,
        config=cfg,
    )


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from vmsbridge.s3 import create_s3_app

    data_dir = tmp_path_factory.mktemp("s3data")
    app = create_s3_app(data_dir, {ACCESS_KEY_ID: SECRET_ACCESS_KEY}, min_part_size=MIN_PART)
    with ServerThread(app) as server:
        yield server.url, data_dir


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("embedded_only")
        kinds = ["embedded"] if only else ["embedded", "moto"]
        metafunc.parametrize("store", kinds, indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    data_dir = None
    if request.param == "embedded":
        url, data_dir = request.getfixturevalue("embedded_server")
    else:
        url = request.getfixturevalue("moto_server")
    s3 = make_client(url)
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    yield Store(request.param, url, s3, bucket, data_dir)
