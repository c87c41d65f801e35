"""In-memory adapters: the dev-mode default and the fast test doubles (concurrency-safe)."""

from .auth import InMemorySessionStore
from .kv import InMemoryIdempotencyStore, InMemoryRateLimiter, InMemorySingleUseStore
from .mail import OutboxMailer
from .store import InMemoryDatabase, InMemoryUnitOfWork

__all__ = [
    "InMemoryDatabase",
    "InMemoryUnitOfWork",
    "InMemorySessionStore",
    "InMemorySingleUseStore",
    "InMemoryRateLimiter",
    "InMemoryIdempotencyStore",
    "OutboxMailer",
]
