"""IPO and mint over HTTP on the in-process EVM (memory and PostgreSQL + Redis): one IPO, the supply
cap under concurrent mints, Idempotency-Key, derived status, ipo.launched once, close to the artist."""

from __future__ import annotations

import asyncio

import pytest

from audifi_adapters.config import Config
from audifi_http import create_app

from ..http.helpers import bearer, error_of, platform_of, sign_in
from .kit import artist, fast, ipo_body, link_wallet, master, refresh, registered, until, wait_job


@pytest.fixture
async def client(aiohttp_client, backend: Config, clock):
    return await aiohttp_client(create_app(fast(backend), clock=clock))


def collect(client, kind: str) -> list:
    seen: list = []

    async def handler(event):
        if event.type == kind:
            seen.append(event)

    platform_of(client).bus.subscribe(f"test-{kind}-{id(seen)}", handler)
    return seen


async def mint(client, s, mid: str, count: int, key: str | None = None):
    headers = {**bearer(s), **({"Idempotency-Key": key} if key else {})}
    return await client.post(f"/masters/{mid}/mint", json={"count": count}, headers=headers)


async def ipo_of(client, mid: str) -> dict:
    return (await master(client, mid))["ipo"]


class TestIpo:
    async def test_validation_ownership_and_one_per_master_under_a_race(self, client, clock) -> None:
        """Bad IPO 400 with fields; non-owner and fan 403; unknown 404; of 5 racing IPOs one wins, 4 get 409."""
        s = await artist(client, "ipo@example.com")
        other = await artist(client, "rival@example.com")
        fan = await sign_in(client, "fan@example.com")
        m = await registered(client, s)
        url = f"/masters/{m['id']}/ipo"
        bad = ipo_body(clock, 20_000, starts_in=-86400, pricePerShare={"amount": 0, "currency": "USD"},
                       maxPerUser=0)
        e = await error_of(await client.post(url, json=bad, headers=bearer(s)), 400)
        assert {"totalShares", "startsAt", "pricePerShare.amount", "pricePerShare.currency"} <= set(
            e["details"]["fields"])
        later = ipo_body(clock)
        later["endsAt"] = later["startsAt"]
        assert "endsAt" in (await error_of(await client.post(url, json=later, headers=bearer(s)), 400))[
            "details"]["fields"]
        e = await error_of(await client.post(url, json={"totalShares": "ten"}, headers=bearer(s)), 400)
        assert e["code"] == "VALIDATION_ERROR"
        assert (await error_of(await client.post(url, json=ipo_body(clock), headers=bearer(other)), 403))[
            "code"] == "FORBIDDEN"
        await error_of(await client.post(url, json=ipo_body(clock), headers=bearer(fan)), 403)
        await error_of(await client.post(url, json=ipo_body(clock)), 401)
        await error_of(await client.post("/masters/mst_x/ipo", json=ipo_body(clock), headers=bearer(s)), 404)
        rs = await asyncio.gather(*(client.post(url, json=ipo_body(clock, 100 + i), headers=bearer(s))
                                    for i in range(5)))
        assert sorted(r.status for r in rs) == [200, 409, 409, 409, 409]
        won = next(r for r in rs if r.status == 200)
        ipo = await won.json()
        assert ipo["status"] == "scheduled" and ipo["minted"] == 0 and ipo["sharesSold"] == 0
        assert ipo["maxPerUser"] == ipo["totalShares"] // 10
        assert (await ipo_of(client, m["id"]))["totalShares"] == ipo["totalShares"]
        for r in rs:
            if r.status == 409:
                assert (await error_of(r, 409))["code"] == "CONFLICT"

    async def test_a_pending_master_has_no_ipo_yet(self, client, clock, monkeypatch) -> None:
        """Before its contracts exist a master cannot get an IPO (409)."""
        s = await artist(client, "early@example.com")
        chain = platform_of(client).chain.chain

        async def slow(*_a, **_k):
            from audifi_core.errors import ChainError
            raise ChainError("down", details={"reason": "unavailable"})

        monkeypatch.setattr(chain, "masters_of", slow)
        from .kit import upload
        m = await (await upload(client, s)).json()
        e = await error_of(await client.post(f"/masters/{m['id']}/ipo", json=ipo_body(clock), headers=bearer(s)), 409)
        assert e["details"]["status"] == "pending"


class TestMint:
    async def test_one_hundred_shares_in_batches_once_each_then_live(self, client, clock) -> None:
        """40+40+20 under repeated same-key requests mint exactly 100; over-mint 409; live at startsAt, launched once."""
        launched = collect(client, "ipo.launched")
        minted = collect(client, "share.minted")
        s = await artist(client, "mint@example.com")
        m = await registered(client, s)
        mid = m["id"]
        assert (await client.post(f"/masters/{mid}/ipo", json=ipo_body(clock, 100), headers=bearer(s))).status == 200
        jobs = []
        for i, n in enumerate((40, 40, 20)):
            first = await mint(client, s, mid, n, key=f"batch-{i}")
            assert first.status == 202, await first.text()
            again = await asyncio.gather(*(mint(client, s, mid, n, key=f"batch-{i}") for _ in range(3)))
            body = await first.json()
            for r in again:
                assert r.status == 202 and r.headers.get("Idempotent-Replayed") == "true"
                assert (await r.json())["id"] == body["id"]
            assert body["kind"] == "mint" and body["status"] in ("queued", "submitted", "confirmed")
            jobs.append(body["id"])
        e = await error_of(await mint(client, s, mid, 1), 409)
        assert e["details"]["totalShares"] == 100
        await error_of(await mint(client, s, mid, 251), 400)
        await error_of(await mint(client, s, mid, 0), 400)
        other = await artist(client, "not-owner@example.com")
        await error_of(await mint(client, other, mid, 1), 403)
        results = [await wait_job(client, s, j) for j in jobs]
        assert sorted((r["result"]["firstId"], r["result"]["lastId"]) for r in results) == [(1, 40), (41, 80),
                                                                                          (81, 100)]
        shares_contract = m["contractAddress"]
        chain = platform_of(client).chain.chain
        assert await chain.total_minted(shares_contract) == 100
        assert await chain.max_supply(shares_contract) == 100
        ipo = await until(lambda: _ipo_minted(client, mid, 100))
        assert ipo["status"] == "scheduled"  # fully minted, but startsAt is an hour away
        treasury = chain.address_of("platform")
        view = await until(lambda: _holders(client, mid, 100))
        assert view == {"totalShares": 100, "minted": 100, "holders": [{"address": treasury, "shares": 100}]}
        clock.advance(3600)
        await until(lambda: len(launched) == 1)
        assert (await ipo_of(client, mid))["status"] == "live"
        await platform_of(client).masters.tick()
        await asyncio.sleep(0.3)
        assert [e.data["masterId"] for e in launched] == [mid]
        assert sorted(e.data["count"] for e in minted) == [20, 40, 40]
        clock.advance(7 * 86400)
        assert (await ipo_of(client, mid))["status"] == "closed"
        await error_of(await mint(client, await refresh(client, s), mid, 1), 409)

    async def test_concurrent_mints_never_pass_the_supply(self, client, clock) -> None:
        """totalShares 10: of 6 racing mints of 3, exactly 3 are accepted; the chain ends with 10 after one more."""
        s = await artist(client, "race@example.com")
        m = await registered(client, s)
        mid = m["id"]
        await client.post(f"/masters/{mid}/ipo", json=ipo_body(clock, 10), headers=bearer(s))
        rs = await asyncio.gather(*(mint(client, s, mid, 3) for _ in range(6)))
        assert sorted(r.status for r in rs) == [202, 202, 202, 409, 409, 409]
        assert (await mint(client, s, mid, 2)).status == 409
        last = await mint(client, s, mid, 1)
        assert last.status == 202
        for r in [*rs, last]:
            if r.status == 202:
                await wait_job(client, s, (await r.json())["id"])
        assert await platform_of(client).chain.chain.total_minted(m["contractAddress"]) == 10
        assert (await until(lambda: _ipo_minted(client, mid, 10)))["minted"] == 10

    async def test_a_mint_that_beat_the_supply_cap_waits_for_it_then_runs_once(self, client, clock,
                                                                                monkeypatch) -> None:
        """With the supply-cap job held up the mint reverts and is parked; once the cap is set it mints exactly once."""
        from audifi_core.errors import ChainError

        s = await artist(client, "parked@example.com")
        m = await registered(client, s)
        chain = platform_of(client).chain.chain
        real = chain.max_supply

        async def down(*_a, **_k):
            raise ChainError("the node is unreachable", details={"reason": "unavailable"})

        monkeypatch.setattr(chain, "max_supply", down)
        assert (await client.post(f"/masters/{m['id']}/ipo", json=ipo_body(clock, 5),
                                  headers=bearer(s))).status == 200
        job = await (await mint(client, s, m["id"], 5)).json()
        failed = await wait_job(client, s, job["id"], "failed")
        assert failed["error"]["code"] == "TX_REVERTED"
        monkeypatch.setattr(chain, "max_supply", real)
        done = await wait_job(client, s, job["id"])
        assert (done["result"]["firstId"], done["result"]["lastId"]) == (1, 5)
        assert await chain.total_minted(m["contractAddress"]) == 5
        assert (await until(lambda: _ipo_minted(client, m["id"], 5)))["minted"] == 5

    async def test_the_close_moves_unsold_shares_to_the_artist(self, client, clock) -> None:
        """At endsAt the shares neither sold nor reserved go from the treasury to the artist's wallet."""
        s = await artist(client, "close@example.com")
        wallet = await link_wallet(client, s, clock)
        m = await registered(client, s)
        mid = m["id"]
        await client.post(f"/masters/{mid}/ipo", json=ipo_body(clock, 6, starts_in=60, lasts=3600),
                          headers=bearer(s))
        await wait_job(client, s, (await (await mint(client, s, mid, 6)).json())["id"])
        clock.advance(60)
        await until(lambda: _ipo_status(client, mid, "live"))
        p = platform_of(client)
        async with p.uow() as u:
            assert await p.masters.reserve_tokens(u, mid, 2, "chk_sold") == [1, 2]
            assert await p.masters.reserve_tokens(u, mid, 1, "chk_open") == [3]
            assert await p.masters.mark_sold(u, "chk_sold") == 2
        assert (await ipo_of(client, mid))["sharesSold"] == 2
        clock.advance(3600)
        treasury = p.chain.chain.address_of("platform")
        view = await until(lambda: _holders_at(client, mid, wallet.address, 3))
        assert {h["address"]: h["shares"] for h in view["holders"]} == {treasury: 3, wallet.address: 3}
        async with p.uow() as u:  # the artist's shares are no longer for sale
            assert [t for _, t, _ in await u.masters.reservation(f"master:ipo-close:{mid}")] == [4, 5, 6]


async def _ipo_minted(client, mid: str, n: int) -> dict | None:
    ipo = await ipo_of(client, mid)
    return ipo if ipo["minted"] == n else None


async def _ipo_status(client, mid: str, status: str) -> dict | None:
    ipo = await ipo_of(client, mid)
    return ipo if ipo["status"] == status else None


async def _holders(client, mid: str, n: int) -> dict | None:
    view = await (await client.get(f"/masters/{mid}/shares")).json()
    return view if view["minted"] == n else None


async def _holders_at(client, mid: str, address: str, n: int) -> dict | None:
    view = await (await client.get(f"/masters/{mid}/shares")).json()
    return view if any(h["address"] == address and h["shares"] == n for h in view["holders"]) else None



