"""Test kit of the V Studio tests: stand-in masters and holdings, sessions, decisions, sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient

from audifi_adapters.studio.memory import InMemoryShareHoldings, InMemoryStudioMasters
from audifi_core.studio.model import MasterRef

from ..http.helpers import bearer, mailed_token, platform_of, sign_in


@attrs.define
class StandIns:
    """Memory masters/holdings shared by every app instance of a test (the masters context's own
    are exercised by the end-to-end tests)."""

    masters: InMemoryStudioMasters = attrs.Factory(InMemoryStudioMasters)
    holdings: InMemoryShareHoldings = attrs.Factory(InMemoryShareHoldings)

    def install(self, client: TestClient) -> None:
        studio = platform_of(client).studio
        studio.masters = self.masters
        studio.holdings = self.holdings

    def master(self, artist_id: str, master_id: str = "mst_test", audio_cid: str | None = None) -> str:
        self.masters.add(MasterRef(id=master_id, artist_id=artist_id,
                                   audio_cid=audio_cid or "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"))
        return master_id


async def sign_in_many(client: TestClient, prefix: str, n: int) -> list[dict[str, Any]]:
    """``n`` users signed in through the magic link, each asked from its own address (the per-IP
    limit is for humans, not for load tests)."""
    auth = platform_of(client).auth
    out = []
    for i in range(n):
        email = f"{prefix}{i}@example.com"
        await auth.request_magic_link(email, f"10.9.{i // 250}.{i % 250}")
        r = await client.post("/auth/verify-magic-link", json={"token": await mailed_token(client, email)})
        assert r.status == 200, await r.text()
        out.append(await r.json())
    return out


def entitlements(client: TestClient) -> Any:
    return platform_of(client).extras["studio.entitlements"]


@attrs.define
class Studio:
    client: TestClient
    artist: dict[str, Any]
    artist_id: str
    master_id: str
    session_id: str
    body: dict[str, Any]
    stand_ins: StandIns


def uid(session: dict[str, Any]) -> str:
    return session["user"]["id"]


async def open_studio(client: TestClient, stand_ins: StandIns | None = None, *, audience: str = "everyone",
                      weighted: bool = False, email: str = "artist@example.com",
                      master_id: str = "mst_test") -> Studio:
    """The artist signs in, owns a (stand-in) master and opens a session on it."""
    stand_ins = stand_ins or StandIns()
    stand_ins.install(client)
    artist = await sign_in(client, email)
    stand_ins.master(uid(artist), master_id)
    r = await client.post("/vstudio/sessions", json={"masterId": master_id, "title": "Finishing touches",
                                                      "audience": audience, "weighted": weighted},
                          headers=bearer(artist))
    assert r.status == 201, await r.text()
    body = await r.json()
    return Studio(client, artist, uid(artist), master_id, body["id"], body, stand_ins)


async def add_decision(st: Studio, options: list[str] | None = None, client: TestClient | None = None,
                       **extra: Any) -> dict[str, Any]:
    c = client or st.client
    r = await c.post(f"/vstudio/sessions/{st.session_id}/decisions",
                     json={"prompt": "Which mix?", "options": options or ["A", "B"], **extra},
                     headers=bearer(st.artist))
    assert r.status == 201, await r.text()
    return await r.json()


async def vote(client: TestClient, st: Studio, session: dict[str, Any], decision_id: str, choice: str) -> Any:
    return await client.post(f"/vstudio/sessions/{st.session_id}/vote",
                             json={"decisionId": decision_id, "choice": choice}, headers=bearer(session))


async def get_session(client: TestClient, st: Studio, session: dict[str, Any]) -> dict[str, Any]:
    r = await client.get(f"/vstudio/sessions/{st.session_id}", headers=bearer(session))
    assert r.status == 200, await r.text()
    return await r.json()


async def connect(client: TestClient, session_id: str, session: dict[str, Any] | None = None, *,
                  query_token: bool = False, join: bool = True,
                  headers: dict[str, str] | None = None) -> tuple[ClientWebSocketResponse, dict[str, Any] | None]:
    """Open the studio socket, authenticate (first message, or ``?token=``) and join; the snapshot."""
    params = {"token": session["accessToken"]} if (session and query_token) else None
    ws = await client.ws_connect(f"/vstudio/sessions/{session_id}/ws", params=params, headers=headers)
    if session is not None and not query_token:
        await ws.send_json({"type": "auth", "token": session["accessToken"]})
    if not join or session is None:
        return ws, None
    await ws.send_json({"type": "join", "userId": session["user"]["id"]})
    snap = await recv(ws, "snapshot")
    return ws, snap["session"]


async def recv(ws: ClientWebSocketResponse, kind: str | None = None, within: float = 10.0,
               where: Any = None) -> dict[str, Any]:
    """The next message (of ``kind``, matching ``where``), skipping others; fails on close or timeout."""
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            if msg.type is not WSMsgType.TEXT:
                raise AssertionError(f"socket ended while waiting for {kind}: {msg.type} {msg.data!r}")
            m = msg.json()
            if (kind is None or m.get("type") == kind) and (where is None or where(m)):
                return m


async def closed(ws: ClientWebSocketResponse, within: float = 10.0) -> int | None:
    """Wait for the server to close the socket (skipping messages); the code of its close frame
    (what a browser's ``close`` event reports), else the client's close code."""
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.CLOSE:
                return int(msg.data)
            if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return ws.close_code


async def settled(ws: ClientWebSocketResponse, decision_id: str, expected: dict[str, int],
                  within: float = 10.0) -> dict[str, Any]:
    """Read ``vote_update``s (keeping the highest ``seq``) until the tallies equal ``expected``."""
    best: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(within):
            while best is None or best["results"] != expected:
                m = await recv(ws, "vote_update", within=within,
                               where=lambda m: m["decisionId"] == decision_id)
                if best is None or m["seq"] > best["seq"]:
                    best = m
    except TimeoutError:
        raise AssertionError(f"tallies never became {expected}; last {best}") from None
    return best
