"""``uow.coins`` on PostgreSQL (tables from migration 0005_coins.sql)."""

from __future__ import annotations

import asyncpg

from audifi_core.coins.model import ArtistCoin, CoinStatus
from audifi_core.coins.ports import EventCursor
from audifi_core.errors import Conflict

from ..postgres.db import PostgresUnitOfWork

__all__ = ["PostgresCoinRepository", "register_postgres_coin_repository"]

_COLS = ("artist_id, name, symbol, initial_supply, owner_address, job_id, status, coin_address, staking_address, "
         "pool_address, attempt, created_at, updated_at")


def _coin(r: asyncpg.Record) -> ArtistCoin:
    return ArtistCoin(artist_id=r["artist_id"], name=r["name"], symbol=r["symbol"],
                      initial_supply=int(r["initial_supply"]), owner_address=r["owner_address"], job_id=r["job_id"],
                      status=CoinStatus(r["status"]), created_at=r["created_at"], updated_at=r["updated_at"],
                      coin_address=r["coin_address"], staking_address=r["staking_address"],
                      pool_address=r["pool_address"], attempt=r["attempt"])


def _args(c: ArtistCoin) -> tuple[object, ...]:
    return (c.artist_id, c.name, c.symbol, c.initial_supply, c.owner_address, c.job_id, c.status.value,
            c.coin_address, c.staking_address, c.pool_address, c.attempt, c.created_at, c.updated_at)


class PostgresCoinRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    async def add(self, coin: ArtistCoin) -> None:
        try:
            # a savepoint keeps the caller's transaction usable after a unique violation
            async with self._c.transaction():
                await self._c.execute(f"INSERT INTO artist_coins ({_COLS}) VALUES "
                                      "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)", *_args(coin))
        except asyncpg.UniqueViolationError as e:
            raise Conflict("This artist has a coin already", details={"artistId": coin.artist_id}) from e

    async def replace_failed(self, coin: ArtistCoin, failed_job_id: str) -> bool:
        try:
            async with self._c.transaction():
                status = await self._c.execute(
                    "UPDATE artist_coins SET name=$2, symbol=$3, initial_supply=$4, owner_address=$5, job_id=$6, "
                    "status=$7, coin_address=$8, staking_address=$9, pool_address=$10, attempt=$11, created_at=$12, "
                    "updated_at=$13 WHERE artist_id=$1 AND job_id=$14 AND status <> 'deployed'",
                    *_args(coin), failed_job_id)
        except asyncpg.UniqueViolationError as e:
            raise Conflict("This job already has a coin", details={"jobId": coin.job_id}) from e
        return status.endswith(" 1")

    async def get(self, artist_id: str) -> ArtistCoin | None:
        r = await self._c.fetchrow(f"SELECT {_COLS} FROM artist_coins WHERE artist_id = $1", artist_id)
        return _coin(r) if r else None

    async def by_job(self, job_id: str) -> ArtistCoin | None:
        r = await self._c.fetchrow(f"SELECT {_COLS} FROM artist_coins WHERE job_id = $1", job_id)
        return _coin(r) if r else None

    async def update(self, coin: ArtistCoin) -> None:
        status = await self._c.execute(
            "UPDATE artist_coins SET name=$2, symbol=$3, initial_supply=$4, owner_address=$5, status=$7, "
            "coin_address=$8, staking_address=$9, pool_address=$10, attempt=$11, created_at=$12, updated_at=$13 "
            "WHERE artist_id=$1 AND job_id=$6", *_args(coin))
        if status.endswith(" 0"):
            raise Conflict("No such coin record", details={"artistId": coin.artist_id})

    async def deployed(self) -> list[ArtistCoin]:
        rows = await self._c.fetch(f"SELECT {_COLS} FROM artist_coins WHERE status = 'deployed' "
                                   "ORDER BY created_at, artist_id")
        return [_coin(r) for r in rows]

    async def forget_chain_state(self) -> int:
        status = await self._c.execute("DELETE FROM artist_coins WHERE status <> 'pending'")
        await self._c.execute("DELETE FROM coin_event_cursor")
        return int(status.split()[-1])

    async def event_cursor(self) -> EventCursor | None:
        r = await self._c.fetchrow("SELECT block_number, log_index FROM coin_event_cursor WHERE id = 1")
        return EventCursor(r["block_number"], r["log_index"]) if r else None

    async def set_event_cursor(self, cursor: EventCursor) -> None:
        await self._c.execute(
            "INSERT INTO coin_event_cursor (id, block_number, log_index) VALUES (1, $1, $2) "
            "ON CONFLICT (id) DO UPDATE SET block_number = EXCLUDED.block_number, log_index = EXCLUDED.log_index",
            cursor.block_number, cursor.log_index)


def register_postgres_coin_repository() -> None:
    """Make ``uow.coins`` exist on every PostgreSQL unit of work."""
    PostgresUnitOfWork.register("coins", PostgresCoinRepository)
