"""What the masters context needs from storage: its own rows, and reads of the chain projection.

Both are unit-of-work repositories (``uow.masters``, ``uow.master_reads``). Every limit is a
conditional write, never read-then-check: the daily quota, one IPO per master, the mint cap and
the token ledger hold under concurrent transactions.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from audifi_core.chain.model import JobError
from audifi_core.chain.ports import DividendRecord

from .model import Allocation, Ipo, Master, TokenHolding, TokenState

__all__ = ["MasterRepository", "MasterReads"]


class MasterRepository(Protocol):
    # -- masters
    async def add(self, master: Master) -> None:
        """Insert a new master (``Conflict`` if the id exists)."""
        ...

    async def get(self, master_id: str) -> Master | None:
        """The master with its IPO, if any."""
        ...

    async def list(self, *, artist_id: str | None, before: str | None, limit: int,
                   visible_to: str | None) -> list[Master]:
        """Newest first (by id): registered masters, plus any status of ``visible_to``'s own."""
        ...

    async def by_contract(self, shares_address: str) -> Master | None: ...

    async def mark_registered(self, master_id: str, shares: str, vault: str, at: datetime) -> bool:
        """Record both addresses; ``True`` only the first time (not already registered)."""
        ...

    async def mark_failed(self, master_id: str, error: JobError, at: datetime) -> bool:
        """``failed`` with the error, unless registered; ``True`` when changed."""
        ...

    async def lock(self, master_id: str, final_cid: str | None, at: datetime) -> bool:
        """Set ``lockedAt`` (and ``finalAudioCid``) only when not locked; ``True`` when it did."""
        ...

    # -- daily quota
    async def quota_used(self, artist_id: str, day: date) -> int: ...

    async def take_quota(self, artist_id: str, day: date, limit: int) -> bool:
        """Count one registration of ``day`` unless ``limit`` are counted already."""
        ...

    # -- IPO
    async def add_ipo(self, ipo: Ipo) -> bool:
        """Insert; ``False`` when the master has an IPO already."""
        ...

    async def set_supply_job(self, master_id: str, job_id: str) -> None: ...

    async def request_mint(self, master_id: str, count: int) -> int | None:
        """``mint_requested += count`` only while it stays ≤ ``total_shares``: the new value, or ``None``."""
        ...

    async def add_minted(self, master_id: str, count: int) -> Ipo | None:
        """``minted += count`` (a confirmed mint); the IPO after."""
        ...

    async def mark_launched(self, master_id: str, at: datetime) -> bool:
        """``launched_at = at`` once; ``True`` the first time."""
        ...

    async def mark_closed(self, master_id: str, at: datetime) -> bool:
        """``closed_at = at`` once; ``True`` the first time."""
        ...

    async def due_launches(self, now: datetime, limit: int) -> list[str]:
        """IPOs not launched yet that are fully minted with ``starts_at ≤ now < ends_at``."""
        ...

    async def due_closes(self, now: datetime, limit: int) -> list[str]:
        """IPOs not closed yet with ``ends_at ≤ now``."""
        ...

    async def park_mint(self, master_id: str, job_id: str) -> None:
        """Remember a mint job that failed before the master's supply cap was set on-chain."""
        ...

    async def unpark_mints(self, master_id: str) -> list[str]:
        """The parked mint jobs of the master, forgotten as they are returned."""
        ...

    # -- the token ledger (specific share ids, by reservation)
    async def take_tokens(self, master_id: str, count: int, reservation_id: str, state: TokenState,
                          upto: int) -> list[int]:
        """Enter up to ``count`` of the lowest free ids in ``1..upto`` under ``reservation_id``.

        Free = not in the ledger. Concurrent takers never get the same id (a primary key decides);
        fewer than ``count`` come back when no more are free.
        """
        ...

    async def enter_tokens(self, master_id: str, token_ids: list[int], reservation_id: str,
                           state: TokenState) -> list[int]:
        """Enter those ids that are free; returns the ids entered now."""
        ...

    async def token_states(self, master_id: str, token_ids: list[int]) -> dict[int, tuple[TokenState, str]]:
        """``id → (state, reservation id)`` for the ids in the ledger."""
        ...

    async def reservation(self, reservation_id: str) -> list[tuple[str, int, TokenState]]:
        """``(master id, token id, state)`` entered under ``reservation_id``, by id."""
        ...

    async def release(self, reservation_id: str) -> int:
        """Free the ids still ``reserved`` under ``reservation_id``; how many."""
        ...

    async def mark_sold(self, reservation_id: str) -> int:
        """``reserved`` → ``sold`` under ``reservation_id`` (counted in the IPO's ``shares_sold``); how many."""
        ...

    # -- allocations, holds and custodial addresses
    async def add_allocation(self, allocation: Allocation) -> None: ...

    async def allocation(self, job_id: str) -> Allocation | None: ...

    async def hold_until(self, user_id: str, master_id: str) -> datetime | None:
        """The latest ``hold_until`` of the user's allocations of that master."""
        ...

    async def remember_custodial(self, address: str, user_id: str) -> None: ...

    async def custodial_owner(self, address: str) -> str | None: ...


class MasterReads(Protocol):
    """Queries over the indexer's projection (``chain_share_owners``, ``chain_logs``) joined with masters."""

    async def holdings(self, addresses: list[str]) -> list[TokenHolding]:
        """Per (contract, owner) among ``addresses``: the count and the lowest 100 ids."""
        ...

    async def mint_positions(self, shares_address: str) -> list[tuple[int, int]]:
        """``(block, log index)`` of every mint ``Transfer`` of that contract, in chain order."""
        ...

    async def unseen_deposits(self, limit: int, final_block: int | None = None) -> list[tuple[str, DividendRecord]]:
        """``DividendDeposited`` logs of our vaults not marked seen yet (at or below ``final_block`` when
        given), in chain order: ``(master id, record)``."""
        ...

    async def mark_seen(self, tx_hash: str, log_index: int) -> bool:
        """``True`` the first time (the deposit's event is emitted in the same unit of work)."""
        ...
