"""The unit of work, user repository and outbox: one suite for memory and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from audifi_adapters.events import (
    InProcessEventBus,
    MemoryOutbox,
    OutboxRelay,
    PostgresOutbox,
    idempotent_consumer,
)
from audifi_adapters.memory import InMemoryDatabase
from audifi_adapters.postgres import PostgresDatabase
from audifi_core.auth.model import User, Wallet
from audifi_core.errors import Conflict
from audifi_core.events import DomainEvent


@pytest.fixture(params=["memory", "postgres"])
def dsn(request) -> str | None:
    return None if request.param == "memory" else request.getfixturevalue("pg_clean")


@pytest.fixture
async def db(dsn):
    if dsn is None:
        yield InMemoryDatabase(), MemoryOutbox
        return
    pg = await PostgresDatabase.connect(dsn, 5)
    yield pg, PostgresOutbox
    await pg.close()


NOW = datetime(2026, 5, 1, tzinfo=UTC)


def user(uid: str, idx: int, email: str) -> User:
    return User(id=uid, index=idx, email=email, display_name="fan-x", created_at=NOW)


def event(i: int) -> DomainEvent:
    return DomainEvent(id=f"evt_{i}", type="user.registered", occurred_at=NOW, data={"n": i})


class TestUserRepository:
    async def test_add_get_update(self, db):
        """A user round-trips; updates stick; email lookup works."""
        d, _ = db
        async with d.uow() as u:
            idx = await u.users.next_index()
            await u.users.add(user("usr_a", idx, "a@x.io"))
        async with d.uow() as u:
            got = await u.users.get("usr_a")
            assert got == user("usr_a", idx, "a@x.io")
            await u.users.update(got.with_role(__import__("audifi_core.auth.model", fromlist=["Role"]).Role.ARTIST))
        async with d.uow(readonly=True) as u:
            assert "artist" in (await u.users.get_by_email("a@x.io")).roles

    async def test_email_unique(self, db):
        """A second user with the same email is a Conflict."""
        d, _ = db
        async with d.uow() as u:
            await u.users.add(user("usr_a", 1, "dup@x.io"))
        with pytest.raises(Conflict):
            async with d.uow() as u:
                await u.users.add(user("usr_b", 2, "dup@x.io"))

    async def test_rollback(self, db):
        """An exception inside the unit of work leaves nothing behind, events included."""
        d, outbox = db
        with pytest.raises(RuntimeError):
            async with d.uow() as u:
                await u.users.add(user("usr_r", 9, "r@x.io"))
                u.emit(event(1))
                raise RuntimeError("boom")
        async with d.uow(readonly=True) as u:
            assert await u.users.get("usr_r") is None
        seen = []

        async def deliver(e):
            seen.append(e)

        assert await outbox(d).drain(deliver) == 0

    async def test_wallet_unique_and_recovery_codes(self, db):
        """An address links once; a recovery code is consumed once under a race."""
        d, _ = db
        async with d.uow() as u:
            await u.users.add(user("usr_a", 1, "a@x.io"))
            await u.users.add(user("usr_b", 2, "b@x.io"))
            await u.users.add_wallet(Wallet("0xAbC", "usr_a", NOW))
            await u.users.replace_recovery_codes("usr_a", ["c1", "c2"])
        with pytest.raises(Conflict):
            async with d.uow() as u:
                await u.users.add_wallet(Wallet("0xabc", "usr_b", NOW))
        async with d.uow(readonly=True) as u:
            assert await u.users.wallet_owner("0xABC") == "usr_a"

        async def consume() -> bool:
            async with d.uow() as u:
                return await u.users.consume_recovery_code("usr_a", "c1", NOW)

        assert sorted(await asyncio.gather(*(consume() for _ in range(4)))) == [False, False, False, True]


class TestOutbox:
    async def test_events_commit_with_state_and_relay_delivers(self, db):
        """Committed events are delivered in order, at least once; consumers dedupe on id."""
        d, outbox = db
        async with d.uow() as u:
            await u.users.add(user("usr_o", 1, "o@x.io"))
            u.emit(event(1))
            u.emit(event(2))
        bus = InProcessEventBus()
        got: list[str] = []
        effects: list[str] = []

        async def record(e):
            got.append(e.id)

        async def effect(uow, e):
            effects.append(e.id)

        bus.subscribe("recorder", record)
        bus.subscribe("effect", idempotent_consumer("effect", d.uow, effect))
        relay = OutboxRelay(outbox(d), bus)
        assert await relay.drain_once() == 2
        assert got == ["evt_1", "evt_2"]
        await bus.publish(event(1))  # a redelivery
        assert effects == ["evt_1", "evt_2"]
        assert await relay.drain_once() == 0

    async def test_failing_consumer_is_retried(self, db):
        """A consumer that fails gets the event again on the next round."""
        d, outbox = db
        async with d.uow() as u:
            await u.users.add(user("usr_f", 1, "f@x.io"))
            u.emit(event(7))
        bus = InProcessEventBus()
        calls = []

        async def flaky(e):
            calls.append(e.id)
            if len(calls) == 1:
                raise RuntimeError("transient")

        bus.subscribe("flaky", flaky)
        relay = OutboxRelay(outbox(d), bus)
        assert await relay.drain_once() == 0
        assert await relay.drain_once() == 1
        assert calls == ["evt_7", "evt_7"]
