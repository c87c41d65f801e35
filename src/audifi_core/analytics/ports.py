"""What the analytics context needs: a repository bound to the unit of work, and who owns a master."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from .model import AnalyticsEvent, ClientBatch, Interval, Report, Scope

__all__ = ["AnalyticsRepository", "MasterDirectory"]


class AnalyticsRepository(Protocol):
    """``uow.analytics``: events, the master → artist map, summaries and reports."""

    async def ingest(self, events: Sequence[AnalyticsEvent]) -> int:
        """Store each event whose id was not seen in the dedupe window; returns how many were new.

        Durable when the unit of work commits; their buckets are marked for re-aggregation.
        """
        ...

    async def ingest_client(self, batch: ClientBatch) -> int:
        """The same for one request's client events (the bulk path: ``COPY`` on PostgreSQL)."""
        ...

    async def set_master_artist(self, master_id: str, artist_id: str) -> None:
        """Remember who owns a master; its past buckets count for the artist from now on."""
        ...

    async def artist_of(self, master_id: str) -> str | None: ...

    async def masters_of(self, artist_id: str) -> list[str]: ...

    async def aggregate(self, limit: int = 2000) -> int:
        """Recompute the summaries of up to ``limit`` stale (master, hour) buckets; returns how many."""
        ...

    async def report(self, scope: Scope, scope_id: str, start: datetime, end: datetime,
                     interval: Interval) -> Report:
        """Totals and series over the buckets from the one holding ``start`` to the one holding ``end``.

        Exact: stale buckets are computed from the events, the rest read from the summaries.
        """
        ...

    async def prune_ids(self, before: datetime) -> int:
        """Forget event ids that arrived before ``before`` (they may be accepted again after that)."""
        ...


class MasterDirectory(Protocol):
    """Who owns a master (the masters context when present, else what master.registered told us)."""

    async def artist_of(self, master_id: str) -> str | None: ...

    async def masters_of(self, artist_id: str) -> list[str]: ...
