"""The durable tasks (gateway calls queued by webhooks) and the reconciler that finishes what events
and chain jobs left undone. A mixin of :class:`~.settlement.Settlement`, whose state and settling
rules it uses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import structlog

from audifi_core.chain.model import ChainJob, JobStatus
from audifi_core.errors import AudifiError

from .model import Checkout, CheckoutStatus, GatewaySession, Subscription
from .settings import TRANSFER_PREFIX

__all__ = ["Reconciliation", "SYNC_SUBSCRIPTION", "REFUND"]

log = structlog.get_logger("audifi.payments")

SYNC_SUBSCRIPTION = "sync_subscription"
REFUND = "refund"


class Reconciliation:
    _uow: Any
    _clock: Any
    _jobs: Any
    gateway: Any
    shares: Any
    settings: Any

    # ================================================================== durable tasks
    async def run_tasks(self, limit: int | None = None) -> int:
        """Run the due tasks once; failures are retried later with back-off. How many ran."""
        async with self._uow() as u:
            tasks = await u.payments.claim_tasks(self._clock.now(), self.settings.task_lease,  # type: ignore[attr-defined]
                                                 limit or self.settings.task_batch)
        for task in tasks:
            try:
                if task.kind == SYNC_SUBSCRIPTION:
                    await self.sync_subscription(task.payload["subscriptionId"], task.payload.get("userId"))
                elif task.kind == REFUND:
                    try:
                        await self.gateway.refund(task.payload["paymentIntent"],
                                                  f"refund:{task.payload['checkoutId']}")
                    except AudifiError as e:
                        if e.details.get("code") != "charge_already_refunded":
                            raise
                else:
                    log.warning("task_unknown", kind=task.kind)
            except Exception as e:  # noqa: BLE001 - retried with back-off; the task is durable
                delay = min(2 ** min(task.attempts, 8), 300)
                log.warning("task_failed", key=task.key, attempt=task.attempts, error=repr(e))
                async with self._uow() as u:
                    await u.payments.retry_task(task, self._clock.now() + timedelta(seconds=delay),  # type: ignore[attr-defined]
                                                repr(e)[:500])
                continue
            async with self._uow() as u:
                await u.payments.finish_task(task)  # type: ignore[attr-defined]
        return len(tasks)

    async def sync_subscription(self, subscription_id: str, user_hint: str | None = None) -> Subscription | None:
        """Fetch the subscription from the gateway and store what it says (newest fetch wins)."""
        async with self._uow() as u:
            ticket = await u.payments.next_ticket()  # type: ignore[attr-defined]
        g = await self.gateway.retrieve_subscription(subscription_id)
        now = self._clock.now()
        async with self._uow() as u:
            known = await u.payments.get_subscription(subscription_id)  # type: ignore[attr-defined]
            if g is None:
                if known is None:
                    return None
                sub = attrs.evolve(known, status="canceled", updated_at=now, ticket=ticket)
            else:
                user_id = (g.metadata.get("userId") or user_hint or (known.user_id if known else None)
                           or await u.payments.user_of_customer(g.customer_id))  # type: ignore[attr-defined]
                if user_id is None:
                    log.warning("subscription_without_user", subscription_id=subscription_id)
                    return None
                sub = Subscription(id=g.id, user_id=user_id, customer_id=g.customer_id, status=g.status,
                                   plan=self.settings.plan_of_price(g.price_id) or g.metadata.get("plan"),
                                   price_id=g.price_id, current_period_end=g.current_period_end,
                                   cancel_at_period_end=g.cancel_at_period_end, updated_at=now, ticket=ticket)
            await u.payments.put_subscription(sub)  # type: ignore[attr-defined]
        return sub

    # ================================================================== reconciler
    async def reconcile(self) -> dict[str, int]:
        """Finish what events and jobs left undone: paid but not transferred (a failed transfer is
        queued again under its key, never doubled), transferred but reversed (returned), checkouts
        whose gateway events never came (asked from the gateway), and checkouts stuck ``creating``."""
        out = {"transfers_retried": 0, "transfers_queued": 0, "returns_queued": 0, "returns_retried": 0,
               "settled": 0, "sessions_checked": 0, "creating_finished": 0}
        if self.shares is not None and self._jobs is not None:
            after: str | None = None
            while True:
                async with self._uow(readonly=True) as u:
                    batch = await u.payments.paid_shares(self.settings.reconcile_batch, after)  # type: ignore[attr-defined]
                for c in batch:
                    key = await self._reconcile_paid(c.id)
                    if key:
                        out[key] += 1
                if len(batch) < self.settings.reconcile_batch:
                    break
                after = batch[-1].id
        now = self._clock.now()
        async with self._uow(readonly=True) as u:
            stale = await u.payments.stale_open(now - timedelta(seconds=self.settings.expiry_grace),  # type: ignore[attr-defined]
                                                self.settings.reconcile_batch)
            creating = await u.payments.creating_before(now - timedelta(seconds=self.settings.creating_grace),  # type: ignore[attr-defined]
                                                        self.settings.reconcile_batch)
        for c in stale:
            if c.session_id is None:
                continue
            try:
                s = await self.gateway.retrieve_checkout(c.session_id)
            except AudifiError as e:
                log.warning("reconcile_session_failed", checkout_id=c.id, error=e.message)
                continue
            out["sessions_checked"] += 1
            await self.apply_session(s)
        for c in creating:
            if await self._finish_creating(c):
                out["creating_finished"] += 1
        return out

    async def apply_session(self, s: GatewaySession) -> None:
        """What the gateway says of a session now (the reconciler's view, same rules as the events)."""
        if s.status == "expired":
            t = "checkout.session.expired"
        elif s.status == "complete":
            t = "checkout.session.completed"
        else:
            return
        async with self._uow() as u:
            await self._on_session(u, t, s)

    async def _reconcile_paid(self, checkout_id: str) -> str | None:
        assert self._jobs is not None and self.shares is not None
        async with self._uow() as u:
            c = await u.payments.get_checkout(checkout_id)  # type: ignore[attr-defined]
            if c is None or c.status is not CheckoutStatus.PAID or c.master_id is None:
                return None
            # locked: another instance's reconciler or the job runner may be looking at it right now
            transfer = await u.chain_jobs.lock(c.transfer_job_id) if c.transfer_job_id else None  # type: ignore[attr-defined]
            if transfer is None:
                if c.reversal is not None:
                    await u.payments.mark_settled(c.id)  # type: ignore[attr-defined]
                    return "settled"
                job = await self.shares.allocate_from_treasury(
                    u, master_id=c.master_id, user_id=c.user_id, token_ids=list(c.token_ids),
                    count=len(c.token_ids), op_key=TRANSFER_PREFIX + (c.session_id or c.id), hold_until=c.hold_until)
                await u.payments.update_checkout(c.id, self._clock.now(), transfer_job_id=job.id)  # type: ignore[attr-defined]
                return "transfers_queued"
            if transfer.status is JobStatus.FAILED:
                if c.reversal is not None:  # the shares never left the treasury: nothing to return
                    await u.payments.mark_settled(c.id)  # type: ignore[attr-defined]
                    return "settled"
                await self._requeue(u, transfer)
                return "transfers_retried"
            if transfer.status is not JobStatus.CONFIRMED:
                return None
            if c.reversal is None:
                await u.payments.mark_settled(c.id)  # type: ignore[attr-defined]
                return "settled"
            if c.return_job_id is None:
                return "returns_queued" if await self._return_shares(u, c, transfer) else None
            ret = await u.chain_jobs.lock(c.return_job_id)  # type: ignore[attr-defined]
            if ret is not None and ret.status is JobStatus.FAILED:
                await self._requeue(u, ret)
                return "returns_retried"
        return None

    async def _requeue(self, u: Any, job: ChainJob) -> None:
        """A failed job never broadcast its effect (or it reverted): run it again under the same key."""
        await u.chain_jobs.update(attrs.evolve(job, status=JobStatus.QUEUED, error=None, attempts=job.attempts + 1,
                                               updated_at=self._clock.now()))
        await u.chain_jobs.notify()
        log.info("job_requeued", job_id=job.id, op_key=job.op_key)

    async def _finish_creating(self, c: Checkout) -> bool:
        """Implemented by the service (it knows how the session was asked for)."""
        raise NotImplementedError
