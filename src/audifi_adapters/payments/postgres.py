"""PostgreSQL repository of the payments context (``0006_payments.sql``), as ``uow.payments``.

Every "once" and every limit is one statement: event ids and reversals a primary key with
``ON CONFLICT DO NOTHING`` (a racing duplicate waits for the first transaction, then does
nothing), checkout transitions ``UPDATE … WHERE status = ANY(…)``, counters ``UPDATE … WHERE n + k
<= limit``, subscriptions ``UPDATE … WHERE ticket < new``, tasks claimed ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from audifi_core.errors import Conflict
from audifi_core.payments.model import (
    Checkout,
    CheckoutKind,
    CheckoutStatus,
    Money,
    Reversal,
    Subscription,
    Task,
)

from ..postgres.db import PostgresUnitOfWork

__all__ = ["PostgresPaymentsRepository", "register_postgres_payments_repository"]

_FIELDS = ("session_id", "url", "expires_at", "master_id", "quantity", "token_ids", "plan", "payment_intent",
           "transfer_job_id", "hold_until", "reversal", "reversed_at", "return_job_id", "returned_at", "settled")
_LOCK_NS = 0x5041_594D  # "PAYM": advisory lock namespace of payments


def _checkout(r: asyncpg.Record) -> Checkout:
    return Checkout(
        id=r["id"], user_id=r["user_id"], kind=CheckoutKind(r["kind"]), status=CheckoutStatus(r["status"]),
        amount=Money(r["amount"], r["currency"]), created_at=r["created_at"], updated_at=r["updated_at"],
        session_id=r["session_id"], url=r["url"], expires_at=r["expires_at"], master_id=r["master_id"],
        quantity=r["quantity"], token_ids=tuple(r["token_ids"] or ()), plan=r["plan"],
        payment_intent=r["payment_intent"], transfer_job_id=r["transfer_job_id"], hold_until=r["hold_until"],
        reversal=Reversal(r["reversal"]) if r["reversal"] else None, reversed_at=r["reversed_at"],
        return_job_id=r["return_job_id"], returned_at=r["returned_at"], settled=r["settled"])


def _subscription(r: asyncpg.Record) -> Subscription:
    return Subscription(id=r["id"], user_id=r["user_id"], customer_id=r["customer_id"], status=r["status"],
                        plan=r["plan"], price_id=r["price_id"], current_period_end=r["current_period_end"],
                        cancel_at_period_end=r["cancel_at_period_end"], updated_at=r["updated_at"],
                        ticket=r["ticket"])


def _value(name: str, v: Any) -> Any:
    if name == "token_ids":
        return list(v)
    if name == "reversal" and v is not None:
        return Reversal(v).value
    return v


class PostgresPaymentsRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    # -- customers
    async def customer_of(self, user_id: str) -> str | None:
        return await self._c.fetchval("SELECT customer_id FROM payment_customers WHERE user_id = $1", user_id)

    async def add_customer(self, user_id: str, customer_id: str, at: datetime) -> str:
        await self._c.execute(
            "INSERT INTO payment_customers (user_id, customer_id, created_at) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING", user_id, customer_id, at)
        return await self._c.fetchval("SELECT customer_id FROM payment_customers WHERE user_id = $1", user_id)

    async def user_of_customer(self, customer_id: str) -> str | None:
        return await self._c.fetchval("SELECT user_id FROM payment_customers WHERE customer_id = $1", customer_id)

    # -- checkouts
    async def add_checkout(self, c: Checkout) -> None:
        try:
            await self._c.execute(
                "INSERT INTO payment_checkouts (id, user_id, kind, status, amount, currency, session_id, url, "
                "expires_at, master_id, quantity, token_ids, plan, payment_intent, transfer_job_id, hold_until, "
                "reversal, reversed_at, return_job_id, returned_at, settled, created_at, updated_at) VALUES "
                "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23)",
                c.id, c.user_id, c.kind.value, c.status.value, c.amount.amount, c.amount.currency, c.session_id,
                c.url, c.expires_at, c.master_id, c.quantity, list(c.token_ids), c.plan, c.payment_intent,
                c.transfer_job_id, c.hold_until, c.reversal.value if c.reversal else None, c.reversed_at,
                c.return_job_id, c.returned_at, c.settled, c.created_at, c.updated_at)
        except asyncpg.UniqueViolationError as e:
            raise Conflict("Checkout exists already", details={"checkoutId": c.id}) from e

    async def get_checkout(self, checkout_id: str) -> Checkout | None:
        r = await self._c.fetchrow("SELECT * FROM payment_checkouts WHERE id = $1", checkout_id)
        return _checkout(r) if r else None

    async def checkout_by_session(self, session_id: str) -> Checkout | None:
        r = await self._c.fetchrow("SELECT * FROM payment_checkouts WHERE session_id = $1", session_id)
        return _checkout(r) if r else None

    async def checkout_by_payment(self, payment_intent: str) -> Checkout | None:
        r = await self._c.fetchrow("SELECT * FROM payment_checkouts WHERE payment_intent = $1 "
                                   "ORDER BY created_at LIMIT 1", payment_intent)
        return _checkout(r) if r else None

    def _sets(self, changes: dict[str, Any], start: int) -> tuple[str, list[Any]]:
        parts, args = [], []
        for i, (name, v) in enumerate(changes.items()):
            if name not in _FIELDS:
                raise ValueError(f"not a checkout field: {name}")
            parts.append(f"{name} = ${start + i}")
            args.append(_value(name, v))
        return "".join(", " + p for p in parts), args

    async def transition(self, checkout_id: str, from_statuses: Iterable[CheckoutStatus], to: CheckoutStatus,
                         at: datetime, **changes: Any) -> Checkout | None:
        sets, args = self._sets(changes, 5)
        r = await self._c.fetchrow(
            f"UPDATE payment_checkouts SET status = $3, updated_at = $4{sets} "
            "WHERE id = $1 AND status = ANY($2::text[]) RETURNING *",
            checkout_id, [s.value for s in from_statuses], to.value, at, *args)
        return _checkout(r) if r else None

    async def update_checkout(self, checkout_id: str, at: datetime, **changes: Any) -> Checkout | None:
        sets, args = self._sets(changes, 3)
        r = await self._c.fetchrow(f"UPDATE payment_checkouts SET updated_at = $2{sets} WHERE id = $1 RETURNING *",
                                   checkout_id, at, *args)
        return _checkout(r) if r else None

    async def mark_reversed(self, checkout_id: str, reason: Reversal, at: datetime) -> Checkout | None:
        r = await self._c.fetchrow(
            "UPDATE payment_checkouts SET reversal = $2, reversed_at = $3, settled = false, updated_at = $3 "
            "WHERE id = $1 AND status = 'paid' AND reversal IS NULL RETURNING *", checkout_id, reason.value, at)
        return _checkout(r) if r else None

    async def open_checkouts(self, user_id: str, kind: str | None = None) -> list[Checkout]:
        rows = await self._c.fetch(
            "SELECT * FROM payment_checkouts WHERE user_id = $1 AND status IN ('creating', 'open', 'processing') "
            "AND ($2::text IS NULL OR kind = $2) ORDER BY created_at", user_id, kind)
        return [_checkout(r) for r in rows]

    async def stale_open(self, before: datetime, limit: int) -> list[Checkout]:
        rows = await self._c.fetch(
            "SELECT * FROM payment_checkouts WHERE status IN ('open', 'processing') AND expires_at < $1 "
            "ORDER BY expires_at LIMIT $2", before, limit)
        return [_checkout(r) for r in rows]

    async def creating_before(self, before: datetime, limit: int) -> list[Checkout]:
        rows = await self._c.fetch(
            "SELECT * FROM payment_checkouts WHERE status = 'creating' AND created_at < $1 ORDER BY created_at "
            "LIMIT $2", before, limit)
        return [_checkout(r) for r in rows]

    async def paid_shares(self, limit: int, after: str | None = None) -> list[Checkout]:
        rows = await self._c.fetch(
            "SELECT * FROM payment_checkouts WHERE status = 'paid' AND kind = 'shares' AND NOT settled "
            "AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $1", limit, after)
        return [_checkout(r) for r in rows]

    async def returning(self, user_id: str, master_id: str) -> list[Checkout]:
        rows = await self._c.fetch(
            "SELECT * FROM payment_checkouts WHERE user_id = $1 AND master_id = $2 AND status = 'paid' "
            "AND reversal IS NOT NULL AND returned_at IS NULL AND (hold_until IS NULL OR reversed_at < hold_until)",
            user_id, master_id)
        return [_checkout(r) for r in rows]

    async def mark_settled(self, checkout_id: str) -> None:
        await self._c.execute("UPDATE payment_checkouts SET settled = true WHERE id = $1", checkout_id)

    # -- limits
    async def take_open_slot(self, user_id: str, limit: int) -> bool:
        await self._c.execute("INSERT INTO payment_open_slots (user_id, open) VALUES ($1, 0) ON CONFLICT DO NOTHING",
                              user_id)
        r = await self._c.fetchval("UPDATE payment_open_slots SET open = open + 1 WHERE user_id = $1 AND open < $2 "
                                   "RETURNING open", user_id, limit)
        return r is not None

    async def free_open_slot(self, user_id: str) -> None:
        await self._c.execute("UPDATE payment_open_slots SET open = open - 1 WHERE user_id = $1 AND open > 0",
                              user_id)

    async def take_shares(self, user_id: str, master_id: str, count: int, limit: int) -> bool:
        await self._c.execute("INSERT INTO payment_user_shares (user_id, master_id, shares) VALUES ($1, $2, 0) "
                              "ON CONFLICT DO NOTHING", user_id, master_id)
        r = await self._c.fetchval(
            "UPDATE payment_user_shares SET shares = shares + $3 WHERE user_id = $1 AND master_id = $2 "
            "AND shares + $3 <= $4 RETURNING shares", user_id, master_id, count, limit)
        return r is not None

    async def give_back_shares(self, user_id: str, master_id: str, count: int) -> None:
        await self._c.execute("UPDATE payment_user_shares SET shares = GREATEST(shares - $3, 0) "
                              "WHERE user_id = $1 AND master_id = $2", user_id, master_id, count)

    # -- events and reversals
    async def record_event(self, event_id: str, type_: str, at: datetime) -> bool:
        r = await self._c.fetchval("INSERT INTO payment_events (event_id, type, received_at) VALUES ($1, $2, $3) "
                                   "ON CONFLICT DO NOTHING RETURNING event_id", event_id, type_, at)
        return r is not None

    async def lock_payment(self, payment_intent: str) -> None:
        await self._c.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_NS,
                              zlib.crc32(payment_intent.encode()) - 2**31)

    async def record_reversal(self, payment_intent: str, reason: Reversal, at: datetime) -> bool:
        r = await self._c.fetchval("INSERT INTO payment_reversals (payment_intent, reason, at) VALUES ($1, $2, $3) "
                                   "ON CONFLICT DO NOTHING RETURNING payment_intent", payment_intent, reason.value, at)
        return r is not None

    async def reversal_of(self, payment_intent: str) -> Reversal | None:
        v = await self._c.fetchval("SELECT reason FROM payment_reversals WHERE payment_intent = $1", payment_intent)
        return Reversal(v) if v else None

    # -- subscriptions
    async def next_ticket(self) -> int:
        return await self._c.fetchval("SELECT nextval('payment_sync_tickets')")

    async def put_subscription(self, s: Subscription) -> bool:
        r = await self._c.fetchval(
            "INSERT INTO payment_subscriptions (id, user_id, customer_id, status, plan, price_id, current_period_end, "
            "cancel_at_period_end, ticket, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) "
            "ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, customer_id = EXCLUDED.customer_id, "
            "status = EXCLUDED.status, plan = EXCLUDED.plan, price_id = EXCLUDED.price_id, "
            "current_period_end = EXCLUDED.current_period_end, cancel_at_period_end = EXCLUDED.cancel_at_period_end, "
            "ticket = EXCLUDED.ticket, updated_at = EXCLUDED.updated_at "
            "WHERE payment_subscriptions.ticket < EXCLUDED.ticket RETURNING id",
            s.id, s.user_id, s.customer_id, s.status, s.plan, s.price_id, s.current_period_end,
            s.cancel_at_period_end, s.ticket, s.updated_at)
        return r is not None

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        r = await self._c.fetchrow("SELECT * FROM payment_subscriptions WHERE id = $1", subscription_id)
        return _subscription(r) if r else None

    async def subscriptions_of(self, user_id: str) -> list[Subscription]:
        rows = await self._c.fetch("SELECT * FROM payment_subscriptions WHERE user_id = $1", user_id)
        return [_subscription(r) for r in rows]

    # -- tasks
    async def schedule(self, key: str, kind: str, payload: dict[str, Any], due_at: datetime) -> None:
        await self._c.execute(
            "INSERT INTO payment_tasks (key, kind, payload, due_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (key) DO UPDATE SET gen = payment_tasks.gen + 1, "
            "payload = payment_tasks.payload || EXCLUDED.payload, due_at = LEAST(payment_tasks.due_at, $4)",
            key, kind, payload, due_at)

    async def claim_tasks(self, now: datetime, lease_seconds: int, limit: int) -> list[Task]:
        rows = await self._c.fetch(
            "UPDATE payment_tasks SET leased_until = $2, attempts = attempts + 1 WHERE key IN ("
            " SELECT key FROM payment_tasks WHERE due_at <= $1 AND (leased_until IS NULL OR leased_until <= $1)"
            " ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING *",
            now, now + timedelta(seconds=lease_seconds), limit)
        return [Task(key=r["key"], kind=r["kind"], payload=r["payload"], due_at=r["due_at"], attempts=r["attempts"],
                     gen=r["gen"]) for r in rows]

    async def finish_task(self, task: Task) -> None:
        deleted = await self._c.fetchval("DELETE FROM payment_tasks WHERE key = $1 AND gen = $2 RETURNING key",
                                         task.key, task.gen)
        if deleted is None:
            await self._c.execute("UPDATE payment_tasks SET leased_until = NULL, attempts = 0 WHERE key = $1",
                                  task.key)

    async def retry_task(self, task: Task, due_at: datetime, error: str) -> None:
        await self._c.execute("UPDATE payment_tasks SET due_at = $2, leased_until = NULL, last_error = $3 "
                              "WHERE key = $1", task.key, due_at, error)

    async def pending_tasks(self) -> int:
        return await self._c.fetchval("SELECT count(*) FROM payment_tasks")


def register_postgres_payments_repository() -> None:
    PostgresUnitOfWork.register("payments", PostgresPaymentsRepository)
