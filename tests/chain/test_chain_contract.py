"""The Chain port's contract suite: FakeChain, Web3Chain on the in-process EVM, Web3Chain on anvil."""

from __future__ import annotations

from typing import Any

import pytest
from audifi_chain_fixtures import send  # type: ignore[import-not-found]

from audifi_core.chain.model import PLATFORM, custody_signer
from audifi_core.errors import ChainError

ARTIST = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
FAN = "0x6813Eb9362372EEF6200f3b1dbC3f819671cBA69"
URI = "ipfs://bafkreidummy"


@pytest.fixture(params=["fake", "evm", "anvil"])
def chain(request: pytest.FixtureRequest) -> Any:
    """The same suite on every Chain adapter."""
    if request.param == "fake":
        return request.getfixturevalue("chain_fake")
    if request.param == "evm":
        return request.getfixturevalue("chain_evm")[1]
    return request.getfixturevalue("anvil_chain")[1]


async def new_master(chain: Any, master_id: str, max_supply: int | None = 1000) -> Any:
    r = await send(chain, chain.create_master_tx(master_id, ARTIST, URI))
    assert r.success
    m = await chain.masters_of(master_id)
    if max_supply is not None:
        assert (await send(chain, chain.set_max_supply_tx(m.shares, max_supply))).success
    return m


class TestMasters:
    async def test_create_master_records_addresses_and_emits_master_created(self, chain: Any) -> None:
        """createMaster deploys shares + vault, readable by master id and announced by MasterCreated."""
        assert await chain.masters_of("mst_a") is None
        receipt = await send(chain, chain.create_master_tx("mst_a", ARTIST, URI))
        m = await chain.masters_of("mst_a")
        assert receipt.success and m is not None and m.shares != m.vault
        created = [lg for lg in receipt.logs if lg.event == "MasterCreated"]
        assert len(created) == 1
        assert created[0].address == chain.factories()["MasterFactory"]
        assert (created[0].args["shares"], created[0].args["vault"]) == (m.shares, m.vault)
        assert created[0].args["artist"] == ARTIST

    async def test_the_same_master_twice_reverts(self, chain: Any) -> None:
        """A master id can be created once; the second transaction is mined as reverted."""
        await new_master(chain, "mst_b", None)
        second = await send(chain, chain.create_master_tx("mst_b", ARTIST, URI))
        assert second.success is False

    async def test_mint_gives_sequential_ids_from_one_with_erc721_transfers(self, chain: Any) -> None:
        """batchMint(5) mints ids 1..5 to the recipient; each Transfer log has 4 topics."""
        m = await new_master(chain, "mst_c")
        receipt = await send(chain, chain.mint_tx(m.shares, FAN, 5, "op-c-1"))
        transfers = [lg for lg in receipt.logs if lg.event == "Transfer"]
        assert [lg.args["tokenId"] for lg in transfers] == [1, 2, 3, 4, 5]
        assert {lg.topic_count for lg in transfers} == {4}
        assert {lg.args["to"] for lg in transfers} == {FAN}
        assert await chain.total_minted(m.shares) == 5
        assert await chain.owner_of(m.shares, 3) == FAN
        assert await chain.owner_of(m.shares, 6) is None

    async def test_a_mint_op_key_takes_effect_once(self, chain: Any) -> None:
        """The opId guard: the same op key minting again reverts and mints nothing."""
        m = await new_master(chain, "mst_d")
        assert (await send(chain, chain.mint_tx(m.shares, FAN, 2, "op-d"))).success
        again = await send(chain, chain.mint_tx(m.shares, FAN, 2, "op-d"))
        assert again.success is False
        assert await chain.total_minted(m.shares) == 2

    async def test_mint_beyond_max_supply_or_unset_supply_reverts(self, chain: Any) -> None:
        """Minting needs a max supply and stays within it."""
        unset = await new_master(chain, "mst_e", None)
        assert (await send(chain, chain.mint_tx(unset.shares, FAN, 1, "op-e1"))).success is False
        capped = await new_master(chain, "mst_e2", 3)
        assert (await send(chain, chain.mint_tx(capped.shares, FAN, 4, "op-e2"))).success is False
        assert (await send(chain, chain.mint_tx(capped.shares, FAN, 3, "op-e3"))).success
        assert await chain.max_supply(capped.shares) == 3

    async def test_batch_transfer_moves_owned_ids_only(self, chain: Any) -> None:
        """The platform transfers ids it owns; ids it does not own make the transfer revert."""
        m = await new_master(chain, "mst_f")
        platform = chain.address_of(PLATFORM)
        await send(chain, chain.mint_tx(m.shares, platform, 4, "op-f"))
        r = await send(chain, chain.transfer_tx(m.shares, platform, FAN, (2, 3)))
        assert r.success
        assert [lg.args["tokenId"] for lg in r.logs if lg.event == "Transfer"] == [2, 3]
        assert [await chain.owner_of(m.shares, i) for i in (1, 2, 3, 4)] == [platform, FAN, FAN, platform]
        bad = await send(chain, chain.transfer_tx(m.shares, platform, FAN, (1, 2)))
        assert bad.success is False
        assert await chain.owner_of(m.shares, 1) == platform


class TestCoins:
    async def test_create_coin_is_announced_and_mints_the_supply_as_erc20(self, chain: Any) -> None:
        """createCoin: CoinCreated names coin/staking/pool; the supply Transfer has 3 topics."""
        r = await send(chain, chain.create_coin_tx(ARTIST, "Artist", "ART", 10**24))
        assert r.success
        found = await chain.coin_of(ARTIST)
        assert found is not None
        created = [lg for lg in r.logs if lg.event == "CoinCreated"]
        assert created and created[0].args["coin"] == found.coin
        erc20 = [lg for lg in r.logs if lg.event == "Transfer"]
        assert erc20 and erc20[0].topic_count == 3 and erc20[0].args["value"] == 10**24
        assert (await send(chain, chain.create_coin_tx(ARTIST, "Again", "AG", 1))).success is False


class TestBlocksLogsAndSending:
    async def test_logs_are_filtered_by_address_and_ordered(self, chain: Any) -> None:
        """logs() returns only the named contracts' logs, by (block, log index)."""
        start = await chain.head() + 1
        m1 = await new_master(chain, "mst_g1")
        m2 = await new_master(chain, "mst_g2")
        await send(chain, chain.mint_tx(m1.shares, FAN, 2, "op-g1"))
        await send(chain, chain.mint_tx(m2.shares, FAN, 1, "op-g2"))
        logs = await chain.logs(start, await chain.head(), [m1.shares])
        assert logs and {lg.address for lg in logs} == {m1.shares}
        keys = [(lg.block_number, lg.log_index) for lg in logs]
        assert keys == sorted(keys)
        assert [lg.args["tokenId"] for lg in logs if lg.event == "Transfer"] == [1, 2]

    async def test_blocks_link_by_parent_hash(self, chain: Any) -> None:
        """Each block names its parent's hash; the identity is stable."""
        await new_master(chain, "mst_h", None)
        head = await chain.head()
        b, parent = await chain.block(head), await chain.block(head - 1)
        assert b.parent_hash == parent.hash and b.number == head
        assert await chain.block(head + 1000) is None
        assert await chain.identity() == await chain.identity()

    async def test_resending_the_same_bytes_never_makes_a_second_transaction(self, chain: Any) -> None:
        """A signed transaction sent twice is refused (already known / nonce used): one effect."""
        sender = chain.address_of(PLATFORM)
        nonce = await chain.nonce(sender)
        signed = chain.sign(PLATFORM, chain.eth_transfer_tx(FAN, 1), nonce, await chain.fees())
        await chain.broadcast(signed.raw)
        with pytest.raises(ChainError) as info:
            await chain.broadcast(signed.raw)
        assert info.value.details["reason"] in ("already_known", "nonce_too_low")
        assert await chain.nonce(sender) == nonce + 1

    async def test_eth_transfer_funds_a_custodial_address(self, chain: Any) -> None:
        """A plain value transfer credits the custodial address derived from the custody seed."""
        target = chain.address_of(custody_signer(4242))
        before = await chain.eth_balance(target)
        assert (await send(chain, chain.eth_transfer_tx(target, 10**15))).success
        assert await chain.eth_balance(target) == before + 10**15
