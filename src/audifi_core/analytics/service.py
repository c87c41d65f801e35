"""Analytics use cases: ingest client events, consume server events, aggregate, answer dashboards.

Domain events this context consumes (``{id, type, occurredAt, data}``; producers follow these shapes):

* ``master.registered``  ``{masterId, artistId}``          → the master counts for that artist
* ``vote.cast``          ``{sessionId, decisionId, masterId, userId, first?}`` (``first: false``: a changed
  vote, not counted again)
* ``share.transferred``  ``{masterId, userId, count}``      → shares sold to a buyer (treasury → buyer)
* ``payment.succeeded``  ``{masterId?, userId, amount, currency, quantity?}`` → revenue when ``masterId``

Each is stored once under its event id (the consumer runs in the unit of work that records it as
processed, and the events table dedupes on id as well).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs

from ..errors import Forbidden, NotFound, RateLimited, ValidationError
from ..events import DomainEvent
from ..ports import Clock, IdGenerator, RateLimiter
from ..uow import UnitOfWork, UnitOfWorkFactory
from .intake import parse_client_body
from .model import (
    DEDUPE_WINDOW,
    MAX_BUCKETS,
    SERVER_TYPES,
    AnalyticsEvent,
    Interval,
    Report,
    Scope,
    buckets_between,
)
from .ports import MasterDirectory

__all__ = ["AnalyticsService", "AnalyticsSettings", "CONSUMER"]

CONSUMER = "analytics"


@attrs.frozen
class AnalyticsSettings:
    anon_limit: int = 120  # POST /events per IP per window, without a token
    user_limit: int = 600  # per signed-in user per user window
    window_seconds: int = 60
    user_window_seconds: int = 60
    aggregate_batch: int = 2000


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool):
        raise ValueError(f"{name} must be an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    raise ValueError(f"{name} must be an integer, not {v!r}")


class AnalyticsService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, ids: IdGenerator, limiter: RateLimiter,
                 directory: MasterDirectory, settings: AnalyticsSettings | None = None):
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._limiter = limiter
        self._directory = directory
        self.settings = settings or AnalyticsSettings()

    # ------------------------------------------------------------------ ingest
    async def ingest(self, body: bytes, *, user_id: str | None, ip: str) -> int:
        """Validate and store the client events of a JSON body; returns how many were accepted (durable
        on return)."""
        s = self.settings
        if user_id is None:
            decision = await self._limiter.hit(f"events:ip:{ip}", s.anon_limit, s.window_seconds)
        else:
            decision = await self._limiter.hit(f"events:user:{user_id}", s.user_limit, s.user_window_seconds)
        if not decision.allowed:
            raise RateLimited("Too many event uploads", retry_after=decision.retry_after)
        batch = parse_client_body(body, now=self._clock.now(), user_id=user_id,
                                  new_id=lambda: self._ids.new_id("aev"))
        if batch.rows:
            async with self._uow() as u:
                await u.analytics.ingest_client(batch)  # type: ignore[attr-defined]
        return len(batch.rows)

    async def on_event(self, u: UnitOfWork, event: DomainEvent) -> None:
        """The bus consumer (run inside the unit of work that marks the event processed)."""
        d = event.data
        if event.type == "master.registered":
            await u.analytics.set_master_artist(str(d["masterId"]), str(d["artistId"]))  # type: ignore[attr-defined]
            return
        if event.type not in SERVER_TYPES or (event.type == "vote.cast" and d.get("first") is False):
            return  # a changed vote (``first: false``) replaces one already counted
        quantity = amount = None
        currency = None
        if event.type == "share.transferred":
            quantity = _int(d["count"], "count")
        elif event.type == "payment.succeeded":
            amount = _int(d["amount"], "amount")
            currency = str(d["currency"]).lower()
            quantity = _int(d["quantity"], "quantity") if d.get("quantity") is not None else None
        row = AnalyticsEvent(id=event.id, type=event.type, occurred_at=event.occurred_at,
                             received_at=self._clock.now(), master_id=d.get("masterId"),
                             user_id=d.get("userId"), quantity=quantity, amount=amount, currency=currency)
        await u.analytics.ingest([row])  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ jobs
    async def aggregate(self) -> int:
        """Bring every stale summary bucket up to date; returns the number of buckets refreshed."""
        total = 0
        batch = self.settings.aggregate_batch
        while True:
            async with self._uow() as u:
                n = await u.analytics.aggregate(batch)  # type: ignore[attr-defined]
            total += n
            if n < batch:
                return total

    async def prune(self) -> int:
        """Forget event ids older than the dedupe window."""
        async with self._uow() as u:
            return await u.analytics.prune_ids(self._clock.now() - DEDUPE_WINDOW)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ reports
    def _range(self, start: datetime | None, end: datetime | None, interval: Interval) -> tuple[datetime, datetime]:
        end = end or self._clock.now()
        start = start or end - (timedelta(hours=47) if interval is Interval.HOUR else timedelta(days=29))
        if start > end:
            raise ValidationError("from is after to", fields={"from": "must not be after to"})
        if (end - start) / interval.delta > MAX_BUCKETS or len(buckets_between(start, end, interval)) > MAX_BUCKETS:
            raise ValidationError(f"At most {MAX_BUCKETS} buckets per report",
                                  fields={"from": f"at most {MAX_BUCKETS} {interval.value}s before to"})
        return start, end

    async def dashboard(self, artist_id: str, start: datetime | None, end: datetime | None,
                        interval: Interval) -> Report:
        """Totals and series over every master of the artist."""
        start, end = self._range(start, end, interval)
        async with self._uow(readonly=True) as u:
            return await u.analytics.report(Scope.ARTIST, artist_id, start, end, interval)  # type: ignore[attr-defined]

    async def master_report(self, user_id: str, master_id: str, start: datetime | None, end: datetime | None,
                            interval: Interval) -> Report:
        """The same for one master; only its artist may see it."""
        owner = await self._directory.artist_of(master_id)
        if owner is None:
            raise NotFound(f"Master with ID {master_id} not found", code="MASTER_NOT_FOUND",
                           details={"masterId": master_id})
        if owner != user_id:
            raise Forbidden("Only the master's artist sees its analytics", details={"masterId": master_id})
        start, end = self._range(start, end, interval)
        async with self._uow(readonly=True) as u:
            return await u.analytics.report(Scope.MASTER, master_id, start, end, interval)  # type: ignore[attr-defined]
