"""The event log port (a stream with consumer groups): one suite, run on memory and on Redis Streams."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from audifi_adapters.bus import InMemoryEventLog, RedisEventLog
from audifi_core.events import DomainEvent

from ..conftest import REDIS_URL

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
async def elog(request):
    if request.param == "memory":
        yield InMemoryEventLog()
        return
    prefix = request.getfixturevalue("redis_prefix")
    r = Redis.from_url(REDIS_URL)
    yield RedisEventLog(r, prefix)
    await r.aclose()


def event(i: int) -> DomainEvent:
    return DomainEvent(id=f"evt_{i}", type="vote.cast", occurred_at=T0, data={"n": i, "userId": f"u{i}"})


class TestEventLog:
    async def test_each_group_reads_every_entry_once(self, elog):
        """Two groups each see every entry once, in order, with the event intact; consumers share a group."""
        await elog.ensure_group("a")
        await elog.ensure_group("b")
        for i in range(5):
            await elog.append(event(i), 1000.0 + i)
        got_a = await elog.read("a", "c1", 3, None) + await elog.read("a", "c2", 10, None)
        got_b = await elog.read("b", "c1", 10, None)
        assert [d.event for d in got_a] == [event(i) for i in range(5)] == [d.event for d in got_b]
        assert [d.published_at for d in got_b] == [1000.0 + i for i in range(5)]
        assert all(d.deliveries == 1 for d in got_a)
        assert await elog.read("a", "c1", 10, None) == []
        assert await elog.groups() == ["a", "b"]

    async def test_a_group_created_late_starts_at_the_beginning(self, elog):
        """A group made after entries were appended still reads them all."""
        await elog.append(event(1))
        await elog.ensure_group("late")
        await elog.ensure_group("late")  # idempotent
        assert [d.event.id for d in await elog.read("late", "c", 10, None)] == ["evt_1"]

    async def test_pending_until_acked_then_claimed_with_counts(self, elog):
        """Unacked entries stay pending; after the idle time another consumer claims them, counting deliveries."""
        await elog.ensure_group("g")
        for i in range(3):
            await elog.append(event(i))
        first = await elog.read("g", "dead-consumer", 10, None)
        assert await elog.ack("g", [first[0].msg_id]) == 1
        assert await elog.pending("g") == 2
        assert await elog.claim_stale("g", "other", 60_000, 10) == []
        await asyncio.sleep(0.06)
        claimed = await elog.claim_stale("g", "other", 50, 10)
        assert [(d.event.id, d.deliveries) for d in claimed] == [("evt_1", 2), ("evt_2", 2)]
        assert [d.event.id for d in await elog.pending_of("other", "g", 10)] == ["evt_1", "evt_2"]
        assert await elog.pending_of("dead-consumer", "g", 10) == []
        assert await elog.ack("g", [d.msg_id for d in claimed]) == 2
        assert await elog.pending("g") == 0

    async def test_dead_letter_moves_and_acks(self, elog):
        """A dead-lettered entry leaves the group's pending list and shows in the dead-letter stream."""
        await elog.ensure_group("g")
        await elog.append(event(7))
        [d] = await elog.read("g", "c", 10, None)
        await elog.dead_letter("g", d, "boom")
        assert await elog.pending("g") == 0
        [dl] = await elog.dead_letters()
        assert (dl.group, dl.event, dl.error, dl.msg_id) == ("g", event(7), "boom", d.msg_id)

    async def test_floor_and_trim(self, elog):
        """The floor is the oldest entry some group has not finished; trimming below it keeps what is owed."""
        await elog.ensure_group("fast")
        await elog.ensure_group("slow")
        for i in range(4):
            await elog.append(event(i), 100.0 + i)
        fast = await elog.read("fast", "c", 10, None)
        await elog.ack("fast", [d.msg_id for d in fast])
        slow = await elog.read("slow", "c", 2, None)
        await elog.ack("slow", [slow[0].msg_id])
        f = await elog.floor()
        assert f.first_id == slow[1].msg_id and f.min_published_at == 101.0 and f.complete
        assert await elog.trim_before(f.first_id) == 1
        assert await elog.length() == 3
        rest = await elog.read("slow", "c", 10, None)
        assert [d.event.id for d in rest] == ["evt_2", "evt_3"]
        await elog.ack("slow", [slow[1].msg_id] + [d.msg_id for d in rest])
        done = await elog.floor()
        assert done.min_published_at is None and done.first_id is not None
        await elog.trim_before(done.first_id)
        assert await elog.length() == 0

    async def test_blocking_read_wakes_on_append(self, elog):
        """A blocked read returns as soon as an entry arrives; with nothing it times out empty."""
        await elog.ensure_group("g")
        assert await elog.read("g", "c", 10, 50) == []
        reader = asyncio.create_task(elog.read("g", "c", 10, 5000))
        await asyncio.sleep(0.05)
        await elog.append(event(1))
        got = await asyncio.wait_for(reader, 3)
        assert [d.event.id for d in got] == ["evt_1"]

    async def test_epoch_marker(self, elog):
        """The epoch marker is absent until set, then read back."""
        assert await elog.epoch() is None
        await elog.set_epoch("e1")
        assert await elog.epoch() == "e1"
        await elog.ensure_group("g")
        assert await elog.exists()

    async def test_idle_consumers_without_pending_are_forgotten(self, elog):
        """A consumer with nothing pending and idle long enough is dropped; one with pending entries stays."""
        await elog.ensure_group("g")
        await elog.append(event(1))
        await elog.append(event(2))
        [a] = await elog.read("g", "gone", 1, None)
        await elog.ack("g", [a.msg_id])
        await elog.read("g", "busy", 1, None)
        await asyncio.sleep(0.03)
        n = await elog.forget_idle_consumers(20)
        assert n == (0 if isinstance(elog, InMemoryEventLog) else 1)  # memory keeps no consumer registry
        assert await elog.pending("g") == 1
        assert [d.event.id for d in await elog.pending_of("busy", "g", 10)] == ["evt_2"]
