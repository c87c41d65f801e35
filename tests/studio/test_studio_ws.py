"""The V Studio WebSocket with real clients, on memory and on real PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta

import aiohttp
import pytest

from audifi_adapters.studio_context import HUB
from audifi_core.studio.ports import STUDIO_SUBSCRIBER_ENTITLEMENT
from audifi_http import create_app
from audifi_http.routes import studio as studio_routes

from ..conftest import base_config
from ..http.helpers import bearer, platform_of, sign_in
from .kit import add_decision, closed, connect, entitlements, open_studio, recv, uid, vote


@pytest.fixture
async def client(aiohttp_client, backend):
    return await aiohttp_client(create_app(backend))


def _ws_url(st) -> str:
    return f"/vstudio/sessions/{st.session_id}/ws"


async def _members(client, session_id: str, n: int) -> None:
    """Wait until ``n`` sockets are joined to the session on this instance (server side)."""
    hub = platform_of(client).extras[HUB]
    async with asyncio.timeout(10):
        while True:
            if len(hub.members(session_id)) == n:
                return
            await asyncio.sleep(0.01)


class TestSocketAuth:
    async def test_first_message_auth_then_snapshot(self, client):
        """auth by first message, join → snapshot with decisions, tallies and the user present."""
        st = await open_studio(client)
        d = await add_decision(st)
        fan = await sign_in(client, "fan@example.com")
        assert (await vote(client, st, fan, d["id"], "B")).status == 200
        ws, snap = await connect(client, st.session_id, fan)
        assert snap["id"] == st.session_id
        assert snap["decisions"][0]["results"] == {"A": 0, "B": 1} and snap["decisions"][0]["seq"] > 0
        assert {"userId": uid(fan), "displayName": fan["user"]["displayName"]} in snap["present"]
        await ws.send_json({"type": "ping"})
        assert await recv(ws, "pong") == {"type": "pong"}
        await ws.close()

    async def test_query_token(self, client):
        """?token= authenticates before the upgrade; a bad one is 401 before it."""
        st = await open_studio(client)
        ws, snap = await connect(client, st.session_id, st.artist, query_token=True)
        assert snap["artistId"] == st.artist_id
        await ws.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await client.ws_connect(_ws_url(st), params={"token": "nope"})
        assert e.value.status == 401

    async def test_unauthenticated_socket(self, client):
        """Before auth: join and vote get UNAUTHORIZED (socket open); a bad token closes it (4401)."""
        st = await open_studio(client)
        ws = await client.ws_connect(_ws_url(st))
        await ws.send_json({"type": "join", "userId": "usr_x"})
        assert (await recv(ws, "error"))["code"] == "UNAUTHORIZED"
        await ws.send_json({"type": "vote", "decisionId": "d", "choice": "A"})
        assert (await recv(ws, "error"))["code"] == "UNAUTHORIZED"
        await ws.send_json({"type": "ping"})
        await recv(ws, "pong")
        await ws.send_json({"type": "auth", "token": "garbage"})
        assert (await recv(ws, "error"))["code"] == "UNAUTHORIZED"
        assert await closed(ws) == 4401

    async def test_auth_deadline(self, client, monkeypatch):
        """A socket that never authenticates is told so and closed."""
        monkeypatch.setattr(studio_routes, "AUTH_TIMEOUT", 0.2)
        st = await open_studio(client)
        ws = await client.ws_connect(_ws_url(st))
        assert (await recv(ws, "error"))["code"] == "UNAUTHORIZED"
        assert await closed(ws) == 4401

    async def test_unknown_session_and_origin(self, client):
        """Unknown session: 404 before the upgrade; a foreign Origin: 403; our own origin is fine."""
        st = await open_studio(client)
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await client.ws_connect("/vstudio/sessions/vss_nope/ws")
        assert e.value.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await client.ws_connect(_ws_url(st), headers={"Origin": "https://evil.example"})
        assert e.value.status == 403
        ws, _ = await connect(client, st.session_id, st.artist, headers={"Origin": "http://127.0.0.1:8080"})
        await ws.close()

    async def test_cors_origin_allowed(self, aiohttp_client, tmp_path):
        """An Origin listed in CORS_ORIGINS may open the socket."""
        client = await aiohttp_client(create_app(base_config(tmp_path, cors_origins=("https://app.audifi.test",))))
        st = await open_studio(client)
        ws, snap = await connect(client, st.session_id, st.artist, headers={"Origin": "https://app.audifi.test"})
        assert snap["id"] == st.session_id
        await ws.close()

    async def test_wrong_audience(self, client):
        """Outside the audience: 403 before the upgrade with ?token=, else an error then close (4403)."""
        st = await open_studio(client, audience="subscribers")
        fan = await sign_in(client, "nosub@example.com")
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await client.ws_connect(_ws_url(st), params={"token": fan["accessToken"]})
        assert e.value.status == 403
        ws, _ = await connect(client, st.session_id, fan, join=False)
        await ws.send_json({"type": "join"})
        err = await recv(ws, "error")
        assert err["code"] == "FORBIDDEN" and err["details"]["audience"] == "subscribers"
        assert await closed(ws) == 4403
        entitlements(client).grant(uid(fan), STUDIO_SUBSCRIBER_ENTITLEMENT)
        ws, snap = await connect(client, st.session_id, fan)
        assert snap["audience"] == "subscribers"
        await ws.close()

    async def test_join_as_someone_else(self, client):
        """join with another user's id is refused; the socket stays usable."""
        st = await open_studio(client)
        fan = await sign_in(client, "me@example.com")
        ws, _ = await connect(client, st.session_id, fan, join=False)
        await ws.send_json({"type": "join", "userId": st.artist_id})
        assert (await recv(ws, "error"))["code"] == "FORBIDDEN"
        await ws.send_json({"type": "join", "userId": uid(fan)})
        assert (await recv(ws, "snapshot"))["session"]["id"] == st.session_id
        await ws.send_json({"type": "join"})
        assert (await recv(ws, "error"))["code"] == "CONFLICT"
        await ws.close()


class TestMessages:
    async def test_bad_messages_keep_the_socket_open(self, client):
        """Malformed JSON, unknown types, binary frames, bad votes: an error each, then still a pong."""
        st = await open_studio(client)
        ws, _ = await connect(client, st.session_id, st.artist)
        await ws.send_str("{not json")
        assert (await recv(ws, "error"))["code"] == "VALIDATION_ERROR"
        await ws.send_json({"type": "dance"})
        assert (await recv(ws, "error"))["code"] == "VALIDATION_ERROR"
        await ws.send_json(["type", "ping"])
        assert (await recv(ws, "error"))["code"] == "VALIDATION_ERROR"
        await ws.send_bytes(b"\x00\x01")
        assert (await recv(ws, "error"))["code"] == "VALIDATION_ERROR"
        await ws.send_json({"type": "vote", "decisionId": 5})
        err = await recv(ws, "error")
        assert set(err["details"]["fields"]) == {"decisionId", "choice"}
        await ws.send_json({"type": "vote", "decisionId": "dec_nope", "choice": "A"})
        assert (await recv(ws, "error"))["code"] == "DECISION_NOT_FOUND"
        await ws.send_json({"type": "ping"})
        await recv(ws, "pong")
        assert not ws.closed
        await ws.close()

    async def test_every_server_message(self, client):
        """decision_opened, vote_update (socket and HTTP votes), contribution_added, decision_closed,
        session_locked reach every client; votes after close or lock get an error."""
        st = await open_studio(client)
        fan = await sign_in(client, "live@example.com")
        other = await sign_in(client, "other@example.com")
        a, _ = await connect(client, st.session_id, st.artist)
        b, _ = await connect(client, st.session_id, fan)
        d = await add_decision(st, ["Warm", "Bright"])
        for ws in (a, b):
            opened = await recv(ws, "decision_opened")
            assert opened["decision"]["id"] == d["id"] and opened["decision"]["options"] == ["Warm", "Bright"]
        await b.send_json({"type": "vote", "decisionId": d["id"], "choice": "Bright"})
        for ws in (a, b):
            u = await recv(ws, "vote_update")
            assert (u["decisionId"], u["results"]) == (d["id"], {"Warm": 0, "Bright": 1}) and u["seq"] > d["seq"]
        assert (await vote(client, st, other, d["id"], "Warm")).status == 200
        for ws in (a, b):
            u2 = await recv(ws, "vote_update", where=lambda m: m["results"]["Warm"] == 1)
            assert u2["results"] == {"Warm": 1, "Bright": 1}
        r = await client.post(f"/vstudio/sessions/{st.session_id}/contributions",
                              json={"kind": "note", "description": "More reverb"}, headers=bearer(st.artist))
        assert r.status == 201
        for ws in (a, b):
            c = await recv(ws, "contribution_added")
            assert c["contribution"]["description"] == "More reverb"
        r = await client.post(f"/vstudio/sessions/{st.session_id}/decisions/{d['id']}/close",
                              headers=bearer(st.artist))
        assert r.status == 200
        for ws in (a, b):
            c = await recv(ws, "decision_closed")
            assert c["decisionId"] == d["id"] and c["winner"] == "Warm"
        await b.send_json({"type": "vote", "decisionId": d["id"], "choice": "Bright"})
        assert (await recv(b, "error"))["code"] == "CONFLICT"
        d2 = await add_decision(st)
        r = await client.post(f"/vstudio/sessions/{st.session_id}/lock", json={}, headers=bearer(st.artist))
        assert r.status == 200
        for ws in (a, b):
            closed_msg = await recv(ws, "decision_closed")
            assert closed_msg["decisionId"] == d2["id"]
            assert (await recv(ws, "session_locked"))["sessionId"] == st.session_id
        await b.send_json({"type": "vote", "decisionId": d2["id"], "choice": "A"})
        assert (await recv(b, "error"))["code"] == "CONFLICT"
        await a.close()
        await b.close()

    async def test_presence_two_tabs(self, client):
        """user_joined once for two tabs of a user; user_left only when the last tab goes."""
        st = await open_studio(client)
        fan = await sign_in(client, "tabs@example.com")
        late = await sign_in(client, "late@example.com")
        watcher, _ = await connect(client, st.session_id, st.artist)
        t1, _ = await connect(client, st.session_id, fan)
        joined = await recv(watcher, "user_joined", where=lambda m: m["userId"] != st.artist_id)
        assert joined == {"type": "user_joined", "userId": uid(fan), "displayName": fan["user"]["displayName"]}
        t2, snap = await connect(client, st.session_id, fan)
        assert [p["userId"] for p in snap["present"]].count(uid(fan)) == 1
        await t1.close()
        await _members(client, st.session_id, 2)
        t3, _ = await connect(client, st.session_id, late)
        nxt = await recv(watcher, where=lambda m: m["type"] in ("user_joined", "user_left")
                         and m["userId"] != st.artist_id)
        assert nxt["type"] == "user_joined" and nxt["userId"] == uid(late)  # no user_left for the first tab
        await t2.close()
        assert await recv(watcher, "user_left") == {"type": "user_left", "userId": uid(fan)}
        present = (await (await client.get(f"/vstudio/sessions/{st.session_id}",
                                           headers=bearer(st.artist))).json())["present"]
        assert {p["userId"] for p in present} == {st.artist_id, uid(late)}
        for ws in (watcher, t3):
            await ws.close()

    async def test_reconnect_snapshot_makes_whole(self, client):
        """Updates missed while disconnected are in the snapshot of the next connection."""
        st = await open_studio(client)
        d = await add_decision(st)
        fan = await sign_in(client, "re@example.com")
        ws, snap = await connect(client, st.session_id, fan)
        first_seq = snap["decisions"][0]["seq"]
        await ws.close()
        voters = [await sign_in(client, f"r{i}@example.com") for i in range(3)]
        for v, c in zip(voters, "ABB", strict=True):
            assert (await vote(client, st, v, d["id"], c)).status == 200
        d2 = await add_decision(st, ["X", "Y"])
        ws, snap = await connect(client, st.session_id, fan)
        assert [x["id"] for x in snap["decisions"]] == [d["id"], d2["id"]]
        assert snap["decisions"][0]["results"] == {"A": 1, "B": 2} and snap["decisions"][0]["seq"] > first_seq
        await ws.close()


class TestRevocation:
    async def test_logout_closes_the_socket(self, client):
        """POST /auth/logout closes that session's sockets (4401); other sessions' stay open."""
        st = await open_studio(client)
        fan = await sign_in(client, "out@example.com")
        fan2 = await sign_in(client, "out@example.com")
        ws, _ = await connect(client, st.session_id, fan)
        ws2, _ = await connect(client, st.session_id, fan2)
        assert (await client.post("/auth/logout", headers=bearer(fan))).status == 204
        assert await closed(ws) == 4401
        await ws2.send_json({"type": "ping"})
        await recv(ws2, "pong")
        await ws2.close()

    async def test_session_delete_and_refresh_reuse(self, client):
        """Deleting the session elsewhere, or reusing its refresh token, closes its socket too."""
        st = await open_studio(client)
        fan = await sign_in(client, "del@example.com")
        phone = await sign_in(client, "del@example.com")
        ws, _ = await connect(client, st.session_id, fan)
        sessions = await (await client.get("/auth/sessions", headers=bearer(phone))).json()
        sid = next(s["id"] for s in sessions if not s["current"])
        assert (await client.delete(f"/auth/sessions/{sid}", headers=bearer(phone))).status == 204
        assert await closed(ws) == 4401

        ws, _ = await connect(client, st.session_id, phone)
        r = await client.post("/auth/refresh", json={"refreshToken": phone["refreshToken"]})
        assert r.status == 200
        r = await client.post("/auth/refresh", json={"refreshToken": phone["refreshToken"]})
        assert r.status == 401
        assert await closed(ws) == 4401


    async def test_password_change_closes_other_sessions_sockets(self, client):
        """Setting a password revokes the user's other sessions: their sockets close, this one's stays."""
        st = await open_studio(client)
        laptop = await sign_in(client, "pw@example.com")
        phone = await sign_in(client, "pw@example.com")
        on_laptop, _ = await connect(client, st.session_id, laptop)
        on_phone, _ = await connect(client, st.session_id, phone)
        r = await client.post("/auth/password", json={"password": "correct horse battery"}, headers=bearer(phone))
        assert r.status == 204, await r.text()
        assert await closed(on_laptop) == 4401
        await on_phone.send_json({"type": "ping"})
        await recv(on_phone, "pong")
        await on_phone.close()


class TestScheduler:
    async def test_closes_at(self, aiohttp_client, backend, clock):
        """A decision closes by itself at closesAt: decision_closed with the winner reaches the socket."""
        cfg = backend
        client = await aiohttp_client(create_app(cfg, clock=clock))
        st = await open_studio(client)
        d = await add_decision(st, closesAt=(clock.now() + timedelta(seconds=60)).astimezone(UTC).isoformat())
        fan = await sign_in(client, "sched@example.com")
        await vote(client, st, fan, d["id"], "B")
        ws, _ = await connect(client, st.session_id, st.artist)
        clock.advance(61)
        c = await recv(ws, "decision_closed")
        assert c["decisionId"] == d["id"] and c["winner"] == "B" and c["results"] == {"A": 0, "B": 1}
        await ws.close()

