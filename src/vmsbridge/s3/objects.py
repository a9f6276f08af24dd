"""Buckets and objects on disk.

Layout under the data directory::

    <bucket>/.bucket.json                       creation time
    <bucket>/<seg>.d/<seg>.d/<name>.o           object metadata (JSON): the commit point
    <bucket>/<seg>.d/<seg>.d/<name>.<tok>.v     object bytes, named by the metadata
    .tmp/                                       bodies being received
    .uploads/<upload-id>/                       multipart uploads (see multipart.py)

Each key segment but the last is a directory `<seg>.d`; the last names the metadata file
`<seg>.o`. The suffixes keep `a` (an object) and `a/b` (an object under `a/`) from colliding.
Segments longer than 200 bytes become `<first 100 bytes>~<sha256>` with suffixes `#d`/`#o`
(distinct from `.d`/`.o`, so no short name can collide with a hashed one); the full key is
always in the metadata.

A write goes: bytes to a temp file (fsynced) -> renamed to a fresh `.v` name -> metadata to a
temp file (fsynced) -> renamed over `<name>.o` -> directory fsynced -> the previous `.v` removed.
Readers open the metadata, then the `.v` it names, so they see the old object or the new one,
never a mix and never a partial body.

A completed multipart object keeps its parts as they arrived: the metadata names one `.v` per
part (`data_parts`: [name, size] in order) and reads walk them in turn. Completing an upload is
then a hard link per part and a metadata write, not a copy of the whole object (which took
about a second per GiB, with the client waiting, and wrote every byte to disk twice).
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from . import errors

MAX_KEY_BYTES = 1024
_SHORT_SEGMENT = 200
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
BUCKET_META = ".bucket.json"


def validate_bucket_name(name: str) -> None:
    """Raise `InvalidBucketName` unless `name` follows S3's bucket naming rules."""
    if (
        not _BUCKET_RE.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IP_RE.match(name)
        or name.startswith("xn--")
        or name.endswith("-s3alias")
    ):
        raise errors.InvalidBucketName(resource=name, BucketName=name)


def validate_key(key: str) -> None:
    """Raise a 400 unless `key` is a safe object key (see the module docstring)."""
    if not key:
        raise errors.InvalidArgument("The object key must not be empty.")
    if len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
        raise errors.KeyTooLongError()
    if "\x00" in key:
        raise errors.InvalidArgument("Object keys may not contain NUL.")
    if key.startswith("/"):
        raise errors.InvalidArgument("Object keys may not start with '/'.")
    if any(seg == ".." for seg in key.split("/")):
        raise errors.InvalidArgument("Object keys may not contain '..' segments.")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.InvalidArgument("Object keys must be valid UTF-8.") from None


def _segment(seg: str, short_suffix: str, long_suffix: str) -> str:
    raw = seg.encode("utf-8")
    if len(raw) <= _SHORT_SEGMENT:
        return seg + short_suffix
    head = raw[:100].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:40]}{long_suffix}"


def _decode_name(name: str) -> tuple[str, str | None]:
    """(kind, segment) of an entry: kind d, o or empty (ignore); segment None when hashed."""
    if name.endswith(".d"):
        return "d", name[:-2]
    if name.endswith(".o"):
        return "o", name[:-2]
    if name.endswith("#d"):
        return "d", None
    if name.endswith("#o"):
        return "o", None
    return "", None


def fsync_dir(path: Path) -> None:
    """fsync a directory so that renames and creations in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any], tmp_dir: Path) -> None:
    """Write JSON to a temp file, fsync it, rename it over `path` (caller fsyncs the dir)."""
    tmp = tmp_dir / f"meta-{secrets.token_hex(12)}.tmp"
    with open(tmp, "xb") as f:
        f.write(json.dumps(data, separators=(",", ":")).encode())
        f.flush()
        os.fsync(f.fileno())
    try:
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON document at `path`, or None when there is none."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())  # type: ignore[no-any-return]
    except (FileNotFoundError, NotADirectoryError):
        return None


#: Parts of a multipart object opened when it is opened, so that a concurrent overwrite or
#: delete cannot pull them away mid-read (an open file outlives its name). Parts beyond are
#: opened one at a time as the read reaches them: file descriptors per open object stay
#: bounded (a 10,000-part object must not need 10,000), at the cost that a read past the first
#: 64 parts can fail if the object is replaced meanwhile (the client sees a cut-off body).
EAGER_PARTS = 64


def data_files(meta: dict[str, Any]) -> list[str]:
    """Names of the byte files of an object (one, or one per part of a multipart object)."""
    parts = meta.get("data_parts")
    if parts:
        return [str(name) for name, _ in parts]
    return [str(meta["data"])]


class PartsReader:
    """A read-only, seekable file over the part files of a multipart object, in order."""

    def __init__(self, d: Path, parts: list[list[Any]]) -> None:
        self._d = d
        self._names = [str(name) for name, _ in parts]
        self._sizes = [int(size) for _, size in parts]
        self._starts: list[int] = []
        total = 0
        for size in self._sizes:
            self._starts.append(total)
            total += size
        self._size = total
        self._files: list[BinaryIO | None] = [None] * len(parts)
        self._lazy: int | None = None
        self._pos = 0
        try:
            for i in range(min(EAGER_PARTS, len(parts))):
                self._files[i] = open(d / self._names[i], "rb")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PartsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def seek(self, pos: int, whence: int = 0) -> int:
        """Move to byte `pos` (from the start; whence 1 and 2 as for files)."""
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (all the rest when n < 0) from the current position; b"" at the end."""
        if n < 0:
            n = self._size - self._pos
        out: list[bytes] = []
        while n > 0 and self._pos < self._size:
            i = bisect.bisect_right(self._starts, self._pos) - 1
            f = self._files[i]
            if f is None:
                if self._lazy is not None:  # at most one lazily opened part at a time
                    lazy = self._files[self._lazy]
                    if lazy is not None:
                        lazy.close()
                    self._files[self._lazy] = None
                try:
                    f = self._files[i] = open(self._d / self._names[i], "rb")
                except FileNotFoundError:
                    raise errors.S3Error("The object was replaced while being read.") from None
                self._lazy = i
            offset = self._pos - self._starts[i]
            f.seek(offset)
            data = f.read(min(n, self._sizes[i] - offset))
            if not data:
                raise errors.S3Error("A part of the object is shorter than its metadata says.")
            out.append(data)
            self._pos += len(data)
            n -= len(data)
        return out[0] if len(out) == 1 else b"".join(out)

    def close(self) -> None:
        for i, f in enumerate(self._files):
            if f is not None:
                f.close()
                self._files[i] = None


class ObjectStore:
    """Buckets and objects under one directory. Every method is blocking: call from a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(exist_ok=True)
        # Striped locks serialise the metadata swap of concurrent writes to one key, so the
        # loser's byte file is always found and removed (never orphaned).
        self._locks = [threading.Lock() for _ in range(64)]
        # Temp files left by a crash are garbage: no acknowledged write depends on them.
        for entry in os.scandir(self.tmp):
            try:
                os.unlink(entry.path)
            except OSError:
                pass

    # --- buckets -------------------------------------------------------------------------

    def bucket_dir(self, bucket: str) -> Path:
        """The bucket's directory (raises InvalidBucketName for a bad name)."""
        validate_bucket_name(bucket)
        return self.root / bucket

    def require_bucket(self, bucket: str) -> Path:
        """The bucket's directory; raises NoSuchBucket if it does not exist."""
        path = self.bucket_dir(bucket)
        if not (path / BUCKET_META).is_file():
            raise errors.NoSuchBucket(resource=f"/{bucket}", BucketName=bucket)
        return path

    def list_buckets(self) -> list[tuple[str, float]]:
        """(name, creation time) of every bucket, sorted by name."""
        out = []
        for entry in os.scandir(self.root):
            if entry.is_dir() and _BUCKET_RE.match(entry.name):
                meta = read_json(Path(entry.path) / BUCKET_META)
                if meta is not None:
                    out.append((entry.name, float(meta["created"])))
        return sorted(out)

    def create_bucket(self, bucket: str) -> None:
        """Create a bucket; raises BucketAlreadyOwnedByYou if it exists (one owner here)."""
        path = self.bucket_dir(bucket)
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                # Something else lives in the data directory under that name.
                raise errors.BucketAlreadyExists(resource=f"/{bucket}", BucketName=bucket) from None
            if (path / BUCKET_META).is_file():
                raise errors.BucketAlreadyOwnedByYou(
                    resource=f"/{bucket}", BucketName=bucket
                ) from None
        write_json_atomic(path / BUCKET_META, {"created": time.time()}, self.tmp)
        fsync_dir(path)
        fsync_dir(self.root)

    def delete_bucket(self, bucket: str) -> None:
        """Delete an empty bucket; raises NoSuchBucket or BucketNotEmpty."""
        path = self.require_bucket(bucket)
        for _ in self._walk(path, ""):
            raise errors.BucketNotEmpty(resource=f"/{bucket}", BucketName=bucket)
        # Only directories and orphaned byte files remain.
        os.unlink(path / BUCKET_META)
        shutil.rmtree(path, ignore_errors=True)
        fsync_dir(self.root)

    # --- objects -------------------------------------------------------------------------

    def _locate(self, bucket_path: Path, key: str) -> tuple[Path, str]:
        """(directory, metadata file name) of `key`."""
        validate_key(key)
        segs = key.split("/")
        d = bucket_path
        for seg in segs[:-1]:
            d = d / _segment(seg, ".d", "#d")
        return d, _segment(segs[-1], ".o", "#o")

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        """The object's metadata; raises NoSuchBucket or NoSuchKey."""
        bucket_path = self.require_bucket(bucket)
        d, name = self._locate(bucket_path, key)
        meta = read_json(d / name)
        if meta is None:
            raise errors.NoSuchKey(resource=f"/{bucket}/{key}", Key=key)
        return meta

    def open(self, bucket: str, key: str) -> tuple[dict[str, Any], BinaryIO | PartsReader]:
        """(metadata, open byte file) of the object; raises NoSuchBucket or NoSuchKey.

        The file has `read`, `seek` and `close` (a `PartsReader` for a multipart object)."""
        bucket_path = self.require_bucket(bucket)
        d, name = self._locate(bucket_path, key)
        for _ in range(10):
            meta = read_json(d / name)
            if meta is None:
                raise errors.NoSuchKey(resource=f"/{bucket}/{key}", Key=key)
            try:
                if meta.get("data_parts"):
                    return meta, PartsReader(d, meta["data_parts"])
                return meta, open(d / meta["data"], "rb")
            except FileNotFoundError:
                continue  # replaced between the two opens: read the new metadata
        raise errors.S3Error("The object kept changing while being read; retry.")

    def commit(self, bucket: str, key: str, tmp_file: Path, meta: dict[str, Any]) -> None:
        """Move a complete, fsynced temp file into place as `key` with `meta` (atomic).

        Raises NoSuchBucket (and removes nothing else) if the bucket is gone.
        """
        bucket_path = self.require_bucket(bucket)
        d, name = self._locate(bucket_path, key)
        data_name = f"{name[:-2]}.{secrets.token_hex(8)}.v"
        meta = {k: v for k, v in meta.items() if k != "data_parts"}
        meta.update(key=key, data=data_name)
        self._place(d, bucket_path, [(tmp_file, data_name)], os.rename)
        self._swap(bucket, key, d, name, meta, [data_name])

    def commit_parts(
        self, bucket: str, key: str, parts: list[tuple[Path, int]], meta: dict[str, Any]
    ) -> None:
        """Make the fsynced files `parts` ((path, size) in order) the object `key`, atomically.

        The files are hard-linked, not moved or copied: the caller keeps its names (a failed
        commit leaves them usable) and removes them when it likes. Raises NoSuchBucket.
        """
        bucket_path = self.require_bucket(bucket)
        d, name = self._locate(bucket_path, key)
        stem = f"{name[:-2]}.{secrets.token_hex(8)}"
        names = [f"{stem}-{i}.v" for i in range(1, len(parts) + 1)]
        meta = {**meta, "key": key, "data": names[0]}
        meta["data_parts"] = [[n, size] for n, (_, size) in zip(names, parts, strict=True)]
        placed = [(path, n) for (path, _), n in zip(parts, names, strict=True)]
        self._place(d, bucket_path, placed, os.link)
        self._swap(bucket, key, d, name, meta, names)

    def _place(self, d: Path, bucket_path: Path, files: list[tuple[Path, str]], move: Any) -> None:
        """Rename or link each (source, name) into directory d, creating d if needed."""
        done: list[str] = []
        try:
            for src, data_name in files:
                for attempt in range(20):
                    self._makedirs(d, bucket_path)
                    try:
                        move(src, d / data_name)
                        done.append(data_name)
                        break
                    except FileNotFoundError:
                        if not src.exists() or attempt == 19:
                            raise
                        # A concurrent delete pruned the directory between makedirs and move.
        except BaseException:
            if move is os.link:
                for data_name in done:
                    (d / data_name).unlink(missing_ok=True)
            raise

    def _swap(
        self, bucket: str, key: str, d: Path, name: str, meta: dict[str, Any], new: list[str]
    ) -> None:
        """Write the metadata over `name` and remove the byte files of the object it replaced."""
        with self._lock(bucket, key):
            old = read_json(d / name)
            try:
                write_json_atomic(d / name, meta, self.tmp)
            except BaseException:
                for data_name in new:
                    (d / data_name).unlink(missing_ok=True)
                raise
            fsync_dir(d)
            if old is not None:
                for data_name in data_files(old):
                    if data_name not in new:
                        (d / data_name).unlink(missing_ok=True)

    def _lock(self, bucket: str, key: str) -> threading.Lock:
        return self._locks[hash((bucket, key)) % len(self._locks)]

    def _makedirs(self, d: Path, stop: Path) -> None:
        missing = []
        p = d
        while p != stop and not p.is_dir():
            missing.append(p)
            p = p.parent
        for p in reversed(missing):
            try:
                p.mkdir()
            except FileExistsError:
                pass
            fsync_dir(p.parent)

    def delete(self, bucket: str, key: str) -> None:
        """Delete the object if it exists (S3 answers 204 either way); raises NoSuchBucket."""
        bucket_path = self.require_bucket(bucket)
        d, name = self._locate(bucket_path, key)
        with self._lock(bucket, key):
            meta = read_json(d / name)
            if meta is None:
                return
            try:
                os.unlink(d / name)
            except FileNotFoundError:
                return
            for data_name in data_files(meta):
                (d / data_name).unlink(missing_ok=True)
            fsync_dir(d)
        # Prune empty directories up to the bucket.
        p = d
        while p != bucket_path:
            try:
                os.rmdir(p)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    break
                raise
            p = p.parent

    # --- listing -------------------------------------------------------------------------

    def _walk(self, d: Path, key_prefix: str | None) -> Iterator[tuple[str | None, Path]]:
        """(key or None if not decodable from the path, metadata path) under directory d."""
        try:
            entries = list(os.scandir(d))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            kind, seg = _decode_name(entry.name)
            if kind == "d" and entry.is_dir(follow_symlinks=False):
                sub = None if key_prefix is None or seg is None else key_prefix + seg + "/"
                yield from self._walk(Path(entry.path), sub)
            elif kind == "o" and entry.is_file(follow_symlinks=False):
                k = None if key_prefix is None or seg is None else key_prefix + seg
                yield k, Path(entry.path)

    def iter_keys(
        self, bucket: str, prefix: str, after: bytes | None, skip: list[bytes]
    ) -> Iterator[tuple[bytes, str, Path]]:
        """(utf-8 key, key, metadata path) of the objects whose key starts with `prefix` and
        sorts after `after`, lazily and in S3's order (UTF-8 bytes). Raises NoSuchBucket.

        A page of a listing costs about the page, not the bucket: the walk starts in the
        deepest directory the prefix names, visits each directory's entries in key order (a
        directory `seg.d` holds exactly the keys starting `seg/`, which sort together), prunes
        subtrees before `after`, and skips subtrees under `skip[0]` when the caller sets it
        (a common prefix already reported).
        """
        bucket_path = self.require_bucket(bucket)
        segs = prefix.split("/")[:-1]
        d = bucket_path
        for seg in segs:
            if "\x00" in seg:
                return
            d = d / _segment(seg, ".d", "#d")
        start = "".join(s + "/" for s in segs)
        yield from self._sorted_walk(d, start, prefix.encode(), after, skip)

    def _sorted_walk(
        self, d: Path, key_prefix: str, prefix: bytes, after: bytes | None, skip: list[bytes]
    ) -> Iterator[tuple[bytes, str, Path]]:
        try:
            entries = list(os.scandir(d))
        except (FileNotFoundError, NotADirectoryError):
            return
        children: list[tuple[bytes, str, Path, bool]] = []
        for entry in entries:
            kind, seg = _decode_name(entry.name)
            if not kind:
                continue
            path = Path(entry.path)
            if kind == "o":
                if seg is None:
                    meta = read_json(path)
                    if meta is None:
                        continue
                    key = str(meta["key"])
                else:
                    key = key_prefix + seg
                kb = key.encode()
                if kb.startswith(prefix) and (after is None or kb > after):
                    children.append((kb, key, path, False))
                continue
            if seg is None:
                seg = self._dir_segment(path, key_prefix.count("/"))
                if seg is None:
                    continue
            sub = key_prefix + seg + "/"
            sb = sub.encode()
            if not (sb.startswith(prefix) or prefix.startswith(sb)):
                continue
            if after is not None and sb < after and not after.startswith(sb):
                continue  # every key below sorts before `after`
            children.append((sb, sub, path, True))
        children.sort()
        for kb, key, path, is_dir in children:
            if not is_dir:
                yield kb, key, path
            elif not (skip and kb.startswith(skip[0])):
                yield from self._sorted_walk(path, key, prefix, after, skip)

    def _dir_segment(self, d: Path, depth: int) -> str | None:
        """The real name of a hashed (long) directory segment, from any object below it."""
        for key, path in self._walk(d, None):
            meta = read_json(path) if key is None else None
            if meta is not None:
                return str(meta["key"]).split("/")[depth]
        return None
