"""The masters lifecycle: chain-job hooks (registered, minted, transferred) that run in the unit of work
confirming the job, a bus consumer, and the scheduler's tick (IPO launch and close, dividend events)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from audifi_core.chain.model import (
    PLATFORM,
    ChainJob,
    DeployMaster,
    JobError,
    JobKind,
    JobStatus,
    MintShares,
    TransferShares,
)
from audifi_core.errors import ChainError
from audifi_core.events import DomainEvent
from audifi_core.uow import UnitOfWork

from .model import Ipo, IpoStatus, TokenState

__all__ = ["Lifecycle", "DEPLOY_PREFIX", "SUPPLY_PREFIX", "MINT_PREFIX", "CLOSE_PREFIX", "CLAIM_CHUNK", "chunks"]

DEPLOY_PREFIX = "master:deploy:"
SUPPLY_PREFIX = "master:supply:"
MINT_PREFIX = "master:mint:"
CLOSE_PREFIX = "master:ipo-close:"
CLAIM_CHUNK = 250  # ids per DividendVault.claim / batchTransfer (gas stays well under a block)


def chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class Lifecycle:
    """Mixed into :class:`~audifi_core.masters.service.MasterService` (uses its uow, clock, jobs, chain)."""

    if TYPE_CHECKING:  # provided by MasterService
        _uow: Any
        _clock: Any
        _jobs: Any
        _chain: Any
        settings: Any
        def _event(self, type_: str, data: dict[str, Any]) -> DomainEvent: ...
        def _forget(self, master_id: str) -> None: ...
        async def _addresses_of(self, u: Any, user_id: str) -> tuple[list[str], str]: ...
        async def _resume_supply_job(self, u: Any, ipo: Ipo) -> bool: ...
        def custodial_address(self, user_index: int) -> str: ...
        @property
        def treasury(self) -> str: ...

    async def on_event(self, event: DomainEvent) -> None:
        """Bus consumer: remember each new user's custodial address, so the owner's holder list can
        name them whatever moved shares there (idempotent: an address maps to one user)."""
        if event.type != "user.registered":
            return
        async with self._uow() as u:
            user = await u.users.get(event.data.get("userId", ""))  # type: ignore[attr-defined]
            if user is not None:
                await u.masters.remember_custodial(self.custodial_address(user.index), user.id)  # type: ignore[attr-defined]

    # ================================================================== chain job hooks
    def install_hooks(self) -> None:
        """Finish registrations and mints in the unit of work that confirms (or fails) their job."""
        self._jobs.on_confirmed(JobKind.DEPLOY_MASTER, self._deploy_confirmed)
        self._jobs.on_failed(JobKind.DEPLOY_MASTER, self._deploy_failed)
        self._jobs.on_confirmed(JobKind.MINT, self._mint_confirmed)
        self._jobs.on_failed(JobKind.MINT, self._mint_failed)
        self._jobs.on_confirmed(JobKind.TRANSFER, self._transfer_confirmed)

    async def _deploy_confirmed(self, uow: UnitOfWork, job: ChainJob) -> None:
        u: Any = uow
        if not job.op_key.startswith((DEPLOY_PREFIX, SUPPLY_PREFIX)) or not isinstance(job.call, DeployMaster):
            return
        r = job.result or {}
        mid = job.call.master_id
        if job.op_key.startswith(SUPPLY_PREFIX):
            await self._supply_confirmed(u, mid)
            return
        if await u.masters.mark_registered(mid, r["sharesAddress"], r["vaultAddress"], self._clock.now()):
            m = await u.masters.get(mid)
            u.emit(self._event("master.registered", {
                "masterId": mid, "artistId": m.artist_id, "title": m.title, "contractAddress": r["sharesAddress"],
                "dividendAddress": r["vaultAddress"], "audioCid": m.audio_cid, "metadataCid": m.metadata_cid}))
        self._forget(mid)

    async def _deploy_failed(self, uow: UnitOfWork, job: ChainJob) -> None:
        u: Any = uow
        if job.op_key.startswith(DEPLOY_PREFIX) and isinstance(job.call, DeployMaster):
            await u.masters.mark_failed(job.call.master_id, job.error or JobError("FAILED", "failed"),
                                        self._clock.now())
            self._forget(job.call.master_id)

    async def _mint_confirmed(self, uow: UnitOfWork, job: ChainJob) -> None:
        u: Any = uow
        if not job.op_key.startswith(MINT_PREFIX) or not isinstance(job.call, MintShares):
            return
        m = await u.masters.by_contract(job.call.shares)
        if m is None:
            return
        ipo = await u.masters.add_minted(m.id, job.call.count)
        r = job.result or {}
        u.emit(self._event("share.minted", {
            "masterId": m.id, "jobId": job.id, "count": job.call.count, "firstId": r.get("firstId"),
            "lastId": r.get("lastId"), "minted": ipo.minted, "totalShares": ipo.total_shares}))
        await self._launch_if_live(u, m.id, ipo)
        self._forget(m.id)

    async def _mint_failed(self, uow: UnitOfWork, job: ChainJob) -> None:
        """A mint reverts when ``maxSupply`` is not set yet (its job was held up): park it until the
        supply job is confirmed, whose hook queues it again (same op key and opId: never doubled)."""
        u: Any = uow
        if not job.op_key.startswith(MINT_PREFIX) or not isinstance(job.call, MintShares):
            return
        m = await u.masters.by_contract(job.call.shares)
        if m is None or m.ipo is None or m.ipo.supply_job_id is None:
            return
        supply = await u.chain_jobs.get(m.ipo.supply_job_id)
        if supply is None or supply.status is JobStatus.CONFIRMED:
            return
        await u.masters.park_mint(m.id, job.id)
        await self._resume_supply_job(u, m.ipo)

    async def _supply_confirmed(self, u: Any, master_id: str) -> None:
        for job_id in await u.masters.unpark_mints(master_id):
            job = await u.chain_jobs.get(job_id)
            if job is not None and job.status is JobStatus.FAILED:
                await u.chain_jobs.update(attrs.evolve(job, status=JobStatus.QUEUED, error=None,
                                                       attempts=job.attempts + 1, updated_at=self._clock.now()))
                await u.chain_jobs.notify()

    async def _transfer_confirmed(self, uow: UnitOfWork, job: ChainJob) -> None:
        u: Any = uow
        a = await u.masters.allocation(job.id)
        if a is None:
            return
        u.emit(self._event("share.transferred", {
            "masterId": a.master_id, "userId": a.user_id, "to": a.address, "tokenIds": list(a.token_ids),
            "count": len(a.token_ids), "jobId": job.id,
            "holdUntil": a.hold_until.isoformat() if a.hold_until else None}))

    async def _launch_if_live(self, u: Any, master_id: str, ipo: Ipo | None) -> bool:
        if ipo is None or ipo.launched_at is not None or ipo.status(self._clock.now()) is not IpoStatus.LIVE:
            return False
        if not await u.masters.mark_launched(master_id, self._clock.now()):
            return False
        u.emit(self._event("ipo.launched", {
            "masterId": master_id, "totalShares": ipo.total_shares,
            "pricePerShare": {"amount": ipo.price.amount, "currency": ipo.price.currency},
            "startsAt": ipo.starts_at.isoformat(), "endsAt": ipo.ends_at.isoformat()}))
        return True

    # ================================================================== the scheduler's tick
    async def tick(self) -> dict[str, int]:
        """Launch IPOs that went live (``ipo.launched`` once), close ended ones (unsold shares to the
        artist), and emit ``dividend.deposited`` once per deposit the indexer saw."""
        now = self._clock.now()
        n = self.settings.tick_batch
        async with self._uow(readonly=True) as u:
            launches = await u.masters.due_launches(now, n)  # type: ignore[attr-defined]
            closes = await u.masters.due_closes(now, n)  # type: ignore[attr-defined]
        launched = closed = deposits = 0
        for mid in launches:
            async with self._uow() as u:
                m = await u.masters.get(mid)  # type: ignore[attr-defined]
                launched += await self._launch_if_live(u, mid, m.ipo if m else None)
            self._forget(mid)
        for mid in closes:
            closed += await self._close(mid)
        try:  # a deposit is announced once its block is final (a reorg could still drop it before)
            final = await self._chain.head() - self.settings.confirmations
        except ChainError:
            return {"launched": launched, "closed": closed, "deposits": 0}
        async with self._uow() as u:
            for mid, rec in await u.master_reads.unseen_deposits(n, final):  # type: ignore[attr-defined]
                if await u.master_reads.mark_seen(rec.tx_hash, rec.log_index):  # type: ignore[attr-defined]
                    deposits += 1
                    u.emit(self._event("dividend.deposited", {
                        "masterId": mid, "vault": rec.vault, "amount": str(rec.amount), "txHash": rec.tx_hash,
                        "logIndex": rec.log_index, "blockNumber": rec.block_number}))
        return {"launched": launched, "closed": closed, "deposits": deposits}

    async def _close(self, master_id: str) -> int:
        """Once: shares neither sold nor reserved (nor allocated) go from the treasury to the artist."""
        async with self._uow() as u:
            if not await u.masters.mark_closed(master_id, self._clock.now()):  # type: ignore[attr-defined]
                return 0
            m = await u.masters.get(master_id)  # type: ignore[attr-defined]
            if m is None or m.ipo is None or m.contract_address is None:
                return 1
            ids = await u.masters.take_tokens(master_id, m.ipo.minted, CLOSE_PREFIX + master_id,  # type: ignore[attr-defined]
                                              TokenState.ARTIST, m.ipo.minted)
            wallets, custodial = await self._addresses_of(u, m.artist_id)
            to = wallets[0] if wallets else custodial
            for i, chunk in enumerate(chunks(ids, CLAIM_CHUNK)):
                await self._jobs.enqueue(u, JobKind.TRANSFER, f"{CLOSE_PREFIX}{master_id}:{i}", m.artist_id,
                                         TransferShares(m.contract_address, self.treasury, to, tuple(chunk),
                                                        PLATFORM))
        self._forget(master_id)
        return 1
