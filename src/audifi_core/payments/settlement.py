"""Settlement: what a verified gateway event does, once, and the reconciler that finishes the rest.

Each webhook event takes effect in ONE unit of work together with the row recording its id (a
unique key), so concurrent or repeated deliveries of one event have one effect. Checkout state
moves only by conditional transitions (``open → paid`` wins once), so two different events about
one session (``completed`` and ``async_payment_succeeded``) cannot both fulfil it. Subscription
events are triggers only: a durable task fetches the subscription from the gateway and writes
what it says, ordered by a ticket taken before the fetch, so reordering cannot roll it back.

No gateway call happens inside a unit of work: slow work is a task (``run_tasks``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from audifi_core.auth.model import User
from audifi_core.chain.jobs import ChainJobs
from audifi_core.chain.model import ChainJob, JobKind, JobStatus, TransferShares, custody_signer
from audifi_core.errors import AudifiError, ValidationError
from audifi_core.events import DomainEvent
from audifi_core.ports import Clock, IdGenerator, Mailer, RateLimiter
from audifi_core.uow import UnitOfWork

from .model import (
    OPEN_STATUSES,
    Checkout,
    CheckoutKind,
    CheckoutStatus,
    GatewayEvent,
    GatewaySession,
    Reversal,
    WebhookReceipt,
)
from .ports import BadSignature, PaymentGateway, ShareSales
from .reconcile import REFUND, SYNC_SUBSCRIPTION, Reconciliation
from .settings import RETURN_PREFIX, TRANSFER_PREFIX, PaymentSettings
from .wire import invoice_subscription, parse_session

__all__ = ["Settlement", "SYNC_SUBSCRIPTION", "REFUND"]

log = structlog.get_logger("audifi.payments")

_REVERSALS = {"charge.refunded": Reversal.REFUND, "charge.dispute.created": Reversal.DISPUTE,
              "radar.early_fraud_warning.created": Reversal.FRAUD_WARNING}


def _ts(d: datetime | None) -> str | None:
    return d.astimezone(UTC).isoformat().replace("+00:00", "Z") if d else None


class Settlement(Reconciliation):
    """The shared state of the payments use cases and everything that settles a payment."""

    def __init__(self, *, uow: Callable[..., UnitOfWork], gateway: PaymentGateway, shares: ShareSales | None,
                 jobs: ChainJobs | None, limiter: RateLimiter, mailer: Mailer, clock: Clock, ids: IdGenerator,
                 settings: PaymentSettings | None = None):
        self._uow = uow
        self.gateway = gateway
        self.shares = shares
        self._jobs = jobs
        self._limiter = limiter
        self._mailer = mailer
        self._clock = clock
        self._ids = ids
        self.settings = settings or PaymentSettings()
        self._wake = asyncio.Event()

    # ================================================================== plumbing
    def _event(self, type_: str, data: dict[str, Any]) -> DomainEvent:
        return DomainEvent(id=self._ids.new_id("evt"), type=type_, occurred_at=self._clock.now(), data=data)

    def wake(self) -> None:
        self._wake.set()

    async def wait_for_work(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _schedule(self, u: Any, kind: str, key: str, payload: dict[str, Any]) -> None:
        await u.payments.schedule(key, kind, payload, self._clock.now())

    # ================================================================== webhook
    async def receive_webhook(self, payload: bytes, signature: str | None) -> WebhookReceipt:
        """Verify (400 on a bad or stale signature), then let the event take effect once."""
        try:
            event = self.gateway.verify_event(payload, signature)
        except BadSignature as e:
            raise ValidationError("Invalid webhook signature",
                                  fields={"Stripe-Signature": str(e) or "invalid"}) from e
        now = self._clock.now()
        try:
            async with self._uow() as u:
                if not await u.payments.record_event(event.id, event.type, now):  # type: ignore[attr-defined]
                    return WebhookReceipt(received=True, duplicate=True, type=event.type)
                await self._dispatch(u, event)
        except AudifiError as e:
            if e.status >= 500 or not event.type.startswith("checkout.session."):
                raise  # transient (or a bug): the gateway delivers it again
            await self._unfulfillable(event, e)
        self.wake()
        log.info("webhook_processed", event_id=event.id, type=event.type)
        return WebhookReceipt(received=True, duplicate=False, type=event.type)

    async def _dispatch(self, u: Any, event: GatewayEvent) -> None:
        t, o = event.type, event.object
        if t.startswith("checkout.session."):
            await self._on_session(u, t, parse_session(o))
        elif t in _REVERSALS:
            if t == "charge.refunded" and not o.get("refunded"):
                log.info("partial_refund_ignored", charge=o.get("id"), amount_refunded=o.get("amount_refunded"))
                return
            pi = o.get("payment_intent")
            if isinstance(pi, dict):
                pi = pi.get("id")
            if pi:
                await self.reverse(u, pi, _REVERSALS[t])
        elif t.startswith("customer.subscription."):
            if o.get("id"):
                await self._schedule(u, SYNC_SUBSCRIPTION, f"sub:{o['id']}", {"subscriptionId": o["id"]})
        elif t in ("invoice.paid", "invoice.payment_failed"):
            sub_id = invoice_subscription(o)
            if sub_id:
                await self._schedule(u, SYNC_SUBSCRIPTION, f"sub:{sub_id}", {"subscriptionId": sub_id})
            if t == "invoice.paid" and o.get("billing_reason") == "subscription_cycle":
                user_id = await u.payments.user_of_customer(o.get("customer") or "")
                if user_id:
                    u.emit(self._event("payment.succeeded", {
                        "userId": user_id, "amount": int(o.get("amount_paid") or 0),
                        "currency": o.get("currency") or "usd", "invoiceId": o.get("id"), "checkoutId": None}))
        else:
            log.info("webhook_ignored", type=t)

    async def _checkout_of(self, u: Any, s: GatewaySession) -> Checkout | None:
        ref = s.client_reference_id or s.metadata.get("checkoutId")
        c = await u.payments.get_checkout(ref) if ref else None
        if c is None:
            c = await u.payments.checkout_by_session(s.id)
        if c is not None and c.session_id is None:
            c = await u.payments.update_checkout(c.id, self._clock.now(), session_id=s.id, url=s.url,
                                                 expires_at=s.expires_at)
        return c

    async def _on_session(self, u: Any, t: str, s: GatewaySession) -> None:
        c = await self._checkout_of(u, s)
        if c is None:
            log.warning("webhook_unknown_checkout", session_id=s.id, type=t)
            return
        paid = s.payment_status in ("paid", "no_payment_required")
        if t in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            if c.kind is CheckoutKind.SUBSCRIPTION:
                await self._subscription_started(u, c, s, paid or t.endswith("succeeded"))
            elif paid or t.endswith("succeeded"):
                await self.fulfil(u, c, s)
            else:
                await u.payments.transition(c.id, (CheckoutStatus.CREATING, CheckoutStatus.OPEN),
                                            CheckoutStatus.PROCESSING, self._clock.now(),
                                            payment_intent=s.payment_intent)
        elif t == "checkout.session.async_payment_failed":
            await self.end(u, c, CheckoutStatus.FAILED)
        elif t == "checkout.session.expired":
            await self.end(u, c, CheckoutStatus.EXPIRED)

    # ================================================================== transitions
    async def end(self, u: Any, c: Checkout, status: CheckoutStatus) -> bool:
        """Expired or failed: the reservation ends (only from an open status, so once)."""
        done = await u.payments.transition(c.id, OPEN_STATUSES, status, self._clock.now())
        if done is None:
            return False
        await self._release(u, done)
        return True

    async def _release(self, u: Any, c: Checkout) -> None:
        await u.payments.free_open_slot(c.user_id)
        if c.kind is CheckoutKind.SHARES and c.master_id is not None:
            if self.shares is not None:
                await self.shares.release_tokens(u, c.id)
            await u.payments.give_back_shares(c.user_id, c.master_id, c.quantity)

    async def fulfil(self, u: Any, c: Checkout, s: GatewaySession) -> None:
        """Paid: the reserved ids are sold and ONE chain job (keyed by the session id) moves them to
        the buyer's custodial address, held until the hold period ends."""
        now = self._clock.now()
        pi = s.payment_intent
        if pi:
            await u.payments.lock_payment(pi)
            prior = await u.payments.reversal_of(pi)
            if prior is not None:  # refunded, disputed or flagged before we saw it paid: never delivered
                if await self.end(u, c, CheckoutStatus.FAILED):
                    await u.payments.update_checkout(c.id, now, payment_intent=pi)
                    if prior is Reversal.FRAUD_WARNING:
                        await self._refund_later(u, pi, c.id)
                return
        user: User | None = await u.users.get(c.user_id)
        amount = s.amount_total if s.amount_total is not None else c.amount.amount
        hold = self.settings.hold_until(now=now, account_created=user.created_at if user else None, amount=amount)
        won = await u.payments.transition(c.id, OPEN_STATUSES, CheckoutStatus.PAID, now, payment_intent=pi,
                                          hold_until=hold)
        if won is None:
            return
        await u.payments.free_open_slot(c.user_id)
        assert self.shares is not None and c.master_id is not None
        session_id = won.session_id or s.id
        await self.shares.mark_sold(u, c.id)
        job = await self.shares.allocate_from_treasury(
            u, master_id=c.master_id, user_id=c.user_id, token_ids=list(won.token_ids), count=len(won.token_ids),
            op_key=TRANSFER_PREFIX + session_id, hold_until=hold)
        await u.payments.update_checkout(c.id, now, transfer_job_id=job.id)
        master = await u.masters.get(c.master_id) if hasattr(u, "masters") else None
        u.emit(self._event("payment.succeeded", {
            "masterId": c.master_id, "userId": c.user_id, "amount": amount,
            "currency": (s.currency or c.amount.currency), "quantity": c.quantity, "checkoutId": session_id,
            "tokenIds": list(won.token_ids), "title": getattr(master, "title", None), "kind": "shares"}))

    async def _subscription_started(self, u: Any, c: Checkout, s: GatewaySession, paid: bool) -> None:
        now = self._clock.now()
        if s.customer_id:
            await u.payments.add_customer(c.user_id, s.customer_id, now)
        if s.subscription_id:
            await self._schedule(u, SYNC_SUBSCRIPTION, f"sub:{s.subscription_id}",
                                 {"subscriptionId": s.subscription_id, "userId": c.user_id})
        if not paid:
            await u.payments.transition(c.id, (CheckoutStatus.CREATING, CheckoutStatus.OPEN),
                                        CheckoutStatus.PROCESSING, now)
            return
        won = await u.payments.transition(c.id, OPEN_STATUSES, CheckoutStatus.PAID, now)
        if won is None:
            return
        await u.payments.free_open_slot(c.user_id)
        u.emit(self._event("payment.succeeded", {
            "userId": c.user_id, "amount": s.amount_total if s.amount_total is not None else c.amount.amount,
            "currency": s.currency or c.amount.currency, "checkoutId": won.session_id or s.id, "plan": c.plan,
            "kind": "subscription"}))

    async def _refund_later(self, u: Any, payment_intent: str, checkout_id: str) -> None:
        await self._schedule(u, REFUND, f"refund:{payment_intent}",
                             {"paymentIntent": payment_intent, "checkoutId": checkout_id})

    async def _unfulfillable(self, event: GatewayEvent, err: AudifiError) -> None:
        """Paid but the shares cannot be delivered (should not happen: they were reserved): record
        the event, end the checkout and refund the payment (a task)."""
        s = parse_session(event.object)
        log.error("checkout_unfulfillable", session_id=s.id, error=err.message)
        async with self._uow() as u:
            if not await u.payments.record_event(event.id, event.type, self._clock.now()):  # type: ignore[attr-defined]
                return
            c = await self._checkout_of(u, s)
            if c is None:
                return
            if await self.end(u, c, CheckoutStatus.UNFULFILLABLE) and s.payment_intent:
                await self._refund_later(u, s.payment_intent, c.id)

    # ================================================================== refunds, disputes
    async def reverse(self, u: Any, payment_intent: str, reason: Reversal) -> None:
        """A refund, dispute or early fraud warning: within the hold period the shares go back."""
        now = self._clock.now()
        await u.payments.lock_payment(payment_intent)
        await u.payments.record_reversal(payment_intent, reason, now)
        c = await u.payments.checkout_by_payment(payment_intent)
        if c is None or c.kind is not CheckoutKind.SHARES:
            return
        if reason is Reversal.FRAUD_WARNING and c.status is CheckoutStatus.PAID:
            await self._refund_later(u, payment_intent, c.id)  # refunding beats the dispute that follows
        c = await u.payments.mark_reversed(c.id, reason, now)
        if c is None:
            return
        if c.hold_until is not None and now >= c.hold_until:
            log.warning("reversal_after_hold", checkout_id=c.id, reason=reason.value)
            await u.payments.mark_settled(c.id)
            return
        await self._return_shares(u, c, None)

    async def _return_shares(self, u: Any, c: Checkout, transfer: ChainJob | None) -> ChainJob | None:
        """Queue the transfer of the checkout's ids from the custodial address back to the treasury,
        once the transfer that brought them there is confirmed (its hook calls this again)."""
        if c.return_job_id is not None or self._jobs is None or self.shares is None:
            return None
        if transfer is None and c.transfer_job_id:
            transfer = await u.chain_jobs.get(c.transfer_job_id)
        if transfer is None or transfer.status is not JobStatus.CONFIRMED:
            return None
        assert isinstance(transfer.call, TransferShares)
        user = await u.users.get(c.user_id)
        custodial = self.shares.custodial_address(user.index)
        job = await self._jobs.enqueue(u, JobKind.TRANSFER, RETURN_PREFIX + (c.session_id or c.id), c.user_id,
                                       TransferShares(transfer.call.shares, custodial, self.shares.treasury,
                                                      c.token_ids, custody_signer(user.index)))
        await u.payments.update_checkout(c.id, self._clock.now(), return_job_id=job.id)
        log.info("shares_returned", checkout_id=c.id, job_id=job.id, reason=c.reversal)
        return job

    # ================================================================== chain job hooks
    def install_hooks(self) -> None:
        if self._jobs is not None:
            self._jobs.on_confirmed(JobKind.TRANSFER, self._transfer_confirmed)

    async def _transfer_confirmed(self, uow: UnitOfWork, job: ChainJob) -> None:
        u: Any = uow
        if job.op_key.startswith(TRANSFER_PREFIX):
            c = await u.payments.checkout_by_session(job.op_key[len(TRANSFER_PREFIX):])
            if c is None:
                return
            if c.reversal is not None and c.return_job_id is None:
                await self._return_shares(u, c, job)
            elif c.reversal is None:
                await u.payments.mark_settled(c.id)
        elif job.op_key.startswith(RETURN_PREFIX):
            c = await u.payments.checkout_by_session(job.op_key[len(RETURN_PREFIX):])
            if c is None or c.returned_at is not None:
                return
            await u.payments.update_checkout(c.id, self._clock.now(), returned_at=self._clock.now())
            await u.payments.mark_settled(c.id)
            if c.master_id:
                await u.payments.give_back_shares(c.user_id, c.master_id, c.quantity)
