"""Object keys, identifiers, filenames, and API key generation."""

from __future__ import annotations

import pytest

from vmsbridge.auth.service import KEY_PREFIX, generate_key, hash_key
from vmsbridge.storage.keys import (
    filename_from_key,
    filename_problem,
    is_identifier,
    key_belongs_to,
    object_key,
)


@pytest.mark.parametrize(
    "ok", ["a", "A1", "8d1635ed-f747-427c-9b35-d83a08d08ab5", "x.y_z-1", "9" * 128]
)
def test_identifiers_accepted(ok: str) -> None:
    assert is_identifier(ok)


@pytest.mark.parametrize(
    "bad", ["", "-a", ".a", "_a", "a/b", "a b", "a\x00", "é", "a" * 129, "..", "a\n"]
)
def test_identifiers_refused(bad: str) -> None:
    assert not is_identifier(bad)


@pytest.mark.parametrize(
    "ok", ["test.mov", "my thumbnail.jpg", "é" * 127, "a" * 255, "..a", "日本.mp4"]
)
def test_filenames_accepted(ok: str) -> None:
    assert filename_problem(ok) is None


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "a/b", "a\\b", "a\x00", "a\x1f", "a\x7f", "a" * 256, "é" * 128, "\ud800"]
)
def test_filenames_refused(bad: str) -> None:
    assert filename_problem(bad)


def test_object_key_and_ownership() -> None:
    key = object_key("org", "key", "inc", "f_1", "a_b.mov")
    assert key == "vms/org/key/inc/f_1_a_b.mov"
    assert key_belongs_to(key, "org", "inc")
    assert not key_belongs_to(key, "other", "inc")
    assert not key_belongs_to(key, "org", "inc2")
    assert not key_belongs_to("vms/org/key/inc/../x", "org", "inc")
    assert not key_belongs_to("vms/org/key/inc/sub/x", "org", "inc")
    assert not key_belongs_to("vms/org//inc/x", "org", "inc")
    assert filename_from_key(key, "f_1") == "a_b.mov"
    assert filename_from_key("vms/o/k/i/f1_clip.mp4") == "clip.mp4"


def test_api_keys_are_prefixed_random_and_hashed() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    for k in keys:
        assert k.startswith(KEY_PREFIX) and len(k) >= len(KEY_PREFIX) + 43
    k = next(iter(keys))
    assert hash_key(k) == hash_key(k) and len(hash_key(k)) == 64 and k not in hash_key(k)
