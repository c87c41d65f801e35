"""The V Studio context for the composition root (see ``contexts.py``).

Attaches ``platform.studio`` (the :class:`StudioService`) and, in ``platform.extras``:
``studio.hub`` (this instance's sockets), ``studio.masters`` / ``studio.holdings`` /
``studio.entitlements`` / ``studio.presence`` (the adapters in use; the memory ones can be seeded
by tests and dev tools). Settings (environment): ``STUDIO_COALESCE_MS`` (50),
``STUDIO_SEND_QUEUE`` (256 messages per socket), ``STUDIO_PRESENCE_TTL`` (30 s),
``STUDIO_SCHEDULER_INTERVAL`` (0.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from audifi_core.studio.service import REVOKED_TOPIC, STUDIO_TOPIC, StudioService, StudioSettings

from .memory.store import InMemoryUnitOfWork
from .postgres.db import PostgresDatabase, PostgresUnitOfWork
from .studio.bridges import PlatformEntitlements, PlatformShareHoldings, PlatformStudioMasters
from .studio.hub import LocalHub
from .studio.memory import (
    InMemoryBroadcaster,
    InMemoryEntitlements,
    InMemoryPresence,
    InMemoryShareHoldings,
    InMemoryStudioMasters,
    InMemoryStudioRepository,
)
from .studio.postgres import PostgresStudioRepository, PostgresVoteLedger
from .studio.redis import RedisBroadcaster, RedisPresence
from .tasks import start_background

__all__ = ["open_context", "HUB", "PRESENCE_REFRESH_SECONDS"]

log = structlog.get_logger("audifi.studio")

HUB = "studio.hub"
PRESENCE_REFRESH_SECONDS = 10.0

InMemoryUnitOfWork.register("studio", InMemoryStudioRepository)
PostgresUnitOfWork.register("studio", PostgresStudioRepository)


def _float(cfg: Any, name: str, default: float) -> float:
    raw = cfg.setting(name) if hasattr(cfg, "setting") else None
    return float(raw) if raw else default


async def _forever(name: str, fn: Any, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await fn()
        except Exception as e:  # noqa: BLE001 - keep the loop alive
            log.warning("studio_background_failed", task=name, error=repr(e))


async def open_context(platform: Any, stack: contextlib.AsyncExitStack, *, run_background: bool) -> None:
    cfg = platform.config
    coalesce = _float(cfg, "STUDIO_COALESCE_MS", 50.0) / 1000.0
    queue_limit = int(_float(cfg, "STUDIO_SEND_QUEUE", 256))
    presence_ttl = _float(cfg, "STUDIO_PRESENCE_TTL", 30.0)
    settings = StudioSettings(coalesce_interval=coalesce,
                              scheduler_interval=_float(cfg, "STUDIO_SCHEDULER_INTERVAL", 0.5))

    if platform.masters is not None:
        masters: Any = PlatformStudioMasters(platform.masters)
        holdings: Any = PlatformShareHoldings(platform.masters)
        platform.adapters["studio.masters"] = "masters"
    else:
        masters = InMemoryStudioMasters()
        holdings = InMemoryShareHoldings()
        platform.adapters["studio.masters"] = "memory"
    entitlements = PlatformEntitlements(platform, InMemoryEntitlements())

    if platform.redis is not None:
        broadcaster: Any = RedisBroadcaster(platform.redis, cfg.redis_prefix)
        presence: Any = RedisPresence(platform.redis, cfg.redis_prefix, ttl_seconds=presence_ttl)
        platform.adapters["studio.broadcaster"] = "redis"
    else:
        broadcaster = InMemoryBroadcaster()
        presence = InMemoryPresence()
        platform.adapters["studio.broadcaster"] = "memory"

    votes: Any = None
    tally_uow: Any = None
    if isinstance(platform.database, PostgresDatabase):
        votes = PostgresVoteLedger(platform.database)
        # tally reads of the coalescing pump on their own small pool: never queued behind a vote storm
        reads = await PostgresDatabase.connect(platform.database.dsn, 2)
        stack.push_async_callback(reads.close)
        tally_uow = reads.uow
    service = StudioService(uow=platform.uow, masters=masters, holdings=holdings, entitlements=entitlements,
                            broadcaster=broadcaster, presence=presence, clock=platform.clock, ids=platform.ids,
                            votes=votes, tally_uow=tally_uow, settings=settings)
    hub = LocalHub(interval=coalesce, queue_limit=queue_limit)
    broadcaster.listen(STUDIO_TOPIC, hub.on_message)
    broadcaster.listen(REVOKED_TOPIC, hub.on_revoked)
    await broadcaster.start()
    stack.push_async_callback(broadcaster.close)
    stack.callback(hub.close)
    stack.push_async_callback(service.close)
    platform.auth.on_revoke(service.announce_revoked)

    if run_background:
        async def heartbeat() -> None:
            conns = hub.local_conns()
            if conns:
                await service.refresh_presence(conns)

        start_background(stack, service.run_scheduler(), "studio-scheduler")
        start_background(stack, _forever("presence", heartbeat, min(PRESENCE_REFRESH_SECONDS, presence_ttl / 3)),
                         "studio-presence")

    platform.studio = service
    platform.extras[HUB] = hub
    platform.extras["studio.masters"] = masters
    platform.extras["studio.holdings"] = holdings
    platform.extras["studio.entitlements"] = entitlements.fallback
    platform.extras["studio.presence"] = presence
