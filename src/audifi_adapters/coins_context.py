"""The coin context for the composition root: ``platform.coins`` (a ``CoinService``).

Needs the chain context (opened before it): the Chain port, the job service (deploy hooks) and, on
the in-process dev chain, a fresh start (coins recorded on an earlier dev chain are forgotten, as
the indexer forgets its projections). In the background it turns final staking logs the indexer
projected into ``coin.staked`` / ``coin.unstaked`` / ``coin.reward_paid`` domain events.

Settings (environment, all optional): ``COIN_DEADLINE_SECONDS`` (default 600),
``COIN_LIQUIDITY_SLIPPAGE_BPS`` (default 50), ``COIN_EVENTS_INTERVAL`` (seconds, default the chain
poll interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from audifi_core.coins.ports import CoinReads
from audifi_core.coins.service import CoinService, CoinSettings

from .coins.reads import Web3CoinReads
from .coins.store_memory import register_memory_coin_repository
from .coins.store_postgres import register_postgres_coin_repository
from .postgres.db import PostgresDatabase
from .tasks import start_background

__all__ = ["open_context", "relay_forever"]

log = logging.getLogger("audifi.coins")


def _reads_for(chain: Any) -> CoinReads:
    w3 = getattr(chain, "w3", None)
    if w3 is None:
        raise RuntimeError(f"the coin context needs a web3-backed chain, not {type(chain).__name__}")
    return Web3CoinReads(w3)


async def relay_forever(service: CoinService, confirmations: int, interval: float) -> None:
    delay = interval
    while True:
        try:
            await service.relay_chain_events(confirmations)
            delay = interval
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - keep following; back off while the node or database is down
            log.warning("coin events relay failed: %r", e)
            delay = min(delay * 2, 30.0)
        await asyncio.sleep(delay)


async def open_context(platform: Any, stack: contextlib.AsyncExitStack, *, run_background: bool) -> None:
    services = platform.chain
    if services is None:
        log.warning("no chain context: the coin context is not opened")
        return
    if isinstance(platform.database, PostgresDatabase):
        register_postgres_coin_repository()
    else:
        register_memory_coin_repository()
    cfg = platform.config
    settings = CoinSettings(
        default_deadline_seconds=int(cfg.setting("COIN_DEADLINE_SECONDS", "600") or 600),
        default_slippage_bps=int(cfg.setting("COIN_LIQUIDITY_SLIPPAGE_BPS", "50") or 50))
    service = CoinService(uow=platform.uow, chain=services.chain, reads=_reads_for(services.chain),
                          jobs=services.jobs, clock=platform.clock, ids=platform.ids, settings=settings)
    service.hook_into(services.jobs)
    if getattr(services, "evm", None) is not None:
        async with platform.uow() as u:
            dropped = await u.coins.forget_chain_state()
        if dropped:
            log.warning("dev chain is new: forgot %s coin(s) deployed on the previous one", dropped)
    platform.coins = service
    if run_background:
        interval = float(cfg.setting("COIN_EVENTS_INTERVAL", str(getattr(cfg, "chain_poll_interval", 0.5))) or 0.5)
        start_background(stack, relay_forever(service, services.confirmations, interval), "audifi-coin-events")
