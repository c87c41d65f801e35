"""Password hashing (Argon2id), access tokens (JWT HS256) and encryption at rest (Fernet)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import datetime
from typing import Any

import argon2
import jwt
from cryptography.fernet import Fernet, InvalidToken

from audifi_core.errors import Unauthorized

__all__ = ["Argon2PasswordHasher", "JwtAccessTokens", "FernetSecretBox"]


class Argon2PasswordHasher:
    """Argon2id, memory-hard; hashing runs in a worker thread so the event loop keeps serving."""

    def __init__(self, *, time_cost: int = 3, memory_cost_kib: int = 65536, parallelism: int = 2):
        self._ph = argon2.PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib,
                                         parallelism=parallelism)
        self._dummy = self._ph.hash("audifi-dummy-password-for-timing")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._ph.hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._ph.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        await asyncio.to_thread(self._verify, self._dummy, password)


class JwtAccessTokens:
    def __init__(self, secret: str, issuer: str = "audifi"):
        self._secret = secret
        self._issuer = issuer

    def issue(self, claims: dict[str, Any], ttl_seconds: int, now: datetime) -> str:
        iat = int(now.timestamp())
        payload = {**claims, "iss": self._issuer, "iat": iat, "exp": iat + ttl_seconds, "typ": "access"}
        return jwt.encode(payload, self._secret, algorithm="HS256")

    def decode(self, token: str, now: datetime) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], issuer=self._issuer,
                                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": ["exp", "sub", "sid"]})
        except jwt.PyJWTError as e:
            raise Unauthorized("Invalid access token") from e
        if claims.get("typ") != "access" or int(claims["exp"]) <= now.timestamp():
            raise Unauthorized("Access token expired")
        return claims


class FernetSecretBox:
    """Authenticated encryption for secrets at rest (TOTP seeds), keyed from config."""

    def __init__(self, key_material: str):
        key = base64.urlsafe_b64encode(hashlib.sha256(b"audifi-secretbox:" + key_material.encode()).digest())
        self._f = Fernet(key)

    def encrypt(self, plaintext: str) -> str:
        return self._f.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._f.decrypt(ciphertext.encode()).decode()
        except InvalidToken as e:  # wrong ENCRYPTION_KEY: a configuration bug, not user input
            raise RuntimeError("cannot decrypt a stored secret: ENCRYPTION_KEY changed?") from e
