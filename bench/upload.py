"""Upload throughput, client CPU and memory: `vmsbridge push` against boto3 and `aws s3 cp`.

All tools upload the same 1 GiB file into the same embedded store of one `vmsbridge serve`:

- `vmsbridge push` (the whole export: API calls, presigned multipart, per-part MD5 check, SHA-256);
- boto3 `upload_file` with its default `TransferConfig` (8 MiB parts, 10 threads);
- boto3 `upload_file` with push's part size and concurrency;
- `aws s3 cp` (awscli from PyPI, installed on first run into bench/.venv-awscli because it pins
  its own botocore).

Each tool runs in its own process; CPU seconds and peak RSS come from that process's rusage.
Run: `python bench/upload.py [--size-mib 1024] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    size = args.size_mib * 1024 * 1024
    aws = awscli()
    part, conc = push_defaults(size)

    work = Path(tempfile.mkdtemp(prefix="vmsb-upload-bench-"))
    src = make_random_file(work / "video.bin", size)
    results: dict[str, list[ChildRun]] = {}
    with running_server() as srv:
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
            for name, (cmd, env) in tools.items():
                r = run_measured(cmd, env)
                if r.returncode != 0:
                    raise SystemExit(f"{name} failed with exit code {r.returncode}")
                results.setdefault(name, []).append(r)
                print(f"run {run + 1}: {name}: {size / r.wall / 1e6:.0f} MB/s", flush=True)

    gib = size / 2**30
    ours = results["vmsbridge push"]
    ours_mbps = size / median([r.wall for r in ours]) / 1e6
    ours_cpu = median([r.cpu for r in ours]) / gib
    rows = []
    for name, runs in results.items():
        mbps = size / median([r.wall for r in runs]) / 1e6
        cpu = median([r.cpu for r in runs]) / gib
        rss = max(r.max_rss_mib for r in runs)
        rows.append([name, mbps, cpu, rss, f"{ours_mbps / mbps:.2f}x", f"{cpu / ours_cpu:.2f}x"])
    print(f"\n{machine_line()} · {args.size_mib} MiB file · median of {args.runs} runs")
    print_table(
        "Upload of one file into the embedded store",
        ["tool", "MB/s", "CPU s/GiB", "peak RSS MiB", "push speed ÷ tool", "tool CPU ÷ push"],
        rows,
    )


if __name__ == "__main__":
    main()
