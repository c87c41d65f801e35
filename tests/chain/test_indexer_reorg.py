"""The indexer: projections from our contracts' logs, reorgs rolled back and forward, idempotent replay,
the chain identity check. On FakeChain and the in-process EVM (snapshot/revert), over memory and PostgreSQL,
and on anvil (evm_snapshot/evm_revert) over memory."""

from __future__ import annotations

from typing import Any

import pytest
from audifi_chain_fixtures import Store, send  # type: ignore[import-not-found]

from audifi_adapters.memory.store import InMemoryDatabase
from audifi_core.chain.indexer import ChainMismatch, Indexer, IndexerSettings
from audifi_core.chain.model import PLATFORM
from audifi_core.chain.ports import ChainIdentity

ARTIST = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
FAN = "0x6813Eb9362372EEF6200f3b1dbC3f819671cBA69"
OTHER = "0x1efF47bc3a10a45D4B230B5d10E37751FE6AA718"


class Reorgable:
    """A chain plus a way to take and return to a snapshot (a reorganisation when blocks follow)."""

    def __init__(self, kind: str, chain: Any, node: Any = None):
        self.kind, self.chain, self.node = kind, chain, node

    async def snapshot(self) -> Any:
        if self.kind == "fake":
            return self.chain.snapshot()
        if self.kind == "evm":
            return await self.node.snapshot()
        return await self.node.rpc("evm_snapshot", [])

    async def revert(self, snap: Any) -> None:
        if self.kind == "fake":
            self.chain.revert(snap)
        elif self.kind == "evm":
            await self.node.revert(snap)
        else:
            assert await self.node.rpc("evm_revert", [snap]) is True


@pytest.fixture(params=["fake", "evm"])
def reorgable(request: pytest.FixtureRequest) -> Reorgable:
    if request.param == "fake":
        return Reorgable("fake", request.getfixturevalue("chain_fake"))
    evm, chain = request.getfixturevalue("chain_evm")
    return Reorgable("evm", chain, evm)


async def new_master(chain: Any, master_id: str) -> Any:
    await send(chain, chain.create_master_tx(master_id, ARTIST, "ipfs://x"))
    m = await chain.masters_of(master_id)
    await send(chain, chain.set_max_supply_tx(m.shares, 1000))
    return m


async def indexer_for(chain: Any, store: Store, confirmations: int = 0) -> Indexer:
    start = 0 if getattr(chain, "name", "") != "anvil" else await chain.head()
    ix = Indexer(chain, store.uow, IndexerSettings(confirmations=confirmations, start_block=start))
    await ix.check_identity(disposable_chain=False)
    return ix


async def owners(store: Store, contract: str, ids: range) -> list[str | None]:
    async with store.uow(readonly=True) as u:
        return [await u.chain_projection.owner(contract, i) for i in ids]


async def holders(store: Store, contract: str) -> dict[str, int]:
    async with store.uow(readonly=True) as u:
        return await u.chain_projection.holders(contract)


class TestProjection:
    async def test_mints_and_transfers_project_share_ownership(self, reorgable: Reorgable,
                                                                chain_store: Store) -> None:
        """Contracts announced by the factory are followed; ERC-721 transfers give each id its owner."""
        chain = reorgable.chain
        ix = await indexer_for(chain, chain_store)
        m = await new_master(chain, "mst_1")
        platform = chain.address_of(PLATFORM)
        await send(chain, chain.mint_tx(m.shares, platform, 3, "op1"))
        await send(chain, chain.transfer_tx(m.shares, platform, FAN, (2,)))
        await ix.run_until_synced()
        assert await owners(chain_store, m.shares, range(1, 5)) == [platform, FAN, platform, None]
        assert await holders(chain_store, m.shares) == {platform: 2, FAN: 1}
        async with chain_store.uow(readonly=True) as u:
            kinds = {c.kind for c in await u.chain_projection.contracts()}
            assert await u.chain_projection.tokens_of(m.shares, platform) == [1, 3]
        assert {"factory", "shares", "vault"} <= kinds

    async def test_replaying_the_same_logs_changes_nothing(self, reorgable: Reorgable, chain_store: Store) -> None:
        """Logs are stored once per (tx hash, log index): indexing a range again is a no-op."""
        chain = reorgable.chain
        ix = await indexer_for(chain, chain_store)
        m = await new_master(chain, "mst_2")
        await send(chain, chain.mint_tx(m.shares, FAN, 2, "op2"))
        first = await ix.run_until_synced()
        logs = await chain.logs(0, await chain.head(), [m.shares])
        async with chain_store.uow() as u:
            again = [await u.chain_projection.record_log(lg) for lg in logs]
            await u.chain_cursor.set_cursor(None)  # force a full re-index as well
        assert first > 0 and not any(again)
        assert await ix.run_until_synced() == 0
        assert await holders(chain_store, m.shares) == {FAN: 2}

    async def test_a_reorg_rolls_the_projection_back_and_forward(self, reorgable: Reorgable,
                                                                 chain_store: Store) -> None:
        """Blocks replaced by another fork are undone to the fork point, then the new fork is indexed."""
        chain = reorgable.chain
        ix = await indexer_for(chain, chain_store)
        m = await new_master(chain, "mst_3")
        await send(chain, chain.mint_tx(m.shares, FAN, 2, "op3a"))
        await ix.run_until_synced()
        snap = await reorgable.snapshot()
        await send(chain, chain.mint_tx(m.shares, FAN, 3, "op3b"))  # ids 3..5 to FAN, then orphaned
        await ix.run_until_synced()
        assert await holders(chain_store, m.shares) == {FAN: 5}
        await reorgable.revert(snap)
        await send(chain, chain.mint_tx(m.shares, OTHER, 1, "op3c"))  # the new fork: id 3 to OTHER
        await send(chain, chain.eth_transfer_tx(OTHER, 1))  # and it grows past the old head
        await send(chain, chain.eth_transfer_tx(OTHER, 1))
        rep = await ix.tick()
        assert rep is not None and rep.rolled_back_to is not None
        await ix.run_until_synced()
        assert await owners(chain_store, m.shares, range(1, 6)) == [FAN, FAN, OTHER, None, None]
        assert await holders(chain_store, m.shares) == {FAN: 2, OTHER: 1}
        async with chain_store.uow(readonly=True) as u:
            cursor = await u.chain_cursor.cursor()
        assert cursor.hash == (await chain.block(cursor.number)).hash

    async def test_a_reorg_that_removes_a_master_forgets_its_contracts(self, reorgable: Reorgable,
                                                                      chain_store: Store) -> None:
        """A factory event on the orphaned fork: the contracts it announced are no longer followed."""
        chain = reorgable.chain
        ix = await indexer_for(chain, chain_store)
        await new_master(chain, "mst_keep")
        await ix.run_until_synced()
        snap = await reorgable.snapshot()
        gone = await new_master(chain, "mst_gone")
        await ix.run_until_synced()
        await reorgable.revert(snap)
        for _ in range(4):
            await send(chain, chain.eth_transfer_tx(OTHER, 1))
        await ix.run_until_synced()
        async with chain_store.uow(readonly=True) as u:
            followed = {c.address for c in await u.chain_projection.contracts()}
        assert gone.shares not in followed


class TestIdentity:
    async def test_another_chain_refuses_to_start_and_a_dev_chain_starts_over(self, chain_fake: Any) -> None:
        """A node with another chain id/genesis → ChainMismatch; a disposable chain discards old state."""
        db = InMemoryDatabase()
        store = Store("memory", db.uow, db)
        ix = await indexer_for(chain_fake, store)
        m = await new_master(chain_fake, "mst_i")
        await send(chain_fake, chain_fake.mint_tx(m.shares, FAN, 1, "op-i"))
        await ix.run_until_synced()
        async with store.uow() as u:
            await u.chain_cursor.set_identity(ChainIdentity(1, "0xabc"))
        with pytest.raises(ChainMismatch):
            await ix.check_identity(disposable_chain=False)
        assert await ix.check_identity(disposable_chain=True) is True
        assert await holders(store, m.shares) == {}
        async with store.uow(readonly=True) as u:
            assert await u.chain_cursor.cursor() is None
            assert await u.chain_cursor.identity() == await chain_fake.identity()


class TestOnAnvil:
    async def test_confirmations_and_a_reorg_on_a_real_node(self, anvil_chain: Any) -> None:
        """On anvil: evm_revert orphans a mint; the indexer (N = 1) rolls back and follows the new fork."""
        node, chain = anvil_chain
        db = InMemoryDatabase()
        store = Store("memory", db.uow, db)
        r = Reorgable("anvil", chain, node)
        ix = await indexer_for(chain, store, confirmations=1)
        m = await new_master(chain, "mst_anvil")
        await send(chain, chain.mint_tx(m.shares, FAN, 2, "op-anvil-a"))
        await ix.run_until_synced()
        snap = await r.snapshot()
        await send(chain, chain.mint_tx(m.shares, FAN, 2, "op-anvil-b"))
        await ix.run_until_synced()
        assert await holders(store, m.shares) == {FAN: 4}
        await r.revert(snap)
        await send(chain, chain.mint_tx(m.shares, OTHER, 1, "op-anvil-c"))
        await node.rpc("anvil_mine", ["0x3"])
        await ix.run_until_synced()
        assert await holders(store, m.shares) == {FAN: 2, OTHER: 1}
