"""Chain jobs: enqueued with the domain change that needs them, planned step by step, retried safely.

A job is one domain call (``ChainCall``) that may take several transactions (e.g. top up a custodial
address with gas, then transfer from it). Each step first reads the chain and skips work that is
already done (the master exists, the coin exists, the max supply is set), and a mint carries an
``opId`` derived from the job's ``op_key``, so a retried job can never do its effect twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from ..errors import Conflict, NotFound
from ..ports import Clock, IdGenerator
from ..uow import UnitOfWork
from .model import (
    PLATFORM,
    ChainCall,
    ChainJob,
    ChainJobView,
    ClaimDividends,
    DeployCoin,
    DeployMaster,
    JobError,
    JobKind,
    JobStatus,
    MintShares,
    Receipt,
    TransferShares,
    TxRequest,
)
from .ports import Chain

__all__ = ["ChainJobs", "JobPlanner", "Send", "Done", "JobHook", "op_id", "KIND_OF_CALL"]

JobHook = Callable[[UnitOfWork, ChainJob], Awaitable[None]]

#: The kinds each call may be enqueued as.
KIND_OF_CALL: dict[type, tuple[JobKind, ...]] = {
    DeployMaster: (JobKind.DEPLOY_MASTER,),
    MintShares: (JobKind.MINT,),
    TransferShares: (JobKind.TRANSFER, JobKind.WITHDRAW),
    ClaimDividends: (JobKind.CLAIM,),
    DeployCoin: (JobKind.DEPLOY_COIN,),
}

ZERO = "0x0000000000000000000000000000000000000000"


def op_id(op_key: str) -> bytes:
    """The 32-byte operation id a mint carries on-chain for ``op_key`` (stable across retries)."""
    return hashlib.sha3_256(b"audifi:op:" + op_key.encode()).digest()


class ChainJobs:
    """The job use cases: enqueue with a domain change, read, retry; completion hooks per kind."""

    def __init__(self, uow: Callable[..., UnitOfWork], clock: Clock, ids: IdGenerator):
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._confirmed: dict[JobKind, list[JobHook]] = {}
        self._failed: dict[JobKind, list[JobHook]] = {}

    # -- hooks
    def on_confirmed(self, kind: JobKind | str, handler: JobHook) -> None:
        """Run ``handler(uow, job)`` in the unit of work that marks a job of ``kind`` confirmed."""
        self._confirmed.setdefault(JobKind(kind), []).append(handler)

    def on_failed(self, kind: JobKind | str, handler: JobHook) -> None:
        self._failed.setdefault(JobKind(kind), []).append(handler)

    # -- use cases
    async def enqueue(self, uow: UnitOfWork, kind: JobKind | str, op_key: str, requester_id: str,
                      call: ChainCall) -> ChainJob:
        """Queue ``call`` inside the caller's unit of work; the same ``op_key`` returns the first job."""
        kind = JobKind(kind)
        if kind not in KIND_OF_CALL.get(type(call), ()):
            raise ValueError(f"a {type(call).__name__} cannot be a {kind.value} job")
        if not op_key or len(op_key) > 200:
            raise ValueError("op_key must be 1-200 characters")
        now = self._clock.now()
        job = ChainJob(id=self._ids.new_id("job"), kind=kind, status=JobStatus.QUEUED,
                       requester_id=requester_id, op_key=op_key, call=call, created_at=now, updated_at=now)
        stored = await uow.chain_jobs.add(job)  # type: ignore[attr-defined]
        if stored.id == job.id:
            await uow.chain_jobs.notify()  # type: ignore[attr-defined]
        return stored

    async def get(self, job_id: str, requester_id: str) -> ChainJobView:
        """The job as its requester sees it; anyone else gets NOT_FOUND."""
        async with self._uow(readonly=True) as u:
            job = await u.chain_jobs.get(job_id)  # type: ignore[attr-defined]
        if job is None or job.requester_id != requester_id:
            raise NotFound("Job not found", code="JOB_NOT_FOUND", details={"jobId": job_id})
        return job.view()

    async def load(self, job_id: str) -> ChainJob | None:
        async with self._uow(readonly=True) as u:
            return await u.chain_jobs.get(job_id)  # type: ignore[attr-defined]

    async def retry(self, job_id: str, requester_id: str) -> ChainJobView:
        """Queue a failed job again: same op_key and opId, so the contracts still refuse a double."""
        async with self._uow() as u:
            job = await u.chain_jobs.get(job_id)  # type: ignore[attr-defined]
            if job is None or job.requester_id != requester_id:
                raise NotFound("Job not found", code="JOB_NOT_FOUND", details={"jobId": job_id})
            if job.status is not JobStatus.FAILED:
                raise Conflict(f"Only a failed job can be retried; this one is {job.status.value}",
                               details={"jobId": job_id, "status": job.status.value})
            job = attrs.evolve(job, status=JobStatus.QUEUED, error=None, attempts=job.attempts + 1,
                               updated_at=self._clock.now())
            await u.chain_jobs.update(job)  # type: ignore[attr-defined]
            await u.chain_jobs.notify()  # type: ignore[attr-defined]
        return job.view()

    # -- runner side: terminal transitions with their hooks, in the runner's unit of work
    async def confirm(self, uow: UnitOfWork, job: ChainJob, result: dict[str, Any]) -> ChainJob:
        job = attrs.evolve(job, status=JobStatus.CONFIRMED, result=result, error=None,
                           updated_at=self._clock.now())
        await uow.chain_jobs.update(job)  # type: ignore[attr-defined]
        for hook in self._confirmed.get(job.kind, ()):
            await hook(uow, job)
        return job

    async def fail(self, uow: UnitOfWork, job: ChainJob, code: str, message: str) -> ChainJob:
        job = attrs.evolve(job, status=JobStatus.FAILED, error=JobError(code, message),
                           updated_at=self._clock.now())
        await uow.chain_jobs.update(job)  # type: ignore[attr-defined]
        for hook in self._failed.get(job.kind, ()):
            await hook(uow, job)
        return job


# ------------------------------------------------------------------------------------ planning
@attrs.frozen
class Send:
    """The next transaction of a job: ``tx`` signed by ``signer``; ``step`` and ``state`` to store."""

    tx: TxRequest
    signer: str
    step: int
    state: dict[str, Any]


@attrs.frozen
class Done:
    result: dict[str, Any]
    state: dict[str, Any]


class JobPlanner:
    """Turns a job's call and its progress into the next transaction, reading the chain first."""

    def __init__(self, chain: Chain, *, top_up_factor: int = 3):
        self._chain = chain
        self._top_up_factor = top_up_factor

    async def next(self, job: ChainJob) -> Send | Done:
        call, step, state = job.call, job.step, dict(job.state)
        if isinstance(call, DeployMaster):
            return await self._deploy_master(job, call, step, state)
        if isinstance(call, MintShares):
            if step == 0:
                return Send(self._chain.mint_tx(call.shares, call.to, call.count, job.op_key), PLATFORM, 0, state)
            return Done({"shares": call.shares, "to": call.to, "count": call.count,
                         "firstId": state.get("firstId"), "lastId": state.get("lastId")}, state)
        if isinstance(call, TransferShares):
            if step <= 1:
                tx = self._chain.transfer_tx(call.shares, call.from_address, call.to, call.ids)
                return await self._with_gas(call.signer, tx, step, state)
            return Done({"shares": call.shares, "from": call.from_address, "to": call.to,
                         "ids": list(call.ids)}, state)
        if isinstance(call, ClaimDividends):
            if step <= 1:
                tx = self._chain.claim_tx(call.vault, call.ids, call.to)
                return await self._with_gas(call.signer, tx, step, state)
            return Done({"vault": call.vault, "to": call.to, "ids": list(call.ids),
                         "amount": state.get("amount", "0")}, state)
        if isinstance(call, DeployCoin):
            if step == 0:
                found = await self._chain.coin_of(call.artist)
                if found is None:
                    return Send(self._chain.create_coin_tx(call.artist, call.name, call.symbol,
                                                           call.initial_supply), PLATFORM, 0, state)
            found = await self._chain.coin_of(call.artist)
            if found is None:
                raise RuntimeError("the coin is missing after its creation was confirmed")
            return Done({"coinAddress": found.coin, "stakingAddress": found.staking,
                         "poolAddress": found.pool}, state)
        raise TypeError(f"unknown call {call!r}")

    async def _deploy_master(self, job: ChainJob, call: DeployMaster, step: int,
                             state: dict[str, Any]) -> Send | Done:
        found = await self._chain.masters_of(call.master_id)
        if step == 0 and found is None:
            return Send(self._chain.create_master_tx(call.master_id, call.artist, call.token_uri),
                        PLATFORM, 0, state)
        if found is None:
            raise RuntimeError("the master is missing after its creation was confirmed")
        state.update(shares=found.shares, vault=found.vault)
        if call.max_supply is not None and step <= 1:
            if await self._chain.max_supply(found.shares) == 0:
                return Send(self._chain.set_max_supply_tx(found.shares, call.max_supply), PLATFORM, 1, state)
        return Done({"masterId": call.master_id, "sharesAddress": found.shares, "vaultAddress": found.vault,
                     "maxSupply": call.max_supply}, state)

    async def _with_gas(self, signer: str, tx: TxRequest, step: int, state: dict[str, Any]) -> Send:
        """Step 0 tops a custodial sender up with enough gas; step 1 is the action itself."""
        if signer != PLATFORM and step == 0:
            sender = self._chain.address_of(signer)
            fees = await self._chain.fees()
            need = tx.gas * fees.max_fee + tx.value
            have = await self._chain.eth_balance(sender)
            if have < need:
                amount = need * self._top_up_factor - have
                return Send(self._chain.eth_transfer_tx(sender, amount), PLATFORM, 0, state)
        return Send(tx, signer, 1, state)

    def after(self, job: ChainJob, sent_step: int, receipt: Receipt) -> tuple[int, dict[str, Any]]:
        """The progress after the transaction of ``sent_step`` succeeded in a final block."""
        state = dict(job.state)
        call = job.call
        if isinstance(call, MintShares):
            ids = [int(lg.args["tokenId"]) for lg in receipt.logs
                   if lg.event == "Transfer" and lg.topic_count == 4 and lg.address.lower() == call.shares.lower()]
            if ids:
                state.update(firstId=min(ids), lastId=max(ids))
        if isinstance(call, ClaimDividends):
            paid = sum(int(lg.args.get("amount", 0)) for lg in receipt.logs if lg.event == "DividendClaimed")
            state["amount"] = str(paid)
        return sent_step + 1, state
