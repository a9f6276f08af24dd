"""Presigning speed: our SigV4 presigner against botocore's `generate_presigned_url`.

Issue 5, target 1: our presigner at least 30x faster per URL than botocore, and a whole
10,000-part `upload_urls` request answered in under 0.15 s.

Both sides sign the same operation (UploadPart, path-style, s3v4, same endpoint, region, key and
credentials) in the same process; each figure is the median of several runs. Before timing, the
script checks that both produce the same URL for the same instant (they must be byte-identical).

    python bench/presign.py [--runs 7] [--parts 10000] [--boto-urls 2000]

The end-to-end figure is one `upload_urls` request for a 10,000-part file through a real
`vmsbridge serve` on loopback (`bench_upload_urls_request`), median of `--runs` requests.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import botocore
import botocore.session
from botocore.config import Config

from vmsbridge.storage.presign import SigV4Presigner

ENDPOINT = "http://127.0.0.1:9000"
REGION = "us-east-1"
ACCESS = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
BUCKET = "vmsbridge"
KEY = "vms/3f2a9c1e/8b7d6a5c/INC-2024-000123/cam-07_north gate export 2024-02-02.mp4"
UPLOAD_ID = "2~Q3JlYXRlTXVsdGlwYXJ0VXBsb2FkIGZvciBhIDUwIEdCIGV4cG9ydA-5c7e"
EXPIRES = 7200

Row = tuple[str, str, str, str]


def botocore_client() -> Any:
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def our_presigner() -> SigV4Presigner:
    return SigV4Presigner(ENDPOINT, region=REGION, access_key_id=ACCESS, secret_access_key=SECRET)


def check_identical(client: Any, ours: SigV4Presigner) -> None:
    """Refuse to benchmark two things that do not produce the same URLs."""
    instant = datetime(2026, 1, 2, 3, 4, 5)
    with mock.patch("botocore.auth.get_current_datetime", return_value=instant):
        for n in (1, 537, 10_000):
            theirs = client.generate_presigned_url(
                "upload_part",
                Params={"Bucket": BUCKET, "Key": KEY, "UploadId": UPLOAD_ID, "PartNumber": n},
                ExpiresIn=EXPIRES,
            )
            mine = ours.presign_upload_part(
                BUCKET, KEY, UPLOAD_ID, n, EXPIRES, now=instant.replace(tzinfo=UTC)
            )
            if mine != theirs:
                raise SystemExit(
                    f"URLs differ for part {n}:\n  ours     {mine}\n  botocore {theirs}"
                )


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall-clock seconds of `runs` calls of `fn` (after one warm-up), garbage collector paused."""
    fn()
    samples = []
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return samples


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.2f}"


def bench_upload_urls_request(runs: int = 7, parts: int = 10_000) -> list[Row] | None:
    """One `POST .../upload_urls` for a `parts`-part file through a real `vmsbridge serve`.

    Creates one multipart upload, then times the whole request over loopback (a kept-alive
    httpx connection, the JSON body read and parsed) `runs` times after a warm-up; the median
    is the figure. botocore has no such endpoint, so its column is its per-URL cost times
    `parts` (the presigning alone, for scale).
    """
    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _harness import running_server

    with (
        running_server() as srv,
        httpx.Client(base_url=srv.api_url, headers={"x-api-key": srv.api_key}, timeout=60) as http,
    ):
        r = http.get(
            "/v1/vms/incidents/bench-presign/create_multipart_upload",
            params={"file_id": "f1", "filename": "big.mp4"},
        )
        r.raise_for_status()
        body = {"files": {"f1": {"part_count": parts, **r.json()}}}

        def one() -> None:
            resp = http.post("/v1/vms/incidents/bench-presign/upload_urls", json=body)
            resp.raise_for_status()
            urls = resp.json()["uploads"]["f1"]["signed_urls"]
            assert len(urls) == parts, len(urls)

        samples = timed(one, runs)
    total = statistics.median(samples)
    return [
        (
            f"upload_urls request, {parts:,} parts, end to end (ms)",
            f"{total * 1e3:,.1f}",
            "-",
            "target < 150",
        )
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (median)")
    parser.add_argument("--parts", type=int, default=10_000, help="URLs per run for ours")
    parser.add_argument("--boto-urls", type=int, default=2_000, help="URLs per run for botocore")
    args = parser.parse_args(argv)

    client = botocore_client()
    ours = our_presigner()
    check_identical(client, ours)

    parts = list(range(1, args.parts + 1))
    boto_parts = list(range(1, args.boto_urls + 1))

    def boto_batch() -> None:
        for n in boto_parts:
            client.generate_presigned_url(
                "upload_part",
                Params={"Bucket": BUCKET, "Key": KEY, "UploadId": UPLOAD_ID, "PartNumber": n},
                ExpiresIn=EXPIRES,
            )

    def ours_batch() -> None:
        ours.presign_upload_parts(BUCKET, KEY, UPLOAD_ID, parts, EXPIRES)

    def ours_one_by_one() -> None:
        for n in parts:
            ours.presign_upload_part(BUCKET, KEY, UPLOAD_ID, n, EXPIRES)

    def boto_put() -> None:
        for _ in boto_parts:
            client.generate_presigned_url(
                "put_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=EXPIRES
            )

    def ours_put() -> None:
        for _ in parts:
            ours.presign_put(BUCKET, KEY, EXPIRES)

    boto_url = statistics.median(timed(boto_batch, args.runs)) / len(boto_parts)
    batch_total = statistics.median(timed(ours_batch, args.runs))
    batch_url = batch_total / len(parts)
    single_url = statistics.median(timed(ours_one_by_one, args.runs)) / len(parts)
    boto_put_url = statistics.median(timed(boto_put, args.runs)) / len(boto_parts)
    ours_put_url = statistics.median(timed(ours_put, args.runs)) / len(parts)

    rows: list[Row] = [
        (
            "upload_part URL, batch of one upload (µs/URL)",
            us(batch_url),
            us(boto_url),
            f"{boto_url / batch_url:,.0f}x",
        ),
        (
            "upload_part URL, one call per URL (µs/URL)",
            us(single_url),
            us(boto_url),
            f"{boto_url / single_url:,.0f}x",
        ),
        (
            "put_object URL, one call per URL (µs/URL)",
            us(ours_put_url),
            us(boto_put_url),
            f"{boto_put_url / ours_put_url:,.0f}x",
        ),
        (
            f"{len(parts):,} part URLs, total (ms)",
            f"{batch_total * 1e3:,.1f}",
            f"{boto_url * len(parts) * 1e3:,.0f} (est.)",
            f"{boto_url * len(parts) / batch_total:,.0f}x",
        ),
    ]
    rows += bench_upload_urls_request(args.runs, args.parts) or []

    header = ("", "vmsbridge", f"botocore {botocore.__version__}", "ratio")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    print(
        f"Presigning, median of {args.runs} runs ({len(parts):,} URLs per run for ours, "
        f"{len(boto_parts):,} for botocore)"
    )
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {platform.node()}"
    )
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(
        f"target: >= 30x per URL; 10,000 part URLs are "
        f"{batch_total * 1e3:.1f} ms of the 150 ms budget for the whole upload_urls request"
    )


if __name__ == "__main__":
    main()
