"""``StreamBus``: the EventBus port over an event log (Redis Streams, or in memory in dev).

``publish`` appends to the stream (the outbox relay calls it through :meth:`relay`); each
subscribed consumer is a consumer group with a worker task per process. When the stream
cannot take an event (Redis down), :meth:`relay` parks it in PostgreSQL (``bus_unsent``) so
the outbox can mark it published without losing it; the guardian sends it later.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from typing import Any, Protocol

import structlog

from audifi_core.events import DomainEvent
from audifi_core.ports import EventHandler

from .consumer import ConsumerSettings, StreamConsumer
from .log import EventLog

__all__ = ["StreamBus", "UnsentEvents", "default_consumer_name", "cancel_and_wait"]

log = structlog.get_logger("audifi.bus")


async def cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel and wait; cancel again if a task swallowed it (Python 3.11's ``wait_for`` can)."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    for t in tasks:
        if not t.cancelled():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                t.result()


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class UnsentEvents(Protocol):
    async def save(self, event: DomainEvent) -> None: ...


class StreamBus:
    def __init__(self, log_: EventLog, *, consumer_name: str | None = None,
                 settings: ConsumerSettings | None = None, unsent: UnsentEvents | None = None,
                 append_timeout: float = 2.0):
        self.log = log_
        self.consumer_name = consumer_name or default_consumer_name()
        self.settings = settings or ConsumerSettings()
        self.consumers: dict[str, StreamConsumer] = {}
        self._unsent = unsent
        self._append_timeout = append_timeout  # then park it: a stalled Redis must not stall the outbox
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running = False
        self.parked = 0

    def subscribe(self, consumer: str, handler: EventHandler) -> None:
        c = StreamConsumer(self.log, consumer, handler, consumer=self.consumer_name, settings=self.settings)
        self.consumers[consumer] = c
        if self._running:
            self._start(c)

    async def publish(self, event: DomainEvent) -> None:
        await self.relay(event)

    async def relay(self, event: DomainEvent) -> None:
        """Append to the stream; if it is unreachable, park the event durably (or raise: retried)."""
        try:
            async with asyncio.timeout(self._append_timeout if self._unsent is not None else None):
                await self.log.append(event, time.time())
        except Exception as e:
            if self._unsent is None:
                raise
            await self._unsent.save(event)
            self.parked += 1
            log.warning("bus_append_failed_parked", event_id=event.id, error=repr(e))

    def _start(self, c: StreamConsumer) -> None:
        self._tasks[c.group] = asyncio.create_task(c.run(), name=f"audifi-bus-{c.group}")

    def start(self) -> None:
        self._running = True
        for c in self.consumers.values():
            if c.group not in self._tasks:
                self._start(c)

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_and_wait(tasks)

    async def drain(self) -> int:
        """Let every consumer handle what is in the stream now (tests, dev tools, ``run_background=False``)."""
        total = 0
        while True:
            n = 0
            for c in list(self.consumers.values()):
                n += await c.drain()
            total += n
            if n == 0:
                return total
