"""Request bodies: checksums, `aws-chunked` decoding, and the hashing temp-file sink.

Bodies are never held whole in memory. The ASGI app hands the chunks uvicorn gives it to a
`BodySink`, which gathers them into ~1 MiB batches and hashes and writes each batch in a worker
thread (hashlib and zlib release the GIL on large buffers), one batch in flight while the event
loop receives the next. On success the temp file is fsynced and its path handed back for an atomic
rename; on any failure it is removed, so a short or bad body leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import zlib
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import errors, sigv4

BATCH = 1024 * 1024


class Checksum(Protocol):
    """The running state of one `x-amz-checksum-*` algorithm."""

    def update(self, data: bytes | memoryview) -> None: ...
    def digest(self) -> bytes: ...


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _reflected_table(poly: int, width: int) -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc & ((1 << width) - 1))
    return table


# No CRC32C / CRC64NVME library ships with our dependencies (google-crc32c and awscrt are not
# installed), so these two are table-driven pure Python: correct, but slow (~10 MB/s). boto3
# sends CRC32 by default, which zlib computes at GB/s.
_CRC32C_TABLE = _reflected_table(0x82F63B78, 32)
_CRC64NVME_TABLE = _reflected_table(0x9A6C9329AC4BC9B5, 64)


class _TableCrc:
    def __init__(self, table: list[int], width: int) -> None:
        self.table = table
        self.width = width
        self.mask = (1 << width) - 1
        self.value = self.mask

    def update(self, data: bytes | memoryview) -> None:
        crc, table = self.value, self.table
        for byte in bytes(data):
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        self.value = crc

    def digest(self) -> bytes:
        return (self.value ^ self.mask).to_bytes(self.width // 8, "big")


def new_checksum(algorithm: str) -> Checksum:
    """A fresh checksum state for `algorithm` (crc32, crc32c, crc64nvme, sha1, sha256)."""
    if algorithm == "crc32":
        return _Crc32()
    if algorithm == "crc32c":
        return _TableCrc(_CRC32C_TABLE, 32)
    if algorithm == "crc64nvme":
        return _TableCrc(_CRC64NVME_TABLE, 64)
    if algorithm in ("sha1", "sha256"):
        return hashlib.new(algorithm)
    raise errors.InvalidRequest(f"Unsupported checksum algorithm {algorithm!r}")


CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


class AwsChunkedDecoder:
    """Incremental decoder of `Content-Encoding: aws-chunked` bodies.

    Format: `hex-size[;chunk-signature=SIG]\\r\\n DATA \\r\\n` ... `0[;chunk-signature=SIG]\\r\\n`
    then optional trailer lines `name:value\\r\\n` and a final `\\r\\n`.
    https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html
    When `auth` carries a seed signature (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), every chunk
    signature is verified.
    """

    def __init__(self, auth: sigv4.AuthResult | None = None) -> None:
        self.auth = auth
        self.previous = auth.seed_signature if auth else ""
        self.buf = bytearray()
        self.state = "size"
        self.remaining = 0
        self.chunk_sig = ""
        self.chunk_hash: hashlib._Hash | None = None
        self.trailers: dict[str, str] = {}
        self.trailer_raw = bytearray()
        self.done = False

    def _check_chunk(self) -> None:
        if self.auth is None:
            return
        assert self.chunk_hash is not None
        expected = sigv4.chunk_signature(
            self.auth.signing_key,
            self.auth.amz_date,
            self.auth.scope,
            self.previous,
            self.chunk_hash.hexdigest(),
        )
        if not _consttime_eq(expected, self.chunk_sig):
            raise errors.SignatureDoesNotMatch(
                "A chunk signature of the aws-chunked body is wrong."
            )
        self.previous = expected

    def feed(self, data: bytes | memoryview) -> list[memoryview]:
        """Decode more bytes; return the payload pieces they contain (views into a copy)."""
        out: list[memoryview] = []
        self.buf += data
        pos = 0
        buf = self.buf
        while True:
            if self.state == "data":
                take = min(self.remaining, len(buf) - pos)
                if take:
                    piece = memoryview(bytes(buf[pos : pos + take]))
                    out.append(piece)
                    if self.chunk_hash is not None:
                        self.chunk_hash.update(piece)
                    pos += take
                    self.remaining -= take
                if self.remaining:
                    break
                self.state = "crlf"
            if self.state == "crlf":
                if len(buf) - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise errors.IncompleteBody("Malformed aws-chunked body (missing CRLF).")
                pos += 2
                self._check_chunk()
                self.state = "size"
            if self.state == "size":
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if len(buf) - pos > 4096:
                        raise errors.IncompleteBody("Malformed aws-chunked body (chunk header).")
                    break
                line = bytes(buf[pos:end]).decode("latin-1")
                pos = end + 2
                size_hex, _, ext = line.partition(";")
                try:
                    size = int(size_hex.strip(), 16)
                except ValueError:
                    raise errors.IncompleteBody(
                        "Malformed aws-chunked body (chunk size)."
                    ) from None
                self.chunk_sig = ext.partition("chunk-signature=")[2].strip()
                if self.auth is not None and not self.chunk_sig:
                    raise errors.SignatureDoesNotMatch(
                        "aws-chunked chunk is missing its signature."
                    )
                self.chunk_hash = hashlib.sha256() if self.auth is not None else None
                if size == 0:
                    if self.auth is not None:
                        self._check_chunk()
                    self.state = "trailer"
                else:
                    self.remaining = size
                    self.state = "data"
                    continue
            if self.state == "trailer":
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if len(buf) - pos > 8192:
                        raise errors.IncompleteBody("Malformed aws-chunked body (trailer).")
                    break
                line = bytes(buf[pos:end]).decode("latin-1")
                pos = end + 2
                if not line:
                    self.state = "end"
                    self.done = True
                    continue
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "x-amz-trailer-signature":
                    if self.auth is not None:
                        expected = sigv4.trailer_signature(
                            self.auth.signing_key,
                            self.auth.amz_date,
                            self.auth.scope,
                            self.previous,
                            bytes(self.trailer_raw),
                        )
                        if not _consttime_eq(expected, value.strip()):
                            raise errors.SignatureDoesNotMatch("The trailer signature is wrong.")
                else:
                    self.trailer_raw += f"{name}:{value.strip()}\n".encode("latin-1")
                    self.trailers[name] = value.strip()
                continue
            if self.state == "end":
                if len(buf) - pos:
                    # Some clients end without the final CRLF; bytes after it are an error.
                    raise errors.IncompleteBody("Unexpected bytes after the aws-chunked body.")
                break
        del buf[:pos]
        return out

    def finish(self) -> None:
        """Raise `IncompleteBody` unless the whole encoded body was seen."""
        if self.state == "trailer" and not self.buf:
            # The final empty line after the trailers is optional in practice.
            self.done = True
        if not self.done:
            raise errors.IncompleteBody("The aws-chunked body ended early.")


def _consttime_eq(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


@dataclass
class BodyResult:
    """A fully received, hashed and fsynced body in a temp file."""

    path: Path
    size: int
    md5: bytes
    sha256_hex: str | None
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64
    trailers: dict[str, str] = field(default_factory=dict)


class BodySink:
    """Hash and write a streamed body to a temp file under `tmp_dir` (see module docstring).

    `want_sha256`: compute the body's SHA-256 (the client signed a hex payload hash).
    `checksum`: algorithm of an `x-amz-checksum-*` value to compute, if any.
    `decoder`: an `AwsChunkedDecoder` when the body is aws-chunked.
    """

    def __init__(
        self,
        tmp_dir: Path,
        executor: Executor,
        *,
        want_sha256: bool,
        checksums: list[str],
        decoder: AwsChunkedDecoder | None,
        max_size: int,
    ) -> None:
        self.path = tmp_dir / f"body-{secrets.token_hex(12)}.tmp"
        self.executor = executor
        self.md5 = hashlib.md5()  # noqa: S324  (S3's ETag is MD5 by definition)
        self.sha256 = hashlib.sha256() if want_sha256 else None
        self.checksums = {alg: new_checksum(alg) for alg in checksums}
        self.decoder = decoder
        self.max_size = max_size
        self.size = 0
        self.pending: asyncio.Future[None] | None = None
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.file = open(self.path, "xb", buffering=0)

    def _process(self, data: bytes) -> None:
        pieces: list[bytes | memoryview]
        pieces = list(self.decoder.feed(data)) if self.decoder is not None else [data]
        for piece in pieces:
            if not len(piece):
                continue
            self.size += len(piece)
            if self.size > self.max_size:
                raise errors.EntityTooLarge()
            self.md5.update(piece)
            if self.sha256 is not None:
                self.sha256.update(piece)
            for c in self.checksums.values():
                c.update(piece)
            self.file.write(piece)

    async def _flush(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            await pending
        if self.buffered:
            data = self.buffer[0] if len(self.buffer) == 1 else b"".join(self.buffer)
            self.buffer, self.buffered = [], 0
            loop = asyncio.get_running_loop()
            self.pending = loop.run_in_executor(self.executor, self._process, data)

    async def feed(self, data: bytes) -> None:
        """Take the next piece of the body."""
        if not data:
            return
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered >= BATCH:
            await self._flush()

    async def finish(self) -> BodyResult:
        """All bytes received: drain, fsync, close; return sizes and digests."""
        await self._flush()
        await self._flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._close, True)
        trailers: dict[str, str] = {}
        if self.decoder is not None:
            self.decoder.finish()
            trailers = self.decoder.trailers
        return BodyResult(
            path=self.path,
            size=self.size,
            md5=self.md5.digest(),
            sha256_hex=self.sha256.hexdigest() if self.sha256 is not None else None,
            checksums={a: base64.b64encode(c.digest()).decode() for a, c in self.checksums.items()},
            trailers=trailers,
        )

    def _close(self, sync: bool) -> None:
        if not self.file.closed:
            if sync:
                os.fsync(self.file.fileno())
            self.file.close()

    async def discard(self) -> None:
        """Throw the body away: wait for the worker, close and remove the temp file."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            try:
                await asyncio.shield(pending)
            except BaseException:  # noqa: S110  (the body is being discarded anyway)
                pass
        self.discard_sync()

    def discard_sync(self) -> None:
        """Close and remove the temp file (safe to call twice)."""
        self._close(False)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
