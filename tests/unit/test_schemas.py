"""Request schemas and time formatting."""

from __future__ import annotations

import datetime as dt

import pytest

from vmsbridge.errors import ApiError
from vmsbridge.incidents.schemas import format_time, to_utc_naive
from vmsbridge.incidents.service import parse_incident


def test_time_out_is_utc_with_milliseconds() -> None:
    assert format_time(dt.datetime(2024, 2, 2, 11, 4, 41, 30_000)) == "2024-02-02T11:04:41.030Z"
    assert format_time(dt.datetime(2024, 2, 2, 11, 4, 41)) == "2024-02-02T11:04:41.000Z"
    assert format_time(None) is None


def test_time_in_is_converted_to_utc() -> None:
    t = dt.datetime(2024, 2, 2, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert to_utc_naive(t) == dt.datetime(2024, 2, 2, 10, 0)
    body = parse_incident({"incident_at": "2024-02-02T12:00:00+02:00"})
    assert format_time(to_utc_naive(body.incident_at)) == "2024-02-02T10:00:00.000Z"


def test_wrapped_and_flat_are_the_same() -> None:
    flat = {"title": "t", "failed_videos": [{"id": "v", "errors": ["e"]}]}
    assert parse_incident(flat) == parse_incident({"vms_incident": flat})
    assert parse_incident(flat).failed_videos[0].upload_errors == ["e"]
    both = parse_incident({"failed_videos": [{"id": "v", "upload_errors": ["u"]}]})
    assert both.failed_videos[0].upload_errors == ["u"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"latitude": 91}, "latitude"),
        ({"vms_incident": {"longitude": -181}}, "vms_incident.longitude"),
        ({"uploaded_videos": [{"id": "a"}]}, "uploaded_videos.0.s3_key"),
        (
            {"uploaded_videos": [{"id": "a", "s3_key": "k", "sha256": "z"}]},
            "uploaded_videos.0.sha256",
        ),
        ({"failed_videos": [{"id": "a b"}]}, "failed_videos.0.id"),
    ],
)
def test_bad_fields_are_named(body: dict[str, object], field: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_incident(body)
    assert info.value.status == 400
    assert info.value.errors and info.value.errors[0]["field"] == field


def test_format_time_truncates_to_milliseconds_and_keeps_short_years() -> None:
    assert format_time(dt.datetime(2024, 2, 2, 11, 4, 41, 999_999)) == "2024-02-02T11:04:41.999Z"
    # The fast path (isoformat) covers years from 1000; earlier ones keep strftime's form.
    assert format_time(dt.datetime(999, 1, 1, 0, 0, 0, 1_500)) == "999-01-01T00:00:00.001Z"
