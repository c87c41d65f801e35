"""The share ledger calls other contexts make: checkout reservations (payments), allocation from the
treasury with a hold (payments), locking a master (V Studio). Each runs in the caller's unit of work."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from audifi_core.chain.model import PLATFORM, ChainJob, JobKind, TransferShares
from audifi_core.errors import Conflict, NotFound, ValidationError
from audifi_core.uow import UnitOfWork

from .model import MAX_TOTAL_SHARES, Allocation, IpoStatus, Master, TokenState
from .validation import check_count

__all__ = ["ShareLedger"]


class ShareLedger:
    """Mixed into :class:`~audifi_core.masters.service.MasterService` (uses its clock, jobs and chain)."""

    if TYPE_CHECKING:  # provided by MasterService
        _clock: Any
        _jobs: Any
        def _forget(self, master_id: str) -> None: ...
        def _registered(self, m: Master) -> tuple[str, str]: ...
        def custodial_address(self, user_index: int) -> str: ...
        @property
        def treasury(self) -> str: ...

    async def lock_master(self, uow: UnitOfWork, master_id: str, final_cid: str | None, at: datetime) -> Master:
        """V Studio: set ``finalAudioCid``/``lockedAt`` in the caller's unit of work; ``Conflict`` if locked."""
        u: Any = uow
        m = await u.masters.get(master_id)
        if m is None:
            raise NotFound(f"Master with ID {master_id} not found", code="MASTER_NOT_FOUND",
                           details={"masterId": master_id})
        if not await u.masters.lock(master_id, final_cid, at):
            raise Conflict(f"Master {master_id} is locked already", details={"masterId": master_id})
        self._forget(master_id)
        return attrs.evolve(m, final_audio_cid=final_cid, locked_at=at)

    async def reserve_tokens(self, uow: UnitOfWork, master_id: str, count: int, reservation_id: str) -> list[int]:
        """Payments: reserve ``count`` specific share ids of a ``live`` IPO under ``reservation_id``.

        A primary key on (master, token id) decides, so concurrent checkouts never share an id. Calling
        it again with the same reservation id returns the ids reserved the first time. ``Conflict``
        when the IPO is not live or fewer than ``count`` shares are left (let it roll the unit of work back).
        """
        u: Any = uow
        check_count(count, MAX_TOTAL_SHARES)
        existing = await u.masters.reservation(reservation_id)
        if existing:
            return [t for mid, t, _ in existing if mid == master_id]
        m = await u.masters.get(master_id)
        if m is None:
            raise NotFound(f"Master with ID {master_id} not found", code="MASTER_NOT_FOUND",
                           details={"masterId": master_id})
        if m.ipo is None or m.ipo.status(self._clock.now()) is not IpoStatus.LIVE:
            raise Conflict("Shares are on sale only while the IPO is live", details={"masterId": master_id})
        ids = await u.masters.take_tokens(master_id, count, reservation_id, TokenState.RESERVED, m.ipo.minted)
        if len(ids) < count:
            raise Conflict(f"Only {len(ids)} shares are left", details={"masterId": master_id, "available": len(ids)})
        return ids

    async def release_tokens(self, uow: UnitOfWork, reservation_id: str) -> int:
        """Payments: free the ids still reserved under ``reservation_id`` (expired or failed checkout)."""
        return await uow.masters.release(reservation_id)  # type: ignore[attr-defined]

    async def mark_sold(self, uow: UnitOfWork, reservation_id: str) -> int:
        """Payments: the reservation was paid; its ids count in the IPO's ``sharesSold``."""
        n = await uow.masters.mark_sold(reservation_id)  # type: ignore[attr-defined]
        for mid in {mid for mid, _, _ in await uow.masters.reservation(reservation_id)}:  # type: ignore[attr-defined]
            self._forget(mid)
        return n

    async def allocate_from_treasury(self, uow: UnitOfWork, *, master_id: str, user_id: str,
                                     token_ids: list[int] | None, count: int, op_key: str,
                                     hold_until: datetime | None) -> ChainJob:
        """Core use case: move shares from the treasury to the user's custodial address, held until
        ``hold_until`` (``withdrawableAt``), in the caller's unit of work.

        ``token_ids`` (e.g. a paid reservation's) are transferred as given; ``None`` takes ``count``
        free ids (entered in the ledger as ``allocated``). One ``TransferShares`` job keyed by ``op_key``:
        the same key returns the first job and changes nothing more. ``share.transferred`` is emitted
        when the transfer is confirmed.
        """
        u: Any = uow
        existing = await u.chain_jobs.get_by_op_key(op_key)
        if existing is not None:
            return existing
        m = await u.masters.get(master_id)
        if m is None:
            raise NotFound(f"Master with ID {master_id} not found", code="MASTER_NOT_FOUND",
                           details={"masterId": master_id})
        shares, _ = self._registered(m)
        minted = m.ipo.minted if m.ipo is not None else 0
        if token_ids is None:
            check_count(count, MAX_TOTAL_SHARES)
            ids = await u.masters.take_tokens(master_id, count, op_key, TokenState.ALLOCATED, minted)
            if len(ids) < count:
                raise Conflict(f"Only {len(ids)} shares are free in the treasury",
                               details={"masterId": master_id, "available": len(ids)})
        else:
            ids = sorted(set(token_ids))
            if not ids or len(ids) != len(token_ids) or len(ids) != count:
                raise ValidationError("token_ids must be distinct and count of them", fields={"tokenIds": "bad"})
            if ids[0] < 1 or ids[-1] > minted:
                raise Conflict("Some shares are not minted", details={"masterId": master_id})
            states = await u.masters.token_states(master_id, ids)
            if any(s is TokenState.ARTIST for s, _ in states.values()):
                raise Conflict("Some shares went to the artist at the IPO's close", details={"masterId": master_id})
            await u.masters.enter_tokens(master_id, [i for i in ids if i not in states], op_key,
                                         TokenState.ALLOCATED)
        user = await u.users.get(user_id)
        if user is None:
            raise NotFound(f"User {user_id} not found", code="USER_NOT_FOUND", details={"userId": user_id})
        custodial = self.custodial_address(user.index)
        await u.masters.remember_custodial(custodial, user_id)
        job = await self._jobs.enqueue(u, JobKind.TRANSFER, op_key, user_id,
                                       TransferShares(shares, self.treasury, custodial, tuple(ids), PLATFORM))
        await u.masters.add_allocation(Allocation(job.id, master_id, user_id, custodial, tuple(ids), hold_until,
                                                  self._clock.now()))
        return job
