"""One contract suite per chain repository port, run on the in-memory database and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from audifi_chain_fixtures import Store  # type: ignore[import-not-found]

from audifi_core.chain.model import (
    BlockRef,
    ChainJob,
    ChainLog,
    DeployCoin,
    JobError,
    JobKind,
    JobStatus,
    MintShares,
    TransferShares,
    TxRecord,
    TxState,
    custody_signer,
)
from audifi_core.chain.ports import ChainIdentity, ContractRef
from audifi_core.errors import Conflict

T0 = datetime(2026, 1, 1, tzinfo=UTC)
A = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
B = "0x6813Eb9362372EEF6200f3b1dbC3f819671cBA69"
SHARES = "0x1efF47bc3a10a45D4B230B5d10E37751FE6AA718"
VAULT = "0xe1AB8145F7E55DC933d51a18c793F901A3A0b276"
STAKING = "0xE57bFE9F44b819898F47BF37E5AF72a0783e1141"
ZERO = "0x0000000000000000000000000000000000000000"


def a_job(n: int, op_key: str | None = None, **kw: object) -> ChainJob:
    values: dict[str, object] = dict(id=f"job_{n}", kind=JobKind.MINT, status=JobStatus.QUEUED, requester_id="usr_1",
                                     op_key=op_key or f"op-{n}", call=MintShares(SHARES, B, 3), created_at=T0,
                                     updated_at=T0)
    values.update(kw)
    return ChainJob(**values)  # type: ignore[arg-type]


def a_tx(n: int, job_id: str | None, nonce: int, state: TxState = TxState.SIGNED) -> TxRecord:
    return TxRecord(id=f"ctx_{n}", job_id=job_id, step=0, sender=A, nonce=nonce, raw=bytes([n]) * 40,
                    tx_hash=f"0x{n:064x}", max_fee=3 * 10**30, priority_fee=10**9, state=state, created_at=T0,
                    updated_at=T0)


def a_log(n: int, block: int, event: str, args: dict, address: str = SHARES, topics: int = 4) -> ChainLog:
    return ChainLog(address=address, event=event, args=args, block_number=block, block_hash=f"0x{block:064x}",
                    tx_hash=f"0x{n:064x}", log_index=n % 7, topic_count=topics)


class TestJobRepository:
    async def test_add_get_update_round_trip_every_field(self, chain_store: Store) -> None:
        """A job reads back as written, calls, big amounts, hashes, errors and state included."""
        job = a_job(1, kind=JobKind.DEPLOY_COIN, call=DeployCoin(A, "Coin", "CN", 10**27))
        async with chain_store.uow() as u:
            assert await u.chain_jobs.add(job) == job
        changed = a_job(1, kind=JobKind.DEPLOY_COIN, call=DeployCoin(A, "Coin", "CN", 10**27),
                        status=JobStatus.FAILED, tx_hashes=("0xaa", "0xbb"), result={"x": 1},
                        error=JobError("TX_REVERTED", "no"), attempts=2, step=1, state={"firstId": 4})
        async with chain_store.uow() as u:
            await u.chain_jobs.update(changed)
        async with chain_store.uow(readonly=True) as u:
            assert await u.chain_jobs.get("job_1") == changed
            assert await u.chain_jobs.get_by_op_key("op-1") == changed
            assert await u.chain_jobs.get("job_nope") is None

    async def test_a_repeated_op_key_returns_the_first_job(self, chain_store: Store) -> None:
        """op_key is unique: the second add returns the stored job and inserts nothing."""
        t = TransferShares(SHARES, A, B, (1, 2), signer=custody_signer(3))
        async with chain_store.uow() as u:
            first = await u.chain_jobs.add(a_job(1, "same", kind=JobKind.WITHDRAW, call=t))
        async with chain_store.uow() as u:
            second = await u.chain_jobs.add(a_job(2, "same"))
        assert second == first and second.call == t
        async with chain_store.uow(readonly=True) as u:
            assert await u.chain_jobs.get("job_2") is None

    async def test_queued_oldest_first_and_submitted(self, chain_store: Store) -> None:
        """queued() is oldest first within the limit; submitted() lists submitted jobs."""
        async with chain_store.uow() as u:
            for n, minute in ((1, 3), (2, 1), (3, 2)):
                await u.chain_jobs.add(a_job(n, updated_at=T0.replace(minute=minute)))
            await u.chain_jobs.add(a_job(4, status=JobStatus.SUBMITTED))
        async with chain_store.uow(readonly=True) as u:
            assert [j.id for j in await u.chain_jobs.queued(2)] == ["job_2", "job_3"]
            assert [j.id for j in await u.chain_jobs.submitted()] == ["job_4"]

    async def test_transactions_are_stored_once_and_open_ones_listed_by_nonce(self, chain_store: Store) -> None:
        """Raw bytes round-trip; a hash is stored once; open_txs excludes final/replaced/dropped."""
        async with chain_store.uow() as u:
            await u.chain_jobs.add(a_job(1))
            await u.chain_jobs.add_tx(a_tx(1, "job_1", 7))
            await u.chain_jobs.add_tx(a_tx(2, "job_1", 5, TxState.BROADCAST))
            await u.chain_jobs.add_tx(a_tx(3, None, 6, TxState.FINAL))
        with pytest.raises(Conflict):
            async with chain_store.uow() as u:
                await u.chain_jobs.add_tx(a_tx(1, "job_1", 7))
        async with chain_store.uow() as u:
            await u.chain_jobs.update_tx(a_tx(1, "job_1", 7, TxState.MINED))
        async with chain_store.uow(readonly=True) as u:
            assert [t.nonce for t in await u.chain_jobs.open_txs()] == [5, 7]
            txs = await u.chain_jobs.txs_of("job_1")
        assert [t.id for t in txs] == ["ctx_1", "ctx_2"]
        assert txs[0].raw == bytes([1]) * 40 and txs[0].state is TxState.MINED and txs[0].max_fee == 3 * 10**30

    async def test_a_rolled_back_unit_of_work_keeps_nothing(self, chain_store: Store) -> None:
        """Jobs and transactions written in a failed unit of work vanish."""
        with pytest.raises(RuntimeError):
            async with chain_store.uow() as u:
                await u.chain_jobs.add(a_job(1))
                await u.chain_jobs.add_tx(a_tx(1, "job_1", 0))
                raise RuntimeError
        async with chain_store.uow(readonly=True) as u:
            assert await u.chain_jobs.get("job_1") is None and await u.chain_jobs.open_txs() == []


class TestNonceRepository:
    async def test_advance_is_conditional_on_the_expected_nonce(self, chain_store: Store) -> None:
        """Only the holder of the current value moves it; init never overwrites; reset does."""
        async with chain_store.uow() as u:
            assert await u.chain_nonces.get(A) is None
            await u.chain_nonces.init(A, 5)
            await u.chain_nonces.init(A.lower(), 9)
            assert await u.chain_nonces.advance(A, 5) is True
            assert await u.chain_nonces.advance(A, 5) is False
            assert await u.chain_nonces.advance(A, 6, 10) is True
            assert await u.chain_nonces.get(A.lower()) == 10
            await u.chain_nonces.reset(A, 2)
            assert await u.chain_nonces.get(A) == 2
            await u.chain_nonces.forget_all()
            assert await u.chain_nonces.get(A) is None


class TestCursorRepository:
    async def test_identity_cursor_and_remembered_blocks(self, chain_store: Store) -> None:
        """Identity and cursor round-trip; remembered blocks list highest first, forget and prune."""
        async with chain_store.uow() as u:
            assert await u.chain_cursor.identity() is None and await u.chain_cursor.cursor() is None
            await u.chain_cursor.set_identity(ChainIdentity(131277322940537, "0xgen"))
            for n in range(1, 6):
                await u.chain_cursor.remember(BlockRef(n, f"0x{n}", f"0x{n - 1}", 100 + n))
            await u.chain_cursor.remember(BlockRef(3, "0x3b", "", 0))  # a re-org replaced block 3
            await u.chain_cursor.set_cursor(BlockRef(5, "0x5", "0x4", 105))
        async with chain_store.uow() as u:
            assert await u.chain_cursor.identity() == ChainIdentity(131277322940537, "0xgen")
            assert await u.chain_cursor.cursor() == BlockRef(5, "0x5", "0x4", 105)
            assert [b.number for b in await u.chain_cursor.blocks_after(2)] == [5, 4, 3]
            assert (await u.chain_cursor.blocks_after(2))[2].hash == "0x3b"
            await u.chain_cursor.forget_after(4)
            await u.chain_cursor.prune_below(2)
            assert [b.number for b in await u.chain_cursor.blocks_after(-1)] == [4, 3, 2]
            await u.chain_cursor.set_cursor(None)
            assert await u.chain_cursor.cursor() is None


class TestProjectionRepository:
    async def test_owners_follow_the_newest_transfer_and_roll_back(self, chain_store: Store) -> None:
        """set_owner keeps the newest position; rollback restores the previous owner from stored logs."""
        async with chain_store.uow() as u:
            p = u.chain_projection
            await p.add_contract(ContractRef(SHARES, "shares", "0xm", 1))
            for n, block, frm, to in ((1, 1, ZERO, A), (2, 2, A, B)):
                lg = a_log(n, block, "Transfer", {"from": frm, "to": to, "tokenId": 1})
                assert await p.record_log(lg) is True
                await p.set_owner(SHARES, 1, to, block, lg.log_index)
            await p.set_owner(SHARES, 1, A, 1, 0)  # older: ignored
            assert await p.owner(SHARES, 1) == B
            assert await p.holders(SHARES) == {B: 1}
            assert await p.tokens_of(SHARES, B) == [1]
            assert await p.rollback_after(1) == 1
            assert await p.owner(SHARES, 1) == A
            assert await p.rollback_after(0) == 1
            assert await p.owner(SHARES, 1) is None and await p.holders(SHARES) == {}
            assert await p.contracts() == []

    async def test_logs_are_idempotent_and_feed_dividends_and_stakes(self, chain_store: Store) -> None:
        """(tx hash, log index) is stored once; deposits/claims and net stakes are read from logs."""
        at = datetime(2026, 2, 1, tzinfo=UTC)
        dep = a_log(10, 3, "DividendDeposited", {"masterId": "0x01", "amount": 10**20}, VAULT, 1)
        claim = a_log(11, 4, "DividendClaimed", {"to": B, "amount": 5 * 10**19, "ids": [1, 2]}, VAULT, 2)
        staked = a_log(12, 5, "Staked", {"user": A, "amount": 7 * 10**24}, STAKING, 2)
        unstaked = a_log(13, 6, "Unstaked", {"user": A, "amount": 2 * 10**24}, STAKING, 2)
        async with chain_store.uow() as u:
            p = u.chain_projection
            assert await p.record_log(dep, at) is True
            assert await p.record_log(dep, at) is False
            for lg in (claim, staked, unstaked):
                await p.record_log(lg)
        async with chain_store.uow(readonly=True) as u:
            p = u.chain_projection
            (d,) = await p.dividends(VAULT)
            (c,) = await p.dividends(VAULT, "DividendClaimed")
            assert (d.amount, d.tx_hash, d.block_number, d.at) == (10**20, dep.tx_hash, 3, at)
            assert (c.amount, c.account) == (5 * 10**19, B)
            assert await p.staked(STAKING, A) == 5 * 10**24
            assert await p.staked(STAKING, B) == 0
        async with chain_store.uow() as u:
            await u.chain_projection.rollback_after(5)
            assert await u.chain_projection.staked(STAKING, A) == 7 * 10**24
            await u.chain_projection.clear()
            assert await u.chain_projection.dividends(VAULT) == []
