"""The resume journal: a small SQLite database in the user's state directory.

It records, for every file being uploaded, where the upload stands: the file's fingerprint
(absolute path, size, mtime_ns), the API URL, incident and file id it belongs to, the multipart
upload (s3_key, upload_id, part size), every finished part (number, ETag, MD5, size) and, once
done, the finished object (ETag, size, SHA-256). Each change is its own committed transaction
(WAL mode), so a ``kill -9`` loses at most the parts that were in flight.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Fingerprint", "Journal", "JournalEntry", "default_state_dir"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id          INTEGER PRIMARY KEY,
    api_url     TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    file_id     TEXT NOT NULL,
    path        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    s3_key      TEXT NOT NULL,
    upload_id   TEXT,              -- NULL for a single PUT
    part_size   INTEGER,
    state       TEXT NOT NULL,     -- 'uploading' | 'complete'
    etag        TEXT,
    sha256      TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    UNIQUE (api_url, incident_id, file_id)
);
CREATE TABLE IF NOT EXISTS parts (
    upload      INTEGER NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    etag        TEXT NOT NULL,
    md5         TEXT NOT NULL,
    size        INTEGER NOT NULL,
    PRIMARY KEY (upload, part_number)
);
"""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/vmsbridge``, else ``~/.local/state/vmsbridge``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "vmsbridge"


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a local file's content cheaply: absolute path, size, mtime in ns."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> Fingerprint:
        """Stat `path` (raises OSError when it is missing)."""
        p = os.path.abspath(path)
        st = os.stat(p)
        return cls(p, st.st_size, st.st_mtime_ns)


@dataclass
class JournalEntry:
    """One file's recorded upload state."""

    row: int
    fingerprint: Fingerprint
    s3_key: str
    upload_id: str | None
    part_size: int | None
    state: str
    etag: str | None
    sha256: str | None
    #: part number -> (etag, md5, size)
    parts: dict[int, tuple[str, str, int]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True once the file is stored whole."""
        return self.state == "complete"


class Journal:
    """The resume journal (one SQLite file). Use from one thread; several processes may share it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every statement below is its own durable transaction unless grouped.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (kill -9); only an OS crash may lose the
        # last commits, and then the server's list_parts still tells what arrived.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_dir(cls, state_dir: str | os.PathLike[str] | None = None) -> Journal:
        """Open (creating) ``journal.sqlite3`` in `state_dir` (default: `default_state_dir`)."""
        return cls(Path(state_dir or default_state_dir()) / "journal.sqlite3")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def find(self, api_url: str, incident_id: str, file_id: str) -> JournalEntry | None:
        """The entry for this file of this incident on this API, or None."""
        row = self._db.execute(
            "SELECT id, path, size, mtime_ns, s3_key, upload_id, part_size, state, etag, sha256"
            " FROM uploads WHERE api_url=? AND incident_id=? AND file_id=?",
            (api_url, incident_id, file_id),
        ).fetchone()
        if row is None:
            return None
        entry = JournalEntry(
            row=row[0],
            fingerprint=Fingerprint(row[1], row[2], row[3]),
            s3_key=row[4],
            upload_id=row[5],
            part_size=row[6],
            state=row[7],
            etag=row[8],
            sha256=row[9],
        )
        for number, etag, md5, size in self._db.execute(
            "SELECT part_number, etag, md5, size FROM parts WHERE upload=?", (entry.row,)
        ):
            entry.parts[number] = (etag, md5, size)
        return entry

    def begin(
        self,
        api_url: str,
        incident_id: str,
        file_id: str,
        fingerprint: Fingerprint,
        *,
        s3_key: str,
        upload_id: str | None,
        part_size: int | None,
    ) -> JournalEntry:
        """Record a new upload for this file, replacing any earlier entry (and its parts)."""
        now = time.time()
        with self._transaction():
            self._db.execute(
                "DELETE FROM uploads WHERE api_url=? AND incident_id=? AND file_id=?",
                (api_url, incident_id, file_id),
            )
            cur = self._db.execute(
                "INSERT INTO uploads (api_url, incident_id, file_id, path, size, mtime_ns,"
                " s3_key, upload_id, part_size, state, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?, 'uploading', ?, ?)",
                (
                    api_url,
                    incident_id,
                    file_id,
                    fingerprint.path,
                    fingerprint.size,
                    fingerprint.mtime_ns,
                    s3_key,
                    upload_id,
                    part_size,
                    now,
                    now,
                ),
            )
        row = cur.lastrowid
        assert row is not None
        return JournalEntry(row, fingerprint, s3_key, upload_id, part_size, "uploading", None, None)

    def add_part(self, entry: JournalEntry, number: int, etag: str, md5: str, size: int) -> None:
        """Record a finished part (committed before returning)."""
        self._db.execute(
            "INSERT OR REPLACE INTO parts (upload, part_number, etag, md5, size)"
            " VALUES (?,?,?,?,?)",
            (entry.row, number, etag, md5, size),
        )
        entry.parts[number] = (etag, md5, size)

    def drop_parts(self, entry: JournalEntry, numbers: list[int]) -> None:
        """Forget parts that the server no longer has (or that no longer match)."""
        self._db.executemany(
            "DELETE FROM parts WHERE upload=? AND part_number=?", [(entry.row, n) for n in numbers]
        )
        for n in numbers:
            entry.parts.pop(n, None)

    def complete(self, entry: JournalEntry, *, etag: str, sha256: str) -> None:
        """Mark the file stored whole; its parts are no longer needed."""
        with self._transaction():
            self._db.execute(
                "UPDATE uploads SET state='complete', etag=?, sha256=?, updated_at=? WHERE id=?",
                (etag, sha256, time.time(), entry.row),
            )
            self._db.execute("DELETE FROM parts WHERE upload=?", (entry.row,))
        entry.state, entry.etag, entry.sha256 = "complete", etag, sha256
        entry.parts.clear()

    def forget(self, entry: JournalEntry) -> None:
        """Delete the entry (after an abort, or when the server no longer knows the upload)."""
        self._db.execute("DELETE FROM uploads WHERE id=?", (entry.row,))

    def prune(self, older_than: float = 30 * 86400) -> int:
        """Delete entries untouched for `older_than` seconds; returns how many."""
        cur = self._db.execute(
            "DELETE FROM uploads WHERE updated_at < ?", (time.time() - older_than,)
        )
        return cur.rowcount

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
