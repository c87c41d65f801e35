"""The event log on Redis Streams: XADD, XREADGROUP, XACK, XAUTOCLAIM, a dead-letter stream.

Keys (under the configured prefix): ``bus:events`` (the stream; entry fields ``e`` = the event's
wire JSON, ``p`` = first publication time), ``bus:dead`` (dead letters, capped), ``bus:epoch``.
A group that vanished with a flushed Redis is created again at the start of the stream.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from audifi_core.events import DomainEvent

from .log import DeadLetter, Delivery, Floor

__all__ = ["RedisEventLog", "event_from_wire", "parse_id"]

DEAD_MAXLEN = 10_000


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def parse_id(msg_id: str) -> tuple[int, int]:
    ms, _, seq = msg_id.partition("-")
    return int(ms), int(seq or 0)


def event_from_wire(raw: bytes | str) -> DomainEvent:
    d = orjson.loads(raw)
    at = datetime.fromisoformat(d["occurredAt"].replace("Z", "+00:00"))
    return DomainEvent(id=d["id"], type=d["type"], occurred_at=at.astimezone(UTC), data=d.get("data") or {})


class RedisEventLog:
    def __init__(self, redis: Redis, prefix: str, *, name: str = "bus"):
        self._r = redis
        self.stream = f"{prefix}{name}:events"
        self.dead = f"{prefix}{name}:dead"
        self.epoch_key = f"{prefix}{name}:epoch"
        self._cursors: dict[tuple[str, str], str] = {}

    def _delivery(self, msg_id: Any, fields: dict[Any, Any], count: int) -> Delivery:
        f = {_s(k): v for k, v in fields.items()}
        pub = float(_s(f["p"])) if "p" in f else None
        return Delivery(_s(msg_id), event_from_wire(f["e"]), count, pub)

    async def append(self, event: DomainEvent, published_at: float | None = None) -> str:
        fields: dict[str, Any] = {"e": orjson.dumps(event.to_wire())}
        if published_at is not None:
            fields["p"] = repr(float(published_at))
        return _s(await self._r.xadd(self.stream, fields))

    async def ensure_group(self, group: str) -> None:
        try:
            await self._r.xgroup_create(self.stream, group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def read(self, group: str, consumer: str, count: int, block_ms: int | None) -> list[Delivery]:
        try:
            res = await self._r.xreadgroup(group, consumer, {self.stream: ">"}, count=count,
                                           block=block_ms or None)
        except ResponseError as e:
            if "NOGROUP" in str(e):  # the stream or the group was lost: start over from the outbox replay
                await self.ensure_group(group)
                return []
            raise
        out = []
        for _, entries in res or []:
            for msg_id, fields in entries:
                if fields:
                    out.append(self._delivery(msg_id, fields, 1))
        return out

    async def _counts(self, group: str, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        async with self._r.pipeline(transaction=False) as p:
            for i in ids:
                p.xpending_range(self.stream, group, min=i, max=i, count=1)
            res = await p.execute()
        return {_s(r[0]["message_id"]): int(r[0]["times_delivered"]) for r in res if r}

    async def pending_of(self, consumer: str, group: str, count: int) -> list[Delivery]:
        try:
            res = await self._r.xreadgroup(group, consumer, {self.stream: "0"}, count=count)
        except ResponseError as e:
            if "NOGROUP" in str(e):
                await self.ensure_group(group)
                return []
            raise
        entries = [(m, f) for _, es in res or [] for m, f in es if f]
        counts = await self._counts(group, [_s(m) for m, _ in entries])
        return [self._delivery(m, f, counts.get(_s(m), 1)) for m, f in entries]

    async def claim_stale(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Delivery]:
        key = (group, consumer)
        start = self._cursors.get(key, "0-0")
        try:
            res = await self._r.xautoclaim(self.stream, group, consumer, min_idle_time=min_idle_ms,
                                           start_id=start, count=count)
        except ResponseError as e:
            if "NOGROUP" in str(e):
                await self.ensure_group(group)
                return []
            raise
        self._cursors[key] = _s(res[0])
        entries = [(m, f) for m, f in res[1] if f]
        counts = await self._counts(group, [_s(m) for m, _ in entries])
        return [self._delivery(m, f, counts.get(_s(m), 2)) for m, f in entries]

    async def ack(self, group: str, msg_ids: list[str]) -> int:
        if not msg_ids:
            return 0
        return int(await self._r.xack(self.stream, group, *msg_ids))

    async def dead_letter(self, group: str, delivery: Delivery, error: str) -> None:
        async with self._r.pipeline(transaction=True) as p:
            p.xadd(self.dead, {"e": orjson.dumps(delivery.event.to_wire()), "g": group, "m": delivery.msg_id,
                               "n": str(delivery.deliveries), "err": error[:1000]},
                   maxlen=DEAD_MAXLEN, approximate=True)
            p.xack(self.stream, group, delivery.msg_id)
            await p.execute()

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        out = []
        for msg_id, fields in await self._r.xrevrange(self.dead, count=limit):
            f = {_s(k): v for k, v in fields.items()}
            ms, _ = parse_id(_s(msg_id))
            out.append(DeadLetter(_s(f["m"]), _s(f["g"]), event_from_wire(f["e"]), int(_s(f["n"])), _s(f["err"]),
                                  datetime.fromtimestamp(ms / 1000, UTC)))
        return out

    async def pending(self, group: str) -> int:
        try:
            info = await self._r.xpending(self.stream, group)
        except ResponseError as e:
            if "NOGROUP" in str(e):
                return 0
            raise
        return int(info["pending"])

    async def _group_info(self) -> list[dict[str, Any]]:
        try:
            groups = await self._r.xinfo_groups(self.stream)
        except ResponseError as e:
            if "no such key" in str(e).lower():
                return []
            raise
        return [{_s(k): v for k, v in g.items()} for g in groups]

    async def groups(self) -> list[str]:
        return sorted(_s(g["name"]) for g in await self._group_info())

    async def floor(self, cap: int = 10_000) -> Floor:
        groups = await self._group_info()
        if not groups:
            return Floor(None, None)
        candidates: list[str] = []
        for g in groups:
            if int(g["pending"]) > 0:
                info = await self._r.xpending(self.stream, _s(g["name"]))
                if info.get("min"):
                    candidates.append(_s(info["min"]))
            nxt = await self._r.xrange(self.stream, min="(" + _s(g["last-delivered-id"]), count=1)
            if nxt:
                candidates.append(_s(nxt[0][0]))
        if not candidates:
            last = await self._r.xrevrange(self.stream, count=1)
            if not last:
                return Floor(None, None)
            ms, seq = parse_id(_s(last[0][0]))
            return Floor(f"{ms}-{seq + 1}", None)
        first = min(candidates, key=parse_id)
        entries = await self._r.xrange(self.stream, min=first, count=cap + 1)
        pubs = [float(_s(v)) for _, f in entries for k, v in f.items() if _s(k) == "p"]
        return Floor(first, min(pubs, default=None), len(entries) <= cap)

    async def trim_before(self, msg_id: str) -> int:
        return int(await self._r.xtrim(self.stream, minid=msg_id, approximate=False))

    async def length(self) -> int:
        return int(await self._r.xlen(self.stream))

    async def forget_idle_consumers(self, idle_ms: int) -> int:
        n = 0
        for group in await self.groups():
            for c in await self._r.xinfo_consumers(self.stream, group):
                info = {_s(k): v for k, v in c.items()}
                if int(info["pending"]) == 0 and int(info["idle"]) >= idle_ms:
                    await self._r.xgroup_delconsumer(self.stream, group, _s(info["name"]))
                    n += 1
        return n

    async def exists(self) -> bool:
        return bool(await self._r.exists(self.stream))

    async def epoch(self) -> str | None:
        v = await self._r.get(self.epoch_key)
        return _s(v) if v is not None else None

    async def set_epoch(self, epoch: str) -> None:
        await self._r.set(self.epoch_key, epoch)
