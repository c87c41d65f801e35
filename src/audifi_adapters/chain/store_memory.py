"""In-memory repositories of the chain context (jobs, nonces, indexer cursor, projections).

Rows live in ``InMemoryDatabase.table(...)`` dicts and every write goes through the unit of work's
``Undo`` log, so a rolled-back unit of work leaves no trace.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import attrs
from eth_utils import to_checksum_address

from audifi_core.chain.model import BlockRef, ChainJob, ChainLog, JobStatus, TxRecord, TxState
from audifi_core.chain.ports import ChainIdentity, ContractRef, DividendRecord
from audifi_core.errors import Conflict

from ..memory.store import InMemoryDatabase, InMemoryRepository, InMemoryUnitOfWork

__all__ = [
    "InMemoryChainJobRepository",
    "InMemoryNonceRepository",
    "InMemoryIndexerCursorRepository",
    "InMemoryChainProjectionRepository",
    "register_memory_chain_repositories",
    "job_listeners",
]

OPEN = (TxState.SIGNED, TxState.BROADCAST, TxState.MINED)


def _ck(address: str) -> str:
    return to_checksum_address(address)


def job_listeners(db: InMemoryDatabase) -> dict[str, Any]:
    """Callbacks woken when a job is queued (the memory stand-in for LISTEN/NOTIFY)."""
    return db.table("chain_job_listeners")


_Repo = InMemoryRepository


class InMemoryChainJobRepository(_Repo):
    @property
    def _jobs(self) -> dict[str, ChainJob]:
        return self._db.table("chain_jobs")

    @property
    def _ops(self) -> dict[str, str]:
        return self._db.table("chain_job_ops")

    @property
    def _txs(self) -> dict[str, tuple[int, TxRecord]]:
        return self._db.table("chain_txs")

    async def add(self, job: ChainJob) -> ChainJob:
        self._w()
        existing = self._ops.get(job.op_key)
        if existing is not None:
            return self._jobs[existing]
        self._undo.set(self._ops, job.op_key, job.id)
        self._undo.set(self._jobs, job.id, job)
        return job

    async def get(self, job_id: str) -> ChainJob | None:
        return self._jobs.get(job_id)

    async def get_by_op_key(self, op_key: str) -> ChainJob | None:
        jid = self._ops.get(op_key)
        return self._jobs.get(jid) if jid else None

    async def lock(self, job_id: str) -> ChainJob | None:
        self._w()  # the unit of work holds the database's write lock already
        return self._jobs.get(job_id)

    async def update(self, job: ChainJob) -> None:
        self._w()
        if job.id not in self._jobs:
            raise Conflict("Job not found", details={"jobId": job.id})
        self._undo.set(self._jobs, job.id, job)

    async def queued(self, limit: int) -> list[ChainJob]:
        jobs = [j for j in self._jobs.values() if j.status is JobStatus.QUEUED]
        jobs.sort(key=lambda j: (j.updated_at, j.id))
        return jobs[:limit]

    async def submitted(self) -> list[ChainJob]:
        return sorted((j for j in self._jobs.values() if j.status is JobStatus.SUBMITTED), key=lambda j: j.id)

    async def notify(self) -> None:
        loop = asyncio.get_running_loop()
        for cb in list(job_listeners(self._db).values()):
            loop.call_soon(cb)

    async def add_tx(self, tx: TxRecord) -> None:
        self._w()
        if tx.id in self._txs or any(t.tx_hash == tx.tx_hash for _, t in self._txs.values()):
            raise Conflict("Transaction already stored", details={"txHash": tx.tx_hash})
        seq = self._db.table("chain_seq").get("tx", 0) + 1
        self._db.table("chain_seq")["tx"] = seq  # like a sequence: never rolled back
        self._undo.set(self._txs, tx.id, (seq, tx))

    async def update_tx(self, tx: TxRecord) -> None:
        self._w()
        seq, _ = self._txs[tx.id]
        self._undo.set(self._txs, tx.id, (seq, tx))

    async def txs_of(self, job_id: str) -> list[TxRecord]:
        return [t for _, t in sorted(self._txs.values(), key=lambda p: p[0]) if t.job_id == job_id]

    async def forget_txs(self) -> int:
        """See the PostgreSQL store: rows of a dead dev chain's transactions are dropped."""
        self._w()
        ids = list(self._txs)
        for tx_id in ids:
            self._undo.delete(self._txs, tx_id)
        return len(ids)

    async def open_txs(self) -> list[TxRecord]:
        rows = [(t.sender, t.nonce, seq, t) for seq, t in self._txs.values() if t.state in OPEN]
        rows.sort(key=lambda r: r[:3])
        return [r[3] for r in rows]


class InMemoryNonceRepository(_Repo):
    @property
    def _rows(self) -> dict[str, int]:
        return self._db.table("chain_nonces")

    async def get(self, address: str) -> int | None:
        return self._rows.get(_ck(address))

    async def init(self, address: str, nonce: int) -> None:
        self._w()
        if _ck(address) not in self._rows:
            self._undo.set(self._rows, _ck(address), nonce)

    async def advance(self, address: str, expected: int, to: int | None = None) -> bool:
        self._w()
        if self._rows.get(_ck(address)) != expected:
            return False
        self._undo.set(self._rows, _ck(address), expected + 1 if to is None else to)
        return True

    async def reset(self, address: str, nonce: int) -> None:
        self._w()
        self._undo.set(self._rows, _ck(address), nonce)

    async def forget_all(self) -> None:
        self._w()
        for k in list(self._rows):
            self._undo.delete(self._rows, k)


class InMemoryIndexerCursorRepository(_Repo):
    @property
    def _meta(self) -> dict[str, Any]:
        return self._db.table("chain_indexer")

    @property
    def _blocks(self) -> dict[int, BlockRef]:
        return self._db.table("chain_blocks")

    async def identity(self) -> ChainIdentity | None:
        return self._meta.get("identity")

    async def set_identity(self, identity: ChainIdentity) -> None:
        self._w()
        self._undo.set(self._meta, "identity", identity)

    async def cursor(self) -> BlockRef | None:
        return self._meta.get("cursor")

    async def set_cursor(self, block: BlockRef | None) -> None:
        self._w()
        self._undo.set(self._meta, "cursor", block)

    async def remember(self, block: BlockRef) -> None:
        self._w()
        old = self._blocks.get(block.number)
        if old is not None and old.hash == block.hash and (old.parent_hash or not block.parent_hash):
            return
        self._undo.set(self._blocks, block.number, block)

    async def blocks_after(self, number: int) -> list[BlockRef]:
        return sorted((b for n, b in self._blocks.items() if n > number), key=lambda b: -b.number)

    async def forget_after(self, number: int) -> None:
        self._w()
        for n in [n for n in self._blocks if n > number]:
            self._undo.delete(self._blocks, n)

    async def prune_below(self, number: int) -> None:
        self._w()
        for n in [n for n in self._blocks if n < number]:
            self._undo.delete(self._blocks, n)


@attrs.frozen
class _LogRow:
    log: ChainLog
    at: datetime | None
    token_id: int | None
    account: str | None
    amount: int | None


def log_columns(lg: ChainLog) -> tuple[int | None, str | None, int | None]:
    """(token id, account, amount) a projection query needs from a log."""
    a = lg.args
    if lg.event == "Transfer":
        if lg.topic_count == 4:
            return int(a["tokenId"]), _ck(a["to"]), None
        return None, _ck(a["to"]), int(a["value"])
    if lg.event == "DividendDeposited":
        return None, None, int(a["amount"])
    if lg.event == "DividendClaimed":
        return None, _ck(a["to"]), int(a["amount"])
    if lg.event in ("Staked", "Unstaked", "RewardPaid"):
        return None, _ck(a["user"]), int(a.get("amount", a.get("reward", 0)))
    return None, None, None


class InMemoryChainProjectionRepository(_Repo):
    @property
    def _contracts(self) -> dict[str, ContractRef]:
        return self._db.table("chain_contracts")

    @property
    def _logs(self) -> dict[tuple[str, int], _LogRow]:
        return self._db.table("chain_logs")

    @property
    def _owners(self) -> dict[tuple[str, int], tuple[str, int, int]]:
        return self._db.table("chain_share_owners")

    async def add_contract(self, contract: ContractRef) -> None:
        self._w()
        c = attrs.evolve(contract, address=_ck(contract.address))
        if c.address not in self._contracts:
            self._undo.set(self._contracts, c.address, c)

    async def contracts(self) -> list[ContractRef]:
        return sorted(self._contracts.values(), key=lambda c: (c.block_number, c.address))

    async def record_log(self, log: ChainLog, at: datetime | None = None) -> bool:
        self._w()
        key = (log.tx_hash, log.log_index)
        if key in self._logs:
            return False
        tid, acct, amount = log_columns(log)
        lg = attrs.evolve(log, address=_ck(log.address))
        self._undo.set(self._logs, key, _LogRow(lg, at, tid, acct, amount))
        return True

    async def set_owner(self, contract: str, token_id: int, owner: str, block_number: int,
                        log_index: int) -> None:
        self._w()
        key = (_ck(contract), int(token_id))
        old = self._owners.get(key)
        if old is not None and (old[1], old[2]) >= (block_number, log_index):
            return
        self._undo.set(self._owners, key, (_ck(owner), block_number, log_index))

    async def owner(self, contract: str, token_id: int) -> str | None:
        row = self._owners.get((_ck(contract), int(token_id)))
        return None if row is None or int(row[0], 16) == 0 else row[0]

    async def holders(self, contract: str) -> dict[str, int]:
        c = _ck(contract)
        out: dict[str, int] = {}
        for (addr, _), (owner, _, _) in self._owners.items():
            if addr == c and int(owner, 16) != 0:
                out[owner] = out.get(owner, 0) + 1
        return out

    async def tokens_of(self, contract: str, owner: str, limit: int = 100) -> list[int]:
        c, o = _ck(contract), _ck(owner)
        return sorted(t for (addr, t), (who, _, _) in self._owners.items() if addr == c and who == o)[:limit]

    async def dividends(self, vault: str, event: str = "DividendDeposited") -> list[DividendRecord]:
        v = _ck(vault)
        rows = [r for r in self._logs.values() if r.log.address == v and r.log.event == event]
        rows.sort(key=lambda r: (r.log.block_number, r.log.log_index))
        return [DividendRecord(v, r.amount or 0, r.log.tx_hash, r.log.block_number, r.log.log_index,
                               r.account, r.at) for r in rows]

    async def staked(self, staking: str, user: str) -> int:
        s, u = _ck(staking), _ck(user)
        total = 0
        for r in self._logs.values():
            if r.log.address == s and r.account == u:
                if r.log.event == "Staked":
                    total += r.amount or 0
                elif r.log.event == "Unstaked":
                    total -= r.amount or 0
        return total

    async def rollback_after(self, block_number: int) -> int:
        self._w()
        gone = [k for k, r in self._logs.items() if r.log.block_number > block_number]
        touched = {(self._logs[k].log.address, self._logs[k].token_id) for k in gone
                   if self._logs[k].token_id is not None}
        for k in gone:
            self._undo.delete(self._logs, k)
        for addr, c in list(self._contracts.items()):
            if c.kind != "factory" and c.block_number > block_number:
                self._undo.delete(self._contracts, addr)
        for contract, tid in touched:
            latest = max((r for r in self._logs.values() if r.log.address == contract and r.token_id == tid),
                         key=lambda r: (r.log.block_number, r.log.log_index), default=None)
            if latest is None:
                self._undo.delete(self._owners, (contract, tid))
            else:
                self._undo.set(self._owners, (contract, tid),
                               (latest.account or "", latest.log.block_number, latest.log.log_index))
        return len(gone)

    async def clear(self) -> None:
        self._w()
        for table in (self._logs, self._owners, self._contracts):
            for k in list(table):
                self._undo.delete(table, k)


def register_memory_chain_repositories() -> None:
    """Make ``uow.chain_jobs`` … ``uow.chain_projection`` exist on every in-memory unit of work."""
    InMemoryUnitOfWork.register("chain_jobs", InMemoryChainJobRepository)
    InMemoryUnitOfWork.register("chain_nonces", InMemoryNonceRepository)
    InMemoryUnitOfWork.register("chain_cursor", InMemoryIndexerCursorRepository)
    InMemoryUnitOfWork.register("chain_projection", InMemoryChainProjectionRepository)
