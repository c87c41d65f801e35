"""CoinReads (Web3CoinReads) on the in-process EVM and on a dead node; the pool maths against the contract."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import attrs
import pytest
from web3 import AsyncWeb3
from web3.providers.rpc import AsyncHTTPProvider

from audifi_adapters.chain.abi import function
from audifi_adapters.chain.evm import InProcessEvm
from audifi_adapters.chain.web3chain import Web3Chain
from audifi_adapters.coins import Web3CoinReads
from audifi_core.chain.model import PLATFORM, CoinAddresses
from audifi_core.coins import TokenInfo, amount_out
from audifi_core.errors import ChainError

ARTIST = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
SUPPLY = 7 * 10**24


@attrs.define
class Deployed:
    evm: InProcessEvm
    chain: Web3Chain
    coin: CoinAddresses


@pytest.fixture
async def deployed() -> AsyncIterator[Deployed]:
    """A fresh in-process chain with the factories and one artist coin."""
    evm = InProcessEvm(accounts=2)
    try:
        chain_id = int(await evm.w3.eth.chain_id)
        factories = await Web3Chain.deploy_factories(evm.w3, evm.keys[0], chain_id)
        chain = Web3Chain(evm.w3, chain_id=chain_id, platform_key=evm.keys[0], factories=factories, retries=0)
        tx = chain.create_coin_tx(ARTIST, "Ann Coin", "ANN", SUPPLY)
        signed = chain.sign(PLATFORM, tx, await chain.nonce(chain.address_of(PLATFORM)), await chain.fees())
        assert (await chain.wait_receipt(await chain.broadcast(signed.raw))).success
        coin = await chain.coin_of(ARTIST)
        assert coin is not None
        yield Deployed(evm, chain, coin)
    finally:
        evm.close()


class TestWeb3CoinReads:
    async def test_token_info_and_supplies(self, deployed: Deployed):
        """name/symbol/decimals/totalSupply of the coin; the empty pool's LP supply is 0."""
        reads = Web3CoinReads(deployed.evm.w3)
        assert await reads.token_info(deployed.coin.coin) == TokenInfo("Ann Coin", "ANN", 18, SUPPLY)
        assert await reads.total_supply(deployed.coin.coin) == SUPPLY
        assert await reads.total_supply(deployed.coin.pool) == 0

    async def test_no_contract_and_a_dead_node_are_chain_errors(self, deployed: Deployed):
        """An address without code and an unreachable node both raise ChainError (never a web3 error)."""
        with pytest.raises(ChainError):
            await Web3CoinReads(deployed.evm.w3).token_info(ARTIST)
        provider = AsyncHTTPProvider("http://127.0.0.1:9", request_kwargs={"timeout": 2})
        try:
            with pytest.raises(ChainError) as info:
                await Web3CoinReads(AsyncWeb3(provider)).total_supply(deployed.coin.pool)
            assert info.value.details["reason"] == "unavailable"
        finally:
            await provider.disconnect()


class TestPoolMaths:
    async def test_amount_out_matches_the_contract(self, deployed: Deployed):
        """The quote formula equals CoinPool.getAmountOut for edge and random reserves (0.3 % fee)."""
        f = function("CoinPool", "getAmountOut")
        rnd = random.Random(20260501)
        cases = [(1, 1, 1), (1, 10**18, 10**18), (10**18, 5 * 10**18, 10**23), (2**100, 2**100, 2**100)]
        cases += [(rnd.randrange(1, 10**24), rnd.randrange(1, 10**26), rnd.randrange(1, 10**26)) for _ in range(40)]
        for a, rin, rout in cases:
            raw = await deployed.evm.w3.eth.call({"to": deployed.coin.pool, "data": f.encode(a, rin, rout)})
            assert f.decode_output(bytes(raw))[0] == amount_out(a, rin, rout), (a, rin, rout)
