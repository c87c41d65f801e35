"""Auth & identity routes (API.md "Auth & identity")."""

from __future__ import annotations

from datetime import datetime

import attrs
from aiohttp import web

from audifi_core.auth.model import IssuedSession, MfaChallenge, Role, SessionInfo, UserView
from audifi_core.errors import ValidationError

from ..api import Raw, RouteTable
from ..keys import PLATFORM
from ..middleware import auth_context, client_ip, optional_auth, require_role
from ..serde import json_response, parse, read_json

__all__ = ["register"]


@attrs.frozen
class EmailBody:
    email: str


@attrs.frozen
class TokenBody:
    token: str


@attrs.frozen
class LoginBody:
    email: str
    password: str


@attrs.frozen
class PasswordBody:
    password: str
    current_password: str | None = None
    code: str | None = None


@attrs.frozen
class RefreshBody:
    refresh_token: str


@attrs.frozen
class FreshBody:
    current_password: str | None = None


@attrs.frozen
class CodeBody:
    code: str


@attrs.frozen
class TwoFactorVerifyBody:
    """Signed in: ``{code}`` enables 2FA. Signing in: ``{mfaToken, code}`` (code may be a recovery code)."""

    code: str
    mfa_token: str | None = None


@attrs.frozen
class WalletLinkBody:
    message: str
    signature: str
    current_password: str | None = None
    code: str | None = None


@attrs.frozen
class ProfileBody:
    display_name: str


@attrs.frozen
class ArtistBody:
    artist_name: str


@attrs.frozen
class Sent:
    sent: bool


@attrs.frozen
class TotpSetupOut:
    secret: str
    otpauth_uri: str


@attrs.frozen
class TotpEnabledOut:
    enabled: bool
    recovery_codes: list[str]


@attrs.frozen
class RecoveryCodesOut:
    recovery_codes: list[str]


@attrs.frozen
class WalletNonceOut:
    nonce: str
    domain: str
    uri: str
    chain_id: int
    expires_at: datetime


@attrs.frozen
class WalletOut:
    address: str
    linked_at: datetime


@attrs.frozen
class PendingOut:
    status: str


LoginOut = IssuedSession | MfaChallenge


def _login_json(result: IssuedSession | MfaChallenge) -> web.Response:
    if isinstance(result, MfaChallenge):
        return json_response({"mfaRequired": True, "mfaToken": result.mfa_token})
    return json_response(result)


_MAGIC_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>AudiFi sign-in</title>
<meta name="referrer" content="no-referrer"></head><body>
<h1>Sign in to AudiFi</h1><p>Press the button to finish signing in. Opening this page alone signs
nobody in, so link scanners cannot use up your link.</p>
<button id="go">Sign in</button><pre id="out"></pre>
<script>
document.getElementById('go').onclick = async () => {
  const token = new URLSearchParams(location.search).get('token');
  const r = await fetch('/auth/verify-magic-link', {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify({token})});
  document.getElementById('out').textContent = r.ok ? 'Signed in.' : 'This link is used or expired.';
};
</script></body></html>"""


def register(t: RouteTable) -> None:
    tag = "auth"

    @t.post("/auth/magic-link", summary="Mail a single-use sign-in link (same answer for every email)",
            body=EmailBody, response=Sent, status=202, tag=tag, errors=(429,))
    async def magic_link(request: web.Request) -> web.Response:
        body = parse(await read_json(request), EmailBody)
        await request.app[PLATFORM].auth.request_magic_link(body.email, client_ip(request))
        return json_response(Sent(True), status=202)

    @t.get("/auth/magic", summary="The page a mailed link opens; it does not consume the link",
           response=Raw({"type": "string"}, "text/html"), query={"token": (str, "the mailed token")}, tag=tag)
    async def magic_page(request: web.Request) -> web.Response:
        return web.Response(text=_MAGIC_PAGE, content_type="text/html",
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    @t.post("/auth/verify-magic-link", summary="Consume a magic link → Session or an MFA challenge",
            body=TokenBody, response=LoginOut, tag=tag, errors=(401, 429))
    async def verify_magic_link(request: web.Request) -> web.Response:
        body = parse(await read_json(request), TokenBody)
        result = await request.app[PLATFORM].auth.verify_magic_link(body.token, request.headers.get("User-Agent", ""))
        return _login_json(result)

    @t.post("/auth/login", summary="Password sign-in → Session or an MFA challenge", body=LoginBody,
            response=LoginOut, tag=tag, errors=(401, 429))
    async def login(request: web.Request) -> web.Response:
        body = parse(await read_json(request), LoginBody)
        result = await request.app[PLATFORM].auth.login(body.email, body.password, client_ip(request),
                                                        request.headers.get("User-Agent", ""))
        return _login_json(result)

    @t.post("/auth/password", summary="Set or change the password (fresh auth; other sessions revoked)",
            who="auth", body=PasswordBody, status=204, tag=tag, errors=(429,))
    async def set_password(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), PasswordBody)
        await request.app[PLATFORM].auth.set_password(ctx, body.password, current_password=body.current_password,
                                                      code=body.code)
        return web.Response(status=204)

    @t.post("/auth/refresh", summary="Rotate the refresh token → Session; reuse revokes the family",
            body=RefreshBody, response=IssuedSession, tag=tag, errors=(401,))
    async def refresh(request: web.Request) -> web.Response:
        body = parse(await read_json(request), RefreshBody)
        return json_response(await request.app[PLATFORM].auth.refresh(body.refresh_token,
                                                                      request.headers.get("User-Agent", "")))

    @t.post("/auth/2fa/setup", summary="Start TOTP setup (fresh auth); 409 while 2FA is on", who="auth",
            body=FreshBody, response=TotpSetupOut, tag=tag, errors=(409,))
    async def totp_setup(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request, optional=True), FreshBody)
        setup = await request.app[PLATFORM].auth.totp_setup(ctx, current_password=body.current_password)
        return json_response(TotpSetupOut(setup.secret, setup.otpauth_uri))

    @t.post("/auth/2fa/verify", summary="Enable 2FA ({code}, signed in) or finish sign-in ({mfaToken, code})",
            who="auth / public", body=TwoFactorVerifyBody, response=TotpEnabledOut | IssuedSession, tag=tag,
            errors=(401, 409, 429))
    async def totp_verify(request: web.Request) -> web.Response:
        body = parse(await read_json(request), TwoFactorVerifyBody)
        auth = request.app[PLATFORM].auth
        if body.mfa_token is not None:
            return json_response(await auth.totp_login(body.mfa_token, body.code,
                                                       request.headers.get("User-Agent", "")))
        ctx = await optional_auth(request)
        if ctx is None:
            raise ValidationError("mfaToken is required when not signed in", fields={"mfaToken": "required"})
        codes = await auth.totp_enable(ctx, body.code)
        return json_response(TotpEnabledOut(True, codes))

    @t.post("/auth/2fa/disable", summary="Turn 2FA off with a current code; other sessions revoked",
            who="auth", body=CodeBody, status=204, tag=tag, errors=(409, 429))
    async def totp_disable(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), CodeBody)
        await request.app[PLATFORM].auth.totp_disable(ctx, body.code)
        return web.Response(status=204)

    @t.post("/auth/2fa/recovery-codes", summary="Replace the recovery codes", who="auth", body=CodeBody,
            response=RecoveryCodesOut, tag=tag, errors=(409, 429))
    async def recovery_codes(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), CodeBody)
        return json_response(RecoveryCodesOut(await request.app[PLATFORM].auth.regenerate_recovery_codes(ctx, body.code)))

    @t.post("/auth/wallet/nonce", summary="A single-use nonce and what the EIP-4361 message must carry",
            who="auth", response=WalletNonceOut, tag=tag)
    async def wallet_nonce(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        n = await request.app[PLATFORM].auth.wallet_nonce(ctx)
        return json_response(WalletNonceOut(n.nonce, n.domain, n.uri, n.chain_id, n.expires_at))

    @t.post("/auth/wallet/link", summary="Link a wallet by a signed EIP-4361 message (fresh auth)", who="auth",
            body=WalletLinkBody, response=WalletOut, tag=tag, errors=(409,))
    async def wallet_link(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), WalletLinkBody)
        w = await request.app[PLATFORM].auth.wallet_link(ctx, body.message, body.signature,
                                                         current_password=body.current_password, code=body.code)
        return json_response(WalletOut(w.address, w.linked_at))

    @t.delete("/auth/wallet/{address}", summary="Unlink a wallet (?code= when 2FA is on)", who="auth",
              status=204, query={"code": (str, "current 2FA code")}, tag=tag, errors=(404,))
    async def wallet_unlink(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        await request.app[PLATFORM].auth.wallet_unlink(ctx, request.match_info["address"],
                                                       code=request.query.get("code"))
        return web.Response(status=204)

    @t.get("/auth/sessions", summary="This user's signed-in sessions", who="auth", response=list[SessionInfo],
           tag=tag)
    async def sessions(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        return json_response(await request.app[PLATFORM].auth.list_sessions(ctx))

    @t.delete("/auth/sessions/{id}", summary="End one session at once", who="auth", status=204, tag=tag,
              errors=(404,))
    async def delete_session(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        await request.app[PLATFORM].auth.delete_session(ctx, request.match_info["id"])
        return web.Response(status=204)

    @t.post("/auth/logout", summary="End this session: its tokens and sockets die at once", who="auth",
            status=204, tag=tag)
    async def logout(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        await request.app[PLATFORM].auth.logout(ctx)
        return web.Response(status=204)

    @t.get("/me", summary="The signed-in user", who="auth", response=UserView, tag=tag)
    async def me(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        return json_response(await request.app[PLATFORM].auth.me(ctx))

    @t.patch("/me", summary="Change the display name", who="auth", body=ProfileBody, response=UserView, tag=tag)
    async def patch_me(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), ProfileBody)
        return json_response(await request.app[PLATFORM].auth.update_profile(ctx, body.display_name))

    @t.post("/me/artist", summary="Become an artist (open signup) or ask for approval (202 pending)",
            who="auth", body=ArtistBody, response=UserView | PendingOut, tag=tag)
    async def become_artist(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), ArtistBody)
        view = await request.app[PLATFORM].auth.request_artist(ctx, body.artist_name)
        if view is None:
            return json_response(PendingOut("pending"), status=202)
        return json_response(view)

    @t.post("/admin/artists/{userId}/approve", summary="Approve an artist request", who="admin",
            response=UserView, tag=tag, errors=(404, 409))
    async def approve_artist(request: web.Request) -> web.Response:
        ctx = await require_role(request, Role.ADMIN)
        return json_response(await request.app[PLATFORM].auth.approve_artist(ctx, request.match_info["userId"]))
