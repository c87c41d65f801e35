"""The stream bus: outbox → stream → consumer groups; XACK after handling, XAUTOCLAIM, dead letters.

Each test runs in memory and on PostgreSQL + Redis Streams.
"""

from __future__ import annotations

import asyncio

import pytest

from audifi_adapters.bus import StreamConsumer
from audifi_core.events import DomainEvent

from ..conftest import REDIS_URL
from .rig import FAST, Rig, vote


@pytest.fixture(params=["memory", "real"])
def where(request) -> tuple[str | None, str | None, str]:
    if request.param == "memory":
        return None, None, ""
    return request.getfixturevalue("pg_clean"), REDIS_URL, request.getfixturevalue("redis_prefix")


@pytest.fixture
async def rig(where):
    r = await Rig.open(*where)
    yield r
    await r.close()


class TestDelivery:
    async def test_committed_events_reach_the_consumer_once(self, rig):
        """Events committed with a unit of work flow outbox → stream → analytics, each counted once."""
        await rig.emit(*(vote(i) for i in range(10)))
        assert await rig.publish() == 10
        assert await rig.bus.drain() == 10
        assert await rig.votes() == 10
        assert await rig.pump() == 0
        assert await rig.log.pending("analytics") == 0

    async def test_replayed_bus_events_do_not_double_count(self, rig):
        """Every event published three times is delivered three times and counted once."""
        events = [vote(i) for i in range(8)]
        for _ in range(3):
            for e in events:
                await rig.bus.publish(e)
        assert await rig.bus.drain() == 24
        assert await rig.votes() == 8
        assert sorted(rig.handled) == sorted(e.id for e in events)
        assert rig.bus.consumers["analytics"].handled == 24

    async def test_a_failing_handler_is_retried_then_dead_lettered(self, rig):
        """A transient failure is retried on claim; a poison event goes to the dead-letter stream after
        max_deliveries; other groups and other events are unaffected."""
        failures: dict[str, int] = {}

        async def flaky(event: DomainEvent) -> None:
            failures[event.id] = failures.get(event.id, 0) + 1
            if event.id == "evt_vote_poison" or (event.id == "evt_vote_1" and failures[event.id] == 1):
                raise RuntimeError(f"cannot handle {event.id}")

        rig.bus.subscribe("flaky", flaky)
        await rig.emit(vote(0), vote(1), vote("poison"), vote(2))
        await rig.publish()
        for _ in range(6):
            await rig.bus.drain()
            await asyncio.sleep(FAST.min_idle_ms / 1000 + 0.02)
        assert failures == {"evt_vote_0": 1, "evt_vote_1": 2, "evt_vote_poison": FAST.max_deliveries,
                            "evt_vote_2": 1}
        [dead] = await rig.log.dead_letters()
        assert (dead.group, dead.event.id, dead.deliveries) == ("flaky", "evt_vote_poison", FAST.max_deliveries + 1)
        assert "cannot handle evt_vote_poison" in dead.error
        assert await rig.log.pending("flaky") == 0
        assert await rig.votes() == 4  # the analytics group counted every vote, the poison one included

    async def test_cancelled_between_handling_and_ack(self, rig):
        """A consumer task cancelled after handling an event but before its XACK: a new consumer claims
        the rest, the handled one is not counted again, nothing is lost."""
        await rig.emit(*(vote(i) for i in range(20)))
        await rig.publish()
        stuck = asyncio.Event()

        async def hang_on_fifth(d) -> None:
            if d.event.id == "evt_vote_4":
                stuck.set()
                await asyncio.Event().wait()  # cancelled here: handled and committed, not acked

        first = StreamConsumer(rig.log, "analytics", rig.consume, consumer="doomed", settings=FAST,
                               after_handle=hang_on_fifth)
        task = asyncio.create_task(first.run())
        await asyncio.wait_for(stuck.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(rig.handled) == 5 and await rig.log.pending("analytics") == 16
        await asyncio.sleep(FAST.min_idle_ms / 1000 + 0.02)
        second = StreamConsumer(rig.log, "analytics", rig.consume, consumer="heir", settings=FAST)
        assert await second.drain() == 16
        assert await rig.log.pending("analytics") == 0
        assert await rig.votes() == 20
        assert sorted(rig.handled) == sorted(f"evt_vote_{i}" for i in range(20))

    async def test_subscribers_run_as_background_groups(self, rig):
        """Started, each group has a worker: events arrive without draining; stop ends the workers."""
        seen: list[str] = []

        async def watch(event: DomainEvent) -> None:
            seen.append(event.id)

        rig.bus.subscribe("watch", watch)
        rig.bus.start()
        await rig.emit(vote(1), vote(2))
        await rig.publish()
        await rig.until(lambda: asyncio.sleep(0, result=len(seen) == 2))
        await rig.until(rig.votes)
        assert await rig.votes() == 2
        await rig.bus.stop()
