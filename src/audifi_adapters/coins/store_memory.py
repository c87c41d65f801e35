"""``uow.coins`` in memory: rows in ``db.table("artist_coins")``, written through the undo log."""

from __future__ import annotations

from typing import Any

from audifi_core.coins.model import ArtistCoin, CoinStatus
from audifi_core.coins.ports import EventCursor
from audifi_core.errors import Conflict

from ..memory.store import InMemoryRepository, InMemoryUnitOfWork

__all__ = ["InMemoryCoinRepository", "register_memory_coin_repository"]


class InMemoryCoinRepository(InMemoryRepository):

    @property
    def _coins(self) -> dict[str, ArtistCoin]:
        return self._db.table("artist_coins")

    @property
    def _meta(self) -> dict[str, Any]:
        return self._db.table("coin_meta")

    def _job_taken(self, coin: ArtistCoin, ignore: str | None = None) -> bool:
        return any(c.job_id == coin.job_id for a, c in self._coins.items() if a != ignore)

    async def add(self, coin: ArtistCoin) -> None:
        self._w()
        if coin.artist_id in self._coins or self._job_taken(coin):
            raise Conflict("This artist has a coin already", details={"artistId": coin.artist_id})
        self._undo.set(self._coins, coin.artist_id, coin)

    async def replace_failed(self, coin: ArtistCoin, failed_job_id: str) -> bool:
        self._w()
        old = self._coins.get(coin.artist_id)
        if old is None or old.job_id != failed_job_id or old.status is CoinStatus.DEPLOYED:
            return False
        if self._job_taken(coin, ignore=coin.artist_id):
            raise Conflict("This job already has a coin", details={"jobId": coin.job_id})
        self._undo.set(self._coins, coin.artist_id, coin)
        return True

    async def get(self, artist_id: str) -> ArtistCoin | None:
        return self._coins.get(artist_id)

    async def by_job(self, job_id: str) -> ArtistCoin | None:
        return next((c for c in self._coins.values() if c.job_id == job_id), None)

    async def update(self, coin: ArtistCoin) -> None:
        self._w()
        old = self._coins.get(coin.artist_id)
        if old is None or old.job_id != coin.job_id:
            raise Conflict("No such coin record", details={"artistId": coin.artist_id})
        self._undo.set(self._coins, coin.artist_id, coin)

    async def deployed(self) -> list[ArtistCoin]:
        return sorted((c for c in self._coins.values() if c.status is CoinStatus.DEPLOYED),
                      key=lambda c: (c.created_at, c.artist_id))

    async def forget_chain_state(self) -> int:
        self._w()
        gone = [a for a, c in self._coins.items() if c.status is not CoinStatus.PENDING]
        for a in gone:
            self._undo.delete(self._coins, a)
        self._undo.delete(self._meta, "cursor")
        return len(gone)

    async def event_cursor(self) -> EventCursor | None:
        return self._meta.get("cursor")

    async def set_event_cursor(self, cursor: EventCursor) -> None:
        self._w()
        self._undo.set(self._meta, "cursor", cursor)


def register_memory_coin_repository() -> None:
    """Make ``uow.coins`` exist on every in-memory unit of work."""
    InMemoryUnitOfWork.register("coins", InMemoryCoinRepository)
