"""Payments and subscriptions: plans, checkouts, subscriptions, and what a payment gateway reports.

A *checkout* is our record of one hosted payment page (a Stripe Checkout Session): for shares it
holds the specific token ids reserved for the buyer until the gateway says the session expired or
its payment failed; once paid it names the chain job moving those ids to the buyer. A
*subscription* mirrors the gateway's subscription as last fetched from it (webhooks only trigger
the fetch), so reordered or repeated events cannot roll it back.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

from audifi_core.masters.model import Money

__all__ = [
    "Money",
    "Plan",
    "DEFAULT_PLANS",
    "ENTITLED_STATUSES",
    "CheckoutKind",
    "CheckoutStatus",
    "Reversal",
    "Checkout",
    "Subscription",
    "Task",
    "CheckoutRequest",
    "GatewaySession",
    "GatewaySubscription",
    "GatewayInvoice",
    "GatewayEvent",
    "CheckoutView",
    "SubscriptionView",
    "InvoiceView",
    "PortalView",
    "WebhookReceipt",
    "OPEN_STATUSES",
]


@attrs.frozen
class Plan:
    """A subscription plan: its price and what it entitles the subscriber to."""

    id: str
    name: str
    interval: str  # "month" | "year"
    price: Money
    entitlements: tuple[str, ...] = attrs.field(converter=tuple)


#: Entitlement names other contexts ask about (``vstudio.subscribers``: vote in subscriber sessions).
DEFAULT_PLANS: tuple[Plan, ...] = (
    Plan("fan_monthly", "Fan (monthly)", "month", Money(499, "usd"),
         ("vstudio.subscribers", "content.early_access")),
    Plan("fan_yearly", "Fan (yearly)", "year", Money(4990, "usd"),
         ("vstudio.subscribers", "content.early_access")),
    Plan("artist_pro_monthly", "Artist Pro (monthly)", "month", Money(1999, "usd"),
         ("vstudio.subscribers", "content.early_access", "artist.pro_analytics", "artist.priority_support")),
)

#: Subscription statuses (the gateway's words) under which the plan's entitlements hold.
ENTITLED_STATUSES = frozenset({"active", "trialing", "past_due"})


class CheckoutKind(enum.StrEnum):
    SHARES = "shares"
    SUBSCRIPTION = "subscription"


class CheckoutStatus(enum.StrEnum):
    CREATING = "creating"      # reserved here, the gateway's session not stored yet
    OPEN = "open"              # the payment page is live
    PROCESSING = "processing"  # completed with a delayed payment method, not paid yet
    PAID = "paid"              # paid: shares sold and their transfer queued (or subscription started)
    EXPIRED = "expired"        # the gateway expired it: reservation released
    FAILED = "failed"          # the delayed payment failed, or it could not be created: released
    UNFULFILLABLE = "unfulfillable"  # paid but the shares could not be delivered: refunded


#: Statuses that hold a reservation and count toward the open-checkout limit.
OPEN_STATUSES = frozenset({CheckoutStatus.CREATING, CheckoutStatus.OPEN, CheckoutStatus.PROCESSING})


class Reversal(enum.StrEnum):
    REFUND = "refund"
    DISPUTE = "dispute"
    FRAUD_WARNING = "fraud_warning"


@attrs.frozen
class Checkout:
    id: str  # ours (``chk_…``): the reservation id and the gateway's client_reference_id
    user_id: str
    kind: CheckoutKind
    status: CheckoutStatus
    amount: Money
    created_at: datetime
    updated_at: datetime
    session_id: str | None = None
    url: str | None = None
    expires_at: datetime | None = None
    master_id: str | None = None
    quantity: int = 0
    token_ids: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    plan: str | None = None
    payment_intent: str | None = None
    transfer_job_id: str | None = None
    hold_until: datetime | None = None
    reversal: Reversal | None = None
    reversed_at: datetime | None = None
    return_job_id: str | None = None
    returned_at: datetime | None = None
    #: nothing left for the reconciler: transfer confirmed and, if reversed, the ids returned
    settled: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@attrs.frozen
class Subscription:
    """The gateway's subscription as last fetched; ``ticket`` orders fetches (newest wins)."""

    id: str
    user_id: str
    customer_id: str
    status: str
    plan: str | None
    price_id: str | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    updated_at: datetime
    ticket: int = 0


@attrs.frozen
class Task:
    """Durable slow work (a gateway call) queued by a webhook or a use case; ``gen`` counts triggers."""

    key: str
    kind: str
    payload: dict[str, Any]
    due_at: datetime
    attempts: int = 0
    gen: int = 1


# ---------------------------------------------------------------------------- the gateway's side
@attrs.frozen
class CheckoutRequest:
    """A hosted checkout to open: one-time (``payment``) or recurring (``subscription``)."""

    mode: str  # "payment" | "subscription"
    client_reference_id: str
    customer_id: str
    expires_at: datetime
    success_url: str
    cancel_url: str
    metadata: dict[str, str]
    quantity: int = 1
    price_id: str | None = None        # subscription: the plan's price
    unit_amount: Money | None = None   # payment: price per unit
    product_name: str | None = None
    three_d_secure: bool = False


@attrs.frozen
class GatewaySession:
    id: str
    status: str  # "open" | "complete" | "expired"
    payment_status: str  # "paid" | "unpaid" | "no_payment_required"
    mode: str
    url: str | None
    expires_at: datetime | None
    client_reference_id: str | None
    customer_id: str | None
    payment_intent: str | None
    subscription_id: str | None
    amount_total: int | None
    currency: str | None
    metadata: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class GatewaySubscription:
    id: str
    customer_id: str
    status: str
    price_id: str | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    metadata: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class GatewayInvoice:
    id: str
    amount: Money
    status: str | None
    hosted_url: str | None
    created_at: datetime
    subscription_id: str | None = None
    billing_reason: str | None = None
    customer_id: str | None = None


@attrs.frozen
class GatewayEvent:
    """A verified webhook event: its id, type and the object it carries (the gateway's JSON)."""

    id: str
    type: str
    created: datetime
    object: dict[str, Any]


# ---------------------------------------------------------------------------- views (API.md)
@attrs.frozen
class CheckoutView:
    """A hosted checkout to redirect the user to; it expires at ``expiresAt``."""

    session_id: str
    url: str
    expires_at: datetime


@attrs.frozen
class SubscriptionView:
    """The user's subscription: plan, the gateway's status, period end, and what it entitles to."""

    plan: str | None
    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool
    entitlements: list[str]


@attrs.frozen
class InvoiceView:
    id: str
    amount: Money
    status: str | None
    hosted_url: str | None
    created_at: datetime


@attrs.frozen
class PortalView:
    """The gateway's customer portal (payment methods, invoices, plan changes)."""

    url: str


@attrs.frozen
class WebhookReceipt:
    """``duplicate``: this event id had taken effect already (a repeat delivery)."""

    received: bool
    duplicate: bool
    type: str
