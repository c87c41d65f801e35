"""CoinRepository (``uow.coins``): one contract suite for memory and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import attrs
import pytest

from audifi_adapters.coins import register_memory_coin_repository, register_postgres_coin_repository
from audifi_adapters.memory import InMemoryDatabase
from audifi_adapters.postgres import PostgresDatabase
from audifi_core.coins.model import ArtistCoin, CoinStatus
from audifi_core.coins.ports import EventCursor
from audifi_core.errors import Conflict

NOW = datetime(2026, 5, 1, tzinfo=UTC)
WALLET = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"


@pytest.fixture(params=["memory", "postgres"])
def dsn(request) -> str | None:
    return None if request.param == "memory" else request.getfixturevalue("pg_clean")


@pytest.fixture
async def db(dsn):
    if dsn is None:
        register_memory_coin_repository()
        yield InMemoryDatabase()
        return
    register_postgres_coin_repository()
    pg = await PostgresDatabase.connect(dsn, 5)
    yield pg
    await pg.close()


def coin(artist: str = "usr_a", job: str = "job_1", **over: object) -> ArtistCoin:
    values: dict[str, object] = dict(artist_id=artist, name="Ann Coin", symbol="ANN", initial_supply=2**128,
                                     owner_address=WALLET, job_id=job, status=CoinStatus.PENDING, created_at=NOW,
                                     updated_at=NOW)
    values.update(over)
    return ArtistCoin(**values)  # type: ignore[arg-type]


class TestCoinRepository:
    async def test_add_get_by_job(self, db):
        """A coin round-trips (a 2^128 supply included) by artist and by job."""
        async with db.uow() as u:
            await u.coins.add(coin())
        async with db.uow(readonly=True) as u:
            assert await u.coins.get("usr_a") == coin()
            assert await u.coins.by_job("job_1") == coin()
            assert await u.coins.get("usr_b") is None and await u.coins.by_job("job_2") is None

    async def test_one_coin_per_artist(self, db):
        """A second coin for the artist is a Conflict, and the unit of work rolls back with it."""
        async with db.uow() as u:
            await u.coins.add(coin())
        with pytest.raises(Conflict):
            async with db.uow() as u:
                await u.coins.add(coin(job="job_2", symbol="ANNB"))
        async with db.uow(readonly=True) as u:
            assert (await u.coins.get("usr_a")).job_id == "job_1"
            assert await u.coins.by_job("job_2") is None

    async def test_concurrent_adds_one_wins(self, db):
        """Two racing units of work adding the same artist's coin: exactly one commits."""
        async def add(job: str) -> bool:
            try:
                async with db.uow() as u:
                    await u.coins.add(coin(job=job))
                    await asyncio.sleep(0.05)
                return True
            except Conflict:
                return False

        results = await asyncio.gather(add("job_1"), add("job_2"))
        assert sorted(results) == [False, True]

    async def test_deployed_and_update(self, db):
        """An update records the addresses; deployed() lists only deployed coins, oldest first."""
        async with db.uow() as u:
            await u.coins.add(coin("usr_b", "job_b", created_at=NOW.replace(day=2)))
            await u.coins.add(coin("usr_a", "job_a"))
            await u.coins.add(coin("usr_c", "job_c"))
        async with db.uow() as u:
            for who in ("usr_b", "usr_a"):
                c = await u.coins.get(who)
                await u.coins.update(c.deployed("0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40, NOW))
        async with db.uow(readonly=True) as u:
            got = await u.coins.deployed()
        assert [c.artist_id for c in got] == ["usr_a", "usr_b"]
        assert got[0].status is CoinStatus.DEPLOYED and got[0].pool_address == "0x" + "3" * 40
        with pytest.raises(Conflict):
            async with db.uow() as u:
                await u.coins.update(coin("usr_zz", "job_zz"))

    async def test_replace_only_the_failed_one(self, db):
        """replace_failed swaps in a new job only while the record is the named failed (or pending) one."""
        async with db.uow() as u:
            await u.coins.add(coin())
            await u.coins.update(coin().failed(NOW))
        new = coin(job="job_2", attempt=2, symbol="ANNB")
        async with db.uow() as u:
            assert await u.coins.replace_failed(new, "job_other") is False
            assert await u.coins.replace_failed(new, "job_1") is True
        async with db.uow(readonly=True) as u:
            assert await u.coins.get("usr_a") == new and await u.coins.by_job("job_1") is None
        async with db.uow() as u:
            await u.coins.update(attrs.evolve(new.deployed("0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40, NOW)))
            assert await u.coins.replace_failed(coin(job="job_3"), "job_2") is False

    async def test_event_cursor_and_forgetting_a_chain(self, db):
        """The event cursor round-trips; forgetting the chain drops deployed/failed coins and the cursor."""
        async with db.uow(readonly=True) as u:
            assert await u.coins.event_cursor() is None
        async with db.uow() as u:
            await u.coins.set_event_cursor(EventCursor(5, 2))
            await u.coins.set_event_cursor(EventCursor(9, 1))
            await u.coins.add(coin("usr_a", "job_a"))
            await u.coins.add(coin("usr_b", "job_b"))
            await u.coins.update(coin("usr_b", "job_b").deployed("0x" + "1" * 40, "0x" + "2" * 40, "0x" + "3" * 40,
                                                                 NOW))
        async with db.uow(readonly=True) as u:
            assert await u.coins.event_cursor() == EventCursor(9, 1)
        async with db.uow() as u:
            assert await u.coins.forget_chain_state() == 1
        async with db.uow(readonly=True) as u:
            assert await u.coins.event_cursor() is None
            assert await u.coins.get("usr_b") is None and await u.coins.get("usr_a") is not None
