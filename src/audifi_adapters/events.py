"""The in-process event bus and the outbox relay that feeds it (at least once)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from audifi_core.events import DomainEvent
from audifi_core.ports import EventHandler
from audifi_core.uow import UnitOfWork, UnitOfWorkFactory

from .memory.store import InMemoryDatabase
from .postgres.db import PostgresDatabase

__all__ = ["InProcessEventBus", "OutboxRelay", "idempotent_consumer", "MemoryOutbox", "PostgresOutbox"]

log = structlog.get_logger("audifi.outbox")
MAX_ATTEMPTS = 10


class InProcessEventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, EventHandler] = {}

    def subscribe(self, consumer: str, handler: EventHandler) -> None:
        self._handlers[consumer] = handler

    async def publish(self, event: DomainEvent) -> None:
        """Deliver to every consumer; raise if any failed, so the relay delivers again."""
        failures = []
        for name, handler in list(self._handlers.items()):
            try:
                await handler(event)
            except Exception as e:  # noqa: BLE001 - one consumer's bug must not starve the others
                log.warning("consumer_failed", consumer=name, event_id=event.id, error=repr(e))
                failures.append(name)
        if failures:
            raise RuntimeError(f"consumers failed: {', '.join(failures)}")


def idempotent_consumer(name: str, uow: UnitOfWorkFactory,
                        fn: Callable[[UnitOfWork, DomainEvent], Awaitable[None]]) -> EventHandler:
    """Run ``fn`` and record the event id in one transaction: an event takes effect once."""

    async def handle(event: DomainEvent) -> None:
        async with uow() as u:
            if await u.processed.mark(name, event.id):
                await fn(u, event)

    return handle


class MemoryOutbox:
    def __init__(self, db: InMemoryDatabase):
        self._db = db

    async def drain(self, deliver: Callable[[DomainEvent], Awaitable[None]], limit: int = 100) -> int:
        n = 0
        for row in [r for r in self._db.outbox if not r.published][:limit]:
            await deliver(row.event)
            row.published = True
            n += 1
        self._db.outbox[:] = [r for r in self._db.outbox if not r.published]
        return n


class PostgresOutbox:
    def __init__(self, db: PostgresDatabase):
        self._db = db

    async def drain(self, deliver: Callable[[DomainEvent], Awaitable[None]], limit: int = 100) -> int:
        async with self._db.connection() as c, c.transaction():
            rows = await c.fetch(
                "SELECT seq, id, type, occurred_at, data, attempts FROM outbox WHERE published_at IS NULL "
                "ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED", limit)
            done = []
            for r in rows:
                event = DomainEvent(id=r["id"], type=r["type"], occurred_at=r["occurred_at"], data=r["data"])
                try:
                    await deliver(event)
                except Exception as e:  # noqa: BLE001 - counted; retried next round, dead after MAX
                    dead = r["attempts"] + 1 >= MAX_ATTEMPTS
                    await c.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, "
                        "published_at = CASE WHEN $3 THEN now() ELSE NULL END WHERE seq = $1",
                        r["seq"], repr(e)[:500], dead)
                    if dead:
                        log.error("outbox_dead_letter", event_id=r["id"], error=repr(e))
                    break  # keep order: the rest waits for the next round
                done.append(r["seq"])
            if done:
                await c.execute("UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])", done)
            return len(done)


class OutboxRelay:
    """Delivers committed events to the bus; woken by commits, polls for other instances' commits."""

    def __init__(self, source: MemoryOutbox | PostgresOutbox, bus: InProcessEventBus, interval: float = 0.5):
        self._source = source
        self._bus = bus
        self._interval = interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def drain_once(self) -> int:
        total = 0
        while True:
            try:
                n = await self._source.drain(self._bus.publish)
            except Exception as e:  # noqa: BLE001 - a failing consumer: try again next round
                log.warning("outbox_drain_failed", error=repr(e))
                return total
            total += n
            if n == 0:
                return total

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._interval):  # cancellation-safe, unlike 3.11's wait_for
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.drain_once()
