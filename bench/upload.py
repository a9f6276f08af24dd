"""Upload throughput, client CPU and memory: `vmsbridge push` against boto3 and `aws s3 cp`.

All tools upload the same 1 GiB file into the same embedded store of one `vmsbridge serve`:

- `vmsbridge push` (the whole export: API calls, presigned multipart, per-part MD5 check, SHA-256);
- boto3 `upload_file` with its default `TransferConfig` (8 MiB parts, 10 threads);
- boto3 `upload_file` with push's part size and concurrency;
- `aws s3 cp` (awscli from PyPI, installed on first run into bench/.venv-awscli because it pins
  its own botocore).

Each tool runs in its own process; CPU seconds and peak RSS come from that process's rusage.
The store's CPU per GiB (what each client's requests cost the server: the `vmsbridge serve`
process's CPU time across the run) is shown too. The tools take turns (the order rotates each
run) and every object is deleted after its run, so no tool inherits another's disk state.

`--memory` runs the memory check instead: one push of a 5 GiB file (`--memory-size-mib`) at the
default concurrency through a fresh `vmsbridge serve`, reporting the server's peak RSS during the
upload (VmHWM from /proc, reset just before; summed over its worker processes with --workers)
and push's peak RSS. Targets: server < 200 MiB, push < 150 MiB.

Run: `python bench/upload.py [--size-mib 1024] [--runs 5]` and `python bench/upload.py --memory`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    VMSBRIDGE,
    ChildRun,
    machine_line,
    make_random_file,
    median,
    print_table,
    run_measured,
    running_server,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")

AWSCLI_VENV = Path(__file__).resolve().parent / ".venv-awscli"

BOTO3_SCRIPT = """
import sys, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
endpoint, ak, sk, path, key, part, conc = sys.argv[1:8]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
                  region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"},
                                max_pool_connections=max(10, int(conc or 0))))
cfg = TransferConfig() if part == "default" else TransferConfig(
    multipart_threshold=int(part), multipart_chunksize=int(part), max_concurrency=int(conc))
s3.upload_file(path, "vmsbridge", key, Config=cfg)
"""


def awscli() -> Path:
    aws = AWSCLI_VENV / "bin" / "aws"
    if not aws.exists():
        print("installing awscli into bench/.venv-awscli (first run only) ...", flush=True)
        venv.create(AWSCLI_VENV, with_pip=True)
        subprocess.run(
            [str(AWSCLI_VENV / "bin" / "pip"), "install", "--quiet", "awscli"], check=True
        )
    return aws


def push_defaults(size: int) -> tuple[int, int]:
    """Part size and concurrency `vmsbridge push` picks for a file of `size` bytes."""
    from vmsbridge.client import DEFAULT_CONCURRENCY, choose_part_size

    return choose_part_size(size), DEFAULT_CONCURRENCY


def _family(pid: int) -> list[int]:
    """pid and its descendants (the API workers of `vmsbridge serve --workers N`)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                kids = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
                todo += [int(k) for k in kids]
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants so far."""
    total = 0.0
    for p in _family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def peak_rss_mib(pid: int) -> tuple[float, float]:
    """(the process's own VmHWM, the sum over it and its descendants), in MiB."""
    peaks = []
    for p in _family(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peaks[0], sum(peaks)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False if not allowed."""
    ok = True
    for p in _family(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def empty_bucket(srv: Any) -> None:
    """Delete every object of the store's bucket (between runs: bounded disk use)."""
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=srv.s3_url,
        aws_access_key_id=srv.access_key_id,
        aws_secret_access_key=srv.secret_access_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="vmsbridge"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket="vmsbridge", Key=obj["Key"])


def memory(args: argparse.Namespace) -> None:
    size = args.memory_size_mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="vmsb-memory-bench-"))
    try:
        src = make_random_file(work / "video.bin", size)
        with running_server(workers=args.workers) as srv:
            pid = srv.proc.pid
            before = peak_rss_mib(pid)
            reset = reset_peak_rss(pid)
            cmd = [
                VMSBRIDGE, "push", "--incident-id", "memory", "--no-thumbnails", "--quiet",
                "--state-dir", str(work / "state"), str(src),
            ]  # fmt: skip
            env = {"VMSBRIDGE_API_URL": srv.api_url, "VMSBRIDGE_API_KEY": srv.api_key}
            r = run_measured(cmd, env)
            if r.returncode != 0:
                raise SystemExit(f"push failed with exit code {r.returncode}")
            own, family = peak_rss_mib(pid)
        part, conc = push_defaults(size)
        print(
            f"\n{machine_line()} · {args.memory_size_mib} MiB file · push: {part >> 20} MiB parts, "
            f"concurrency {conc} · {size / r.wall / 1e6:.0f} MB/s · server workers: {args.workers}"
            f" · server RSS before the upload {before[1]:.0f} MiB"
            + ("" if reset else " (peak not reset: includes start-up)")
        )
        rows: list[list[object]] = [
            [
                "vmsbridge serve (API + embedded store)"
                if args.workers == 1
                else "vmsbridge serve parent (embedded store)",
                own,
                "< 200",
                "yes" if own < 200 else "NO",
            ],
            ["vmsbridge push", r.max_rss_mib, "< 150", "yes" if r.max_rss_mib < 150 else "NO"],
        ]
        if args.workers > 1:
            label = f"vmsbridge serve, parent + {args.workers} API workers summed"
            rows.insert(1, [label, family, "", ""])
        print_table(
            "Peak RSS while a file is uploaded", ["process", "peak RSS MiB", "target", "met"], rows
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--memory", action="store_true", help="run the memory check instead")
    ap.add_argument("--memory-size-mib", type=int, default=5120)
    ap.add_argument("--workers", type=int, default=1, help="vmsbridge serve --workers")
    args = ap.parse_args()
    if args.memory:
        memory(args)
        return
    size = args.size_mib * 1024 * 1024
    aws = awscli()
    part, conc = push_defaults(size)

    work = Path(tempfile.mkdtemp(prefix="vmsb-upload-bench-"))
    src = make_random_file(work / "video.bin", size)
    results: dict[str, list[ChildRun]] = {}
    store_cpu: dict[str, list[float]] = {}
    with running_server(workers=args.workers) as srv:
        s3env = {
            "AWS_ACCESS_KEY_ID": srv.access_key_id,
            "AWS_SECRET_ACCESS_KEY": srv.secret_access_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for run in range(args.runs):
            tools: dict[str, tuple[list[str], dict[str, str]]] = {
                "vmsbridge push": (
                    [
                        VMSBRIDGE, "push", "--incident-id", f"bench-{run}", "--no-thumbnails",
                        "--quiet", "--state-dir", str(work / f"state-{run}"), str(src),
                    ],
                    {"VMSBRIDGE_API_URL": srv.api_url, "VMSBRIDGE_API_KEY": srv.api_key},
                ),
                "boto3 upload_file (default TransferConfig)": (
                    [sys.executable, "-c", BOTO3_SCRIPT, srv.s3_url, srv.access_key_id,
                     srv.secret_access_key, str(src), f"boto3-default-{run}", "default", ""],
                    {},
                ),
                f"boto3 upload_file ({part >> 20} MiB parts, {conc} threads)": (
                    [sys.executable, "-c", BOTO3_SCRIPT, srv.s3_url, srv.access_key_id,
                     srv.secret_access_key, str(src), f"boto3-tuned-{run}", str(part), str(conc)],
                    {},
                ),
                "aws s3 cp": (
                    [str(aws), "s3", "cp", "--only-show-errors", "--endpoint-url", srv.s3_url,
                     str(src), f"s3://vmsbridge/awscli-{run}"],
                    s3env,
                ),
            }  # fmt: skip
            names = list(tools)
            names = names[run % len(names) :] + names[: run % len(names)]
            for name in names:
                cmd, env = tools[name]
                cpu_before = cpu_seconds(srv.proc.pid)
                r = run_measured(cmd, env)
                if r.returncode != 0:
                    raise SystemExit(f"{name} failed with exit code {r.returncode}")
                store_cpu.setdefault(name, []).append(cpu_seconds(srv.proc.pid) - cpu_before)
                results.setdefault(name, []).append(r)
                print(f"run {run + 1}: {name}: {size / r.wall / 1e6:.0f} MB/s", flush=True)
                empty_bucket(srv)
    shutil.rmtree(work, ignore_errors=True)

    gib = size / 2**30
    ours = results["vmsbridge push"]
    ours_mbps = size / median([r.wall for r in ours]) / 1e6
    ours_cpu = median([r.cpu for r in ours]) / gib
    rows = []
    for name, runs in results.items():
        mbps = size / median([r.wall for r in runs]) / 1e6
        cpu = median([r.cpu for r in runs]) / gib
        rss = max(r.max_rss_mib for r in runs)
        server = median(store_cpu[name]) / gib
        slowest, fastest = max(r.wall for r in runs), min(r.wall for r in runs)
        spread = f"{size / slowest / 1e6:.0f}-{size / fastest / 1e6:.0f}"
        rows.append(
            [
                name, mbps, spread, cpu, rss, server,
                f"{ours_mbps / mbps:.2f}x", f"{cpu / ours_cpu:.2f}x",
            ]
        )  # fmt: skip
    print(
        f"\n{machine_line()} · {args.size_mib} MiB file · median of {args.runs} runs · "
        f"push: {part >> 20} MiB parts, concurrency {conc}"
    )
    print_table(
        "Upload of one file into the embedded store",
        [
            "tool", "MB/s", "MB/s range", "client CPU s/GiB", "client peak RSS MiB",
            "store CPU s/GiB", "push speed ÷ tool", "tool CPU ÷ push",
        ],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
