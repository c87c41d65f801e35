"""Single-use secrets (GETDEL, SET NX), fixed-window rate limits (Lua) and idempotency records."""

from __future__ import annotations

import math
from typing import Any

import orjson
from redis.asyncio import Redis

from audifi_core.ports import IdempotencyRecord, IdempotencyState, RateDecision

__all__ = ["RedisSingleUseStore", "RedisRateLimiter", "RedisIdempotencyStore"]


class RedisSingleUseStore:
    def __init__(self, redis: Redis, prefix: str):
        self._r = redis
        self._p = prefix + "once:"

    async def put(self, key: str, value: dict[str, Any], ttl_seconds: int) -> None:
        await self._r.set(self._p + key, orjson.dumps(value), ex=max(1, int(ttl_seconds)))

    async def take(self, key: str) -> dict[str, Any] | None:
        raw = await self._r.getdel(self._p + key)
        return orjson.loads(raw) if raw is not None else None

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        return bool(await self._r.set(self._p + key, b"1", nx=True, ex=max(1, int(ttl_seconds))))


_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


class RedisRateLimiter:
    """Fixed windows shared by every instance: INCR and expiry in one script."""

    def __init__(self, redis: Redis, prefix: str):
        self._r = redis
        self._p = prefix + "rl:"
        self._hit = redis.register_script(_HIT)

    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        n, ttl_ms = await self._hit(keys=[self._p + key], args=[int(window_seconds * 1000)])
        n = int(n)
        if n > limit:
            return RateDecision(False, max(1, math.ceil(int(ttl_ms) / 1000)), n)
        return RateDecision(True, 0, n)

    async def reset(self, key: str) -> None:
        await self._r.delete(self._p + key)


class RedisIdempotencyStore:
    def __init__(self, redis: Redis, prefix: str):
        self._r = redis
        self._p = prefix + "idem:"

    async def begin(self, key: str, fingerprint: str, ttl_seconds: int) -> IdempotencyRecord:
        k = self._p + key
        if await self._r.set(k, orjson.dumps({"fp": fingerprint, "state": "running"}), nx=True,
                             ex=ttl_seconds):
            return IdempotencyRecord(IdempotencyState.NEW)
        raw = await self._r.get(k)
        if raw is None:  # expired between the two calls: try once more
            return await self.begin(key, fingerprint, ttl_seconds)
        rec = orjson.loads(raw)
        if rec["fp"] != fingerprint:
            return IdempotencyRecord(IdempotencyState.MISMATCH)
        if rec["state"] == "running":
            return IdempotencyRecord(IdempotencyState.IN_FLIGHT)
        return IdempotencyRecord(IdempotencyState.DONE, rec["status"], rec["body"])

    async def finish(self, key: str, fingerprint: str, status: int, body: Any, ttl_seconds: int) -> None:
        await self._r.set(self._p + key,
                          orjson.dumps({"fp": fingerprint, "state": "done", "status": status, "body": body}),
                          ex=ttl_seconds)

    async def release(self, key: str) -> None:
        await self._r.delete(self._p + key)
