"""Payments and subscriptions over HTTP (API.md "Payments & subscriptions"), the custodial share
withdrawal (``POST /user/holdings/withdraw``) and, while the local dev gateway is live, its hosted
checkout ``/dev/checkout/{sessionId}/complete``. Thin adapters over ``platform.payments``."""

from __future__ import annotations

import html
from typing import Any, Literal

import attrs
from aiohttp import web

from audifi_adapters.payments_context import uses_local_gateway
from audifi_core.chain.model import ChainJobView
from audifi_core.errors import InternalError
from audifi_core.masters.model import Money
from audifi_core.payments.model import (
    CheckoutView,
    InvoiceView,
    PortalView,
    SubscriptionView,
    WebhookReceipt,
)

from ..api import Raw, RouteTable
from ..keys import PLATFORM
from ..middleware import auth_context, client_ip, idempotent
from ..serde import json_response, parse, read_body, read_json

__all__ = ["register"]


@attrs.frozen
class CheckoutBody:
    """``{kind:"shares", masterId, quantity}`` or ``{kind:"subscription", plan}``."""

    kind: Literal["shares", "subscription"]
    master_id: str | None = attrs.field(default=None, metadata={"doc": "shares: the master whose IPO is live"})
    quantity: int | None = attrs.field(default=None, metadata={"doc": "shares: how many (counts toward maxPerUser)"})
    plan: str | None = attrs.field(default=None, metadata={
        "doc": "subscription: fan_monthly, fan_yearly or artist_pro_monthly (unknown → 400)"})


@attrs.frozen
class WithdrawBody:
    master_id: str
    count: int = attrs.field(metadata={"doc": "1…250 shares held at your custodial address"})
    to: str = attrs.field(metadata={"doc": "one of your wallets, linked at least 24 h ago"})


@attrs.frozen
class CompleteBody:
    outcome: Literal["paid", "delayed", "succeed", "fail"] = attrs.field(default="paid", metadata={
        "doc": "paid (card, default); delayed (a bank debit: completes unpaid); then succeed or fail it"})


@attrs.frozen
class PlanView:
    id: str
    name: str
    interval: str
    price: Money
    entitlements: list[str]


_WEBHOOK_BODY = Raw({"type": "object", "description": "A Stripe event, verified on the raw body with the "
                                                      "Stripe-Signature header (300 s tolerance)"})
_COMPLETED = Raw({"type": "object", "properties": {
    "sessionId": {"type": "string"}, "status": {"type": "string"}, "paymentStatus": {"type": "string"},
    "events": {"type": "array", "items": {"type": "string"}}}})


def _svc(request: web.Request) -> Any:
    svc = request.app[PLATFORM].payments
    if svc is None:
        raise InternalError("The payments context is not wired")
    return svc


def register(t: RouteTable, config: Any = None) -> None:  # noqa: C901 - one closure per route
    @t.post("/payments/checkout", summary="Open a hosted checkout: IPO shares (reserved until the session expires "
                                          "or its payment fails) or a subscription plan", who="auth",
            body=CheckoutBody, response=CheckoutView, errors=(404, 409, 429, 502), idempotent=True, tag="payments")
    @idempotent
    async def checkout(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), CheckoutBody)
        view = await _svc(request).create_checkout(ctx.user, client_ip(request), kind=body.kind,
                                                   master_id=body.master_id, quantity=body.quantity, plan=body.plan)
        return json_response(view)

    @t.post("/payments/webhook", summary="Stripe's webhook: signature checked on the raw body (bad or stale → 400); "
                                         "each event id takes effect once", who="Stripe", body=_WEBHOOK_BODY,
            response=WebhookReceipt, tag="payments")
    async def webhook(request: web.Request) -> web.Response:
        raw = await read_body(request)
        receipt = await _svc(request).receive_webhook(raw, request.headers.get("Stripe-Signature"))
        return json_response(receipt)

    @t.post("/payments/portal", summary="A Stripe customer portal session", who="auth", response=PortalView,
            errors=(429, 502), idempotent=True, tag="payments")
    @idempotent
    async def portal(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        return json_response(await _svc(request).portal(ctx.user))

    @t.get("/payments/invoices", summary="Your invoices, newest first", who="auth", response=list[InvoiceView],
           errors=(502,), tag="payments")
    async def invoices(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        return json_response(await _svc(request).invoices(ctx.user_id))

    @t.get("/payments/plans", summary="The subscription plans on offer and their entitlements",
           response=list[PlanView], tag="payments")
    async def plans(request: web.Request) -> web.Response:
        s = _svc(request).settings
        return json_response([PlanView(id=p.id, name=p.name, interval=p.interval, price=p.price,
                                       entitlements=list(p.entitlements)) for p in s.plans if p.id in s.price_ids])

    @t.get("/subscriptions", summary="Your subscription (as Stripe last said) with its entitlements, or null",
           who="auth", response=SubscriptionView | None, tag="payments")
    async def subscription(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        return json_response(await _svc(request).subscription(ctx.user_id))

    @t.post("/subscriptions/cancel", summary="Cancel your subscription at the end of the period", who="auth",
            response=SubscriptionView, errors=(404, 502), idempotent=True, tag="payments")
    @idempotent
    async def cancel(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        return json_response(await _svc(request).cancel_subscription(ctx.user_id))

    @t.post("/user/holdings/withdraw", summary="Move custodial shares to one of your wallets after the hold "
                                               "period (fresh sign-in; wallet linked ≥ 24 h; you are mailed)",
            who="auth + fresh", body=WithdrawBody, response=ChainJobView, status=202, errors=(404, 409, 429),
            idempotent=True, tag="masters")
    @idempotent
    async def withdraw(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), WithdrawBody)
        job = await _svc(request).withdraw(ctx, body.master_id, body.count, body.to)
        return json_response(job, status=202)

    if config is None or not uses_local_gateway(config):
        return

    @t.post("/dev/checkout/{sessionId}/complete", summary="Dev: pay a checkout session on the local gateway; the "
                                                          "signed events go through the webhook path",
            who="public (dev)", body=CompleteBody, response=_COMPLETED, errors=(404,), tag="dev")
    async def dev_complete(request: web.Request) -> web.Response:
        body = parse(await read_json(request, optional=True), CompleteBody)
        gw = request.app[PLATFORM].extras["payments.gateway"]
        return json_response(await gw.complete(request.match_info["sessionId"], body.outcome))

    @t.get("/dev/checkout/{sessionId}/complete", summary="Dev: the local gateway's hosted checkout page",
           response=Raw({"type": "string"}, "text/html"), tag="dev")
    async def dev_checkout_page(request: web.Request) -> web.Response:
        sid = html.escape(request.match_info["sessionId"])
        page = (f"<!doctype html><title>AudiFi dev checkout</title><h1>Dev checkout {sid}</h1>"
                "<p>No money moves: this is the local stand-in for Stripe's hosted page.</p>"
                "<button onclick=\"fetch(location.pathname,{method:'POST'}).then(r=>r.json())"
                ".then(j=>document.body.insertAdjacentHTML('beforeend','<pre>'+JSON.stringify(j,null,1)+'</pre>'))\">"
                "Pay</button>")
        return web.Response(text=page, content_type="text/html")
