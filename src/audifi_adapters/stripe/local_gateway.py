"""``LocalPaymentGateway``: the dev gateway (no ``STRIPE_SECRET_KEY``), on :class:`LocalStripe`.

Its checkout URL is our ``/dev/checkout/:id/complete``; paying there makes the events Stripe would
send, signs them with the configured (or a generated) webhook secret and feeds them through the
same webhook path as Stripe's (``deliver`` = the payments service's ``receive_webhook``), so dev
exercises signature checks, exactly-once handling and fulfilment for real.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from audifi_core.errors import NotFound, UpstreamError, ValidationError
from audifi_core.payments.model import (
    CheckoutRequest,
    GatewayEvent,
    GatewayInvoice,
    GatewaySession,
    GatewaySubscription,
)
from audifi_core.payments.wire import parse_invoice, parse_session, parse_subscription

from .gateway import session_params
from .local import LocalStripe, LocalStripeError, sign_payload
from .webhook import TOLERANCE, verify_event

__all__ = ["LocalPaymentGateway", "Deliver"]

log = structlog.get_logger("audifi.payments.local")

Deliver = Callable[[bytes, str], Awaitable[Any]]


def _upstream(what: str, e: LocalStripeError) -> UpstreamError:
    return UpstreamError(f"The payment gateway refused: {what}",
                         details={"operation": what, "status": e.status, "code": e.code, "type": e.type,
                                  "stripeMessage": e.message})


class LocalPaymentGateway:
    name = "local"

    def __init__(self, engine: LocalStripe, webhook_secrets: Sequence[str], *, tolerance: int = TOLERANCE):
        self.engine = engine
        self._secrets = list(webhook_secrets)
        self._tolerance = tolerance
        self.deliver: Deliver | None = None
        self._delivered = 0
        self._lock = asyncio.Lock()
        self._later: set[asyncio.Task[Any]] = set()

    def _flush_later(self) -> None:
        """Deliver the events of a call after it answered (Stripe sends them asynchronously too)."""
        t = asyncio.get_running_loop().create_task(self.flush())
        self._later.add(t)
        t.add_done_callback(self._later.discard)

    async def close(self) -> None:
        for t in list(self._later):
            t.cancel()
        for t in list(self._later):
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass

    # ------------------------------------------------------------------ events → the webhook path
    def sign(self, event: dict[str, Any]) -> tuple[bytes, str]:
        payload = json.dumps(event, separators=(",", ":"))
        return payload.encode(), sign_payload(payload, self._secrets[:1])

    async def flush(self) -> list[str]:
        """Deliver every event not delivered yet, in order; their types."""
        async with self._lock:
            pending = self.engine.events[self._delivered:]
            self._delivered = len(self.engine.events)
        types = []
        for event in pending:
            types.append(event["type"])
            if self.deliver is None:
                continue
            payload, header = self.sign(event)
            try:
                await self.deliver(payload, header)
            except Exception as e:  # noqa: BLE001 - Stripe would retry; the reconciler catches up
                log.warning("local_webhook_failed", event_id=event["id"], type=event["type"], error=repr(e))
        return types

    async def complete(self, session_id: str, outcome: str = "paid") -> dict[str, Any]:
        """The dev hosted checkout: ``paid`` (card), ``delayed`` (completes unpaid), then
        ``succeed``/``fail`` a delayed one; the resulting events go through the webhook path."""
        try:
            if outcome == "paid":
                s = self.engine.pay(session_id)
            elif outcome == "delayed":
                s = self.engine.pay(session_id, delayed=True)
            elif outcome in ("succeed", "fail"):
                s = self.engine.settle(session_id, succeeded=outcome == "succeed")
            else:
                raise ValidationError("Unknown outcome", fields={"outcome": "paid, delayed, succeed or fail"})
        except LocalStripeError as e:
            if e.status == 404:
                raise NotFound(f"Checkout session {session_id} not found", code="CHECKOUT_NOT_FOUND",
                               details={"sessionId": session_id}) from e
            raise ValidationError(e.message, fields={"sessionId": e.message}) from e
        events = await self.flush()
        return {"sessionId": session_id, "status": s["status"], "paymentStatus": s["payment_status"],
                "events": events}

    async def expire_due(self) -> int:
        n = len(self.engine.expire_due())
        if n:
            await self.flush()
        return n

    # ------------------------------------------------------------------ the port
    async def create_customer(self, user_id: str, email: str, idempotency_key: str) -> str:
        params = {"email": email, "metadata": {"userId": user_id}}
        try:
            c = self.engine.idempotent("/v1/customers", idempotency_key, params,
                                       lambda: self.engine.create_customer(params))
        except LocalStripeError as e:
            raise _upstream("customers.create", e) from e
        return str(c["id"])

    async def create_checkout(self, request: CheckoutRequest, idempotency_key: str) -> GatewaySession:
        params = session_params(request)
        try:
            s = self.engine.idempotent("/v1/checkout/sessions", idempotency_key, params,
                                       lambda: self.engine.create_session(copy.deepcopy(params)))
        except LocalStripeError as e:
            raise _upstream("checkout.sessions.create", e) from e
        return parse_session(s)

    async def retrieve_checkout(self, session_id: str) -> GatewaySession:
        try:
            return parse_session(self.engine.retrieve_session(session_id))
        except LocalStripeError as e:
            raise _upstream("checkout.sessions.retrieve", e) from e

    async def expire_checkout(self, session_id: str) -> bool:
        try:
            self.engine.expire_session(session_id)
        except LocalStripeError:
            return False
        await self.flush()
        return True

    async def portal_url(self, customer_id: str, return_url: str) -> str:
        try:
            return str(self.engine.create_portal_session({"customer": customer_id, "return_url": return_url})["url"])
        except LocalStripeError as e:
            raise _upstream("billing_portal.sessions.create", e) from e

    async def retrieve_subscription(self, subscription_id: str) -> GatewaySubscription | None:
        try:
            return parse_subscription(copy.deepcopy(self.engine.subscription(subscription_id)))
        except LocalStripeError as e:
            if e.status == 404:
                return None
            raise _upstream("subscriptions.retrieve", e) from e

    async def cancel_at_period_end(self, subscription_id: str, idempotency_key: str) -> GatewaySubscription:
        try:
            s = self.engine.update_subscription(subscription_id, {"cancel_at_period_end": True})
        except LocalStripeError as e:
            raise _upstream("subscriptions.update", e) from e
        self._flush_later()
        return parse_subscription(s)

    async def list_invoices(self, customer_id: str, limit: int) -> list[GatewayInvoice]:
        page = self.engine.list_invoices({"customer": customer_id, "limit": limit})
        return [parse_invoice(i) for i in page["data"]]

    async def refund(self, payment_intent: str, idempotency_key: str) -> str:
        params = {"payment_intent": payment_intent}
        try:
            r = self.engine.idempotent("/v1/refunds", idempotency_key, params,
                                       lambda: self.engine.create_refund(params))
        except LocalStripeError as e:
            raise _upstream("refunds.create", e) from e
        self._flush_later()
        return str(r["id"])

    def verify_event(self, payload: bytes, signature: str | None) -> GatewayEvent:
        return verify_event(payload, signature, self._secrets, self._tolerance)
