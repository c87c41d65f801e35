"""The MasterService calls other contexts make (payments, V Studio), tested directly on a running
platform (memory and PostgreSQL + Redis, in-process EVM): allocation from the treasury with a hold,
checkout reservations under concurrency, locking a master."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from audifi_adapters.config import Config
from audifi_core.errors import Conflict, NotFound
from audifi_http import create_app

from ..http.helpers import bearer, platform_of, sign_in
from .kit import artist, fast, ipo_body, master, registered, until, wait_job


@pytest.fixture
async def client(aiohttp_client, backend: Config, clock):
    return await aiohttp_client(create_app(fast(backend), clock=clock))


async def live_master(client, clock, total: int) -> tuple[dict, dict]:
    """A registered master whose IPO of ``total`` shares is fully minted and live."""
    s = await artist(client, f"artist-{total}@example.com")
    m = await registered(client, s)
    await client.post(f"/masters/{m['id']}/ipo", json=ipo_body(clock, total, starts_in=30), headers=bearer(s))
    job = await (await client.post(f"/masters/{m['id']}/mint", json={"count": total}, headers=bearer(s))).json()
    await wait_job(client, s, job["id"])
    clock.advance(30)
    await until(lambda: _live(client, m["id"]))
    return s, m


async def _live(client, mid: str) -> bool:
    return (await master(client, mid))["ipo"]["status"] == "live"


class TestAllocateFromTreasury:
    async def test_free_shares_go_to_the_custodial_address_once_per_op_key(self, client, clock) -> None:
        """count ids are taken and moved with a hold; the same op_key changes nothing; share.transferred once."""
        p = platform_of(client)
        transferred = []

        async def on_event(event):
            if event.type == "share.transferred":
                transferred.append(event)

        p.bus.subscribe("test-transferred", on_event)
        _, m = await live_master(client, clock, 20)
        mid = m["id"]
        fan = await sign_in(client, "grant@example.com")
        fid = fan["user"]["id"]
        hold = clock.now() + timedelta(days=7)
        async with p.uow() as u:
            job = await p.masters.allocate_from_treasury(u, master_id=mid, user_id=fid, token_ids=None, count=4,
                                                         op_key="grant:1", hold_until=hold)
        async with p.uow() as u:
            again = await p.masters.allocate_from_treasury(u, master_id=mid, user_id=fid, token_ids=None, count=4,
                                                           op_key="grant:1", hold_until=hold)
            assert again.id == job.id
            assert [t for _, t, _ in await u.masters.reservation("grant:1")] == [1, 2, 3, 4]
        assert job.kind.value == "transfer" and job.call.to == fan["user"]["custodialAddress"]
        await wait_job(client, fan, job.id)
        await until(lambda: len(transferred) == 1)
        assert transferred[0].data["tokenIds"] == [1, 2, 3, 4] and transferred[0].data["userId"] == fid
        holdings = await until(lambda: _holdings(client, fan))
        assert holdings[0]["shares"] == 4 and holdings[0]["custodial"] is True
        assert holdings[0]["withdrawableAt"] == hold.isoformat().replace("+00:00", "Z")
        assert await p.masters.shares_held(fid, mid) == 4
        for bad in (dict(token_ids=None, count=100), dict(token_ids=[19, 20, 21], count=3)):
            with pytest.raises(Conflict):
                async with p.uow() as u:
                    await p.masters.allocate_from_treasury(u, master_id=mid, user_id=fid, op_key="grant:2",
                                                           hold_until=None, **bad)
        async with p.uow() as u:
            assert await u.masters.reservation("grant:2") == []  # rolled back with the caller's unit of work
            assert await u.chain_jobs.get_by_op_key("grant:2") is None
            with pytest.raises(NotFound):
                await p.masters.allocate_from_treasury(u, master_id="mst_none", user_id=fid, token_ids=None,
                                                       count=1, op_key="grant:3", hold_until=None)


async def _holdings(client, session):
    r = await client.get("/user/holdings", headers=bearer(session))
    body = await r.json()
    return body or None


class TestCustodialAddresses:
    async def test_a_new_users_custodial_address_maps_to_them(self, client) -> None:
        """user.registered → the user's custodial address is known, so holder lists can name them."""
        p = platform_of(client)
        fan = await sign_in(client, "new@example.com")

        async def known() -> str | None:
            async with p.uow(readonly=True) as u:
                return await u.masters.custodial_owner(fan["user"]["custodialAddress"])

        assert await until(known) == fan["user"]["id"]


class TestCheckoutReservations:
    async def test_concurrent_checkouts_never_oversell(self, client, clock) -> None:
        """4 checkouts of 6 among 20 live shares: 3 get distinct ids, 1 gets 409 and reserves nothing."""
        p = platform_of(client)
        _, m = await live_master(client, clock, 20)
        mid = m["id"]

        async def checkout(i: int):
            async with p.uow() as u:
                return await p.masters.reserve_tokens(u, mid, 6, f"chk_{i}")

        got = await asyncio.gather(*(checkout(i) for i in range(4)), return_exceptions=True)
        ok = [g for g in got if isinstance(g, list)]
        assert len(ok) == 3 and sum(isinstance(g, Conflict) for g in got) == 1
        ids = sorted(t for g in ok for t in g)
        assert len(ids) == 18 and len(set(ids)) == 18
        async with p.uow() as u:
            assert await p.masters.reserve_tokens(u, mid, 2, "chk_last") == [t for t in range(1, 21) if t not in ids]
            assert await p.masters.reserve_tokens(u, mid, 2, "chk_last") == [t for t in range(1, 21) if t not in ids]
        done = next(i for i, g in enumerate(got) if isinstance(g, list))
        async with p.uow() as u:
            assert await p.masters.mark_sold(u, f"chk_{done}") == 6
            other = next(i for i, g in enumerate(got) if isinstance(g, list) and i != done)
            assert await p.masters.release_tokens(u, f"chk_{other}") == 6
        async with p.uow() as u:
            assert len(await p.masters.reserve_tokens(u, mid, 6, "chk_again")) == 6
        assert (await master(client, mid))["ipo"]["sharesSold"] == 6

    async def test_no_reservation_unless_live(self, client, clock) -> None:
        """Before the IPO is live (or with no IPO) a checkout cannot reserve: 409."""
        p = platform_of(client)
        s = await artist(client, "soon@example.com")
        m = await registered(client, s)
        async with p.uow() as u:
            with pytest.raises(Conflict):
                await p.masters.reserve_tokens(u, m["id"], 1, "chk_x")
        assert p.masters.ipo_status is not None
        with pytest.raises(Conflict):
            p.masters.ipo_status(await p.masters.get_master(m["id"]))
        await client.post(f"/masters/{m['id']}/ipo", json=ipo_body(clock, 5), headers=bearer(s))
        assert p.masters.ipo_status(await p.masters.get_master(m["id"])) == "scheduled"
        async with p.uow() as u:
            with pytest.raises(Conflict):
                await p.masters.reserve_tokens(u, m["id"], 1, "chk_x")


class TestLockMaster:
    async def test_a_master_locks_once_in_the_callers_unit_of_work(self, client, clock) -> None:
        """lock_master sets finalAudioCid and lockedAt; a second lock is 409; an unknown master 404."""
        p = platform_of(client)
        s = await artist(client, "lock@example.com")
        m = await registered(client, s)
        async with p.uow() as u:
            locked = await p.masters.lock_master(u, m["id"], "bafkfinal", clock.now())
        assert locked.final_audio_cid == "bafkfinal"
        view = await master(client, m["id"])
        assert view["finalAudioCid"] == "bafkfinal"
        assert view["lockedAt"] == clock.now().isoformat().replace("+00:00", "Z")
        async with p.uow() as u:
            with pytest.raises(Conflict):
                await p.masters.lock_master(u, m["id"], None, clock.now())
            with pytest.raises(NotFound) as e:
                await p.masters.lock_master(u, "mst_none", None, clock.now())
        assert e.value.code == "MASTER_NOT_FOUND"
        with pytest.raises(NotFound):
            await p.masters.get_master("mst_none")
        assert (await p.masters.get_master(m["id"])).locked_at == clock.now()
