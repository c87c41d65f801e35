"""Shared fixtures: a throwaway PostgreSQL database and a Redis key prefix per test run.

A test needing PostgreSQL or Redis skips when they are not reachable on a laptop; in CI
(``CI=true``) it fails instead, so real adapters are always exercised there.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from audifi_adapters.config import Config
from audifi_adapters.postgres import apply_migrations
from audifi_core.system import FrozenClock

PG_ADMIN = os.environ.get("AUDIFI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AUDIFI_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_MNEMONIC = ("weekend flock cat honey shine tennis crouch galaxy credit net whisper equip "
                 "ketchup panther corn diamond boy crash neutral text brisk damp unhappy flush")


def _unavailable(what: str, err: Exception) -> None:
    msg = f"{what} is not reachable: {err!r}"
    if IN_CI:
        pytest.fail(msg + " (CI requires it)")
    pytest.skip(msg)


def _run(fn) -> None:
    """Run ``fn()`` (a coroutine function) to completion on a private loop in a worker thread,
    so session fixtures work even when first requested from inside a running loop."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        ex.submit(lambda: asyncio.run(fn())).result()


def _dsn_for(db: str) -> str:
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{db}"


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A fresh database for this test run, migrated; dropped afterwards."""
    name = f"audifi_test_{secrets.token_hex(4)}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await apply_migrations(_dsn_for(name))

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        _run(create)
    except (OSError, asyncpg.PostgresError) as e:
        _unavailable("PostgreSQL", e)
    yield _dsn_for(name)
    _run(drop)


@pytest.fixture(scope="session")
def redis_base() -> Iterator[str]:
    """The Redis URL and a key prefix unique to this run; the run's keys are deleted afterwards."""
    prefix = f"audifi-test-{secrets.token_hex(4)}:"

    async def ping() -> None:
        r = Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            await r.ping()
        finally:
            await r.aclose()

    async def cleanup() -> None:
        r = Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
            if keys:
                await r.delete(*keys)
        finally:
            await r.aclose()

    try:
        _run(ping)
    except (OSError, Exception) as e:  # noqa: BLE001 - any connection failure
        _unavailable("Redis", e)
    yield prefix
    _run(cleanup)


@pytest.fixture
async def pg_clean(pg_dsn: str) -> AsyncIterator[str]:
    """The run's database with every table emptied before the test."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
        if tables:
            await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    yield pg_dsn


@pytest.fixture
def redis_prefix(redis_base: str) -> str:
    """A key prefix unique to this test."""
    return f"{redis_base}{secrets.token_hex(3)}:"


@pytest.fixture
def clock() -> FrozenClock:
    """A clock that moves only when told, starting now (Redis expiry runs on real time)."""
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


def base_config(tmp_path: Path, **overrides: object) -> Config:
    """A dev config with fixed secrets and a cheap password hash (tests only)."""
    values: dict[str, object] = dict(
        data_dir=tmp_path / "data",
        jwt_secret="test-jwt-secret-0123456789abcdef0123456789",
        magic_link_secret="test-magic-secret-0123456789abcdef01234567",
        encryption_key="test-encryption-key-0123456789abcdef012345",
        custody_mnemonic=TEST_MNEMONIC,
        password_hash_memory_kib=1024,
    )
    values.update(overrides)
    return Config.dev(**values)


@pytest.fixture(params=["memory", "real"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """Every auth/HTTP test runs twice: all in memory, and on real PostgreSQL + Redis."""
    if request.param == "memory":
        return base_config(tmp_path)
    dsn = request.getfixturevalue("pg_clean")
    prefix = request.getfixturevalue("redis_prefix")
    return base_config(tmp_path, database_url=dsn, redis_url=REDIS_URL, redis_prefix=prefix)


# ---------------------------------------------------------------------------------------------
# A watchdog: when one test runs over 60 s, print every asyncio task's stack (pytest-timeout
# then fails it at 300 s with the threads' stacks), so a hang in CI says where it is.
def _task_watchdog() -> dict:
    import gc
    import sys
    import threading
    import time

    state = {"since": time.monotonic(), "test": ""}

    def watch() -> None:
        while True:
            time.sleep(10)
            if time.monotonic() - state["since"] < 60:
                continue
            print(f"\n=== slow test {state['test']}: asyncio tasks ===", file=sys.__stderr__, flush=True)
            for obj in gc.get_objects():
                if isinstance(obj, asyncio.AbstractEventLoop) and obj.is_running():
                    for task in list(asyncio.all_tasks(obj)):
                        frames = task.get_stack(limit=10)
                        where = " <- ".join(f"{f.f_code.co_name}@{Path(f.f_code.co_filename).name}:{f.f_lineno}"
                                            for f in frames)
                        print(f"  {task.get_name()}: {where}", file=sys.__stderr__, flush=True)
            state["since"] = time.monotonic()

    threading.Thread(target=watch, name="task-watchdog", daemon=True).start()
    return state


_WATCH = _task_watchdog()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    import time

    _WATCH["since"], _WATCH["test"] = time.monotonic(), item.nodeid
    yield
    _WATCH["since"] = time.monotonic()
