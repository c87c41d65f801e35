"""The PaymentsRepository contract, on the in-memory database and on PostgreSQL: each "once" and
each limit holds under concurrent units of work, and a rollback undoes every write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audifi_adapters.memory.store import InMemoryDatabase
from audifi_adapters.payments import (
    register_memory_payments_repository,
    register_postgres_payments_repository,
)
from audifi_adapters.postgres.db import PostgresDatabase
from audifi_core.payments.model import (
    Checkout,
    CheckoutKind,
    CheckoutStatus,
    Money,
    Reversal,
    Subscription,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def dsn(request: pytest.FixtureRequest) -> str | None:
    """The run's migrated database for the PostgreSQL variant (resolved from a sync fixture)."""
    if "postgres" not in request.node.name:
        return None
    return request.getfixturevalue("pg_dsn")


@pytest.fixture(params=["memory", "postgres"])
async def uow(request: pytest.FixtureRequest, dsn: str | None) -> AsyncIterator[Any]:
    register_memory_payments_repository()
    register_postgres_payments_repository()
    if request.param == "memory":
        yield InMemoryDatabase().uow
        return
    pg = await PostgresDatabase.connect(dsn, 12)
    async with pg.connection() as c:
        await c.execute("TRUNCATE payment_customers, payment_checkouts, payment_open_slots, payment_user_shares, "
                        "payment_events, payment_reversals, payment_subscriptions, payment_tasks")
    try:
        yield pg.uow
    finally:
        await pg.close()


def checkout(cid: str = "chk_1", *, user: str = "usr_1", status: CheckoutStatus = CheckoutStatus.OPEN,
             **kw: Any) -> Checkout:
    return Checkout(id=cid, user_id=user, kind=kw.pop("kind", CheckoutKind.SHARES), status=status,
                    amount=Money(1000, "usd"), created_at=kw.pop("created_at", T0), updated_at=T0,
                    master_id=kw.pop("master_id", "mst_1"), quantity=kw.pop("quantity", 2),
                    token_ids=kw.pop("token_ids", (3, 4)), **kw)


async def add(uow: Any, c: Checkout) -> None:
    async with uow() as u:
        await u.payments.add_checkout(c)


class Boom(Exception):
    pass


class TestEventsOnce:
    async def test_one_event_id_takes_effect_once_under_a_race(self, uow) -> None:
        """Ten units of work recording one event id at once: exactly one gets True."""
        async def once() -> bool:
            async with uow() as u:
                got = await u.payments.record_event("evt_1", "checkout.session.completed", T0)
                await asyncio.sleep(0.01)
                return got

        assert sorted(await asyncio.gather(*(once() for _ in range(10)))) == [False] * 9 + [True]

    async def test_a_rolled_back_event_can_be_taken_again(self, uow) -> None:
        """An event recorded in a unit of work that fails is not recorded."""
        with pytest.raises(Boom):
            async with uow() as u:
                assert await u.payments.record_event("evt_2", "x", T0)
                raise Boom
        async with uow() as u:
            assert await u.payments.record_event("evt_2", "x", T0)
            assert not await u.payments.record_event("evt_2", "x", T0)


class TestCheckouts:
    async def test_add_get_lookups_and_update(self, uow) -> None:
        """A checkout is found by id, session and payment intent; updates change only the named fields."""
        await add(uow, checkout(session_id=None))
        async with uow() as u:
            p = u.payments
            assert (await p.get_checkout("chk_1")).token_ids == (3, 4)
            c = await p.update_checkout("chk_1", T0, session_id="cs_1", url="https://x", payment_intent="pi_1",
                                        expires_at=T0 + timedelta(minutes=31))
            assert c.session_id == "cs_1" and c.status is CheckoutStatus.OPEN and c.quantity == 2
            assert (await p.checkout_by_session("cs_1")).id == "chk_1"
            assert (await p.checkout_by_payment("pi_1")).id == "chk_1"
            assert await p.checkout_by_session("cs_none") is None
            assert await p.update_checkout("chk_none", T0, url="x") is None
            with pytest.raises(ValueError):
                await p.update_checkout("chk_1", T0, status="paid")
        from audifi_core.errors import Conflict
        with pytest.raises(Conflict):
            await add(uow, checkout())

    async def test_one_transition_wins_a_race(self, uow) -> None:
        """paid and expired racing from open: exactly one happens."""
        await add(uow, checkout())

        async def move(to: CheckoutStatus) -> Checkout | None:
            async with uow() as u:
                got = await u.payments.transition("chk_1", (CheckoutStatus.OPEN, CheckoutStatus.PROCESSING), to, T0,
                                                  hold_until=T0 + timedelta(days=7))
                await asyncio.sleep(0.01)
                return got

        results = await asyncio.gather(*(move(s) for s in [CheckoutStatus.PAID, CheckoutStatus.EXPIRED] * 3))
        won = [r for r in results if r is not None]
        assert len(won) == 1
        async with uow(readonly=True) as u:
            assert (await u.payments.get_checkout("chk_1")).status is won[0].status

    async def test_reversal_once_and_only_when_paid(self, uow) -> None:
        """mark_reversed: not while open; once when paid; the first reason stays; it unsettles; the ids are
        "returning" until returned."""
        await add(uow, checkout(payment_intent="pi_9"))
        async with uow() as u:
            p = u.payments
            assert await p.mark_reversed("chk_1", Reversal.REFUND, T0) is None
            await p.transition("chk_1", (CheckoutStatus.OPEN,), CheckoutStatus.PAID, T0)
            await p.mark_settled("chk_1")
            c = await p.mark_reversed("chk_1", Reversal.DISPUTE, T0)
            assert c.reversal is Reversal.DISPUTE and not c.settled
            assert await p.mark_reversed("chk_1", Reversal.REFUND, T0) is None
            assert [c.id for c in await p.returning("usr_1", "mst_1")] == ["chk_1"]
            assert await p.returning("usr_1", "mst_2") == []
            await p.update_checkout("chk_1", T0, returned_at=T0)
            assert await p.returning("usr_1", "mst_1") == []
            assert await p.record_reversal("pi_9", Reversal.DISPUTE, T0)
            assert not await p.record_reversal("pi_9", Reversal.REFUND, T0)
            assert await p.reversal_of("pi_9") is Reversal.DISPUTE
            assert await p.reversal_of("pi_0") is None
            await p.lock_payment("pi_9")

    async def test_queries_of_the_reconciler(self, uow) -> None:
        """open, stale, creating and unsettled paid checkouts are listed as the reconciler needs."""
        await add(uow, checkout("chk_a", status=CheckoutStatus.CREATING, created_at=T0 - timedelta(hours=1)))
        await add(uow, checkout("chk_b", expires_at=T0 - timedelta(minutes=20), session_id="cs_b"))
        await add(uow, checkout("chk_c", status=CheckoutStatus.PAID, session_id="cs_c"))
        await add(uow, checkout("chk_d", status=CheckoutStatus.PAID, session_id="cs_d", settled=True))
        await add(uow, checkout("chk_e", user="usr_2", kind=CheckoutKind.SUBSCRIPTION, master_id=None,
                                token_ids=(), plan="fan_monthly"))
        async with uow(readonly=True) as u:
            p = u.payments
            assert [c.id for c in await p.open_checkouts("usr_1")] == ["chk_a", "chk_b"]
            assert [c.id for c in await p.open_checkouts("usr_2", "shares")] == []
            assert [c.id for c in await p.stale_open(T0 - timedelta(minutes=10), 10)] == ["chk_b"]
            assert [c.id for c in await p.creating_before(T0 - timedelta(minutes=5), 10)] == ["chk_a"]
            assert [c.id for c in await p.paid_shares(10)] == ["chk_c"]
            assert await p.paid_shares(10, after="chk_c") == []


class TestLimits:
    async def test_open_slots_hold_under_a_race(self, uow) -> None:
        """Ten racing takes with a limit of 3: three succeed; a freed slot can be taken again."""
        async def take() -> bool:
            async with uow() as u:
                got = await u.payments.take_open_slot("usr_1", 3)
                await asyncio.sleep(0.005)
                return got

        assert sorted(await asyncio.gather(*(take() for _ in range(10)))) == [False] * 7 + [True] * 3
        async with uow() as u:
            await u.payments.free_open_slot("usr_1")
            assert await u.payments.take_open_slot("usr_1", 3)
            assert not await u.payments.take_open_slot("usr_1", 3)

    async def test_shares_per_user_hold_under_a_race(self, uow) -> None:
        """Racing takes of 3 shares each against a limit of 10: three succeed; giving back frees room."""
        async def take() -> bool:
            async with uow() as u:
                return await u.payments.take_shares("usr_1", "mst_1", 3, 10)

        assert sorted(await asyncio.gather(*(take() for _ in range(6)))) == [False] * 3 + [True] * 3
        async with uow() as u:
            assert not await u.payments.take_shares("usr_1", "mst_1", 2, 10)
            await u.payments.give_back_shares("usr_1", "mst_1", 3)
            assert await u.payments.take_shares("usr_1", "mst_1", 4, 10)
            assert await u.payments.take_shares("usr_1", "mst_2", 10, 10)

    async def test_rollback_undoes_counters(self, uow) -> None:
        """A slot taken in a failed unit of work is not taken."""
        with pytest.raises(Boom):
            async with uow() as u:
                assert await u.payments.take_open_slot("usr_1", 1)
                raise Boom
        async with uow() as u:
            assert await u.payments.take_open_slot("usr_1", 1)


class TestCustomersAndSubscriptions:
    async def test_first_customer_stays(self, uow) -> None:
        """Two customers stored for one user at once: both callers get the same, first one."""
        async def put(cid: str) -> str:
            async with uow() as u:
                return await u.payments.add_customer("usr_1", cid, T0)

        got = await asyncio.gather(put("cus_a"), put("cus_b"))
        assert got[0] == got[1] and got[0] in ("cus_a", "cus_b")
        async with uow(readonly=True) as u:
            assert await u.payments.customer_of("usr_1") == got[0]
            assert await u.payments.user_of_customer(got[0]) == "usr_1"
            assert await u.payments.customer_of("usr_2") is None

    async def test_newest_fetch_wins(self, uow) -> None:
        """Tickets only grow; a subscription written with an older ticket than the stored one is ignored."""
        async with uow() as u:
            t1, t2 = await u.payments.next_ticket(), await u.payments.next_ticket()
        assert t2 > t1

        def sub(ticket: int, status: str, cancel: bool) -> Subscription:
            return Subscription(id="sub_1", user_id="usr_1", customer_id="cus_1", status=status, plan="fan_monthly",
                                price_id="price_1", current_period_end=T0 + timedelta(days=30),
                                cancel_at_period_end=cancel, updated_at=T0, ticket=ticket)

        async with uow() as u:
            assert await u.payments.put_subscription(sub(t2, "active", True))
            assert not await u.payments.put_subscription(sub(t1, "active", False))
            assert not await u.payments.put_subscription(sub(t2, "canceled", False))
        async with uow(readonly=True) as u:
            got = await u.payments.get_subscription("sub_1")
            assert got.cancel_at_period_end is True and got.ticket == t2
            assert [s.id for s in await u.payments.subscriptions_of("usr_1")] == ["sub_1"]
            assert await u.payments.get_subscription("sub_2") is None


class TestTasks:
    async def test_schedule_claim_finish_and_retrigger(self, uow) -> None:
        """A claimed task is leased; a re-trigger while it runs makes it due again after finishing; a
        failure is retried at the given time; a lease that runs out frees it."""
        async with uow() as u:
            await u.payments.schedule("sub:1", "sync", {"subscriptionId": "sub_1"}, T0)
            await u.payments.schedule("sub:1", "sync", {"userId": "usr_1"}, T0 + timedelta(minutes=1))
            assert await u.payments.pending_tasks() == 1
        async with uow() as u:
            [t] = await u.payments.claim_tasks(T0, 60, 10)
            assert t.gen == 2 and t.payload == {"subscriptionId": "sub_1", "userId": "usr_1"} and t.attempts == 1
            assert await u.payments.claim_tasks(T0, 60, 10) == []
        async with uow() as u:
            await u.payments.schedule("sub:1", "sync", {}, T0)  # triggered again while running
            await u.payments.finish_task(t)
            [t2] = await u.payments.claim_tasks(T0, 60, 10)
            assert t2.gen == 3
            await u.payments.retry_task(t2, T0 + timedelta(seconds=30), "boom")
            assert await u.payments.claim_tasks(T0 + timedelta(seconds=10), 60, 10) == []
            [t3] = await u.payments.claim_tasks(T0 + timedelta(seconds=30), 60, 10)
            assert await u.payments.claim_tasks(T0 + timedelta(seconds=60), 60, 10) == []
            [t4] = await u.payments.claim_tasks(T0 + timedelta(seconds=91), 60, 10)  # the lease ran out
            await u.payments.finish_task(t4)
            assert await u.payments.pending_tasks() == 0
        assert t3.key == "sub:1"

    async def test_racing_claims_split_the_tasks(self, uow) -> None:
        """Two runners claiming at once never get the same task."""
        async with uow() as u:
            for i in range(10):
                await u.payments.schedule(f"k{i}", "sync", {}, T0)

        async def claim() -> list[str]:
            async with uow() as u:
                got = await u.payments.claim_tasks(T0, 60, 6)
                await asyncio.sleep(0.01)
                return [t.key for t in got]

        a, b = await asyncio.gather(claim(), claim())
        assert not set(a) & set(b) and len(a) + len(b) == 10
