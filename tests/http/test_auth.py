"""Auth & identity over HTTP (API.md "Auth & identity"), on memory and on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pyotp
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from audifi_adapters.chain.custody import HdCustody
from audifi_adapters.config import Config
from audifi_core.auth.siwe import SiweMessage
from audifi_http import create_app

from ..conftest import TEST_MNEMONIC
from .helpers import bearer, error_of, mailed_token, platform_of, sign_in


@pytest.fixture
async def client(aiohttp_client, backend: Config, clock):
    return await aiohttp_client(create_app(backend, clock=clock))


async def set_password(client, session, password="correct horse battery"):
    r = await client.post("/auth/password", json={"password": password}, headers=bearer(session))
    assert r.status == 204, await r.text()


def totp_now(secret: str, clock) -> str:
    return pyotp.TOTP(secret).at(clock.now())


async def enable_2fa(client, session, clock) -> tuple[str, list[str]]:
    r = await client.post("/auth/2fa/setup", headers=bearer(session))
    assert r.status == 200, await r.text()
    setup = await r.json()
    assert setup["otpauthUri"].startswith("otpauth://totp/AudiFi:") and "issuer=AudiFi" in setup["otpauthUri"]
    r = await client.post("/auth/2fa/verify", json={"code": totp_now(setup["secret"], clock)},
                          headers=bearer(session))
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["enabled"] is True and len(body["recoveryCodes"]) == 10
    clock.advance(30)  # the next code is a new time step
    return setup["secret"], body["recoveryCodes"]


class TestMagicLink:
    async def test_sign_in_creates_user(self, client):
        """A magic link signs a new user in with a random handle, never the email."""
        s = await sign_in(client, "Ann@Example.com")
        user = s["user"]
        assert user["email"] == "ann@example.com"
        assert user["displayName"].startswith("fan-") and "ann" not in user["displayName"]
        assert user["roles"] == ["fan"] and user["wallets"] == [] and user["artist"] is None
        assert user["twoFactorEnabled"] is False and user["subscription"] is None
        assert s["expiresIn"] == 900 and s["refreshToken"] and s["accessToken"]

    async def test_custodial_address_from_seed(self, client):
        """custodialAddress is the BIP-44 address of the user's index under the custody seed."""
        a = (await sign_in(client, "a@example.com"))["user"]
        b = (await sign_in(client, "b@example.com"))["user"]
        custody = HdCustody(TEST_MNEMONIC)
        assert {a["custodialAddress"], b["custodialAddress"]} == {custody.address_for(1), custody.address_for(2)}

    async def test_same_answer_known_and_unknown(self, client):
        """Known and unknown emails get the same 202 answer."""
        await sign_in(client, "known@example.com")
        for email in ("known@example.com", "unknown@example.com"):
            r = await client.post("/auth/magic-link", json={"email": email})
            assert r.status == 202 and await r.json() == {"sent": True}

    async def test_page_does_not_consume(self, client):
        """Opening the mailed link (GET) leaves the token usable; only the POST consumes it."""
        await client.post("/auth/magic-link", json={"email": "scan@example.com"})
        token = await mailed_token(client, "scan@example.com")
        for _ in range(2):
            r = await client.get("/auth/magic", params={"token": token})
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
        r = await client.post("/auth/verify-magic-link", json={"token": token})
        assert r.status == 200

    async def test_single_use(self, client):
        """A link works once."""
        await client.post("/auth/magic-link", json={"email": "once@example.com"})
        token = await mailed_token(client, "once@example.com")
        assert (await client.post("/auth/verify-magic-link", json={"token": token})).status == 200
        e = await error_of(await client.post("/auth/verify-magic-link", json={"token": token}), 401)
        assert e["code"] == "UNAUTHORIZED"

    async def test_race_one_wins(self, client):
        """Two racing verifications of one link: exactly one signs in."""
        await client.post("/auth/magic-link", json={"email": "race@example.com"})
        token = await mailed_token(client, "race@example.com")
        rs = await asyncio.gather(*(client.post("/auth/verify-magic-link", json={"token": token})
                                    for _ in range(5)))
        assert sorted(r.status for r in rs) == [200, 401, 401, 401, 401]

    async def test_expires_after_15_minutes(self, aiohttp_client, tmp_path, clock):
        """A link older than 15 minutes is refused."""
        from ..conftest import base_config

        c = await aiohttp_client(create_app(base_config(tmp_path), clock=clock))
        await c.post("/auth/magic-link", json={"email": "late@example.com"})
        token = await mailed_token(c, "late@example.com")
        clock.advance(15 * 60 + 1)
        await error_of(await c.post("/auth/verify-magic-link", json={"token": token}), 401)

    async def test_bad_email(self, client):
        """A malformed email is a VALIDATION_ERROR on the email field."""
        e = await error_of(await client.post("/auth/magic-link", json={"email": "not-an-email"}), 400)
        assert "email" in e["details"]["fields"]

    async def test_per_email_limit(self, client):
        """The sixth link for one email in 15 minutes is 429 with Retry-After."""
        for _ in range(5):
            assert (await client.post("/auth/magic-link", json={"email": "spam@example.com"})).status == 202
        r = await client.post("/auth/magic-link", json={"email": "spam@example.com"})
        e = await error_of(r, 429)
        assert e["code"] == "RATE_LIMITED" and int(r.headers["Retry-After"]) >= 1

    async def test_token_never_logged(self, client, capsys):
        """The token appears in no log line."""
        await client.post("/auth/magic-link", json={"email": "log@example.com"})
        token = await mailed_token(client, "log@example.com")
        await client.get("/auth/magic", params={"token": token})
        await client.post("/auth/verify-magic-link", json={"token": token})
        out = capsys.readouterr()
        assert token not in out.out and token not in out.err


class TestPassword:
    async def test_set_and_login(self, client):
        """A fresh session sets a password; login with it gives a Session."""
        s = await sign_in(client, "pw@example.com")
        await set_password(client, s)
        r = await client.post("/auth/login", json={"email": "pw@example.com", "password": "correct horse battery"})
        assert r.status == 200 and (await r.json())["user"]["email"] == "pw@example.com"

    async def test_same_error_unknown_and_wrong(self, client):
        """Unknown email and wrong password give the same 401."""
        s = await sign_in(client, "pw2@example.com")
        await set_password(client, s)
        a = await error_of(await client.post("/auth/login", json={"email": "pw2@example.com", "password": "x" * 12}), 401)
        b = await error_of(await client.post("/auth/login", json={"email": "nobody@example.com", "password": "x" * 12}), 401)
        assert a == b

    async def test_min_length(self, client):
        """Passwords under 12 characters are refused."""
        s = await sign_in(client, "short@example.com")
        e = await error_of(await client.post("/auth/password", json={"password": "short"}, headers=bearer(s)), 400)
        assert "password" in e["details"]["fields"]

    async def test_fresh_required(self, client, clock):
        """After 5 minutes a password change needs the current password (401 reauth otherwise)."""
        s = await sign_in(client, "fresh@example.com")
        await set_password(client, s)
        clock.advance(301)
        e = await error_of(await client.post("/auth/password", json={"password": "another long password"},
                                             headers=bearer(s)), 401)
        assert e["details"]["reauth"] is True
        r = await client.post("/auth/password", json={"password": "another long password",
                                                      "currentPassword": "correct horse battery"}, headers=bearer(s))
        assert r.status == 204

    async def test_change_revokes_other_sessions(self, client):
        """Changing the password ends every other session at once."""
        s1 = await sign_in(client, "multi@example.com")
        s2 = await sign_in(client, "multi@example.com")
        await set_password(client, s1)
        assert (await client.get("/me", headers=bearer(s1))).status == 200
        await error_of(await client.get("/me", headers=bearer(s2)), 401)

    async def test_login_limited_per_account(self, client):
        """The 11th login attempt on one account in 15 minutes is 429."""
        s = await sign_in(client, "brute@example.com")
        await set_password(client, s)
        for _ in range(10):
            await client.post("/auth/login", json={"email": "brute@example.com", "password": "wrong password!"})
        r = await client.post("/auth/login", json={"email": "brute@example.com", "password": "correct horse battery"})
        await error_of(r, 429)


class TestSessions:
    async def test_refresh_rotates(self, client):
        """A refresh gives new tokens; the old refresh token dies."""
        s = await sign_in(client, "rot@example.com")
        r = await client.post("/auth/refresh", json={"refreshToken": s["refreshToken"]})
        assert r.status == 200
        s2 = await r.json()
        assert s2["refreshToken"] != s["refreshToken"]
        assert (await client.get("/me", headers=bearer(s2))).status == 200

    async def test_reuse_revokes_family(self, client):
        """Presenting a dead refresh token revokes the whole session."""
        s = await sign_in(client, "reuse@example.com")
        s2 = await (await client.post("/auth/refresh", json={"refreshToken": s["refreshToken"]})).json()
        await error_of(await client.post("/auth/refresh", json={"refreshToken": s["refreshToken"]}), 401)
        await error_of(await client.post("/auth/refresh", json={"refreshToken": s2["refreshToken"]}), 401)
        await error_of(await client.get("/me", headers=bearer(s2)), 401)

    async def test_refresh_race_one_wins(self, client):
        """Two racing refreshes with one token: one rotates, the other is refused."""
        s = await sign_in(client, "rrace@example.com")
        rs = await asyncio.gather(*(client.post("/auth/refresh", json={"refreshToken": s["refreshToken"]})
                                    for _ in range(2)))
        assert sorted(r.status for r in rs) == [200, 401]

    async def test_garbage_refresh(self, client):
        """A malformed refresh token is a 401."""
        await error_of(await client.post("/auth/refresh", json={"refreshToken": "garbage"}), 401)

    async def test_logout_is_immediate(self, client):
        """After logout the access and refresh tokens are dead."""
        s = await sign_in(client, "out@example.com")
        assert (await client.post("/auth/logout", headers=bearer(s))).status == 204
        await error_of(await client.get("/me", headers=bearer(s)), 401)
        await error_of(await client.post("/auth/refresh", json={"refreshToken": s["refreshToken"]}), 401)

    async def test_list_and_delete(self, client):
        """Sessions are listed with the current one marked; deleting one kills it at once."""
        s1 = await sign_in(client, "list@example.com")
        s2 = await sign_in(client, "list@example.com")
        items = await (await client.get("/auth/sessions", headers=bearer(s1))).json()
        assert len(items) == 2 and sum(i["current"] for i in items) == 1
        assert set(items[0]) == {"id", "createdAt", "lastSeenAt", "userAgent", "current"}
        other = next(i["id"] for i in items if not i["current"])
        assert (await client.delete(f"/auth/sessions/{other}", headers=bearer(s1))).status == 204
        await error_of(await client.get("/me", headers=bearer(s2)), 401)
        await error_of(await client.delete("/auth/sessions/ses_nope", headers=bearer(s1)), 404)

    async def test_cannot_delete_others_session(self, client):
        """Another user's session id is 404 to me."""
        a = await sign_in(client, "sa@example.com")
        b = await sign_in(client, "sb@example.com")
        b_sid = (await (await client.get("/auth/sessions", headers=bearer(b))).json())[0]["id"]
        await error_of(await client.delete(f"/auth/sessions/{b_sid}", headers=bearer(a)), 404)
        assert (await client.get("/me", headers=bearer(b))).status == 200

    async def test_missing_and_bad_tokens(self, client):
        """No token, a forged token and an expired token are all 401."""
        await error_of(await client.get("/me"), 401)
        await error_of(await client.get("/me", headers={"Authorization": "Bearer abc.def.ghi"}), 401)

    async def test_access_token_expires(self, client, clock):
        """An access token older than its lifetime is refused; the refresh token still works."""
        s = await sign_in(client, "exp@example.com")
        clock.advance(901)
        await error_of(await client.get("/me", headers=bearer(s)), 401)
        assert (await client.post("/auth/refresh", json={"refreshToken": s["refreshToken"]})).status == 200


class TestTwoFactor:
    async def test_enable_and_login(self, client, clock):
        """With 2FA on, sign-in answers an mfaToken and the code finishes it."""
        s = await sign_in(client, "tfa@example.com")
        secret, _ = await enable_2fa(client, s, clock)
        await client.post("/auth/magic-link", json={"email": "tfa@example.com"})
        r = await client.post("/auth/verify-magic-link", json={"token": await mailed_token(client, "tfa@example.com")})
        ch = await r.json()
        assert ch["mfaRequired"] is True and ch["mfaToken"]
        r = await client.post("/auth/2fa/verify", json={"mfaToken": ch["mfaToken"], "code": totp_now(secret, clock)})
        assert r.status == 200 and (await r.json())["user"]["twoFactorEnabled"] is True

    async def test_setup_409_while_on(self, client, clock):
        """Setup is 409 while 2FA is on."""
        s = await sign_in(client, "tfa409@example.com")
        await enable_2fa(client, s, clock)
        await error_of(await client.post("/auth/2fa/setup", headers=bearer(s)), 409)

    async def test_step_used_once(self, client, clock):
        """A TOTP time step is accepted once."""
        s = await sign_in(client, "step@example.com")
        secret, _ = await enable_2fa(client, s, clock)
        code = totp_now(secret, clock)
        r = await client.post("/auth/2fa/recovery-codes", json={"code": code}, headers=bearer(s))
        assert r.status == 200
        await error_of(await client.post("/auth/2fa/recovery-codes", json={"code": code}, headers=bearer(s)), 401)

    async def test_mfa_token_and_recovery_code_single_use(self, client, clock):
        """A recovery code signs in once; an mfaToken is single use; racing mfaTokens: one wins."""
        s = await sign_in(client, "rec@example.com")
        _, codes = await enable_2fa(client, s, clock)

        async def challenge() -> str:
            await client.post("/auth/magic-link", json={"email": "rec@example.com"})
            r = await client.post("/auth/verify-magic-link",
                                  json={"token": await mailed_token(client, "rec@example.com")})
            return (await r.json())["mfaToken"]

        t = await challenge()
        rs = await asyncio.gather(*(client.post("/auth/2fa/verify", json={"mfaToken": t, "code": codes[0]})
                                    for _ in range(3)))
        assert sorted(r.status for r in rs) == [200, 401, 401]
        t2 = await challenge()
        await error_of(await client.post("/auth/2fa/verify", json={"mfaToken": t2, "code": codes[0]}), 401)
        t3 = await challenge()
        assert (await client.post("/auth/2fa/verify", json={"mfaToken": t3, "code": codes[1]})).status == 200

    async def test_five_failures_lock(self, client, clock):
        """Five wrong codes lock 2FA for the user: even a right code is then 429."""
        s = await sign_in(client, "lock@example.com")
        secret, _ = await enable_2fa(client, s, clock)
        for _ in range(5):
            await error_of(await client.post("/auth/2fa/recovery-codes", json={"code": "000000"},
                                             headers=bearer(s)), 401)
        r = await client.post("/auth/2fa/recovery-codes", json={"code": totp_now(secret, clock)}, headers=bearer(s))
        await error_of(r, 429)

    async def test_disable_needs_code_and_revokes_others(self, client, clock):
        """Disabling needs a current code and ends the other sessions."""
        s = await sign_in(client, "dis@example.com")
        secret, _ = await enable_2fa(client, s, clock)
        other = await (await client.post("/auth/2fa/verify", json={
            "mfaToken": (await (await client.post("/auth/verify-magic-link", json={
                "token": await _fresh_link(client, "dis@example.com")})).json())["mfaToken"],
            "code": totp_now(secret, clock)})).json()
        clock.advance(30)
        await error_of(await client.post("/auth/2fa/disable", json={"code": "123456"}, headers=bearer(s)), 401)
        assert (await client.post("/auth/2fa/disable", json={"code": totp_now(secret, clock)},
                                  headers=bearer(s))).status == 204
        await error_of(await client.get("/me", headers=bearer(other)), 401)
        assert (await (await client.get("/me", headers=bearer(s))).json())["twoFactorEnabled"] is False

    async def test_regenerated_codes_replace_old(self, client, clock):
        """Regenerating recovery codes kills the old ones."""
        s = await sign_in(client, "regen@example.com")
        secret, old = await enable_2fa(client, s, clock)
        new = (await (await client.post("/auth/2fa/recovery-codes", json={"code": totp_now(secret, clock)},
                                        headers=bearer(s))).json())["recoveryCodes"]
        assert len(new) == 10 and not set(new) & set(old)
        await client.post("/auth/magic-link", json={"email": "regen@example.com"})
        ch = await (await client.post("/auth/verify-magic-link",
                                      json={"token": await mailed_token(client, "regen@example.com")})).json()
        await error_of(await client.post("/auth/2fa/verify", json={"mfaToken": ch["mfaToken"], "code": old[0]}), 401)

    async def test_verify_without_session_or_token(self, client):
        """{code} alone without a session is a VALIDATION_ERROR naming mfaToken."""
        e = await error_of(await client.post("/auth/2fa/verify", json={"code": "123456"}), 400)
        assert "mfaToken" in e["details"]["fields"]

    async def test_password_change_needs_code_with_2fa(self, client, clock):
        """With 2FA on, a password change needs a current code."""
        s = await sign_in(client, "pw2fa@example.com")
        secret, _ = await enable_2fa(client, s, clock)
        e = await error_of(await client.post("/auth/password", json={"password": "a long password!"},
                                             headers=bearer(s)), 401)
        assert e["details"]["reauth"] is True
        r = await client.post("/auth/password", json={"password": "a long password!",
                                                      "code": totp_now(secret, clock)}, headers=bearer(s))
        assert r.status == 204


async def _fresh_link(client, email: str) -> str:
    await client.post("/auth/magic-link", json={"email": email})
    return await mailed_token(client, email)


def siwe(nonce_body: dict, address: str, clock, **over) -> str:
    fields = dict(domain=nonce_body["domain"], address=address, statement="Link this wallet to AudiFi",
                  uri=nonce_body["uri"], version="1", chain_id=nonce_body["chainId"], nonce=nonce_body["nonce"],
                  issued_at=clock.now(), expiration_time=clock.now() + timedelta(minutes=5))
    fields.update(over)
    return SiweMessage(**fields).to_text()


def sign(text: str, acct) -> str:
    return "0x" + acct.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")


class TestWallets:
    async def nonce(self, client, s) -> dict:
        r = await client.post("/auth/wallet/nonce", headers=bearer(s))
        assert r.status == 200
        return await r.json()

    async def test_link_and_unlink(self, client, clock):
        """A signed EIP-4361 message links the wallet; DELETE unlinks it."""
        s = await sign_in(client, "w@example.com")
        acct = Account.create()
        n = await self.nonce(client, s)
        assert set(n) == {"nonce", "domain", "uri", "chainId", "expiresAt"}
        text = siwe(n, acct.address, clock)
        r = await client.post("/auth/wallet/link", json={"message": text, "signature": sign(text, acct)},
                              headers=bearer(s))
        assert r.status == 200, await r.text()
        assert (await r.json())["address"] == acct.address
        assert (await (await client.get("/me", headers=bearer(s))).json())["wallets"] == [acct.address]
        assert (await client.delete(f"/auth/wallet/{acct.address}", headers=bearer(s))).status == 204
        assert (await (await client.get("/me", headers=bearer(s))).json())["wallets"] == []
        await error_of(await client.delete(f"/auth/wallet/{acct.address}", headers=bearer(s)), 404)

    async def test_nonce_single_use_and_race(self, client, clock):
        """A nonce links once, even when two requests race."""
        s = await sign_in(client, "wr@example.com")
        acct = Account.create()
        text = siwe(await self.nonce(client, s), acct.address, clock)
        body = {"message": text, "signature": sign(text, acct)}
        rs = await asyncio.gather(*(client.post("/auth/wallet/link", json=body, headers=bearer(s)) for _ in range(3)))
        assert sorted(r.status for r in rs) == [200, 401, 401]

    async def test_nonce_bound_to_user(self, client, clock):
        """Another user's nonce is refused."""
        a = await sign_in(client, "na@example.com")
        b = await sign_in(client, "nb@example.com")
        acct = Account.create()
        text = siwe(await self.nonce(client, a), acct.address, clock)
        await error_of(await client.post("/auth/wallet/link", json={"message": text, "signature": sign(text, acct)},
                                         headers=bearer(b)), 401)

    async def test_address_links_to_one_user(self, client, clock):
        """An address linked by one user is 409 for another."""
        a = await sign_in(client, "la@example.com")
        b = await sign_in(client, "lb@example.com")
        acct = Account.create()
        for s, status in ((a, 200), (b, 409)):
            text = siwe(await self.nonce(client, s), acct.address, clock)
            r = await client.post("/auth/wallet/link", json={"message": text, "signature": sign(text, acct)},
                                  headers=bearer(s))
            assert r.status == status, await r.text()

    async def test_wrong_domain_chain_signer_expiry(self, client, clock):
        """Wrong domain or chain id → 400; a signature by another key → 401; expired → 400."""
        s = await sign_in(client, "bad@example.com")
        acct, other = Account.create(), Account.create()
        cases = [
            (dict(domain="evil.example"), acct, 400),
            (dict(chain_id=1), acct, 400),
            ({}, other, 401),
            (dict(expiration_time=clock.now() - timedelta(seconds=1),
                  issued_at=clock.now() - timedelta(minutes=1)), acct, 400),
        ]
        for over, signer, status in cases:
            text = siwe(await self.nonce(client, s), acct.address, clock, **over)
            await error_of(await client.post("/auth/wallet/link",
                                             json={"message": text, "signature": sign(text, signer)},
                                             headers=bearer(s)), status)
        await error_of(await client.post("/auth/wallet/link", json={"message": "hello", "signature": "0x00"},
                                         headers=bearer(s)), 400)

    async def test_link_needs_fresh_auth(self, client, clock):
        """Linking after 5 minutes without a current password is 401 reauth."""
        s = await sign_in(client, "stale@example.com")
        clock.advance(301)
        acct = Account.create()
        text = siwe(await self.nonce(client, s), acct.address, clock)
        e = await error_of(await client.post("/auth/wallet/link", json={"message": text, "signature": sign(text, acct)},
                                             headers=bearer(s)), 401)
        assert e["details"]["reauth"] is True

    async def test_unlink_needs_code_with_2fa(self, client, clock):
        """With 2FA on, unlinking needs ?code=."""
        s = await sign_in(client, "u2fa@example.com")
        acct = Account.create()
        text = siwe(await self.nonce(client, s), acct.address, clock)
        assert (await client.post("/auth/wallet/link", json={"message": text, "signature": sign(text, acct)},
                                  headers=bearer(s))).status == 200
        secret, _ = await enable_2fa(client, s, clock)
        await error_of(await client.delete(f"/auth/wallet/{acct.address}", headers=bearer(s)), 401)
        r = await client.delete(f"/auth/wallet/{acct.address}", params={"code": totp_now(secret, clock)},
                                headers=bearer(s))
        assert r.status == 204


class TestProfileAndRoles:
    async def test_patch_me(self, client):
        """PATCH /me changes the display name; empty is refused."""
        s = await sign_in(client, "me@example.com")
        r = await client.patch("/me", json={"displayName": "DJ Me"}, headers=bearer(s))
        assert (await r.json())["displayName"] == "DJ Me"
        await error_of(await client.patch("/me", json={"displayName": "  "}, headers=bearer(s)), 400)

    async def test_open_artist_signup(self, client):
        """With ARTIST_SIGNUP=open (dev default) the artist role is granted at once."""
        s = await sign_in(client, "art@example.com")
        r = await client.post("/me/artist", json={"artistName": "The Band"}, headers=bearer(s))
        u = await r.json()
        assert r.status == 200 and "artist" in u["roles"] and u["artist"] == {"name": "The Band"}

    async def test_approval_flow(self, aiohttp_client, tmp_path, clock):
        """With approval signup: 202 pending, a non-admin cannot approve, an admin can."""
        from ..conftest import base_config

        c = await aiohttp_client(create_app(base_config(tmp_path, artist_signup="approval"), clock=clock))
        fan = await sign_in(c, "wannabe@example.com")
        r = await c.post("/me/artist", json={"artistName": "Soon"}, headers=bearer(fan))
        assert r.status == 202 and await r.json() == {"status": "pending"}
        assert "artist" not in (await (await c.get("/me", headers=bearer(fan))).json())["roles"]
        uid = fan["user"]["id"]
        await error_of(await c.post(f"/admin/artists/{uid}/approve", headers=bearer(fan)), 403)
        await platform_of(c).auth.grant_admin("boss@example.com")
        boss = await sign_in(c, "boss@example.com")
        assert "admin" in boss["user"]["roles"]
        r = await c.post(f"/admin/artists/{uid}/approve", headers=bearer(boss))
        assert r.status == 200 and "artist" in (await r.json())["roles"]
        await error_of(await c.post("/admin/artists/usr_nope/approve", headers=bearer(boss)), 404)
