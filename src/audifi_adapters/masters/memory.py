"""In-memory repositories of the masters context (the dev-mode default).

Rows live in ``InMemoryDatabase.table(...)`` and every write goes through the unit of work's undo
log. A writing unit of work holds the database's write lock, so each conditional write below is
atomic exactly as its SQL counterpart is.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import attrs
from eth_utils import to_checksum_address

from audifi_core.chain.model import JobError
from audifi_core.chain.ports import DividendRecord
from audifi_core.errors import Conflict
from audifi_core.masters.model import (
    Allocation,
    Ipo,
    Master,
    MasterStatus,
    TokenHolding,
    TokenState,
)

from ..memory.store import InMemoryDatabase, InMemoryUnitOfWork, Undo

__all__ = ["InMemoryMasterRepository", "InMemoryMasterReads", "register_memory_master_repositories"]

ZERO = "0x0000000000000000000000000000000000000000"


def _ck(address: str) -> str:
    return to_checksum_address(address)


class _Repo:
    def __init__(self, db: InMemoryDatabase, undo: Undo, readonly: bool):
        self._db = db
        self._undo = undo
        self._ro = readonly

    def _w(self) -> None:
        if self._ro:
            raise RuntimeError("read-only unit of work")

    def _t(self, name: str) -> dict[Any, Any]:
        return self._db.table(name)


class InMemoryMasterRepository(_Repo):
    """Tables: masters, master_by_contract, master_quota, ipos, ipo_tokens, share_allocations,
    custodial_addresses."""

    def _with_ipo(self, m: Master | None) -> Master | None:
        if m is None:
            return None
        return attrs.evolve(m, ipo=self._t("ipos").get(m.id))

    # -- masters
    async def add(self, master: Master) -> None:
        self._w()
        if master.id in self._t("masters"):
            raise Conflict("Master already exists", details={"masterId": master.id})
        self._undo.set(self._t("masters"), master.id, attrs.evolve(master, ipo=None))

    async def get(self, master_id: str) -> Master | None:
        return self._with_ipo(self._t("masters").get(master_id))

    async def list(self, *, artist_id: str | None, before: str | None, limit: int,
                   visible_to: str | None) -> list[Master]:
        rows = [m for m in self._t("masters").values()
                if (artist_id is None or m.artist_id == artist_id) and (before is None or m.id < before)
                and (m.status is MasterStatus.REGISTERED or m.artist_id == visible_to)]
        rows.sort(key=lambda m: m.id, reverse=True)
        return [self._with_ipo(m) for m in rows[:limit]]  # type: ignore[misc]

    async def by_contract(self, shares_address: str) -> Master | None:
        mid = self._t("master_by_contract").get(_ck(shares_address))
        return await self.get(mid) if mid else None

    def _update(self, master_id: str, **changes: Any) -> None:
        m = self._t("masters")[master_id]
        self._undo.set(self._t("masters"), master_id, attrs.evolve(m, **changes))

    async def mark_registered(self, master_id: str, shares: str, vault: str, at: datetime) -> bool:
        self._w()
        m = self._t("masters").get(master_id)
        if m is None or m.status is MasterStatus.REGISTERED:
            return False
        self._update(master_id, status=MasterStatus.REGISTERED, contract_address=_ck(shares),
                     dividend_address=_ck(vault), error=None, updated_at=at)
        self._undo.set(self._t("master_by_contract"), _ck(shares), master_id)
        return True

    async def mark_failed(self, master_id: str, error: JobError, at: datetime) -> bool:
        self._w()
        m = self._t("masters").get(master_id)
        if m is None or m.status is MasterStatus.REGISTERED:
            return False
        self._update(master_id, status=MasterStatus.FAILED, error=error, updated_at=at)
        return True

    async def lock(self, master_id: str, final_cid: str | None, at: datetime) -> bool:
        self._w()
        m = self._t("masters").get(master_id)
        if m is None or m.locked_at is not None:
            return False
        self._update(master_id, locked_at=at, final_audio_cid=final_cid, updated_at=at)
        return True

    # -- quota
    async def quota_used(self, artist_id: str, day: date) -> int:
        return self._t("master_quota").get((artist_id, day), 0)

    async def take_quota(self, artist_id: str, day: date, limit: int) -> bool:
        self._w()
        used = self._t("master_quota").get((artist_id, day), 0)
        if used >= limit:
            return False
        self._undo.set(self._t("master_quota"), (artist_id, day), used + 1)
        return True

    # -- IPO
    async def add_ipo(self, ipo: Ipo) -> bool:
        self._w()
        if ipo.master_id in self._t("ipos"):
            return False
        self._undo.set(self._t("ipos"), ipo.master_id, ipo)
        return True

    def _ipo_update(self, master_id: str, **changes: Any) -> Ipo:
        ipo = attrs.evolve(self._t("ipos")[master_id], **changes)
        self._undo.set(self._t("ipos"), master_id, ipo)
        return ipo

    async def set_supply_job(self, master_id: str, job_id: str) -> None:
        self._w()
        if master_id in self._t("ipos"):
            self._ipo_update(master_id, supply_job_id=job_id)

    async def request_mint(self, master_id: str, count: int) -> int | None:
        self._w()
        ipo = self._t("ipos").get(master_id)
        if ipo is None or ipo.mint_requested + count > ipo.total_shares:
            return None
        return self._ipo_update(master_id, mint_requested=ipo.mint_requested + count).mint_requested

    async def add_minted(self, master_id: str, count: int) -> Ipo | None:
        self._w()
        ipo = self._t("ipos").get(master_id)
        if ipo is None:
            return None
        return self._ipo_update(master_id, minted=ipo.minted + count)

    async def mark_launched(self, master_id: str, at: datetime) -> bool:
        self._w()
        ipo = self._t("ipos").get(master_id)
        if ipo is None or ipo.launched_at is not None:
            return False
        self._ipo_update(master_id, launched_at=at)
        return True

    async def mark_closed(self, master_id: str, at: datetime) -> bool:
        self._w()
        ipo = self._t("ipos").get(master_id)
        if ipo is None or ipo.closed_at is not None:
            return False
        self._ipo_update(master_id, closed_at=at)
        return True

    async def due_launches(self, now: datetime, limit: int) -> list[str]:
        due = [i for i in self._t("ipos").values() if i.launched_at is None and i.minted >= i.total_shares
               and i.starts_at <= now < i.ends_at]
        return [i.master_id for i in sorted(due, key=lambda i: i.starts_at)[:limit]]

    async def due_closes(self, now: datetime, limit: int) -> list[str]:
        due = [i for i in self._t("ipos").values() if i.closed_at is None and i.ends_at <= now]
        return [i.master_id for i in sorted(due, key=lambda i: i.ends_at)[:limit]]

    async def park_mint(self, master_id: str, job_id: str) -> None:
        self._w()
        self._undo.set(self._t("ipo_parked_mints"), job_id, master_id)

    async def unpark_mints(self, master_id: str) -> list[str]:
        self._w()
        parked = self._t("ipo_parked_mints")
        jobs = sorted(j for j, mid in parked.items() if mid == master_id)
        for j in jobs:
            self._undo.delete(parked, j)
        return jobs

    # -- token ledger: (master id, token id) → (reservation id, state)
    async def take_tokens(self, master_id: str, count: int, reservation_id: str, state: TokenState,
                          upto: int) -> list[int]:
        self._w()
        ledger = self._t("ipo_tokens")
        free = []
        for tid in range(1, upto + 1):
            if len(free) >= count:
                break
            if (master_id, tid) not in ledger:
                free.append(tid)
        for tid in free:
            self._undo.set(ledger, (master_id, tid), (reservation_id, state))
        return free

    async def enter_tokens(self, master_id: str, token_ids: list[int], reservation_id: str,
                           state: TokenState) -> list[int]:
        self._w()
        ledger = self._t("ipo_tokens")
        entered = []
        for tid in sorted(set(token_ids)):
            if (master_id, tid) not in ledger:
                self._undo.set(ledger, (master_id, tid), (reservation_id, state))
                entered.append(tid)
        return entered

    async def token_states(self, master_id: str, token_ids: list[int]) -> dict[int, tuple[TokenState, str]]:
        ledger = self._t("ipo_tokens")
        out = {}
        for tid in token_ids:
            row = ledger.get((master_id, tid))
            if row is not None:
                out[tid] = (row[1], row[0])
        return out

    async def reservation(self, reservation_id: str) -> list[tuple[str, int, TokenState]]:
        return sorted((mid, tid, st) for (mid, tid), (rid, st) in self._t("ipo_tokens").items()
                      if rid == reservation_id)

    async def release(self, reservation_id: str) -> int:
        self._w()
        ledger = self._t("ipo_tokens")
        keys = [k for k, (rid, st) in ledger.items() if rid == reservation_id and st is TokenState.RESERVED]
        for k in keys:
            self._undo.delete(ledger, k)
        return len(keys)

    async def mark_sold(self, reservation_id: str) -> int:
        self._w()
        ledger = self._t("ipo_tokens")
        keys = [k for k, (rid, st) in ledger.items() if rid == reservation_id and st is TokenState.RESERVED]
        per_master: dict[str, int] = {}
        for k in keys:
            self._undo.set(ledger, k, (reservation_id, TokenState.SOLD))
            per_master[k[0]] = per_master.get(k[0], 0) + 1
        for mid, n in per_master.items():
            ipo = self._t("ipos").get(mid)
            if ipo is not None:
                self._ipo_update(mid, shares_sold=ipo.shares_sold + n)
        return len(keys)

    # -- allocations, custodial addresses
    async def add_allocation(self, a: Allocation) -> None:
        self._w()
        if a.job_id not in self._t("share_allocations"):
            self._undo.set(self._t("share_allocations"), a.job_id, attrs.evolve(a, address=_ck(a.address)))

    async def allocation(self, job_id: str) -> Allocation | None:
        return self._t("share_allocations").get(job_id)

    async def hold_until(self, user_id: str, master_id: str) -> datetime | None:
        holds = [a.hold_until for a in self._t("share_allocations").values()
                 if a.user_id == user_id and a.master_id == master_id and a.hold_until is not None]
        return max(holds, default=None)

    async def remember_custodial(self, address: str, user_id: str) -> None:
        self._w()
        if _ck(address) not in self._t("custodial_addresses"):
            self._undo.set(self._t("custodial_addresses"), _ck(address), user_id)

    async def custodial_owner(self, address: str) -> str | None:
        return self._t("custodial_addresses").get(_ck(address))


class InMemoryMasterReads(_Repo):
    """Reads of the chain context's in-memory projection tables (``chain_share_owners``, ``chain_logs``)."""

    async def holdings(self, addresses: list[str]) -> list[TokenHolding]:
        wanted = {_ck(a) for a in addresses}
        groups: dict[tuple[str, str], list[int]] = {}
        for (contract, tid), (owner, _, _) in self._t("chain_share_owners").items():
            if owner in wanted:
                groups.setdefault((contract, owner), []).append(int(tid))
        return [TokenHolding(c, o, len(ids), tuple(sorted(ids)[:100])) for (c, o), ids in sorted(groups.items())]

    async def mint_positions(self, shares_address: str) -> list[tuple[int, int]]:
        c = _ck(shares_address)
        out = [(r.log.block_number, r.log.log_index) for r in self._t("chain_logs").values()
               if r.log.address == c and r.log.event == "Transfer" and r.token_id is not None
               and str(r.log.args.get("from", "")).lower() == ZERO]
        return sorted(out)

    async def unseen_deposits(self, limit: int, final_block: int | None = None) -> list[tuple[str, DividendRecord]]:
        vaults = {m.dividend_address: m.id for m in self._t("masters").values() if m.dividend_address}
        seen = self._t("master_deposits_seen")
        rows = [r for r in self._t("chain_logs").values() if r.log.event == "DividendDeposited"
                and r.log.address in vaults and (r.log.tx_hash, r.log.log_index) not in seen
                and (final_block is None or r.log.block_number <= final_block)]
        rows.sort(key=lambda r: (r.log.block_number, r.log.log_index))
        return [(vaults[r.log.address], DividendRecord(r.log.address, r.amount or 0, r.log.tx_hash, r.log.block_number,
                                                       r.log.log_index, r.account, r.at)) for r in rows[:limit]]

    async def mark_seen(self, tx_hash: str, log_index: int) -> bool:
        self._w()
        seen = self._t("master_deposits_seen")
        if (tx_hash, log_index) in seen:
            return False
        self._undo.set(seen, (tx_hash, log_index), True)
        return True


def register_memory_master_repositories() -> None:
    """``uow.masters`` and ``uow.master_reads`` on every in-memory unit of work."""
    InMemoryUnitOfWork.register("masters", InMemoryMasterRepository)
    InMemoryUnitOfWork.register("master_reads", InMemoryMasterReads)
