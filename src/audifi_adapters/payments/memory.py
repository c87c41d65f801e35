"""In-memory repository of the payments context (``uow.payments``), the dev-mode default.

A writing unit of work holds the database's write lock from begin to commit, so each conditional
write here is atomic; every write goes through ``undo`` so a rollback restores it. Sequences (the
subscription ticket) are never rolled back, like PostgreSQL's.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import attrs

from audifi_core.errors import Conflict
from audifi_core.payments.model import (
    OPEN_STATUSES,
    Checkout,
    CheckoutStatus,
    Reversal,
    Subscription,
    Task,
)

from ..memory.store import InMemoryDatabase, InMemoryUnitOfWork, Undo

__all__ = ["InMemoryPaymentsRepository", "register_memory_payments_repository"]

_FIELDS = {a.name for a in attrs.fields(Checkout)} - {"id", "user_id", "kind", "status", "amount", "created_at",
                                                     "updated_at"}


class InMemoryPaymentsRepository:
    def __init__(self, db: InMemoryDatabase, undo: Undo, readonly: bool):
        self._db = db
        self._undo = undo
        self._ro = readonly
        self._customers = db.table("payments.customers")        # user id → customer id
        self._checkouts = db.table("payments.checkouts")        # id → Checkout
        self._sessions = db.table("payments.sessions")          # session id → checkout id
        self._slots = db.table("payments.open_slots")           # user id → n
        self._shares = db.table("payments.user_shares")         # (user, master) → n
        self._events = db.table("payments.events")              # event id → (type, at)
        self._reversals = db.table("payments.reversals")        # payment intent → (reason, at)
        self._subs = db.table("payments.subscriptions")         # id → Subscription
        self._tasks = db.table("payments.tasks")                # key → (Task, leased_until)
        self._seq = db.table("payments.sequences")

    def _w(self) -> None:
        if self._ro:
            raise RuntimeError("read-only unit of work")

    # -- customers
    async def customer_of(self, user_id: str) -> str | None:
        return self._customers.get(user_id)

    async def add_customer(self, user_id: str, customer_id: str, at: datetime) -> str:
        self._w()
        if user_id not in self._customers and customer_id not in self._customers.values():
            self._undo.set(self._customers, user_id, customer_id)
        return self._customers.get(user_id, customer_id)

    async def user_of_customer(self, customer_id: str) -> str | None:
        return next((u for u, c in self._customers.items() if c == customer_id), None)

    # -- checkouts
    def _put(self, c: Checkout) -> Checkout:
        old = self._checkouts.get(c.id)
        if c.session_id and (old is None or old.session_id != c.session_id):
            other = self._sessions.get(c.session_id)
            if other is not None and other != c.id:
                raise Conflict("Session belongs to another checkout", details={"sessionId": c.session_id})
            self._undo.set(self._sessions, c.session_id, c.id)
        self._undo.set(self._checkouts, c.id, c)
        return c

    async def add_checkout(self, c: Checkout) -> None:
        self._w()
        if c.id in self._checkouts:
            raise Conflict("Checkout exists already", details={"checkoutId": c.id})
        self._put(c)

    async def get_checkout(self, checkout_id: str) -> Checkout | None:
        return self._checkouts.get(checkout_id)

    async def checkout_by_session(self, session_id: str) -> Checkout | None:
        cid = self._sessions.get(session_id)
        return self._checkouts.get(cid) if cid else None

    async def checkout_by_payment(self, payment_intent: str) -> Checkout | None:
        found = [c for c in self._checkouts.values() if c.payment_intent == payment_intent]
        return min(found, key=lambda c: c.created_at) if found else None

    @staticmethod
    def _check(changes: dict[str, Any]) -> dict[str, Any]:
        bad = set(changes) - _FIELDS
        if bad:
            raise ValueError(f"not checkout fields: {sorted(bad)}")
        out = dict(changes)
        if "reversal" in out and out["reversal"] is not None:
            out["reversal"] = Reversal(out["reversal"])
        return out

    async def transition(self, checkout_id: str, from_statuses: Iterable[CheckoutStatus], to: CheckoutStatus,
                         at: datetime, **changes: Any) -> Checkout | None:
        self._w()
        c = self._checkouts.get(checkout_id)
        if c is None or c.status not in set(from_statuses):
            return None
        return self._put(attrs.evolve(c, status=to, updated_at=at, **self._check(changes)))

    async def update_checkout(self, checkout_id: str, at: datetime, **changes: Any) -> Checkout | None:
        self._w()
        c = self._checkouts.get(checkout_id)
        if c is None:
            return None
        return self._put(attrs.evolve(c, updated_at=at, **self._check(changes)))

    async def mark_reversed(self, checkout_id: str, reason: Reversal, at: datetime) -> Checkout | None:
        self._w()
        c = self._checkouts.get(checkout_id)
        if c is None or c.status is not CheckoutStatus.PAID or c.reversal is not None:
            return None
        return self._put(attrs.evolve(c, reversal=reason, reversed_at=at, settled=False, updated_at=at))

    async def open_checkouts(self, user_id: str, kind: str | None = None) -> list[Checkout]:
        return sorted((c for c in self._checkouts.values() if c.user_id == user_id and c.status in OPEN_STATUSES
                       and (kind is None or c.kind.value == kind)), key=lambda c: c.created_at)

    async def stale_open(self, before: datetime, limit: int) -> list[Checkout]:
        rows = [c for c in self._checkouts.values() if c.status in (CheckoutStatus.OPEN, CheckoutStatus.PROCESSING)
                and c.expires_at is not None and c.expires_at < before]
        return sorted(rows, key=lambda c: c.expires_at)[:limit]  # type: ignore[arg-type, return-value]

    async def creating_before(self, before: datetime, limit: int) -> list[Checkout]:
        rows = [c for c in self._checkouts.values() if c.status is CheckoutStatus.CREATING and c.created_at < before]
        return sorted(rows, key=lambda c: c.created_at)[:limit]

    async def paid_shares(self, limit: int, after: str | None = None) -> list[Checkout]:
        rows = [c for c in self._checkouts.values() if c.status is CheckoutStatus.PAID and c.kind.value == "shares"
                and not c.settled and (after is None or c.id > after)]
        return sorted(rows, key=lambda c: c.id)[:limit]

    async def returning(self, user_id: str, master_id: str) -> list[Checkout]:
        return [c for c in self._checkouts.values() if c.user_id == user_id and c.master_id == master_id
                and c.status is CheckoutStatus.PAID and c.reversal is not None and c.returned_at is None
                and c.reversed_at is not None and (c.hold_until is None or c.reversed_at < c.hold_until)]

    async def mark_settled(self, checkout_id: str) -> None:
        self._w()
        c = self._checkouts.get(checkout_id)
        if c is not None and not c.settled:
            self._put(attrs.evolve(c, settled=True))

    # -- limits
    async def take_open_slot(self, user_id: str, limit: int) -> bool:
        self._w()
        n = self._slots.get(user_id, 0)
        if n >= limit:
            return False
        self._undo.set(self._slots, user_id, n + 1)
        return True

    async def free_open_slot(self, user_id: str) -> None:
        self._w()
        n = self._slots.get(user_id, 0)
        if n > 0:
            self._undo.set(self._slots, user_id, n - 1)

    async def take_shares(self, user_id: str, master_id: str, count: int, limit: int) -> bool:
        self._w()
        n = self._shares.get((user_id, master_id), 0)
        if n + count > limit:
            return False
        self._undo.set(self._shares, (user_id, master_id), n + count)
        return True

    async def give_back_shares(self, user_id: str, master_id: str, count: int) -> None:
        self._w()
        n = self._shares.get((user_id, master_id))
        if n is not None:
            self._undo.set(self._shares, (user_id, master_id), max(0, n - count))

    # -- events and reversals
    async def record_event(self, event_id: str, type_: str, at: datetime) -> bool:
        self._w()
        if event_id in self._events:
            return False
        self._undo.set(self._events, event_id, (type_, at))
        return True

    async def lock_payment(self, payment_intent: str) -> None:
        self._w()  # the unit of work's write lock serialises already

    async def record_reversal(self, payment_intent: str, reason: Reversal, at: datetime) -> bool:
        self._w()
        if payment_intent in self._reversals:
            return False
        self._undo.set(self._reversals, payment_intent, (reason, at))
        return True

    async def reversal_of(self, payment_intent: str) -> Reversal | None:
        got = self._reversals.get(payment_intent)
        return got[0] if got else None

    # -- subscriptions
    async def next_ticket(self) -> int:
        n = self._seq.get("ticket", 0) + 1
        self._seq["ticket"] = n  # a sequence: never rolled back
        return n

    async def put_subscription(self, s: Subscription) -> bool:
        self._w()
        old = self._subs.get(s.id)
        if old is not None and old.ticket >= s.ticket:
            return False
        self._undo.set(self._subs, s.id, s)
        return True

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        return self._subs.get(subscription_id)

    async def subscriptions_of(self, user_id: str) -> list[Subscription]:
        return [s for s in self._subs.values() if s.user_id == user_id]

    # -- tasks
    async def schedule(self, key: str, kind: str, payload: dict[str, Any], due_at: datetime) -> None:
        self._w()
        got = self._tasks.get(key)
        if got is None:
            self._undo.set(self._tasks, key, (Task(key, kind, dict(payload), due_at), None))
            return
        t, leased = got
        self._undo.set(self._tasks, key, (attrs.evolve(t, gen=t.gen + 1, payload={**t.payload, **payload},
                                                       due_at=min(t.due_at, due_at)), leased))

    async def claim_tasks(self, now: datetime, lease_seconds: int, limit: int) -> list[Task]:
        self._w()
        due = sorted((t for t, leased in self._tasks.values()
                      if t.due_at <= now and (leased is None or leased <= now)), key=lambda t: t.due_at)[:limit]
        out = []
        for t in due:
            t = attrs.evolve(t, attempts=t.attempts + 1)
            self._undo.set(self._tasks, t.key, (t, now + timedelta(seconds=lease_seconds)))
            out.append(t)
        return out

    async def finish_task(self, task: Task) -> None:
        self._w()
        got = self._tasks.get(task.key)
        if got is None:
            return
        t, _ = got
        if t.gen == task.gen:
            self._undo.delete(self._tasks, task.key)
        else:
            self._undo.set(self._tasks, task.key, (attrs.evolve(t, attempts=0), None))

    async def retry_task(self, task: Task, due_at: datetime, error: str) -> None:
        self._w()
        got = self._tasks.get(task.key)
        if got is not None:
            self._undo.set(self._tasks, task.key, (attrs.evolve(got[0], due_at=due_at), None))

    async def pending_tasks(self) -> int:
        return len(self._tasks)


def register_memory_payments_repository() -> None:
    InMemoryUnitOfWork.register("payments", InMemoryPaymentsRepository)
