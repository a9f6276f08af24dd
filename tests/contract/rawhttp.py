"""Requests boto3 would not send (raw paths, broken bodies), signed by botocore's own signer."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from .conftest import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY


def sign(
    method: str,
    url: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    unsigned_payload: bool = False,
    trailer: str | None = None,
    access_key_id: str = ACCESS_KEY_ID,
    secret_access_key: str = SECRET_ACCESS_KEY,
) -> dict[str, str]:
    """Headers (including Authorization) that botocore's S3 SigV4 signer produces.

    `url` is used verbatim as the canonical path (S3 signs the path as sent, no normalising).
    `unsigned_payload`: x-amz-content-sha256 is UNSIGNED-PAYLOAD. `trailer`: sign as
    STREAMING-UNSIGNED-PAYLOAD-TRAILER carrying that checksum header.
    """
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    if unsigned_payload:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    if trailer:
        request.context["checksum"] = {"request_algorithm": {"in": "trailer", "name": trailer}}
    creds = Credentials(access_key_id, secret_access_key)
    S3SigV4Auth(creds, "s3", REGION).add_auth(request)
    return dict(request.headers.items())


def request(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """Send exactly this path (no client-side normalisation); return (status, body, headers)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def send_short_body(url: str, headers: dict[str, str], declared: int, sent: bytes) -> None:
    """Send a request declaring `declared` body bytes, send only `sent`, then hang up."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"PUT {path} HTTP/1.1\r\n"
    hdrs = {**headers, "Content-Length": str(declared), "Host": parts.netloc}
    head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode() + sent)
        sock.shutdown(socket.SHUT_WR)
        # Wait for the server to notice (it answers or closes), so the test sees its final state.
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
