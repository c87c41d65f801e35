"""V Studio end to end on the other contexts (memory and PG+Redis): real masters (IPFS stand-in,
in-process EVM) — a session on an uploaded master, the lock seen on GET /masters/:id, a
`shareholders`, weighted session whose audience and weights come from shares really held — and a
real subscription (payments' local gateway) opening a `subscribers` session."""

from __future__ import annotations

import pytest

from audifi_adapters.studio.bridges import PlatformShareHoldings, PlatformStudioMasters
from audifi_core.errors import Conflict, NotFound
from audifi_http import create_app

from ..http.helpers import bearer, error_of, platform_of, sign_in
from ..masters.kit import artist, fast, ipo_body, master, registered, until, upload, wait_job
from .kit import StandIns, Studio, add_decision, connect, open_studio, recv, uid, vote


@pytest.fixture
async def client(aiohttp_client, backend, clock):
    return await aiohttp_client(create_app(fast(backend), clock=clock))


class TestOnRealMasters:
    async def test_lock_sets_the_masters_final_cid(self, client, clock):
        """A session on an uploaded master; its lock shows on GET /masters/:id; then the master is closed to sessions."""
        s = await artist(client, "e2e-artist@example.com")
        r = await upload(client, s)
        assert r.status == 201, await r.text()
        m = await r.json()
        studio = platform_of(client).studio
        assert isinstance(studio.masters, PlatformStudioMasters)
        r = await client.post("/vstudio/sessions", json={"masterId": m["id"], "title": "Mixdown",
                                                         "audience": "everyone"}, headers=bearer(s))
        assert r.status == 201, await r.text()
        sid = (await r.json())["id"]
        other = await artist(client, "e2e-other@example.com")
        r = await client.post("/vstudio/sessions", json={"masterId": m["id"], "title": "Mine",
                                                         "audience": "everyone"}, headers=bearer(other))
        await error_of(r, 403)
        r = await client.post(f"/vstudio/sessions/{sid}/lock", json={}, headers=bearer(s))
        assert r.status == 200, await r.text()
        locked = await r.json()
        assert locked["finalCid"] == m["audioCid"]
        got = await master(client, m["id"], s)
        assert got["finalAudioCid"] == m["audioCid"] and got["lockedAt"] == locked["lockedAt"]
        r = await client.post("/vstudio/sessions", json={"masterId": m["id"], "title": "Again",
                                                         "audience": "everyone"}, headers=bearer(s))
        await error_of(r, 409)
        with pytest.raises(Conflict):
            async with platform_of(client).uow() as u:
                await studio.masters.lock(u, m["id"], None, clock.now())
        with pytest.raises(NotFound) as e:
            await studio.masters.get("mst_nope")
        assert e.value.code == "MASTER_NOT_FOUND"

    async def test_shareholders_weighted_by_real_holdings(self, client, clock):
        """Shares transferred on-chain decide who may take part and what each vote weighs."""
        s = await artist(client, "e2e-holders@example.com")
        m = await registered(client, s)
        mid = m["id"]
        r = await client.post(f"/masters/{mid}/ipo", json=ipo_body(clock, 3), headers=bearer(s))
        assert r.status in (200, 201), await r.text()
        r = await client.post(f"/masters/{mid}/mint", json={"count": 3}, headers=bearer(s))
        assert r.status == 202, await r.text()
        await wait_job(client, s, (await r.json())["id"])
        p = platform_of(client)
        a, b, c = [await sign_in(client, f"e2e-{n}@example.com") for n in "abc"]
        async with p.uow() as u:
            ja = await p.masters.allocate_from_treasury(u, master_id=mid, user_id=uid(a), token_ids=None, count=2,
                                                        op_key="studio-e2e:a", hold_until=None)
            jb = await p.masters.allocate_from_treasury(u, master_id=mid, user_id=uid(b), token_ids=None, count=1,
                                                        op_key="studio-e2e:b", hold_until=None)
        await wait_job(client, a, ja.id)
        await wait_job(client, b, jb.id)
        holdings = p.studio.holdings
        assert isinstance(holdings, PlatformShareHoldings)
        await until(lambda: _held(holdings, uid(a), mid, 2))
        await until(lambda: _held(holdings, uid(b), mid, 1))
        assert await holdings.holders(mid) == {uid(a): 2, uid(b): 1}

        r = await client.post("/vstudio/sessions", json={"masterId": mid, "title": "Holders only",
                                                         "audience": "shareholders", "weighted": True},
                              headers=bearer(s))
        assert r.status == 201, await r.text()
        body = await r.json()
        st = Studio(client, s, uid(s), mid, body["id"], body, StandIns())
        d = await add_decision(st)
        await error_of(await vote(client, st, c, d["id"], "A"), 403)
        assert (await vote(client, st, a, d["id"], "A")).status == 200
        body = await (await vote(client, st, b, d["id"], "B")).json()
        assert body["results"] == {"A": 1, "B": 1} and body["weightedResults"] == {"A": 2, "B": 1}


async def _held(holdings, user_id: str, master_id: str, n: int) -> bool:
    return await holdings.shares_held(user_id, master_id) == n


class TestOnRealSubscriptions:
    async def test_a_subscription_opens_subscribers_sessions(self, aiohttp_client, backend):
        """A fan refused by a `subscribers` session subscribes at the dev checkout, then joins and votes."""
        cfg = fast(backend, PAYMENTS_TASK_INTERVAL="0.05")
        client = await aiohttp_client(create_app(cfg))
        st = await open_studio(client, audience="subscribers")
        d = await add_decision(st)
        fan = await sign_in(client, "e2e-sub@example.com")
        await error_of(await vote(client, st, fan, d["id"], "A"), 403)
        r = await client.post("/payments/checkout", json={"kind": "subscription", "plan": "fan_monthly"},
                              headers=bearer(fan))
        assert r.status == 200, await r.text()
        assert (await client.post(f"/dev/checkout/{(await r.json())['sessionId']}/complete")).status == 200
        await until(lambda: platform_of(client).payments.has_entitlement(uid(fan), "vstudio.subscribers"))
        ws, snap = await connect(client, st.session_id, fan)
        assert snap["audience"] == "subscribers"
        await ws.send_json({"type": "vote", "decisionId": d["id"], "choice": "B"})
        assert (await recv(ws, "vote_update"))["results"] == {"A": 0, "B": 1}
        await ws.close()
