"""Redis adapters (redis.asyncio): sessions, single-use secrets, rate limits, idempotency."""

from .kv import RedisIdempotencyStore, RedisRateLimiter, RedisSingleUseStore
from .sessions import RedisSessionStore

__all__ = ["RedisSessionStore", "RedisSingleUseStore", "RedisRateLimiter", "RedisIdempotencyStore"]
