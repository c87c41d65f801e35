"""Artist coins over HTTP on the in-process EVM (API.md "Artist coin, liquidity, staking"),
on memory and on PostgreSQL + Redis: wallets sign every user transaction themselves via /dev/rpc."""

from __future__ import annotations

import asyncio
import math

import pytest
from eth_abi import decode
from eth_account import Account

from audifi_adapters.config import Config
from audifi_core.events import DomainEvent
from audifi_http import create_app

from ..conftest import base_config
from ..http.helpers import bearer, error_of, platform_of, sign_in
from .kit import (
    COIN,
    ETH,
    artist,
    fund,
    link_wallet,
    send,
    send_all,
    time_travel,
    token_balance,
    until,
    wait_job,
)

SUPPLY = 1_000_000 * COIN


def out_of(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """The constant-product output with the 0.3 % fee, computed independently of the code under test."""
    return (amount_in * 997 * reserve_out) // (reserve_in * 1000 + amount_in * 997)


@pytest.fixture
async def client(aiohttp_client, backend: Config, clock):
    return await aiohttp_client(create_app(backend, clock=clock))


async def deployed_coin(client, clock, email: str = "ann@example.com", symbol: str = "ANN"):
    """An artist with a funded linked wallet and a deployed coin: (session, wallet, coin view)."""
    s = await artist(client, email)
    wallet = await link_wallet(client, s, clock)
    await fund(client, wallet.address, 20 * ETH)
    r = await client.post(f"/coins/{s['user']['id']}/deploy", json={
        "name": "Ann Coin", "symbol": symbol, "initialSupply": str(SUPPLY)}, headers=bearer(s))
    assert r.status == 202, await r.text()
    job = await r.json()
    assert (job["kind"], job["status"]) == ("deploy_coin", "queued")
    done = await wait_job(client, s, job["id"])
    assert done["status"] == "confirmed", done
    coin = await (await client.get(f"/coins/{s['user']['id']}")).json()
    return s, wallet, coin


class TestCoinLifecycle:
    async def test_deploy_liquidity_swap_stake_rewards_unstake(self, client, clock):
        """Deploy; the artist adds liquidity, a fan buys and sells at the constant-product price with fee,
        stakes, the artist funds rewards, time passes, rewards grow, unstake returns the tokens; the staking
        logs reach the indexer's projection and the event bus."""
        seen: list[DomainEvent] = []

        async def collect(e: DomainEvent) -> None:
            seen.append(e)

        s, art, coin = await deployed_coin(client, clock)
        platform_of(client).bus.subscribe("test-coin-events", collect)
        artist_id = s["user"]["id"]
        assert coin["name"] == "Ann Coin" and coin["symbol"] == "ANN" and coin["decimals"] == 18
        assert coin["totalSupply"] == str(SUPPLY) and coin["status"] == "deployed"
        assert all(coin[k].startswith("0x") for k in ("address", "stakingAddress", "poolAddress"))
        assert await token_balance(client, coin["address"], art.address) == SUPPLY  # the whole supply
        again = await client.post(f"/coins/{artist_id}/deploy", json={
            "name": "Ann Coin", "symbol": "ANN", "initialSupply": "5"}, headers=bearer(s))
        assert (await error_of(again, 409))["code"] == "CONFLICT"
        pool = await (await client.get(f"/coins/{artist_id}/pool")).json()
        assert (pool["reserveCoin"], pool["reserveEth"], pool["priceEth"], pool["totalLiquidity"]) == \
            ("0", "0", None, "0")

        # -- the artist seeds the pool: approve + addLiquidity, signed in the artist's wallet
        c0, e0 = 100_000 * COIN, 5 * ETH
        r = await client.post(f"/coins/{artist_id}/pool/liquidity", json={
            "coinAmount": str(c0), "ethAmount": str(e0)}, headers=bearer(s))
        assert r.status == 200, await r.text()
        body = await r.json()
        assert [tx["to"] for tx in body["transactions"]] == [coin["address"], coin["poolAddress"]]
        assert body["transactions"][1]["value"] == str(e0)
        await send_all(client, art, body)
        pool = await (await client.get(f"/coins/{artist_id}/pool")).json()
        assert (int(pool["reserveCoin"]), int(pool["reserveEth"])) == (c0, e0)
        assert int(pool["totalLiquidity"]) == math.isqrt(c0 * e0)
        assert int(pool["priceEth"]) == e0 * 10**18 // c0

        # -- a fan with a test wallet buys: minAmountOut goes on-chain unchanged; quote = the maths
        fan = await sign_in(client, "fan@example.com")
        fw = await link_wallet(client, fan, clock)
        await fund(client, fw.address, 3 * ETH)
        expected = out_of(ETH, e0, c0)
        r = await client.post(f"/coins/{artist_id}/swap", json={
            "side": "buy", "amountIn": str(ETH), "minAmountOut": str(expected - 7)}, headers=bearer(fan))
        assert r.status == 200, await r.text()
        buy = await r.json()
        assert len(buy["transactions"]) == 1 and buy["transactions"][0]["value"] == str(ETH)
        q = buy["quote"]
        assert (q["side"], q["amountOut"], q["minAmountOut"]) == ("buy", str(expected), str(expected - 7))
        assert q["deadline"] >= int(clock.now().timestamp()) + 600 - 1
        assert int(q["priceEthAfter"]) == (e0 + ETH) * 10**18 // (c0 - expected)
        assert (expected - 7).to_bytes(32, "big").hex() in buy["transactions"][0]["data"]
        await send_all(client, fw, buy)
        assert await token_balance(client, coin["address"], fw.address) == expected
        pool = await (await client.get(f"/coins/{artist_id}/pool")).json()
        rc, re = int(pool["reserveCoin"]), int(pool["reserveEth"])
        assert (rc, re) == (c0 - expected, e0 + ETH)
        assert rc * re > c0 * e0  # the fee stays in the pool: k grows
        assert int(pool["priceEth"]) == re * 10**18 // rc

        # -- the fan sells a quarter back: approve (allowance short) + swapExactCoinForEth
        sell_in = expected // 4
        r = await client.post(f"/coins/{artist_id}/swap", json={
            "side": "sell", "amountIn": str(sell_in), "minAmountOut": "0"}, headers=bearer(fan))
        sell = await r.json()
        assert [tx["to"] for tx in sell["transactions"]] == [coin["address"], coin["poolAddress"]]
        eth_out = out_of(sell_in, rc, re)
        assert sell["quote"]["amountOut"] == str(eth_out)
        await send_all(client, fw, sell)
        pool = await (await client.get(f"/coins/{artist_id}/pool")).json()
        assert (int(pool["reserveCoin"]), int(pool["reserveEth"])) == (rc + sell_in, re - eth_out)
        held = expected - sell_in
        assert await token_balance(client, coin["address"], fw.address) == held

        # -- a second deposit with too much ETH: the pool takes coin and ETH at its price (and refunds the
        #    rest); the default minimums are those amounts less 0.5 %
        rc, re = rc + sell_in, re - eth_out
        c1, e1 = 1_000 * COIN, ETH
        coin_opt = e1 * rc // re
        used = (coin_opt, e1) if coin_opt <= c1 else (c1, c1 * re // rc)
        assert used[1] < e1
        r = await client.post(f"/coins/{artist_id}/pool/liquidity", json={
            "coinAmount": str(c1), "ethAmount": str(e1)}, headers=bearer(s))
        body = await r.json()
        add = body["transactions"][-1]
        args = decode(["uint256", "uint256", "uint256", "address", "uint256"], bytes.fromhex(add["data"][10:]))
        assert args[:3] == (c1, used[0] * 9950 // 10000, used[1] * 9950 // 10000)
        assert args[3].lower() == art.address.lower() and add["value"] == str(e1)
        await send_all(client, art, body)
        pool = await (await client.get(f"/coins/{artist_id}/pool")).json()
        assert (int(pool["reserveCoin"]), int(pool["reserveEth"])) == (rc + used[0], re + used[1])

        # -- amounts above the wallet's balance are refused before anything is built
        for path, payload in (("stake", {"amount": str(held + 1)}),
                              ("unstake", {"amount": "1"}),
                              ("swap", {"side": "buy", "amountIn": str(100 * ETH), "minAmountOut": "0"}),
                              ("swap", {"side": "sell", "amountIn": str(held + 1), "minAmountOut": "0"}),
                              ("pool/liquidity", {"coinAmount": str(held + 1), "ethAmount": "1000"})):
            err = await error_of(await client.post(f"/coins/{artist_id}/{path}", json=payload,
                                                   headers=bearer(fan)), 400)
            assert err["code"] == "VALIDATION_ERROR" and err["details"]["fields"], (path, err)

        # -- the fan stakes: approve only while the allowance is short
        stake_amount = held // 2
        r = await client.post(f"/coins/{artist_id}/stake", json={"amount": str(stake_amount)}, headers=bearer(fan))
        first = await r.json()
        assert [tx["to"] for tx in first["transactions"]] == [coin["address"], coin["stakingAddress"]]
        await send(client, fw, first["transactions"][0])  # the approve alone
        r = await client.post(f"/coins/{artist_id}/stake", json={"amount": str(stake_amount)}, headers=bearer(fan))
        second = await r.json()
        assert [tx["to"] for tx in second["transactions"]] == [coin["stakingAddress"]]
        await send_all(client, fw, second)
        stake = await (await client.get(f"/coins/{artist_id}/stakes/{fw.address}")).json()
        assert (stake["staked"], stake["rewards"]) == (str(stake_amount), "0")

        # -- only the artist funds rewards, from the coin's wallet
        reward, duration = 1_000 * COIN, 1_000
        err = await error_of(await client.post(f"/coins/{artist_id}/rewards", json={
            "amount": str(reward), "durationSeconds": duration}, headers=bearer(fan)), 403)
        assert err["code"] == "FORBIDDEN"
        r = await client.post(f"/coins/{artist_id}/rewards", json={
            "amount": str(reward), "durationSeconds": duration}, headers=bearer(s))
        assert r.status == 200, await r.text()
        await send_all(client, art, await r.json())
        await time_travel(client, 100)
        early = int((await (await client.get(f"/coins/{artist_id}/stakes/{fw.address}")).json())["rewards"])
        await time_travel(client, 300)
        later = int((await (await client.get(f"/coins/{artist_id}/stakes/{fw.address}")).json())["rewards"])
        assert 0 < early < later <= reward  # the only staker earns the whole stream over time

        # -- unstake returns the tokens
        before = await token_balance(client, coin["address"], fw.address)
        r = await client.post(f"/coins/{artist_id}/unstake", json={"amount": str(stake_amount)}, headers=bearer(fan))
        out = await r.json()
        assert [tx["to"] for tx in out["transactions"]] == [coin["stakingAddress"]]
        await send_all(client, fw, out)
        assert await token_balance(client, coin["address"], fw.address) == before + stake_amount
        stake = await (await client.get(f"/coins/{artist_id}/stakes/{fw.address}")).json()
        assert stake["staked"] == "0" and int(stake["rewards"]) >= later

        # -- the indexer projected the staking logs; they reach the bus as coin.* events, once each
        p = platform_of(client)

        async def projected() -> bool:
            async with p.uow(readonly=True) as u:
                logs = await u.chain_projection.dividends(coin["stakingAddress"], "Unstaked")
                return bool(logs) and await u.chain_projection.staked(coin["stakingAddress"], fw.address) == 0

        await until(projected)
        await until(lambda: _has(seen, "coin.unstaked"))
        staked_events = [e for e in seen if e.type == "coin.staked"]
        assert [e.data["amount"] for e in staked_events] == [str(stake_amount)]
        assert staked_events[0].data["userId"] == fan["user"]["id"]
        assert staked_events[0].data["address"] == fw.address
        assert len({e.id for e in seen}) == len(seen)


async def _has(seen: list[DomainEvent], kind: str) -> bool:
    return any(e.type == kind for e in seen)


class TestDeployRules:
    async def test_who_may_deploy_and_what(self, client, clock):
        """Non-owner 403, non-artist 403, no linked wallet 409, foreign address 403, bad name/symbol/supply 400,
        unknown coin 404; the chosen linked wallet receives the supply; a second deploy 409."""
        s = await artist(client, "ann@example.com")
        artist_id = s["user"]["id"]
        fan = await sign_in(client, "fan@example.com")
        good = {"name": "Ann Coin", "symbol": "ANN", "initialSupply": str(SUPPLY)}
        doc = await (await client.get("/openapi.json")).json()
        assert {p for p in doc["paths"] if p.startswith("/coins")} == {
            "/coins/{artistId}/deploy", "/coins/{artistId}", "/coins/{artistId}/pool",
            "/coins/{artistId}/pool/liquidity", "/coins/{artistId}/swap", "/coins/{artistId}/stake",
            "/coins/{artistId}/unstake", "/coins/{artistId}/rewards", "/coins/{artistId}/stakes/{address}"}
        swap_op = doc["paths"]["/coins/{artistId}/swap"]["post"]
        assert swap_op["x-audifi-who"] == "auth" and "200" in swap_op["responses"] and "502" in swap_op["responses"]
        assert set(doc["components"]["schemas"]["CoinTransactions"]["properties"]) == {"transactions", "from"}
        assert doc["components"]["schemas"]["SwapRequest"]["properties"]["side"] == {
            "enum": ["buy", "sell"], "description": "buy (ETH in, coin out) or sell (coin in, ETH out)"}
        assert (await error_of(await client.get(f"/coins/{artist_id}"), 404))["code"] == "COIN_NOT_FOUND"
        assert (await error_of(await client.get(f"/coins/{artist_id}/pool"), 404))["code"] == "COIN_NOT_FOUND"
        await error_of(await client.post(f"/coins/{artist_id}/deploy", json=good), 401)
        await error_of(await client.post(f"/coins/{artist_id}/deploy", json=good, headers=bearer(fan)), 403)
        await error_of(await client.post(f"/coins/{artist_id}/deploy", json={}, headers=bearer(fan)), 403)
        await error_of(await client.post(f"/coins/{fan['user']['id']}/deploy", json=good, headers=bearer(fan)), 403)
        err = await error_of(await client.post(f"/coins/{artist_id}/deploy", json=good, headers=bearer(s)), 409)
        assert err["details"]["reason"] == "no_linked_wallet"
        first = await link_wallet(client, s, clock)
        second = await link_wallet(client, s, clock)
        fans = await link_wallet(client, fan, clock)
        for wrong in (fans.address, Account.create().address):
            await error_of(await client.post(f"/coins/{artist_id}/deploy", json={**good, "address": wrong},
                                             headers=bearer(s)), 403)
        for field, value in (("name", ""), ("name", "x" * 33), ("symbol", "ann"), ("symbol", "A"),
                             ("symbol", "ABCDEFGHI"), ("initialSupply", "0"), ("initialSupply", str(2**128 + 1)),
                             ("initialSupply", "1e18"), ("initialSupply", 5)):
            err = await error_of(await client.post(f"/coins/{artist_id}/deploy", json={**good, field: value},
                                                   headers=bearer(s)), 400)
            assert field in err["details"]["fields"], (field, value, err)
        r = await client.post(f"/coins/{artist_id}/deploy", json={**good, "address": second.address,
                                                                  "initialSupply": str(2**128)},
                              headers={**bearer(s), "Idempotency-Key": "deploy-1"})
        assert r.status == 202, await r.text()
        job = await r.json()
        replay = await client.post(f"/coins/{artist_id}/deploy", json={**good, "address": second.address,
                                                                       "initialSupply": str(2**128)},
                                   headers={**bearer(s), "Idempotency-Key": "deploy-1"})
        assert replay.status == 202 and (await replay.json())["id"] == job["id"]
        pending = await (await client.get(f"/coins/{artist_id}")).json()
        assert pending["status"] in ("pending", "deployed") and pending["ownerAddress"] == second.address
        await error_of(await client.post(f"/coins/{artist_id}/deploy", json=good, headers=bearer(s)), 409)
        assert (await wait_job(client, s, job["id"]))["status"] == "confirmed"
        coin = await (await client.get(f"/coins/{artist_id}")).json()
        assert coin["totalSupply"] == str(2**128)
        assert await token_balance(client, coin["address"], second.address) == 2**128
        assert await token_balance(client, coin["address"], first.address) == 0
        await error_of(await client.post(f"/coins/{artist_id}/deploy", json=good, headers=bearer(s)), 409)


    async def test_concurrent_deploys_one_wins(self, client, clock):
        """Two deploys racing for one artist: one 202, the other 409 (the unique artist row decides)."""
        s = await artist(client, "ann@example.com")
        await link_wallet(client, s, clock)
        body = {"name": "Ann Coin", "symbol": "ANN", "initialSupply": str(SUPPLY)}
        url = f"/coins/{s['user']['id']}/deploy"
        r1, r2 = await asyncio.gather(client.post(url, json=body, headers=bearer(s)),
                                      client.post(url, json={**body, "symbol": "ANNB"}, headers=bearer(s)))
        assert sorted([r1.status, r2.status]) == [202, 409]
        winner = await (r1 if r1.status == 202 else r2).json()
        assert (await wait_job(client, s, winner["id"]))["status"] == "confirmed"
        coin = await (await client.get(url.removesuffix("/deploy"))).json()
        assert coin["status"] == "deployed" and coin["jobId"] == winner["id"]


class TestWalletRules:
    async def test_address_must_be_linked_and_the_pool_seeded(self, client, clock):
        """A foreign `address` is 403, no linked wallet 409, a swap on an empty pool 409, a past deadline and
        a bad stakes address 400, rewards from another of the artist's wallets 409."""
        s, art, coin = await deployed_coin(client, clock)
        artist_id = s["user"]["id"]
        fan = await sign_in(client, "fan@example.com")
        err = await error_of(await client.post(f"/coins/{artist_id}/stake", json={"amount": "1"},
                                               headers=bearer(fan)), 409)
        assert err["details"]["reason"] == "no_linked_wallet"
        await link_wallet(client, fan, clock)
        for path, payload in (("stake", {"amount": "1"}), ("unstake", {"amount": "1"}),
                              ("swap", {"side": "buy", "amountIn": "1", "minAmountOut": "0"}),
                              ("pool/liquidity", {"coinAmount": "1", "ethAmount": "1"})):
            err = await error_of(await client.post(f"/coins/{artist_id}/{path}",
                                                   json={**payload, "address": art.address},
                                                   headers=bearer(fan)), 403)
            assert err["code"] == "FORBIDDEN", path
        err = await error_of(await client.post(f"/coins/{artist_id}/swap", json={
            "side": "buy", "amountIn": "1", "minAmountOut": "0"}, headers=bearer(s)), 409)
        assert "liquidity" in err["message"]
        await error_of(await client.post(f"/coins/{artist_id}/swap", json={
            "side": "hold", "amountIn": "1", "minAmountOut": "0"}, headers=bearer(s)), 400)
        err = await error_of(await client.post(f"/coins/{artist_id}/pool/liquidity", json={
            "coinAmount": str(COIN), "ethAmount": str(ETH), "deadline": int(clock.now().timestamp()) - 1},
            headers=bearer(s)), 400)
        assert "deadline" in err["details"]["fields"]
        await error_of(await client.get(f"/coins/{artist_id}/stakes/0x1234"), 400)
        other = await link_wallet(client, s, clock)
        err = await error_of(await client.post(f"/coins/{artist_id}/rewards", json={
            "amount": str(COIN), "durationSeconds": 10, "address": other.address}, headers=bearer(s)), 409)
        assert err["details"]["artistWallet"] == art.address
        await error_of(await client.post(f"/coins/{artist_id}/rewards", json={
            "amount": "5", "durationSeconds": 10}, headers=bearer(s)), 400)
        stake = await (await client.get(f"/coins/{artist_id}/stakes/{art.address}")).json()
        assert (stake["staked"], stake["rewards"]) == ("0", "0")


class TestChainDown:
    async def test_rpc_down_is_502(self, aiohttp_client, tmp_path, clock):
        """When the node stops answering, reads and transaction building answer 502 BLOCKCHAIN_ERROR."""
        client = await aiohttp_client(create_app(base_config(tmp_path), clock=clock))
        s, art, coin = await deployed_coin(client, clock)
        artist_id = s["user"]["id"]
        platform_of(client).chain.evm.close()  # the node is gone
        for resp in (await client.get(f"/coins/{artist_id}"),
                     await client.get(f"/coins/{artist_id}/pool"),
                     await client.get(f"/coins/{artist_id}/stakes/{art.address}"),
                     await client.post(f"/coins/{artist_id}/stake", json={"amount": "1"}, headers=bearer(s))):
            assert (await error_of(resp, 502))["code"] == "BLOCKCHAIN_ERROR"


class TestDevChainRestart:
    async def test_a_new_dev_chain_forgets_coins_of_the_old_one(self, aiohttp_client, tmp_path, clock, pg_clean):
        """On PostgreSQL, coins deployed on an earlier in-process chain are forgotten at start (their contracts
        are gone), so the artist can deploy again on the new chain."""
        cfg = base_config(tmp_path, database_url=pg_clean)
        first = await aiohttp_client(create_app(cfg, clock=clock))
        s, art, old = await deployed_coin(first, clock)
        await first.close()
        second = await aiohttp_client(create_app(cfg, clock=clock))
        s = await sign_in(second, "ann@example.com")
        artist_id = s["user"]["id"]
        assert s["user"]["wallets"] == [art.address]
        assert (await error_of(await second.get(f"/coins/{artist_id}"), 404))["code"] == "COIN_NOT_FOUND"
        r = await second.post(f"/coins/{artist_id}/deploy", json={
            "name": "Ann Again", "symbol": "ANN", "initialSupply": "1000"}, headers=bearer(s))
        assert r.status == 202, await r.text()
        assert (await wait_job(second, s, (await r.json())["id"]))["status"] == "confirmed"
        coin = await (await second.get(f"/coins/{artist_id}")).json()
        assert (coin["name"], coin["totalSupply"]) == ("Ann Again", "1000")
        assert await token_balance(second, coin["address"], art.address) == 1000
