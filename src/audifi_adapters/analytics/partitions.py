"""Monthly partitions of ``analytics_events``, created ahead of time (TimescaleDB is not available).

Rows outside every partition land in ``analytics_events_default``; creating a month's partition
later moves that month's rows out of the default in the same transaction, then attaches it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

__all__ = ["ensure_partitions", "partition_name", "month_start", "add_months"]

PARTITION_LOCK = 0x41_4E_50_41_52_54  # "ANPART"


def month_start(when: datetime) -> datetime:
    w = when.astimezone(UTC)
    return w.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(when: datetime, n: int) -> datetime:
    y, m = divmod(when.month - 1 + n, 12)
    return when.replace(year=when.year + y, month=m + 1)


def partition_name(start: datetime) -> str:
    return f"analytics_events_y{start.year:04d}m{start.month:02d}"


async def ensure_partitions(conn: asyncpg.Connection, now: datetime, *, back: int = 1, ahead: int = 2) -> list[str]:
    """Make sure the months from ``now - back`` to ``now + ahead`` have partitions; returns those created."""
    created = []
    first = month_start(now)
    for k in range(-back, ahead + 1):
        lo = add_months(first, k)
        hi = add_months(first, k + 1)
        name = partition_name(lo)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                continue
            await conn.execute(f"CREATE TABLE {name} (LIKE analytics_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            await conn.execute(
                f"WITH moved AS (DELETE FROM analytics_events_default WHERE occurred_at >= $1 AND occurred_at < $2 "
                f"RETURNING *) INSERT INTO {name} SELECT * FROM moved", lo, hi)
            await conn.execute(f"ALTER TABLE analytics_events ATTACH PARTITION {name} "
                               f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')")
            created.append(name)
    return created
