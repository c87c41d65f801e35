"""A bus test rig: outbox → relay → stream → the analytics consumer, on memory or on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from audifi_adapters.analytics import register_memory_repositories, register_postgres_repositories
from audifi_adapters.analytics_context import PlatformMasterDirectory
from audifi_adapters.bus import (
    ConsumerSettings,
    InMemoryEventLog,
    PostgresUnsentEvents,
    RedisEventLog,
    StreamBus,
    StreamGuardian,
)
from audifi_adapters.events import (
    InProcessEventBus,
    MemoryOutbox,
    OutboxRelay,
    PostgresOutbox,
    idempotent_consumer,
)
from audifi_adapters.memory import InMemoryDatabase, InMemoryRateLimiter
from audifi_adapters.postgres import PostgresDatabase
from audifi_core.analytics import AnalyticsService, Interval, Scope
from audifi_core.events import DomainEvent
from audifi_core.system import FrozenClock, RandomIds

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
FAST = ConsumerSettings(batch=50, block_ms=50, min_idle_ms=100, max_deliveries=3, claim_every=0.0)
_n = itertools.count()


def vote(i: int | str, master: str = "m1") -> DomainEvent:
    return DomainEvent(id=f"evt_vote_{i}", type="vote.cast", occurred_at=T0,
                       data={"sessionId": "s1", "decisionId": "d1", "masterId": master, "userId": f"u{i}"})


class Rig:
    """The pieces the analytics context wires, without HTTP or the other contexts."""

    def __init__(self, db: Any, redis: Redis | None = None, prefix: str = "", *, settings: ConsumerSettings = FAST,
                 margin: float = 300.0, consumer_name: str | None = None, delay: float = 0.0):
        self.db = db
        self.redis = redis
        pg = isinstance(db, PostgresDatabase)
        if pg:
            register_postgres_repositories()
        else:
            register_memory_repositories()
        self.log = RedisEventLog(redis, prefix) if redis is not None else InMemoryEventLog()
        unsent = PostgresUnsentEvents(db, self.log.stream) if pg and redis is not None else None
        self.bus = StreamBus(self.log, consumer_name=consumer_name or f"rig-{next(_n)}", settings=settings,
                             unsent=unsent)
        self.in_process = InProcessEventBus()
        self.in_process.subscribe("stream-relay", self.bus.relay)
        self.relay = OutboxRelay(PostgresOutbox(db) if pg else MemoryOutbox(db), self.in_process)
        self.clock = FrozenClock(T0)
        self.analytics = AnalyticsService(db.uow, self.clock, RandomIds(), InMemoryRateLimiter(self.clock),
                                          PlatformMasterDirectory(None, db.uow))
        self.handled: list[str] = []

        async def counted(u: Any, event: DomainEvent) -> None:
            self.handled.append(event.id)
            await self.analytics.on_event(u, event)

        self.consume = idempotent_consumer("analytics", db.uow, counted)

        async def consume_slowly(event: DomainEvent) -> None:
            await self.consume(event)
            await asyncio.sleep(delay)  # committed, not acked yet: where a crash hurts most

        self.bus.subscribe("analytics", consume_slowly if delay else self.consume)
        self.guardian = (StreamGuardian(self.log, db, self.bus, stream=self.log.stream, margin=margin)
                         if pg and redis is not None else None)

    @classmethod
    async def open(cls, dsn: str | None, redis_url: str | None = None, prefix: str = "", **kw: Any) -> Rig:
        db = await PostgresDatabase.connect(dsn, 6) if dsn else InMemoryDatabase()
        redis = Redis.from_url(redis_url) if redis_url else None
        return cls(db, redis, prefix, **kw)

    async def close(self) -> None:
        await self.bus.stop()
        if isinstance(self.db, PostgresDatabase):
            await self.db.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def emit(self, *events: DomainEvent) -> None:
        async with self.db.uow() as u:
            for e in events:
                u.emit(e)

    async def publish(self) -> int:
        """The outbox relay's round: committed events to the stream."""
        return await self.relay.drain_once()

    async def pump(self) -> int:
        await self.publish()
        return await self.bus.drain()

    async def votes(self, master: str = "m1") -> int:
        async with self.db.uow(readonly=True) as u:
            r = await u.analytics.report(Scope.MASTER, master, T0, T0, Interval.HOUR)
        return r.totals.votes

    async def until(self, check: Any, within: float = 20.0) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            got = await check()
            if got:
                return got
            if loop.time() > deadline:
                raise AssertionError(f"not reached within {within} s (last {got!r})")
            await asyncio.sleep(0.05)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
