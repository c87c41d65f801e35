"""Identity: users, their wallets, sign-in sessions and what the API shows of them."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

__all__ = [
    "Role",
    "ArtistStatus",
    "User",
    "Wallet",
    "AuthSession",
    "AuthContext",
    "UserView",
    "IssuedSession",
    "MfaChallenge",
    "LoginResult",
    "RotateOutcome",
    "SessionInfo",
    "WalletNonce",
    "TotpSetup",
]


class Role(enum.StrEnum):
    FAN = "fan"
    ARTIST = "artist"
    ADMIN = "admin"


class ArtistStatus(enum.StrEnum):
    NONE = "none"
    PENDING = "pending"
    APPROVED = "approved"


@attrs.frozen
class User:
    id: str
    index: int
    email: str
    display_name: str
    created_at: datetime
    roles: frozenset[str] = frozenset({Role.FAN.value})
    artist_name: str | None = None
    artist_status: ArtistStatus = ArtistStatus.NONE
    password_hash: str | None = attrs.field(default=None, repr=False)
    totp_secret: str | None = attrs.field(default=None, repr=False)  # encrypted at rest
    totp_enabled: bool = False

    def has_role(self, role: Role) -> bool:
        return role.value in self.roles

    def with_role(self, role: Role) -> User:
        return attrs.evolve(self, roles=self.roles | {role.value})


@attrs.frozen
class Wallet:
    address: str
    user_id: str
    linked_at: datetime


@attrs.frozen
class AuthSession:
    """A signed-in device: one refresh-token family."""

    id: str
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    authenticated_at: datetime
    expires_at: datetime
    refresh_hash: str = attrs.field(repr=False)
    previous_hashes: tuple[str, ...] = attrs.field(default=(), repr=False)
    user_agent: str = ""


class RotateOutcome(enum.Enum):
    ROTATED = "rotated"
    REUSED = "reused"
    UNKNOWN = "unknown"


@attrs.frozen
class AuthContext:
    """Who is calling: the user and the session their access token belongs to."""

    user: User
    session: AuthSession

    @property
    def user_id(self) -> str:
        return self.user.id


@attrs.frozen
class UserView:
    id: str
    email: str
    display_name: str
    roles: list[str]
    artist: dict[str, str] | None
    wallets: list[str]
    custodial_address: str
    two_factor_enabled: bool
    subscription: dict[str, str] | None = None


@attrs.frozen
class IssuedSession:
    access_token: str
    refresh_token: str
    expires_in: int
    user: UserView


@attrs.frozen
class MfaChallenge:
    mfa_token: str
    mfa_required: bool = True


LoginResult = IssuedSession | MfaChallenge


@attrs.frozen
class SessionInfo:
    id: str
    created_at: datetime
    last_seen_at: datetime
    user_agent: str
    current: bool


@attrs.frozen
class WalletNonce:
    nonce: str
    domain: str
    uri: str
    chain_id: int
    expires_at: datetime


@attrs.frozen
class TotpSetup:
    secret: str
    otpauth_uri: str
