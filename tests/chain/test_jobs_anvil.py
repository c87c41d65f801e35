"""The job runner against a real JSON-RPC node (anvil): gas bumps and re-sending after a reorg."""

from __future__ import annotations

import asyncio
from typing import Any

from audifi_chain_fixtures import Store, make_harness  # type: ignore[import-not-found]

from audifi_adapters.memory.store import InMemoryDatabase
from audifi_core.chain.model import DeployMaster, JobKind, JobStatus, TxState

ARTIST = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"


def memory() -> Store:
    db = InMemoryDatabase()
    return Store("memory", db.uow, db)


async def enqueue(h: Any, key: str, master_id: str) -> Any:
    async with h.store.uow() as u:
        return await h.jobs.enqueue(u, JobKind.DEPLOY_MASTER, key, "usr_1", DeployMaster(master_id, ARTIST, "ipfs://a"))


class TestOnAnvil:
    async def test_a_stuck_transaction_is_replaced_with_a_higher_fee_and_every_hash_kept(
            self, anvil_chain: Any) -> None:
        """Not mined in time → same nonce, higher fee; the job lists both hashes; one effect."""
        node, chain = anvil_chain
        h = make_harness(chain, memory(), bump_after=0.0)
        await node.rpc("evm_setAutomine", [False])
        try:
            job = await enqueue(h, "deploy:bump", "mst_bump")
            await h.runner.tick()  # signed, stored, broadcast: waiting in the pool
            await h.runner.tick()  # not mined: replaced
            async with h.store.uow(readonly=True) as u:
                txs = await u.chain_jobs.txs_of(job.id)
            assert len(txs) == 2 and txs[0].nonce == txs[1].nonce and txs[1].max_fee > txs[0].max_fee
            await node.rpc("evm_mine", [])
        finally:
            await node.rpc("evm_setAutomine", [True])
        await h.runner.drain()
        done = await h.jobs.load(job.id)
        assert done.status is JobStatus.CONFIRMED
        assert list(done.tx_hashes) == [t.tx_hash for t in txs]
        async with h.store.uow(readonly=True) as u:
            states = sorted(t.state.value for t in await u.chain_jobs.txs_of(job.id))
        assert states == ["final", "replaced"]
        assert await chain.masters_of("mst_bump") is not None

    async def test_a_transaction_dropped_by_a_reorg_is_sent_again_byte_for_byte(self, anvil_chain: Any) -> None:
        """With N = 1: mined, then orphaned by evm_revert → the same signed bytes land again, then final."""
        node, chain = anvil_chain
        h = make_harness(chain, memory(), confirmations=1)
        snap = await node.rpc("evm_snapshot", [])
        job = await enqueue(h, "deploy:reorg", "mst_reorg")
        await h.runner.tick()
        await h.runner.tick()
        async with h.store.uow(readonly=True) as u:
            (tx,) = await u.chain_jobs.txs_of(job.id)
        assert tx.state is TxState.MINED and (await h.jobs.load(job.id)).status is JobStatus.SUBMITTED
        assert await node.rpc("evm_revert", [snap]) is True
        assert await chain.receipt(tx.tx_hash) is None
        await h.runner.tick()  # gone from the chain: re-sent
        receipt = None
        for _ in range(100):  # anvil mines the re-sent bytes on its own schedule; allow a loaded box 10 s
            receipt = await chain.receipt(tx.tx_hash)
            if receipt is not None:
                break
            await asyncio.sleep(0.1)
        assert receipt is not None
        await node.rpc("anvil_mine", ["0x1"])
        await h.runner.drain()
        done = await h.jobs.load(job.id)
        assert done.status is JobStatus.CONFIRMED and done.tx_hashes == (tx.tx_hash,)
        async with h.store.uow(readonly=True) as u:
            (again,) = await u.chain_jobs.txs_of(job.id)
        assert again.raw == tx.raw and again.broadcasts == 2
