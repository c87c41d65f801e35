"""The PaymentGateway contract, run against StripePaymentGateway (the official SDK's StripeClient with
its aiohttp client, on the Stripe stand-in) and LocalPaymentGateway (the dev gateway)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import attrs
import pytest

from audifi_adapters.stripe import (
    LocalPaymentGateway,
    LocalStripe,
    StripePaymentGateway,
    sign_payload,
)
from audifi_core.errors import UpstreamError
from audifi_core.payments.model import CheckoutRequest, Money
from audifi_core.payments.ports import BadSignature

from .stripe_standin import TEST_KEY, TEST_SECRET, StripeStandIn


@attrs.define
class Subject:
    gateway: Any
    stripe: LocalStripe  # the objects behind it, to play the customer's side


@pytest.fixture(params=["stripe-sdk", "local"])
async def subject(request: pytest.FixtureRequest, clock) -> AsyncIterator[Subject]:
    if request.param == "stripe-sdk":
        standin = await StripeStandIn(clock.now).start()
        standin.stripe.add_price("price_fan_monthly", 499, "usd", "month")
        gw = StripePaymentGateway(TEST_KEY, [TEST_SECRET], api_base=standin.url, max_network_retries=0)
        try:
            yield Subject(gw, standin.stripe)
        finally:
            await gw.close()
            await standin.close()
        return
    engine = LocalStripe(clock.now, url_for=lambda sid: f"http://127.0.0.1:8080/dev/checkout/{sid}/complete")
    engine.add_price("price_fan_monthly", 499, "usd", "month")
    gw = LocalPaymentGateway(engine, [TEST_SECRET])
    try:
        yield Subject(gw, engine)
    finally:
        await gw.close()


def request_(clock, customer: str, *, mode: str = "payment", ref: str = "chk_1", minutes: int = 31) -> CheckoutRequest:
    common: dict[str, Any] = dict(client_reference_id=ref, customer_id=customer,
                                  expires_at=clock.now() + timedelta(minutes=minutes), success_url="http://x/ok",
                                  cancel_url="http://x/no", metadata={"checkoutId": ref, "userId": "usr_1"})
    if mode == "payment":
        return CheckoutRequest(mode="payment", quantity=3, unit_amount=Money(500, "usd"), product_name="Song (share)",
                               three_d_secure=True, **common)
    return CheckoutRequest(mode="subscription", price_id="price_fan_monthly", **common)


class TestCustomersAndCheckout:
    async def test_customer_create_is_idempotent(self, subject) -> None:
        """The same idempotency key gives the same customer; another key another one."""
        gw = subject.gateway
        a = await gw.create_customer("usr_1", "a@example.com", "customer:usr_1")
        assert await gw.create_customer("usr_1", "a@example.com", "customer:usr_1") == a
        assert await gw.create_customer("usr_2", "b@example.com", "customer:usr_2") != a
        assert a.startswith("cus_")

    async def test_checkout_session_create_retrieve_expire(self, subject, clock) -> None:
        """A one-time session: open, its URL, 30+ minutes, amount, reference, metadata; the same key gives the
        same session; expiring works once; a session expiring too soon is refused (502)."""
        gw = subject.gateway
        cus = await gw.create_customer("usr_1", "a@example.com", "customer:usr_1")
        s = await gw.create_checkout(request_(clock, cus), "checkout:chk_1")
        assert s.status == "open" and s.payment_status == "unpaid" and s.mode == "payment" and s.url
        assert s.amount_total == 1500 and s.currency == "usd" and s.client_reference_id == "chk_1"
        assert s.metadata["checkoutId"] == "chk_1" and s.customer_id == cus
        assert s.expires_at - clock.now() >= timedelta(minutes=30)
        assert (await gw.create_checkout(request_(clock, cus), "checkout:chk_1")).id == s.id
        opts = subject.stripe.sessions[s.id]["payment_method_options"]
        assert opts["card"]["request_three_d_secure"] == "any"
        assert (await gw.retrieve_checkout(s.id)).status == "open"
        assert await gw.expire_checkout(s.id) is True
        assert await gw.expire_checkout(s.id) is False
        got = await gw.retrieve_checkout(s.id)
        assert got.status == "expired" and got.url is None
        with pytest.raises(UpstreamError):
            await gw.create_checkout(request_(clock, cus, ref="chk_2", minutes=10), "checkout:chk_2")
        with pytest.raises(UpstreamError):
            await gw.retrieve_checkout("cs_test_missing")

    async def test_paid_session_and_refund(self, subject, clock) -> None:
        """A paid session names its payment intent; a refund by key happens once."""
        gw = subject.gateway
        cus = await gw.create_customer("usr_1", "a@example.com", "customer:usr_1")
        s = await gw.create_checkout(request_(clock, cus), "checkout:chk_1")
        subject.stripe.pay(s.id)
        paid = await gw.retrieve_checkout(s.id)
        assert paid.status == "complete" and paid.payment_status == "paid" and paid.payment_intent
        r1 = await gw.refund(paid.payment_intent, "refund:chk_1")
        assert await gw.refund(paid.payment_intent, "refund:chk_1") == r1
        assert subject.stripe.charges[paid.payment_intent]["refunded"] is True
        with pytest.raises(UpstreamError) as e:
            await gw.refund(paid.payment_intent, "refund:other")
        assert e.value.details["code"] == "charge_already_refunded"


class TestSubscriptions:
    async def test_subscription_retrieve_cancel_invoices_portal(self, subject, clock) -> None:
        """After a subscription checkout is paid: the subscription (price, period end), cancel at period end,
        its invoice, a portal URL; an unknown subscription is None."""
        gw = subject.gateway
        cus = await gw.create_customer("usr_1", "a@example.com", "customer:usr_1")
        s = await gw.create_checkout(request_(clock, cus, mode="subscription"), "checkout:chk_s")
        subject.stripe.pay(s.id)
        done = await gw.retrieve_checkout(s.id)
        assert done.subscription_id and done.mode == "subscription"
        sub = await gw.retrieve_subscription(done.subscription_id)
        assert sub.status == "active" and sub.price_id == "price_fan_monthly" and sub.customer_id == cus
        assert sub.current_period_end > clock.now() and sub.cancel_at_period_end is False
        assert (await gw.cancel_at_period_end(sub.id, "cancel:1")).cancel_at_period_end is True
        assert (await gw.retrieve_subscription(sub.id)).cancel_at_period_end is True
        assert await gw.retrieve_subscription("sub_missing") is None
        [inv] = await gw.list_invoices(cus, 10)
        assert inv.amount == Money(499, "usd") and inv.status == "paid" and inv.subscription_id == sub.id
        assert await gw.list_invoices("cus_other", 10) == []
        assert (await gw.portal_url(cus, "http://x/back")).startswith("http")


class TestWebhookVerification:
    def event(self) -> str:
        return json.dumps({"id": "evt_1", "object": "event", "type": "checkout.session.completed", "created": 1,
                           "data": {"object": {"id": "cs_1", "object": "checkout.session"}}})

    async def test_good_forged_stale(self, subject) -> None:
        """The right secret passes (also as one of several v1); another secret, a changed body or a
        timestamp older than 300 s raise BadSignature."""
        gw, payload = subject.gateway, self.event()
        ev = gw.verify_event(payload.encode(), sign_payload(payload, [TEST_SECRET]))
        assert ev.id == "evt_1" and ev.type == "checkout.session.completed" and ev.object["id"] == "cs_1"
        assert gw.verify_event(payload.encode(), sign_payload(payload, ["whsec_old", TEST_SECRET])).id == "evt_1"
        with pytest.raises(BadSignature):
            gw.verify_event(payload.encode(), sign_payload(payload, ["whsec_forged"]))
        with pytest.raises(BadSignature):
            gw.verify_event(payload.replace("cs_1", "cs_2").encode(), sign_payload(payload, [TEST_SECRET]))
        with pytest.raises(BadSignature):
            gw.verify_event(payload.encode(), sign_payload(payload, [TEST_SECRET], int(time.time()) - 301))
        with pytest.raises(BadSignature):
            gw.verify_event(payload.encode(), None)
