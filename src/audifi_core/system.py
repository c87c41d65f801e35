"""Default implementations of the time and id ports (pure standard library)."""

from __future__ import annotations

import os
import secrets
import time
from datetime import UTC, datetime, timedelta

__all__ = ["SystemClock", "FrozenClock", "RandomIds"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock for tests: moves only when told."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        self._now = when


def _b32(n: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_CROCKFORD[n & 31])
        n >>= 5
    return "".join(reversed(out))


class RandomIds:
    """ULID-shaped ids (48-bit ms time + 80 random bits) behind a type prefix."""

    def new_id(self, prefix: str) -> str:
        ms = time.time_ns() // 1_000_000
        rnd = int.from_bytes(os.urandom(10), "big")
        return f"{prefix}_{_b32(ms, 10)}{_b32(rnd, 16)}"

    def token(self, nbytes: int = 32) -> str:
        return secrets.token_urlsafe(nbytes)
