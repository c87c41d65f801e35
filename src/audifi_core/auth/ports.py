"""Ports the identity context needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from .model import AuthSession, RotateOutcome, User, Wallet

__all__ = [
    "UserRepository",
    "SessionStore",
    "PasswordHasher",
    "AccessTokens",
    "SecretBox",
    "SignatureVerifier",
    "CustodyKeys",
    "RevocationListener",
]


class UserRepository(Protocol):
    async def next_index(self) -> int: ...

    async def add(self, user: User) -> None:
        """Raises Conflict when the email is taken."""
        ...

    async def get(self, user_id: str) -> User | None: ...

    async def get_by_email(self, email: str) -> User | None: ...

    async def update(self, user: User) -> None: ...

    async def wallets_of(self, user_id: str) -> list[Wallet]: ...

    async def add_wallet(self, wallet: Wallet) -> None:
        """Raises Conflict when the address is linked to any user."""
        ...

    async def remove_wallet(self, user_id: str, address: str) -> bool: ...

    async def wallet_owner(self, address: str) -> str | None: ...

    async def replace_recovery_codes(self, user_id: str, code_hashes: list[str]) -> None: ...

    async def consume_recovery_code(self, user_id: str, code_hash: str, now: datetime) -> bool:
        """Atomically mark an unused code used; ``True`` for exactly one caller."""
        ...


class SessionStore(Protocol):
    async def create(self, session: AuthSession) -> None: ...

    async def get(self, session_id: str) -> AuthSession | None: ...

    async def touch(self, session_id: str, now: datetime) -> None: ...

    async def rotate(self, session_id: str, presented_hash: str, new_hash: str,
                     expires_at: datetime) -> RotateOutcome:
        """Atomically swap the refresh hash if ``presented_hash`` is the current one."""
        ...

    async def revoke(self, session_id: str) -> AuthSession | None: ...

    async def revoke_user(self, user_id: str, except_session: str | None = None) -> list[str]: ...

    async def list_for_user(self, user_id: str) -> list[AuthSession]: ...


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    async def verify_dummy(self, password: str) -> None:
        """Spend the same time as ``verify`` for an account that does not exist."""
        ...


class AccessTokens(Protocol):
    def issue(self, claims: dict[str, Any], ttl_seconds: int, now: datetime) -> str: ...

    def decode(self, token: str, now: datetime) -> dict[str, Any]:
        """Raises Unauthorized when the token is malformed, forged or expired."""
        ...


class SecretBox(Protocol):
    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, ciphertext: str) -> str: ...


class SignatureVerifier(Protocol):
    def recover_personal_sign(self, message: str, signature: str) -> str: ...


class CustodyKeys(Protocol):
    def address_for(self, index: int) -> str: ...


RevocationListener = Callable[[list[str]], Awaitable[None]]
