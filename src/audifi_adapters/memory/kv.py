"""In-memory single-use secrets, rate limits and idempotency records, with expiry by the clock."""

from __future__ import annotations

import math
from typing import Any

from audifi_core.ports import Clock, IdempotencyRecord, IdempotencyState, RateDecision

__all__ = ["InMemorySingleUseStore", "InMemoryRateLimiter", "InMemoryIdempotencyStore"]


class _Expiring:
    """A dict whose entries expire at a clock time; every operation is one uninterrupted step."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self._data: dict[str, tuple[float, Any]] = {}

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def get(self, key: str) -> Any | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self._now():
            del self._data[key]
            return None
        return item[1]

    def set(self, key: str, value: Any, ttl: float) -> None:
        self._data[key] = (self._now() + ttl, value)
        if len(self._data) > 10_000 and len(self._data) % 1000 == 0:
            self.sweep()

    def expires_in(self, key: str) -> float:
        item = self._data.get(key)
        return max(0.0, item[0] - self._now()) if item else 0.0

    def pop(self, key: str) -> Any | None:
        value = self.get(key)
        self._data.pop(key, None)
        return value

    def sweep(self) -> None:
        now = self._now()
        for k in [k for k, (exp, _) in self._data.items() if exp <= now]:
            del self._data[k]


class InMemorySingleUseStore:
    def __init__(self, clock: Clock):
        self._d = _Expiring(clock)

    async def put(self, key: str, value: dict[str, Any], ttl_seconds: int) -> None:
        self._d.set(key, dict(value), ttl_seconds)

    async def take(self, key: str) -> dict[str, Any] | None:
        return self._d.pop(key)

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        if self._d.get(key) is not None:
            return False
        self._d.set(key, True, ttl_seconds)
        return True


class InMemoryRateLimiter:
    """Fixed windows keyed by ``key``; the first hit opens the window."""

    def __init__(self, clock: Clock):
        self._d = _Expiring(clock)

    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        count = self._d.get(key)
        if count is None:
            self._d.set(key, 1, window_seconds)
            count = 1
        else:
            count += 1
            self._d.set(key, count, self._d.expires_in(key))
        if count > limit:
            return RateDecision(False, max(1, math.ceil(self._d.expires_in(key))), count)
        return RateDecision(True, 0, count)

    async def reset(self, key: str) -> None:
        self._d.pop(key)


class InMemoryIdempotencyStore:
    def __init__(self, clock: Clock):
        self._d = _Expiring(clock)

    async def begin(self, key: str, fingerprint: str, ttl_seconds: int) -> IdempotencyRecord:
        rec = self._d.get(key)
        if rec is None:
            self._d.set(key, {"fp": fingerprint, "state": "running"}, ttl_seconds)
            return IdempotencyRecord(IdempotencyState.NEW)
        if rec["fp"] != fingerprint:
            return IdempotencyRecord(IdempotencyState.MISMATCH)
        if rec["state"] == "running":
            return IdempotencyRecord(IdempotencyState.IN_FLIGHT)
        return IdempotencyRecord(IdempotencyState.DONE, rec["status"], rec["body"])

    async def finish(self, key: str, fingerprint: str, status: int, body: Any, ttl_seconds: int) -> None:
        self._d.set(key, {"fp": fingerprint, "state": "done", "status": status, "body": body}, ttl_seconds)

    async def release(self, key: str) -> None:
        self._d.pop(key)
