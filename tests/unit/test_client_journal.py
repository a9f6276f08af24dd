"""The resume journal: what it records survives a crash, and reopening finds it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from vmsbridge.client._journal import Fingerprint, Journal, default_state_dir

API = "http://api.test/v1"


def _fp(tmp_path: Path) -> Fingerprint:
    f = tmp_path / "video.mp4"
    f.write_bytes(b"x" * 100)
    return Fingerprint.of(f)


def test_records_parts_and_completion(tmp_path: Path) -> None:
    j = Journal.in_dir(tmp_path / "state")
    fp = _fp(tmp_path)
    assert j.find(API, "inc", "v1") is None
    e = j.begin(API, "inc", "v1", fp, s3_key="k", upload_id="u", part_size=8)
    j.add_part(e, 1, "e1", "m1", 8)
    j.add_part(e, 2, "e2", "m2", 8)
    j.add_part(e, 2, "e2b", "m2b", 8)  # a re-sent part replaces the record
    j.close()

    j = Journal.in_dir(tmp_path / "state")
    found = j.find(API, "inc", "v1")
    assert found is not None
    assert found.fingerprint == fp
    assert (found.s3_key, found.upload_id, found.part_size, found.complete) == ("k", "u", 8, False)
    assert found.parts == {1: ("e1", "m1", 8), 2: ("e2b", "m2b", 8)}
    j.drop_parts(found, [2])
    assert j.find(API, "inc", "v1").parts == {1: ("e1", "m1", 8)}  # type: ignore[union-attr]

    j.complete(found, etag="final-2", sha256="ab" * 32)
    done = j.find(API, "inc", "v1")
    assert done is not None and done.complete and done.parts == {}
    assert (done.etag, done.sha256) == ("final-2", "ab" * 32)
    # other incidents, files and servers are separate
    assert j.find(API, "other", "v1") is None
    assert j.find("http://elsewhere/v1", "inc", "v1") is None
    j.forget(done)
    assert j.find(API, "inc", "v1") is None


def test_begin_replaces_an_earlier_upload(tmp_path: Path) -> None:
    j = Journal.in_dir(tmp_path)
    fp = _fp(tmp_path)
    e = j.begin(API, "inc", "v1", fp, s3_key="k", upload_id="old", part_size=8)
    j.add_part(e, 1, "e1", "m1", 8)
    j.begin(API, "inc", "v1", fp, s3_key="k", upload_id="new", part_size=8)
    found = j.find(API, "inc", "v1")
    assert found is not None and found.upload_id == "new" and found.parts == {}


def test_a_killed_writer_loses_nothing_it_committed(tmp_path: Path) -> None:
    """A process that records parts and dies with os._exit (no close, no cleanup, like
    kill -9) leaves a journal that reopens with every part it had added."""
    fp = _fp(tmp_path)
    script = textwrap.dedent(
        f"""
        import os
        from vmsbridge.client._journal import Fingerprint, Journal
        j = Journal.in_dir({str(tmp_path / "state")!r})
        fp = Fingerprint({fp.path!r}, {fp.size}, {fp.mtime_ns})
        e = j.begin({API!r}, "inc", "v1", fp, s3_key="k", upload_id="u", part_size=8)
        for n in range(1, 6):
            j.add_part(e, n, f"e{{n}}", f"m{{n}}", 8)
        j._db.execute("BEGIN IMMEDIATE")  # a write in flight when the process dies
        j._db.execute("DELETE FROM parts")
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    j = Journal.in_dir(tmp_path / "state")
    found = j.find(API, "inc", "v1")
    assert found is not None
    assert sorted(found.parts) == [1, 2, 3, 4, 5]


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"1")
    before = Fingerprint.of(f)
    f.write_bytes(b"22")
    assert Fingerprint.of(f) != before
    assert Fingerprint.of(f).path == os.path.abspath(f)


def test_default_state_dir(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "vmsbridge"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "vmsbridge"
