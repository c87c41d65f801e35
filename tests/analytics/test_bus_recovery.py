"""Crashes and lost Redis data, against real PostgreSQL and Redis: totals stay exact.

* a consumer process SIGKILLed mid-batch, then another one started: nothing lost, nothing twice;
* the run's Redis keys flushed: the guardian re-publishes from the outbox since its checkpoint;
* Redis unreachable while relaying: events are parked in PostgreSQL and sent when it is back.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from audifi_adapters.bus import RedisEventLog

from ..conftest import REDIS_URL
from .rig import Rig, vote

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def real(pg_clean, redis_prefix) -> tuple[str, str, str]:
    return pg_clean, REDIS_URL, redis_prefix


@pytest.fixture
async def rig(real):
    r = await Rig.open(*real)
    yield r
    await r.close()


async def _spawn(real: tuple[str, str, str], name: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.analytics.consumer_proc", *real, name,
                                                cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"ready", line
    return proc


async def _processed(dsn: str) -> int:
    c = await asyncpg.connect(dsn)
    try:
        return int(await c.fetchval("SELECT count(*) FROM processed_events WHERE consumer = 'analytics'"))
    finally:
        await c.close()


async def _stored(dsn: str) -> int:
    c = await asyncpg.connect(dsn)
    try:
        return int(await c.fetchval("SELECT count(*) FROM analytics_events WHERE type = 'vote.cast'"))
    finally:
        await c.close()


async def _flush(prefix: str) -> int:
    r = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await r.delete(*keys)
        return len(keys)
    finally:
        await r.aclose()


class TestConsumerCrash:
    async def test_sigkill_mid_stream_then_restart_counts_exactly(self, real, rig):
        """300 votes; the consumer process is SIGKILLed after ~60; a new process finishes: 300 exactly."""
        dsn = real[0]
        await rig.emit(*(vote(i) for i in range(300)))
        assert await rig.publish() == 300
        victim = await _spawn(real, "victim")
        try:
            await rig.until(lambda: _at_least(dsn, 60))
        finally:
            victim.kill()  # SIGKILL: no cleanup, no XACK of the batch in hand
            await victim.wait()
        done_before = await _processed(dsn)
        assert 60 <= done_before < 300
        assert await rig.log.pending("analytics") > 0  # the victim's unacked batch
        heir = await _spawn(real, "heir")
        try:
            await rig.until(lambda: _all_done(rig, dsn, 300), within=60)
        finally:
            heir.kill()
            await heir.wait()
        assert await _processed(dsn) == 300
        assert await _stored(dsn) == 300
        assert await rig.votes() == 300
        async with rig.db.uow() as u:
            await u.analytics.aggregate()
        assert await rig.votes() == 300


async def _at_least(dsn: str, n: int) -> bool:
    return await _processed(dsn) >= n


async def _all_done(rig: Rig, dsn: str, n: int) -> bool:
    return await _processed(dsn) == n and await rig.log.pending("analytics") == 0


class TestRedisLoss:
    async def test_a_flushed_redis_is_refilled_from_the_outbox(self, real, rig):
        """Consumed and unconsumed events vanish with the run's Redis keys; the guardian replays the
        outbox since its checkpoint; every vote is counted once."""
        await rig.guardian.tick()
        await rig.emit(*(vote(i) for i in range(20)))
        await rig.pump()
        assert await rig.votes() == 20
        rep = await rig.guardian.tick(force_checkpoint=True)
        assert rep.checkpoint is not None and not rep.lost
        await rig.emit(*(vote(i) for i in range(20, 30)))
        await rig.publish()  # in the stream, not consumed yet
        assert await _flush(real[2]) >= 2
        await rig.emit(*(vote(i) for i in range(30, 35)))
        await rig.publish()  # appended to a fresh stream that has no groups yet
        rep = await rig.guardian.tick()
        assert rep.lost and rep.replayed == 35  # margin 300 s: everything published is replayed
        await rig.bus.drain()
        assert await rig.votes() == 35
        assert await _stored(real[0]) == 35
        assert sorted(rig.handled) == sorted(f"evt_vote_{i}" for i in range(35))
        assert not (await rig.guardian.tick()).lost

    async def test_the_checkpoint_bounds_the_replay(self, real):
        """With no margin, only what was published after the last checkpoint is replayed."""
        rig = await Rig.open(*real, margin=0.0)
        try:
            await rig.guardian.tick()
            await rig.emit(*(vote(i) for i in range(12)))
            await rig.pump()
            await rig.guardian.tick(force_checkpoint=True)
            await rig.emit(*(vote(i) for i in range(12, 16)))
            await rig.publish()
            await _flush(real[2])
            rep = await rig.guardian.tick()
            assert rep.lost and rep.replayed == 4
            await rig.bus.drain()
            assert await rig.votes() == 16
        finally:
            await rig.close()

    async def test_unreachable_redis_parks_events_until_it_answers(self, real, rig):
        """The relay cannot append: events go to bus_unsent, the outbox still drains; sent later, counted once."""
        good = rig.bus.log
        dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
        rig.bus.log = RedisEventLog(dead, real[2])
        try:
            await rig.emit(*(vote(i) for i in range(5)))
            assert await rig.publish() == 5
            assert rig.bus.parked == 5
        finally:
            rig.bus.log = good
            await dead.aclose()
        assert await rig.bus.drain() == 0
        rep = await rig.guardian.tick()
        assert rep.resent == 5
        await rig.bus.drain()
        assert await rig.votes() == 5
        assert (await rig.guardian.tick()).resent == 0
