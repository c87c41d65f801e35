"""PostgreSQL repositories of the chain context (tables from migration 0002_chain.sql)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from eth_utils import to_checksum_address

from audifi_core.chain.model import (
    BlockRef,
    ChainJob,
    ChainLog,
    JobError,
    JobKind,
    JobStatus,
    TxRecord,
    TxState,
    call_from_dict,
    call_to_dict,
)
from audifi_core.chain.ports import ChainIdentity, ContractRef, DividendRecord
from audifi_core.errors import Conflict

from ..postgres.db import PostgresUnitOfWork
from .store_memory import log_columns

__all__ = [
    "PostgresChainJobRepository",
    "PostgresNonceRepository",
    "PostgresIndexerCursorRepository",
    "PostgresChainProjectionRepository",
    "register_postgres_chain_repositories",
    "JOBS_CHANNEL",
]

JOBS_CHANNEL = "audifi_chain_jobs"


def _ck(address: str) -> str:
    return to_checksum_address(address)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str | float):
        return v
    if isinstance(v, int):
        return str(v) if abs(v) > 2**53 else v
    if isinstance(v, bytes):
        return "0x" + v.hex()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return str(v)


_JOB_COLS = ("id, kind, status, requester_id, op_key, call, tx_hashes, result, error_code, error_message, "
             "attempts, step, state, created_at, updated_at")


def _job(r: asyncpg.Record) -> ChainJob:
    err = JobError(r["error_code"], r["error_message"] or "") if r["error_code"] else None
    return ChainJob(id=r["id"], kind=JobKind(r["kind"]), status=JobStatus(r["status"]),
                    requester_id=r["requester_id"], op_key=r["op_key"], call=call_from_dict(r["call"]),
                    created_at=r["created_at"], updated_at=r["updated_at"], tx_hashes=tuple(r["tx_hashes"]),
                    result=r["result"], error=err, attempts=r["attempts"], step=r["step"],
                    state=dict(r["state"] or {}))


def _tx(r: asyncpg.Record) -> TxRecord:
    return TxRecord(id=r["id"], job_id=r["job_id"], step=r["step"], sender=r["sender"], nonce=r["nonce"],
                    raw=bytes(r["raw"]), tx_hash=r["tx_hash"], max_fee=int(r["max_fee"]),
                    priority_fee=int(r["priority_fee"]), state=TxState(r["state"]), created_at=r["created_at"],
                    updated_at=r["updated_at"], block_number=r["block_number"], success=r["success"],
                    broadcasts=r["broadcasts"])


class PostgresChainJobRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    async def add(self, job: ChainJob) -> ChainJob:
        row = await self._c.fetchrow(
            f"INSERT INTO chain_jobs ({_JOB_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) "
            f"ON CONFLICT (op_key) DO NOTHING RETURNING {_JOB_COLS}",
            job.id, job.kind.value, job.status.value, job.requester_id, job.op_key,
            _jsonable(call_to_dict(job.call)), list(job.tx_hashes), _jsonable(job.result),
            job.error.code if job.error else None, job.error.message if job.error else None,
            job.attempts, job.step, _jsonable(job.state), job.created_at, job.updated_at)
        if row is not None:
            return _job(row)
        existing = await self.get_by_op_key(job.op_key)
        if existing is None:  # inserted by a transaction not visible to us yet
            raise Conflict("A job with this operation key is being created", details={"opKey": job.op_key})
        return existing

    async def get(self, job_id: str) -> ChainJob | None:
        r = await self._c.fetchrow(f"SELECT {_JOB_COLS} FROM chain_jobs WHERE id = $1", job_id)
        return _job(r) if r else None

    async def get_by_op_key(self, op_key: str) -> ChainJob | None:
        r = await self._c.fetchrow(f"SELECT {_JOB_COLS} FROM chain_jobs WHERE op_key = $1", op_key)
        return _job(r) if r else None

    async def lock(self, job_id: str) -> ChainJob | None:
        r = await self._c.fetchrow(f"SELECT {_JOB_COLS} FROM chain_jobs WHERE id = $1 FOR UPDATE", job_id)
        return _job(r) if r else None

    async def update(self, job: ChainJob) -> None:
        status = await self._c.execute(
            "UPDATE chain_jobs SET status=$2, tx_hashes=$3, result=$4, error_code=$5, error_message=$6, "
            "attempts=$7, step=$8, state=$9, updated_at=$10 WHERE id=$1",
            job.id, job.status.value, list(job.tx_hashes), _jsonable(job.result),
            job.error.code if job.error else None, job.error.message if job.error else None, job.attempts,
            job.step, _jsonable(job.state), job.updated_at)
        if status.endswith(" 0"):
            raise Conflict("Job not found", details={"jobId": job.id})

    async def queued(self, limit: int) -> list[ChainJob]:
        rows = await self._c.fetch(f"SELECT {_JOB_COLS} FROM chain_jobs WHERE status = 'queued' "
                                   "ORDER BY updated_at, id LIMIT $1", limit)
        return [_job(r) for r in rows]

    async def submitted(self) -> list[ChainJob]:
        rows = await self._c.fetch(f"SELECT {_JOB_COLS} FROM chain_jobs WHERE status = 'submitted' ORDER BY id")
        return [_job(r) for r in rows]

    async def notify(self) -> None:
        await self._c.execute(f"NOTIFY {JOBS_CHANNEL}")  # delivered when this transaction commits

    async def add_tx(self, tx: TxRecord) -> None:
        try:
            await self._c.execute(
                "INSERT INTO chain_txs (id, job_id, step, sender, nonce, raw, tx_hash, max_fee, priority_fee, "
                "state, block_number, success, broadcasts, created_at, updated_at) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
                tx.id, tx.job_id, tx.step, tx.sender, tx.nonce, tx.raw, tx.tx_hash, Decimal(tx.max_fee),
                Decimal(tx.priority_fee), tx.state.value, tx.block_number, tx.success, tx.broadcasts,
                tx.created_at, tx.updated_at)
        except asyncpg.UniqueViolationError as e:
            raise Conflict("Transaction already stored", details={"txHash": tx.tx_hash}) from e

    async def update_tx(self, tx: TxRecord) -> None:
        await self._c.execute(
            "UPDATE chain_txs SET state=$2, block_number=$3, success=$4, broadcasts=$5, updated_at=$6 WHERE id=$1",
            tx.id, tx.state.value, tx.block_number, tx.success, tx.broadcasts, tx.updated_at)

    async def txs_of(self, job_id: str) -> list[TxRecord]:
        return [_tx(r) for r in await self._c.fetch("SELECT * FROM chain_txs WHERE job_id = $1 ORDER BY seq",
                                                    job_id)]

    async def forget_txs(self) -> int:
        """A new dev chain: the old chain's signed transactions can never land; drop their rows
        (the jobs keep their hashes) so identical bytes signed on the new chain can be stored."""
        r = await self._c.execute("DELETE FROM chain_txs")
        return int(r.split()[-1])

    async def open_txs(self) -> list[TxRecord]:
        return [_tx(r) for r in await self._c.fetch(
            "SELECT * FROM chain_txs WHERE state IN ('signed', 'broadcast', 'mined') ORDER BY sender, nonce, seq")]


class PostgresNonceRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    async def get(self, address: str) -> int | None:
        return await self._c.fetchval("SELECT nonce FROM chain_nonces WHERE address = $1", _ck(address))

    async def init(self, address: str, nonce: int) -> None:
        await self._c.execute("INSERT INTO chain_nonces (address, nonce) VALUES ($1, $2) "
                              "ON CONFLICT (address) DO NOTHING", _ck(address), nonce)

    async def advance(self, address: str, expected: int, to: int | None = None) -> bool:
        status = await self._c.execute("UPDATE chain_nonces SET nonce = $3 WHERE address = $1 AND nonce = $2",
                                       _ck(address), expected, expected + 1 if to is None else to)
        return status == "UPDATE 1"

    async def reset(self, address: str, nonce: int) -> None:
        await self._c.execute("INSERT INTO chain_nonces (address, nonce) VALUES ($1, $2) "
                              "ON CONFLICT (address) DO UPDATE SET nonce = EXCLUDED.nonce", _ck(address), nonce)

    async def forget_all(self) -> None:
        await self._c.execute("DELETE FROM chain_nonces")


class PostgresIndexerCursorRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    async def _ensure(self) -> None:
        await self._c.execute("INSERT INTO chain_indexer (id) VALUES (1) ON CONFLICT DO NOTHING")

    async def identity(self) -> ChainIdentity | None:
        r = await self._c.fetchrow("SELECT chain_id, genesis_hash FROM chain_indexer WHERE id = 1")
        if r is None or r["chain_id"] is None:
            return None
        return ChainIdentity(int(r["chain_id"]), r["genesis_hash"])

    async def set_identity(self, identity: ChainIdentity) -> None:
        await self._ensure()
        await self._c.execute("UPDATE chain_indexer SET chain_id = $1, genesis_hash = $2 WHERE id = 1",
                              Decimal(identity.chain_id), identity.genesis_hash)

    async def cursor(self) -> BlockRef | None:
        r = await self._c.fetchrow("SELECT cursor_number, cursor_hash, cursor_parent, cursor_ts FROM chain_indexer "
                                   "WHERE id = 1")
        if r is None or r["cursor_number"] is None:
            return None
        return BlockRef(r["cursor_number"], r["cursor_hash"], r["cursor_parent"] or "", r["cursor_ts"] or 0)

    async def set_cursor(self, block: BlockRef | None) -> None:
        await self._ensure()
        if block is None:
            await self._c.execute("UPDATE chain_indexer SET cursor_number = NULL, cursor_hash = NULL, "
                                  "cursor_parent = NULL, cursor_ts = NULL WHERE id = 1")
        else:
            await self._c.execute("UPDATE chain_indexer SET cursor_number = $1, cursor_hash = $2, cursor_parent = $3, "
                                  "cursor_ts = $4 WHERE id = 1", block.number, block.hash, block.parent_hash,
                                  block.timestamp)

    async def remember(self, block: BlockRef) -> None:
        await self._c.execute(
            "INSERT INTO chain_blocks (number, hash, parent_hash, ts) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (number) DO UPDATE SET hash = EXCLUDED.hash, "
            "parent_hash = CASE WHEN EXCLUDED.parent_hash <> '' OR chain_blocks.hash <> EXCLUDED.hash "
            "THEN EXCLUDED.parent_hash ELSE chain_blocks.parent_hash END, "
            "ts = GREATEST(EXCLUDED.ts, CASE WHEN chain_blocks.hash = EXCLUDED.hash THEN chain_blocks.ts ELSE 0 END)",
            block.number, block.hash, block.parent_hash, block.timestamp)

    async def blocks_after(self, number: int) -> list[BlockRef]:
        rows = await self._c.fetch("SELECT number, hash, parent_hash, ts FROM chain_blocks WHERE number > $1 "
                                   "ORDER BY number DESC", number)
        return [BlockRef(r["number"], r["hash"], r["parent_hash"], r["ts"]) for r in rows]

    async def forget_after(self, number: int) -> None:
        await self._c.execute("DELETE FROM chain_blocks WHERE number > $1", number)

    async def prune_below(self, number: int) -> None:
        await self._c.execute("DELETE FROM chain_blocks WHERE number < $1", number)


class PostgresChainProjectionRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    async def add_contract(self, contract: ContractRef) -> None:
        await self._c.execute("INSERT INTO chain_contracts (address, kind, ref, block_number) VALUES ($1,$2,$3,$4) "
                              "ON CONFLICT (address) DO NOTHING", _ck(contract.address), contract.kind, contract.ref,
                              contract.block_number)

    async def contracts(self) -> list[ContractRef]:
        rows = await self._c.fetch("SELECT address, kind, ref, block_number FROM chain_contracts "
                                   "ORDER BY block_number, address")
        return [ContractRef(r["address"], r["kind"], r["ref"], r["block_number"]) for r in rows]

    async def record_log(self, log: ChainLog, at: datetime | None = None) -> bool:
        tid, acct, amount = log_columns(log)
        status = await self._c.execute(
            "INSERT INTO chain_logs (tx_hash, log_index, block_number, block_hash, address, event, args, topic_count, "
            "token_id, account, amount, at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) "
            "ON CONFLICT (tx_hash, log_index) DO NOTHING",
            log.tx_hash, log.log_index, log.block_number, log.block_hash, _ck(log.address), log.event,
            _jsonable(log.args), log.topic_count, None if tid is None else Decimal(tid), acct,
            None if amount is None else Decimal(amount), at)
        return status == "INSERT 0 1"

    async def set_owner(self, contract: str, token_id: int, owner: str, block_number: int,
                        log_index: int) -> None:
        await self._c.execute(
            "INSERT INTO chain_share_owners (contract, token_id, owner, block_number, log_index) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (contract, token_id) DO UPDATE SET owner = EXCLUDED.owner, "
            "block_number = EXCLUDED.block_number, log_index = EXCLUDED.log_index "
            "WHERE (chain_share_owners.block_number, chain_share_owners.log_index) < "
            "(EXCLUDED.block_number, EXCLUDED.log_index)",
            _ck(contract), Decimal(token_id), _ck(owner), block_number, log_index)

    async def owner(self, contract: str, token_id: int) -> str | None:
        o = await self._c.fetchval("SELECT owner FROM chain_share_owners WHERE contract = $1 AND token_id = $2",
                                   _ck(contract), Decimal(token_id))
        return None if o is None or int(o, 16) == 0 else o

    async def holders(self, contract: str) -> dict[str, int]:
        rows = await self._c.fetch("SELECT owner, count(*) AS n FROM chain_share_owners WHERE contract = $1 "
                                   "AND owner <> $2 GROUP BY owner", _ck(contract), _ck("0x" + "00" * 20))
        return {r["owner"]: r["n"] for r in rows}

    async def tokens_of(self, contract: str, owner: str, limit: int = 100) -> list[int]:
        rows = await self._c.fetch("SELECT token_id FROM chain_share_owners WHERE contract = $1 AND owner = $2 "
                                   "ORDER BY token_id LIMIT $3", _ck(contract), _ck(owner), limit)
        return [int(r["token_id"]) for r in rows]

    async def dividends(self, vault: str, event: str = "DividendDeposited") -> list[DividendRecord]:
        rows = await self._c.fetch("SELECT amount, tx_hash, block_number, log_index, account, at FROM chain_logs "
                                   "WHERE address = $1 AND event = $2 ORDER BY block_number, log_index",
                                   _ck(vault), event)
        return [DividendRecord(_ck(vault), int(r["amount"] or 0), r["tx_hash"], r["block_number"], r["log_index"],
                               r["account"], r["at"]) for r in rows]

    async def staked(self, staking: str, user: str) -> int:
        v = await self._c.fetchval(
            "SELECT coalesce(sum(CASE event WHEN 'Staked' THEN amount ELSE -amount END), 0) FROM chain_logs "
            "WHERE address = $1 AND account = $2 AND event IN ('Staked', 'Unstaked')", _ck(staking), _ck(user))
        return int(v)

    async def rollback_after(self, block_number: int) -> int:
        gone = await self._c.fetch("DELETE FROM chain_logs WHERE block_number > $1 RETURNING address, token_id",
                                   block_number)
        await self._c.execute("DELETE FROM chain_contracts WHERE kind <> 'factory' AND block_number > $1",
                              block_number)
        touched = {(r["address"], r["token_id"]) for r in gone if r["token_id"] is not None}
        for contract, tid in touched:
            latest = await self._c.fetchrow(
                "SELECT account, block_number, log_index FROM chain_logs WHERE address = $1 AND token_id = $2 "
                "ORDER BY block_number DESC, log_index DESC LIMIT 1", contract, tid)
            if latest is None:
                await self._c.execute("DELETE FROM chain_share_owners WHERE contract = $1 AND token_id = $2",
                                      contract, tid)
            else:
                await self._c.execute(
                    "UPDATE chain_share_owners SET owner = $3, block_number = $4, log_index = $5 "
                    "WHERE contract = $1 AND token_id = $2", contract, tid, latest["account"],
                    latest["block_number"], latest["log_index"])
        return len(gone)

    async def clear(self) -> None:
        await self._c.execute("TRUNCATE chain_logs, chain_share_owners, chain_contracts")


def register_postgres_chain_repositories() -> None:
    """Make ``uow.chain_jobs`` … ``uow.chain_projection`` exist on every PostgreSQL unit of work."""
    PostgresUnitOfWork.register("chain_jobs", PostgresChainJobRepository)
    PostgresUnitOfWork.register("chain_nonces", PostgresNonceRepository)
    PostgresUnitOfWork.register("chain_cursor", PostgresIndexerCursorRepository)
    PostgresUnitOfWork.register("chain_projection", PostgresChainProjectionRepository)

