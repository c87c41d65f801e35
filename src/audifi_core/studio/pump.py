"""Coalesced tally updates: the first change goes out at once, then at most one per interval.

Each instance runs one pump. A vote committed here marks its decision dirty (a local
*generation* number). A flush publishes a tally read *after* every commit it covers, so the
update with the highest ``seq`` anywhere always includes every vote (see ``model``). A tally
already read for an HTTP response may be offered and is used when it covers the dirty
generation, saving the read. Fan-out cost follows time, not votes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import attrs
import structlog

from .model import Tally

__all__ = ["TallyPump"]

log = structlog.get_logger("audifi.studio.pump")

ReadTally = Callable[[str], Awaitable[Tally | None]]
Publish = Callable[[str, Tally], Awaitable[None]]


@attrs.define
class _State:
    session_id: str
    dirty: int = 0        # the newest local generation that changed this decision
    published: int = 0    # the generation the last flush covered
    last: float = float("-inf")  # monotonic time the last flush started
    known: Tally | None = None
    known_gen: int = 0
    task: asyncio.Task[None] | None = None


_MAX_FAILURES = 20


class TallyPump:
    def __init__(self, read: ReadTally, publish: Publish, interval: float = 0.05):
        self._read = read
        self._publish = publish
        self.interval = interval
        self._gen = 0
        self._states: dict[str, _State] = {}
        self._closed = False

    def committed(self, session_id: str, decision_id: str) -> int:
        """A vote on ``decision_id`` committed here: schedule a flush; returns its generation."""
        self._gen += 1
        st = self._states.get(decision_id)
        if st is None:
            st = self._states[decision_id] = _State(session_id)
        st.dirty = self._gen
        if st.task is None and not self._closed:
            st.task = asyncio.get_running_loop().create_task(self._run(decision_id, st),
                                                             name=f"studio-pump-{decision_id}")
        return self._gen

    def offer(self, decision_id: str, tally: Tally, generation: int) -> None:
        """A tally read after the commit of ``generation`` (it covers every earlier one)."""
        st = self._states.get(decision_id)
        if st is not None and generation > st.known_gen:
            st.known, st.known_gen = tally, generation

    async def _run(self, decision_id: str, st: _State) -> None:
        failures = 0
        try:
            while st.dirty > st.published:
                wait = st.last + self.interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                gen = st.dirty
                st.last = time.monotonic()
                try:
                    if st.known is not None and st.known_gen >= gen:
                        tally: Tally | None = st.known
                    else:
                        tally = await self._read(decision_id)
                    st.known = None
                    if tally is not None:
                        await self._publish(st.session_id, tally)
                except Exception as e:  # noqa: BLE001 - try again next interval, then give up
                    failures += 1
                    log.warning("tally_flush_failed", decision_id=decision_id, error=repr(e), failures=failures)
                    if failures >= _MAX_FAILURES:
                        st.published = gen
                    continue
                failures = 0
                st.published = gen
        finally:
            st.task = None
            if not self._closed and st.dirty <= st.published:
                # keep the state one more interval, so that the next change waits its turn
                asyncio.get_running_loop().call_later(self.interval, self._forget, decision_id, st)

    def _forget(self, decision_id: str, st: _State) -> None:
        if self._states.get(decision_id) is st and st.task is None and st.dirty <= st.published:
            del self._states[decision_id]

    async def close(self) -> None:
        self._closed = True
        tasks = [st.task for st in self._states.values() if st.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._states.clear()
