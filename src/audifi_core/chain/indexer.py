"""The indexer: follows our contracts' logs into projections, from a persisted cursor, reorg-aware.

* Contracts: the factories, and every contract a factory event announces (shares, vault, coin,
  staking, pool), followed from the block that created them.
* ``Transfer`` logs with 4 topics are ERC-721 share transfers (tokenId indexed); with 3 they are
  ERC-20 coin/LP transfers.
* Logs are stored once per (tx hash, log index), so replaying a range changes nothing.
* Blocks deeper than ``confirmations`` are final; the hashes of newer ones are kept, and when the
  chain disagrees with one of them the projection rolls back to the fork point and re-indexes.
* The cursor carries the chain id and genesis hash: against a real node a mismatch refuses to
  start; a new in-process dev chain discards the old chain-derived state with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from ..errors import ChainError
from ..uow import UnitOfWork
from .model import BlockRef, ChainLog
from .ports import Chain, ChainIdentity, ContractRef

__all__ = ["Indexer", "IndexerSettings", "ChainMismatch", "TickReport"]

log = logging.getLogger("audifi.chain.indexer")
ZERO = "0x0000000000000000000000000000000000000000"


class ChainMismatch(Exception):
    """The stored chain-derived state belongs to another chain: the process must not start."""


@attrs.frozen
class IndexerSettings:
    confirmations: int = 0
    batch_blocks: int = 500
    keep_blocks: int = 128  # remembered hashes below the final block, for deep-reorg diagnosis
    start_block: int = 0


@attrs.frozen
class TickReport:
    from_block: int
    to_block: int
    logs: int
    rolled_back_to: int | None = None


class Indexer:
    def __init__(self, chain: Chain, uow: Callable[..., UnitOfWork],
                 settings: IndexerSettings = IndexerSettings()):
        self._chain = chain
        self._uow = uow
        self._s = settings

    async def check_identity(self, *, disposable_chain: bool) -> bool:
        """Tie the stored state to this chain (API.md "Modes"); ``True`` when old state was discarded.

        Against a real node a different chain id or genesis refuses to start (``ChainMismatch``).
        A disposable chain (the in-process dev EVM, new at every start) always starts from scratch.
        """
        ident = await self._chain.identity()
        discarded = False
        async with self._uow() as u:
            stored: ChainIdentity | None = await u.chain_cursor.identity()  # type: ignore[attr-defined]
            if stored is not None and stored != ident and not disposable_chain:
                raise ChainMismatch(
                    f"stored chain state is for chain {stored.chain_id} (genesis {stored.genesis_hash}), "
                    f"but the node is chain {ident.chain_id} (genesis {ident.genesis_hash})")
            if stored is None or disposable_chain:
                if stored is not None:
                    log.warning("dev chain is new: discarding chain-derived state of the previous one "
                                "(chain %s, genesis %s)", stored.chain_id, stored.genesis_hash)
                    discarded = True
                await u.chain_projection.clear()  # type: ignore[attr-defined]
                await u.chain_cursor.forget_after(-1)  # type: ignore[attr-defined]
                await u.chain_cursor.set_cursor(None)  # type: ignore[attr-defined]
                await u.chain_cursor.set_identity(ident)  # type: ignore[attr-defined]
            for name, address in self._chain.factories().items():
                await u.chain_projection.add_contract(  # type: ignore[attr-defined]
                    ContractRef(address, "factory", name, self._s.start_block))
        return discarded

    async def tick(self) -> TickReport | None:
        """Index what is new (at most ``batch_blocks``); ``None`` when nothing was new."""
        head = await self._chain.head()
        async with self._uow(readonly=True) as u:
            cursor: BlockRef | None = await u.chain_cursor.cursor()  # type: ignore[attr-defined]
        rolled: int | None = None
        if cursor is not None:
            fork = await self._fork_point(cursor, head)
            if fork is not None:
                rolled = await self._rollback(fork)
                async with self._uow(readonly=True) as u:
                    cursor = await u.chain_cursor.cursor()  # type: ignore[attr-defined]
        start = self._s.start_block if cursor is None else cursor.number + 1
        if start > head:
            return TickReport(start, start - 1, 0, rolled) if rolled is not None else None
        end = min(head, start + self._s.batch_blocks - 1)
        n = await self._index_range(start, end, head)
        return TickReport(start, end, n, rolled)

    async def run_until_synced(self) -> int:
        """Tick until caught up with the head; returns logs indexed."""
        total = 0
        while True:
            rep = await self.tick()
            if rep is None:
                return total
            total += rep.logs
            if rep.to_block >= await self._chain.head():
                return total

    # -------------------------------------------------------------------------- reorgs
    async def _fork_point(self, cursor: BlockRef, head: int) -> int | None:  # noqa: ARG002
        """The highest remembered block still on the chain, when a newer one is not; else ``None``."""
        async with self._uow(readonly=True) as u:  # the last few hundred blocks, highest first
            remembered: list[BlockRef] = await u.chain_cursor.blocks_after(-1)  # type: ignore[attr-defined]
        if not remembered or remembered[0].number != cursor.number:
            remembered = [cursor, *[b for b in remembered if b.number != cursor.number]]
        diverged = False
        for b in remembered:  # highest first
            if b.number > head:
                diverged = True
                continue
            onchain = await self._chain.block(b.number)
            if onchain is not None and onchain.hash == b.hash:
                return b.number if diverged else None
            diverged = True
        if not diverged:
            return None
        # Nothing remembered matches: go back below the oldest remembered block.
        oldest = remembered[-1].number
        log.error("reorg deeper than the remembered window: re-indexing from block %s", oldest - 1)
        return max(oldest - 1, self._s.start_block - 1)

    async def _rollback(self, fork: int) -> int:
        async with self._uow() as u:
            removed = await u.chain_projection.rollback_after(fork)  # type: ignore[attr-defined]
            await u.chain_cursor.forget_after(fork)  # type: ignore[attr-defined]
            keep = await u.chain_cursor.blocks_after(fork - 1)  # type: ignore[attr-defined]
            await u.chain_cursor.set_cursor(keep[0] if keep and keep[0].number == fork else  # type: ignore[attr-defined]
                                            (await self._chain.block(fork) if fork >= 0 else None))
        log.warning("chain reorganised: rolled back to block %s (%s logs undone)", fork, removed)
        return fork

    # -------------------------------------------------------------------------- indexing
    async def _index_range(self, start: int, end: int, head: int) -> int:
        async with self._uow(readonly=True) as u:
            known = {c.address.lower(): c for c in await u.chain_projection.contracts()}  # type: ignore[attr-defined]
        logs: dict[tuple[str, int], ChainLog] = {}
        pending = sorted(known)
        new_contracts: list[ContractRef] = []
        while pending:
            batch = await self._chain.logs(start, end, pending)
            pending = []
            for lg in batch:
                logs[(lg.tx_hash, lg.log_index)] = lg
                for ref in self._created(lg):
                    if ref.address.lower() not in known:
                        known[ref.address.lower()] = ref
                        new_contracts.append(ref)
                        pending.append(ref.address)
        ordered = sorted(logs.values(), key=lambda lg: (lg.block_number, lg.log_index))
        end_block = await self._chain.block(end)
        if end_block is None:
            raise ChainError("the node lost a block while indexing", details={"block": end})
        times: dict[int, datetime] = {}
        for lg in ordered:
            if lg.event == "DividendDeposited" and lg.block_number not in times:
                b = await self._chain.block(lg.block_number)
                if b is not None:
                    times[b.number] = datetime.fromtimestamp(b.timestamp, UTC)
        async with self._uow() as u:
            proj: Any = u.chain_projection  # type: ignore[attr-defined]
            for ref in new_contracts:
                await proj.add_contract(ref)
            applied = 0
            for lg in ordered:
                if await proj.record_log(lg, times.get(lg.block_number)):
                    applied += 1
                    if lg.event == "Transfer" and lg.topic_count == 4:
                        await proj.set_owner(lg.address, int(lg.args["tokenId"]), lg.args["to"],
                                             lg.block_number, lg.log_index)
                await u.chain_cursor.remember(  # type: ignore[attr-defined]
                    BlockRef(lg.block_number, lg.block_hash, "", 0))
            await u.chain_cursor.remember(end_block)  # type: ignore[attr-defined]
            await u.chain_cursor.set_cursor(end_block)  # type: ignore[attr-defined]
            await u.chain_cursor.prune_below(  # type: ignore[attr-defined]
                head - self._s.confirmations - self._s.keep_blocks)
        return applied

    @staticmethod
    def _created(lg: ChainLog) -> list[ContractRef]:
        a = lg.args
        if lg.event == "MasterCreated":
            mid = str(a["masterId"])
            return [ContractRef(a["shares"], "shares", mid, lg.block_number),
                    ContractRef(a["vault"], "vault", mid, lg.block_number)]
        if lg.event == "CoinCreated":
            artist = str(a["artist"])
            return [ContractRef(a["coin"], "coin", artist, lg.block_number),
                    ContractRef(a["staking"], "staking", artist, lg.block_number),
                    ContractRef(a["pool"], "pool", artist, lg.block_number)]
        return []
