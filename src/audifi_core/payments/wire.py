"""The gateway's object vocabulary (Stripe's JSON, which the local dev gateway speaks too) read into
core models. Pure functions over dicts: both gateways and the webhook dispatch use them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .model import GatewayInvoice, GatewaySession, GatewaySubscription, Money

__all__ = ["parse_session", "parse_subscription", "parse_invoice", "invoice_subscription", "from_epoch", "ref"]


def from_epoch(v: Any) -> datetime | None:
    if v is None or v == "":
        return None
    return datetime.fromtimestamp(int(v), UTC)


def ref(v: Any) -> str | None:
    """An expandable field: an id, or the expanded object's id."""
    if v is None:
        return None
    if isinstance(v, dict):
        return v.get("id")
    return str(v)


def _meta(v: Any) -> dict[str, str]:
    return {str(k): str(x) for k, x in (v or {}).items()}


def parse_session(o: dict[str, Any]) -> GatewaySession:
    return GatewaySession(
        id=o["id"], status=o.get("status") or "open", payment_status=o.get("payment_status") or "unpaid",
        mode=o.get("mode") or "payment", url=o.get("url"), expires_at=from_epoch(o.get("expires_at")),
        client_reference_id=o.get("client_reference_id"), customer_id=ref(o.get("customer")),
        payment_intent=ref(o.get("payment_intent")), subscription_id=ref(o.get("subscription")),
        amount_total=int(o["amount_total"]) if o.get("amount_total") is not None else None,
        currency=o.get("currency"), metadata=_meta(o.get("metadata")))


def parse_subscription(o: dict[str, Any]) -> GatewaySubscription:
    items = ((o.get("items") or {}).get("data")) or []
    first = items[0] if items else {}
    price = first.get("price") or {}
    # Since API version 2025-03-31 the billing period lives on each item; older ones have it on top.
    ends = [i.get("current_period_end") for i in items if i.get("current_period_end") is not None]
    period_end = max(ends) if ends else o.get("current_period_end")
    return GatewaySubscription(
        id=o["id"], customer_id=ref(o.get("customer")) or "", status=o.get("status") or "incomplete",
        price_id=ref(price) if price else None, current_period_end=from_epoch(period_end),
        cancel_at_period_end=bool(o.get("cancel_at_period_end")), metadata=_meta(o.get("metadata")))


def invoice_subscription(o: dict[str, Any]) -> str | None:
    """The subscription an invoice bills (``parent.subscription_details`` since 2025-03-31)."""
    parent = o.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return ref(details.get("subscription")) or ref(o.get("subscription"))


def parse_invoice(o: dict[str, Any]) -> GatewayInvoice:
    paid = o.get("status") == "paid"
    amount = int((o.get("amount_paid") if paid else o.get("amount_due")) or 0)
    return GatewayInvoice(
        id=o["id"], amount=Money(amount, o.get("currency") or "usd"), status=o.get("status"),
        hosted_url=o.get("hosted_invoice_url"), created_at=from_epoch(o.get("created")) or datetime.now(UTC),
        subscription_id=invoice_subscription(o), billing_reason=o.get("billing_reason"),
        customer_id=ref(o.get("customer")))
