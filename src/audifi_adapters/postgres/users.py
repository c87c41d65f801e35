"""Users, wallets and recovery codes in PostgreSQL."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from audifi_core.auth.model import ArtistStatus, User, Wallet
from audifi_core.errors import Conflict

__all__ = ["PostgresUserRepository", "PostgresProcessedEvents"]

_COLS = ("id, idx, email, display_name, roles, artist_name, artist_status, password_hash, "
         "totp_secret, totp_enabled, created_at")


def _user(r: asyncpg.Record | None) -> User | None:
    if r is None:
        return None
    return User(
        id=r["id"], index=r["idx"], email=r["email"], display_name=r["display_name"],
        created_at=r["created_at"], roles=frozenset(r["roles"]), artist_name=r["artist_name"],
        artist_status=ArtistStatus(r["artist_status"]), password_hash=r["password_hash"],
        totp_secret=r["totp_secret"], totp_enabled=r["totp_enabled"],
    )


class PostgresUserRepository:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    async def next_index(self) -> int:
        return int(await self._c.fetchval("SELECT nextval('user_index_seq')"))

    async def add(self, user: User) -> None:
        try:
            await self._c.execute(
                f"INSERT INTO users ({_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                user.id, user.index, user.email, user.display_name, sorted(user.roles), user.artist_name,
                user.artist_status.value, user.password_hash, user.totp_secret, user.totp_enabled,
                user.created_at)
        except asyncpg.UniqueViolationError as e:
            raise Conflict("Email already registered") from e

    async def get(self, user_id: str) -> User | None:
        return _user(await self._c.fetchrow(f"SELECT {_COLS} FROM users WHERE id = $1", user_id))

    async def get_by_email(self, email: str) -> User | None:
        return _user(await self._c.fetchrow(f"SELECT {_COLS} FROM users WHERE email = $1", email))

    async def update(self, user: User) -> None:
        await self._c.execute(
            "UPDATE users SET display_name=$2, roles=$3, artist_name=$4, artist_status=$5, "
            "password_hash=$6, totp_secret=$7, totp_enabled=$8 WHERE id=$1",
            user.id, user.display_name, sorted(user.roles), user.artist_name, user.artist_status.value,
            user.password_hash, user.totp_secret, user.totp_enabled)

    async def wallets_of(self, user_id: str) -> list[Wallet]:
        rows = await self._c.fetch(
            "SELECT address, user_id, linked_at FROM wallets WHERE user_id = $1 ORDER BY linked_at", user_id)
        return [Wallet(r["address"], r["user_id"], r["linked_at"]) for r in rows]

    async def add_wallet(self, wallet: Wallet) -> None:
        try:
            await self._c.execute(
                "INSERT INTO wallets (address_lower, address, user_id, linked_at) VALUES ($1,$2,$3,$4)",
                wallet.address.lower(), wallet.address, wallet.user_id, wallet.linked_at)
        except asyncpg.UniqueViolationError as e:
            raise Conflict("This address is already linked", details={"address": wallet.address}) from e

    async def remove_wallet(self, user_id: str, address: str) -> bool:
        r = await self._c.execute("DELETE FROM wallets WHERE address_lower = $1 AND user_id = $2",
                                  address.lower(), user_id)
        return r.endswith(" 1")

    async def wallet_owner(self, address: str) -> str | None:
        return await self._c.fetchval("SELECT user_id FROM wallets WHERE address_lower = $1", address.lower())

    async def replace_recovery_codes(self, user_id: str, code_hashes: list[str]) -> None:
        await self._c.execute("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
        if code_hashes:
            await self._c.executemany("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                                      [(user_id, h) for h in code_hashes])

    async def consume_recovery_code(self, user_id: str, code_hash: str, now: datetime) -> bool:
        r = await self._c.fetchval(
            "UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 "
            "AND used_at IS NULL RETURNING 1", user_id, code_hash, now)
        return r is not None


class PostgresProcessedEvents:
    def __init__(self, conn: asyncpg.Connection):
        self._c = conn

    async def mark(self, consumer: str, event_id: str) -> bool:
        r = await self._c.fetchval(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING 1", consumer, event_id)
        return r is not None
