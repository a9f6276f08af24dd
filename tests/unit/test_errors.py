"""The error catalogue."""

from __future__ import annotations

import pytest

from vmsbridge.errors import CATALOGUE, ApiError, loads_json, pydantic_errors


def test_every_code_renders_the_wire_shape() -> None:
    for code, (status, message) in CATALOGUE.items():
        err = ApiError(code)
        assert err.body() == {"status": status, "message": message, "code": code}
        assert 400 <= status <= 599


def test_validation_errors_name_fields() -> None:
    err = ApiError("ValidationError", errors=[{"field": "files.f1.part_count", "message": "x"}])
    assert err.body()["errors"] == [{"field": "files.f1.part_count", "message": "x"}]
    assert pydantic_errors([{"loc": ("body", "files", "f1", "part_count"), "msg": "bad"}]) == [
        {"field": "files.f1.part_count", "message": "bad"}
    ]
    assert pydantic_errors([{"loc": ("query", "file_id"), "msg": "Field required"}], ()) == [
        {"field": "file_id", "message": "Field required"}
    ]


def test_unknown_code_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        ApiError("NoSuchThing")


@pytest.mark.parametrize("raw", [b"", b" ", b"{", b"NaN", b'{"a": Infinity}', b"\xff"])
def test_strict_json(raw: bytes) -> None:
    with pytest.raises(ApiError) as info:
        loads_json(raw)
    assert info.value.code == "MalformedJSON" and info.value.status == 400


def test_json_ok() -> None:
    assert loads_json(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
