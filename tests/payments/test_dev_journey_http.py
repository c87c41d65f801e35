"""The dev journey by hand, on the local gateway (no Stripe key): checkout → /dev/checkout/:id/complete
(signed events through the same webhook path) → holdings; then the custodial withdrawal (memory and
PG + Redis, on the in-process EVM)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audifi_http import create_app

from ..http.helpers import bearer, error_of, platform_of, sign_in
from ..masters.kit import link_wallet, until, wait_job
from .conftest import quick
from .kit import checkout, live_ipo, owner_of


@pytest.fixture
async def client(aiohttp_client, backend, clock):
    return await aiohttp_client(create_app(quick(backend), clock=clock))


async def holdings(client, session, mid: str) -> list[dict]:
    r = await client.get("/user/holdings", headers=bearer(session))
    assert r.status == 200, await r.text()
    return [h for h in await r.json() if h["masterId"] == mid]


async def buy(client, session, mid: str, qty: int) -> dict:
    r = await checkout(client, session, mid, qty)
    assert r.status == 200, await r.text()
    body = await r.json()
    path = body["url"].split("://", 1)[1].split("/", 1)[1]
    assert "/" + path == f"/dev/checkout/{body['sessionId']}/complete"
    page = await client.get("/" + path)
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    done = await client.post("/" + path)
    assert done.status == 200, await done.text()
    got = await done.json()
    assert got["paymentStatus"] == "paid" and "checkout.session.completed" in got["events"]
    return body


class TestDevJourney:
    async def test_checkout_complete_holdings(self, client, clock) -> None:
        """A dev checkout paid at /dev/checkout/:id/complete lands the reserved ids at the buyer's custodial
        address; paying twice is refused; a delayed payment that fails releases its ids."""
        _, mid = await live_ipo(client, clock, 12, maxPerUser=5)
        fan = await sign_in(client, "devfan@example.com")
        body = await buy(client, fan, mid, 1)
        rows = await until(lambda: holdings(client, fan, mid))
        assert rows[0]["shares"] == 1 and rows[0]["custodial"] and rows[0]["withdrawableAt"]
        assert rows[0]["tokenIds"] == [1]
        e = await error_of(await client.post(f"/dev/checkout/{body['sessionId']}/complete"), 400)
        assert e["code"] == "VALIDATION_ERROR"
        await error_of(await client.post("/dev/checkout/cs_test_nope/complete"), 404)
        r = await checkout(client, fan, mid, 1)
        sid = (await r.json())["sessionId"]
        r = await client.post(f"/dev/checkout/{sid}/complete", json={"outcome": "delayed"})
        assert (await r.json())["paymentStatus"] == "unpaid"
        r = await client.post(f"/dev/checkout/{sid}/complete", json={"outcome": "fail"})
        assert (await r.json())["events"] == ["checkout.session.async_payment_failed"]
        async with platform_of(client).uow(readonly=True) as u:
            c = await u.payments.checkout_by_session(sid)
        assert c.status.value == "failed"
        other = await sign_in(client, "next@example.com")
        r = await checkout(client, other, mid, 1)
        async with platform_of(client).uow(readonly=True) as u:
            again = await u.payments.checkout_by_session((await r.json())["sessionId"])
        assert again.token_ids == c.token_ids  # the failed checkout's id was free again

    async def test_subscription_by_hand(self, client) -> None:
        """A plan bought at the dev checkout shows in /subscriptions, /me and the studio's entitlement."""
        fan = await sign_in(client, "devsub@example.com")
        r = await client.post("/payments/checkout", json={"kind": "subscription", "plan": "fan_yearly"},
                              headers=bearer(fan))
        sid = (await r.json())["sessionId"]
        assert (await client.post(f"/dev/checkout/{sid}/complete")).status == 200

        async def sub():
            r = await client.get("/subscriptions", headers=bearer(fan))
            return await r.json()

        got = await until(sub)
        assert got["plan"] == "fan_yearly" and got["status"] == "active" and "vstudio.subscribers" in got["entitlements"]
        me = await (await client.get("/me", headers=bearer(fan))).json()
        assert me["subscription"] == {"plan": "fan_yearly", "status": "active"}
        assert await platform_of(client).payments.has_entitlement(me["id"], "vstudio.subscribers")
        assert await platform_of(client).studio.entitlements.has(me["id"], "vstudio.subscribers") is True
        assert await platform_of(client).payments.entitlements.has(me["id"], "artist.pro_analytics") is False


class TestWithdraw:
    async def test_withdraw_after_the_hold_to_a_wallet_linked_a_day_ago(self, client, clock) -> None:
        """Before the hold ends or to a fresh wallet → 409; a stale sign-in → 401 reauth; then 202: a
        withdraw job moves the ids to the wallet and the user is mailed."""
        _, mid = await live_ipo(client, clock, 20)
        fan = await sign_in(client, "withdraw@example.com")
        wallet = await link_wallet(client, fan, clock)
        await buy(client, fan, mid, 2)
        rows = await until(lambda: holdings(client, fan, mid))
        ids = rows[0]["tokenIds"]
        url = "/user/holdings/withdraw"
        body = {"masterId": mid, "count": 2, "to": wallet.address}
        e = await error_of(await client.post(url, json=body, headers=bearer(fan)), 409)
        assert "withdrawableAt" in e["details"]
        clock.advance(24 * 3600 + 60)
        fan = await sign_in(client, "withdraw@example.com")
        e = await error_of(await client.post(url, json=body, headers=bearer(fan)), 409)
        assert e["details"]["masterId"] == mid  # still in the hold period (new account: 14 days)
        clock.set(clock.now() + timedelta(days=14))
        fan = await sign_in(client, "withdraw@example.com")
        young = await link_wallet(client, fan, clock)
        e = await error_of(await client.post(url, json={**body, "to": young.address}, headers=bearer(fan)), 409)
        assert "24 hours" in e["message"]
        await error_of(await client.post(url, json={**body, "to": "0x" + "11" * 20}, headers=bearer(fan)), 409)
        await error_of(await client.post(url, json={**body, "count": 3}, headers=bearer(fan)), 409)
        await error_of(await client.post(url, json={**body, "count": 0}, headers=bearer(fan)), 400)
        clock.advance(6 * 60)
        e = await error_of(await client.post(url, json=body, headers=bearer(fan)), 401)
        assert e["details"]["reauth"] is True
        fan = await sign_in(client, "withdraw@example.com")
        r = await client.post(url, json=body, headers={**bearer(fan), "Idempotency-Key": "w1"})
        assert r.status == 202, await r.text()
        job = await r.json()
        assert job["kind"] == "withdraw"
        await wait_job(client, fan, job["id"])
        for t in ids:
            assert (await owner_of(client, mid, t)).lower() == wallet.address.lower()
        mails = await (await client.get("/dev/mailbox", params={"to": "withdraw@example.com"})).json()
        assert any("on their way" in m["subject"] and wallet.address in m["text"] for m in mails)

        async def at_wallet():
            rows = await holdings(client, fan, mid)
            return [h for h in rows if not h["custodial"] and h["shares"] == 2]

        await until(at_wallet)


class TestDevRoutes:
    async def test_dev_checkout_is_documented_with_the_local_gateway(self, client) -> None:
        """With the local gateway live, /dev/checkout/{sessionId}/complete is mounted and documented."""
        doc = await (await client.get("/openapi.json")).json()
        assert "post" in doc["paths"]["/dev/checkout/{sessionId}/complete"]
        assert platform_of(client).adapters["payments"] == "local"
