"""Chain jobs end to end: the job service and the durable runner on FakeChain and the in-process EVM,
each over the in-memory database and real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
from audifi_chain_fixtures import Harness, make_harness, send  # type: ignore[import-not-found]

from audifi_core.chain.model import (
    PLATFORM,
    DeployMaster,
    JobKind,
    JobStatus,
    MintShares,
    TransferShares,
    TxState,
    custody_signer,
)
from audifi_core.errors import ChainError, Conflict, NotFound

ARTIST = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
WALLET = "0x6813Eb9362372EEF6200f3b1dbC3f819671cBA69"
URI = "ipfs://bafkreidummy"


@pytest.fixture(params=["fake", "evm"])
def chain(request: pytest.FixtureRequest) -> Any:
    """Runner tests run on FakeChain and on Web3Chain over the in-process EVM."""
    if request.param == "fake":
        return request.getfixturevalue("chain_fake")
    return request.getfixturevalue("chain_evm")[1]


@pytest.fixture
def h(chain: Any, chain_store: Any) -> Harness:
    return make_harness(chain, chain_store)


async def enqueue(h: Harness, kind: JobKind, op_key: str, call: Any, requester: str = "usr_1") -> Any:
    async with h.store.uow() as u:
        return await h.jobs.enqueue(u, kind, op_key, requester, call)


async def master(h: Harness, master_id: str = "mst_1", max_supply: int | None = 1000) -> Any:
    await enqueue(h, JobKind.DEPLOY_MASTER, f"deploy:{master_id}", DeployMaster(master_id, ARTIST, URI, max_supply))
    await h.runner.drain()
    return await h.chain.masters_of(master_id)


async def job(h: Harness, job_id: str) -> Any:
    loaded = await h.jobs.load(job_id)
    assert loaded is not None
    return loaded


class Crash(BaseException):
    """The process dies (not an Exception: nothing in the runner may swallow it)."""


@attrs.define
class CrashAfterBroadcast:
    """A chain whose broadcast reaches the node and then the process dies."""

    inner: Any
    armed: bool = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def broadcast(self, raw: bytes) -> str:
        h = await self.inner.broadcast(raw)
        if self.armed:
            self.armed = False
            raise Crash
        return h


class TestJobService:
    async def test_a_deploy_master_job_runs_both_steps_and_calls_the_hook(self, h: Harness) -> None:
        """deploy_master: createMaster then setMaxSupply; confirmed with the addresses; hook sees them."""
        seen: list[dict[str, Any]] = []

        async def hook(uow: Any, j: Any) -> None:
            seen.append(j.result)

        h.jobs.on_confirmed(JobKind.DEPLOY_MASTER, hook)
        j = await enqueue(h, JobKind.DEPLOY_MASTER, "deploy:m1", DeployMaster("m1", ARTIST, URI, 50))
        assert j.status is JobStatus.QUEUED
        await h.runner.drain()
        done = await job(h, j.id)
        found = await h.chain.masters_of("m1")
        assert done.status is JobStatus.CONFIRMED and len(done.tx_hashes) == 2
        assert done.result["sharesAddress"] == found.shares and done.result["vaultAddress"] == found.vault
        assert await h.chain.max_supply(found.shares) == 50
        assert seen == [done.result]

    async def test_the_same_op_key_returns_the_first_job(self, h: Harness) -> None:
        """Enqueueing an op key twice returns the existing job; nothing is minted twice."""
        m = await master(h)
        a = await enqueue(h, JobKind.MINT, "mint:x", MintShares(m.shares, WALLET, 3))
        b = await enqueue(h, JobKind.MINT, "mint:x", MintShares(m.shares, WALLET, 3))
        assert a.id == b.id
        await h.runner.drain()
        assert await h.chain.total_minted(m.shares) == 3
        assert (await job(h, a.id)).result["firstId"] == 1

    async def test_only_the_requester_sees_a_job_and_only_failed_jobs_retry(self, h: Harness) -> None:
        """get/retry by another user → NOT_FOUND; retrying a non-failed job → CONFLICT."""
        j = await enqueue(h, JobKind.DEPLOY_MASTER, "deploy:m2", DeployMaster("m2", ARTIST, URI, None), "usr_a")
        assert (await h.jobs.get(j.id, "usr_a")).id == j.id
        with pytest.raises(NotFound):
            await h.jobs.get(j.id, "usr_b")
        with pytest.raises(NotFound):
            await h.jobs.retry(j.id, "usr_b")
        with pytest.raises(Conflict):
            await h.jobs.retry(j.id, "usr_a")

    async def test_a_rolled_back_unit_of_work_leaves_no_job(self, h: Harness) -> None:
        """The job commits with the caller's domain change, or not at all."""
        with pytest.raises(RuntimeError):
            async with h.store.uow() as u:
                await h.jobs.enqueue(u, JobKind.DEPLOY_MASTER, "deploy:gone", "u", DeployMaster("gone", ARTIST, URI))
                raise RuntimeError("the domain change failed")
        async with h.store.uow(readonly=True) as u:
            assert await u.chain_jobs.get_by_op_key("deploy:gone") is None


class TestDurability:
    async def test_a_runner_killed_after_broadcast_resumes_without_a_second_transaction(
            self, chain: Any, chain_store: Any) -> None:
        """The stored raw transaction is re-sent byte for byte: one mint, one nonce, job confirmed."""
        h = make_harness(chain, chain_store)
        m = await master(h)
        platform = chain.address_of(PLATFORM)
        nonce_before = await chain.nonce(platform)
        j = await enqueue(h, JobKind.MINT, "mint:crash", MintShares(m.shares, WALLET, 4))
        dying = make_harness(CrashAfterBroadcast(chain), chain_store)
        with pytest.raises(Crash):
            await dying.runner.tick()
        async with chain_store.uow(readonly=True) as u:
            (tx,) = await u.chain_jobs.txs_of(j.id)
        assert tx.state is TxState.SIGNED  # stored before the broadcast; the crash came before its bookkeeping
        await dying.runner._lock.release()
        fresh = make_harness(chain, chain_store)
        await fresh.runner.drain()
        done = await job(fresh, j.id)
        assert done.status is JobStatus.CONFIRMED and done.tx_hashes == (tx.tx_hash,)
        assert await chain.total_minted(m.shares) == 4
        assert await chain.nonce(platform) == nonce_before + 1

    async def test_a_reverted_transaction_fails_the_job_and_a_retry_does_not_double(self, h: Harness) -> None:
        """Reverted in a final block → failed; after fixing the cause a retry mints once, with the same opId."""
        m = await master(h, "mst_r", max_supply=None)
        j = await enqueue(h, JobKind.MINT, "mint:r", MintShares(m.shares, WALLET, 5))
        await h.runner.drain()
        failed = await job(h, j.id)
        assert failed.status is JobStatus.FAILED and failed.error.code == "TX_REVERTED"
        assert await h.chain.total_minted(m.shares) == 0
        assert (await send(h.chain, h.chain.set_max_supply_tx(m.shares, 100))).success
        view = await h.jobs.retry(j.id, "usr_1")
        assert view.status is JobStatus.QUEUED and view.error is None
        await h.runner.drain()
        done = await job(h, j.id)
        assert done.status is JobStatus.CONFIRMED and done.attempts == 1 and len(done.tx_hashes) == 2
        assert await h.chain.total_minted(m.shares) == 5
        replay = await send(h.chain, h.chain.mint_tx(m.shares, WALLET, 5, "mint:r"))  # same opId
        assert replay.success is False and await h.chain.total_minted(m.shares) == 5
        with pytest.raises(Conflict):
            await h.jobs.retry(j.id, "usr_1")

    async def test_a_custodial_withdrawal_tops_up_gas_then_transfers(self, h: Harness) -> None:
        """A custodial sender without ETH gets gas from the platform inside the job, then transfers."""
        m = await master(h, "mst_w")
        custodial = h.chain.address_of(custody_signer(9001))
        assert await h.chain.eth_balance(custodial) == 0
        await enqueue(h, JobKind.MINT, "mint:w", MintShares(m.shares, custodial, 3))
        await h.runner.drain()
        w = await enqueue(h, JobKind.WITHDRAW, "withdraw:w",
                          TransferShares(m.shares, custodial, WALLET, (1, 3), signer=custody_signer(9001)))
        await h.runner.drain()
        done = await job(h, w.id)
        assert done.status is JobStatus.CONFIRMED and len(done.tx_hashes) == 2  # top-up + transfer
        assert [await h.chain.owner_of(m.shares, i) for i in (1, 2, 3)] == [WALLET, custodial, WALLET]
        assert await h.chain.eth_balance(custodial) > 0

    async def test_the_signer_pauses_below_its_balance_floor(self, chain: Any, chain_store: Any) -> None:
        """Below the floor nothing is signed and jobs stay queued; above it they run."""
        poor = make_harness(chain, chain_store, balance_floor=10**40)
        j = await enqueue(poor, JobKind.DEPLOY_MASTER, "deploy:p", DeployMaster("mst_p", ARTIST, URI, None))
        assert await poor.runner.tick() is False
        assert poor.runner.paused and (await job(poor, j.id)).status is JobStatus.QUEUED
        rich = make_harness(chain, chain_store, balance_floor=1)
        await rich.runner.drain()
        assert not rich.runner.paused and (await job(rich, j.id)).status is JobStatus.CONFIRMED

    async def test_a_transaction_the_node_refuses_fails_the_job_without_a_nonce_gap(
            self, chain: Any, chain_store: Any) -> None:
        """Never broadcast → failed (TX_REJECTED); a no-op fills its nonce so later jobs still land."""
        h = make_harness(chain, chain_store)
        m = await master(h, "mst_x")
        rejecting = make_harness(RejectOnce(chain), chain_store)
        bad = await enqueue(h, JobKind.MINT, "mint:bad", MintShares(m.shares, WALLET, 1))
        await rejecting.runner.tick()
        await rejecting.runner._lock.release()
        assert (await job(h, bad.id)).error.code == "TX_REJECTED"
        good = await enqueue(h, JobKind.MINT, "mint:good", MintShares(m.shares, WALLET, 2))
        await h.runner.drain()
        assert (await job(h, good.id)).status is JobStatus.CONFIRMED
        assert await chain.total_minted(m.shares) == 2


@attrs.define
class RejectOnce:
    inner: Any
    done: bool = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def broadcast(self, raw: bytes) -> str:
        if not self.done:
            self.done = True
            raise ChainError("invalid sender", details={"reason": "rejected"})
        return await self.inner.broadcast(raw)


class TestConfirmations:
    async def test_a_job_is_confirmed_only_when_final(self, chain_fake: Any, chain_store: Any) -> None:
        """With N = 2 a mined transaction waits for two more blocks before the job is confirmed."""
        h = make_harness(chain_fake, chain_store, confirmations=2)
        j = await enqueue(h, JobKind.DEPLOY_MASTER, "deploy:f", DeployMaster("mst_f", ARTIST, URI, None))
        await h.runner.tick()
        await h.runner.tick()
        assert (await job(h, j.id)).status is JobStatus.SUBMITTED
        async with chain_store.uow(readonly=True) as u:
            assert [t.state for t in await u.chain_jobs.txs_of(j.id)] == [TxState.MINED]
        chain_fake.mine(2)
        await h.runner.tick()
        assert (await job(h, j.id)).status is JobStatus.CONFIRMED

    async def test_a_nonce_taken_by_another_final_transaction_fails_the_job(self, chain_fake: Any,
                                                                              chain_store: Any) -> None:
        """Our stored transaction lost its nonce to another one: failed (NONCE_TAKEN), never doubled."""
        h = make_harness(chain_fake, chain_store)
        j = await enqueue(h, JobKind.DEPLOY_MASTER, "deploy:n", DeployMaster("mst_n", ARTIST, URI, None))
        chain_fake.fail_broadcast = ChainError("node down", details={"reason": "unavailable"})
        await h.runner.tick()  # stored, not broadcast
        await send(chain_fake, chain_fake.eth_transfer_tx(WALLET, 1))  # someone else uses the same key/nonce
        await h.runner.tick()
        done = await job(h, j.id)
        assert done.status is JobStatus.FAILED and done.error.code == "NONCE_TAKEN"
        assert await chain_fake.masters_of("mst_n") is None


class TestTwoRunners:
    @pytest.mark.parametrize("locked", [True, False], ids=["advisory-lock", "no-lock"])
    async def test_two_runners_started_at_once_send_each_transaction_once(
            self, chain_evm: Any, pg_dsn: str, locked: bool) -> None:
        """Two instances on one PostgreSQL: every job confirmed with one transaction, nonces contiguous.

        Without the advisory lock the conditional nonce update and the job row lock still hold.
        """
        from audifi_chain_fixtures import Store, truncate_all  # type: ignore[import-not-found]

        from audifi_adapters.postgres.db import PostgresDatabase

        _, chain = chain_evm
        pg = await PostgresDatabase.connect(pg_dsn, 6)
        try:
            await truncate_all(pg)
            store = Store("postgres", pg.uow, pg)
            setup = make_harness(chain, store)
            m = await master(setup, "mst_two")
            await setup.runner._lock.release()
            platform = chain.address_of(PLATFORM)
            start_nonce = await chain.nonce(platform)
            ids = [(await enqueue(setup, JobKind.MINT, f"mint:two:{i}", MintShares(m.shares, WALLET, 2))).id
                   for i in range(6)]
            runners = [make_harness(chain, store, lock=None if locked else AlwaysSigner()) for _ in range(2)]
            tasks = [asyncio.create_task(r.runner.run()) for r in runners]
            try:
                for _ in range(400):
                    states = [(await job(setup, i)).status for i in ids]
                    if all(s is JobStatus.CONFIRMED for s in states):
                        break
                    await asyncio.sleep(0.05)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            jobs = [await job(setup, i) for i in ids]
            assert [j.status for j in jobs] == [JobStatus.CONFIRMED] * 6
            assert all(len(j.tx_hashes) == 1 for j in jobs)
            assert await chain.nonce(platform) == start_nonce + 6
            assert await chain.total_minted(m.shares) == 12
            firsts = sorted(j.result["firstId"] for j in jobs)
            assert firsts == [1, 3, 5, 7, 9, 11]
        finally:
            await pg.close()


class AlwaysSigner:
    """A lock that lets every instance sign (to prove the database guards on their own)."""

    async def acquire(self) -> None:
        return None

    def held(self) -> bool:
        return True

    async def check(self) -> bool:
        return True

    async def release(self) -> None:
        return None
