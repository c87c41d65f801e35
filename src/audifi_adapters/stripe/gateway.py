"""``StripePaymentGateway``: the ``PaymentGateway`` port on the official SDK's ``StripeClient`` with
its asynchronous aiohttp HTTP client.

Every create carries an idempotency key (customers per user, checkout sessions per checkout,
refunds per checkout, portal sessions per request). ``STRIPE_API_BASE`` may point the SDK at a
Stripe-compatible endpoint (the tests' stand-in). SDK errors become ``UpstreamError`` (502).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Sequence
from typing import Any

import stripe

from audifi_core.errors import UpstreamError
from audifi_core.payments.model import (
    CheckoutRequest,
    GatewayEvent,
    GatewayInvoice,
    GatewaySession,
    GatewaySubscription,
)
from audifi_core.payments.wire import parse_invoice, parse_session, parse_subscription

from .webhook import TOLERANCE, verify_event

__all__ = ["StripePaymentGateway", "session_params"]


def session_params(req: CheckoutRequest) -> dict[str, Any]:
    """The ``POST /v1/checkout/sessions`` parameters of a checkout request."""
    params: dict[str, Any] = {
        "mode": req.mode,
        "customer": req.customer_id,
        "client_reference_id": req.client_reference_id,
        "expires_at": int(req.expires_at.timestamp()),
        "success_url": req.success_url,
        "cancel_url": req.cancel_url,
        "metadata": dict(req.metadata),
    }
    if req.mode == "payment":
        assert req.unit_amount is not None
        params["line_items"] = [{"quantity": req.quantity, "price_data": {
            "currency": req.unit_amount.currency, "unit_amount": req.unit_amount.amount,
            "product_data": {"name": req.product_name or "AudiFi"}}}]
        params["payment_intent_data"] = {"metadata": dict(req.metadata)}
    else:
        assert req.price_id is not None
        params["line_items"] = [{"price": req.price_id, "quantity": req.quantity}]
        params["subscription_data"] = {"metadata": dict(req.metadata)}
    if req.three_d_secure:
        params["payment_method_options"] = {"card": {"request_three_d_secure": "any"}}
    return params


class StripePaymentGateway:
    name = "stripe"

    def __init__(self, secret_key: str, webhook_secrets: Sequence[str], *, api_base: str | None = None,
                 timeout: float = 20.0, max_network_retries: int = 2, tolerance: int = TOLERANCE):
        self._http = stripe.AIOHTTPClient(timeout=timeout)
        self._client = stripe.StripeClient(
            secret_key, http_client=self._http, max_network_retries=max_network_retries,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None)
        self._secrets = list(webhook_secrets)
        self._tolerance = tolerance

    async def close(self) -> None:
        await self._http.close_async()

    @property
    def v1(self) -> Any:
        return self._client.v1

    async def _call(self, what: str, call: Awaitable[Any]) -> dict[str, Any]:
        try:
            obj = await call
        except stripe.StripeError as e:
            raise UpstreamError(f"Stripe refused or failed: {what}", details={
                "operation": what, "status": e.http_status, "code": e.code,
                "type": getattr(e.error, "type", None) if e.error else None,
                "stripeMessage": (e.user_message or str(e))[:300]}) from e
        return obj.to_dict()

    async def create_customer(self, user_id: str, email: str, idempotency_key: str) -> str:
        c = await self._call("customers.create", self.v1.customers.create_async(
            {"email": email, "metadata": {"userId": user_id}}, {"idempotency_key": idempotency_key}))
        return str(c["id"])

    async def create_checkout(self, request: CheckoutRequest, idempotency_key: str) -> GatewaySession:
        s = await self._call("checkout.sessions.create", self.v1.checkout.sessions.create_async(
            session_params(request), {"idempotency_key": idempotency_key}))
        return parse_session(s)

    async def retrieve_checkout(self, session_id: str) -> GatewaySession:
        return parse_session(await self._call("checkout.sessions.retrieve",
                                              self.v1.checkout.sessions.retrieve_async(session_id)))

    async def expire_checkout(self, session_id: str) -> bool:
        try:
            await self.v1.checkout.sessions.expire_async(session_id)
        except stripe.InvalidRequestError:
            return False  # not open any more (paid or expired already)
        except stripe.StripeError as e:
            raise UpstreamError("Stripe failed: checkout.sessions.expire",
                                details={"status": e.http_status, "code": e.code}) from e
        return True

    async def portal_url(self, customer_id: str, return_url: str) -> str:
        p = await self._call("billing_portal.sessions.create", self.v1.billing_portal.sessions.create_async(
            {"customer": customer_id, "return_url": return_url},
            {"idempotency_key": f"portal:{customer_id}:{secrets.token_hex(8)}"}))
        return str(p["url"])

    async def retrieve_subscription(self, subscription_id: str) -> GatewaySubscription | None:
        try:
            s = await self.v1.subscriptions.retrieve_async(subscription_id)
        except stripe.InvalidRequestError as e:
            if e.http_status == 404:
                return None
            raise UpstreamError("Stripe refused: subscriptions.retrieve", details={"code": e.code}) from e
        except stripe.StripeError as e:
            raise UpstreamError("Stripe failed: subscriptions.retrieve", details={"status": e.http_status}) from e
        return parse_subscription(s.to_dict())

    async def cancel_at_period_end(self, subscription_id: str, idempotency_key: str) -> GatewaySubscription:
        s = await self._call("subscriptions.update", self.v1.subscriptions.update_async(
            subscription_id, {"cancel_at_period_end": True}, {"idempotency_key": idempotency_key}))
        return parse_subscription(s)

    async def list_invoices(self, customer_id: str, limit: int) -> list[GatewayInvoice]:
        page = await self._call("invoices.list", self.v1.invoices.list_async({"customer": customer_id,
                                                                              "limit": limit}))
        return [parse_invoice(i) for i in page.get("data") or []]

    async def refund(self, payment_intent: str, idempotency_key: str) -> str:
        r = await self._call("refunds.create", self.v1.refunds.create_async(
            {"payment_intent": payment_intent}, {"idempotency_key": idempotency_key}))
        return str(r["id"])

    def verify_event(self, payload: bytes, signature: str | None) -> GatewayEvent:
        return verify_event(payload, signature, self._secrets, self._tolerance)
