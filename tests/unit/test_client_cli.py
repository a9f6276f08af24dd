"""`vmsbridge push` argument handling: usage errors exit 2 with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmsbridge.cli import app
from vmsbridge.cli import push as push_module
from vmsbridge.client import DEFAULT_CONCURRENCY

runner = CliRunner()
ENV = {"VMSBRIDGE_API_URL": "http://127.0.0.1:9", "VMSBRIDGE_API_KEY": "k"}


def test_cli_default_concurrency_is_the_sdk_default() -> None:
    assert push_module.DEFAULT_CONCURRENCY == DEFAULT_CONCURRENCY


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--incident-id", "i", "v.mp4"], {"VMSBRIDGE_API_KEY": "k"}, "no API URL"),
        (["--incident-id", "i", "v.mp4"], {"VMSBRIDGE_API_URL": "http://x"}, "no API key"),
        (["v.mp4"], ENV, "--incident-id is required"),
        (["--incident-id", "i", "--multipart-threshold", "lots", "v.mp4"], ENV, "not a size"),
        (["--incident-id", "i", "--latitude", "1", "v.mp4"], ENV, "go together"),
        (["--incident-id", "i", "--incident-at", "yesterday", "v.mp4"], ENV, "ISO 8601"),
        (["m.json", "v.mp4"], ENV, "not both"),
        (["missing.json"], ENV, "cannot read manifest"),
    ],
)
def test_usage_errors_exit_2(args: list[str], env: dict[str, str], message: str) -> None:
    clean = {"VMSBRIDGE_API_URL": "", "VMSBRIDGE_API_KEY": ""} | env
    result = runner.invoke(app, ["push", *args], env=clean)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_manifest_exits_2(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"vms_incident": {"title": "no id"}}))
    result = runner.invoke(app, ["push", str(manifest)], env=ENV)
    assert result.exit_code == 2
    assert "no incident" in result.output


def test_unreachable_server_exits_1(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    result = runner.invoke(
        app,
        ["push", "--incident-id", "i", "--retries", "0", "--state-dir", str(tmp_path), str(video)],
        env=ENV,
    )
    assert result.exit_code == 1
    assert "ConnectError" in result.output
