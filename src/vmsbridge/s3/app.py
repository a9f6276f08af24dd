"""The embedded S3-compatible store as a plain ASGI application.

No framework on the data path: the app parses the path-style URL (`/bucket/key`), verifies SigV4
(`sigv4.py`), dispatches on method and sub-resource, and streams bodies through `streams.BodySink`
to temp files that `objects.ObjectStore` renames into place. All file work runs on a small thread
pool so the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, unquote_to_bytes

from . import errors, sigv4, streams
from .multipart import MAX_PARTS, MultipartStore, normalise_etag
from .objects import ObjectStore, read_json, validate_key
from .xml import document, element, error_document, http_date, iso8601, parse_complete, parse_delete

log = logging.getLogger("vmsbridge.s3")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

#: S3's largest single PUT and largest part.
MAX_OBJECT_SIZE = 5 * 1024**3
#: Largest XML request body we read (a Complete listing 10,000 parts with checksums fits).
MAX_XML_BODY = 16 * 1024 * 1024
READ_CHUNK = 1024 * 1024
#: Standard headers stored with an object and returned by GET/HEAD.
STORED_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
)
RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


class Request:
    """The parts of an ASGI HTTP request the store looks at."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.receive = receive
        self.method: str = scope["method"]
        raw_path = scope.get("raw_path")
        if raw_path is None:
            raw_path = quote(scope["path"]).encode()
        self.raw_path = raw_path.decode("latin-1")
        self.raw_query = scope.get("query_string", b"").decode("latin-1")
        self.query: dict[str, str] = {}
        for item in self.raw_query.split("&"):
            if item:
                name, _, value = item.partition("=")
                self.query.setdefault(unquote(name), unquote(value))
        self.headers: dict[str, list[str]] = {}
        for name, value in scope["headers"]:
            self.headers.setdefault(name.decode("latin-1").lower(), []).append(
                value.decode("latin-1")
            )
        path = self.raw_path.lstrip("/") if self.raw_path.startswith("/") else self.raw_path
        bucket, _, key = path.partition("/")
        self.bucket = unquote(bucket)
        self.has_key = bool(key)
        try:
            self.key = unquote_to_bytes(key).decode("utf-8") if key else ""
        except UnicodeDecodeError:
            self.key = unquote_to_bytes(key).decode("utf-8", "surrogateescape")
        self.auth: sigv4.AuthResult | None = None
        #: False while body bytes may still be unread (see S3App.__call__).
        self.body_done = self.header("content-length", "0") == "0" and not self.header(
            "transfer-encoding"
        )

    def header(self, name: str, default: str = "") -> str:
        """First value of a header (name lower-case)."""
        values = self.headers.get(name)
        return values[0] if values else default

    @property
    def resource(self) -> str:
        """`/bucket/key`, for error documents."""
        return f"/{self.bucket}/{self.key}" if self.key else f"/{self.bucket}"


class Response:
    """Sends one response; knows whether it started, and drops bodies for HEAD."""

    def __init__(self, send: Send, method: str, request_id: str) -> None:
        self._send = send
        self.head = method == "HEAD"
        self.request_id = request_id
        self.started = False

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Send the status line and headers."""
        self.started = True
        raw = [(b"x-amz-request-id", self.request_id.encode())]
        raw += [(n.encode("latin-1"), v.encode("latin-1", "replace")) for n, v in headers]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def body(self, data: bytes, more: bool = False) -> None:
        """Send body bytes (nothing for HEAD)."""
        if self.head:
            if not more:
                await self._send({"type": "http.response.body", "body": b""})
            return
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def simple(
        self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> None:
        """A whole response at once (XML when there is a body)."""
        hdrs = list(headers or [])
        if body:
            hdrs.append(("content-type", "application/xml"))
        hdrs.append(("content-length", str(len(body))))
        await self.start(status, hdrs)
        await self.body(body)

    async def xml(self, root: str, inner: str, status: int = 200) -> None:
        """An XML document response."""
        await self.simple(status, document(root, inner))

    async def error(self, err: errors.S3Error, close: bool = False) -> None:
        """An S3 XML error (headers only for HEAD); `close` ends the connection after it."""
        if self.started:
            return
        body = error_document(err, self.request_id)
        hdrs = [("content-type", "application/xml"), ("content-length", str(len(body)))]
        if close:
            hdrs.append(("connection", "close"))
        if err.status == 405:
            hdrs.append(("allow", "GET, PUT, HEAD, DELETE, POST"))
        await self.start(err.status, hdrs)
        await self.body(body)


def _etag(value: str) -> str:
    return f'"{value}"'


def _url(value: str, encode: bool) -> str:
    return quote(value, safe="/") if encode else value


class S3App:
    """ASGI application; see `vmsbridge.s3.create_s3_app`."""

    def __init__(
        self,
        data_dir: Path,
        credentials: dict[str, str],
        *,
        region: str = "us-east-1",
        min_part_size: int = 5 * 1024 * 1024,
    ) -> None:
        self.objects = ObjectStore(Path(data_dir))
        self.uploads = MultipartStore(self.objects, min_part_size)
        self.credentials = dict(credentials)
        self.region = region
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="vmsbridge-s3")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, partial(fn, *args))

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        response = Response(send, scope["method"], secrets.token_hex(8).upper())
        request: Request | None = None
        try:
            request = Request(scope, receive)
            await self._handle(request, response)
        except errors.S3Error as err:
            if not err.resource and request is not None:
                err.resource = request.resource
            if err.status >= 500:
                log.error("%s %s: %s", scope["method"], scope.get("path"), err.message)
            close = request is not None and not await self._drain(request)
            await response.error(err, close=close)
        except ClientGone:
            pass
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope.get("path"))
            await response.error(errors.S3Error())

    async def _drain(self, req: Request) -> bool:
        """Read and drop a small unread request body so the connection stays usable.

        Returns False when the body is too large to be worth reading (or the client left): the
        error response then closes the connection, as S3 does, so stray body bytes are never
        parsed as the next request.
        """
        if req.body_done:
            return True
        try:
            declared = int(req.header("content-length", "-1"))
        except ValueError:
            return False
        if not 0 <= declared <= 256 * 1024:
            return False
        while True:
            message = await req.receive()
            if message["type"] == "http.disconnect":
                return False
            if not message.get("more_body", False):
                req.body_done = True
                return True

    async def _handle(self, req: Request, resp: Response) -> None:
        req.auth = sigv4.verify(
            method=req.method,
            raw_path=req.raw_path,
            raw_query=req.raw_query,
            query=req.query,
            headers=req.headers,
            credentials=self.credentials,
        )
        q, m = req.query, req.method
        if not req.bucket:
            if m in ("GET", "HEAD"):
                return await self.list_buckets(req, resp)
            raise errors.MethodNotAllowed(resource="/")
        if not req.has_key:
            if m == "PUT":
                return await self.create_bucket(req, resp)
            if m == "HEAD":
                return await self.head_bucket(req, resp)
            if m == "DELETE":
                return await self.delete_bucket(req, resp)
            if m == "GET":
                if "location" in q:
                    return await self.get_bucket_location(req, resp)
                if "uploads" in q:
                    return await self.list_multipart_uploads(req, resp)
                if "versioning" in q:
                    await self._run(self.objects.require_bucket, req.bucket)
                    return await resp.xml("VersioningConfiguration", "")
                return await self.list_objects(req, resp)
            if m == "POST" and "delete" in q:
                return await self.delete_objects(req, resp)
            raise errors.MethodNotAllowed(resource=req.resource)
        validate_key(req.key)
        if m == "PUT":
            if "x-amz-copy-source" in req.headers:
                if "uploadId" in q or "partNumber" in q:
                    raise errors.NotImplementedError_("UploadPartCopy is not implemented.")
                return await self.copy_object(req, resp)
            if "uploadId" in q or "partNumber" in q:
                return await self.upload_part(req, resp)
            return await self.put_object(req, resp)
        if m in ("GET", "HEAD"):
            if "uploadId" in q and m == "GET":
                return await self.list_parts(req, resp)
            return await self.get_object(req, resp)
        if m == "DELETE":
            if "uploadId" in q:
                return await self.abort_upload(req, resp)
            return await self.delete_object(req, resp)
        if m == "POST":
            if "uploads" in q:
                return await self.create_upload(req, resp)
            if "uploadId" in q:
                return await self.complete_upload(req, resp)
        raise errors.MethodNotAllowed(resource=req.resource)

    # --- bodies --------------------------------------------------------------------------

    def _checksum_algorithms(self, req: Request) -> list[str]:
        algs = []
        for alg in streams.CHECKSUM_ALGORITHMS:
            if f"x-amz-checksum-{alg}" in req.headers:
                algs.append(alg)
        for name in req.header("x-amz-trailer").split(","):
            name = name.strip().lower()
            if name.startswith("x-amz-checksum-"):
                alg = name[len("x-amz-checksum-") :]
                if alg not in streams.CHECKSUM_ALGORITHMS:
                    raise errors.InvalidRequest(f"Unsupported checksum trailer {name!r}")
                if alg not in algs:
                    algs.append(alg)
        return algs

    def _content_md5(self, req: Request) -> bytes | None:
        value = req.header("content-md5")
        if not value:
            return None
        try:
            digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise errors.InvalidDigest(resource=req.resource) from None
        if len(digest) != 16:
            raise errors.InvalidDigest(resource=req.resource)
        return digest

    async def receive_body(
        self, req: Request, max_size: int = MAX_OBJECT_SIZE
    ) -> streams.BodyResult:
        """Stream the request body to a verified, fsynced temp file (see streams.py).

        Raises BadDigest / XAmzContentSHA256Mismatch / IncompleteBody / EntityTooLarge, or
        ClientGone on disconnect; in every failure the temp file is gone.
        """
        assert req.auth is not None
        payload = req.auth.payload_hash
        content_md5 = self._content_md5(req)
        if "content-length" not in req.headers and "chunked" not in req.header("transfer-encoding"):
            raise errors.MissingContentLength(resource=req.resource)
        try:
            if int(req.header("content-length", "0")) > max_size + 1024 * 1024:
                raise errors.EntityTooLarge(resource=req.resource)
        except ValueError:
            raise errors.InvalidArgument("Bad Content-Length") from None
        chunked = payload.startswith("STREAMING-") or "aws-chunked" in req.header(
            "content-encoding"
        )
        decoder = None
        if chunked:
            signed = payload in (sigv4.STREAMING_SIGNED, sigv4.STREAMING_SIGNED_TRAILER)
            decoder = streams.AwsChunkedDecoder(req.auth if signed else None)
        algs = self._checksum_algorithms(req)
        sink = streams.BodySink(
            self.objects.tmp,
            self.executor,
            want_sha256=len(payload) == 64,
            checksums=algs,
            decoder=decoder,
            max_size=max_size,
        )
        try:
            while True:
                message = await req.receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                await sink.feed(message.get("body", b""))
                if not message.get("more_body", False):
                    req.body_done = True
                    break
            result = await sink.finish()
            decoded_length = req.header("x-amz-decoded-content-length")
            if decoder is not None and decoded_length and int(decoded_length) != result.size:
                raise errors.IncompleteBody(resource=req.resource)
            if result.sha256_hex is not None and result.sha256_hex != payload:
                raise errors.XAmzContentSHA256Mismatch(
                    resource=req.resource,
                    ClientComputedContentSHA256=payload,
                    S3ComputedContentSHA256=result.sha256_hex,
                )
            if content_md5 is not None and content_md5 != result.md5:
                raise errors.BadDigest(
                    resource=req.resource,
                    ExpectedDigest=base64.b64encode(content_md5).decode(),
                    CalculatedDigest=base64.b64encode(result.md5).decode(),
                )
            for alg, computed in result.checksums.items():
                name = f"x-amz-checksum-{alg}"
                expected = result.trailers.get(name) or req.header(name)
                if not expected:
                    raise errors.InvalidRequest(f"The {name} trailer was declared but not sent.")
                if expected != computed:
                    raise errors.BadDigest(
                        f"The {alg.upper()} you specified did not match the calculated checksum.",
                        resource=req.resource,
                    )
        except BaseException:
            await sink.discard()
            raise
        return result

    async def read_small_body(self, req: Request) -> bytes:
        """Read a small (XML) body whole, verified like any other body."""
        result = await self.receive_body(req, MAX_XML_BODY)
        try:
            return await self._run(result.path.read_bytes)
        finally:
            result.path.unlink(missing_ok=True)

    # --- service and buckets -------------------------------------------------------------

    async def list_buckets(self, req: Request, resp: Response) -> None:
        buckets = await self._run(self.objects.list_buckets)
        inner = "<Owner><ID>vmsbridge</ID><DisplayName>vmsbridge</DisplayName></Owner><Buckets>"
        for name, created in buckets:
            inner += (
                f"<Bucket>{element('Name', name)}{element('CreationDate', iso8601(created))}"
                f"{element('BucketRegion', self.region)}</Bucket>"
            )
        inner += "</Buckets>"
        await resp.xml("ListAllMyBucketsResult", inner)

    async def create_bucket(self, req: Request, resp: Response) -> None:
        self.objects.bucket_dir(req.bucket)  # validate the name before reading a body
        await self.read_small_body(req)
        await self._run(self.objects.create_bucket, req.bucket)
        await resp.simple(200, headers=[("location", f"/{req.bucket}")])

    async def head_bucket(self, req: Request, resp: Response) -> None:
        await self._run(self.objects.require_bucket, req.bucket)
        await resp.simple(200, headers=[("x-amz-bucket-region", self.region)])

    async def delete_bucket(self, req: Request, resp: Response) -> None:
        await self._run(self.objects.delete_bucket, req.bucket)
        await resp.simple(204)

    async def get_bucket_location(self, req: Request, resp: Response) -> None:
        await self._run(self.objects.require_bucket, req.bucket)
        region = "" if self.region == "us-east-1" else self.region
        await resp.simple(
            200,
            f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{region}'
            f"</LocationConstraint>".encode(),
        )

    # --- listing -------------------------------------------------------------------------

    def _list_sync(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        after: str | None,
        after_is_prefix: bool,
        max_keys: int,
    ) -> tuple[list[dict[str, Any]], list[str], bool, tuple[str, bool] | None]:
        """(contents metadata, common prefixes, truncated, last item as (value, is_prefix))."""
        if max_keys == 0:
            # As S3 (and moto): an empty, untruncated page; a truncated page without a
            # continuation token would leave paginators nowhere to go.
            self.objects.require_bucket(bucket)
            return [], [], False, None
        after_b = after.encode() if after is not None else None
        skip: list[bytes] = [after_b] if after_is_prefix and after_b is not None else []
        entries = self.objects.iter_keys(bucket, prefix, after_b, skip)
        contents: list[dict[str, Any]] = []
        prefixes: list[str] = []
        last: tuple[str, bool] | None = None
        truncated = False
        seen_prefix = None
        count = 0
        for key_b, key, path in entries:
            if after_b is not None:
                if key_b <= after_b:
                    continue
                if after_is_prefix and key_b.startswith(after_b):
                    continue
            if delimiter:
                rest = key[len(prefix) :]
                idx = rest.find(delimiter)
                if idx >= 0:
                    cp = prefix + rest[: idx + len(delimiter)]
                    if cp == seen_prefix:
                        continue
                    if count >= max_keys:
                        truncated = True
                        break
                    seen_prefix = cp
                    skip[:] = [cp.encode()]
                    prefixes.append(cp)
                    last = (cp, True)
                    count += 1
                    continue
            if count >= max_keys:
                truncated = True
                break
            meta = read_json(path)
            if meta is None:
                continue  # deleted while listing
            contents.append(meta)
            last = (key, False)
            count += 1
        return contents, prefixes, truncated, last

    def _max_keys(self, req: Request, name: str = "max-keys") -> int:
        try:
            value = int(req.query.get(name, "1000"))
        except ValueError:
            raise errors.InvalidArgument(
                f"Provided {name} not an integer or within integer range"
            ) from None
        if value < 0:
            raise errors.InvalidArgument(f"{name} must be non-negative")
        return min(value, 1000)

    async def list_objects(self, req: Request, resp: Response) -> None:
        q = req.query
        v2 = q.get("list-type") == "2"
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        encode = q.get("encoding-type") == "url"
        max_keys = self._max_keys(req)
        after: str | None = None
        after_is_prefix = False
        if v2:
            token = q.get("continuation-token")
            if token is not None:
                try:
                    raw = base64.urlsafe_b64decode(token.encode()).decode()
                    kind, after = raw[0], raw[1:]
                except (binascii.Error, ValueError, IndexError):
                    raise errors.InvalidArgument(
                        "The continuation token provided is incorrect"
                    ) from None
                after_is_prefix = kind == "P"
            elif "start-after" in q:
                after = q["start-after"]
        elif "marker" in q:
            after = q["marker"]
            after_is_prefix = bool(delimiter) and after.endswith(delimiter)
        contents, prefixes, truncated, last = await self._run(
            self._list_sync, req.bucket, prefix, delimiter, after, after_is_prefix, max_keys
        )
        inner = element("Name", req.bucket) + element("Prefix", _url(prefix, encode))
        if v2:
            inner += element("KeyCount", len(contents) + len(prefixes))
            if "continuation-token" in q:
                inner += element("ContinuationToken", q["continuation-token"])
            if "start-after" in q:
                inner += element("StartAfter", _url(q["start-after"], encode))
            if truncated and last is not None:
                token = ("P" if last[1] else "K") + last[0]
                inner += element(
                    "NextContinuationToken", base64.urlsafe_b64encode(token.encode()).decode()
                )
        else:
            inner += element("Marker", _url(q.get("marker", ""), encode))
            if truncated and last is not None:
                inner += element("NextMarker", _url(last[0], encode))
        inner += element("MaxKeys", max_keys)
        if delimiter:
            inner += element("Delimiter", _url(delimiter, encode))
        if encode:
            inner += element("EncodingType", "url")
        inner += element("IsTruncated", "true" if truncated else "false")
        for meta in contents:
            inner += (
                "<Contents>"
                + element("Key", _url(meta["key"], encode))
                + element("LastModified", iso8601(meta["last_modified"]))
                + element("ETag", _etag(meta["etag"]))
                + element("Size", meta["size"])
                + element("StorageClass", "STANDARD")
                + "</Contents>"
            )
        for cp in prefixes:
            inner += f"<CommonPrefixes>{element('Prefix', _url(cp, encode))}</CommonPrefixes>"
        await resp.xml("ListBucketResult", inner)

    # --- objects -------------------------------------------------------------------------

    def _object_meta(self, req: Request, result: streams.BodyResult | None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            h: req.header(h) for h in STORED_HEADERS if req.header(h) and h != "content-encoding"
        }
        encoding = ",".join(
            e.strip()
            for e in req.header("content-encoding").split(",")
            if e.strip() and e.strip() != "aws-chunked"
        )
        if encoding:
            meta["content-encoding"] = encoding
        meta.setdefault("content-type", "binary/octet-stream")
        meta["user"] = {
            n: ",".join(v) for n, v in req.headers.items() if n.startswith("x-amz-meta-")
        }
        if result is not None:
            meta["checksums"] = result.checksums
        return meta

    async def put_object(self, req: Request, resp: Response) -> None:
        await self._run(self.objects.require_bucket, req.bucket)
        result = await self.receive_body(req)
        etag = result.md5.hex()
        meta = {
            **self._object_meta(req, result),
            "etag": etag,
            "size": result.size,
            "last_modified": time.time(),
        }
        try:
            await self._run(self.objects.commit, req.bucket, req.key, result.path, meta)
        finally:
            result.path.unlink(missing_ok=True)
        headers = [("etag", _etag(etag))]
        headers += [(f"x-amz-checksum-{a}", v) for a, v in result.checksums.items()]
        await resp.simple(200, headers=headers)

    def _conditional(self, req: Request, meta: dict[str, Any]) -> int | None:
        """304/412 per the conditional request headers, or None to serve the object."""
        etag = meta["etag"]
        if_match = req.header("if-match")
        if if_match and if_match.strip() != "*":
            if etag not in {normalise_etag(t) for t in if_match.split(",")}:
                return 412
        if_none = req.header("if-none-match")
        if if_none:
            if if_none.strip() == "*" or etag in {normalise_etag(t) for t in if_none.split(",")}:
                return 304
        mtime = int(meta["last_modified"])
        for name, status in (("if-unmodified-since", 412), ("if-modified-since", 304)):
            value = req.header(name)
            if not value or (name == "if-modified-since" and if_none):
                continue
            try:
                when = parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                continue
            if status == 412 and not if_match and mtime > when:
                return 412
            if status == 304 and mtime <= when:
                return 304
        return None

    @staticmethod
    def _range(spec: str, size: int) -> tuple[int, int] | None:
        """(first, last) byte of a `Range: bytes=...` header; None to send everything.

        Raises InvalidRange when the range cannot be satisfied. Syntax S3 ignores (several
        ranges, garbage) means the whole object, as on S3.
        """
        spec = spec.strip()
        if not spec.startswith("bytes=") or "," in spec:
            return None
        first_s, sep, last_s = spec[6:].strip().partition("-")
        if not sep:
            return None
        try:
            if first_s == "":
                n = int(last_s)
                if n <= 0 or size == 0:
                    raise errors.InvalidRange(ActualObjectSize=str(size), RangeRequested=spec)
                return max(0, size - n), size - 1
            first = int(first_s)
            last = int(last_s) if last_s else size - 1
        except ValueError:
            return None
        if first >= size:
            raise errors.InvalidRange(ActualObjectSize=str(size), RangeRequested=spec)
        if last < first:
            return None
        return first, min(last, size - 1)

    async def get_object(self, req: Request, resp: Response) -> None:
        if "partNumber" in req.query:
            raise errors.NotImplementedError_("GetObject with partNumber is not implemented.")
        meta, f = await self._run(self.objects.open, req.bucket, req.key)
        try:
            size = int(meta["size"])
            headers = [
                ("etag", _etag(meta["etag"])),
                ("last-modified", http_date(meta["last_modified"])),
                ("accept-ranges", "bytes"),
            ]
            for name in STORED_HEADERS:
                if name in meta:
                    headers.append((name, meta[name]))
            for name, value in meta.get("user", {}).items():
                headers.append((name, value))
            if "parts_count" in meta:
                headers.append(("x-amz-mp-parts-count", str(meta["parts_count"])))
            status = self._conditional(req, meta)
            if status == 412:
                raise errors.PreconditionFailed(resource=req.resource, Condition="If-Match")
            if status == 304:
                await resp.start(304, [h for h in headers if h[0] in ("etag", "last-modified")])
                await resp.body(b"")
                return
            if req.query:
                overrides = {
                    RESPONSE_OVERRIDES[k]: v
                    for k, v in req.query.items()
                    if k in RESPONSE_OVERRIDES
                }
                if overrides:
                    headers = [h for h in headers if h[0] not in overrides]
                    headers += list(overrides.items())
            rng = self._range(req.header("range"), size) if "range" in req.headers else None
            if rng is None:
                first, last, status = 0, size - 1, 200
                if req.header("x-amz-checksum-mode").upper() == "ENABLED":
                    for alg, value in meta.get("checksums", {}).items():
                        headers.append((f"x-amz-checksum-{alg}", value))
            else:
                first, last = rng
                status = 206
                headers.append(("content-range", f"bytes {first}-{last}/{size}"))
            length = last - first + 1 if size else 0
            headers.append(("content-length", str(length)))
            await resp.start(status, headers)
            if resp.head or length == 0:
                await resp.body(b"")
                return
            await self._stream_file(req, resp, f, first, length)
        finally:
            await self._run(f.close)

    async def _stream_file(
        self, req: Request, resp: Response, f: Any, first: int, length: int
    ) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await req.receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await self._run(f.seek, first)
            remaining = length
            while remaining and not gone.is_set():
                data = await self._run(f.read, min(READ_CHUNK, remaining))
                if not data:
                    raise errors.S3Error("The object is shorter than its metadata says.")
                remaining -= len(data)
                await resp.body(data, more=remaining > 0)
            if remaining:
                return
        finally:
            watcher.cancel()

    async def copy_object(self, req: Request, resp: Response) -> None:
        source = unquote(req.header("x-amz-copy-source")).partition("?")[0].lstrip("/")
        src_bucket, _, src_key = source.partition("/")
        if not src_bucket or not src_key:
            raise errors.InvalidArgument(
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
            )
        validate_key(src_key)
        directive = req.header("x-amz-metadata-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise errors.InvalidArgument("Unknown metadata directive.")
        if (src_bucket, src_key) == (req.bucket, req.key) and directive == "COPY":
            raise errors.InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself"
                " without changing the object's metadata, storage class, website redirect"
                " location or encryption attributes."
            )
        await self.read_small_body(req)
        replace = self._object_meta(req, None) if directive == "REPLACE" else None
        meta = await self._run(self._copy_sync, src_bucket, src_key, req.bucket, req.key, replace)
        inner = element("LastModified", iso8601(meta["last_modified"])) + element(
            "ETag", _etag(meta["etag"])
        )
        await resp.xml("CopyObjectResult", inner)

    def _copy_sync(
        self,
        src_bucket: str,
        src_key: str,
        bucket: str,
        key: str,
        replace: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Copy an object on disk (bounded buffer, MD5 on the way); return the new metadata."""
        self.objects.require_bucket(bucket)
        src_meta, src = self.objects.open(src_bucket, src_key)
        tmp = self.objects.tmp / f"copy-{secrets.token_hex(12)}.tmp"
        md5 = hashlib.md5()  # noqa: S324  (S3's ETag)
        size = 0
        try:
            with src, open(tmp, "xb") as out:
                while chunk := src.read(READ_CHUNK):
                    md5.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            kept = {
                k: v
                for k, v in src_meta.items()
                if k not in ("key", "data", "data_parts", "parts_count")
            }
            if replace is not None:
                kept = {k: v for k, v in kept.items() if k not in STORED_HEADERS and k != "user"}
                kept.update(replace)
            meta = {**kept, "etag": md5.hexdigest(), "size": size, "last_modified": time.time()}
            self.objects.commit(bucket, key, tmp, meta)
        finally:
            tmp.unlink(missing_ok=True)
        return meta

    async def delete_object(self, req: Request, resp: Response) -> None:
        await self._run(self.objects.delete, req.bucket, req.key)
        await resp.simple(204)

    async def delete_objects(self, req: Request, resp: Response) -> None:
        await self._run(self.objects.require_bucket, req.bucket)
        keys, quiet = parse_delete(await self.read_small_body(req))
        inner = ""
        for key in keys:
            try:
                validate_key(key)
                await self._run(self.objects.delete, req.bucket, key)
            except errors.S3Error as err:
                inner += (
                    f"<Error>{element('Key', key)}{element('Code', err.code)}"
                    f"{element('Message', err.message)}</Error>"
                )
                continue
            if not quiet:
                inner += f"<Deleted>{element('Key', key)}</Deleted>"
        await resp.xml("DeleteResult", inner)

    # --- multipart -----------------------------------------------------------------------

    def _part_number(self, req: Request) -> int:
        try:
            number = int(req.query.get("partNumber", ""))
        except ValueError:
            number = 0
        if not 1 <= number <= MAX_PARTS:
            raise errors.InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive",
                resource=req.resource,
                ArgumentName="partNumber",
                ArgumentValue=req.query.get("partNumber", ""),
            )
        return number

    async def create_upload(self, req: Request, resp: Response) -> None:
        await self.read_small_body(req)
        meta = self._object_meta(req, None)
        upload_id = await self._run(self.uploads.create, req.bucket, req.key, meta)
        inner = (
            element("Bucket", req.bucket) + element("Key", req.key) + element("UploadId", upload_id)
        )
        await resp.xml("InitiateMultipartUploadResult", inner)

    async def upload_part(self, req: Request, resp: Response) -> None:
        number = self._part_number(req)
        upload_id = req.query.get("uploadId", "")
        await self._run(self.uploads.check, req.bucket, req.key, upload_id)
        result = await self.receive_body(req)
        try:
            await self._run(
                self.uploads.put_part,
                req.bucket,
                req.key,
                upload_id,
                number,
                result.path,
                result.md5,
                result.size,
            )
        finally:
            result.path.unlink(missing_ok=True)
        headers = [("etag", _etag(result.md5.hex()))]
        headers += [(f"x-amz-checksum-{a}", v) for a, v in result.checksums.items()]
        await resp.simple(200, headers=headers)

    async def complete_upload(self, req: Request, resp: Response) -> None:
        upload_id = req.query["uploadId"]
        body = await self.read_small_body(req)
        if not body.strip():
            raise errors.MalformedXML(resource=req.resource)
        listed = parse_complete(body)
        result = await self._run(self.uploads.complete, req.bucket, req.key, upload_id, listed)
        inner = (
            element("Location", f"/{req.bucket}/{quote(req.key)}")
            + element("Bucket", req.bucket)
            + element("Key", req.key)
            + element("ETag", _etag(result["etag"]))
        )
        await resp.xml("CompleteMultipartUploadResult", inner)

    async def abort_upload(self, req: Request, resp: Response) -> None:
        await self._run(self.uploads.abort, req.bucket, req.key, req.query["uploadId"])
        await resp.simple(204)

    async def list_parts(self, req: Request, resp: Response) -> None:
        upload_id = req.query["uploadId"]
        _info, parts = await self._run(self.uploads.list_parts, req.bucket, req.key, upload_id)
        max_parts = self._max_keys(req, "max-parts")
        try:
            marker = int(req.query.get("part-number-marker", "0") or 0)
        except ValueError:
            raise errors.InvalidArgument("part-number-marker must be an integer") from None
        parts = [p for p in parts if p["number"] > marker]
        truncated = len(parts) > max_parts
        parts = parts[:max_parts]
        inner = (
            element("Bucket", req.bucket)
            + element("Key", req.key)
            + element("UploadId", upload_id)
            + element("PartNumberMarker", marker)
        )
        if parts:
            inner += element("NextPartNumberMarker", parts[-1]["number"])
        inner += element("MaxParts", max_parts) + element("IsTruncated", str(truncated).lower())
        inner += "<Initiator><ID>vmsbridge</ID><DisplayName>vmsbridge</DisplayName></Initiator>"
        inner += "<Owner><ID>vmsbridge</ID><DisplayName>vmsbridge</DisplayName></Owner>"
        inner += element("StorageClass", "STANDARD")
        for p in parts:
            inner += (
                "<Part>"
                + element("PartNumber", p["number"])
                + element("LastModified", iso8601(p["last_modified"]))
                + element("ETag", _etag(p["md5"]))
                + element("Size", p["size"])
                + "</Part>"
            )
        await resp.xml("ListPartsResult", inner)

    async def list_multipart_uploads(self, req: Request, resp: Response) -> None:
        q = req.query
        prefix = q.get("prefix", "")
        encode = q.get("encoding-type") == "url"
        max_uploads = self._max_keys(req, "max-uploads")
        key_marker = q.get("key-marker", "")
        id_marker = q.get("upload-id-marker", "")
        uploads = await self._run(self.uploads.list_uploads, req.bucket)
        selected = []
        for key, upload_id, initiated in uploads:
            if not key.startswith(prefix):
                continue
            if key_marker:
                kb, mb = key.encode(), key_marker.encode()
                if kb < mb or (kb == mb and (not id_marker or upload_id <= id_marker)):
                    continue
            selected.append((key, upload_id, initiated))
        truncated = len(selected) > max_uploads
        selected = selected[:max_uploads]
        inner = (
            element("Bucket", req.bucket)
            + element("KeyMarker", _url(key_marker, encode))
            + element("UploadIdMarker", id_marker)
            + element("Prefix", _url(prefix, encode))
            + element("MaxUploads", max_uploads)
            + element("IsTruncated", str(truncated).lower())
        )
        if truncated:
            inner += element("NextKeyMarker", _url(selected[-1][0], encode))
            inner += element("NextUploadIdMarker", selected[-1][1])
        if encode:
            inner += element("EncodingType", "url")
        for key, upload_id, initiated in selected:
            inner += (
                "<Upload>"
                + element("Key", _url(key, encode))
                + element("UploadId", upload_id)
                + "<Initiator><ID>vmsbridge</ID><DisplayName>vmsbridge</DisplayName></Initiator>"
                + "<Owner><ID>vmsbridge</ID><DisplayName>vmsbridge</DisplayName></Owner>"
                + element("StorageClass", "STANDARD")
                + element("Initiated", iso8601(initiated))
                + "</Upload>"
            )
        await resp.xml("ListMultipartUploadsResult", inner)
