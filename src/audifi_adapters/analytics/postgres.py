"""PostgreSQL analytics and notification repositories.

Ingest, in the caller's transaction: a client batch is copied (``COPY``) into a session-temporary
staging table (``ON COMMIT DELETE ROWS``: empty again at every commit, so nothing leaks to the
next borrower of the pooled connection; arrival time and user are parameters, not columns), then
one statement claims the new ids in ``analytics_event_ids`` (in id order, so racing batches
cannot deadlock), moves exactly those rows into the partitioned ``analytics_events`` and appends a
mark per (master, hour) to ``analytics_dirty`` (no unique key, so batches of the same hot bucket
never queue on a row lock). Server events take the same statement from arrays.

Aggregation and reports: see ``aggregation.py`` (hours from events, days from hours, listener sets).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from audifi_core.analytics.model import (
    AnalyticsEvent,
    ClientBatch,
    Interval,
    Report,
    Scope,
)
from audifi_core.notifications.model import Notification, NotificationKind

from ..postgres.db import PostgresUnitOfWork
from . import aggregation

__all__ = [
    "PostgresAnalyticsRepository",
    "PostgresNotificationRepository",
    "register_postgres_repositories",
    "CLIENT_STAGE_DDL",
    "CLIENT_STAGE_COLUMNS",
    "CLIENT_MERGE_SQL",
    "EVENTS_MERGE_SQL",
]

CLIENT_STAGE_COLUMNS = ("id", "type", "occurred_at", "master_id", "anonymous_id", "properties")
CLIENT_STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS analytics_client_stage (
    id text, type text, occurred_at timestamptz, master_id text, anonymous_id text, properties text
) ON COMMIT DELETE ROWS
"""


def _merge(source: str) -> str:
    """Claim new ids (in id order: racing batches cannot deadlock), insert those rows, touch their buckets."""
    return f"""
WITH src AS ({source}),
fresh AS (
    INSERT INTO analytics_event_ids (id, received_at)
    SELECT id, received_at FROM src ORDER BY id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), ins AS (
    INSERT INTO analytics_events (id, type, occurred_at, received_at, master_id, user_id, anonymous_id,
                                  quantity, amount, currency, properties)
    SELECT s.id, s.type, s.occurred_at, s.received_at, s.master_id, s.user_id, s.anonymous_id,
           s.quantity, s.amount, s.currency, s.properties::jsonb
    FROM src s JOIN fresh USING (id)
    RETURNING master_id, occurred_at
), dirty AS (
    INSERT INTO analytics_dirty (master_id, hour)
    SELECT DISTINCT master_id, date_trunc('hour', occurred_at, 'UTC') FROM ins
    WHERE master_id IS NOT NULL
)
SELECT count(*) FROM ins
"""


#: Client batches: ``COPY`` into the staging table, then this with ($1 received_at, $2 user_id).
CLIENT_MERGE_SQL = _merge(
    "SELECT id, type, occurred_at, $1::timestamptz AS received_at, master_id, $2::text AS user_id, anonymous_id, "
    "NULL::bigint AS quantity, NULL::bigint AS amount, NULL::text AS currency, properties "
    "FROM analytics_client_stage")
#: Any events (server events, a few at a time), as parallel arrays.
EVENTS_MERGE_SQL = _merge(
    "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[], "
    "$7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::text[]) "
    "AS s(id, type, occurred_at, received_at, master_id, user_id, anonymous_id, quantity, amount, currency, "
    "properties)")

def event_row(e: AnalyticsEvent) -> tuple[Any, ...]:
    return (e.id, e.type, e.occurred_at, e.received_at, e.master_id, e.user_id, e.anonymous_id, e.quantity,
            e.amount, e.currency, e.properties)


class PostgresAnalyticsRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    async def ingest(self, events: Sequence[AnalyticsEvent]) -> int:
        if not events:
            return 0
        cols = list(zip(*(event_row(e) for e in events), strict=True))
        return int(await self._c.fetchval(EVENTS_MERGE_SQL, *cols))

    async def ingest_client(self, batch: ClientBatch) -> int:
        if not batch.rows:
            return 0
        await self._c.execute(CLIENT_STAGE_DDL)
        await self._c.copy_records_to_table("analytics_client_stage", records=batch.rows,
                                            columns=CLIENT_STAGE_COLUMNS)
        return int(await self._c.fetchval(CLIENT_MERGE_SQL, batch.received_at, batch.user_id))

    async def set_master_artist(self, master_id: str, artist_id: str) -> None:
        changed = await self._c.fetchval(
            "INSERT INTO analytics_masters (master_id, artist_id) VALUES ($1, $2) "
            "ON CONFLICT (master_id) DO UPDATE SET artist_id = excluded.artist_id "
            "WHERE analytics_masters.artist_id <> excluded.artist_id RETURNING 1", master_id, artist_id)
        if changed:  # its past buckets now count for the artist: recompute them
            await self._c.execute(
                "INSERT INTO analytics_dirty (master_id, hour) "
                "SELECT DISTINCT master_id, date_trunc('hour', occurred_at, 'UTC') FROM analytics_events "
                "WHERE master_id = $1", master_id)

    async def artist_of(self, master_id: str) -> str | None:
        return await self._c.fetchval("SELECT artist_id FROM analytics_masters WHERE master_id = $1", master_id)

    async def masters_of(self, artist_id: str) -> list[str]:
        rows = await self._c.fetch("SELECT master_id FROM analytics_masters WHERE artist_id = $1 ORDER BY 1",
                                   artist_id)
        return [r[0] for r in rows]

    async def aggregate(self, limit: int = 2000) -> int:
        return await aggregation.aggregate(self._c, limit)

    async def report(self, scope: Scope, scope_id: str, start: datetime, end: datetime,
                     interval: Interval) -> Report:
        if self._c.is_in_transaction():
            return await self._report(scope, scope_id, start, end, interval)
        async with self._c.transaction(isolation="repeatable_read", readonly=True):
            return await self._report(scope, scope_id, start, end, interval)

    async def _report(self, scope: Scope, scope_id: str, start: datetime, end: datetime,
                      interval: Interval) -> Report:
        if scope is Scope.MASTER:
            masters, artist = [scope_id], await self.artist_of(scope_id)
        else:
            masters, artist = await self.masters_of(scope_id), scope_id
        return await aggregation.report(self._c, scope, scope_id, masters, artist, start, end, interval)

    async def prune_ids(self, before: datetime) -> int:
        status = await self._c.execute("DELETE FROM analytics_event_ids WHERE received_at < $1", before)
        return int(status.split()[-1])


_N_COLS = ("id, user_id, event_id, kind, title, body, created_at, read_at, mail_to, mail_attempts")


def _notification(r: asyncpg.Record) -> Notification:
    return Notification(id=r["id"], user_id=r["user_id"], event_id=r["event_id"], kind=NotificationKind(r["kind"]),
                        title=r["title"], body=r["body"], created_at=r["created_at"], read_at=r["read_at"],
                        mail_to=r["mail_to"], mail_attempts=r["mail_attempts"])


class PostgresNotificationRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    async def add(self, n: Notification) -> bool:
        r = await self._c.fetchval(
            "INSERT INTO notifications (id, user_id, event_id, kind, title, body, created_at, mail_to, mail_state) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id, user_id) DO NOTHING RETURNING 1",
            n.id, n.user_id, n.event_id, n.kind.value, n.title, n.body, n.created_at, n.mail_to,
            "pending" if n.mail_to else "none")
        return r is not None

    async def page(self, user_id: str, after: tuple[datetime, str] | None, limit: int) -> list[Notification]:
        if after is None:
            rows = await self._c.fetch(
                f"SELECT {_N_COLS} FROM notifications WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                user_id, limit)
        else:
            rows = await self._c.fetch(
                f"SELECT {_N_COLS} FROM notifications WHERE user_id = $1 AND (created_at, id) < ($2, $3) "
                "ORDER BY created_at DESC, id DESC LIMIT $4", user_id, after[0], after[1], limit)
        return [_notification(r) for r in rows]

    async def mark_read(self, user_id: str, ids: list[str], at: datetime) -> int:
        status = await self._c.execute(
            "UPDATE notifications SET read_at = $3 WHERE user_id = $1 AND id = ANY($2::text[]) AND read_at IS NULL",
            user_id, ids, at)
        return int(status.split()[-1])

    async def add_participant(self, session_id: str, user_id: str) -> None:
        await self._c.execute("INSERT INTO notification_participants VALUES ($1, $2) ON CONFLICT DO NOTHING",
                              session_id, user_id)

    async def participants(self, session_id: str) -> list[str]:
        rows = await self._c.fetch(
            "SELECT user_id FROM notification_participants WHERE session_id = $1 ORDER BY 1", session_id)
        return [r[0] for r in rows]

    async def add_holding(self, master_id: str, user_id: str, shares: int) -> None:
        await self._c.execute(
            "INSERT INTO notification_holders (master_id, user_id, shares) VALUES ($1, $2, $3) "
            "ON CONFLICT (master_id, user_id) DO UPDATE SET shares = notification_holders.shares + excluded.shares",
            master_id, user_id, shares)

    async def holders(self, master_ids: list[str]) -> list[str]:
        rows = await self._c.fetch(
            "SELECT DISTINCT user_id FROM notification_holders WHERE master_id = ANY($1::text[]) AND shares > 0 "
            "ORDER BY 1", master_ids)
        return [r[0] for r in rows]

    async def claim_mail(self, limit: int) -> list[Notification]:
        rows = await self._c.fetch(
            f"UPDATE notifications SET mail_state = 'sending' WHERE id IN ("
            "  SELECT id FROM notifications WHERE mail_state = 'pending' ORDER BY created_at, id LIMIT $1"
            f"  FOR UPDATE SKIP LOCKED) RETURNING {_N_COLS}", limit)
        return sorted((_notification(r) for r in rows), key=lambda n: (n.created_at, n.id))

    async def finish_mail(self, notification_id: str, *, sent: bool, retry: bool) -> None:
        await self._c.execute(
            "UPDATE notifications SET mail_attempts = mail_attempts + 1, mail_state = "
            "CASE WHEN $2 THEN 'sent' WHEN $3 THEN 'pending' ELSE 'failed' END WHERE id = $1",
            notification_id, sent, retry)

    async def mail_state(self, notification_id: str) -> str | None:
        return await self._c.fetchval("SELECT mail_state FROM notifications WHERE id = $1", notification_id)


def register_postgres_repositories() -> None:
    PostgresUnitOfWork.register("analytics", PostgresAnalyticsRepository)
    PostgresUnitOfWork.register("notifications", PostgresNotificationRepository)
