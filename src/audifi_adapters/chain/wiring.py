"""``open_chain``: the chain adapter, job service, runner and indexer for a config, started on a stack.

The composition root calls::

    chain = await open_chain(config, stack, uow=uow, database=pg or mem, clock=clock, ids=ids)

* ``RPC_URL`` set: ``Web3Chain`` over HTTP(S) or WebSocket. Production signs with ``PRIVATE_KEY``
  and needs the factory addresses; dev (a local node such as anvil) derives a dev signer from the
  custody seed, funds it with ``anvil_setBalance``/``hardhat_setBalance`` and deploys the factories.
* ``RPC_URL`` unset (dev): a fresh in-process EVM; the first funded account is the platform signer
  and deploys both factories; ``/dev/rpc`` may expose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from eth_account import Account
from web3 import AsyncWeb3, WebSocketProvider
from web3.providers.rpc import AsyncHTTPProvider

from audifi_core.chain.indexer import Indexer, IndexerSettings
from audifi_core.chain.jobs import ChainJobs
from audifi_core.chain.model import JobError, JobStatus, TxState
from audifi_core.chain.ports import Chain
from audifi_core.ports import Clock, IdGenerator
from audifi_core.uow import UnitOfWorkFactory

from ..memory.store import InMemoryDatabase
from ..postgres.db import PostgresDatabase
from ..tasks import start_background
from .custody import HdCustody
from .evm import InProcessEvm
from .runner import JobRunner, LocalSignerLock, PostgresSignerLock, RunnerSettings, SignerLock
from .store_memory import job_listeners, register_memory_chain_repositories
from .store_postgres import JOBS_CHANNEL, register_postgres_chain_repositories
from .web3chain import Web3Chain

__all__ = ["ChainServices", "open_chain", "open_context", "ChainStartupError", "DEV_SIGNER_INDEX"]

log = logging.getLogger("audifi.chain")
Check = Callable[[], Awaitable[None]]
#: Custody index whose key signs for the platform on a dev JSON-RPC node (never used in production).
DEV_SIGNER_INDEX = 2**31 - 1
DEV_SIGNER_FUNDS = 10**24


class ChainStartupError(Exception):
    """The chain layer must not start (wrong chain, missing key or factory address)."""


@attrs.define
class ChainServices:
    chain: Chain
    jobs: ChainJobs
    runner: JobRunner
    indexer: Indexer
    checks: dict[str, Check]
    adapter: str  # "in-process" | "rpc"
    evm: InProcessEvm | None = None  # the in-process chain (``/dev/rpc``), else None
    confirmations: int = 0
    tasks: list[asyncio.Task[Any]] = attrs.Factory(list)


def _hexkey(value: str) -> bytes:
    v = value.strip()
    return bytes.fromhex(v[2:] if v.startswith("0x") else v)


async def _rpc_web3(url: str, stack: contextlib.AsyncExitStack) -> AsyncWeb3:
    if url.startswith(("ws://", "wss://")):
        w3 = AsyncWeb3(WebSocketProvider(url))
        await w3.provider.connect()
        stack.push_async_callback(w3.provider.disconnect)
        return w3
    provider = AsyncHTTPProvider(url, request_kwargs={"timeout": 30})
    w3 = AsyncWeb3(provider)

    async def close() -> None:
        with contextlib.suppress(Exception):
            await provider.disconnect()

    stack.push_async_callback(close)
    return w3


async def _fund_dev_signer(w3: AsyncWeb3, address: str) -> None:
    if await w3.eth.get_balance(address) >= DEV_SIGNER_FUNDS // 2:
        return
    for method in ("anvil_setBalance", "hardhat_setBalance"):
        resp = await w3.provider.make_request(method, [address, hex(DEV_SIGNER_FUNDS)])  # type: ignore[arg-type]
        if "error" not in resp:
            return
    raise ChainStartupError(f"the dev signer {address} has no funds and the node cannot set balances")


async def open_chain(config: Any, stack: contextlib.AsyncExitStack, *, uow: UnitOfWorkFactory,
                     database: PostgresDatabase | InMemoryDatabase | None, clock: Clock, ids: IdGenerator,
                     confirmations: int | None = None, balance_floor: int = 0, poll_interval: float = 0.5,
                     bump_after: float = 60.0, master_factory_address: str | None = None,
                     coin_factory_address: str | None = None, run_background: bool = True) -> ChainServices:
    """Build the chain layer for ``config`` (see the module doc); tasks and clients close with ``stack``."""
    if isinstance(database, PostgresDatabase):
        register_postgres_chain_repositories()
    else:
        register_memory_chain_repositories()
    custody = HdCustody(config.custody_mnemonic) if getattr(config, "custody_mnemonic", None) else None
    production = bool(getattr(config, "production", False))
    evm: InProcessEvm | None = None

    if config.rpc_url:
        w3 = await _rpc_web3(config.rpc_url, stack)
        chain_id = int(await w3.eth.chain_id)
        if production:
            if chain_id != config.chain_id:
                raise ChainStartupError(f"RPC_URL serves chain {chain_id}, CHAIN_ID says {config.chain_id}")
            if not config.private_key:
                raise ChainStartupError("PRIVATE_KEY is required with RPC_URL in production")
            key = _hexkey(config.private_key)
            if not (master_factory_address and coin_factory_address):
                raise ChainStartupError("production needs MASTER_FACTORY_ADDRESS and COIN_FACTORY_ADDRESS")
            factories = {"MasterFactory": master_factory_address, "CoinFactory": coin_factory_address}
        else:
            if custody is None:
                raise ChainStartupError("a dev RPC chain needs the custody seed to derive its dev signer")
            key = custody.private_key_for(DEV_SIGNER_INDEX)
            await _fund_dev_signer(w3, Account.from_key(key).address)
            if master_factory_address and coin_factory_address:
                factories = {"MasterFactory": master_factory_address, "CoinFactory": coin_factory_address}
            else:
                factories = await Web3Chain.deploy_factories(w3, key, chain_id)
                log.info("deployed factories on the dev node: %s", factories)
        chain = Web3Chain(w3, chain_id=chain_id, platform_key=key, factories=factories, custody=custody,
                          name="rpc")
        adapter = "rpc"
        n_conf = confirmations if confirmations is not None else (5 if production else 0)
    else:
        if production:
            raise ChainStartupError("production needs RPC_URL")
        evm = InProcessEvm()
        stack.callback(evm.close)
        chain_id = int(await evm.w3.eth.chain_id)
        factories = await Web3Chain.deploy_factories(evm.w3, evm.keys[0], chain_id)
        chain = Web3Chain(evm.w3, chain_id=chain_id, platform_key=evm.keys[0], factories=factories,
                          custody=custody, name="in-process", priority_fee=10**9, retries=0)
        adapter = "in-process"
        n_conf = 0  # one block per transaction: mined means final

    jobs = ChainJobs(uow, clock, ids)
    settings = RunnerSettings(confirmations=n_conf, balance_floor=balance_floor, poll_interval=poll_interval,
                              bump_after=bump_after)
    runner_ref: list[JobRunner] = []

    def wake() -> None:
        if runner_ref:
            runner_ref[0].wake()

    lock: SignerLock
    if isinstance(database, PostgresDatabase):
        lock = PostgresSignerLock(database.dedicated, on_notify=wake, channel=JOBS_CHANNEL)
    else:
        lock = LocalSignerLock(database)
        if isinstance(database, InMemoryDatabase):
            job_listeners(database)[f"runner-{id(lock)}"] = wake
    runner = JobRunner(chain, jobs, uow, clock, ids, lock, settings)
    runner_ref.append(runner)
    indexer = Indexer(chain, uow, IndexerSettings(confirmations=n_conf))

    if await indexer.check_identity(disposable_chain=evm is not None) or evm is not None:
        await _forget_signer_state(uow, clock)

    async def chain_check() -> None:
        await chain.head()

    services = ChainServices(chain=chain, jobs=jobs, runner=runner, indexer=indexer, checks={"chain": chain_check},
                             adapter=adapter, evm=evm, confirmations=n_conf)
    if run_background:
        for name, coro in (("audifi-chain-runner", runner.run()),
                           ("audifi-chain-indexer", _index_forever(indexer, poll_interval))):
            services.tasks.append(start_background(stack, coro, name))
    log.info("chain ready: adapter=%s chain_id=%s confirmations=%s factories=%s", adapter, chain_id, n_conf,
             factories)
    return services


async def _forget_signer_state(uow: UnitOfWorkFactory, clock: Clock) -> None:
    """A new dev chain: transactions of the old one can never land; their jobs fail, nonces are re-read."""
    async with uow() as u:
        await u.chain_nonces.forget_all()  # type: ignore[attr-defined]
        for tx in await u.chain_jobs.open_txs():  # type: ignore[attr-defined]
            await u.chain_jobs.update_tx(attrs.evolve(tx, state=TxState.DROPPED,  # type: ignore[attr-defined]
                                                       updated_at=clock.now()))
        for job in await u.chain_jobs.submitted():  # type: ignore[attr-defined]
            await u.chain_jobs.update(attrs.evolve(  # type: ignore[attr-defined]
                job, status=JobStatus.FAILED, updated_at=clock.now(),
                error=JobError("CHAIN_RESET", "The dev chain was restarted before this job was final")))
        await u.chain_jobs.forget_txs()  # type: ignore[attr-defined]


async def _index_forever(indexer: Indexer, interval: float) -> None:
    delay = interval
    while True:
        try:
            rep = await indexer.tick()
            delay = interval
            if rep is not None:
                continue  # more may be waiting
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - keep following the chain; back off on failures
            log.warning("indexer tick failed: %r", e)
            delay = min(delay * 2, 30.0)
        await asyncio.sleep(delay)


async def open_context(platform: Any, stack: contextlib.AsyncExitStack, *, run_background: bool) -> None:
    """The composition root's hook (``audifi_adapters.chain_context``): attach the chain layer.

    Optional settings are read from the config when it has them: ``confirmations``,
    ``signer_balance_floor_wei``, ``chain_poll_interval``, ``gas_bump_after``,
    ``master_factory_address``, ``coin_factory_address``.
    """
    cfg = platform.config
    services = await open_chain(
        cfg, stack, uow=platform.uow, database=platform.database, clock=platform.clock, ids=platform.ids,
        confirmations=getattr(cfg, "confirmations", None),
        balance_floor=int(getattr(cfg, "signer_balance_floor_wei", 0) or 0),
        poll_interval=float(getattr(cfg, "chain_poll_interval", 0.5) or 0.5),
        bump_after=float(getattr(cfg, "gas_bump_after", 60.0) or 60.0),
        master_factory_address=getattr(cfg, "master_factory_address", None),
        coin_factory_address=getattr(cfg, "coin_factory_address", None),
        run_background=run_background)
    platform.chain = services
    platform.jobs = services.jobs
    platform.adapters["chain"] = services.adapter
    platform.checks.update(services.checks)
