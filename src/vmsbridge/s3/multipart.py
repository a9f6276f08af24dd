"""Multipart uploads on disk: parts, completion by on-disk concatenation, idempotent Complete.

Layout: `.uploads/<upload-id>/upload.json` (bucket, key, content type, user metadata),
`p<NNNNN>.json` per part (number, md5, size; names its byte file `p<NNNNN>.<tok>.part`), and
after completion `completed.json` (the parts list and the resulting ETag), kept for
`COMPLETED_TTL` seconds so that a repeated Complete answers the same ETag.

Rules follow S3 (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html):
part numbers 1..10,000; every part but the last at least `min_part_size`; listed parts must exist
with the listed ETag and be in ascending order.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from . import errors
from .objects import ObjectStore, fsync_dir, read_json, write_json_atomic

MAX_PARTS = 10_000
COMPLETED_TTL = 24 * 3600
_UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{48}$")


def _part_name(number: int) -> str:
    return f"p{number:05d}.json"


def multipart_etag(md5s: list[bytes]) -> str:
    """S3's multipart ETag (unquoted): MD5 of the concatenated binary part MD5s, then -N."""
    return f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"  # noqa: S324


def normalise_etag(etag: str) -> str:
    """An ETag without quotes or surrounding space, lower-cased."""
    return etag.strip().strip('"').lower()


class MultipartStore:
    """Multipart uploads for an `ObjectStore`. Every method is blocking: call from a thread."""

    def __init__(self, objects: ObjectStore, min_part_size: int) -> None:
        self.objects = objects
        self.root = objects.root / ".uploads"
        self.root.mkdir(exist_ok=True)
        self.min_part_size = min_part_size
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._last_sweep = 0.0

    def _lock(self, upload_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(upload_id, threading.Lock())

    def _dir(self, bucket: str, key: str, upload_id: str) -> tuple[Path, dict[str, Any]]:
        """The upload's directory and record; NoSuchUpload unless it is live for bucket/key."""
        if not _UPLOAD_ID_RE.match(upload_id):
            raise errors.NoSuchUpload(resource=f"/{bucket}/{key}", UploadId=upload_id)
        d = self.root / upload_id
        info = read_json(d / "upload.json")
        if info is None or info["bucket"] != bucket or info["key"] != key:
            raise errors.NoSuchUpload(resource=f"/{bucket}/{key}", UploadId=upload_id)
        return d, info

    def create(self, bucket: str, key: str, meta: dict[str, Any]) -> str:
        """Start an upload; return its id. Raises NoSuchBucket."""
        self.objects.require_bucket(bucket)
        self._sweep()
        upload_id = secrets.token_hex(24)
        d = self.root / upload_id
        d.mkdir()
        info = {"bucket": bucket, "key": key, "initiated": time.time(), "meta": meta}
        write_json_atomic(d / "upload.json", info, self.objects.tmp)
        fsync_dir(d)
        fsync_dir(self.root)
        return upload_id

    def check(self, bucket: str, key: str, upload_id: str) -> None:
        """Raise NoSuchBucket / NoSuchUpload unless the upload is live."""
        self.objects.require_bucket(bucket)
        d, _ = self._dir(bucket, key, upload_id)
        if (d / "completed.json").exists():
            raise errors.NoSuchUpload(resource=f"/{bucket}/{key}", UploadId=upload_id)

    def put_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        tmp_file: Path,
        md5: bytes,
        size: int,
    ) -> None:
        """Move a received part into the upload, replacing an earlier part with that number."""
        self.objects.require_bucket(bucket)
        d, _ = self._dir(bucket, key, upload_id)
        if (d / "completed.json").exists():
            raise errors.NoSuchUpload(resource=f"/{bucket}/{key}", UploadId=upload_id)
        data_name = f"p{number:05d}.{secrets.token_hex(8)}.part"
        try:
            os.rename(tmp_file, d / data_name)
        except FileNotFoundError:
            # Aborted (directory removed) while the body was arriving.
            raise errors.NoSuchUpload(resource=f"/{bucket}/{key}", UploadId=upload_id) from None
        old = read_json(d / _part_name(number))
        record = {
            "number": number,
            "md5": md5.hex(),
            "size": size,
            "data": data_name,
            "last_modified": time.time(),
        }
        try:
            write_json_atomic(d / _part_name(number), record, self.objects.tmp)
        except FileNotFoundError:
            raise errors.NoSuchUpload(resource=f"/{bucket}/{key}", UploadId=upload_id) from None
        fsync_dir(d)
        if old is not None and old["data"] != data_name:
            (d / old["data"]).unlink(missing_ok=True)

    def _parts(self, d: Path) -> dict[int, dict[str, Any]]:
        parts = {}
        for entry in os.scandir(d):
            if entry.name.startswith("p") and entry.name.endswith(".json"):
                rec = read_json(Path(entry.path))
                if rec is not None:
                    parts[int(rec["number"])] = rec
        return parts

    def list_parts(
        self, bucket: str, key: str, upload_id: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(upload record, parts sorted by number). Raises NoSuchBucket / NoSuchUpload."""
        self.check(bucket, key, upload_id)
        d, info = self._dir(bucket, key, upload_id)
        return info, [p for _, p in sorted(self._parts(d).items())]

    def list_uploads(self, bucket: str) -> list[tuple[str, str, float]]:
        """(key, upload id, initiated) of every live upload in the bucket, sorted by key, time."""
        self.objects.require_bucket(bucket)
        out = []
        for entry in os.scandir(self.root):
            if not _UPLOAD_ID_RE.match(entry.name):
                continue
            info = read_json(Path(entry.path) / "upload.json")
            if info is None or info["bucket"] != bucket:
                continue
            if os.path.exists(os.path.join(entry.path, "completed.json")):
                continue
            out.append((info["key"], entry.name, float(info["initiated"])))
        out.sort(key=lambda t: (t[0].encode(), t[2], t[1]))
        return out

    def abort(self, bucket: str, key: str, upload_id: str) -> None:
        """Drop the upload and its parts. Raises NoSuchBucket / NoSuchUpload."""
        self.objects.require_bucket(bucket)
        with self._lock(upload_id):
            d, _ = self._dir(bucket, key, upload_id)
            if (d / "completed.json").exists():
                raise errors.NoSuchUpload(resource=f"/{bucket}/{key}", UploadId=upload_id)
            self._remove(d)

    def _remove(self, d: Path) -> None:
        # Rename first so the upload disappears atomically, then delete at leisure.
        gone = self.root / f"gone-{secrets.token_hex(8)}"
        try:
            os.rename(d, gone)
        except FileNotFoundError:
            return
        shutil.rmtree(gone, ignore_errors=True)

    def complete(
        self, bucket: str, key: str, upload_id: str, listed: list[tuple[int, str]]
    ) -> dict[str, Any]:
        """Assemble the object from the listed (part number, ETag) pairs; return its metadata.

        Raises MalformedXML (no parts), InvalidPartOrder, InvalidPart, EntityTooSmall,
        NoSuchUpload, NoSuchBucket. A repeat of a successful Complete with the same parts
        returns the same result.
        """
        self.objects.require_bucket(bucket)
        resource = f"/{bucket}/{key}"
        if not listed:
            raise errors.MalformedXML(resource=resource)
        wanted = [(n, normalise_etag(e)) for n, e in listed]
        with self._lock(upload_id):
            d, info = self._dir(bucket, key, upload_id)
            done = read_json(d / "completed.json")
            if done is not None:
                if [list(p) for p in wanted] == done["parts"]:
                    return dict(done["result"])
                raise errors.InvalidPart(resource=resource, UploadId=upload_id)
            last = 0
            for n, _ in wanted:
                if not 1 <= n <= MAX_PARTS:
                    raise errors.InvalidArgument(
                        "Part number must be an integer between 1 and 10000, inclusive",
                        resource=resource,
                    )
                if n <= last:
                    raise errors.InvalidPartOrder(resource=resource, UploadId=upload_id)
                last = n
            parts = self._parts(d)
            chosen = []
            for n, etag in wanted:
                rec = parts.get(n)
                if rec is None or rec["md5"] != etag:
                    raise errors.InvalidPart(
                        resource=resource, UploadId=upload_id, PartNumber=str(n), ETag=etag
                    )
                chosen.append(rec)
            for rec in chosen[:-1]:
                if rec["size"] < self.min_part_size:
                    raise errors.EntityTooSmall(
                        resource=resource,
                        ProposedSize=str(rec["size"]),
                        MinSizeAllowed=str(self.min_part_size),
                        PartNumber=str(rec["number"]),
                        ETag=rec["md5"],
                    )
            # The parts become the object's byte files (hard links; see objects.py): no copy.
            size = sum(int(rec["size"]) for rec in chosen)
            etag = multipart_etag([bytes.fromhex(rec["md5"]) for rec in chosen])
            meta = {
                **info["meta"],
                "etag": etag,
                "size": size,
                "last_modified": time.time(),
                "parts_count": len(chosen),
            }
            self.objects.commit_parts(
                bucket, key, [(d / rec["data"], int(rec["size"])) for rec in chosen], meta
            )
            result = {"etag": etag, "size": size}
            write_json_atomic(
                d / "completed.json",
                {"parts": [list(p) for p in wanted], "result": result, "at": time.time()},
                self.objects.tmp,
            )
            fsync_dir(d)
            for entry in os.scandir(d):
                if entry.name.startswith("p"):
                    os.unlink(entry.path)
            return result

    def _sweep(self) -> None:
        """Forget completed uploads older than COMPLETED_TTL (at most once a minute)."""
        now = time.time()
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        for entry in os.scandir(self.root):
            if entry.name.startswith("gone-"):
                shutil.rmtree(entry.path, ignore_errors=True)
                continue
            done = read_json(Path(entry.path) / "completed.json")
            if done is not None and now - float(done["at"]) > COMPLETED_TTL:
                self._remove(Path(entry.path))
