"""Shares, holdings and dividends over HTTP on the in-process EVM (memory and PostgreSQL + Redis).

Everything read here comes from the indexer's projection of chain events: allocations to a custodial
address, a transfer to a linked wallet, a deposit sent from the artist's wallet through /dev/rpc, a
wallet claim signed by the holder, a custodial claim run as a chain job — each paying the exact wei.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from eth_account import Account

from audifi_adapters.config import Config
from audifi_core.chain.model import JobKind, TransferShares
from audifi_http import create_app

from ..http.helpers import bearer, error_of, platform_of, sign_in
from .kit import (
    ETH,
    artist,
    balance,
    fast,
    fund,
    ipo_body,
    link_wallet,
    registered,
    send,
    until,
    wait_job,
)


@pytest.fixture
async def client(aiohttp_client, backend: Config, clock):
    return await aiohttp_client(create_app(fast(backend), clock=clock))


async def shares_view(client, mid: str, session=None) -> dict:
    r = await client.get(f"/masters/{mid}/shares", headers=bearer(session) if session else None)
    assert r.status == 200, await r.text()
    return await r.json()


async def dividends(client, mid: str, address: str | None = None) -> dict:
    r = await client.get(f"/masters/{mid}/dividends", params={"address": address} if address else None)
    assert r.status == 200, await r.text()
    return await r.json()


class TestSharesAndDividends:
    async def test_holders_holdings_deposit_and_claims_follow_the_chain(self, client, clock) -> None:
        """Owner sees user ids, others don't; holdings list every address; a deposit shows; claims pay exact wei."""
        p = platform_of(client)
        deposited = []

        async def on_deposit(event):
            if event.type == "dividend.deposited":
                deposited.append(event)

        p.bus.subscribe("test-deposits", on_deposit)
        s = await artist(client, "owner@example.com")
        artist_wallet = await link_wallet(client, s, clock)
        await fund(client, artist_wallet.address, 5 * ETH)
        m = await registered(client, s)
        mid, shares, vault = m["id"], m["contractAddress"], m["dividendAddress"]
        await client.post(f"/masters/{mid}/ipo", json=ipo_body(clock, 100, starts_in=60), headers=bearer(s))
        job = await (await client.post(f"/masters/{mid}/mint", json={"count": 100}, headers=bearer(s))).json()
        await wait_job(client, s, job["id"])
        clock.advance(60)
        s = await _fresh(client, s)

        # a buyer's paid checkout: reserved, sold, moved to the custodial address with a hold
        fan = await sign_in(client, "fan@example.com")
        fan_id = fan["user"]["id"]
        custodial = fan["user"]["custodialAddress"]
        hold = clock.now() + timedelta(days=7)
        async with p.uow() as u:
            ids = await p.masters.reserve_tokens(u, mid, 10, "chk_1")
            assert ids == list(range(1, 11))
            await p.masters.mark_sold(u, "chk_1")
            alloc = await p.masters.allocate_from_treasury(u, master_id=mid, user_id=fan_id, token_ids=ids, count=10,
                                                           op_key="pay:chk_1", hold_until=hold)
        await wait_job(client, fan, alloc.id)
        # another holder with a wallet of their own
        fan2 = await sign_in(client, "fan2@example.com")
        wallet2 = await link_wallet(client, fan2, clock)
        await fund(client, wallet2.address, ETH)
        async with p.uow() as u:
            xfer = await p.jobs.enqueue(u, JobKind.TRANSFER, "test:to-wallet", fan2["user"]["id"],
                                        TransferShares(shares, p.masters.treasury, wallet2.address, (11, 12, 13, 14, 15)))
        await wait_job(client, fan2, xfer.id)

        treasury = p.masters.treasury
        public = await until(lambda: _when(shares_view(client, mid), lambda v: len(v["holders"]) == 3))
        assert public == {"totalShares": 100, "minted": 100, "holders": [
            {"address": treasury, "shares": 85}, {"address": custodial, "shares": 10},
            {"address": wallet2.address, "shares": 5}]}
        owner = await shares_view(client, mid, s)
        assert [(h["address"], h["userId"]) for h in owner["holders"]] == [
            (treasury, None), (custodial, fan_id), (wallet2.address, fan2["user"]["id"])]
        assert "userId" not in (await shares_view(client, mid, fan))["holders"][1]

        r = await client.get("/user/holdings", headers=bearer(fan))
        assert await r.json() == [{"masterId": mid, "title": "Song", "address": custodial, "custodial": True,
                                   "shares": 10, "tokenIds": list(range(1, 11)),
                                   "withdrawableAt": hold.isoformat().replace("+00:00", "Z")}]
        r = await client.get("/user/holdings", headers=bearer(fan2))
        assert await r.json() == [{"masterId": mid, "title": "Song", "address": wallet2.address, "custodial": False,
                                   "shares": 5, "tokenIds": [11, 12, 13, 14, 15], "withdrawableAt": None}]
        assert await p.masters.shares_held(fan_id, mid) == 10
        assert await p.masters.shares_held(fan2["user"]["id"], mid) == 5

        # the artist deposits 1 ETH from their linked wallet
        await error_of(await client.post(f"/masters/{mid}/dividends/deposit", json={"amount": "1"},
                                         headers=bearer(fan)), 403)
        await error_of(await client.post(f"/masters/{mid}/dividends/deposit", json={"amount": "-5"},
                                         headers=bearer(s)), 400)
        await error_of(await client.post(f"/masters/{mid}/dividends/deposit",
                                         json={"amount": "1", "address": wallet2.address}, headers=bearer(s)), 403)
        r = await client.post(f"/masters/{mid}/dividends/deposit", json={"amount": str(ETH)}, headers=bearer(s))
        assert r.status == 200, await r.text()
        (tx,) = (await r.json())["transactions"]
        assert tx["to"] == vault and tx["value"] == str(ETH) and tx["chainId"] == p.chain.chain.chain_id
        sent = await send(client, artist_wallet, tx)
        view = await until(lambda: _when(dividends(client, mid), lambda v: v["deposits"]))
        assert view["totalDeposited"] == str(ETH) and view["perShare"] == str(ETH // 100)
        assert view["deposits"][0]["amount"] == str(ETH) and view["deposits"][0]["txHash"] == sent["transactionHash"]
        assert "claimable" not in view
        assert (await dividends(client, mid, wallet2.address))["claimable"] == str(5 * ETH // 100)
        assert (await dividends(client, mid, custodial))["claimable"] == str(10 * ETH // 100)
        await until(lambda: len(deposited) == 1)
        await p.masters.tick()
        await asyncio.sleep(0.2)
        assert [e.data["txHash"] for e in deposited] == [sent["transactionHash"]]

        # a wallet holder signs the claim; the wallet gains exactly 5 shares' worth minus its own gas
        before = await balance(client, wallet2.address)
        r = await client.post(f"/masters/{mid}/dividends/claim", json={}, headers=bearer(fan2))
        assert r.status == 200, await r.text()
        (claim_tx,) = (await r.json())["transactions"]
        got = await send(client, wallet2, claim_tx)
        gas_paid = int(got["gasUsed"], 16) * int(got["effectiveGasPrice"], 16)
        assert await balance(client, wallet2.address) == before + 5 * ETH // 100 - gas_paid
        await error_of(await client.post(f"/masters/{mid}/dividends/claim", json={}, headers=bearer(fan2)), 409)

        # a custodial holder's claim is a job signed by the custodial key, paying their linked wallet
        payee = await link_wallet(client, fan, clock, Account.create())
        await error_of(await client.post(f"/masters/{mid}/dividends/claim", json={"address": wallet2.address},
                                         headers=bearer(fan)), 403)
        body = {"address": custodial, "to": payee.address}
        headers = {**bearer(fan), "Idempotency-Key": "claim-1"}
        first = await client.post(f"/masters/{mid}/dividends/claim", json=body, headers=headers)
        assert first.status == 202, await first.text()
        again = await client.post(f"/masters/{mid}/dividends/claim", json=body, headers=headers)
        assert (await again.json())["id"] == (await first.json())["id"]
        done = await wait_job(client, fan, (await first.json())["id"])
        assert done["kind"] == "claim" and done["result"]["amount"] == str(10 * ETH // 100)
        assert await balance(client, payee.address) == 10 * ETH // 100
        assert (await dividends(client, mid, custodial))["claimable"] == "0"

    async def test_error_paths(self, client, clock) -> None:
        """Unknown master 404; a pending master's dividends 404; no wallet → 409; nothing minted → 409."""
        s = await artist(client, "err@example.com")
        await error_of(await client.get("/masters/mst_none/dividends"), 404)
        await error_of(await client.get("/masters/mst_none/shares"), 404)
        await error_of(await client.post("/masters/mst_none/dividends/claim", json={}, headers=bearer(s)), 404)
        m = await registered(client, s)
        e = await error_of(await client.post(f"/masters/{m['id']}/dividends/deposit", json={"amount": "10"},
                                             headers=bearer(s)), 409)
        assert "wallet" in e["message"].lower()
        await link_wallet(client, s, clock)
        await error_of(await client.post(f"/masters/{m['id']}/dividends/deposit", json={"amount": "10"},
                                         headers=bearer(s)), 409)
        await error_of(await client.post(f"/masters/{m['id']}/dividends/claim", json={}, headers=bearer(s)), 409)
        await error_of(await client.get(f"/masters/{m['id']}/dividends", params={"address": "0x12"}), 400)
        await error_of(await client.get("/user/holdings"), 401)
        assert await (await client.get("/user/holdings", headers=bearer(s))).json() == []
        empty = await shares_view(client, m["id"])
        assert empty == {"totalShares": 0, "minted": 0, "holders": []}


async def _when(value, predicate):
    v = await value
    return v if predicate(v) else None


async def _fresh(client, s):
    r = await client.post("/auth/refresh", json={"refreshToken": s["refreshToken"]})
    return await r.json() if r.status == 200 else s
