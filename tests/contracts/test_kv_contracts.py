"""One contract suite per key-value port, run against the memory and the Redis adapter."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from audifi_adapters.memory import (
    InMemoryIdempotencyStore,
    InMemoryRateLimiter,
    InMemorySessionStore,
    InMemorySingleUseStore,
)
from audifi_adapters.redis import (
    RedisIdempotencyStore,
    RedisRateLimiter,
    RedisSessionStore,
    RedisSingleUseStore,
)
from audifi_core.auth.model import AuthSession, RotateOutcome
from audifi_core.ports import IdempotencyState

from ..conftest import REDIS_URL


@pytest.fixture(params=["memory", "redis"])
async def kv(request, clock):
    """(single-use, limiter, idempotency, sessions) for one adapter family."""
    if request.param == "memory":
        yield (InMemorySingleUseStore(clock), InMemoryRateLimiter(clock), InMemoryIdempotencyStore(clock),
               InMemorySessionStore(clock))
        return
    prefix = request.getfixturevalue("redis_prefix")
    r = Redis.from_url(REDIS_URL)
    yield (RedisSingleUseStore(r, prefix), RedisRateLimiter(r, prefix), RedisIdempotencyStore(r, prefix),
           RedisSessionStore(r, prefix))
    await r.aclose()


class TestSingleUseStore:
    async def test_take_once(self, kv):
        """A put value is taken once, then gone."""
        once = kv[0]
        await once.put("k", {"a": 1}, 60)
        assert await once.take("k") == {"a": 1}
        assert await once.take("k") is None

    async def test_take_races(self, kv):
        """Ten racing takes: exactly one gets the value."""
        once = kv[0]
        await once.put("race", {"v": True}, 60)
        got = await asyncio.gather(*(once.take("race") for _ in range(10)))
        assert [g for g in got if g is not None] == [{"v": True}]

    async def test_claim_races(self, kv):
        """Ten racing claims: exactly one is first."""
        once = kv[0]
        got = await asyncio.gather(*(once.claim("c", 60) for _ in range(10)))
        assert got.count(True) == 1

    async def test_unknown(self, kv):
        """Taking an unknown key gives None."""
        assert await kv[0].take("never") is None


class TestRateLimiter:
    async def test_limit_and_retry_after(self, kv):
        """The hit past the limit is refused with a positive retry-after; reset clears it."""
        rl = kv[1]
        decisions = [await rl.hit("ip:1", 3, 60) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert 1 <= decisions[-1].retry_after <= 60
        await rl.reset("ip:1")
        assert (await rl.hit("ip:1", 3, 60)).allowed

    async def test_concurrent_hits_counted(self, kv):
        """Concurrent hits are all counted: exactly `limit` are allowed."""
        rl = kv[1]
        ds = await asyncio.gather(*(rl.hit("burst", 5, 60) for _ in range(20)))
        assert sum(d.allowed for d in ds) == 5

    async def test_keys_independent(self, kv):
        """Different keys have their own windows."""
        rl = kv[1]
        assert (await rl.hit("a", 1, 60)).allowed and (await rl.hit("b", 1, 60)).allowed
        assert not (await rl.hit("a", 1, 60)).allowed


class TestIdempotencyStore:
    async def test_lifecycle(self, kv):
        """NEW, then IN_FLIGHT, then DONE with the stored response; another body is MISMATCH."""
        st = kv[2]
        assert (await st.begin("k", "fp1", 60)).state is IdempotencyState.NEW
        assert (await st.begin("k", "fp1", 60)).state is IdempotencyState.IN_FLIGHT
        await st.finish("k", "fp1", 202, {"id": "job_1"}, 60)
        rec = await st.begin("k", "fp1", 60)
        assert rec.state is IdempotencyState.DONE and rec.status == 202 and rec.body == {"id": "job_1"}
        assert (await st.begin("k", "fp2", 60)).state is IdempotencyState.MISMATCH

    async def test_release(self, kv):
        """A released key can be claimed again."""
        st = kv[2]
        await st.begin("r", "fp", 60)
        await st.release("r")
        assert (await st.begin("r", "fp", 60)).state is IdempotencyState.NEW

    async def test_race(self, kv):
        """Racing begins: one NEW, the rest IN_FLIGHT."""
        st = kv[2]
        rs = await asyncio.gather(*(st.begin("race", "fp", 60) for _ in range(8)))
        assert [r.state for r in rs].count(IdempotencyState.NEW) == 1


def _session(clock, sid="ses_1", uid="usr_1", h="h0") -> AuthSession:
    from datetime import timedelta

    now = clock.now()
    return AuthSession(id=sid, user_id=uid, created_at=now, last_seen_at=now, authenticated_at=now,
                       expires_at=now + timedelta(days=30), refresh_hash=h, user_agent="ua")


class TestSessionStore:
    async def test_create_get_roundtrip(self, kv, clock):
        """A created session reads back equal (but for the previous hashes kept inside)."""
        ss = kv[3]
        s = _session(clock)
        await ss.create(s)
        got = await ss.get("ses_1")
        assert got is not None
        assert (got.id, got.user_id, got.refresh_hash, got.user_agent) == (s.id, s.user_id, "h0", "ua")
        assert abs((got.created_at - s.created_at).total_seconds()) < 0.001

    async def test_rotate_and_reuse(self, kv, clock):
        """Rotation accepts the current hash once; the old one is then REUSED; a random one UNKNOWN."""
        ss = kv[3]
        s = _session(clock)
        await ss.create(s)
        assert await ss.rotate("ses_1", "h0", "h1", s.expires_at) is RotateOutcome.ROTATED
        assert await ss.rotate("ses_1", "h0", "h2", s.expires_at) is RotateOutcome.REUSED
        assert await ss.rotate("ses_1", "zz", "h2", s.expires_at) is RotateOutcome.UNKNOWN
        assert await ss.rotate("ses_nope", "h1", "h2", s.expires_at) is RotateOutcome.UNKNOWN
        assert (await ss.get("ses_1")).refresh_hash == "h1"

    async def test_rotate_race(self, kv, clock):
        """Racing rotations of one hash: one ROTATED."""
        ss = kv[3]
        s = _session(clock)
        await ss.create(s)
        outs = await asyncio.gather(*(ss.rotate("ses_1", "h0", f"n{i}", s.expires_at) for i in range(6)))
        assert outs.count(RotateOutcome.ROTATED) == 1

    async def test_revoke_user_except(self, kv, clock):
        """revoke_user ends every session of the user but the one kept."""
        ss = kv[3]
        for sid in ("a", "b", "c"):
            await ss.create(_session(clock, sid=sid))
        await ss.create(_session(clock, sid="x", uid="usr_2"))
        assert sorted(await ss.revoke_user("usr_1", except_session="b")) == ["a", "c"]
        assert [s.id for s in await ss.list_for_user("usr_1")] == ["b"]
        assert await ss.get("x") is not None
        assert (await ss.revoke("b")).id == "b" and await ss.get("b") is None

    async def test_touch(self, kv, clock):
        """touch moves last_seen_at; touching a revoked session does not bring it back."""
        ss = kv[3]
        await ss.create(_session(clock))
        clock.advance(120)
        await ss.touch("ses_1", clock.now())
        assert abs(((await ss.get("ses_1")).last_seen_at - clock.now()).total_seconds()) < 0.001
        await ss.revoke("ses_1")
        await ss.touch("ses_1", clock.now())
        assert await ss.get("ses_1") is None
