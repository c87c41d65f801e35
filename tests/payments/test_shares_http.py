"""Share checkout and fulfilment over HTTP, with the official stripe SDK talking to the Stripe
stand-in and webhooks signed with the test secret, on the in-process EVM (memory and PG + Redis)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from audifi_http import create_app

from ..http.helpers import bearer, error_of, platform_of, sign_in
from ..masters.kit import until
from .kit import (
    checkout,
    collect,
    deliver_many,
    live_ipo,
    master_view,
    owner_of,
    run_tasks,
    service,
    sign_in_many,
)


@pytest.fixture
async def client(aiohttp_client, stripe_config, clock):
    return await aiohttp_client(create_app(stripe_config, clock=clock))



class TestPaidCheckout:
    async def test_paid_checkout_moves_exactly_the_reserved_ids_once(self, client, clock, standin) -> None:
        """A paid checkout's events, each delivered 5 times concurrently and shuffled, transfer exactly the
        reserved ids to the buyer's custodial address once: one job, sharesSold 3, one payment.succeeded."""
        paid = collect(client, "payment.succeeded")
        moved = collect(client, "share.transferred")
        _, mid = await live_ipo(client, clock, 30)
        fan = await sign_in(client, "fan@example.com")
        r = await checkout(client, fan, mid, 3)
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["url"].startswith(standin.url) and body["sessionId"].startswith("cs_test_")
        # what the SDK asked Stripe for
        _, _, form, headers = next(x for x in standin.seen if x[1] == "/v1/checkout/sessions")
        assert headers.get("Idempotency-Key")
        assert form["mode"] == "payment" and form["payment_method_options"]["card"]["request_three_d_secure"] == "any"
        assert int(form["expires_at"]) - int(clock.now().timestamp()) >= 30 * 60
        assert form["line_items"]["0"]["quantity"] == "3"
        standin.stripe.pay(body["sessionId"])
        events = standin.events_of("checkout.session.completed", "charge.succeeded")
        await deliver_many(client, events, times=5)
        custodial = (await (await client.get("/me", headers=bearer(fan))).json())["custodialAddress"]

        async def holding():
            r = await client.get("/user/holdings", headers=bearer(fan))
            rows = [h for h in await r.json() if h["masterId"] == mid]
            return rows if rows and rows[0]["shares"] == 3 else None

        rows = await until(holding)
        ids = rows[0]["tokenIds"]
        assert len(ids) == 3 and rows[0]["custodial"] and rows[0]["address"] == custodial
        for t in ids:
            assert (await owner_of(client, mid, t)).lower() == custodial.lower()
        assert (await master_view(client, mid))["ipo"]["sharesSold"] == 3
        await until(lambda: len(moved) >= 1)
        await asyncio.sleep(0.2)
        assert len(paid) == 1 and len(moved) == 1
        assert paid[0].data["checkoutId"] == body["sessionId"] and paid[0].data["quantity"] == 3
        assert paid[0].data["amount"] == 1500 and paid[0].data["masterId"] == mid
        assert sorted(moved[0].data["tokenIds"]) == sorted(ids)
        async with platform_of(client).uow(readonly=True) as u:
            c = await u.payments.checkout_by_session(body["sessionId"])
            job = await u.chain_jobs.get_by_op_key("pay:shares:" + body["sessionId"])
        assert c.status.value == "paid" and job.id == c.transfer_job_id and sorted(job.call.ids) == sorted(ids)
        assert rows[0]["withdrawableAt"] is not None


async def paid(client, standin, session: dict, mid: str, qty: int) -> dict:
    """Checkout ``qty`` shares, pay at the stand-in, deliver its events; the checkout response."""
    r = await checkout(client, session, mid, qty)
    assert r.status == 200, await r.text()
    body = await r.json()
    before = len(standin.stripe.events)
    standin.stripe.pay(body["sessionId"])
    await deliver_many(client, standin.stripe.events[before:], times=1)
    return body


async def checkout_row(client, session_id: str):
    async with platform_of(client).uow(readonly=True) as u:
        return await u.payments.checkout_by_session(session_id)


async def job_status(client, job_id: str) -> str:
    job = await platform_of(client).jobs.load(job_id)
    return job.status.value


class TestOverselling:
    async def test_twenty_concurrent_checkouts_for_the_last_ten_shares_sell_exactly_ten(self, client, clock,
                                                                                          standin) -> None:
        """20 buyers race for the last 10 shares: 10 checkouts reserve 10 distinct ids, 10 get 409; once paid,
        sharesSold is 10 and each buyer holds exactly the id reserved for them."""
        _, mid = await live_ipo(client, clock, 10)
        fans = await sign_in_many(client, "racer", 20)
        rs = await asyncio.gather(*(checkout(client, f, mid, 1) for f in fans))
        assert sorted(r.status for r in rs) == [200] * 10 + [409] * 10
        winners = [(f, await r.json()) for f, r in zip(fans, rs, strict=True) if r.status == 200]
        rows = [await checkout_row(client, b["sessionId"]) for _, b in winners]
        assert sorted(t for c in rows for t in c.token_ids) == list(range(1, 11))
        for r in rs:
            if r.status == 409:
                assert (await error_of(r, 409))["code"] == "CONFLICT"
        late = await sign_in(client, "late@example.com")
        assert (await checkout(client, late, mid, 1)).status == 409
        before = len(standin.stripe.events)
        for _, b in winners:
            standin.stripe.pay(b["sessionId"])
        await deliver_many(client, standin.stripe.events[before:], times=2)
        for c in rows:
            c = await checkout_row(client, c.session_id)
            assert c.status.value == "paid"
            await until(lambda c=c: job_status(client, c.transfer_job_id), within=60)
        for c in rows:
            c = await checkout_row(client, c.session_id)

            async def confirmed(c=c) -> bool:
                return await job_status(client, c.transfer_job_id) == "confirmed"

            await until(confirmed, within=60)
            custodial = platform_of(client).masters.custodial_address(
                (await platform_of(client).auth._get_user(c.user_id)).index)
            assert (await owner_of(client, mid, c.token_ids[0])).lower() == custodial.lower()
        assert (await master_view(client, mid))["ipo"]["sharesSold"] == 10


class TestLimits:
    async def test_checkout_rules(self, client, clock, standin) -> None:
        """Bad bodies 400; unknown master 404; maxPerUser and 3 open checkouts 409; a scheduled IPO 409;
        no token 401; a repeat with the same Idempotency-Key returns the first session."""
        artist_s, mid = await live_ipo(client, clock, 40)
        fan = await sign_in(client, "limits@example.com")
        for bad in ({"kind": "shares", "masterId": mid, "quantity": 0}, {"kind": "shares", "quantity": 1},
                    {"kind": "cash"}, {"kind": "shares", "masterId": mid, "quantity": "2"}):
            e = await error_of(await client.post("/payments/checkout", json=bad, headers=bearer(fan)), 400)
            assert e["code"] == "VALIDATION_ERROR" and e["details"]["fields"]
        e = await error_of(await checkout(client, fan, "mst_nope", 1), 404)
        assert e["code"] == "MASTER_NOT_FOUND"
        await error_of(await client.post("/payments/checkout", json={"kind": "shares", "masterId": mid,
                                                                     "quantity": 1}), 401)
        e = await error_of(await checkout(client, fan, mid, 5), 409)  # maxPerUser = 10 % of 40
        assert e["details"]["maxPerUser"] == 4
        first = await checkout(client, fan, mid, 1, **{"Idempotency-Key": "k1"})
        again = await checkout(client, fan, mid, 1, **{"Idempotency-Key": "k1"})
        assert (await first.json())["sessionId"] == (await again.json())["sessionId"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert (await checkout(client, fan, mid, 1)).status == 200
        assert (await checkout(client, fan, mid, 1)).status == 200
        e = await error_of(await checkout(client, fan, mid, 1), 409)  # a 4th open checkout
        assert e["details"]["limit"] == 3
        # opening a new one expired the previous ones at Stripe
        assert [s["status"] for s in standin.stripe.sessions.values()].count("expired") == 2
        other = await sign_in(client, "other@example.com")
        from ..masters.kit import registered
        m2 = await registered(client, artist_s, metadata={"title": "Not yet"})
        await error_of(await checkout(client, other, m2["id"], 1), 409)  # no IPO

    async def test_rate_limit_per_user(self, aiohttp_client, stripe_config, clock, standin) -> None:
        """More checkouts than PAYMENTS_CHECKOUT_PER_USER allows → 429 with Retry-After."""
        from .conftest import with_settings
        client = await aiohttp_client(create_app(with_settings(stripe_config, PAYMENTS_CHECKOUT_PER_USER="2/60"),
                                                 clock=clock))
        fan = await sign_in(client, "rl@example.com")
        codes = [(await client.post("/payments/checkout", json={"kind": "subscription", "plan": "fan_monthly"},
                                    headers=bearer(fan))).status for _ in range(3)]
        assert codes[:2] == [200, 409] or codes[:2] == [200, 200]
        r = await client.post("/payments/checkout", json={"kind": "subscription", "plan": "fan_monthly"},
                              headers=bearer(fan))
        assert (await error_of(r, 429))["code"] == "RATE_LIMITED" and int(r.headers["Retry-After"]) >= 1


class TestReservations:
    async def test_only_the_gateway_ends_a_reservation(self, client, clock, standin) -> None:
        """Past its expiry time a checkout still holds its ids; the expired event frees them (once, even if
        repeated); a delayed payment that fails frees them too; one that succeeds is fulfilled."""
        _, mid = await live_ipo(client, clock, 10, maxPerUser=10)
        a = await sign_in(client, "a@example.com")
        r = await checkout(client, a, mid, 10)
        sa = (await r.json())["sessionId"]
        clock.advance(3600)  # no local timer: the ids stay reserved past the session's expiry time
        a = await sign_in(client, "a@example.com")
        b = await sign_in(client, "b@example.com")
        await service(client).reconcile()  # asks Stripe: still open there, so it stays reserved
        assert (await checkout(client, b, mid, 1)).status == 409
        before = len(standin.stripe.events)
        standin.stripe.expire_session(sa)
        await deliver_many(client, standin.stripe.events[before:], times=5)
        assert (await checkout_row(client, sa)).status.value == "expired"
        r = await checkout(client, b, mid, 4)
        assert r.status == 200, await r.text()
        sb = (await r.json())["sessionId"]
        assert sorted((await checkout_row(client, sb)).token_ids) == [1, 2, 3, 4]
        before = len(standin.stripe.events)
        standin.stripe.pay(sb, delayed=True)
        standin.stripe.settle(sb, succeeded=False)
        events = standin.stripe.events[before:]
        await deliver_many(client, list(reversed(events)), times=3)
        assert (await checkout_row(client, sb)).status.value == "failed"
        r = await checkout(client, a, mid, 2)
        sc = (await r.json())["sessionId"]
        assert sorted((await checkout_row(client, sc)).token_ids) == [1, 2]
        before = len(standin.stripe.events)
        standin.stripe.pay(sc, delayed=True)
        await deliver_many(client, standin.stripe.events[before:], times=2)
        assert (await checkout_row(client, sc)).status.value == "processing"
        before = len(standin.stripe.events)
        standin.stripe.settle(sc, succeeded=True)
        await deliver_many(client, standin.stripe.events[before:], times=2)
        c = await checkout_row(client, sc)
        assert c.status.value == "paid" and c.transfer_job_id
        assert (await master_view(client, mid))["ipo"]["sharesSold"] == 2


class TestRecovery:
    async def test_failed_transfer_is_finished_by_the_reconciler_never_doubled(self, client, clock, standin,
                                                                              monkeypatch) -> None:
        """The node rejects the transfer once: the job fails; the reconciler queues the same job (same key)
        again; the buyer ends with exactly the reserved ids; more reconciling changes nothing."""
        from audifi_core.errors import ChainError
        _, mid = await live_ipo(client, clock, 20)
        fan = await sign_in(client, "unlucky@example.com")
        chain = platform_of(client).chain.chain
        real = chain.broadcast
        armed = {"left": 1}

        async def flaky(raw: bytes) -> str:
            if armed["left"]:
                armed["left"] -= 1
                raise ChainError("rejected", details={"reason": "rejected"})
            return await real(raw)

        monkeypatch.setattr(chain, "broadcast", flaky)
        body = await paid(client, standin, fan, mid, 2)
        c = await checkout_row(client, body["sessionId"])

        async def failed() -> bool:
            return await job_status(client, c.transfer_job_id) == "failed"

        await until(failed)
        rep = await service(client).reconcile()
        assert rep["transfers_retried"] == 1

        async def confirmed() -> bool:
            return await job_status(client, c.transfer_job_id) == "confirmed"

        await until(confirmed)
        rep = await service(client).reconcile()
        assert rep["transfers_retried"] == 0
        job = await platform_of(client).jobs.load(c.transfer_job_id)
        assert job.attempts == 1 and job.op_key == "pay:shares:" + body["sessionId"]
        user = await platform_of(client).auth._get_user(c.user_id)
        custodial = platform_of(client).masters.custodial_address(user.index)
        for t in c.token_ids:
            assert (await owner_of(client, mid, t)).lower() == custodial.lower()
        async with platform_of(client).uow(readonly=True) as u:
            held = await u.chain_projection.tokens_of((await master_view(client, mid))["contractAddress"], custodial)
        assert sorted(held) == sorted(c.token_ids)
        assert (await checkout_row(client, body["sessionId"])).settled
        assert (await master_view(client, mid))["ipo"]["sharesSold"] == 2


def pi_of(standin, session_id: str) -> str:
    return standin.stripe.sessions[session_id]["payment_intent"]


async def wait_confirmed(client, job_id: str) -> None:
    async def done() -> bool:
        return await job_status(client, job_id) == "confirmed"

    await until(done)


class TestReversals:
    async def test_a_refund_in_the_hold_period_returns_the_shares(self, client, clock, standin) -> None:
        """Refunded within the hold: the ids go back from the custodial address to the treasury (one
        return job, however often the event comes) and leave the buyer's holdings."""
        _, mid = await live_ipo(client, clock, 20)
        fan = await sign_in(client, "refund@example.com")
        body = await paid(client, standin, fan, mid, 2)
        c = await checkout_row(client, body["sessionId"])
        await wait_confirmed(client, c.transfer_job_id)
        before = len(standin.stripe.events)
        standin.stripe.create_refund({"payment_intent": pi_of(standin, body["sessionId"])})
        await deliver_many(client, standin.stripe.events[before:], times=5)
        c = await checkout_row(client, body["sessionId"])
        assert c.reversal.value == "refund" and c.return_job_id
        await wait_confirmed(client, c.return_job_id)
        treasury = platform_of(client).masters.treasury
        for t in c.token_ids:
            assert (await owner_of(client, mid, t)).lower() == treasury.lower()
        job = await platform_of(client).jobs.load(c.return_job_id)
        assert job.op_key == "pay:return:" + body["sessionId"] and sorted(job.call.ids) == sorted(c.token_ids)

        async def gone() -> bool:
            r = await client.get("/user/holdings", headers=bearer(fan))
            return not [h for h in await r.json() if h["masterId"] == mid]

        await until(gone)
        c = await checkout_row(client, body["sessionId"])
        assert c.returned_at is not None and c.settled
        assert (await service(client).reconcile())["returns_queued"] == 0

    async def test_after_the_hold_a_dispute_leaves_the_shares(self, client, clock, standin) -> None:
        """A dispute once the hold is over is recorded; the shares stay with the buyer."""
        _, mid = await live_ipo(client, clock, 20)
        fan = await sign_in(client, "late-dispute@example.com")
        body = await paid(client, standin, fan, mid, 1)
        c = await checkout_row(client, body["sessionId"])
        await wait_confirmed(client, c.transfer_job_id)
        assert c.hold_until - clock.now() >= timedelta(days=14)  # new account: longer
        clock.set(c.hold_until)
        standin.stripe.dispute(pi_of(standin, body["sessionId"]))
        await deliver_many(client, standin.events_of("charge.dispute.created"), times=3)
        c = await checkout_row(client, body["sessionId"])
        assert c.reversal.value == "dispute" and c.return_job_id is None
        user = await platform_of(client).auth._get_user(c.user_id)
        custodial = platform_of(client).masters.custodial_address(user.index)
        assert (await owner_of(client, mid, c.token_ids[0])).lower() == custodial.lower()

    async def test_a_fraud_warning_before_the_payment_is_seen_delivers_nothing(self, client, clock, standin) -> None:
        """An early fraud warning delivered before checkout.session.completed: the checkout ends failed, its
        ids are free again, nothing moves, and the payment is refunded (a task)."""
        _, mid = await live_ipo(client, clock, 5, maxPerUser=5)
        fan = await sign_in(client, "fraud@example.com")
        r = await checkout(client, fan, mid, 5)
        sid = (await r.json())["sessionId"]
        before = len(standin.stripe.events)
        standin.stripe.pay(sid)
        standin.stripe.early_fraud_warning(pi_of(standin, sid))
        events = standin.stripe.events[before:]
        warning = [e for e in events if e["type"].startswith("radar.")]
        await deliver_many(client, warning, times=2)
        await deliver_many(client, [e for e in events if e not in warning], times=2)
        c = await checkout_row(client, sid)
        assert c.status.value == "failed" and c.transfer_job_id is None
        other = await sign_in(client, "honest@example.com")
        assert (await checkout(client, other, mid, 5)).status == 200
        await run_tasks(client)
        assert standin.stripe.charges[pi_of(standin, sid)]["refunded"] is True

    async def test_refunded_while_the_transfer_failed_nothing_moves(self, client, clock, standin,
                                                                   monkeypatch) -> None:
        """Refund after a failed transfer: the reconciler does not retry it (the ids never left the treasury)."""
        from audifi_core.errors import ChainError
        _, mid = await live_ipo(client, clock, 10)
        fan = await sign_in(client, "nothing@example.com")
        chain = platform_of(client).chain.chain
        real, armed = chain.broadcast, {"left": 1}

        async def flaky(raw: bytes) -> str:
            if armed["left"]:
                armed["left"] -= 1
                raise ChainError("rejected", details={"reason": "rejected"})
            return await real(raw)

        monkeypatch.setattr(chain, "broadcast", flaky)
        body = await paid(client, standin, fan, mid, 1)
        c = await checkout_row(client, body["sessionId"])

        async def failed() -> bool:
            return await job_status(client, c.transfer_job_id) == "failed"

        await until(failed)
        before = len(standin.stripe.events)
        standin.stripe.create_refund({"payment_intent": pi_of(standin, body["sessionId"])})
        await deliver_many(client, standin.stripe.events[before:], times=1)
        rep = await service(client).reconcile()
        assert rep["transfers_retried"] == 0 and rep["settled"] == 1
        treasury = platform_of(client).masters.treasury
        assert (await owner_of(client, mid, c.token_ids[0])).lower() == treasury.lower()
        assert await job_status(client, c.transfer_job_id) == "failed"


class TestLostResponse:
    async def test_a_session_whose_answer_was_lost_is_finished_by_the_reconciler(self, client, clock, standin,
                                                                                monkeypatch) -> None:
        """Stripe made the session but the answer was lost (502 to the buyer): the ids stay reserved (the
        session could be paid); the reconciler asks again with the same idempotency key, gets that same
        session, and paying it delivers the ids."""
        from audifi_core.errors import UpstreamError
        _, mid = await live_ipo(client, clock, 10)
        fan = await sign_in(client, "lost@example.com")
        gw = service(client).gateway
        real = gw.create_checkout

        async def lost(request, key):
            await real(request, key)
            raise UpstreamError("timed out", details={"status": None})

        monkeypatch.setattr(gw, "create_checkout", lost)
        e = await error_of(await checkout(client, fan, mid, 1), 502)
        assert e["code"] == "UPSTREAM_ERROR"
        monkeypatch.setattr(gw, "create_checkout", real)
        [made] = list(standin.stripe.sessions)
        uid = (await (await client.get("/me", headers=bearer(fan))).json())["id"]
        async with platform_of(client).uow(readonly=True) as u:
            [c] = await u.payments.open_checkouts(uid)
        assert c.status.value == "creating" and c.token_ids
        clock.advance(6 * 60)
        assert (await service(client).reconcile())["creating_finished"] == 1
        assert len(standin.stripe.sessions) == 1
        got = await checkout_row(client, made)
        assert got.id == c.id and got.status.value == "open"
        before = len(standin.stripe.events)
        standin.stripe.pay(made)
        await deliver_many(client, standin.stripe.events[before:], times=2)
        got = await checkout_row(client, made)
        assert got.status.value == "paid" and got.token_ids == c.token_ids
