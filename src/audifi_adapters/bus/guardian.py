"""The stream's guardian: the outbox stays the durable record, Redis is only the delivery path.

One instance at a time (a PostgreSQL advisory lock held on a dedicated connection) runs
:meth:`StreamGuardian.tick` every ``interval`` seconds:

* **continuity** — ``bus_streams`` remembers the stream's epoch (a random marker also stored in
  Redis beside the stream). A missing stream or a missing/different marker means Redis lost
  data (flush, failover to a stale replica): the groups are created again at the start of the
  stream and every outbox row published since the checkpoint is appended again, then the new
  marker is stored (Redis first, PostgreSQL last, so a crash mid-way replays again). Consumers
  are idempotent on the event id, so a replay counts nothing twice.
* **checkpoint** — every ``checkpoint_every`` seconds: the oldest publication time among the
  entries some group has not acked, minus ``margin`` (publication time is taken before the
  outbox row commits; the margin covers that and clock skew). Only moves forward.
* **trim** — entries every group has acked are dropped (``XTRIM MINID``); consumer names idle an
  hour with nothing pending (processes that restarted) are deleted from their groups.
* **parked events** — events the relay could not append (Redis down) wait in ``bus_unsent`` and
  are appended once Redis answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import structlog

from audifi_core.events import DomainEvent

from ..postgres.db import PostgresDatabase
from .bus import StreamBus
from .log import EventLog

__all__ = ["StreamGuardian", "PostgresUnsentEvents", "TickReport"]

log = structlog.get_logger("audifi.bus")
CONSUMER_IDLE_MS = 3_600_000  # a consumer name unseen for an hour with nothing pending was a past process


class PostgresUnsentEvents:
    """Events the stream refused, parked durably until it takes them."""

    def __init__(self, db: PostgresDatabase, stream: str):
        self._db = db
        self._stream = stream

    async def save(self, event: DomainEvent) -> None:
        async with self._db.connection() as c:
            await c.execute("INSERT INTO bus_unsent (stream, event_id, type, occurred_at, data) "
                            "VALUES ($1, $2, $3, $4, $5)", self._stream, event.id, event.type, event.occurred_at,
                            event.data)

    async def count(self) -> int:
        async with self._db.connection() as c:
            return int(await c.fetchval("SELECT count(*) FROM bus_unsent WHERE stream = $1", self._stream))


@attrs.frozen
class TickReport:
    replayed: int = 0
    resent: int = 0
    trimmed: int = 0
    checkpoint: datetime | None = None
    lost: bool = False


def _lock_key(stream: str) -> int:
    return int.from_bytes(hashlib.sha256(f"audifi-bus:{stream}".encode()).digest()[:8], "big", signed=True)


class StreamGuardian:
    def __init__(self, log_: EventLog, db: PostgresDatabase, bus: StreamBus, *, stream: str,
                 margin: float = 300.0, interval: float = 1.0, checkpoint_every: float = 5.0):
        self.log = log_
        self._db = db
        self._bus = bus
        self.stream = stream
        self.margin = margin
        self.interval = interval
        self.checkpoint_every = checkpoint_every
        self._last_checkpoint = 0.0
        self.leader = False

    async def _state(self) -> Any:
        async with self._db.connection() as c:
            row = await c.fetchrow("SELECT epoch, checkpoint FROM bus_streams WHERE stream = $1", self.stream)
            if row is None:
                await c.execute(
                    "INSERT INTO bus_streams (stream, epoch, checkpoint) VALUES ($1, NULL, now() - $2::interval) "
                    "ON CONFLICT (stream) DO NOTHING", self.stream, timedelta(seconds=self.margin))
                row = await c.fetchrow("SELECT epoch, checkpoint FROM bus_streams WHERE stream = $1", self.stream)
        return row

    async def ensure_continuity(self) -> int | None:
        """Replay from the outbox if the stream was lost; returns the number replayed (None: intact)."""
        state = await self._state()
        marker = await self.log.epoch()
        exists = await self.log.exists()
        if state["epoch"] is None and marker is not None and exists:
            await self._set_epoch(marker)  # a new database beside a live stream: adopt it
            return None
        if state["epoch"] is not None and marker == state["epoch"] and exists:
            return None
        for group in self._bus.consumers:
            await self.log.ensure_group(group)
        replayed = await self._replay(state["checkpoint"]) if state["epoch"] is not None else 0
        epoch = secrets.token_hex(8)
        await self.log.set_epoch(epoch)
        await self._set_epoch(epoch)
        if state["epoch"] is not None:
            log.warning("bus_stream_lost_replayed", stream=self.stream, replayed=replayed,
                        since=state["checkpoint"].isoformat())
        return replayed

    async def _set_epoch(self, epoch: str) -> None:
        async with self._db.connection() as c:
            await c.execute("UPDATE bus_streams SET epoch = $2 WHERE stream = $1", self.stream, epoch)

    async def _replay(self, since: datetime) -> int:
        n = 0
        after = 0
        while True:
            async with self._db.connection() as c:
                rows = await c.fetch(
                    "SELECT seq, id, type, occurred_at, data, published_at FROM outbox "
                    "WHERE published_at >= $1 AND seq > $2 ORDER BY seq LIMIT 500", since, after)
            for r in rows:
                event = DomainEvent(id=r["id"], type=r["type"], occurred_at=r["occurred_at"], data=r["data"])
                await self.log.append(event, r["published_at"].timestamp())
            n += len(rows)
            if len(rows) < 500:
                return n
            after = rows[-1]["seq"]

    async def resend_parked(self) -> int:
        n = 0
        while True:
            async with self._db.connection() as c:
                rows = await c.fetch("SELECT seq, event_id, type, occurred_at, data, failed_at FROM bus_unsent "
                                     "WHERE stream = $1 ORDER BY seq LIMIT 100", self.stream)
            if not rows:
                return n
            for r in rows:
                event = DomainEvent(id=r["event_id"], type=r["type"], occurred_at=r["occurred_at"], data=r["data"])
                await self.log.append(event, r["failed_at"].timestamp())
                async with self._db.connection() as c:
                    await c.execute("DELETE FROM bus_unsent WHERE seq = $1", r["seq"])
                n += 1

    async def advance(self) -> tuple[datetime | None, int]:
        """Move the checkpoint forward and trim what every group acked; returns (checkpoint, trimmed)."""
        epoch = await self.log.epoch()
        for group in self._bus.consumers:  # a group not created yet must not let its entries be trimmed
            await self.log.ensure_group(group)
        floor = await self.log.floor()
        await self.log.forget_idle_consumers(CONSUMER_IDLE_MS)
        trimmed = 0
        if floor.first_id is not None:
            trimmed = await self.log.trim_before(floor.first_id)
        if not floor.complete or epoch is None:
            return None, trimmed
        oldest = min(floor.min_published_at if floor.min_published_at is not None else time.time(), time.time())
        candidate = datetime.fromtimestamp(oldest - self.margin, UTC)
        async with self._db.connection() as c:
            cp = await c.fetchval(
                "UPDATE bus_streams SET checkpoint = GREATEST(checkpoint, $3) WHERE stream = $1 AND epoch = $2 "
                "RETURNING checkpoint", self.stream, epoch, candidate)
        return cp, trimmed

    async def tick(self, *, force_checkpoint: bool = False) -> TickReport:
        replayed = await self.ensure_continuity()
        resent = await self.resend_parked()
        cp, trimmed = None, 0
        now = time.monotonic()
        if force_checkpoint or now - self._last_checkpoint >= self.checkpoint_every:
            self._last_checkpoint = now
            cp, trimmed = await self.advance()
        return TickReport(replayed=replayed or 0, resent=resent, trimmed=trimmed, checkpoint=cp,
                          lost=replayed is not None)

    async def run(self) -> None:
        """Become the leader (advisory lock on a dedicated connection), then tick forever."""
        conn = await self._db.dedicated()
        try:
            while True:
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _lock_key(self.stream)):
                    break
                await asyncio.sleep(max(self.interval, 1.0))  # another instance leads; take over if it dies
            self.leader = True
            delay = self.interval
            while True:
                try:
                    await self.tick()
                    delay = self.interval
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - Redis or PostgreSQL away: retry, backing off
                    log.warning("bus_guardian_error", error=repr(e))
                    delay = min(delay * 2, 10.0)
                await asyncio.sleep(delay)
        finally:
            self.leader = False
            conn.terminate()
