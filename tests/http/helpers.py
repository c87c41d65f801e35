"""Helpers for HTTP tests: an app client per config, and sign-in through the real flows."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from audifi_http.keys import PLATFORM

TOKEN_RE = re.compile(r"\?token=([A-Za-z0-9_\-]+)")


async def mailed_token(client: TestClient, email: str) -> str:
    """The token in the newest magic-link mail to ``email`` (via /dev/mailbox)."""
    r = await client.get("/dev/mailbox", params={"to": email})
    assert r.status == 200
    mails = await r.json()
    assert mails, f"no mail to {email}"
    m = TOKEN_RE.search(mails[0]["text"])
    assert m, mails[0]["text"]
    return m.group(1)


async def sign_in(client: TestClient, email: str) -> dict[str, Any]:
    """Magic-link sign-in end to end; returns the Session body."""
    r = await client.post("/auth/magic-link", json={"email": email})
    assert r.status == 202, await r.text()
    token = await mailed_token(client, email)
    r = await client.post("/auth/verify-magic-link", json={"token": token})
    assert r.status == 200, await r.text()
    return await r.json()


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['accessToken']}"}


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    """Assert ``status`` and the API.md envelope; return the ``error`` object."""
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error", "requestId"}, body
    assert body["requestId"] == resp.headers["X-Request-Id"]
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    return body["error"]


def platform_of(client: TestClient):
    return client.server.app[PLATFORM]
