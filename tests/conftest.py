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
# A watchdog: when one test runs over 60 s, record every asyncio task's stack; the run's summary
# prints them (pytest-timeout fails the test at 300 s), so a hang in CI says where it is.
_HANG_LOG = Path(os.environ.get("TMPDIR", "/tmp")) / f"audifi-test-hangs-{os.getpid()}.log"


def _task_watchdog(state: dict) -> None:  # type: ignore[type-arg]
    import gc
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(10)
            if not state.get("test") or time.monotonic() - state["since"] < 60:
                continue
            lines = [f"=== slow test {state['test']}: asyncio tasks ==="]
            for obj in gc.get_objects():
                try:
                    if not (isinstance(obj, asyncio.BaseEventLoop) and obj.is_running()):
                        continue
                    for task in list(asyncio.all_tasks(obj)):
                        frames = task.get_stack(limit=10)
                        where = " <- ".join(f"{f.f_code.co_name}@{Path(f.f_code.co_filename).name}:{f.f_lineno}"
                                            for f in frames)
                        lines.append(f"  {task.get_name()}: {where}")
                except Exception as e:  # noqa: BLE001 - a diagnostic must not die
                    lines.append(f"  (could not read a loop: {e!r})")
            with _HANG_LOG.open("a") as f:
                f.write("\n".join(lines) + "\n")
            state["since"] = time.monotonic()

    threading.Thread(target=watch, name="task-watchdog", daemon=True).start()


def pytest_configure(config: pytest.Config) -> None:
    import time

    config.stash[_WATCH_KEY] = state = {"since": time.monotonic(), "test": ""}
    _task_watchdog(state)


_WATCH_KEY = pytest.StashKey[dict]()  # type: ignore[type-arg]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    import time

    state = item.config.stash[_WATCH_KEY]
    state["since"], state["test"] = time.monotonic(), item.nodeid
    yield
    state["since"], state["test"] = time.monotonic(), ""


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if _HANG_LOG.exists():
        terminalreporter.section("slow tests: asyncio tasks")
        terminalreporter.write(_HANG_LOG.read_text())
        _HANG_LOG.unlink()
