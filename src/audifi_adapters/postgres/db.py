"""The pool (reset query off, FIFO gate in front) and the PostgreSQL unit of work with its outbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import asyncpg
import orjson

from audifi_core.events import DomainEvent

from .users import PostgresProcessedEvents, PostgresUserRepository

__all__ = ["PostgresDatabase", "PostgresUnitOfWork"]


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release reset query; pooled connections never keep session state."""


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                              schema="pg_catalog")


class PostgresDatabase:
    def __init__(self, pool: asyncpg.Pool, size: int, dsn: str):
        self.pool = pool
        self.dsn = dsn
        self._gate = asyncio.Semaphore(size)  # FIFO: fair acquisition with the reset query off
        self.on_commit: list[Callable[[], None]] = []

    @classmethod
    async def connect(cls, dsn: str, size: int = 10) -> PostgresDatabase:
        pool = await asyncpg.create_pool(dsn, min_size=min(2, size), max_size=size, reset=_no_reset,
                                         init=_init, command_timeout=30)
        return cls(pool, size, dsn)

    async def close(self, grace: float = 10.0) -> None:
        """Close the pool; connections still held after ``grace`` seconds are terminated."""
        try:
            await asyncio.wait_for(self.pool.close(), grace)
        except TimeoutError:
            import structlog

            structlog.get_logger("audifi.postgres").error("pool_close_timed_out", held=self.pool.get_size()
                                                          - self.pool.get_idle_size())
            self.pool.terminate()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._gate, self.pool.acquire() as conn:
            yield conn

    async def dedicated(self) -> asyncpg.Connection:
        """A connection outside the pool, for session state (advisory locks, LISTEN)."""
        conn = await asyncpg.connect(self.dsn)
        await _init(conn)
        return conn

    def uow(self, readonly: bool = False) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self, readonly=readonly)

    async def check(self) -> None:
        async with self.connection() as c:
            await c.fetchval("SELECT 1")


class PostgresUnitOfWork:
    """One transaction on one pooled connection.

    Other bounded contexts add their repositories with ``PostgresUnitOfWork.register("jobs",
    PostgresJobRepository)``: each factory gets the connection and becomes ``uow.<name>``.
    """

    repositories: dict[str, Callable[[asyncpg.Connection], Any]] = {}

    @classmethod
    def register(cls, name: str, factory: Callable[[asyncpg.Connection], Any]) -> None:
        cls.repositories[name] = factory

    def __init__(self, db: PostgresDatabase, readonly: bool = False):
        self.db = db
        self.readonly = readonly
        self._events: list[DomainEvent] = []
        self._cm: Any = None
        self._tx: Any = None
        self.conn: asyncpg.Connection

    def emit(self, event: DomainEvent) -> None:
        if self.readonly:
            raise RuntimeError("read-only unit of work")
        self._events.append(event)

    async def __aenter__(self) -> Self:
        self._cm = self.db.connection()
        self.conn = await self._cm.__aenter__()
        try:
            if not self.readonly:
                self._tx = self.conn.transaction()
                await self._tx.start()
            self.users = PostgresUserRepository(self.conn)
            self.processed = PostgresProcessedEvents(self.conn)
            for name, factory in self.repositories.items():
                setattr(self, name, factory(self.conn))
        except BaseException:
            await self._cm.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        committed = False
        try:
            if self._tx is not None:
                if exc_type is not None:
                    await self._tx.rollback()
                else:
                    if self._events:
                        await self.conn.executemany(
                            "INSERT INTO outbox (id, type, occurred_at, data) VALUES ($1, $2, $3, $4)",
                            [(e.id, e.type, e.occurred_at, e.data) for e in self._events])
                    await self._tx.commit()
                    committed = True
        except BaseException:
            if self._tx is not None and not committed:
                try:
                    await self._tx.rollback()
                except Exception:  # noqa: BLE001 - already failing; the original error wins
                    pass
            raise
        finally:
            await self._cm.__aexit__(None, None, None)
        if committed and self._events:
            for cb in list(self.db.on_commit):
                cb()
