"""One consumer of one group: read, handle, XACK; take over what crashed consumers left; dead-letter.

An entry is acknowledged only after its handler returned, so a consumer killed at any point
(SIGKILL included) leaves its entries pending; another consumer claims them after
``min_idle_ms`` and handlers are idempotent on the event id, so nothing is lost or counted twice.
An entry whose handler keeps failing is retried on each claim and, after ``max_deliveries``
deliveries, moved to the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import attrs
import structlog

from audifi_core.ports import EventHandler

from .log import Delivery, EventLog

__all__ = ["ConsumerSettings", "StreamConsumer"]

log = structlog.get_logger("audifi.bus")


@attrs.frozen
class ConsumerSettings:
    batch: int = 100
    block_ms: int = 1000
    min_idle_ms: int = 30_000  # pending this long without an ack → another consumer may take it
    max_deliveries: int = 5  # a delivery after this many goes to the dead-letter stream
    claim_every: float = 5.0  # seconds between XAUTOCLAIM sweeps


class StreamConsumer:
    def __init__(self, log_: EventLog, group: str, handler: EventHandler, *, consumer: str,
                 settings: ConsumerSettings | None = None,
                 after_handle: Callable[[Delivery], Awaitable[None]] | None = None):
        self.log = log_
        self.group = group
        self.consumer = consumer
        self.settings = settings or ConsumerSettings()
        self._handler = handler
        self._after_handle = after_handle  # tests: a hook between handling and XACK
        self._last_claim = 0.0
        self._resumed = False
        self.handled = 0
        self.failed = 0
        self.dead = 0
        self._errors: dict[str, str] = {}

    async def _handle(self, deliveries: list[Delivery]) -> int:
        s = self.settings
        done: list[str] = []
        try:
            for d in deliveries:
                if d.deliveries > s.max_deliveries:
                    error = self._errors.pop(d.msg_id, "failed on another consumer")
                    await self.log.dead_letter(self.group, d, f"{d.deliveries - 1} deliveries failed; last: {error}")
                    self.dead += 1
                    log.error("bus_dead_letter", group=self.group, event_id=d.event.id, type=d.event.type,
                              error=error)
                    continue
                try:
                    await self._handler(d.event)
                except Exception as e:  # noqa: BLE001 - stays pending; retried on a later claim
                    self.failed += 1
                    self._errors[d.msg_id] = repr(e)[:500]
                    log.warning("bus_handler_failed", group=self.group, event_id=d.event.id, type=d.event.type,
                                deliveries=d.deliveries, error=repr(e))
                    continue
                self._errors.pop(d.msg_id, None)
                if self._after_handle is not None:
                    await self._after_handle(d)
                done.append(d.msg_id)
                self.handled += 1
        finally:
            if done:
                await self.log.ack(self.group, done)
        return len(deliveries)

    async def step(self, *, block: bool = True, claim: bool | None = None) -> int:
        """One round: (when due) claim stale entries, then read new ones; returns how many were seen."""
        s = self.settings
        seen = 0
        if not self._resumed:
            await self.log.ensure_group(self.group)
            seen += await self._handle(await self.log.pending_of(self.consumer, self.group, s.batch))
            self._resumed = True
        now = time.monotonic()
        if claim or (claim is None and now - self._last_claim >= s.claim_every):
            self._last_claim = now
            seen += await self._handle(await self.log.claim_stale(self.group, self.consumer, s.min_idle_ms, s.batch))
        seen += await self._handle(await self.log.read(self.group, self.consumer, s.batch,
                                                       s.block_ms if block and not seen else None))
        return seen

    async def drain(self) -> int:
        """Handle everything new (and everything stale) without waiting; for tests and dev tools."""
        total = await self.step(block=False, claim=True)
        while True:
            n = await self.step(block=False, claim=False)
            total += n
            if n == 0:
                return total

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                await self.step()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - Redis away, etc.: back off and go on
                log.warning("bus_consumer_error", group=self.group, error=repr(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
