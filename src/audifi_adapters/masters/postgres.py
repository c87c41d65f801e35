"""PostgreSQL repositories of the masters context (``0003_masters.sql``).

Every limit is one conditional statement: the quota an upsert guarded by ``used < limit``, the
IPO a primary key, the mint cap ``UPDATE … WHERE mint_requested + n <= total_shares``, share ids a
primary key with ``ON CONFLICT DO NOTHING`` (a concurrent taker of the same id waits, then skips it).
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
from eth_utils import to_checksum_address

from audifi_core.chain.model import JobError
from audifi_core.chain.ports import DividendRecord
from audifi_core.errors import Conflict
from audifi_core.masters.model import (
    Allocation,
    Ipo,
    Master,
    MasterStatus,
    Money,
    TokenHolding,
    TokenState,
)

from ..postgres.db import PostgresUnitOfWork

__all__ = ["PostgresMasterRepository", "PostgresMasterReads", "register_postgres_master_repositories"]

ZERO = "0x0000000000000000000000000000000000000000"

_SELECT = (
    "SELECT m.*, i.master_id AS ipo_id, i.total_shares, i.mint_requested, i.minted, i.shares_sold, i.price_amount, "
    "i.price_currency, i.starts_at, i.ends_at, i.max_per_user, i.supply_job_id, i.launched_at, i.closed_at, "
    "i.created_at AS ipo_created_at FROM masters m LEFT JOIN ipos i ON i.master_id = m.id ")


def _ck(address: str) -> str:
    return to_checksum_address(address)


def _master(r: asyncpg.Record) -> Master:
    ipo = None
    if r["ipo_id"] is not None:
        ipo = Ipo(master_id=r["id"], total_shares=r["total_shares"], price=Money(r["price_amount"], r["price_currency"]),
                  starts_at=r["starts_at"], ends_at=r["ends_at"], max_per_user=r["max_per_user"],
                  created_at=r["ipo_created_at"], mint_requested=r["mint_requested"], minted=r["minted"],
                  shares_sold=r["shares_sold"], supply_job_id=r["supply_job_id"], launched_at=r["launched_at"],
                  closed_at=r["closed_at"])
    err = JobError(r["error_code"], r["error_message"] or "") if r["error_code"] else None
    return Master(id=r["id"], artist_id=r["artist_id"], title=r["title"], metadata=r["metadata"],
                  audio_cid=r["audio_cid"], metadata_cid=r["metadata_cid"], artist_address=r["artist_address"],
                  status=MasterStatus(r["status"]), created_at=r["created_at"], updated_at=r["updated_at"],
                  contract_address=r["contract_address"], dividend_address=r["dividend_address"],
                  deploy_job_id=r["deploy_job_id"], error=err, final_audio_cid=r["final_audio_cid"],
                  locked_at=r["locked_at"], ipo=ipo)


class PostgresMasterRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    # -- masters
    async def add(self, master: Master) -> None:
        try:
            await self._c.execute(
                "INSERT INTO masters (id, artist_id, title, metadata, audio_cid, metadata_cid, artist_address, status, "
                "contract_address, dividend_address, deploy_job_id, error_code, error_message, final_audio_cid, "
                "locked_at, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)",
                master.id, master.artist_id, master.title, master.metadata, master.audio_cid, master.metadata_cid,
                master.artist_address, master.status.value, master.contract_address, master.dividend_address,
                master.deploy_job_id, master.error.code if master.error else None,
                master.error.message if master.error else None, master.final_audio_cid, master.locked_at,
                master.created_at, master.updated_at)
        except asyncpg.UniqueViolationError as e:
            raise Conflict("Master already exists", details={"masterId": master.id}) from e

    async def get(self, master_id: str) -> Master | None:
        r = await self._c.fetchrow(_SELECT + "WHERE m.id = $1", master_id)
        return _master(r) if r is not None else None

    async def list(self, *, artist_id: str | None, before: str | None, limit: int,
                   visible_to: str | None) -> list[Master]:
        rows = await self._c.fetch(
            _SELECT + "WHERE ($1::text IS NULL OR m.artist_id = $1) AND ($2::text IS NULL OR m.id < $2) "
            "AND (m.status = 'registered' OR m.artist_id = $3) ORDER BY m.id DESC LIMIT $4",
            artist_id, before, visible_to, limit)
        return [_master(r) for r in rows]

    async def by_contract(self, shares_address: str) -> Master | None:
        r = await self._c.fetchrow(_SELECT + "WHERE m.contract_address = $1", _ck(shares_address))
        return _master(r) if r is not None else None

    async def mark_registered(self, master_id: str, shares: str, vault: str, at: datetime) -> bool:
        status = await self._c.execute(
            "UPDATE masters SET status = 'registered', contract_address = $2, dividend_address = $3, "
            "error_code = NULL, error_message = NULL, updated_at = $4 WHERE id = $1 AND status <> 'registered'",
            master_id, _ck(shares), _ck(vault), at)
        return status == "UPDATE 1"

    async def mark_failed(self, master_id: str, error: JobError, at: datetime) -> bool:
        status = await self._c.execute(
            "UPDATE masters SET status = 'failed', error_code = $2, error_message = $3, updated_at = $4 "
            "WHERE id = $1 AND status <> 'registered'", master_id, error.code, error.message, at)
        return status == "UPDATE 1"

    async def lock(self, master_id: str, final_cid: str | None, at: datetime) -> bool:
        status = await self._c.execute(
            "UPDATE masters SET locked_at = $3, final_audio_cid = $2, updated_at = $3 "
            "WHERE id = $1 AND locked_at IS NULL", master_id, final_cid, at)
        return status == "UPDATE 1"

    # -- quota
    async def quota_used(self, artist_id: str, day: date) -> int:
        v = await self._c.fetchval("SELECT used FROM master_quota WHERE artist_id = $1 AND day = $2", artist_id, day)
        return int(v or 0)

    async def take_quota(self, artist_id: str, day: date, limit: int) -> bool:
        if limit <= 0:
            return False
        v = await self._c.fetchval(
            "INSERT INTO master_quota (artist_id, day, used) VALUES ($1, $2, 1) ON CONFLICT (artist_id, day) "
            "DO UPDATE SET used = master_quota.used + 1 WHERE master_quota.used < $3 RETURNING used",
            artist_id, day, limit)
        return v is not None

    # -- IPO
    async def add_ipo(self, ipo: Ipo) -> bool:
        status = await self._c.execute(
            "INSERT INTO ipos (master_id, total_shares, mint_requested, minted, shares_sold, price_amount, price_currency, "
            "starts_at, ends_at, max_per_user, supply_job_id, launched_at, closed_at, created_at) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) ON CONFLICT (master_id) DO NOTHING",
            ipo.master_id, ipo.total_shares, ipo.mint_requested, ipo.minted, ipo.shares_sold, ipo.price.amount,
            ipo.price.currency, ipo.starts_at, ipo.ends_at, ipo.max_per_user, ipo.supply_job_id, ipo.launched_at,
            ipo.closed_at, ipo.created_at)
        return status == "INSERT 0 1"

    async def set_supply_job(self, master_id: str, job_id: str) -> None:
        await self._c.execute("UPDATE ipos SET supply_job_id = $2 WHERE master_id = $1", master_id, job_id)

    async def request_mint(self, master_id: str, count: int) -> int | None:
        return await self._c.fetchval(
            "UPDATE ipos SET mint_requested = mint_requested + $2 WHERE master_id = $1 "
            "AND mint_requested + $2 <= total_shares RETURNING mint_requested", master_id, count)

    async def add_minted(self, master_id: str, count: int) -> Ipo | None:
        await self._c.execute("UPDATE ipos SET minted = minted + $2 WHERE master_id = $1", master_id, count)
        m = await self.get(master_id)
        return m.ipo if m is not None else None

    async def mark_launched(self, master_id: str, at: datetime) -> bool:
        status = await self._c.execute("UPDATE ipos SET launched_at = $2 WHERE master_id = $1 AND launched_at IS NULL",
                                       master_id, at)
        return status == "UPDATE 1"

    async def mark_closed(self, master_id: str, at: datetime) -> bool:
        status = await self._c.execute("UPDATE ipos SET closed_at = $2 WHERE master_id = $1 AND closed_at IS NULL",
                                       master_id, at)
        return status == "UPDATE 1"

    async def due_launches(self, now: datetime, limit: int) -> list[str]:
        rows = await self._c.fetch(
            "SELECT master_id FROM ipos WHERE launched_at IS NULL AND minted >= total_shares AND starts_at <= $1 "
            "AND ends_at > $1 ORDER BY starts_at LIMIT $2", now, limit)
        return [r["master_id"] for r in rows]

    async def due_closes(self, now: datetime, limit: int) -> list[str]:
        rows = await self._c.fetch("SELECT master_id FROM ipos WHERE closed_at IS NULL AND ends_at <= $1 "
                                   "ORDER BY ends_at LIMIT $2", now, limit)
        return [r["master_id"] for r in rows]

    async def park_mint(self, master_id: str, job_id: str) -> None:
        await self._c.execute("INSERT INTO ipo_parked_mints (job_id, master_id) VALUES ($1, $2) "
                              "ON CONFLICT (job_id) DO NOTHING", job_id, master_id)

    async def unpark_mints(self, master_id: str) -> list[str]:
        rows = await self._c.fetch("DELETE FROM ipo_parked_mints WHERE master_id = $1 RETURNING job_id", master_id)
        return sorted(r["job_id"] for r in rows)

    # -- token ledger
    async def take_tokens(self, master_id: str, count: int, reservation_id: str, state: TokenState,
                          upto: int) -> list[int]:
        taken: list[int] = []
        while len(taken) < count:
            want = count - len(taken)
            candidates = [r["g"] for r in await self._c.fetch(
                "SELECT g FROM generate_series(1, $2::int) g WHERE NOT EXISTS "
                "(SELECT 1 FROM ipo_tokens t WHERE t.master_id = $1 AND t.token_id = g) ORDER BY g LIMIT $3",
                master_id, upto, want)]
            if not candidates:
                break
            taken += await self.enter_tokens(master_id, candidates, reservation_id, state)
        return sorted(taken)

    async def enter_tokens(self, master_id: str, token_ids: list[int], reservation_id: str,
                           state: TokenState) -> list[int]:
        if not token_ids:
            return []
        rows = await self._c.fetch(
            "INSERT INTO ipo_tokens (master_id, token_id, reservation_id, state) "
            "SELECT $1, t, $3, $4 FROM unnest($2::int[]) AS t ON CONFLICT DO NOTHING RETURNING token_id",
            master_id, list(token_ids), reservation_id, state.value)
        return sorted(r["token_id"] for r in rows)

    async def token_states(self, master_id: str, token_ids: list[int]) -> dict[int, tuple[TokenState, str]]:
        rows = await self._c.fetch("SELECT token_id, state, reservation_id FROM ipo_tokens WHERE master_id = $1 "
                                   "AND token_id = ANY($2::int[])", master_id, list(token_ids))
        return {r["token_id"]: (TokenState(r["state"]), r["reservation_id"]) for r in rows}

    async def reservation(self, reservation_id: str) -> list[tuple[str, int, TokenState]]:
        rows = await self._c.fetch("SELECT master_id, token_id, state FROM ipo_tokens WHERE reservation_id = $1 "
                                   "ORDER BY master_id, token_id", reservation_id)
        return [(r["master_id"], r["token_id"], TokenState(r["state"])) for r in rows]

    async def release(self, reservation_id: str) -> int:
        status = await self._c.execute("DELETE FROM ipo_tokens WHERE reservation_id = $1 AND state = 'reserved'",
                                       reservation_id)
        return int(status.split()[-1])

    async def mark_sold(self, reservation_id: str) -> int:
        rows = await self._c.fetch(
            "WITH s AS (UPDATE ipo_tokens SET state = 'sold' WHERE reservation_id = $1 AND state = 'reserved' "
            "RETURNING master_id), c AS (SELECT master_id, count(*)::int AS n FROM s GROUP BY master_id) "
            "UPDATE ipos SET shares_sold = shares_sold + c.n FROM c WHERE ipos.master_id = c.master_id RETURNING c.n",
            reservation_id)
        return sum(r["n"] for r in rows)

    # -- allocations, custodial addresses
    async def add_allocation(self, a: Allocation) -> None:
        await self._c.execute(
            "INSERT INTO share_allocations (job_id, master_id, user_id, address, token_ids, hold_until, created_at) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (job_id) DO NOTHING",
            a.job_id, a.master_id, a.user_id, _ck(a.address), list(a.token_ids), a.hold_until, a.created_at)

    async def allocation(self, job_id: str) -> Allocation | None:
        r = await self._c.fetchrow("SELECT * FROM share_allocations WHERE job_id = $1", job_id)
        if r is None:
            return None
        return Allocation(r["job_id"], r["master_id"], r["user_id"], r["address"], tuple(r["token_ids"]),
                          r["hold_until"], r["created_at"])

    async def hold_until(self, user_id: str, master_id: str) -> datetime | None:
        return await self._c.fetchval("SELECT max(hold_until) FROM share_allocations WHERE user_id = $1 "
                                      "AND master_id = $2", user_id, master_id)

    async def remember_custodial(self, address: str, user_id: str) -> None:
        await self._c.execute("INSERT INTO custodial_addresses (address, user_id) VALUES ($1, $2) "
                              "ON CONFLICT (address) DO NOTHING", _ck(address), user_id)

    async def custodial_owner(self, address: str) -> str | None:
        return await self._c.fetchval("SELECT user_id FROM custodial_addresses WHERE address = $1", _ck(address))


class PostgresMasterReads:
    """Reads of the chain projection tables (``0002_chain.sql``) joined with ``masters``."""

    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    async def holdings(self, addresses: list[str]) -> list[TokenHolding]:
        if not addresses:
            return []
        rows = await self._c.fetch(
            "SELECT contract, owner, count(*)::int AS n, (array_agg(token_id ORDER BY token_id))[1:100] AS ids "
            "FROM chain_share_owners WHERE owner = ANY($1::text[]) GROUP BY contract, owner ORDER BY contract, owner",
            sorted({_ck(a) for a in addresses}))
        return [TokenHolding(r["contract"], r["owner"], r["n"], tuple(int(i) for i in r["ids"])) for r in rows]

    async def mint_positions(self, shares_address: str) -> list[tuple[int, int]]:
        rows = await self._c.fetch(
            "SELECT block_number, log_index FROM chain_logs WHERE address = $1 AND event = 'Transfer' "
            "AND token_id IS NOT NULL AND lower(args->>'from') = $2 ORDER BY block_number, log_index",
            _ck(shares_address), ZERO)
        return [(r["block_number"], r["log_index"]) for r in rows]

    async def unseen_deposits(self, limit: int, final_block: int | None = None) -> list[tuple[str, DividendRecord]]:
        rows = await self._c.fetch(
            "SELECT m.id, l.address, l.amount, l.tx_hash, l.block_number, l.log_index, l.account, l.at "
            "FROM chain_logs l JOIN masters m ON m.dividend_address = l.address "
            "WHERE l.event = 'DividendDeposited' AND NOT EXISTS (SELECT 1 FROM master_deposits_seen s "
            "WHERE s.tx_hash = l.tx_hash AND s.log_index = l.log_index) AND ($2::bigint IS NULL OR l.block_number <= $2) "
            "ORDER BY l.block_number, l.log_index LIMIT $1", limit, final_block)
        return [(r["id"], DividendRecord(r["address"], int(r["amount"] or 0), r["tx_hash"], r["block_number"],
                                         r["log_index"], r["account"], r["at"])) for r in rows]

    async def mark_seen(self, tx_hash: str, log_index: int) -> bool:
        status = await self._c.execute("INSERT INTO master_deposits_seen (tx_hash, log_index) VALUES ($1, $2) "
                                       "ON CONFLICT DO NOTHING", tx_hash, log_index)
        return status == "INSERT 0 1"


def register_postgres_master_repositories() -> None:
    """``uow.masters`` and ``uow.master_reads`` on every PostgreSQL unit of work."""
    PostgresUnitOfWork.register("masters", PostgresMasterRepository)
    PostgresUnitOfWork.register("master_reads", PostgresMasterReads)

