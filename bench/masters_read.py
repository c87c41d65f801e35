"""Benchmark: ``GET /masters/:id`` in server mode vs the tuned aiohttp + asyncpg primary-key read.

    python bench/masters_read.py [--duration 10] [--connections 64] [--warmup 3] [--log-level warning]

Server mode (API.md "Modes"): ``audifi serve`` in dev with ``DATABASE_URL`` (a throwaway database,
migrated and seeded with one registered master and its IPO) and ``REDIS_URL``; the in-process chain
runs as in dev. The baseline, measured in the same run against the same row: a bare aiohttp app
whose handler does one ``SELECT … WHERE id = $1`` through an asyncpg pool of 10 with the reset
query off and a FIFO semaphore in front (PERFORMANCE.md), serialized with orjson.

Server on core 0, load generator on core 1 (``taskset``); ``wrk -t1 -cN -dDs --latency`` after a
warm-up when wrk is installed (``apt-get install -y wrk``), else an aiohttp load generator in its
own process. Prints both figures and the ratio; asserts nothing (PERFORMANCE.md target: ≥ 1.0× the
baseline's requests/s, p99 ≤ 30 ms at 64 connections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

PG_ADMIN = os.environ.get("AUDIFI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AUDIFI_BENCH_REDIS", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dsn(db: str) -> str:
    return PG_ADMIN.rpartition("/")[0] + "/" + db


def _pin(core: int, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core), *argv]
    return argv


# ----------------------------------------------------------------------------- database
async def create_database() -> str:
    from audifi_adapters.postgres import apply_migrations

    name = f"audifi_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await apply_migrations(_dsn(name))
    return name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def seed(dsn: str) -> str:
    """One registered master with an IPO, written through the PostgreSQL repository."""
    from audifi_adapters.masters import register_postgres_master_repositories
    from audifi_adapters.postgres.db import PostgresDatabase
    from audifi_core.masters.model import Ipo, Master, MasterStatus, Money

    register_postgres_master_repositories()
    db = await PostgresDatabase.connect(dsn, 2)
    now = datetime.now(UTC)
    mid = "mst_01BENCH" + secrets.token_hex(6).upper()
    m = Master(id=mid, artist_id="usr_bench", title="Benchmark Song",
               metadata={"title": "Benchmark Song", "genre": "ambient", "bpm": 90},
               audio_cid="bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
               metadata_cid="bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
               artist_address="0x" + "ab" * 20, status=MasterStatus.PENDING, created_at=now, updated_at=now,
               deploy_job_id="job_bench")
    try:
        async with db.uow() as u:
            await u.masters.add(m)
            await u.masters.mark_registered(mid, "0x" + "11" * 20, "0x" + "22" * 20, now)
            await u.masters.add_ipo(Ipo(master_id=mid, total_shares=1000, price=Money(500, "usd"),
                                        starts_at=now + timedelta(days=1), ends_at=now + timedelta(days=8),
                                        max_per_user=100, created_at=now, mint_requested=1000, minted=1000))
    finally:
        await db.close()
    return mid


# ----------------------------------------------------------------------------- the baseline server
def baseline_server(port: int, dsn: str) -> None:
    """aiohttp + asyncpg, one PK SELECT per request; pool 10, reset query off, FIFO gate (PERFORMANCE.md)."""
    import orjson
    from aiohttp import web

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def no_reset(_conn: Any) -> None:
        return None

    async def ctx(app: web.Application) -> Any:
        app["pool"] = await asyncpg.create_pool(dsn, min_size=10, max_size=10, reset=no_reset)
        app["gate"] = asyncio.Semaphore(10)
        yield
        await app["pool"].close()

    async def handler(request: web.Request) -> web.Response:
        async with request.app["gate"], request.app["pool"].acquire() as c:
            row = await c.fetchrow("SELECT * FROM masters WHERE id = $1", request.match_info["id"])
        if row is None:
            raise web.HTTPNotFound()
        body = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dict(row).items()}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(ctx)
    app.router.add_get("/masters/{id}", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=lambda *_: None)


# ----------------------------------------------------------------------------- load generation
def run_wrk(url: str, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(_pin(1, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]),
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m is None:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "non2xx": float(errors.group(1)) if errors else 0.0}


def aiohttp_load(url: str, connections: int, seconds: int) -> dict[str, float]:
    """Fallback load generator in its own process: ``connections`` keep-alive workers for ``seconds``."""
    code = f"""
import asyncio, json, time, aiohttp
async def main():
    lat, bad = [], 0
    conn = aiohttp.TCPConnector(limit={connections})
    async with aiohttp.ClientSession(connector=conn) as s:
        end = time.perf_counter() + {seconds}
        async def worker():
            nonlocal bad
            while time.perf_counter() < end:
                t = time.perf_counter()
                async with s.get({url!r}) as r:
                    await r.read()
                    bad += r.status != 200
                lat.append(time.perf_counter() - t)
        await asyncio.gather(*(worker() for _ in range({connections})))
    lat.sort()
    print(json.dumps({{"rps": len(lat) / {seconds}, "p50": lat[len(lat) // 2] * 1000,
                      "p99": lat[int(len(lat) * 0.99)] * 1000, "non2xx": bad}}))
asyncio.run(main())
"""
    out = subprocess.run(_pin(1, [sys.executable, "-c", code]), capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def load(url: str, connections: int, seconds: int) -> dict[str, float]:
    return run_wrk(url, connections, seconds) if shutil.which("wrk") else aiohttp_load(url, connections, seconds)


def wait_ready(url: str, proc: subprocess.Popen[bytes], within: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {within} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def measure(name: str, argv: list[str], env: dict[str, str], url: str, ready: str, args: argparse.Namespace,
            ) -> dict[str, float]:
    proc = subprocess.Popen(_pin(0, argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(ready, proc)
        load(url, args.connections, args.warmup)
        runs = [load(url, args.connections, args.duration) for _ in range(args.rounds)]
    finally:
        stop(proc)
    best = max(runs, key=lambda r: r["rps"])
    best["rps_median"] = statistics.median(r["rps"] for r in runs)
    print(f"  {name:<34} {best['rps_median']:>9.0f} req/s (median of {len(runs)}; best {best['rps']:.0f})   "
          f"p50 {best['p50']:6.2f} ms   p99 {best['p99']:6.2f} ms   non-2xx {int(best['non2xx'])}")
    return best


async def _clean_redis(prefix: str) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--log-level", default="warning", help="the server's LOG_LEVEL (info logs every request)")
    ap.add_argument("--baseline-server", nargs=2, metavar=("PORT", "DSN"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_server:
        baseline_server(int(args.baseline_server[0]), args.baseline_server[1])
        return

    db = asyncio.run(create_database())
    dsn = _dsn(db)
    prefix = f"audifi-bench-{secrets.token_hex(3)}:"
    data_dir = tempfile.mkdtemp(prefix="audifi-bench-")
    try:
        mid = asyncio.run(seed(dsn))
        tool = "wrk" if shutil.which("wrk") else "aiohttp load generator"
        print(f"GET /masters/:id, {args.connections} connections, {args.duration} s after a {args.warmup} s warm-up, "
              f"{tool}; server on core 0, load on core 1")
        port = _free_port()
        env = {**os.environ, "AUDIFI_ENV": "dev", "DATABASE_URL": dsn, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix,
               "AUDIFI_DATA_DIR": data_dir, "LOG_LEVEL": args.log_level, "PORT": str(port),
               "PYTHONPATH": str(ROOT / "src")}
        audifi = measure("audifi GET /masters/:id", [sys.executable, "-m", "audifi_http.cli", "serve"], env,
                         f"http://127.0.0.1:{port}/masters/{mid}", f"http://127.0.0.1:{port}/health", args)
        bport = _free_port()
        base = measure("baseline aiohttp+asyncpg PK read", [sys.executable, __file__, "--baseline-server",
                                                            str(bport), dsn], dict(os.environ),
                       f"http://127.0.0.1:{bport}/masters/{mid}", f"http://127.0.0.1:{bport}/masters/{mid}", args)
        ratio = audifi["rps_median"] / base["rps_median"] if base["rps_median"] else float("nan")
        print(f"  ratio audifi/baseline: {ratio:.2f}x (target >= 1.0x); audifi p99 {audifi['p99']:.1f} ms "
              f"(target <= 30 ms)")
    finally:
        asyncio.run(drop_database(db))
        asyncio.run(_clean_redis(prefix))
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
