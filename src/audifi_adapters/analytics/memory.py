"""In-memory analytics and notification repositories (the dev-mode default; tests use them too).

Rows live in ``InMemoryDatabase.table(...)`` and every write is undone with the unit of work.
Reports are computed from the events each time (dev volumes), with the same metric definitions
as the PostgreSQL summaries (``MetricsAccumulator``), so both adapters answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from audifi_core.analytics.model import (
    AnalyticsEvent,
    ClientBatch,
    Interval,
    MetricsAccumulator,
    Report,
    Scope,
    SeriesPoint,
    buckets_between,
    floor_to,
)
from audifi_core.notifications.model import MailState, Notification

from ..memory.store import InMemoryDatabase, InMemoryUnitOfWork, Undo

__all__ = ["InMemoryAnalyticsRepository", "InMemoryNotificationRepository", "register_memory_repositories"]


class _Repo:
    def __init__(self, db: InMemoryDatabase, undo: Undo, readonly: bool):
        self._db = db
        self._undo = undo
        self._ro = readonly

    def _w(self) -> None:
        if self._ro:
            raise RuntimeError("read-only unit of work")

    def _append(self, mapping: dict[Any, list[Any]], key: Any, value: Any) -> None:
        lst = mapping.setdefault(key, [])
        lst.append(value)
        self._undo.steps.append(lst.pop)


class InMemoryAnalyticsRepository(_Repo):
    @property
    def _events(self) -> dict[int, AnalyticsEvent]:
        return self._db.table("analytics.events")

    @property
    def _by_master(self) -> dict[str, list[int]]:
        return self._db.table("analytics.by_master")

    @property
    def _ids(self) -> dict[str, datetime]:
        return self._db.table("analytics.ids")

    @property
    def _masters(self) -> dict[str, str]:
        return self._db.table("analytics.masters")

    def _next(self) -> int:
        meta = self._db.table("analytics.meta")
        meta["seq"] = meta.get("seq", 0) + 1  # like a sequence: never rolled back
        return meta["seq"]

    async def ingest(self, events: Sequence[AnalyticsEvent]) -> int:
        self._w()
        n = 0
        for e in events:
            if e.id in self._ids:
                continue
            self._undo.set(self._ids, e.id, e.received_at)
            seq = self._next()
            self._undo.set(self._events, seq, e)
            if e.master_id is not None:
                self._append(self._by_master, e.master_id, seq)
            n += 1
        return n

    async def ingest_client(self, batch: ClientBatch) -> int:
        return await self.ingest(batch.events())

    async def set_master_artist(self, master_id: str, artist_id: str) -> None:
        self._w()
        self._undo.set(self._masters, master_id, artist_id)

    async def artist_of(self, master_id: str) -> str | None:
        return self._masters.get(master_id)

    async def masters_of(self, artist_id: str) -> list[str]:
        return sorted(m for m, a in self._masters.items() if a == artist_id)

    async def aggregate(self, limit: int = 2000) -> int:
        return 0  # reports are computed from the events themselves

    async def report(self, scope: Scope, scope_id: str, start: datetime, end: datetime,
                     interval: Interval) -> Report:
        masters = [scope_id] if scope is Scope.MASTER else await self.masters_of(scope_id)
        starts = buckets_between(start, end, interval)
        lo, hi = starts[0], starts[-1] + interval.delta
        per: dict[datetime, MetricsAccumulator] = {b: MetricsAccumulator() for b in starts}
        total = MetricsAccumulator()
        for m in masters:
            for seq in self._by_master.get(m, ()):
                e = self._events.get(seq)
                if e is None or not lo <= e.occurred_at < hi:
                    continue
                per[floor_to(e.occurred_at, interval)].add(e)
                total.add(e)
        return Report(from_=start, to=end, interval=interval, totals=total.metrics(),
                      series=[SeriesPoint.of(b, per[b].metrics()) for b in starts],
                      master_id=scope_id if scope is Scope.MASTER else None,
                      artist_id=scope_id if scope is Scope.ARTIST else self._masters.get(scope_id))

    async def prune_ids(self, before: datetime) -> int:
        self._w()
        old = [k for k, at in self._ids.items() if at < before]
        for k in old:
            self._undo.delete(self._ids, k)
        return len(old)


class InMemoryNotificationRepository(_Repo):
    @property
    def _rows(self) -> dict[str, Notification]:
        return self._db.table("notifications")

    @property
    def _keys(self) -> dict[tuple[str, str], str]:
        return self._db.table("notifications.keys")

    @property
    def _mail(self) -> dict[str, MailState]:
        return self._db.table("notifications.mail")

    async def add(self, notification: Notification) -> bool:
        self._w()
        key = (notification.event_id, notification.user_id)
        if key in self._keys:
            return False
        self._undo.set(self._keys, key, notification.id)
        self._undo.set(self._rows, notification.id, notification)
        self._undo.set(self._mail, notification.id, MailState.PENDING if notification.mail_to else MailState.NONE)
        return True

    async def page(self, user_id: str, after: tuple[datetime, str] | None, limit: int) -> list[Notification]:
        rows = sorted((n for n in self._rows.values() if n.user_id == user_id),
                      key=lambda n: (n.created_at, n.id), reverse=True)
        if after is not None:
            rows = [n for n in rows if (n.created_at, n.id) < after]
        return rows[:limit]

    async def mark_read(self, user_id: str, ids: list[str], at: datetime) -> int:
        self._w()
        n = 0
        for nid in ids:
            row = self._rows.get(nid)
            if row is not None and row.user_id == user_id and row.read_at is None:
                self._undo.set(self._rows, nid, attrs.evolve(row, read_at=at))
                n += 1
        return n

    async def add_participant(self, session_id: str, user_id: str) -> None:
        self._w()
        self._undo.set(self._db.table("notifications.participants"), (session_id, user_id), True)

    async def participants(self, session_id: str) -> list[str]:
        return sorted(u for s, u in self._db.table("notifications.participants") if s == session_id)

    async def add_holding(self, master_id: str, user_id: str, shares: int) -> None:
        self._w()
        t = self._db.table("notifications.holdings")
        self._undo.set(t, (master_id, user_id), t.get((master_id, user_id), 0) + shares)

    async def holders(self, master_ids: list[str]) -> list[str]:
        wanted = set(master_ids)
        return sorted({u for (m, u), n in self._db.table("notifications.holdings").items() if m in wanted and n > 0})

    async def claim_mail(self, limit: int) -> list[Notification]:
        self._w()
        pending = sorted((self._rows[i] for i, s in self._mail.items() if s is MailState.PENDING),
                         key=lambda n: (n.created_at, n.id))[:limit]
        for n in pending:
            self._undo.set(self._mail, n.id, MailState.SENDING)
        return pending

    async def finish_mail(self, notification_id: str, *, sent: bool, retry: bool) -> None:
        self._w()
        row = self._rows[notification_id]
        self._undo.set(self._rows, notification_id, attrs.evolve(row, mail_attempts=row.mail_attempts + 1))
        state = MailState.SENT if sent else MailState.PENDING if retry else MailState.FAILED
        self._undo.set(self._mail, notification_id, state)

    def mail_state(self, notification_id: str) -> MailState | None:
        return self._mail.get(notification_id)


def register_memory_repositories() -> None:
    InMemoryUnitOfWork.register("analytics", InMemoryAnalyticsRepository)
    InMemoryUnitOfWork.register("notifications", InMemoryNotificationRepository)
