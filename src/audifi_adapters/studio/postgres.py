"""PostgreSQL V Studio repository (``uow.studio``), rows of ``0004_studio.sql``.

A vote is one statement: a ``FOR KEY SHARE`` read of the open decision (many voters hold it at
once; a close's ``FOR UPDATE`` waits for them, and they for it) feeding an upsert. Tallies come
from ``studio_tally()``: a ``seq`` from a sequence, then a recount.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from datetime import datetime

import asyncpg
import attrs
import orjson

from audifi_core.errors import Conflict
from audifi_core.events import DomainEvent
from audifi_core.studio.model import (
    Audience,
    Contribution,
    Decision,
    DecisionStatus,
    SessionStatus,
    StudioSession,
    Tally,
)
from audifi_core.studio.ports import RowLock

from ..postgres.db import PostgresDatabase

__all__ = ["PostgresStudioRepository", "PostgresVoteLedger"]

_LOCK = {RowLock.NONE: "", RowLock.SHARE: " FOR KEY SHARE", RowLock.UPDATE: " FOR UPDATE"}
_SESSION_COLS = "id, master_id, artist_id, title, audience, weighted, status, final_cid, created_at, locked_at"
_DECISION_COLS = "id, session_id, position, prompt, options, status, closes_at, created_at, closed_at, winner"

_VOTE = """
WITH d AS (
    SELECT id FROM studio_decisions
    WHERE id = $1 AND session_id = $2 AND status = 'open' AND (closes_at IS NULL OR closes_at > $5)
      AND $4 = ANY (options)
    FOR KEY SHARE
)
INSERT INTO studio_votes AS v (decision_id, user_id, choice, weight, cast_at)
SELECT d.id, $3, $4,
       CASE WHEN $6 THEN coalesce((SELECT w.weight FROM studio_weights w
                                   WHERE w.decision_id = $1 AND w.user_id = $3), 0) ELSE 0 END,
       $5
FROM d
ON CONFLICT (decision_id, user_id) DO UPDATE SET choice = EXCLUDED.choice, cast_at = EXCLUDED.cast_at
RETURNING (xmax = 0) AS first
"""


# One vote and its event (the batch of one, the common case when there is no storm).
_CAST_ONE = """
WITH d AS (
    SELECT id FROM studio_decisions
    WHERE id = $1 AND session_id = $2 AND status = 'open' AND (closes_at IS NULL OR closes_at > $5)
      AND $4 = ANY (options)
    FOR KEY SHARE
), v AS (
    INSERT INTO studio_votes AS v (decision_id, user_id, choice, weight, cast_at)
    SELECT d.id, $3, $4,
           CASE WHEN $6 THEN coalesce((SELECT w.weight FROM studio_weights w
                                       WHERE w.decision_id = $1 AND w.user_id = $3), 0) ELSE 0 END,
           $5
    FROM d
    ON CONFLICT (decision_id, user_id) DO UPDATE SET choice = EXCLUDED.choice, cast_at = EXCLUDED.cast_at
    RETURNING (xmax = 0) AS first
), o AS (
    INSERT INTO outbox (id, type, occurred_at, data)
    SELECT $7, $8, $9, $10::jsonb || jsonb_build_object('first', v.first) FROM v
)
SELECT first FROM v
"""

# Votes and their events, many at once, in ONE statement (so one transaction, one WAL flush): the
# open decisions held FOR KEY SHARE (in id order), the valid votes upserted (in (decision, user)
# order, so concurrent batches lock rows in the same order), one outbox row per vote written.
_CAST_BATCH = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::boolean[],
                         $7::text[], $8::text[], $9::timestamptz[], $10::text[])
        WITH ORDINALITY AS t (decision_id, session_id, user_id, choice, at, weighted, event_id, event_type,
                              occurred_at, data, ord)
), d AS (
    SELECT id, session_id, options, closes_at FROM studio_decisions
    WHERE id IN (SELECT decision_id FROM input) AND status = 'open'
    ORDER BY id
    FOR KEY SHARE
), ok AS (
    SELECT i.* FROM input i JOIN d ON d.id = i.decision_id AND d.session_id = i.session_id
    WHERE (d.closes_at IS NULL OR d.closes_at > i.at) AND i.choice = ANY (d.options)
), v AS (
    INSERT INTO studio_votes AS v (decision_id, user_id, choice, weight, cast_at)
    SELECT ok.decision_id, ok.user_id, ok.choice,
           CASE WHEN ok.weighted THEN coalesce(w.weight, 0) ELSE 0 END, ok.at
    FROM ok LEFT JOIN studio_weights w ON w.decision_id = ok.decision_id AND w.user_id = ok.user_id
    ORDER BY ok.decision_id, ok.user_id
    ON CONFLICT (decision_id, user_id) DO UPDATE SET choice = EXCLUDED.choice, cast_at = EXCLUDED.cast_at
    RETURNING v.decision_id, v.user_id, (xmax = 0) AS first
), o AS (
    INSERT INTO outbox (id, type, occurred_at, data)
    SELECT ok.event_id, ok.event_type, ok.occurred_at, ok.data::jsonb || jsonb_build_object('first', v.first)
    FROM ok JOIN v ON v.decision_id = ok.decision_id AND v.user_id = ok.user_id
    ORDER BY ok.ord
)
SELECT ok.ord, v.first FROM ok JOIN v ON v.decision_id = ok.decision_id AND v.user_id = ok.user_id
"""


def _session(r: asyncpg.Record) -> StudioSession:
    return StudioSession(id=r["id"], master_id=r["master_id"], artist_id=r["artist_id"], title=r["title"],
                         audience=Audience(r["audience"]), weighted=r["weighted"],
                         status=SessionStatus(r["status"]), final_cid=r["final_cid"],
                         created_at=r["created_at"], locked_at=r["locked_at"])


def _decision(r: asyncpg.Record) -> Decision:
    return Decision(id=r["id"], session_id=r["session_id"], position=r["position"], prompt=r["prompt"],
                    options=tuple(r["options"]), status=DecisionStatus(r["status"]), closes_at=r["closes_at"],
                    created_at=r["created_at"], closed_at=r["closed_at"], winner=r["winner"])


def _contribution(r: asyncpg.Record) -> Contribution:
    return Contribution(id=r["id"], session_id=r["session_id"], user_id=r["user_id"], kind=r["kind"],
                        description=r["description"], cid=r["cid"], created_at=r["created_at"])


def _tally(r: asyncpg.Record) -> Tally:
    return Tally(decision_id=r["decision_id"], seq=r["seq"], options=tuple(r["options"]),
                 counts=tuple(int(x) for x in r["counts"]),
                 weights=tuple(int(x) for x in r["weights"]) if r["weighted"] else None)


class PostgresStudioRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    # -- sessions and producers
    async def add_session(self, session: StudioSession) -> None:
        try:
            await self._c.execute(
                f"INSERT INTO studio_sessions ({_SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                session.id, session.master_id, session.artist_id, session.title, session.audience.value,
                session.weighted, session.status.value, session.final_cid, session.created_at, session.locked_at)
        except asyncpg.UniqueViolationError as e:
            raise Conflict("Studio session exists", details={"sessionId": session.id}) from e

    async def get_session(self, session_id: str, lock: RowLock = RowLock.NONE) -> StudioSession | None:
        r = await self._c.fetchrow(f"SELECT {_SESSION_COLS} FROM studio_sessions WHERE id = $1{_LOCK[lock]}",
                                   session_id)
        return _session(r) if r else None

    async def update_session(self, session: StudioSession) -> None:
        await self._c.execute(
            "UPDATE studio_sessions SET title = $2, status = $3, final_cid = $4, locked_at = $5 WHERE id = $1",
            session.id, session.title, session.status.value, session.final_cid, session.locked_at)

    async def add_producer(self, session_id: str, user_id: str, at: datetime) -> None:
        await self._c.execute(
            "INSERT INTO studio_producers (session_id, user_id, invited_at) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING", session_id, user_id, at)

    async def producers(self, session_id: str) -> list[str]:
        rows = await self._c.fetch(
            "SELECT user_id FROM studio_producers WHERE session_id = $1 ORDER BY invited_at, user_id", session_id)
        return [r["user_id"] for r in rows]

    async def is_producer(self, session_id: str, user_id: str) -> bool:
        return bool(await self._c.fetchval(
            "SELECT EXISTS (SELECT 1 FROM studio_producers WHERE session_id = $1 AND user_id = $2)",
            session_id, user_id))

    # -- decisions and votes
    async def add_decision(self, decision: Decision, weights: Mapping[str, int] | None = None) -> None:
        d = decision
        await self._c.execute(
            f"INSERT INTO studio_decisions ({_DECISION_COLS}, weighted) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            d.id, d.session_id, d.position, d.prompt, list(d.options), d.status.value, d.closes_at, d.created_at,
            d.closed_at, d.winner, weights is not None)
        if weights:
            users = list(weights)
            await self._c.execute(
                "INSERT INTO studio_weights (decision_id, user_id, weight) "
                "SELECT $1, u, w FROM unnest($2::text[], $3::bigint[]) AS t (u, w)",
                d.id, users, [int(weights[u]) for u in users])

    async def count_decisions(self, session_id: str) -> int:
        return int(await self._c.fetchval("SELECT count(*) FROM studio_decisions WHERE session_id = $1",
                                          session_id))

    async def get_decision(self, decision_id: str, lock: RowLock = RowLock.NONE) -> Decision | None:
        r = await self._c.fetchrow(f"SELECT {_DECISION_COLS} FROM studio_decisions WHERE id = $1{_LOCK[lock]}",
                                   decision_id)
        return _decision(r) if r else None

    async def decisions(self, session_id: str, *, open_only: bool = False,
                        lock: RowLock = RowLock.NONE) -> list[Decision]:
        where = " AND status = 'open'" if open_only else ""
        rows = await self._c.fetch(
            f"SELECT {_DECISION_COLS} FROM studio_decisions WHERE session_id = $1{where} "
            f"ORDER BY position{_LOCK[lock]}", session_id)
        return [_decision(r) for r in rows]

    async def update_decision(self, decision: Decision) -> None:
        await self._c.execute(
            "UPDATE studio_decisions SET status = $2, closed_at = $3, winner = $4 WHERE id = $1",
            decision.id, decision.status.value, decision.closed_at, decision.winner)

    async def cast_vote(self, session_id: str, decision_id: str, user_id: str, choice: str, at: datetime,
                        weighted: bool) -> bool | None:
        r = await self._c.fetchrow(_VOTE, decision_id, session_id, user_id, choice, at, weighted)
        return None if r is None else bool(r["first"])

    async def counts(self, decision_id: str) -> Tally:
        r = await self._c.fetchrow(
            "SELECT d.id AS decision_id, 0::bigint AS seq, d.options, d.weighted, "
            "  array_agg(coalesce(c.n, 0) ORDER BY o.ord) AS counts, "
            "  array_agg(coalesce(c.w, 0) ORDER BY o.ord) AS weights "
            "FROM studio_decisions d "
            "CROSS JOIN LATERAL unnest(d.options) WITH ORDINALITY AS o (label, ord) "
            "LEFT JOIN LATERAL (SELECT count(*)::bigint AS n, sum(v.weight)::bigint AS w FROM studio_votes v "
            "  WHERE v.decision_id = d.id AND v.choice = o.label) c ON true "
            "WHERE d.id = $1 GROUP BY d.id, d.options, d.weighted", decision_id)
        assert r is not None, decision_id
        return _tally(r)

    async def tally(self, decision_id: str) -> Tally | None:
        r = await self._c.fetchrow("SELECT * FROM studio_tally(ARRAY[$1::text])", decision_id)
        return _tally(r) if r else None

    async def tallies(self, session_id: str) -> dict[str, Tally]:
        rows = await self._c.fetch(
            "SELECT * FROM studio_tally(ARRAY(SELECT id FROM studio_decisions WHERE session_id = $1))", session_id)
        return {r["decision_id"]: _tally(r) for r in rows}

    async def due_decisions(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        rows = await self._c.fetch(
            "SELECT session_id, id FROM studio_decisions WHERE status = 'open' AND closes_at <= $1 "
            "ORDER BY closes_at LIMIT $2", now, limit)
        return [(r["session_id"], r["id"]) for r in rows]

    async def next_due(self) -> datetime | None:
        return await self._c.fetchval(
            "SELECT min(closes_at) FROM studio_decisions WHERE status = 'open' AND closes_at IS NOT NULL")

    # -- contributions
    async def add_contribution(self, contribution: Contribution) -> None:
        c = contribution
        await self._c.execute(
            "INSERT INTO studio_contributions (id, session_id, user_id, kind, description, cid, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            c.id, c.session_id, c.user_id, c.kind, c.description, c.cid, c.created_at)

    async def contributions(self, session_id: str) -> list[Contribution]:
        rows = await self._c.fetch(
            "SELECT id, session_id, user_id, kind, description, cid, created_at FROM studio_contributions "
            "WHERE session_id = $1 ORDER BY seq", session_id)
        return [_contribution(r) for r in rows]

    async def last_cid(self, session_id: str) -> str | None:
        return await self._c.fetchval(
            "SELECT cid FROM studio_contributions WHERE session_id = $1 AND cid IS NOT NULL "
            "ORDER BY seq DESC LIMIT 1", session_id)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"PostgresStudioRepository({self._c!r})"


RELAY_WAKE_DELAY = 0.01


@attrs.define
class _Vote:
    session_id: str
    decision_id: str
    user_id: str
    choice: str
    at: datetime
    weighted: bool
    event: DomainEvent
    done: asyncio.Future[bool | None]


class PostgresVoteLedger:
    """Group commit: a vote goes out at once when a statement slot is free; votes arriving while
    ``max_inflight`` statements run wait and go together in the next one (up to ``max_batch``).
    Light load pays one round trip per vote; a storm pays one statement, one commit, per batch.
    A user's votes on a decision apply in the order they came: the later one waits until the earlier
    one's statement is done."""

    def __init__(self, db: PostgresDatabase, *, max_inflight: int = 4, max_batch: int = 500):
        self._db = db
        self._max_inflight = max_inflight
        self._max_batch = max_batch
        self._queue: deque[_Vote] = deque()
        self._inflight = 0
        self._busy: set[tuple[str, str]] = set()  # (decision, user) of the votes in flight
        self._wake_pending = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.statements = 0  # batches sent so far (observability, benchmarks)

    async def cast(self, session_id: str, decision_id: str, user_id: str, choice: str, at: datetime,
                   weighted: bool, event: DomainEvent) -> bool | None:
        fut: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        vote = _Vote(session_id, decision_id, user_id, choice, at, weighted, event, fut)
        key = (decision_id, user_id)
        if not self._queue and self._inflight < self._max_inflight and key not in self._busy:
            # nothing waits: this vote is a batch of one, sent from the caller's task (no hop)
            self._busy.add(key)
            self._inflight += 1
            await self._run([vote])
            return fut.result()
        self._queue.append(vote)
        self._pump()
        return await fut

    def _pump(self) -> None:
        while self._queue and self._inflight < self._max_inflight:
            batch: list[_Vote] = []
            keys: set[tuple[str, str]] = set()
            later: list[_Vote] = []
            while self._queue and len(batch) < self._max_batch:
                v = self._queue.popleft()
                if v.done.cancelled():
                    continue
                key = (v.decision_id, v.user_id)
                if key in keys or key in self._busy:
                    later.append(v)  # keeps its place: a user's votes apply in the order they came
                else:
                    batch.append(v)
                keys.add(key)
            self._queue.extendleft(reversed(later))
            if not batch:
                return
            self._busy.update((v.decision_id, v.user_id) for v in batch)
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Vote]) -> None:
        try:
            for attempt in range(3):
                try:
                    results = await self._execute(batch)
                    break
                except asyncpg.DeadlockDetectedError:
                    if attempt == 2:
                        raise
            written = False
            for i, v in enumerate(batch, start=1):
                first = results.get(i)
                written = written or first is not None
                if not v.done.done():
                    v.done.set_result(first)
            if written:
                self._committed()
        except BaseException as e:
            for v in batch:
                if not v.done.done():
                    v.done.set_exception(e if isinstance(e, Exception) else RuntimeError("vote cancelled"))
            if not isinstance(e, Exception):
                raise
        finally:
            self._inflight -= 1
            self._busy.difference_update((v.decision_id, v.user_id) for v in batch)
            self._pump()

    def _committed(self) -> None:
        """Wake the outbox relay — a little later, once for many votes: the vote.cast consumers
        (analytics, notifications) are not in a hurry, and the tally fan-out goes first."""
        if self._wake_pending:
            return
        self._wake_pending = True

        def wake() -> None:
            self._wake_pending = False
            for cb in list(self._db.on_commit):
                cb()

        asyncio.get_running_loop().call_later(RELAY_WAKE_DELAY, wake)

    async def _execute(self, batch: list[_Vote]) -> dict[int, bool]:
        self.statements += 1
        if len(batch) == 1:
            v = batch[0]
            async with self._db.connection() as c:
                r = await c.fetchrow(_CAST_ONE, v.decision_id, v.session_id, v.user_id, v.choice, v.at, v.weighted,
                                     v.event.id, v.event.type, v.event.occurred_at, v.event.data)
            return {} if r is None else {1: bool(r["first"])}
        async with self._db.connection() as c:
            rows = await c.fetch(
                _CAST_BATCH, [v.decision_id for v in batch], [v.session_id for v in batch],
                [v.user_id for v in batch], [v.choice for v in batch], [v.at for v in batch],
                [v.weighted for v in batch], [v.event.id for v in batch], [v.event.type for v in batch],
                [v.event.occurred_at for v in batch], [orjson.dumps(v.event.data).decode() for v in batch])
        return {r["ord"]: bool(r["first"]) for r in rows}
