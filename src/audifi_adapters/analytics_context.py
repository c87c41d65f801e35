"""The analytics and notifications context, and the event bus they consume (see contexts.py).

Opened last, it switches the platform's bus to streams: the outbox relay's in-process bus gets
one more subscriber, ``stream-relay``, which appends every committed event to the stream (Redis
Streams with ``REDIS_URL``, else in memory); ``platform.bus`` becomes the :class:`StreamBus`, so
``subscribe`` means a consumer group from here on. With PostgreSQL and Redis, the guardian
re-publishes from the outbox whatever Redis lost (see ``bus/guardian.py``).

Settings (``config.setting``): ``EVENTS_ANON_RATE`` (``120/60``: requests per seconds per IP),
``EVENTS_USER_RATE`` (``600/60``), ``ANALYTICS_AGGREGATE_INTERVAL`` (seconds, 5),
``BUS_CLAIM_IDLE_MS`` (30000), ``BUS_MAX_DELIVERIES`` (5), ``BUS_BLOCK_MS`` (1000),
``BUS_CLAIM_EVERY`` (5), ``BUS_CONSUMER_NAME`` (host-pid), ``BUS_REPLAY_MARGIN`` (seconds, 300),
``BUS_GUARD_INTERVAL`` (seconds, 1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from audifi_core.analytics import CONSUMER as ANALYTICS
from audifi_core.analytics import AnalyticsService, AnalyticsSettings
from audifi_core.errors import NotFound
from audifi_core.events import DomainEvent
from audifi_core.notifications import CONSUMER as NOTIFICATIONS
from audifi_core.notifications import NotificationService
from audifi_core.uow import UnitOfWorkFactory

from .analytics import (
    ensure_partitions,
    register_memory_repositories,
    register_postgres_repositories,
)
from .bus import (
    ConsumerSettings,
    EventLog,
    InMemoryEventLog,
    PostgresUnsentEvents,
    RedisEventLog,
    StreamBus,
    StreamGuardian,
    cancel_and_wait,
)
from .events import idempotent_consumer
from .postgres.db import PostgresDatabase

__all__ = ["open_context", "PlatformMasterDirectory", "RELAY_CONSUMER"]

log = structlog.get_logger("audifi.analytics")
RELAY_CONSUMER = "stream-relay"


def _rate(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    if not text:
        return default
    n, _, w = text.partition("/")
    return int(n), int(w or 60)


class PlatformMasterDirectory:
    """Who owns a master: the masters context when it is wired, else what master.registered told us."""

    def __init__(self, platform: Any, uow: UnitOfWorkFactory):
        self._platform = platform
        self._uow = uow

    async def artist_of(self, master_id: str) -> str | None:
        get = getattr(getattr(self._platform, "masters", None), "get_master", None)
        if get is not None:
            try:
                master = await get(master_id)
            except NotFound:
                master = None
            except TypeError:  # another signature than get_master(master_id): use our own map
                master = None
                get = None
            if get is not None:
                return getattr(master, "artist_id", None) if master is not None else None
        async with self._uow(readonly=True) as u:
            return await u.analytics.artist_of(master_id)  # type: ignore[attr-defined]

    async def masters_of(self, artist_id: str) -> list[str]:
        async with self._uow(readonly=True) as u:
            return await u.analytics.masters_of(artist_id)  # type: ignore[attr-defined]


async def _every(interval: float, fn: Callable[[], Awaitable[Any]], name: str,
                 wake: asyncio.Event | None = None) -> None:
    while True:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a background job must outlive one failure
            log.warning("analytics_job_failed", job=name, error=repr(e))
        if wake is None:
            await asyncio.sleep(interval)
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await wake.wait()
        wake.clear()


async def open_context(platform: Any, stack: contextlib.AsyncExitStack, *, run_background: bool) -> None:
    cfg = platform.config
    setting = cfg.setting
    db = platform.database
    pg = db if isinstance(db, PostgresDatabase) else None
    if pg is not None:
        register_postgres_repositories()
        async with pg.connection() as c:
            await ensure_partitions(c, platform.clock.now())
    else:
        register_memory_repositories()

    # -- the bus: outbox → (in-process relay) → stream → consumer groups
    consumer_settings = ConsumerSettings(
        batch=int(setting("BUS_BATCH", "100")), block_ms=int(setting("BUS_BLOCK_MS", "1000")),
        min_idle_ms=int(setting("BUS_CLAIM_IDLE_MS", "30000")),
        max_deliveries=int(setting("BUS_MAX_DELIVERIES", "5")),
        claim_every=float(setting("BUS_CLAIM_EVERY", "5")))
    event_log: EventLog
    if platform.redis is not None:
        event_log = RedisEventLog(platform.redis, cfg.redis_prefix)
        unsent = PostgresUnsentEvents(pg, event_log.stream) if pg is not None else None
        platform.adapters["bus"] = "redis-streams"
    else:
        event_log = InMemoryEventLog()
        unsent = None
        platform.adapters["bus"] = "memory-streams"
    bus = StreamBus(event_log, consumer_name=setting("BUS_CONSUMER_NAME"), settings=consumer_settings, unsent=unsent)
    in_process = platform.bus
    in_process.subscribe(RELAY_CONSUMER, bus.relay)
    platform.bus = bus
    platform.extras["streams"] = bus
    platform.extras["in_process_bus"] = in_process
    guardian: StreamGuardian | None = None
    if pg is not None and isinstance(event_log, RedisEventLog):
        guardian = StreamGuardian(event_log, pg, bus, stream=event_log.stream,
                                  margin=float(setting("BUS_REPLAY_MARGIN", "300")),
                                  interval=float(setting("BUS_GUARD_INTERVAL", "1")))
        platform.extras["bus_guardian"] = guardian

    # -- analytics and notifications
    directory = PlatformMasterDirectory(platform, platform.uow)
    anon = _rate(setting("EVENTS_ANON_RATE"), (120, 60))
    user = _rate(setting("EVENTS_USER_RATE"), (600, 60))
    analytics = AnalyticsService(platform.uow, platform.clock, platform.ids, platform.limiter, directory,
                                 AnalyticsSettings(anon_limit=anon[0], window_seconds=anon[1], user_limit=user[0],
                                                   user_window_seconds=user[1]))
    notifications = NotificationService(platform.uow, platform.mailer, platform.clock, platform.ids, directory)
    platform.analytics = analytics
    platform.notifications = notifications
    platform.extras["master_directory"] = directory

    mail_wake = asyncio.Event()
    bus.subscribe(ANALYTICS, idempotent_consumer(ANALYTICS, platform.uow, analytics.on_event))
    notify = idempotent_consumer(NOTIFICATIONS, platform.uow, notifications.on_event)

    async def notify_then_mail(event: DomainEvent) -> None:
        await notify(event)
        mail_wake.set()  # committed: the sender may pick the new mails up now

    bus.subscribe(NOTIFICATIONS, notify_then_mail)

    if not run_background:
        return
    bus.start()
    stack.push_async_callback(bus.stop)
    tasks = [
        asyncio.create_task(_every(float(setting("ANALYTICS_AGGREGATE_INTERVAL", "5")), analytics.aggregate,
                                   "aggregate"), name="audifi-analytics-aggregate"),
        asyncio.create_task(_every(3600, analytics.prune, "prune-ids"), name="audifi-analytics-prune"),
        asyncio.create_task(_every(5, notifications.deliver_mail, "mail", mail_wake), name="audifi-notify-mail"),
    ]
    if pg is not None:
        async def partitions() -> None:
            async with pg.connection() as c:
                await ensure_partitions(c, platform.clock.now())

        tasks.append(asyncio.create_task(_every(6 * 3600, partitions, "partitions"),
                                         name="audifi-analytics-partitions"))
    if guardian is not None:
        tasks.append(asyncio.create_task(guardian.run(), name="audifi-bus-guardian"))
    else:
        async def trim() -> None:  # without the guardian, still drop what every group has acked
            floor = await event_log.floor()
            if floor.first_id is not None:
                await event_log.trim_before(floor.first_id)

        tasks.append(asyncio.create_task(_every(30, trim, "bus-trim"), name="audifi-bus-trim"))

    async def stop() -> None:
        await cancel_and_wait(tasks)

    stack.push_async_callback(stop)
