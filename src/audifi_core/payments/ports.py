"""What the payments context needs: a payment gateway, its rows, the share sale, and what it offers.

* :class:`PaymentGateway` - Stripe (``StripePaymentGateway``) or the local dev gateway.
* :class:`PaymentsRepository` - ``uow.payments``: checkouts, customers, subscriptions, processed
  webhook events, per-user limits and durable tasks. Every limit and every "once" is a conditional
  write (a unique key or ``UPDATE … WHERE``), never read-then-check.
* :class:`ShareSales` - the masters context's share ledger and treasury (``platform.masters``).
* :class:`Entitlements` - offered to other contexts (the studio's ``subscribers`` audience).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from audifi_core.chain.model import ChainJob
from audifi_core.uow import UnitOfWork

from .model import (
    Checkout,
    CheckoutRequest,
    CheckoutStatus,
    GatewayEvent,
    GatewayInvoice,
    GatewaySession,
    GatewaySubscription,
    Reversal,
    Subscription,
    Task,
)

__all__ = ["PaymentGateway", "PaymentsRepository", "ShareSales", "Entitlements", "BadSignature"]


class BadSignature(Exception):
    """A webhook's signature is missing, forged or stale (the HTTP edge answers 400)."""


class PaymentGateway(Protocol):
    """Hosted checkout, customers, portal, subscriptions, invoices, refunds, and webhook verification.

    Every create carries an idempotency key, so a retried call never makes a second object. Calls
    raise ``UpstreamError`` when the gateway fails or refuses.
    """

    name: str

    async def create_customer(self, user_id: str, email: str, idempotency_key: str) -> str: ...

    async def create_checkout(self, request: CheckoutRequest, idempotency_key: str) -> GatewaySession: ...

    async def retrieve_checkout(self, session_id: str) -> GatewaySession: ...

    async def expire_checkout(self, session_id: str) -> bool:
        """Expire an open session; ``False`` when it is not open any more (paid or expired)."""
        ...

    async def portal_url(self, customer_id: str, return_url: str) -> str: ...

    async def retrieve_subscription(self, subscription_id: str) -> GatewaySubscription | None:
        """``None`` when the gateway does not know it."""
        ...

    async def cancel_at_period_end(self, subscription_id: str, idempotency_key: str) -> GatewaySubscription: ...

    async def list_invoices(self, customer_id: str, limit: int) -> list[GatewayInvoice]: ...

    async def refund(self, payment_intent: str, idempotency_key: str) -> str: ...

    def verify_event(self, payload: bytes, signature: str | None) -> GatewayEvent:
        """Check the signature on the raw body (``BadSignature``) and parse the event."""
        ...


class PaymentsRepository(Protocol):
    # -- customers
    async def customer_of(self, user_id: str) -> str | None: ...

    async def add_customer(self, user_id: str, customer_id: str, at: datetime) -> str:
        """Store the user's customer unless one is stored; the stored one."""
        ...

    async def user_of_customer(self, customer_id: str) -> str | None: ...

    # -- checkouts
    async def add_checkout(self, checkout: Checkout) -> None: ...

    async def get_checkout(self, checkout_id: str) -> Checkout | None: ...

    async def checkout_by_session(self, session_id: str) -> Checkout | None: ...

    async def checkout_by_payment(self, payment_intent: str) -> Checkout | None: ...

    async def transition(self, checkout_id: str, from_statuses: Iterable[CheckoutStatus],
                         to: CheckoutStatus, at: datetime, **changes: Any) -> Checkout | None:
        """Move to ``to`` (with ``changes``) only from one of ``from_statuses``; the row after, or
        ``None`` when it was elsewhere. Concurrent transitions of one checkout: exactly one wins."""
        ...

    async def update_checkout(self, checkout_id: str, at: datetime, **changes: Any) -> Checkout | None:
        """Set fields (session id, url, payment intent, job ids…) whatever the status."""
        ...

    async def mark_reversed(self, checkout_id: str, reason: Reversal, at: datetime) -> Checkout | None:
        """Record the first reversal (refund, dispute, fraud warning) of a paid checkout; ``None``
        when it was reversed already or is not paid."""
        ...

    async def open_checkouts(self, user_id: str, kind: str | None = None) -> list[Checkout]: ...

    async def stale_open(self, before: datetime, limit: int) -> list[Checkout]:
        """Open checkouts whose session should have expired by ``before`` (the reconciler asks the gateway)."""
        ...

    async def creating_before(self, before: datetime, limit: int) -> list[Checkout]: ...

    async def paid_shares(self, limit: int, after: str | None = None) -> list[Checkout]:
        """Paid share checkouts not yet settled (transfer not confirmed, or a reversal not returned)."""
        ...

    async def returning(self, user_id: str, master_id: str) -> list[Checkout]:
        """The user's paid checkouts of the master reversed within their hold whose ids are not back in
        the treasury yet (a withdrawal must not take those ids)."""
        ...

    async def mark_settled(self, checkout_id: str) -> None:
        """The reconciler need not look at it again (transfer confirmed and nothing to return)."""
        ...

    # -- limits (conditional counters)
    async def take_open_slot(self, user_id: str, limit: int) -> bool: ...

    async def free_open_slot(self, user_id: str) -> None: ...

    async def take_shares(self, user_id: str, master_id: str, count: int, limit: int) -> bool:
        """Count ``count`` more shares of the master for the user while the total stays ≤ ``limit``."""
        ...

    async def give_back_shares(self, user_id: str, master_id: str, count: int) -> None: ...

    # -- webhook events and reversals
    async def record_event(self, event_id: str, type_: str, at: datetime) -> bool:
        """``True`` for exactly one caller per event id (a unique key decides, even under a race)."""
        ...

    async def lock_payment(self, payment_intent: str) -> None:
        """Serialise, until commit, every unit of work touching this payment (fulfil vs reversal)."""
        ...

    async def record_reversal(self, payment_intent: str, reason: Reversal, at: datetime) -> bool: ...

    async def reversal_of(self, payment_intent: str) -> Reversal | None: ...

    # -- subscriptions
    async def next_ticket(self) -> int:
        """A number larger than every one handed out before (taken before each fetch from the gateway)."""
        ...

    async def put_subscription(self, subscription: Subscription) -> bool:
        """Insert, or replace when ``subscription.ticket`` is newer than the stored one; ``True`` if written."""
        ...

    async def get_subscription(self, subscription_id: str) -> Subscription | None: ...

    async def subscriptions_of(self, user_id: str) -> list[Subscription]: ...

    # -- durable tasks
    async def schedule(self, key: str, kind: str, payload: dict[str, Any], due_at: datetime) -> None:
        """Queue (or re-trigger) the task ``key``: a re-trigger bumps ``gen`` so a running one runs again."""
        ...

    async def claim_tasks(self, now: datetime, lease_seconds: int, limit: int) -> list[Task]: ...

    async def finish_task(self, task: Task) -> None:
        """Delete it unless it was re-triggered meanwhile (then it is due again)."""
        ...

    async def retry_task(self, task: Task, due_at: datetime, error: str) -> None: ...

    async def pending_tasks(self) -> int: ...


class ShareSales(Protocol):
    """The share ledger and treasury of the masters context (``MasterService``)."""

    @property
    def treasury(self) -> str: ...

    def custodial_address(self, user_index: int) -> str: ...

    async def get_master(self, master_id: str) -> Any:
        """The master (``title``, ``contract_address``, ``ipo`` with ``price``/``max_per_user``);
        ``NotFound`` ``MASTER_NOT_FOUND``."""
        ...

    def ipo_status(self, master: Any) -> str: ...

    async def reserve_tokens(self, uow: UnitOfWork, master_id: str, count: int, reservation_id: str) -> list[int]: ...

    async def release_tokens(self, uow: UnitOfWork, reservation_id: str) -> int: ...

    async def mark_sold(self, uow: UnitOfWork, reservation_id: str) -> int: ...

    async def allocate_from_treasury(self, uow: UnitOfWork, *, master_id: str, user_id: str,
                                     token_ids: list[int] | None, count: int, op_key: str,
                                     hold_until: datetime | None) -> ChainJob: ...


class Entitlements(Protocol):
    async def has(self, user_id: str, entitlement: str) -> bool: ...
