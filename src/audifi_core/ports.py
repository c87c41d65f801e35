"""Cross-cutting ports: time, ids, rate limits, idempotency, single-use secrets, events."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

import attrs

from .events import DomainEvent

__all__ = [
    "Clock",
    "IdGenerator",
    "RateLimiter",
    "RateDecision",
    "SingleUseStore",
    "IdempotencyStore",
    "IdempotencyState",
    "IdempotencyRecord",
    "EventHandler",
    "EventBus",
    "Mailer",
    "Mail",
]


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class IdGenerator(Protocol):
    def new_id(self, prefix: str) -> str:
        """A unique, roughly time-ordered opaque id such as ``usr_01J…``."""
        ...

    def token(self, nbytes: int = 32) -> str:
        """A URL-safe secret with ``nbytes`` bytes of entropy."""
        ...


@attrs.frozen
class RateDecision:
    allowed: bool
    retry_after: int = 0
    count: int = 0


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        """Count one hit for ``key`` in the current window; shared by every instance."""
        ...

    async def reset(self, key: str) -> None: ...


class SingleUseStore(Protocol):
    """Secrets that may be consumed once, atomically (magic links, mfa tokens, nonces, TOTP steps)."""

    async def put(self, key: str, value: dict[str, Any], ttl_seconds: int) -> None: ...

    async def take(self, key: str) -> dict[str, Any] | None:
        """Return and delete the value in one atomic step; ``None`` if absent or expired."""
        ...

    async def claim(self, key: str, ttl_seconds: int) -> bool:
        """Mark ``key`` used; ``True`` only for the first caller within ``ttl_seconds``."""
        ...


class IdempotencyState(enum.Enum):
    NEW = "new"
    IN_FLIGHT = "in_flight"
    MISMATCH = "mismatch"
    DONE = "done"


@attrs.frozen
class IdempotencyRecord:
    state: IdempotencyState
    status: int = 0
    body: Any = None


class IdempotencyStore(Protocol):
    async def begin(self, key: str, fingerprint: str, ttl_seconds: int) -> IdempotencyRecord:
        """Claim ``key`` (NEW) or report what the first request with it did."""
        ...

    async def finish(self, key: str, fingerprint: str, status: int, body: Any, ttl_seconds: int) -> None: ...

    async def release(self, key: str) -> None:
        """Forget an in-flight claim whose request failed, so a retry may run."""
        ...


EventHandler = Callable[[DomainEvent], Awaitable[None]]


class EventBus(Protocol):
    def subscribe(self, consumer: str, handler: EventHandler) -> None: ...

    async def publish(self, event: DomainEvent) -> None: ...


@attrs.frozen
class Mail:
    to: str
    subject: str
    text: str
    sent_at: datetime | None = None


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None: ...
