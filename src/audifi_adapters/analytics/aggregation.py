"""Summaries on PostgreSQL: hours from the events, days from the hours, exact unique listeners.

* An **hour** (per master, per artist) is recomputed from its events whenever a dirty mark names it:
  plays, distinct listeners, votes, shares sold, revenue per currency. Its listeners are added to
  the **day's listener set** (``analytics_day_listeners``), which only grows.
* A **day** is the sum of its hours, and its unique listeners the size of its listener set: an
  aggregation run costs the events of the hours that changed, never a rescan of the whole day.
* A **report** reads the summaries; every bucket with a pending mark (the current one, typically)
  is computed live — an hour from its events, a day from its stored hours with the stale hours
  replaced by live ones and its listener set united with theirs — so answers are always exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from audifi_core.analytics.model import (
    Interval,
    Metrics,
    Money,
    Report,
    Scope,
    SeriesPoint,
    buckets_between,
    floor_to,
)

__all__ = ["aggregate", "report", "AGGREGATE_LOCK"]

AGGREGATE_LOCK = 0x41_4E_41_4C_59_5A_45  # "ANALYZE": one aggregator at a time
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
Key = tuple[str, str, datetime]  # (scope, scope id, bucket start)
Value = tuple[Metrics, dict[str, int]]  # the metrics and the revenue per currency

_TARGETS = "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS t(scope, scope_id, bucket)"
_EVENTS_OF_TARGET = """
    FROM analytics_events e
    WHERE e.master_id = ANY (CASE WHEN t.scope = 'master' THEN ARRAY[t.scope_id]
                                  ELSE ARRAY(SELECT m.master_id FROM analytics_masters m
                                             WHERE m.artist_id = t.scope_id) END)
      AND e.occurred_at >= t.bucket AND e.occurred_at < t.bucket + interval '1 hour'
"""
HOURS_SQL = f"""
WITH t AS ({_TARGETS})
SELECT t.scope, t.scope_id, t.bucket,
       count(*) FILTER (WHERE e.type = 'play') AS plays,
       count(DISTINCT CASE WHEN e.type = 'play' THEN coalesce(e.user_id, 'anon:' || e.anonymous_id) END)
           AS listeners,
       count(*) FILTER (WHERE e.type = 'vote.cast') AS votes,
       coalesce(sum(e.quantity) FILTER (WHERE e.type = 'share.transferred'), 0) AS shares_sold,
       array_agg(e.currency) FILTER (WHERE e.type = 'payment.succeeded' AND e.amount IS NOT NULL) AS cur,
       array_agg(e.amount) FILTER (WHERE e.type = 'payment.succeeded' AND e.amount IS NOT NULL) AS amt
FROM t
LEFT JOIN LATERAL (SELECT e.type, e.user_id, e.anonymous_id, e.quantity, e.amount, e.currency
                   {_EVENTS_OF_TARGET}) e ON true
GROUP BY t.scope, t.scope_id, t.bucket
"""
ADD_DAY_LISTENERS_SQL = f"""
WITH t AS ({_TARGETS})
INSERT INTO analytics_day_listeners (scope, scope_id, day, listener)
SELECT DISTINCT t.scope, t.scope_id, date_trunc('day', t.bucket, 'UTC'), e.listener
FROM t
JOIN LATERAL (SELECT coalesce(e.user_id, 'anon:' || e.anonymous_id) AS listener
              {_EVENTS_OF_TARGET}
                AND e.type = 'play' AND (e.user_id IS NOT NULL OR e.anonymous_id IS NOT NULL)) e ON true
ON CONFLICT DO NOTHING
"""
DAYS_SQL = f"""
WITH t AS ({_TARGETS})
SELECT t.scope, t.scope_id, t.bucket,
       coalesce(sum(h.plays), 0) AS plays, coalesce(sum(h.votes), 0) AS votes,
       coalesce(sum(h.shares_sold), 0) AS shares_sold,
       coalesce(jsonb_agg(h.revenue) FILTER (WHERE h.revenue <> '{{}}'::jsonb), '[]'::jsonb) AS revenues,
       (SELECT count(*) FROM analytics_day_listeners l
        WHERE l.scope = t.scope AND l.scope_id = t.scope_id AND l.day = t.bucket) AS listeners
FROM t
LEFT JOIN analytics_hourly h ON h.scope = t.scope AND h.scope_id = t.scope_id
                            AND h.bucket >= t.bucket AND h.bucket < t.bucket + interval '1 day'
GROUP BY t.scope, t.scope_id, t.bucket
"""
UPSERT_SQL = """
INSERT INTO {table} (scope, scope_id, bucket, plays, listeners, votes, shares_sold, revenue, updated_at)
SELECT s, i, b, p, l, v, sh, r::jsonb, now()
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
            $8::text[]) AS x(s, i, b, p, l, v, sh, r)
ORDER BY 1, 2, 3
ON CONFLICT (scope, scope_id, bucket) DO UPDATE SET
    plays = excluded.plays, listeners = excluded.listeners, votes = excluded.votes,
    shares_sold = excluded.shares_sold, revenue = excluded.revenue, updated_at = excluded.updated_at
"""
_LISTENER = "coalesce(user_id, 'anon:' || anonymous_id)"
_LIVE_LISTENERS = (f"SELECT {_LISTENER} FROM analytics_events WHERE master_id = ANY($1::text[]) AND type = 'play' "
                   "AND (user_id IS NOT NULL OR anonymous_id IS NOT NULL) AND occurred_at >= $2 AND occurred_at < $3 "
                   "AND date_trunc('hour', occurred_at, 'UTC') = ANY($4::timestamptz[])")
_TABLE = {Interval.HOUR: "analytics_hourly", Interval.DAY: "analytics_daily"}


def _money(rev: dict[str, int]) -> list[Money]:
    return [Money(int(v), k) for k, v in sorted(rev.items())]


def _add(into: dict[str, int], rev: dict[str, Any]) -> dict[str, int]:
    for k, v in rev.items():
        into[k] = into.get(k, 0) + int(v)
    return into


def _cols(keys: Iterable[Key]) -> tuple[list[str], list[str], list[datetime]]:
    ks = list(keys)
    return [k[0] for k in ks], [k[1] for k in ks], [k[2] for k in ks]


async def hours(c: asyncpg.Connection, keys: Iterable[Key]) -> dict[Key, Value]:
    """Hours computed from their events."""
    ks = sorted(set(keys))
    if not ks:
        return {}
    out = {}
    for r in await c.fetch(HOURS_SQL, *_cols(ks)):
        rev: dict[str, int] = {}
        for cur, amt in zip(r["cur"] or (), r["amt"] or (), strict=True):
            rev[cur] = rev.get(cur, 0) + amt
        out[(r["scope"], r["scope_id"], r["bucket"])] = (
            Metrics(r["plays"], r["listeners"], r["votes"], int(r["shares_sold"]), _money(rev)), rev)
    return out


async def _days_from_hours(c: asyncpg.Connection, keys: Iterable[Key]) -> dict[Key, Value]:
    ks = sorted(set(keys))
    if not ks:
        return {}
    out = {}
    for r in await c.fetch(DAYS_SQL, *_cols(ks)):
        rev: dict[str, int] = {}
        for one in r["revenues"]:
            _add(rev, one)
        out[(r["scope"], r["scope_id"], r["bucket"])] = (
            Metrics(int(r["plays"]), int(r["listeners"]), int(r["votes"]), int(r["shares_sold"]), _money(rev)), rev)
    return out


async def _upsert(c: asyncpg.Connection, interval: Interval, values: dict[Key, Value]) -> None:
    ks = sorted(values)
    if not ks:
        return
    m = [values[k][0] for k in ks]
    await c.execute(UPSERT_SQL.format(table=_TABLE[interval]), *_cols(ks), [x.plays for x in m],
                    [x.unique_listeners for x in m], [x.votes for x in m], [x.shares_sold for x in m],
                    [orjson.dumps(values[k][1]).decode() for k in ks])


async def aggregate(c: asyncpg.Connection, limit: int) -> int:
    """Take up to ``limit`` committed dirty marks and bring their hours and days up to date."""
    if not await c.fetchval("SELECT pg_try_advisory_xact_lock($1)", AGGREGATE_LOCK):
        return 0  # another instance is aggregating; its run or the next one takes these marks
    taken = await c.fetch(
        "DELETE FROM analytics_dirty WHERE ctid = ANY(ARRAY("
        "  SELECT ctid FROM analytics_dirty LIMIT $1 FOR UPDATE SKIP LOCKED"
        ")) RETURNING master_id, hour", limit)
    if not taken:
        return 0
    marks = {(r["master_id"], r["hour"]) for r in taken}
    owners = dict(await c.fetch("SELECT master_id, artist_id FROM analytics_masters WHERE master_id = ANY($1::text[])",
                                list({m for m, _ in marks})))
    hour_keys: set[Key] = set()
    for master, hour in marks:
        hour_keys.add(("master", master, hour))
        if master in owners:
            hour_keys.add(("artist", owners[master], hour))
    await _upsert(c, Interval.HOUR, await hours(c, hour_keys))
    await c.execute(ADD_DAY_LISTENERS_SQL, *_cols(sorted(hour_keys)))
    day_keys = {(s, i, floor_to(h, Interval.DAY)) for s, i, h in hour_keys}
    await _upsert(c, Interval.DAY, await _days_from_hours(c, day_keys))
    return len(taken)


async def report(c: asyncpg.Connection, scope: Scope, scope_id: str, masters: list[str], artist: str | None,
                 start: datetime, end: datetime, interval: Interval) -> Report:
    """Totals and series from the summaries, stale buckets computed live (call inside one snapshot)."""
    starts = buckets_between(start, end, interval)
    lo, hi = starts[0], starts[-1] + interval.delta
    sid = (scope.value, scope_id)
    per: dict[datetime, Value] = {}
    for r in await c.fetch(f"SELECT bucket, plays, listeners, votes, shares_sold, revenue FROM {_TABLE[interval]} "
                           "WHERE scope = $1 AND scope_id = $2 AND bucket >= $3 AND bucket < $4", *sid, lo, hi):
        rev = _add({}, r["revenue"] or {})
        per[r["bucket"]] = (Metrics(r["plays"], r["listeners"], r["votes"], r["shares_sold"], _money(rev)), rev)
    stale_hours = sorted({r[0] for r in await c.fetch(
        "SELECT DISTINCT hour FROM analytics_dirty WHERE master_id = ANY($1::text[]) AND hour >= $2 AND hour < $3",
        masters, lo, hi)})
    live = await hours(c, [(*sid, h) for h in stale_hours])
    if interval is Interval.HOUR:
        for (_, _, h), v in live.items():
            per[h] = v
    else:
        for day in sorted({floor_to(h, Interval.DAY) for h in stale_hours}):
            per[day] = await _live_day(c, sid, masters, day, [h for h in stale_hours if day <= h < day + DAY], live)
    series = []
    plays = votes = shares = 0
    revenue: dict[str, int] = {}
    for b in starts:
        m, rev = per.get(b, (Metrics(), {}))
        series.append(SeriesPoint.of(b, m))
        plays, votes, shares = plays + m.plays, votes + m.votes, shares + m.shares_sold
        _add(revenue, rev)
    listeners = await _unique_listeners(c, sid, masters, lo, hi, interval, stale_hours)
    return Report(from_=start, to=end, interval=interval, totals=Metrics(plays, listeners, votes, shares,
                                                                         _money(revenue)),
                  series=series, master_id=scope_id if scope is Scope.MASTER else None, artist_id=artist)


async def _live_day(c: asyncpg.Connection, sid: tuple[str, str], masters: list[str], day: datetime,
                    stale: list[datetime], live: dict[Key, Value]) -> Value:
    """A day with stale hours: its stored hours, the stale ones live, its listener set ∪ theirs."""
    stored = {r["bucket"]: r for r in await c.fetch(
        "SELECT bucket, plays, votes, shares_sold, revenue FROM analytics_hourly "
        "WHERE scope = $1 AND scope_id = $2 AND bucket >= $3 AND bucket < $4", *sid, day, day + DAY)}
    plays = votes = shares = 0
    rev: dict[str, int] = {}
    for h in sorted(set(stored) | set(stale)):
        if h in stale:
            m, r = live.get((*sid, h), (Metrics(), {}))
            plays, votes, shares = plays + m.plays, votes + m.votes, shares + m.shares_sold
            _add(rev, r)
        else:
            s = stored[h]
            plays, votes, shares = plays + s["plays"], votes + s["votes"], shares + s["shares_sold"]
            _add(rev, s["revenue"] or {})
    listeners = await c.fetchval(
        "SELECT count(*) FROM (SELECT listener FROM analytics_day_listeners WHERE scope = $5 AND scope_id = $6 "
        f"AND day = $2 UNION {_LIVE_LISTENERS}) x", masters, day, day + DAY, stale, *sid)
    return Metrics(plays, int(listeners), votes, shares, _money(rev)), rev


async def _unique_listeners(c: asyncpg.Connection, sid: tuple[str, str], masters: list[str], lo: datetime,
                            hi: datetime, interval: Interval, stale: list[datetime]) -> int:
    if not masters:
        return 0
    if interval is Interval.HOUR:  # hour-aligned edges: count from the events of the range
        return int(await c.fetchval(
            f"SELECT count(DISTINCT {_LISTENER}) FROM analytics_events WHERE type = 'play' "
            "AND master_id = ANY($1::text[]) AND occurred_at >= $2 AND occurred_at < $3", masters, lo, hi))
    return int(await c.fetchval(
        "SELECT count(*) FROM (SELECT listener FROM analytics_day_listeners WHERE scope = $5 AND scope_id = $6 "
        f"AND day >= $2 AND day < $3 UNION {_LIVE_LISTENERS}) x", masters, lo, hi, stale, *sid))
