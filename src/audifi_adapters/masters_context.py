"""The masters context for the composition root (see ``contexts.py``).

Builds the ContentStore (``platform.content``) and the MasterService (``platform.masters``),
registers the masters repositories on the unit of work, installs the chain-job hooks and, with
``run_background``, starts the scheduler that launches and closes IPOs and emits
``dividend.deposited`` for deposits the indexer saw.

Settings (``config.setting``): ``MASTER_DAILY_QUOTA`` (10), ``MASTER_CACHE_TTL`` seconds a
registered master may be served from memory (1.0), ``MASTER_TICK_INTERVAL`` seconds between
scheduler ticks (1.0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from audifi_core.masters.service import MasterService, MasterSettings

from .masters.content import open_content_store
from .masters.memory import register_memory_master_repositories
from .masters.postgres import register_postgres_master_repositories
from .postgres.db import PostgresDatabase
from .tasks import start_background

__all__ = ["open_context", "settings_of", "run_scheduler"]

log = logging.getLogger("audifi.masters")


def settings_of(config: Any, confirmations: int = 0) -> MasterSettings:
    return MasterSettings(
        daily_quota=int(config.setting("MASTER_DAILY_QUOTA", "10")),
        upload_limit_bytes=int(config.upload_limit_bytes),
        cache_ttl=float(config.setting("MASTER_CACHE_TTL", "1.0")),
        confirmations=confirmations,
    )


async def run_scheduler(service: MasterService, interval: float) -> None:
    """Tick forever; failures are logged and retried with back-off (every step is idempotent)."""
    delay = interval
    while True:
        try:
            await service.tick()
            delay = interval
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - keep scheduling; state is durable
            log.warning("masters scheduler tick failed: %r", e)
            delay = min(delay * 2, 30.0)
        await asyncio.sleep(delay)


async def open_context(platform: Any, stack: contextlib.AsyncExitStack, *, run_background: bool) -> None:
    if platform.jobs is None or platform.chain is None:
        raise RuntimeError("the masters context needs the chain context")
    if isinstance(platform.database, PostgresDatabase):
        register_postgres_master_repositories()
    else:
        register_memory_master_repositories()
    cfg = platform.config
    if platform.content is None:
        store, name = await open_content_store(cfg, stack)
        platform.content = store
        platform.adapters["content"] = name
        platform.checks["content"] = store.check
    service = MasterService(uow=platform.uow, jobs=platform.jobs, chain=platform.chain.chain,
                            content=platform.content, clock=platform.clock, ids=platform.ids,
                            settings=settings_of(cfg, int(getattr(platform.chain, "confirmations", 0) or 0)))
    service.install_hooks()
    platform.bus.subscribe("masters.custodial-addresses", service.on_event)
    platform.masters = service
    if run_background:
        interval = float(cfg.setting("MASTER_TICK_INTERVAL", "1.0"))
        start_background(stack, run_scheduler(service, interval), "audifi-masters-scheduler")
