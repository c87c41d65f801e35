"""One contract for the masters repositories (``uow.masters``, ``uow.master_reads``), run on the
in-memory database and on PostgreSQL; every limit raced by concurrent units of work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from audifi_adapters.chain.store_memory import register_memory_chain_repositories
from audifi_adapters.chain.store_postgres import register_postgres_chain_repositories
from audifi_adapters.masters import (
    register_memory_master_repositories,
    register_postgres_master_repositories,
)
from audifi_adapters.memory.store import InMemoryDatabase
from audifi_adapters.postgres.db import PostgresDatabase
from audifi_core.chain.model import ChainLog, JobError
from audifi_core.errors import Conflict
from audifi_core.masters.model import Allocation, Ipo, Master, MasterStatus, Money, TokenState

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SHARES = "0x" + "11" * 20
VAULT = "0x" + "22" * 20
ZERO = "0x" + "00" * 20
A = "0x" + "aa" * 20
B = "0x" + "bb" * 20


@attrs.define
class Store:
    kind: str
    uow: Callable[..., Any]


@pytest.fixture(params=["memory", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        register_memory_chain_repositories()
        register_memory_master_repositories()
        yield Store("memory", InMemoryDatabase().uow)
        return
    register_postgres_chain_repositories()
    register_postgres_master_repositories()
    dsn = request.getfixturevalue("pg_dsn")
    pg = await PostgresDatabase.connect(dsn, 10)
    async with pg.connection() as c:
        await c.execute("TRUNCATE masters, master_quota, ipos, ipo_tokens, share_allocations, custodial_addresses, "
                        "master_deposits_seen, chain_logs, chain_share_owners CASCADE")
    try:
        yield Store("postgres", pg.uow)
    finally:
        await pg.close()


def a_master(mid: str, artist: str = "usr_a", status: MasterStatus = MasterStatus.PENDING) -> Master:
    return Master(id=mid, artist_id=artist, title=f"title {mid}", metadata={"title": f"title {mid}"},
                  audio_cid="bafkaudio", metadata_cid="bafkmeta", artist_address=A, status=status, created_at=T0,
                  updated_at=T0, deploy_job_id="job_1")


def an_ipo(mid: str, total: int = 10, **over: Any) -> Ipo:
    return attrs.evolve(Ipo(master_id=mid, total_shares=total, price=Money(500, "usd"), starts_at=T0,
                            ends_at=T0 + timedelta(days=7), max_per_user=1, created_at=T0), **over)


async def add(store: Store, *masters: Master) -> None:
    async with store.uow() as u:
        for m in masters:
            await u.masters.add(m)


async def race(store: Store, n: int, fn: Callable[[Any, int], Any]) -> list[Any]:
    """``n`` units of work running ``fn(uow, i)`` at once; each commits on its own."""
    async def one(i: int) -> Any:
        async with store.uow() as u:
            return await fn(u, i)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


class TestMasters:
    async def test_add_get_and_list_by_visibility_newest_first(self, store: Store) -> None:
        """Registered masters list for everyone; pending/failed only for their artist; ids descend; a cursor."""
        await add(store, a_master("mst_1", status=MasterStatus.REGISTERED), a_master("mst_2"),
                  a_master("mst_3", artist="usr_b", status=MasterStatus.REGISTERED))
        async with store.uow() as u:
            with pytest.raises(Conflict):
                await u.masters.add(a_master("mst_1"))
        async with store.uow(readonly=True) as u:
            got = await u.masters.get("mst_2")
            assert got == a_master("mst_2") and got.ipo is None
            assert await u.masters.get("mst_x") is None
            everyone = await u.masters.list(artist_id=None, before=None, limit=10, visible_to=None)
            assert [m.id for m in everyone] == ["mst_3", "mst_1"]
            mine = await u.masters.list(artist_id="usr_a", before=None, limit=10, visible_to="usr_a")
            assert [m.id for m in mine] == ["mst_2", "mst_1"]
            page = await u.masters.list(artist_id=None, before="mst_3", limit=1, visible_to="usr_a")
            assert [m.id for m in page] == ["mst_2"]

    async def test_registered_once_failed_never_after_and_locked_once(self, store: Store) -> None:
        """mark_registered is true once (and sets both addresses); failed cannot undo it; lock once."""
        await add(store, a_master("mst_1"), a_master("mst_2"))
        async with store.uow() as u:
            assert await u.masters.mark_failed("mst_2", JobError("TX_REVERTED", "boom"), T0)
            assert await u.masters.mark_registered("mst_1", SHARES, VAULT, T0)
            assert not await u.masters.mark_registered("mst_1", SHARES, VAULT, T0)
            assert not await u.masters.mark_failed("mst_1", JobError("X", "y"), T0)
            assert await u.masters.lock("mst_1", "bafkfinal", T0)
            assert not await u.masters.lock("mst_1", "bafkother", T0)
        async with store.uow(readonly=True) as u:
            m = await u.masters.get("mst_1")
            assert (m.status, m.contract_address, m.dividend_address) == (MasterStatus.REGISTERED,
                                                                           "0x" + "11" * 20, "0x" + "22" * 20)
            assert (m.final_audio_cid, m.locked_at) == ("bafkfinal", T0)
            assert (await u.masters.by_contract(SHARES.upper().replace("0X", "0x"))).id == "mst_1"
            failed = await u.masters.get("mst_2")
            assert failed.status is MasterStatus.FAILED and failed.error == JobError("TX_REVERTED", "boom")
        async with store.uow() as u:  # a retried deploy registers a failed master
            assert await u.masters.mark_registered("mst_2", B, A, T0)
        async with store.uow(readonly=True) as u:
            assert (await u.masters.get("mst_2")).error is None

    async def test_the_daily_quota_holds_under_concurrency(self, store: Store) -> None:
        """8 racing registrations with a limit of 3: exactly 3 counted; another day starts at 0."""
        day = T0.date()
        got = await race(store, 8, lambda u, i: u.masters.take_quota("usr_a", day, 3))
        assert sorted(got) == [False] * 5 + [True] * 3
        async with store.uow() as u:
            assert await u.masters.quota_used("usr_a", day) == 3
            assert await u.masters.quota_used("usr_b", day) == 0
            assert await u.masters.take_quota("usr_a", day + timedelta(days=1), 3)
            assert not await u.masters.take_quota("usr_b", day, 0)


class TestIpos:
    async def test_one_ipo_and_the_mint_cap_under_concurrency(self, store: Store) -> None:
        """Of 5 racing IPOs one is stored; 6 racing mints of 3 against 10 shares: exactly 3 pass (3, 6, 9)."""
        await add(store, a_master("mst_1", status=MasterStatus.REGISTERED))
        got = await race(store, 5, lambda u, i: u.masters.add_ipo(an_ipo("mst_1", 10 + i)))
        assert sorted(got) == [False] * 4 + [True]
        async with store.uow() as u:
            await u.masters.set_supply_job("mst_1", "job_supply")
        minted = await race(store, 6, lambda u, i: u.masters.request_mint("mst_1", 3))
        async with store.uow(readonly=True) as u:
            ipo = (await u.masters.get("mst_1")).ipo
        assert ipo.supply_job_id == "job_supply"
        cap = ipo.total_shares
        passed = sorted(v for v in minted if v is not None)
        assert passed == list(range(3, cap // 3 * 3 + 1, 3)) and passed[-1] <= cap
        async with store.uow() as u:
            assert await u.masters.request_mint("mst_1", cap - passed[-1] + 1) is None
            assert await u.masters.request_mint("mst_x", 1) is None
            after = await u.masters.add_minted("mst_1", 3)
            assert (after.minted, after.mint_requested) == (3, passed[-1])

    async def test_launches_and_closes_are_due_then_marked_once(self, store: Store) -> None:
        """A fully minted IPO is due to launch inside its window; an ended one to close; each marked once."""
        await add(store, a_master("mst_1"), a_master("mst_2"), a_master("mst_3"))
        async with store.uow() as u:
            await u.masters.add_ipo(an_ipo("mst_1", 2, mint_requested=2, minted=2))
            await u.masters.add_ipo(an_ipo("mst_2", 2, mint_requested=1, minted=1))
            await u.masters.add_ipo(an_ipo("mst_3", 2, starts_at=T0 - timedelta(days=9),
                                           ends_at=T0 - timedelta(days=1)))
        async with store.uow() as u:
            assert await u.masters.due_launches(T0, 10) == ["mst_1"]
            assert await u.masters.due_launches(T0 - timedelta(seconds=1), 10) == []
            assert await u.masters.due_closes(T0, 10) == ["mst_3"]
            assert await u.masters.mark_launched("mst_1", T0)
            assert not await u.masters.mark_launched("mst_1", T0)
            assert await u.masters.mark_closed("mst_3", T0)
            assert not await u.masters.mark_closed("mst_3", T0)
            assert await u.masters.due_launches(T0, 10) == [] and await u.masters.due_closes(T0, 10) == []
            assert (await u.masters.get("mst_1")).ipo.launched_at == T0

    async def test_parked_mints_come_back_once(self, store: Store) -> None:
        """Mint jobs parked for a master are returned once, and only that master's."""
        await add(store, a_master("mst_1"), a_master("mst_2"))
        async with store.uow() as u:
            await u.masters.park_mint("mst_1", "job_b")
            await u.masters.park_mint("mst_1", "job_a")
            await u.masters.park_mint("mst_1", "job_a")
            await u.masters.park_mint("mst_2", "job_c")
        async with store.uow() as u:
            assert await u.masters.unpark_mints("mst_1") == ["job_a", "job_b"]
            assert await u.masters.unpark_mints("mst_1") == []
            assert await u.masters.unpark_mints("mst_2") == ["job_c"]


class TestTokenLedger:
    async def test_racing_reservations_never_share_an_id(self, store: Store) -> None:
        """5 racing takers of 3 ids among 10: 10 distinct ids handed out, the last taker gets what is left."""
        await add(store, a_master("mst_1"))
        got = await race(store, 5, lambda u, i: u.masters.take_tokens("mst_1", 3, f"r{i}", TokenState.RESERVED, 10))
        flat = [t for ids in got for t in ids]
        assert sorted(flat) == list(range(1, 11)) and len(set(flat)) == 10
        assert sorted(len(ids) for ids in got) == [0, 1, 3, 3, 3]

    async def test_release_sell_enter_and_states(self, store: Store) -> None:
        """release frees only reserved ids; mark_sold counts into sharesSold; enter skips taken ids."""
        await add(store, a_master("mst_1"))
        async with store.uow() as u:
            await u.masters.add_ipo(an_ipo("mst_1", 10))
            assert await u.masters.take_tokens("mst_1", 3, "r1", TokenState.RESERVED, 10) == [1, 2, 3]
            assert await u.masters.take_tokens("mst_1", 2, "r2", TokenState.RESERVED, 10) == [4, 5]
            assert await u.masters.enter_tokens("mst_1", [5, 6, 7], "alloc", TokenState.ALLOCATED) == [6, 7]
            assert await u.masters.mark_sold("r1") == 3
            assert await u.masters.mark_sold("r1") == 0
            assert await u.masters.release("r1") == 0  # sold ids stay sold
            assert await u.masters.release("r2") == 2
            assert await u.masters.reservation("r1") == [("mst_1", t, TokenState.SOLD) for t in (1, 2, 3)]
            assert await u.masters.reservation("r2") == []
            states = await u.masters.token_states("mst_1", [1, 4, 6, 9])
            assert states == {1: (TokenState.SOLD, "r1"), 6: (TokenState.ALLOCATED, "alloc")}
            assert await u.masters.take_tokens("mst_1", 10, "close", TokenState.ARTIST, 10) == [4, 5, 8, 9, 10]
        async with store.uow(readonly=True) as u:
            assert (await u.masters.get("mst_1")).ipo.shares_sold == 3

    async def test_a_rolled_back_unit_of_work_leaves_no_reservation(self, store: Store) -> None:
        """Reservations made in a unit of work that fails are gone."""
        await add(store, a_master("mst_1"))
        with pytest.raises(RuntimeError):
            async with store.uow() as u:
                await u.masters.take_tokens("mst_1", 2, "r1", TokenState.RESERVED, 10)
                raise RuntimeError("checkout failed")
        async with store.uow(readonly=True) as u:
            assert await u.masters.reservation("r1") == []


class TestAllocations:
    async def test_allocations_holds_and_custodial_owners(self, store: Store) -> None:
        """An allocation is found by its job; the latest hold wins; a custodial address maps to its user."""
        await add(store, a_master("mst_1"))
        async with store.uow() as u:
            await u.masters.add_allocation(Allocation("job_1", "mst_1", "usr_f", A.upper().replace("0X", "0x"),
                                                      (1, 2), T0 + timedelta(days=7), T0))
            await u.masters.add_allocation(Allocation("job_2", "mst_1", "usr_f", A, (3,), T0 + timedelta(days=9), T0))
            await u.masters.remember_custodial(A, "usr_f")
            await u.masters.remember_custodial(A, "usr_other")
        async with store.uow(readonly=True) as u:
            a = await u.masters.allocation("job_1")
            assert (a.token_ids, a.user_id, a.address.lower()) == ((1, 2), "usr_f", A)
            assert await u.masters.allocation("job_x") is None
            assert await u.masters.hold_until("usr_f", "mst_1") == T0 + timedelta(days=9)
            assert await u.masters.hold_until("usr_g", "mst_1") is None
            assert await u.masters.custodial_owner(A) == "usr_f"
            assert await u.masters.custodial_owner(B) is None


def transfer(i: int, to: str, token: int, frm: str = ZERO, block: int = 1) -> ChainLog:
    return ChainLog(address=SHARES, event="Transfer", args={"from": frm, "to": to, "tokenId": token},
                    block_number=block, block_hash=f"0xb{block}", tx_hash=f"0xt{block}", log_index=i, topic_count=4)


class TestProjectionReads:
    async def test_holdings_mints_and_deposits_from_the_projection(self, store: Store) -> None:
        """Holdings group the owners table; mint positions are the from-zero transfers; deposits are seen once."""
        await add(store, a_master("mst_1"))
        async with store.uow() as u:
            assert await u.masters.mark_registered("mst_1", SHARES, VAULT, T0)
            logs = [transfer(0, A, 1), transfer(1, A, 2), transfer(2, A, 3), transfer(0, B, 2, frm=A, block=3)]
            for lg in logs:
                assert await u.chain_projection.record_log(lg)
                await u.chain_projection.set_owner(lg.address, lg.args["tokenId"], lg.args["to"], lg.block_number,
                                                   lg.log_index)
            dep = ChainLog(address=VAULT, event="DividendDeposited", args={"masterId": "0x00", "amount": 900},
                           block_number=2, block_hash="0xb2", tx_hash="0xt2", log_index=0, topic_count=1)
            await u.chain_projection.record_log(dep, T0)
        async with store.uow(readonly=True) as u:
            rows = await u.master_reads.holdings([A.upper().replace("0X", "0x"), B])
            got = {(r.owner.lower(), r.count, r.token_ids) for r in rows}
            assert got == {(A, 2, (1, 3)), (B, 1, (2,))}
            assert all(r.contract.lower() == SHARES for r in rows)
            assert await u.master_reads.holdings([]) == []
            assert await u.master_reads.mint_positions(SHARES) == [(1, 0), (1, 1), (1, 2)]
        async with store.uow() as u:
            assert await u.master_reads.unseen_deposits(10, final_block=1) == []
            (seen,) = await u.master_reads.unseen_deposits(10, final_block=2)
            assert seen[0] == "mst_1" and (seen[1].amount, seen[1].tx_hash, seen[1].at) == (900, "0xt2", T0)
            assert await u.master_reads.mark_seen("0xt2", 0)
            assert not await u.master_reads.mark_seen("0xt2", 0)
            assert await u.master_reads.unseen_deposits(10) == []
