"""A read-through cache of chain reads keyed by block number: nothing is served from an older block.

Concurrent readers of the same key at the same block share one chain call (single flight); a failed
call is not cached. When a newer block is seen, everything older than the previous block is dropped.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

__all__ = ["BlockCache"]

T = TypeVar("T")


class BlockCache:
    def __init__(self, max_entries: int = 4096):
        self._max = max_entries
        self._entries: OrderedDict[tuple[Any, ...], asyncio.Future[Any]] = OrderedDict()
        self._latest = -1
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, block: int, key: tuple[Hashable, ...], fetch: Callable[[], Awaitable[T]]) -> T:
        """The value of ``key`` at ``block``: cached, or fetched once for every concurrent caller."""
        if block > self._latest:
            self._latest = block
            for k in [k for k in self._entries if k[0] < block - 1]:
                del self._entries[k]
        full = (block, *key)
        fut = self._entries.get(full)
        if fut is None:
            self.misses += 1
            fut = asyncio.ensure_future(fetch())
            self._entries[full] = fut

            def forget_failure(f: asyncio.Future[Any], k: tuple[Any, ...] = full) -> None:
                if f.cancelled() or f.exception() is not None:
                    if self._entries.get(k) is f:
                        del self._entries[k]

            fut.add_done_callback(forget_failure)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        else:
            self.hits += 1
            self._entries.move_to_end(full)
        return await asyncio.shield(fut)

    def clear(self) -> None:
        self._entries.clear()
