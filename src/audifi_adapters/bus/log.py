"""The event log port (a stream with consumer groups) and its in-memory adapter.

The semantics are Redis Streams': ``append`` adds an entry; each consumer *group* sees every
entry once through ``read``; an entry stays *pending* for the consumer it was delivered to until
``ack``; ``claim_stale`` hands entries pending longer than ``min_idle_ms`` (a consumer that
crashed, or failed them) to another consumer, counting deliveries; ``dead_letter`` moves an
entry that failed too often to the dead-letter stream. ``epoch`` is a marker stored beside the
stream: when it is gone, the stream was lost (a flushed or failed-over Redis) and the relay
re-publishes from the outbox.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol

import attrs

from audifi_core.events import DomainEvent

__all__ = ["Delivery", "DeadLetter", "Floor", "EventLog", "InMemoryEventLog"]


@attrs.frozen
class Delivery:
    msg_id: str
    event: DomainEvent
    deliveries: int = 1  # 1 on the first delivery to this group
    published_at: float | None = None  # epoch seconds when the relay first published the event


@attrs.frozen
class DeadLetter:
    msg_id: str
    group: str
    event: DomainEvent
    deliveries: int
    error: str
    at: datetime


@attrs.frozen
class Floor:
    """What every group has finished: entries before ``first_id`` are acked by all of them.

    ``min_published_at`` is the oldest publication time among the unfinished entries (``None``
    when every entry is finished); ``complete`` is False when there were too many to look at.
    """

    first_id: str | None
    min_published_at: float | None
    complete: bool = True


class EventLog(Protocol):
    async def append(self, event: DomainEvent, published_at: float | None = None) -> str: ...

    async def ensure_group(self, group: str) -> None:
        """Create the group at the start of the stream if it does not exist."""
        ...

    async def read(self, group: str, consumer: str, count: int, block_ms: int | None) -> list[Delivery]:
        """Entries never delivered to the group (they become pending for ``consumer``)."""
        ...

    async def pending_of(self, consumer: str, group: str, count: int) -> list[Delivery]:
        """Entries already pending for ``consumer`` (a restarted consumer with a stable name resumes them)."""
        ...

    async def claim_stale(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Delivery]:
        """Take over entries pending longer than ``min_idle_ms``; ``deliveries`` counts this one."""
        ...

    async def ack(self, group: str, msg_ids: list[str]) -> int: ...

    async def dead_letter(self, group: str, delivery: Delivery, error: str) -> None:
        """Copy the entry to the dead-letter stream and ack it, atomically."""
        ...

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    async def pending(self, group: str) -> int: ...

    async def groups(self) -> list[str]: ...

    async def floor(self, cap: int = 10_000) -> Floor: ...

    async def trim_before(self, msg_id: str) -> int:
        """Drop entries older than ``msg_id`` (every group has acked them)."""
        ...

    async def length(self) -> int: ...

    async def forget_idle_consumers(self, idle_ms: int) -> int:
        """Drop consumers (of any group) with nothing pending and idle that long (restarted processes)."""
        ...

    async def exists(self) -> bool: ...

    async def epoch(self) -> str | None: ...

    async def set_epoch(self, epoch: str) -> None: ...


@attrs.define
class _Pending:
    consumer: str
    since: float
    count: int


@attrs.define
class _Group:
    last: int = 0
    pending: dict[int, _Pending] = attrs.Factory(dict)


class InMemoryEventLog:
    """The dev-mode stream: one process, so nothing to lose; same semantics as the Redis adapter."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[DomainEvent, float | None]] = {}
        self._seq = 0
        self._groups: dict[str, _Group] = {}
        self._dead: list[DeadLetter] = []
        self._epoch: str | None = None
        self._changed = asyncio.Condition()

    def _delivery(self, n: int, count: int) -> Delivery:
        event, pub = self._entries[n]
        return Delivery(str(n), event, count, pub)

    async def append(self, event: DomainEvent, published_at: float | None = None) -> str:
        self._seq += 1
        self._entries[self._seq] = (event, published_at if published_at is not None else time.time())
        async with self._changed:
            self._changed.notify_all()
        return str(self._seq)

    async def ensure_group(self, group: str) -> None:
        self._groups.setdefault(group, _Group())

    async def read(self, group: str, consumer: str, count: int, block_ms: int | None) -> list[Delivery]:
        g = self._groups.setdefault(group, _Group())
        if g.last >= self._seq and block_ms:
            try:
                async with self._changed, asyncio.timeout(block_ms / 1000):
                    await self._changed.wait_for(lambda: g.last < self._seq)
            except TimeoutError:
                return []
        out = []
        now = time.monotonic()
        for n in range(g.last + 1, self._seq + 1):
            if len(out) >= count:
                break
            g.last = n
            if n not in self._entries:
                continue  # trimmed
            g.pending[n] = _Pending(consumer, now, 1)
            out.append(self._delivery(n, 1))
        return out

    async def pending_of(self, consumer: str, group: str, count: int) -> list[Delivery]:
        g = self._groups.setdefault(group, _Group())
        return [self._delivery(n, p.count) for n, p in sorted(g.pending.items())
                if p.consumer == consumer and n in self._entries][:count]

    async def claim_stale(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Delivery]:
        g = self._groups.setdefault(group, _Group())
        now = time.monotonic()
        out = []
        for n, p in sorted(g.pending.items()):
            if len(out) >= count:
                break
            if (now - p.since) * 1000 < min_idle_ms:
                continue
            if n not in self._entries:
                del g.pending[n]
                continue
            p.consumer, p.since, p.count = consumer, now, p.count + 1
            out.append(self._delivery(n, p.count))
        return out

    async def ack(self, group: str, msg_ids: list[str]) -> int:
        g = self._groups.get(group)
        if g is None:
            return 0
        return sum(1 for m in msg_ids if g.pending.pop(int(m), None) is not None)

    async def dead_letter(self, group: str, delivery: Delivery, error: str) -> None:
        self._dead.append(DeadLetter(delivery.msg_id, group, delivery.event, delivery.deliveries, error,
                                     datetime.now(UTC)))
        await self.ack(group, [delivery.msg_id])

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self._dead[-limit:][::-1]

    async def pending(self, group: str) -> int:
        g = self._groups.get(group)
        return len(g.pending) if g else 0

    async def groups(self) -> list[str]:
        return sorted(self._groups)

    async def floor(self, cap: int = 10_000) -> Floor:
        if not self._groups:
            return Floor(None, None)
        first = min(min([g.last + 1, *g.pending]) for g in self._groups.values())
        todo = [n for n in self._entries if n >= first]
        if not todo:
            return Floor(str(first), None)
        pubs = [self._entries[n][1] for n in todo]
        return Floor(str(first), min((p for p in pubs if p is not None), default=None), len(todo) <= cap)

    async def trim_before(self, msg_id: str) -> int:
        old = [n for n in self._entries if n < int(msg_id)]
        for n in old:
            del self._entries[n]
        return len(old)

    async def length(self) -> int:
        return len(self._entries)

    async def forget_idle_consumers(self, idle_ms: int) -> int:
        return 0  # consumers exist here only through their pending entries

    async def exists(self) -> bool:
        return True

    async def epoch(self) -> str | None:
        return self._epoch

    async def set_epoch(self, epoch: str) -> None:
        self._epoch = epoch
