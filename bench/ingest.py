"""Ingest benchmark: events/s through ``POST /events`` (batches of 1,000) into PostgreSQL, beside the
same-run SQL-only baseline and raw ``COPY`` of the same rows.

    python bench/ingest.py [--seconds 10] [--rounds 3] [--concurrency 8] [--no-taskset]

* **http**: ``audifi serve`` in server mode (dev with ``DATABASE_URL`` and ``REDIS_URL``) in its own
  process on core 0; this process (core 1) posts pre-serialized anonymous batches of 1,000 events
  (fresh ids) with ``concurrency`` requests in flight. Each 202 means the batch is durable.
* **sql**: the same rows, already built, through exactly the ingest's SQL: ``COPY`` into the staging
  table + the dedupe insert (``MERGE_SQL``), on ``concurrency`` connections.
* **copy**: raw ``copy_records_to_table`` of the same rows into the partitioned ``analytics_events``
  (no dedupe, no staging).

Tables are emptied before each phase; phases alternate for ``rounds`` rounds; medians are printed,
and the median of the per-round http/sql ratios (robust to the box's drift between rounds), and the
server's CPU per batch. PERFORMANCE.md target: http ≥ 80 % of sql. The server runs its background
jobs meanwhile (aggregation every 5 s: ``AGG=3600`` in the environment turns it down).
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

import aiohttp
import asyncpg
import orjson

from audifi_adapters.analytics.postgres import (
    CLIENT_MERGE_SQL,
    CLIENT_STAGE_COLUMNS,
    CLIENT_STAGE_DDL,
)

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("AUDIFI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AUDIFI_BENCH_REDIS", "redis://127.0.0.1:6379/0")
BATCH = 1000
MASTERS = [f"mst_bench{i:03d}" for i in range(50)]
EVENT_COLUMNS = ("id", "type", "occurred_at", "received_at", "master_id", "anonymous_id", "properties")
TABLES = "analytics_events, analytics_event_ids, analytics_dirty, analytics_hourly, analytics_daily"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _dsn(db: str) -> str:
    return PG_ADMIN.rpartition("/")[0] + "/" + db


class Workload:
    """Batches of client events: the JSON bodies for HTTP and the identical rows for SQL."""

    def __init__(self, n_batches: int, tag: str):
        now = datetime.now(UTC)
        self.received_at = now
        self.bodies: list[bytes] = []
        self.rows: list[list[tuple[Any, ...]]] = []  # the staging rows
        self.full: list[list[tuple[Any, ...]]] = []  # the same as analytics_events rows (raw COPY)
        for b in range(n_batches):
            events, rows = [], []
            for i in range(BATCH):
                eid = f"{tag}-{b}-{i}-{secrets.token_hex(4)}"
                at = now - timedelta(seconds=i)
                master = MASTERS[(b * 7 + i) % len(MASTERS)]
                anon = f"anon-{(b * 131 + i) % 20000}"
                props = {"position": i % 240, "device": "web"}
                events.append({"id": eid, "type": "play", "occurredAt": at.isoformat().replace("+00:00", "Z"),
                               "masterId": master, "anonymousId": anon, "properties": props})
                rows.append((eid, "play", at, master, anon, orjson.dumps(props).decode()))
            self.bodies.append(orjson.dumps({"batch": events}))
            self.rows.append(rows)
            self.full.append([(r[0], r[1], r[2], now, r[3], r[4], r[5]) for r in rows])


async def _truncate(dsn: str) -> None:
    c = await asyncpg.connect(dsn)
    try:
        for attempt in range(5):
            try:
                await c.execute(f"TRUNCATE {TABLES}")
                break
            except asyncpg.DeadlockDetectedError:  # the server's aggregator held a table: try again
                if attempt == 4:
                    raise
                await asyncio.sleep(0.5)
        await c.execute("CHECKPOINT")
    finally:
        await c.close()


async def _run_pool(concurrency: int, seconds: float, work: Any, n_items: int) -> tuple[int, float]:
    """Run ``work(i)`` for items 0, 1, … with ``concurrency`` in flight for ``seconds``; (items done, elapsed)."""
    nxt = 0
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal nxt, done
        while time.perf_counter() < stop and nxt < n_items:
            i = nxt
            nxt += 1
            await work(i)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - t0


async def phase_http(base: str, load: Workload, concurrency: int, seconds: float) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async def post(i: int) -> None:
            async with s.post(base + "/events", data=load.bodies[i],
                              headers={"Content-Type": "application/json"}) as r:
                body = await r.read()
                if r.status != 202:
                    raise RuntimeError(f"POST /events → {r.status}: {body[:300]!r}")

        n, el = await _run_pool(concurrency, seconds, post, len(load.bodies))
    return n * BATCH / el


async def phase_sql(dsn: str, load: Workload, concurrency: int, seconds: float) -> float:
    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    free = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)

    async def merge(i: int) -> None:
        c = await free.get()
        try:
            async with c.transaction():
                await c.execute(CLIENT_STAGE_DDL)
                await c.copy_records_to_table("analytics_client_stage", records=load.rows[i],
                                              columns=CLIENT_STAGE_COLUMNS)
                await c.fetchval(CLIENT_MERGE_SQL, load.received_at, None)
        finally:
            free.put_nowait(c)

    try:
        n, el = await _run_pool(concurrency, seconds, merge, len(load.rows))
    finally:
        for c in conns:
            await c.close()
    return n * BATCH / el


async def phase_copy(dsn: str, load: Workload, concurrency: int, seconds: float) -> float:
    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    free = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)

    async def copy(i: int) -> None:
        c = await free.get()
        try:
            await c.copy_records_to_table("analytics_events", records=load.full[i], columns=EVENT_COLUMNS)
        finally:
            free.put_nowait(c)

    try:
        n, el = await _run_pool(concurrency, seconds, copy, len(load.rows))
    finally:
        for c in conns:
            await c.close()
    return n * BATCH / el


def start_server(dsn: str, prefix: str, port: int, data_dir: str, taskset: bool) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIFI_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"DATABASE_URL": dsn, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix, "AUDIFI_DATA_DIR": data_dir,
                "EVENTS_ANON_RATE": "100000000/60", "ANALYTICS_AGGREGATE_INTERVAL": os.environ.get("AGG", "5"), "LOG_LEVEL": "warning", "PASSWORD_HASH_MEMORY_KIB": "1024"})
    audifi = str(Path(sys.executable).with_name("audifi"))
    cmd = [audifi, "serve", "--port", str(port)]
    if taskset and shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    return subprocess.Popen(cmd, env=env, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError("server exited: " + (proc.stderr.read().decode() if proc.stderr else ""))
            try:
                async with s.get(base + "/ready") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("server not ready")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--no-taskset", action="store_true")
    args = ap.parse_args()
    if not args.no_taskset and shutil.which("taskset"):
        os.sched_setaffinity(0, {1})  # the load generator and the SQL baselines on core 1

    db = f"audifi_bench_{secrets.token_hex(4)}"
    prefix = f"audifi-bench-{secrets.token_hex(4)}:"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    dsn = _dsn(db)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="audifi-bench-")
    proc = start_server(dsn, prefix, port, tmp, not args.no_taskset)
    try:
        await wait_ready(base, proc)  # the server applied the migrations and created this month's partitions
        per_phase = int(args.seconds * 250_000 / BATCH) + 10  # more batches than any phase can take
        print(f"building {per_phase} batches × {BATCH} events per phase …", flush=True)
        results: dict[str, list[float]] = {"http": [], "sql": [], "copy": []}
        server_cpu: list[float] = []
        warm = Workload(100, "warm")
        await phase_http(base, warm, args.concurrency, 3.0)  # every pooled connection prepared, code paths hot
        await phase_sql(dsn, Workload(100, "warm2"), args.concurrency, 3.0)
        for r in range(args.rounds):
            for name in ("sql", "http", "copy"):
                load = Workload(per_phase, f"{name}{r}")
                await _truncate(dsn)
                if name == "http":
                    cpu0 = _cpu(proc.pid)
                    rate = await phase_http(base, load, args.concurrency, args.seconds)
                    server_cpu.append((_cpu(proc.pid) - cpu0) / (rate * args.seconds / BATCH))
                elif name == "sql":
                    rate = await phase_sql(dsn, load, args.concurrency, args.seconds)
                else:
                    rate = await phase_copy(dsn, load, args.concurrency, args.seconds)
                results[name].append(rate)
                print(f"round {r + 1} {name:5s} {rate:9.0f} events/s", flush=True)
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"\n== POST /events, batches of {BATCH}, {args.concurrency} in flight, {args.seconds:.0f} s × "
              f"{args.rounds} rounds (medians)")
        print(f"raw COPY into analytics_events        {med['copy']:9.0f} events/s")
        print(f"SQL baseline (COPY staging + dedupe)  {med['sql']:9.0f} events/s")
        print(f"POST /events (HTTP, durable)          {med['http']:9.0f} events/s   "
              f"= {med['http'] / med['sql'] * 100:5.1f} % of the SQL baseline (target ≥ 80 %)")
        paired = statistics.median(h / q for h, q in zip(results["http"], results["sql"], strict=True))
        print(f"median of the per-round ratios http/sql: {paired * 100:.1f} % (each round's two phases back to back)")
        print(f"server process CPU per batch of {BATCH}: {statistics.median(server_cpu) * 1000:.1f} ms")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        from redis.asyncio import Redis

        r = Redis.from_url(REDIS_URL)
        keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
