"""Fixtures of the chain layer's tests (loaded into tests/chain/conftest.py by path).

Only names starting with ``chain_`` or ``anvil`` are exported as fixtures; helpers are imported by
tests as ``from audifi_chain_fixtures import …``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from web3 import AsyncWeb3
from web3.providers.rpc import AsyncHTTPProvider

from audifi_adapters.chain.custody import HdCustody
from audifi_adapters.chain.evm import InProcessEvm
from audifi_adapters.chain.fake import FakeChain
from audifi_adapters.chain.runner import (
    JobRunner,
    LocalSignerLock,
    PostgresSignerLock,
    RunnerSettings,
)
from audifi_adapters.chain.store_memory import register_memory_chain_repositories
from audifi_adapters.chain.store_postgres import JOBS_CHANNEL, register_postgres_chain_repositories
from audifi_adapters.chain.web3chain import Web3Chain
from audifi_adapters.memory.store import InMemoryDatabase
from audifi_adapters.postgres.db import PostgresDatabase
from audifi_core.chain.jobs import ChainJobs
from audifi_core.chain.model import PLATFORM, Receipt, TxRequest
from audifi_core.system import FrozenClock, RandomIds

TEST_MNEMONIC = "test test test test test test test test test test test junk"  # anvil's default accounts
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NODE_DIR = Path(__file__).with_name("node")
ANVIL = NODE_DIR / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

register_memory_chain_repositories()
register_postgres_chain_repositories()


# ------------------------------------------------------------------------------ storage
@attrs.define
class Store:
    """A unit-of-work factory over one backend, and that backend."""

    kind: str
    uow: Callable[..., Any]
    database: Any


async def truncate_all(pg: PostgresDatabase) -> None:
    """Empty every table (what ``pg_clean`` does, usable from async fixtures)."""
    async with pg.connection() as c:
        tables = [r["tablename"] for r in await c.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
        if tables:
            await c.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")


@pytest.fixture(params=["memory", "postgres"])
async def chain_store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Every repository test runs on the in-memory database and on real PostgreSQL."""
    if request.param == "memory":
        db = InMemoryDatabase()
        yield Store("memory", db.uow, db)
        return
    dsn = request.getfixturevalue("pg_dsn")  # sync session fixture: the run's migrated database
    pg = await PostgresDatabase.connect(dsn, 4)
    await truncate_all(pg)
    try:
        yield Store("postgres", pg.uow, pg)
    finally:
        await pg.close()


# ------------------------------------------------------------------------------ chains
async def send(chain: Any, tx: TxRequest, signer: str = PLATFORM) -> Receipt:
    """Sign, broadcast and wait for ``tx`` outside any job (test set-up)."""
    sender = chain.address_of(signer)
    signed = chain.sign(signer, tx, await chain.nonce(sender), await chain.fees())
    await chain.broadcast(signed.raw)
    for _ in range(400):
        r = await chain.receipt(signed.tx_hash)
        if r is not None:
            return r
        await asyncio.sleep(0.025)
    raise AssertionError(f"no receipt for {tx.label}")


@pytest.fixture
def chain_fake() -> FakeChain:
    return FakeChain(custody=HdCustody(TEST_MNEMONIC))


@pytest.fixture
async def chain_evm() -> AsyncIterator[tuple[InProcessEvm, Web3Chain]]:
    """A fresh in-process EVM with both factories deployed, and a Web3Chain on it."""
    evm = InProcessEvm()
    cid = await evm.w3.eth.chain_id
    factories = await Web3Chain.deploy_factories(evm.w3, evm.keys[0], cid)
    chain = Web3Chain(evm.w3, chain_id=cid, platform_key=evm.keys[0], factories=factories,
                      custody=HdCustody(TEST_MNEMONIC), name="in-process", priority_fee=10**9, retries=0)
    yield evm, chain
    evm.close()


# ------------------------------------------------------------------------------ anvil
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _anvil_missing(why: str) -> None:
    if IN_CI:
        pytest.fail(f"anvil cannot start in CI: {why}")
    pytest.skip(f"anvil unavailable: {why}")


@attrs.define
class AnvilNode:
    url: str
    process: subprocess.Popen[bytes]

    async def rpc(self, method: str, params: list[Any]) -> Any:
        w3 = AsyncWeb3(AsyncHTTPProvider(self.url))
        try:
            resp = await w3.provider.make_request(method, params)  # type: ignore[arg-type]
        finally:
            await w3.provider.disconnect()
        if "error" in resp:
            raise AssertionError(f"{method}: {resp['error']}")
        return resp["result"]


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    """A local anvil (npm @foundry-rs/anvil-linux-amd64) on loopback, auto-mining, for the session."""
    if not ANVIL.exists():
        npm = shutil.which("npm")
        if npm is None:
            _anvil_missing("npm is not installed")
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                              timeout=300)
        if proc.returncode != 0 or not ANVIL.exists():
            _anvil_missing(f"npm ci failed: {proc.stderr.decode()[-500:]}")
    port = _free_port()
    process = subprocess.Popen([str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent",
                                "--mnemonic", TEST_MNEMONIC, "--chain-id", "31337"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            break
        if process.poll() is not None:
            _anvil_missing(f"anvil exited: {process.stderr.read().decode()[-500:] if process.stderr else ''}")
        time.sleep(0.05)
    else:
        process.kill()
        process.wait(5)
        _anvil_missing("anvil did not listen within 20 s")
    try:
        yield AnvilNode(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture
async def anvil_chain(anvil_node: AnvilNode) -> AsyncIterator[tuple[AnvilNode, Web3Chain]]:
    """A Web3Chain over HTTP to anvil, with factories of its own (tests do not see each other's logs)."""
    custody = HdCustody(TEST_MNEMONIC)
    key = custody.private_key_for(0)
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil_node.url))
    factories = await Web3Chain.deploy_factories(w3, key, 31337)
    chain = Web3Chain(w3, chain_id=31337, platform_key=key, factories=factories, custody=custody, name="anvil")
    yield anvil_node, chain
    await w3.provider.disconnect()


# ------------------------------------------------------------------------------ runner
@attrs.define
class Harness:
    """A job service and runner over one chain and one store (no background tasks)."""

    chain: Any
    store: Store
    jobs: ChainJobs
    runner: JobRunner
    clock: FrozenClock
    ids: RandomIds


def make_harness(chain: Any, store: Store, *, confirmations: int = 0, balance_floor: int = 0,
                 bump_after: float = 60.0, lock: Any = None) -> Harness:
    clock, ids = FrozenClock(), RandomIds()
    jobs = ChainJobs(store.uow, clock, ids)
    if lock is None:
        lock = (PostgresSignerLock(store.database.dedicated, channel=JOBS_CHANNEL)
                if store.kind == "postgres" else LocalSignerLock(store.database))
    runner = JobRunner(chain, jobs, store.uow, clock, ids, lock,
                       RunnerSettings(confirmations=confirmations, balance_floor=balance_floor,
                                      poll_interval=0.05, bump_after=bump_after))
    return Harness(chain, store, jobs, runner, clock, ids)
