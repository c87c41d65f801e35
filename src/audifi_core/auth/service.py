"""Auth & identity use cases (API.md "Auth & identity")."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from datetime import timedelta
from typing import Any

import attrs
import pyotp

from ..errors import Conflict, Forbidden, NotFound, RateLimited, Unauthorized, ValidationError
from ..events import DomainEvent
from ..ports import Clock, IdGenerator, Mail, Mailer, RateLimiter, SingleUseStore
from ..uow import UnitOfWorkFactory
from .model import (
    ArtistStatus,
    AuthContext,
    AuthSession,
    IssuedSession,
    LoginResult,
    MfaChallenge,
    Role,
    RotateOutcome,
    SessionInfo,
    TotpSetup,
    User,
    UserView,
    Wallet,
    WalletNonce,
)
from .ports import (
    AccessTokens,
    CustodyKeys,
    PasswordHasher,
    RevocationListener,
    SecretBox,
    SessionStore,
    SignatureVerifier,
)
from .siwe import parse_siwe_message

__all__ = ["AuthSettings", "AuthService"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HANDLE_ALPHABET = string.ascii_lowercase + string.digits
FRESH_SECONDS = 300
MIN_PASSWORD = 12


@attrs.frozen
class AuthSettings:
    public_url: str
    chain_id: int
    artist_signup: str = "open"  # open | approval
    access_ttl: int = 900
    refresh_ttl: int = 30 * 24 * 3600
    magic_link_ttl: int = 900
    mfa_token_ttl: int = 300
    wallet_nonce_ttl: int = 600
    magic_per_email: tuple[int, int] = (5, 900)
    magic_per_ip: tuple[int, int] = (30, 900)
    login_per_account: tuple[int, int] = (10, 900)
    login_per_ip: tuple[int, int] = (50, 900)
    totp_failures: tuple[int, int] = (5, 900)
    recovery_codes: int = 10

    @property
    def domain(self) -> str:
        return self.public_url.split("://", 1)[-1].split("/", 1)[0]


class AuthService:
    def __init__(
        self,
        *,
        settings: AuthSettings,
        uow: UnitOfWorkFactory,
        sessions: SessionStore,
        single_use: SingleUseStore,
        limiter: RateLimiter,
        hasher: PasswordHasher,
        tokens: AccessTokens,
        box: SecretBox,
        signatures: SignatureVerifier,
        custody: CustodyKeys,
        mailer: Mailer,
        clock: Clock,
        ids: IdGenerator,
        secret_key: bytes,
    ):
        self.settings = settings
        self._uow = uow
        self._sessions = sessions
        self._once = single_use
        self._limiter = limiter
        self._hasher = hasher
        self._tokens = tokens
        self._box = box
        self._signatures = signatures
        self._custody = custody
        self._mailer = mailer
        self._clock = clock
        self._ids = ids
        self._key = secret_key
        self._revocation_listeners: list[RevocationListener] = []

    # ----------------------------------------------------------------- helpers
    def on_revoke(self, listener: RevocationListener) -> None:
        """Be told the ids of sessions that die (logout, revocation, reuse)."""
        self._revocation_listeners.append(listener)

    def _hash(self, secret: str) -> str:
        return hmac.new(self._key, secret.encode(), hashlib.sha256).hexdigest()

    async def _limit(self, key: str, rule: tuple[int, int], what: str) -> None:
        decision = await self._limiter.hit(key, rule[0], rule[1])
        if not decision.allowed:
            raise RateLimited(f"Too many {what}; try again later", retry_after=decision.retry_after)

    async def _revoked(self, session_ids: list[str]) -> None:
        if session_ids:
            for listener in self._revocation_listeners:
                await listener(session_ids)

    @staticmethod
    def normalize_email(email: str) -> str:
        e = (email or "").strip().lower()
        if len(e) > 254 or not _EMAIL.match(e):
            raise ValidationError("Invalid email", fields={"email": "not a valid email address"})
        return e

    async def _get_user(self, user_id: str) -> User:
        async with self._uow(readonly=True) as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise NotFound(f"User {user_id} not found", code="USER_NOT_FOUND", details={"userId": user_id})
        return user

    async def view(self, user: User) -> UserView:
        async with self._uow(readonly=True) as uow:
            wallets = await uow.users.wallets_of(user.id)
        roles = [r.value for r in Role if r.value in user.roles]
        return UserView(
            id=user.id,
            email=user.email,
            display_name=user.display_name,
            roles=roles,
            artist={"name": user.artist_name} if user.has_role(Role.ARTIST) and user.artist_name else None,
            wallets=[w.address for w in sorted(wallets, key=lambda w: w.linked_at)],
            custodial_address=self._custody.address_for(user.index),
            two_factor_enabled=user.totp_enabled,
        )

    def _random_handle(self) -> str:
        return "fan-" + "".join(secrets.choice(_HANDLE_ALPHABET) for _ in range(4))

    async def get_or_create_user(self, email: str) -> User:
        email = self.normalize_email(email)
        for _ in range(3):
            async with self._uow(readonly=True) as uow:
                user = await uow.users.get_by_email(email)
            if user is not None:
                return user
            try:
                async with self._uow() as uow:
                    user = User(
                        id=self._ids.new_id("usr"),
                        index=await uow.users.next_index(),
                        email=email,
                        display_name=self._random_handle(),
                        created_at=self._clock.now(),
                    )
                    await uow.users.add(user)
                    uow.emit(self._event("user.registered", {"userId": user.id}))
                return user
            except Conflict:
                continue  # a concurrent first login created it: read it back
        raise Conflict("Could not create the user")  # pragma: no cover - needs three races

    def _event(self, type_: str, data: dict[str, Any]) -> DomainEvent:
        return DomainEvent(id=self._ids.new_id("evt"), type=type_, occurred_at=self._clock.now(), data=data)

    # ---------------------------------------------------------- sessions
    async def _issue(self, user: User, user_agent: str) -> IssuedSession:
        now = self._clock.now()
        sid = self._ids.new_id("ses")
        secret = self._ids.token(32)
        session = AuthSession(
            id=sid,
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            authenticated_at=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_ttl),
            refresh_hash=self._hash(secret),
            user_agent=(user_agent or "")[:256],
        )
        await self._sessions.create(session)
        return await self._tokens_for(user, session, secret)

    async def _tokens_for(self, user: User, session: AuthSession, secret: str) -> IssuedSession:
        access = self._tokens.issue({"sub": user.id, "sid": session.id}, self.settings.access_ttl,
                                    self._clock.now())
        return IssuedSession(
            access_token=access,
            refresh_token=f"{session.id}.{secret}",
            expires_in=self.settings.access_ttl,
            user=await self.view(user),
        )

    async def _complete_login(self, user: User, user_agent: str) -> LoginResult:
        if user.totp_enabled:
            token = self._ids.token(32)
            await self._once.put(f"mfa:{self._hash(token)}", {"userId": user.id},
                                 self.settings.mfa_token_ttl)
            return MfaChallenge(mfa_token=token)
        return await self._issue(user, user_agent)

    async def authenticate(self, access_token: str) -> AuthContext:
        now = self._clock.now()
        claims = self._tokens.decode(access_token, now)
        session = await self._sessions.get(str(claims.get("sid", "")))
        if session is None or session.user_id != claims.get("sub") or session.expires_at <= now:
            raise Unauthorized("Session has ended")
        user = await self._get_user(session.user_id)
        if (now - session.last_seen_at).total_seconds() > 60:
            await self._sessions.touch(session.id, now)
        return AuthContext(user=user, session=session)

    async def refresh(self, refresh_token: str, user_agent: str = "") -> IssuedSession:
        sid, _, secret = (refresh_token or "").partition(".")
        if not sid or not secret:
            raise Unauthorized("Invalid refresh token")
        new_secret = self._ids.token(32)
        expires = self._clock.now() + timedelta(seconds=self.settings.refresh_ttl)
        outcome = await self._sessions.rotate(sid, self._hash(secret), self._hash(new_secret), expires)
        if outcome is RotateOutcome.REUSED:
            await self._sessions.revoke(sid)
            await self._revoked([sid])
            raise Unauthorized("Refresh token reused; the session was revoked")
        if outcome is not RotateOutcome.ROTATED:
            raise Unauthorized("Invalid refresh token")
        session = await self._sessions.get(sid)
        if session is None:
            raise Unauthorized("Session has ended")
        user = await self._get_user(session.user_id)
        return await self._tokens_for(user, session, new_secret)

    async def logout(self, ctx: AuthContext) -> None:
        await self._sessions.revoke(ctx.session.id)
        await self._revoked([ctx.session.id])

    async def list_sessions(self, ctx: AuthContext) -> list[SessionInfo]:
        sessions = await self._sessions.list_for_user(ctx.user_id)
        return [
            SessionInfo(id=s.id, created_at=s.created_at, last_seen_at=s.last_seen_at,
                        user_agent=s.user_agent, current=s.id == ctx.session.id)
            for s in sorted(sessions, key=lambda s: s.created_at)
        ]

    async def delete_session(self, ctx: AuthContext, session_id: str) -> None:
        session = await self._sessions.get(session_id)
        if session is None or session.user_id != ctx.user_id:
            raise NotFound(f"Session {session_id} not found", code="SESSION_NOT_FOUND",
                           details={"sessionId": session_id})
        await self._sessions.revoke(session_id)
        await self._revoked([session_id])

    async def _revoke_others(self, ctx: AuthContext) -> None:
        await self._revoked(await self._sessions.revoke_user(ctx.user_id, except_session=ctx.session.id))

    # ---------------------------------------------------------- magic link
    async def request_magic_link(self, email: str, ip: str) -> None:
        email = self.normalize_email(email)
        await self._limit(f"ml:ip:{ip}", self.settings.magic_per_ip, "sign-in requests")
        await self._limit(f"ml:email:{self._hash(email)}", self.settings.magic_per_email, "sign-in requests")
        token = self._ids.token(32)  # 256 bits
        await self._once.put(f"ml:{self._hash(token)}", {"email": email}, self.settings.magic_link_ttl)
        link = f"{self.settings.public_url.rstrip('/')}/auth/magic?token={token}"
        await self._mailer.send(Mail(
            to=email,
            subject="Your AudiFi sign-in link",
            text=(f"Open this link to sign in to AudiFi (valid for 15 minutes, once):\n\n{link}\n\n"
                  "If you did not ask for it, ignore this mail."),
        ))

    async def verify_magic_link(self, token: str, user_agent: str = "") -> LoginResult:
        data = await self._once.take(f"ml:{self._hash(token or '')}")
        if data is None:
            raise Unauthorized("Sign-in link is invalid, used or expired")
        user = await self.get_or_create_user(data["email"])
        return await self._complete_login(user, user_agent)

    # ---------------------------------------------------------- password
    async def login(self, email: str, password: str, ip: str, user_agent: str = "") -> LoginResult:
        try:
            email = self.normalize_email(email)
        except ValidationError:
            email = (email or "").strip().lower()[:254]
        await self._limit(f"login:ip:{ip}", self.settings.login_per_ip, "sign-in attempts")
        await self._limit(f"login:acct:{self._hash(email)}", self.settings.login_per_account,
                          "sign-in attempts")
        async with self._uow(readonly=True) as uow:
            user = await uow.users.get_by_email(email)
        if user is None or user.password_hash is None:
            await self._hasher.verify_dummy(password or "")
            raise Unauthorized("Invalid email or password")
        if not await self._hasher.verify(user.password_hash, password or ""):
            raise Unauthorized("Invalid email or password")
        return await self._complete_login(user, user_agent)

    async def _prove_fresh(self, ctx: AuthContext, *, current_password: str | None,
                           code: str | None) -> bool:
        """Fresh = signed in within 5 minutes, or the current password, or a current 2FA code.

        Returns whether ``code`` was checked (and so consumed) here.
        """
        if (self._clock.now() - ctx.session.authenticated_at).total_seconds() <= FRESH_SECONDS:
            return False
        if current_password and ctx.user.password_hash:
            if await self._hasher.verify(ctx.user.password_hash, current_password):
                return False
            raise Unauthorized("Current password is wrong", details={"reauth": True})
        if code and ctx.user.totp_enabled:
            await self._check_code(ctx.user, code, allow_recovery=False)
            return True
        raise Unauthorized("Recent sign-in required", details={"reauth": True})

    async def set_password(self, ctx: AuthContext, password: str, *, current_password: str | None = None,
                           code: str | None = None) -> None:
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise ValidationError("Password too short",
                                  fields={"password": f"must be at least {MIN_PASSWORD} characters"})
        if len(password) > 1024:
            raise ValidationError("Password too long", fields={"password": "at most 1024 characters"})
        code_used = await self._prove_fresh(ctx, current_password=current_password, code=code)
        if ctx.user.totp_enabled and not code_used:
            if not code:
                raise Unauthorized("A current 2FA code is required", details={"reauth": True, "code": "required"})
            await self._check_code(ctx.user, code, allow_recovery=False)
        new_hash = await self._hasher.hash(password)
        async with self._uow() as uow:
            user = await uow.users.get(ctx.user_id)
            assert user is not None
            await uow.users.update(attrs.evolve(user, password_hash=new_hash))
        await self._revoke_others(ctx)

    # ---------------------------------------------------------- 2FA
    def _totp(self, user: User) -> pyotp.TOTP:
        assert user.totp_secret is not None
        return pyotp.TOTP(self._box.decrypt(user.totp_secret), issuer="AudiFi", name=user.email)

    async def _check_code(self, user: User, code: str, *, allow_recovery: bool) -> None:
        """Check a TOTP (or recovery) code; failures counted before the check, 5 lock 15 min."""
        if user.totp_secret is None:
            raise Conflict("Two-factor authentication is not set up")
        fail_key = f"2fa:fail:{user.id}"
        decision = await self._limiter.hit(fail_key, *self.settings.totp_failures)
        if not decision.allowed:
            raise RateLimited("Too many wrong codes; 2FA is locked for a while",
                              retry_after=decision.retry_after)
        code = (code or "").strip().replace(" ", "")
        if code.isdigit() and len(code) == 6:
            totp = self._totp(user)
            now = self._clock.now()
            for offset in (0, -1, 1):
                when = now + timedelta(seconds=30 * offset)
                if hmac.compare_digest(totp.at(when), code):
                    step = totp.timecode(when)
                    if await self._once.claim(f"totp:{user.id}:{step}", 180):
                        await self._limiter.reset(fail_key)
                        return
                    raise Unauthorized("This code was already used")
        elif allow_recovery and code:
            async with self._uow() as uow:
                ok = await uow.users.consume_recovery_code(user.id, self._hash(code.lower()),
                                                           self._clock.now())
            if ok:
                await self._limiter.reset(fail_key)
                return
        raise Unauthorized("Invalid code")

    async def totp_setup(self, ctx: AuthContext, *, current_password: str | None = None,
                         code: str | None = None) -> TotpSetup:
        user = ctx.user
        if user.totp_enabled:
            raise Conflict("Two-factor authentication is already on")
        await self._prove_fresh(ctx, current_password=current_password, code=None)
        secret = pyotp.random_base32()
        async with self._uow() as uow:
            fresh_user = await uow.users.get(user.id)
            assert fresh_user is not None
            if fresh_user.totp_enabled:
                raise Conflict("Two-factor authentication is already on")
            await uow.users.update(attrs.evolve(fresh_user, totp_secret=self._box.encrypt(secret)))
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="AudiFi")
        return TotpSetup(secret=secret, otpauth_uri=uri)

    def _new_recovery_codes(self) -> list[str]:
        alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
        return ["".join(secrets.choice(alphabet) for _ in range(5)) + "-" +
                "".join(secrets.choice(alphabet) for _ in range(5))
                for _ in range(self.settings.recovery_codes)]

    async def totp_enable(self, ctx: AuthContext, code: str) -> list[str]:
        user = await self._get_user(ctx.user_id)
        if user.totp_enabled:
            raise Conflict("Two-factor authentication is already on")
        if user.totp_secret is None:
            raise Conflict("Call /auth/2fa/setup first")
        await self._check_code(user, code, allow_recovery=False)
        codes = self._new_recovery_codes()
        async with self._uow() as uow:
            await uow.users.update(attrs.evolve(user, totp_enabled=True))
            await uow.users.replace_recovery_codes(user.id, [self._hash(c) for c in codes])
        return codes

    async def totp_login(self, mfa_token: str, code: str, user_agent: str = "") -> IssuedSession:
        key = f"mfa:{self._hash(mfa_token or '')}"
        data = await self._once.take(key)
        if data is None:
            raise Unauthorized("mfaToken is invalid, used or expired")
        user = await self._get_user(data["userId"])
        await self._check_code(user, code, allow_recovery=True)
        return await self._issue(user, user_agent)

    async def totp_disable(self, ctx: AuthContext, code: str) -> None:
        user = await self._get_user(ctx.user_id)
        if not user.totp_enabled:
            raise Conflict("Two-factor authentication is not on")
        await self._check_code(user, code, allow_recovery=False)
        async with self._uow() as uow:
            await uow.users.update(attrs.evolve(user, totp_enabled=False, totp_secret=None))
            await uow.users.replace_recovery_codes(user.id, [])
        await self._revoke_others(ctx)

    async def regenerate_recovery_codes(self, ctx: AuthContext, code: str) -> list[str]:
        user = await self._get_user(ctx.user_id)
        if not user.totp_enabled:
            raise Conflict("Two-factor authentication is not on")
        await self._check_code(user, code, allow_recovery=False)
        codes = self._new_recovery_codes()
        async with self._uow() as uow:
            await uow.users.replace_recovery_codes(user.id, [self._hash(c) for c in codes])
        return codes

    # ---------------------------------------------------------- wallets
    async def wallet_nonce(self, ctx: AuthContext) -> WalletNonce:
        alphabet = string.ascii_letters + string.digits
        nonce = "".join(secrets.choice(alphabet) for _ in range(17))
        expires = self._clock.now() + timedelta(seconds=self.settings.wallet_nonce_ttl)
        await self._once.put(f"wn:{ctx.user_id}:{nonce}", {"userId": ctx.user_id},
                             self.settings.wallet_nonce_ttl)
        return WalletNonce(nonce=nonce, domain=self.settings.domain, uri=self.settings.public_url,
                           chain_id=self.settings.chain_id, expires_at=expires)

    async def wallet_link(self, ctx: AuthContext, message: str, signature: str, *,
                          current_password: str | None = None, code: str | None = None) -> Wallet:
        await self._prove_fresh(ctx, current_password=current_password, code=code)
        parsed = parse_siwe_message(message or "")
        parsed.check(domain=self.settings.domain, uri=self.settings.public_url,
                     chain_id=self.settings.chain_id, nonce=parsed.nonce, now=self._clock.now())
        signer = self._signatures.recover_personal_sign(message, signature or "")
        if signer != parsed.address:
            raise Unauthorized("Signature does not match the message's address")
        if await self._once.take(f"wn:{ctx.user_id}:{parsed.nonce}") is None:
            raise Unauthorized("Nonce is unknown, used or expired")
        wallet = Wallet(address=parsed.address, user_id=ctx.user_id, linked_at=self._clock.now())
        async with self._uow() as uow:
            owner = await uow.users.wallet_owner(wallet.address)
            if owner is not None:
                raise Conflict("This address is already linked", details={"address": wallet.address})
            await uow.users.add_wallet(wallet)
        return wallet

    async def wallet_unlink(self, ctx: AuthContext, address: str, *, code: str | None = None) -> None:
        user = await self._get_user(ctx.user_id)
        code_used = await self._prove_fresh(ctx, current_password=None, code=code)
        if user.totp_enabled and not code_used:
            if not code:
                raise Unauthorized("A current 2FA code is required", details={"reauth": True, "code": "required"})
            await self._check_code(user, code, allow_recovery=False)
        async with self._uow() as uow:
            wallets = await uow.users.wallets_of(user.id)
            match = next((w for w in wallets if w.address.lower() == (address or "").lower()), None)
            if match is None:
                raise NotFound(f"Wallet {address} is not linked", code="WALLET_NOT_FOUND",
                               details={"address": address})
            await uow.users.remove_wallet(user.id, match.address)
        await self._revoke_others(ctx)

    # ---------------------------------------------------------- profile & roles
    async def me(self, ctx: AuthContext) -> UserView:
        return await self.view(await self._get_user(ctx.user_id))

    async def update_profile(self, ctx: AuthContext, display_name: str) -> UserView:
        name = (display_name or "").strip()
        if not 1 <= len(name) <= 40:
            raise ValidationError("Invalid display name", fields={"displayName": "1 to 40 characters"})
        async with self._uow() as uow:
            user = await uow.users.get(ctx.user_id)
            assert user is not None
            user = attrs.evolve(user, display_name=name)
            await uow.users.update(user)
        return await self.view(user)

    async def request_artist(self, ctx: AuthContext, artist_name: str) -> UserView | None:
        """Artist role now (signup ``open``) → the user; or pending approval → ``None``."""
        name = (artist_name or "").strip()
        if not 1 <= len(name) <= 80:
            raise ValidationError("Invalid artist name", fields={"artistName": "1 to 80 characters"})
        async with self._uow() as uow:
            user = await uow.users.get(ctx.user_id)
            assert user is not None
            if user.has_role(Role.ARTIST):
                user = attrs.evolve(user, artist_name=name)
            elif self.settings.artist_signup == "open":
                user = attrs.evolve(user.with_role(Role.ARTIST), artist_name=name,
                                    artist_status=ArtistStatus.APPROVED)
            else:
                user = attrs.evolve(user, artist_name=name, artist_status=ArtistStatus.PENDING)
            await uow.users.update(user)
        return await self.view(user) if user.has_role(Role.ARTIST) else None

    async def approve_artist(self, ctx: AuthContext, user_id: str) -> UserView:
        if not ctx.user.has_role(Role.ADMIN):
            raise Forbidden("Admins only")
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFound(f"User {user_id} not found", code="USER_NOT_FOUND", details={"userId": user_id})
            if user.artist_status is not ArtistStatus.PENDING and not user.has_role(Role.ARTIST):
                raise Conflict("This user has not asked to be an artist")
            user = attrs.evolve(user.with_role(Role.ARTIST), artist_status=ArtistStatus.APPROVED)
            await uow.users.update(user)
        return await self.view(user)

    async def grant_admin(self, email: str) -> User:
        user = await self.get_or_create_user(email)
        async with self._uow() as uow:
            fresh = await uow.users.get(user.id)
            assert fresh is not None
            user = fresh.with_role(Role.ADMIN)
            await uow.users.update(user)
        return user
