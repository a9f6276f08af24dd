"""API throughput and latency with 100,000 incidents stored, on SQLite and on PostgreSQL.

For each database: start `vmsbridge serve`, seed N incidents (each with one failed video) straight
into the database, then drive it with wrk (32 connections) on three endpoints:

- `GET /healthz`: a trivial FastAPI endpoint on the same server: the ceiling;
- `GET /v1/vms/incidents/{id}`: a random stored incident (auth, one indexed lookup, videos);
- `PUT /v1/vms/incidents/{id}`: rename a random stored incident and replace its failed video.

Prints requests/s, p50 and p99 latency, and each endpoint's ratio to the ceiling.
Needs wrk (`apt-get install wrk`). Run: `python bench/api.py [--incidents 100000]
[--duration 10] [--workers 1] [--databases sqlite,postgresql]`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import VMSBRIDGE, machine_line, print_table, running_server

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

GET_LUA = """
math.randomseed(os.time())
wrk.headers["x-api-key"] = "%(key)s"
request = function()
  return wrk.format("GET", "/v1/vms/incidents/inc-" .. math.random(1, %(n)d))
end
"""

PUT_LUA = """
math.randomseed(os.time() + 7)
wrk.headers["x-api-key"] = "%(key)s"
wrk.headers["Content-Type"] = "application/json"
local i = 0
request = function()
  i = i + 1
  local body = '{"vms_incident": {"title": "bench ' .. i .. '", "failed_videos": [' ..
    '{"id": "v1", "camera_name": "Cam ' .. i .. '", "upload_errors": ["export failed"]}]}}'
  return wrk.format("PUT", "/v1/vms/incidents/inc-" .. math.random(1, %(n)d), nil, body)
end
"""


async def seed(database_url: str, org_id: str, n: int) -> None:
    """Insert n incidents with one failed video each, in batches, straight into the database."""
    from sqlalchemy import insert, text

    import vmsbridge.auth.models  # noqa: F401  (the organisations table the FKs point at)
    from vmsbridge.db import Database
    from vmsbridge.incidents.models import Incident, Video

    db = Database(database_url)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    batch = 5000
    async with db.write_session() as s:
        for start in range(1, n + 1, batch):
            stop = min(start + batch, n + 1)
            incidents = []
            videos = []
            for i in range(start, stop):
                at = now - dt.timedelta(seconds=i)
                incidents.append(
                    {
                        "pk": i, "org_id": org_id, "incident_id": f"inc-{i}",
                        "title": f"incident {i}", "description": "seeded", "incident_at": at,
                        "created_at": at, "updated_at": at, "latitude": 1.0, "longitude": 2.0,
                        "received_at": now, "modified_at": now, "sort_at": at,
                    }
                )  # fmt: skip
                videos.append(
                    {
                        "pk": i, "incident_pk": i, "video_id": "v1", "status": "failed",
                        "camera_name": "Cam 01", "upload_errors": ["export failed"],
                        "updated_at": now,
                    }
                )  # fmt: skip
            await s.execute(insert(Incident), incidents)
            await s.execute(insert(Video), videos)
        if not db.is_sqlite:
            for table in ("incidents", "videos"):
                await s.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'pk'), "
                        f"(SELECT max(pk) FROM {table}))"
                    )
                )
    await db.dispose()


def wrk(url: str, lua: str | None, duration: int, connections: int) -> tuple[float, float, float]:
    """Run wrk; return (requests/s, p50 ms, p99 ms)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        if lua:
            f.write(lua)
    if lua:
        cmd += ["-s", f.name]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    Path(f.name).unlink()
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} error responses\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, _pct(out, "50%"), _pct(out, "99%")


def _pct(out: str, label: str) -> float:
    m = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    assert m, out
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def bench_database(name: str, args: argparse.Namespace) -> list[list[object]]:
    env: dict[str, str] = {}
    pg_db = None
    if name == "postgresql":
        pg_db = "vmsb_bench_api"
        asyncio.run(_pg(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"))
        asyncio.run(_pg(f"CREATE DATABASE {pg_db}"))
        env["VMSBRIDGE_DATABASE_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_db}"
    try:
        with running_server(workers=args.workers, env=env) as srv:
            url = env.get("VMSBRIDGE_DATABASE_URL") or (
                f"sqlite+aiosqlite:///{srv.data_dir / 'vmsbridge.db'}"
            )
            key = json.loads(
                subprocess.run(
                    [VMSBRIDGE, "keys", "create", "--org", "bench-api", "--json"],
                    env={**os.environ, **env, "VMSBRIDGE_DATA_DIR": str(srv.data_dir)},
                    check=True,
                    capture_output=True,
                ).stdout
            )
            asyncio.run(seed(url, key["org_id"], args.incidents))
            params = {"key": key["key"], "n": args.incidents}
            results = {
                "GET /healthz (ceiling)": wrk(
                    f"{srv.api_url}/healthz", None, args.duration, args.connections
                ),
                "GET incident": wrk(srv.api_url, GET_LUA % params, args.duration, args.connections),
                "PUT incident": wrk(srv.api_url, PUT_LUA % params, args.duration, args.connections),
            }
    finally:
        if pg_db:
            asyncio.run(_pg(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"))
    ceiling = results["GET /healthz (ceiling)"][0]
    return [
        [name, endpoint, rps, p50, p99, f"{rps / ceiling:.0%}"]
        for endpoint, (rps, p50, p99) in results.items()
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--incidents", type=int, default=100_000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--databases", default="sqlite,postgresql")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench/api.py needs wrk: apt-get install wrk")
    rows: list[list[object]] = []
    for name in args.databases.split(","):
        rows += bench_database(name, args)
    print(
        f"\n{machine_line()} · {args.incidents:,} incidents · wrk -t1 -c{args.connections} "
        f"-d{args.duration}s · {args.workers} API worker(s)"
    )
    print_table(
        "API requests",
        ["database", "endpoint", "req/s", "p50 ms", "p99 ms", "of ceiling"],
        rows,
    )


if __name__ == "__main__":
    main()
