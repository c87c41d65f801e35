"""The durable job runner: the one signer that turns queued chain jobs into final transactions.

Rules (API.md ``ChainJob``):

* Exactly one signer at a time: a PostgreSQL advisory lock held on a dedicated, non-pooled
  connection (``PostgresSignerLock``), or an asyncio lock in a process without a database.
  Even so, nonces are taken by a conditional ``UPDATE … WHERE nonce = expected`` and a job is
  locked while its transaction is stored, so two instances never share a nonce or a job step.
* The signed raw transaction is stored (with the job's new state) BEFORE it is broadcast, and
  re-sent byte for byte after a crash or when a reorg drops it.
* A transaction not mined in ``bump_after`` seconds is replaced (same nonce, higher fee); every
  hash is kept on the job.
* ``confirmed`` only when final (``confirmations`` blocks deep; 0 on the in-process chain).
  ``failed`` only when never broadcast, reverted in a final block, or its nonce was taken by
  another final transaction — so a retry can never double an effect.
* Custodial senders get gas from the platform inside the job; below ``balance_floor`` wei the
  platform signer pauses (jobs stay queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from audifi_core.chain.jobs import ChainJobs, Done, JobPlanner, Send
from audifi_core.chain.model import PLATFORM, ChainJob, Fees, JobStatus, TxRecord, TxState
from audifi_core.chain.ports import Chain
from audifi_core.errors import ChainError
from audifi_core.ports import Clock, IdGenerator
from audifi_core.uow import UnitOfWork

__all__ = ["JobRunner", "RunnerSettings", "SignerLock", "LocalSignerLock", "PostgresSignerLock", "SIGNER_LOCK_KEY"]

log = logging.getLogger("audifi.chain.runner")

SIGNER_LOCK_KEY = 0x4155_4449_5349_474E  # "AUDISIGN"


class SignerLock(Protocol):
    async def acquire(self) -> None:
        """Wait until this process is the signer."""
        ...

    def held(self) -> bool: ...

    async def check(self) -> bool:
        """Confirm the lock is still held (e.g. its connection is alive)."""
        ...

    async def release(self) -> None: ...


class LocalSignerLock:
    """One signer per process (dev without a database: nothing else can sign for this memory)."""

    _locks: dict[int, asyncio.Lock] = {}

    def __init__(self, scope: object):
        self._lock = self._locks.setdefault(id(scope), asyncio.Lock())
        self._held = False

    async def acquire(self) -> None:
        await self._lock.acquire()
        self._held = True

    def held(self) -> bool:
        return self._held

    async def check(self) -> bool:
        return self._held

    async def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


class PostgresSignerLock:
    """``pg_try_advisory_lock`` on a dedicated connection; lost with that connection, never pooled."""

    def __init__(self, connect: Callable[[], Any], key: int = SIGNER_LOCK_KEY, poll: float = 0.5,
                 on_notify: Callable[[], None] | None = None, channel: str | None = None):
        self._connect = connect
        self._key = key
        self._poll = poll
        self._conn: Any = None
        self._held = False
        self._on_notify = on_notify
        self._channel = channel

    async def acquire(self) -> None:
        while True:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await self._connect()
                if await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key):
                    self._held = True
                    if self._channel and self._on_notify:
                        await self._conn.add_listener(self._channel, self._notified)
                    return
            except (TimeoutError, OSError) as e:
                log.warning("signer lock: database unreachable: %r", e)
                await self._drop()
            except asyncio.CancelledError:
                await asyncio.shield(self._drop())
                raise
            except Exception as e:  # noqa: BLE001 - asyncpg errors: reconnect and try again
                log.warning("signer lock: %r", e)
                await self._drop()
            try:
                await asyncio.sleep(self._poll)
            except asyncio.CancelledError:
                await asyncio.shield(self._drop())
                raise

    def _notified(self, *_: Any) -> None:
        if self._on_notify is not None:
            self._on_notify()

    def held(self) -> bool:
        return self._held and self._conn is not None and not self._conn.is_closed()

    async def check(self) -> bool:
        """Ping the lock's connection: a dead connection means the lock is gone."""
        if not self.held():
            return False
        try:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), 5)
        except Exception as e:  # noqa: BLE001 - any failure: the session (and its lock) may be gone
            log.warning("signer lock connection lost: %r", e)
            await self._drop()
            return False
        return True

    async def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def release(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(Exception):
                await self._conn.execute("SELECT pg_advisory_unlock($1)", self._key)
        await self._drop()


@attrs.frozen
class RunnerSettings:
    confirmations: int = 0
    balance_floor: int = 0
    poll_interval: float = 0.5
    bump_after: float = 60.0
    max_bumps: int = 5
    batch: int = 20
    rebroadcast_after: float = 15.0


class _Retry(Exception):
    """A conditional write lost a race: run the step again."""


class JobRunner:
    def __init__(self, chain: Chain, jobs: ChainJobs, uow: Callable[..., UnitOfWork], clock: Clock,
                 ids: IdGenerator, lock: SignerLock, settings: RunnerSettings = RunnerSettings()):
        self._chain = chain
        self._jobs = jobs
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._lock = lock
        self._s = settings
        self._planner = JobPlanner(chain)
        self._wake = asyncio.Event()
        self._last_sent: dict[str, float] = {}  # tx id → monotonic time of the last broadcast
        self.paused = False
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    # -------------------------------------------------------------------- the loop
    async def run(self) -> None:
        while True:
            await self._lock.acquire()
            log.info("job runner: this process is the signer")
            try:
                while await self._lock.check():
                    try:
                        while await self.tick():
                            if not self._lock.held():
                                break
                    except ChainError as e:
                        log.warning("job runner: chain error: %s", e.message)
                    except Exception:  # noqa: BLE001 - keep signing; the job state is durable
                        log.exception("job runner: tick failed")
                    with contextlib.suppress(TimeoutError):
                        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                        # that races the inner wait finishing, and the runner would never stop.
                        async with asyncio.timeout(self._s.poll_interval):
                            await self._wake.wait()
                    self._wake.clear()
            finally:
                await self._lock.release()
            log.warning("job runner: lost the signer lock")

    async def tick(self) -> bool:
        """One pass: settle open transactions, then start queued jobs. ``True`` when it did something."""
        progressed = await self._settle()
        progressed = await self._start_queued() or progressed
        return progressed

    async def drain(self, within: float = 30.0) -> None:
        """Tick until no job is queued or submitted (tests, benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            await self.tick()
            async with self._uow(readonly=True) as u:
                busy = await u.chain_jobs.queued(1) or await u.chain_jobs.submitted()  # type: ignore[attr-defined]
            if not busy:
                return
            if loop.time() > deadline:
                raise TimeoutError("jobs still open")
            await asyncio.sleep(0.01)

    # -------------------------------------------------------------------- new work
    async def _start_queued(self) -> bool:
        async with self._uow(readonly=True) as u:
            queued: list[ChainJob] = await u.chain_jobs.queued(self._s.batch)  # type: ignore[attr-defined]
        if not queued:
            return False
        if self._s.balance_floor:
            balance = await self._chain.eth_balance(self._chain.address_of(PLATFORM))
            was = self.paused
            self.paused = balance < self._s.balance_floor
            if self.paused:
                if not was:
                    log.error("job runner paused: signer balance %s wei is below the floor %s",
                              balance, self._s.balance_floor)
                return False
        fees = await self._chain.fees()
        progressed = False
        for job in queued:
            progressed = await self._advance(job.id, fees) or progressed
        return progressed

    async def _advance(self, job_id: str, fees: Fees) -> bool:
        """Plan the job's next step and store its signed transaction (or finish the job)."""
        for _ in range(5):
            try:
                return await self._advance_once(job_id, fees)
            except _Retry:
                continue
        return False

    async def _advance_once(self, job_id: str, fees: Fees) -> bool:
        async with self._uow(readonly=True) as u:
            job: ChainJob | None = await u.chain_jobs.get(job_id)  # type: ignore[attr-defined]
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.SUBMITTED):
            return False
        try:
            action = await self._planner.next(job)
        except ChainError as e:
            log.warning("job %s: planning failed: %s", job_id, e.message)
            return False
        signed = None
        async with self._uow() as u:
            current: ChainJob | None = await u.chain_jobs.lock(job_id)  # type: ignore[attr-defined]
            if current is None or (current.status, current.step, current.attempts) != (job.status, job.step,
                                                                                      job.attempts):
                raise _Retry  # someone else moved it: plan again from what is stored
            if current.status is JobStatus.SUBMITTED and await self._has_open_tx(u, job_id):
                return False
            if isinstance(action, Done):
                await self._jobs.confirm(u, attrs.evolve(current, state=action.state), action.result)
                return True
            assert isinstance(action, Send)
            sender = self._chain.address_of(action.signer)
            onchain = await self._chain.nonce(sender, "pending")
            stored = await u.chain_nonces.get(sender)  # type: ignore[attr-defined]
            if stored is None:
                await u.chain_nonces.init(sender, onchain)  # type: ignore[attr-defined]
                stored = await u.chain_nonces.get(sender)  # type: ignore[attr-defined]
            # The node may know more (the key was used elsewhere); never less than what we handed out.
            nonce = max(stored, onchain)
            if not await u.chain_nonces.advance(sender, stored, nonce + 1):  # type: ignore[attr-defined]
                raise _Retry
            signed = self._chain.sign(action.signer, action.tx, nonce, fees)
            now = self._clock.now()
            record = TxRecord(id=self._ids.new_id("ctx"), job_id=job_id, step=action.step, sender=sender,
                              nonce=nonce, raw=signed.raw, tx_hash=signed.tx_hash, max_fee=fees.max_fee,
                              priority_fee=fees.priority_fee, state=TxState.SIGNED, created_at=now, updated_at=now)
            await u.chain_jobs.add_tx(record)  # type: ignore[attr-defined]
            await u.chain_jobs.update(attrs.evolve(  # type: ignore[attr-defined]
                current, status=JobStatus.SUBMITTED, step=action.step, state=action.state,
                tx_hashes=(*current.tx_hashes, signed.tx_hash), updated_at=now))
        await self._broadcast(record)
        return True

    async def _has_open_tx(self, u: UnitOfWork, job_id: str) -> bool:
        txs = await u.chain_jobs.txs_of(job_id)  # type: ignore[attr-defined]
        return any(t.state in (TxState.SIGNED, TxState.BROADCAST, TxState.MINED) for t in txs)

    # -------------------------------------------------------------------- broadcasting
    async def _broadcast(self, tx: TxRecord) -> TxRecord:
        """Send the stored bytes; returns the record with its new state (stored)."""
        try:
            await self._chain.broadcast(tx.raw)
            new_state = TxState.BROADCAST if tx.state is TxState.SIGNED else tx.state
        except ChainError as e:
            reason = e.details.get("reason", "rejected")
            if reason in ("already_known", "nonce_too_low"):
                # Ours (sent before a crash) or another's: the receipt and the final nonce tell.
                new_state = TxState.BROADCAST if tx.state is TxState.SIGNED else tx.state
            elif reason == "rejected" and tx.state is TxState.SIGNED and tx.broadcasts == 0:
                return await self._rejected(tx, e.message)
            else:
                log.warning("tx %s (nonce %s of %s) not sent yet: %s", tx.tx_hash, tx.nonce, tx.sender, e.message)
                return tx
        self.sent += 1
        self._last_sent[tx.id] = time.monotonic()
        tx = attrs.evolve(tx, state=new_state, broadcasts=tx.broadcasts + 1, updated_at=self._clock.now())
        async with self._uow() as u:
            await u.chain_jobs.update_tx(tx)  # type: ignore[attr-defined]
        return tx

    async def _rejected(self, tx: TxRecord, message: str) -> TxRecord:
        """The node will never take these bytes: fail the job, and fill the nonce with a no-op."""
        log.error("tx %s rejected: %s", tx.tx_hash, message)
        fees = await self._chain.fees()
        signer = self._signer_of(tx.sender)
        filler = self._chain.sign(signer, self._chain.eth_transfer_tx(tx.sender, 0), tx.nonce, fees) \
            if signer else None
        now = self._clock.now()
        async with self._uow() as u:
            dropped = attrs.evolve(tx, state=TxState.DROPPED, updated_at=now)
            await u.chain_jobs.update_tx(dropped)  # type: ignore[attr-defined]
            if filler is not None:
                await u.chain_jobs.add_tx(TxRecord(  # type: ignore[attr-defined]
                    id=self._ids.new_id("ctx"), job_id=None, step=0, sender=tx.sender, nonce=tx.nonce,
                    raw=filler.raw, tx_hash=filler.tx_hash, max_fee=fees.max_fee, priority_fee=fees.priority_fee,
                    state=TxState.SIGNED, created_at=now, updated_at=now))
            if tx.job_id is not None:
                job = await u.chain_jobs.lock(tx.job_id)  # type: ignore[attr-defined]
                if job is not None and job.status is JobStatus.SUBMITTED:
                    await self._jobs.fail(u, job, "TX_REJECTED", f"The node refused the transaction: {message}")
        return dropped

    def _signer_of(self, address: str) -> str | None:
        if address == self._chain.address_of(PLATFORM):
            return PLATFORM
        return None  # custodial fillers would need the custody index; the job already failed safely

    # -------------------------------------------------------------------- settling
    async def _settle(self) -> bool:
        async with self._uow(readonly=True) as u:
            open_txs: list[TxRecord] = await u.chain_jobs.open_txs()  # type: ignore[attr-defined]
        if not open_txs:
            return False
        head = await self._chain.head()
        groups: dict[tuple[str, int], list[TxRecord]] = {}
        for tx in open_txs:
            groups.setdefault((tx.sender, tx.nonce), []).append(tx)
        progressed = False
        for (sender, nonce), group in groups.items():
            progressed = await self._settle_nonce(sender, nonce, group, head) or progressed
        return progressed

    async def _settle_nonce(self, sender: str, nonce: int, group: list[TxRecord], head: int) -> bool:
        receipts = []
        for tx in group:
            r = await self._chain.receipt(tx.tx_hash)
            if r is not None:
                receipts.append((tx, r))
        if receipts:
            tx, receipt = receipts[0]
            final = head - receipt.block_number >= self._s.confirmations
            if not final:
                if tx.state is not TxState.MINED:
                    async with self._uow() as u:
                        await u.chain_jobs.update_tx(attrs.evolve(  # type: ignore[attr-defined]
                            tx, state=TxState.MINED, block_number=receipt.block_number, updated_at=self._clock.now()))
                return False
            await self._finalise(tx, [t for t in group if t.id != tx.id], receipt)
            return True
        # No receipt for any of them.
        final_nonce = await self._chain.nonce(sender, max(head - self._s.confirmations, 0))
        if final_nonce > nonce:
            await self._nonce_taken(group)
            return True
        latest = max(group, key=lambda t: (t.max_fee, t.created_at))
        now = time.monotonic()
        progressed = False
        for tx in group:
            if tx.state is TxState.MINED:  # reorganised out: send the same bytes again
                log.warning("tx %s left the chain (reorg): re-sending it", tx.tx_hash)
                tx = attrs.evolve(tx, state=TxState.SIGNED)
                await self._broadcast(tx)
                progressed = True
            elif tx.state is TxState.SIGNED or now - self._last_sent.get(tx.id, 0) > self._s.rebroadcast_after:
                await self._broadcast(tx)
                progressed = True
        if (latest.state is TxState.BROADCAST and latest.job_id is not None and len(group) <= self._s.max_bumps
                and now - self._last_sent.get(latest.id, now) > self._s.bump_after):
            await self._bump(latest)
            progressed = True
        return progressed

    async def _bump(self, tx: TxRecord) -> None:
        """Replace a stuck transaction: same nonce, same call, a higher fee; the old hash stays on the job."""
        current = await self._chain.fees()
        old = Fees(tx.max_fee, tx.priority_fee).bumped()
        fees = Fees(max(old.max_fee, current.max_fee), max(old.priority_fee, current.priority_fee))
        async with self._uow() as u:
            job = await u.chain_jobs.lock(tx.job_id)  # type: ignore[attr-defined]
            if job is None or job.status is not JobStatus.SUBMITTED:
                return
            action = await self._planner.next(attrs.evolve(job, step=tx.step))
            if not isinstance(action, Send):
                return
            signed = self._chain.sign(action.signer, action.tx, tx.nonce, fees)
            now = self._clock.now()
            record = TxRecord(id=self._ids.new_id("ctx"), job_id=tx.job_id, step=tx.step, sender=tx.sender,
                              nonce=tx.nonce, raw=signed.raw, tx_hash=signed.tx_hash, max_fee=fees.max_fee,
                              priority_fee=fees.priority_fee, state=TxState.SIGNED, created_at=now, updated_at=now)
            await u.chain_jobs.add_tx(record)  # type: ignore[attr-defined]
            await u.chain_jobs.update(attrs.evolve(  # type: ignore[attr-defined]
                job, tx_hashes=(*job.tx_hashes, signed.tx_hash), updated_at=now))
        log.warning("tx %s stuck: replaced by %s with fee %s", tx.tx_hash, signed.tx_hash, fees.max_fee)
        self._last_sent[tx.id] = time.monotonic()
        await self._broadcast(record)

    async def _finalise(self, tx: TxRecord, others: list[TxRecord], receipt: Any) -> None:
        now = self._clock.now()
        job_after: ChainJob | None = None
        async with self._uow() as u:
            await u.chain_jobs.update_tx(attrs.evolve(  # type: ignore[attr-defined]
                tx, state=TxState.FINAL, block_number=receipt.block_number, success=receipt.success, updated_at=now))
            for o in others:
                await u.chain_jobs.update_tx(attrs.evolve(o, state=TxState.REPLACED,  # type: ignore[attr-defined]
                                                          updated_at=now))
            if tx.job_id is None:
                return
            job = await u.chain_jobs.lock(tx.job_id)  # type: ignore[attr-defined]
            if job is None or job.status is not JobStatus.SUBMITTED:
                return
            if not receipt.success:
                await self._jobs.fail(u, job, "TX_REVERTED",
                                      f"The transaction {tx.tx_hash} reverted in block {receipt.block_number}")
                return
            step, state = self._planner.after(job, tx.step, receipt)
            job_after = attrs.evolve(job, status=JobStatus.QUEUED, step=step, state=state, updated_at=now)
            await u.chain_jobs.update(job_after)  # type: ignore[attr-defined]
        if job_after is not None:
            await self._advance(job_after.id, await self._chain.fees())

    async def _nonce_taken(self, group: list[TxRecord]) -> None:
        now = self._clock.now()
        async with self._uow() as u:
            for tx in group:
                await u.chain_jobs.update_tx(attrs.evolve(tx, state=TxState.REPLACED,  # type: ignore[attr-defined]
                                                          updated_at=now))
            for job_id in {t.job_id for t in group if t.job_id is not None}:
                job = await u.chain_jobs.lock(job_id)  # type: ignore[attr-defined]
                if job is not None and job.status is JobStatus.SUBMITTED:
                    await self._jobs.fail(u, job, "NONCE_TAKEN",
                                          f"Another final transaction used nonce {group[0].nonce}")
