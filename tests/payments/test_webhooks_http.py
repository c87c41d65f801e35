"""The webhook and subscriptions over HTTP, with the official stripe SDK on the Stripe stand-in and
webhooks signed with the test secret (memory and PG + Redis): signatures (forged, stale, rotated),
exactly-once events, subscription state fetched from Stripe so reordering cannot roll it back,
cancel, portal, invoices, and Stripe failures."""

from __future__ import annotations

import asyncio
import time

import pytest

from audifi_http import create_app

from ..http.helpers import bearer, error_of, platform_of, sign_in
from ..masters.kit import until
from .conftest import with_settings
from .kit import collect, deliver, deliver_many, run_tasks
from .stripe_standin import TEST_SECRET, StripeStandIn


@pytest.fixture
async def client(aiohttp_client, stripe_config, clock):
    return await aiohttp_client(create_app(stripe_config, clock=clock))


async def subscribe(client, standin, session, plan: str = "fan_monthly") -> dict:
    r = await client.post("/payments/checkout", json={"kind": "subscription", "plan": plan}, headers=bearer(session))
    assert r.status == 200, await r.text()
    return await r.json()


async def subscription(client, session) -> dict | None:
    r = await client.get("/subscriptions", headers=bearer(session))
    assert r.status == 200, await r.text()
    return await r.json()


class TestSignatures:
    async def test_forged_stale_and_missing_signatures_are_refused(self, client, standin) -> None:
        """Another secret, a tampered body, a timestamp 301 s old, no header, no v1 → 400 and no effect."""
        event = {"id": "evt_sig_1", "object": "event", "type": "customer.subscription.updated", "created": 1,
                 "data": {"object": {"id": "sub_x", "object": "subscription"}}}
        body, headers = StripeStandIn.signed(event, ["whsec_someone_else"])
        e = await error_of(await client.post("/payments/webhook", data=body, headers=headers), 400)
        assert e["code"] == "VALIDATION_ERROR" and "Stripe-Signature" in e["details"]["fields"]
        body, headers = StripeStandIn.signed(event)
        tampered = body.replace(b"sub_x", b"sub_y")
        await error_of(await client.post("/payments/webhook", data=tampered, headers=headers), 400)
        body, headers = StripeStandIn.signed(event, timestamp=int(time.time()) - 301)
        e = await error_of(await client.post("/payments/webhook", data=body, headers=headers), 400)
        assert "stale" in e["details"]["fields"]["Stripe-Signature"]
        await error_of(await client.post("/payments/webhook", data=body), 400)
        ts = int(time.time())
        await error_of(await client.post("/payments/webhook", data=body, headers={"Stripe-Signature": f"t={ts}"}), 400)
        # a good one, finally, is taken once
        r = await deliver(client, event)
        assert r.status == 200 and (await r.json()) == {"received": True, "duplicate": False,
                                                        "type": "customer.subscription.updated"}
        r = await deliver(client, event)
        assert (await r.json())["duplicate"] is True

    async def test_several_v1_signatures_and_rotated_secrets(self, aiohttp_client, stripe_config, clock,
                                                             standin) -> None:
        """A header with the old and the new secret's signatures passes; with STRIPE_WEBHOOK_SECRET listing
        the new and the old secret, an event signed only with the old one passes too."""
        import attrs
        cfg = attrs.evolve(stripe_config, stripe_webhook_secret="whsec_new_one," + TEST_SECRET)
        client = await aiohttp_client(create_app(cfg, clock=clock))
        event = {"id": "evt_rot_1", "object": "event", "type": "invoice.created", "created": 1,
                 "data": {"object": {"id": "in_1", "object": "invoice"}}}
        body, headers = StripeStandIn.signed(event, ["whsec_retired", "whsec_new_one"])
        assert (await client.post("/payments/webhook", data=body, headers=headers)).status == 200
        event["id"] = "evt_rot_2"
        body, headers = StripeStandIn.signed(event, [TEST_SECRET])
        assert (await client.post("/payments/webhook", data=body, headers=headers)).status == 200
        event["id"] = "evt_rot_3"
        body, headers = StripeStandIn.signed(event, ["whsec_retired"])
        assert (await client.post("/payments/webhook", data=body, headers=headers)).status == 400


class TestSubscriptions:
    async def test_lifecycle_events_in_any_order_one_effect_never_rolled_back(self, client, clock, standin) -> None:
        """Subscribe: the events, each 5 times concurrently and shuffled, make one active subscription and one
        payment.succeeded; a stale created event delivered after the cancellation cannot undo it; the
        deletion ends the entitlements and User.subscription."""
        paid = collect(client, "payment.succeeded")
        fan = await sign_in(client, "subscriber@example.com")
        assert await subscription(client, fan) is None
        body = await subscribe(client, standin, fan)
        _, _, form, headers = next(x for x in standin.seen if x[1] == "/v1/checkout/sessions")
        assert form["mode"] == "subscription" and form["line_items"]["0"]["price"] == "price_fan_monthly"
        assert form["customer"].startswith("cus_") and headers.get("Idempotency-Key")
        assert form["subscription_data"]["metadata"]["plan"] == "fan_monthly"
        standin.stripe.pay(body["sessionId"])
        created = standin.events_of("customer.subscription.created")
        await deliver_many(client, standin.stripe.events, times=5)
        await run_tasks(client)
        got = await subscription(client, fan)
        assert got["plan"] == "fan_monthly" and got["status"] == "active" and got["cancelAtPeriodEnd"] is False
        assert "vstudio.subscribers" in got["entitlements"] and got["currentPeriodEnd"]
        me = await (await client.get("/me", headers=bearer(fan))).json()
        assert me["subscription"] == {"plan": "fan_monthly", "status": "active"}
        await until(lambda: paid)
        await asyncio.sleep(0.1)
        assert len(paid) == 1 and paid[0].data["amount"] == 499
        sub_id = standin.stripe.sessions[body["sessionId"]]["subscription"]
        standin.stripe.update_subscription(sub_id, {"cancel_at_period_end": "true"})
        updated = standin.events_of("customer.subscription.updated")
        await deliver_many(client, updated, times=3)
        await deliver_many(client, [{**created[0], "id": "evt_replayed_old_snapshot"}], times=3)
        await run_tasks(client)
        got = await subscription(client, fan)
        assert got["cancelAtPeriodEnd"] is True and got["status"] == "active"
        standin.stripe.cancel_now(sub_id)
        await deliver_many(client, standin.events_of("customer.subscription.deleted"), times=3)
        await deliver_many(client, [{**updated[0], "id": "evt_late_update"}], times=2)
        await run_tasks(client)
        got = await subscription(client, fan)
        assert got["status"] == "canceled" and got["entitlements"] == []
        me = await (await client.get("/me", headers=bearer(fan))).json()
        assert me["subscription"] is None
        assert not await platform_of(client).payments.has_entitlement(me["id"], "vstudio.subscribers")

    async def test_cancel_portal_invoices_and_renewal(self, client, clock, standin) -> None:
        """Cancel sets cancelAtPeriodEnd at Stripe; the portal URL is Stripe's; invoices list both payments
        after a renewal, whose invoice.paid is one more payment.succeeded."""
        paid = collect(client, "payment.succeeded")
        fan = await sign_in(client, "manager@example.com")
        await error_of(await client.post("/subscriptions/cancel", headers=bearer(fan)), 404)
        assert await (await client.get("/payments/invoices", headers=bearer(fan))).json() == []
        body = await subscribe(client, standin, fan, "artist_pro_monthly")
        standin.stripe.pay(body["sessionId"])
        await deliver_many(client, standin.stripe.events, times=1)
        await run_tasks(client)
        e = await error_of(await client.post("/payments/checkout", json={"kind": "subscription",
                                                                         "plan": "fan_monthly"},
                                             headers=bearer(fan)), 409)
        assert e["details"]["plan"] == "artist_pro_monthly"
        sub_id = standin.stripe.sessions[body["sessionId"]]["subscription"]
        before = len(standin.stripe.events)
        standin.stripe.renew(sub_id)
        await deliver_many(client, standin.stripe.events[before:], times=2)
        await run_tasks(client)
        inv = await (await client.get("/payments/invoices", headers=bearer(fan))).json()
        assert [i["amount"] for i in inv] == [{"amount": 1999, "currency": "usd"}] * 2
        assert all(i["status"] == "paid" and i["hostedUrl"].startswith("https://invoice.stripe.test/") for i in inv)
        await until(lambda: len(paid) >= 2)
        r = await client.post("/subscriptions/cancel", headers=bearer(fan))
        assert r.status == 200, await r.text()
        got = await r.json()
        assert got["cancelAtPeriodEnd"] is True and got["plan"] == "artist_pro_monthly"
        assert standin.stripe.subscriptions[sub_id]["cancel_at_period_end"] is True
        assert (await subscription(client, fan))["cancelAtPeriodEnd"] is True
        r = await client.post("/payments/portal", headers=bearer(fan))
        assert r.status == 200 and (await r.json())["url"].startswith("https://billing.stripe.test/p/")
        _, _, form, headers = [x for x in standin.seen if x[1] == "/v1/billing_portal/sessions"][-1]
        assert form["customer"].startswith("cus_") and headers.get("Idempotency-Key")

    async def test_plans_unknown_plan_one_customer_and_stripe_failures(self, client, standin) -> None:
        """Unknown plan 400; the plans list; concurrent first checkouts make one Stripe customer; a refused
        session create is 502 and frees its slot (3 checkouts still fit, the 4th is 409)."""
        fan = await sign_in(client, "picky@example.com")
        e = await error_of(await client.post("/payments/checkout", json={"kind": "subscription", "plan": "gold"},
                                             headers=bearer(fan)), 400)
        assert "plan" in e["details"]["fields"]
        plans = await (await client.get("/payments/plans")).json()
        assert {p["id"] for p in plans} == {"fan_monthly", "fan_yearly", "artist_pro_monthly"}
        standin.fail_next["/v1/checkout/sessions"] = 400
        e = await error_of(await client.post("/payments/checkout", json={"kind": "subscription",
                                                                         "plan": "fan_monthly"},
                                             headers=bearer(fan)), 502)
        assert e["code"] == "UPSTREAM_ERROR"
        rs = await asyncio.gather(*(client.post("/payments/checkout", json={"kind": "subscription",
                                                                            "plan": "fan_monthly"},
                                                headers=bearer(fan)) for _ in range(3)))
        assert [r.status for r in rs] == [200] * 3
        assert len(standin.stripe.customers) == 1
        await error_of(await client.post("/payments/checkout", json={"kind": "subscription", "plan": "fan_monthly"},
                                         headers=bearer(fan)), 409)

    async def test_no_dev_checkout_with_stripe(self, client) -> None:
        """With the Stripe gateway, /dev/checkout is not mounted."""
        await error_of(await client.post("/dev/checkout/cs_test_x/complete"), 404)
        assert platform_of(client).adapters["payments"] == "stripe"


class TestEntitlementsForStudio:
    async def test_subscribers_audience_follows_the_subscription(self, aiohttp_client, stripe_config, clock,
                                                                 standin) -> None:
        """The studio's entitlement check is backed by the subscription state: on while active, off after."""
        client = await aiohttp_client(create_app(with_settings(stripe_config), clock=clock))
        fan = await sign_in(client, "voter@example.com")
        uid = (await (await client.get("/me", headers=bearer(fan))).json())["id"]
        ent = platform_of(client).studio.entitlements
        assert await ent.has(uid, "vstudio.subscribers") is False
        body = await subscribe(client, standin, fan, "fan_monthly")
        standin.stripe.pay(body["sessionId"])
        await deliver_many(client, standin.stripe.events, times=1)
        await run_tasks(client)
        assert await ent.has(uid, "vstudio.subscribers") is True
        standin.stripe.cancel_now(standin.stripe.sessions[body["sessionId"]]["subscription"])
        await deliver_many(client, standin.events_of("customer.subscription.deleted"), times=1)
        await run_tasks(client)
        assert await ent.has(uid, "vstudio.subscribers") is False


class TestContract:
    async def test_every_payments_row_is_in_the_openapi_document(self, client) -> None:
        """Each API.md payments row (and the withdrawal) is documented; Stripe-reaching POSTs take an
        Idempotency-Key; the dev checkout is absent with Stripe."""
        doc = await (await client.get("/openapi.json")).json()
        paths = doc["paths"]
        for path, method in [("/payments/checkout", "post"), ("/payments/webhook", "post"),
                             ("/payments/portal", "post"), ("/subscriptions", "get"),
                             ("/subscriptions/cancel", "post"), ("/payments/invoices", "get"),
                             ("/user/holdings/withdraw", "post")]:
            assert method in paths[path], path
        for path in ("/payments/checkout", "/payments/portal", "/subscriptions/cancel", "/user/holdings/withdraw"):
            names = [p["name"] for p in paths[path]["post"].get("parameters", [])]
            assert "Idempotency-Key" in names, path
        schemas = doc["components"]["schemas"]
        assert set(schemas["CheckoutView"]["properties"]) == {"sessionId", "url", "expiresAt"}
        assert set(schemas["SubscriptionView"]["properties"]) == {"plan", "status", "currentPeriodEnd",
                                                                  "cancelAtPeriodEnd", "entitlements"}
        assert set(schemas["InvoiceView"]["properties"]) == {"id", "amount", "status", "hostedUrl", "createdAt"}
        assert not any(p.startswith("/dev/checkout") for p in paths)
