"""Two app instances sharing PostgreSQL and Redis: fan-out, presence and revocation across them;
the closesAt scheduler across a restart; a vote storm over both paths that loses nothing."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, timedelta

import asyncpg
import pytest

from audifi_http import create_app

from ..conftest import REDIS_URL, base_config
from ..http.helpers import bearer, sign_in
from .kit import (
    StandIns,
    add_decision,
    closed,
    connect,
    get_session,
    open_studio,
    recv,
    settled,
    sign_in_many,
    uid,
    vote,
)


@pytest.fixture
def shared_config(tmp_path, pg_clean, redis_prefix):
    return base_config(tmp_path, database_url=pg_clean, redis_url=REDIS_URL, redis_prefix=redis_prefix)


@pytest.fixture
async def pair(aiohttp_client, shared_config):
    a = await aiohttp_client(create_app(shared_config))
    b = await aiohttp_client(create_app(shared_config))
    stand_ins = StandIns()
    stand_ins.install(a)
    stand_ins.install(b)
    return a, b, stand_ins


class TestAcrossInstances:
    async def test_updates_from_b_reach_a(self, pair):
        """A client on A sees what happens on B: decision_opened, HTTP and socket votes, the close."""
        a, b, stand_ins = pair
        st = await open_studio(a, stand_ins)
        fan = await sign_in(b, "fan@example.com")
        other = await sign_in(b, "other@example.com")
        on_a, _ = await connect(a, st.session_id, st.artist)
        on_b, _ = await connect(b, st.session_id, fan)
        d = await add_decision(st, client=b)
        assert (await recv(on_a, "decision_opened"))["decision"]["id"] == d["id"]
        assert (await vote(b, st, other, d["id"], "A")).status == 200
        await settled(on_a, d["id"], {"A": 1, "B": 0})
        await on_b.send_json({"type": "vote", "decisionId": d["id"], "choice": "B"})
        await settled(on_a, d["id"], {"A": 1, "B": 1})
        r = await b.post(f"/vstudio/sessions/{st.session_id}/decisions/{d['id']}/close", headers=bearer(st.artist))
        assert r.status == 200
        c = await recv(on_a, "decision_closed")
        assert c["winner"] == "A" and c["results"] == {"A": 1, "B": 1}
        for ws in (on_a, on_b):
            await ws.close()

    async def test_presence_across_instances(self, pair):
        """One user with a tab on A and one on B is present once; gone when both are closed."""
        a, b, stand_ins = pair
        st = await open_studio(a, stand_ins)
        fan = await sign_in(a, "tabs@example.com")
        watcher, _ = await connect(a, st.session_id, st.artist)
        t_a, _ = await connect(a, st.session_id, fan)
        assert (await recv(watcher, "user_joined", where=lambda m: m["userId"] == uid(fan)))
        t_b, snap = await connect(b, st.session_id, fan)
        assert [p["userId"] for p in snap["present"]].count(uid(fan)) == 1
        await t_a.close()
        await t_b.close()
        left = await recv(watcher, where=lambda m: m["type"] in ("user_joined", "user_left")
                          and m["userId"] == uid(fan))
        assert left == {"type": "user_left", "userId": uid(fan)}  # once, and only after both tabs
        got = await get_session(b, st, st.artist)
        assert [p["userId"] for p in got["present"]] == [st.artist_id]
        await watcher.close()

    async def test_logout_on_b_closes_the_socket_on_a(self, pair):
        """Revocation is published: a logout handled by B closes that session's socket held by A."""
        a, b, stand_ins = pair
        st = await open_studio(a, stand_ins)
        fan = await sign_in(a, "bye@example.com")
        ws, _ = await connect(a, st.session_id, fan)
        assert (await b.post("/auth/logout", headers=bearer(fan))).status == 204
        assert await closed(ws) == 4401


class TestSchedulerRestart:
    async def test_a_deadline_passed_while_down_closes_at_start(self, aiohttp_client, shared_config, clock):
        """closesAt is in the database: a decision whose time passed while no instance ran closes at start."""
        stand_ins = StandIns()
        first = await aiohttp_client(create_app(shared_config, clock=clock))
        st = await open_studio(first, stand_ins)
        d = await add_decision(st, closesAt=(clock.now() + timedelta(seconds=60)).astimezone(UTC).isoformat())
        fan = await sign_in(first, "s@example.com")
        assert (await vote(first, st, fan, d["id"], "B")).status == 200
        await first.close()
        clock.advance(120)
        second = await aiohttp_client(create_app(shared_config, clock=clock))
        stand_ins.install(second)
        async with asyncio.timeout(10):
            while True:
                got = (await get_session(second, st, st.artist))["decisions"][0]
                if got["status"] == "closed":
                    break
                await asyncio.sleep(0.05)
        assert got["winner"] == "B" and got["results"] == {"A": 0, "B": 1}


async def _recount(dsn: str, decision_id: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT choice, count(*) AS n FROM studio_votes WHERE decision_id = $1 "
                                "GROUP BY choice", decision_id)
    finally:
        await conn.close()
    return {r["choice"]: r["n"] for r in rows}


async def _storm(clients: list, st, decision_id: str, options: list[str], voters: int, rounds: int,
                 seed: int) -> dict[str, int]:
    """``voters`` users vote ``rounds`` times each, all at once: half over HTTP, half over their socket,
    spread over the instances. Returns the expected tallies (each user's last choice)."""
    rng = random.Random(seed)
    sessions = await sign_in_many(clients[0], "storm", voters)
    plans = [[rng.choice(options) for _ in range(rounds)] for _ in range(voters)]
    sockets = {}
    for i in range(0, voters, 2):
        sockets[i], _ = await connect(clients[i % len(clients)], st.session_id, sessions[i], join=False)

    async def one(i: int) -> None:
        c = clients[(i // 2) % len(clients)]
        for choice in plans[i]:
            if i in sockets:
                await sockets[i].send_json({"type": "vote", "decisionId": decision_id, "choice": choice})
            else:
                r = await vote(c, st, sessions[i], decision_id, choice)
                assert r.status == 200, await r.text()
        if i in sockets:  # the reader handles messages in order: the pong comes after the last vote
            await sockets[i].send_json({"type": "ping"})
            await recv(sockets[i], "pong")

    await asyncio.gather(*(one(i) for i in range(voters)))
    for ws in sockets.values():
        await ws.close()
    expected = dict.fromkeys(options, 0)
    for plan in plans:
        expected[plan[-1]] += 1
    return expected


class TestVoteStorm:
    async def test_two_instances_agree_with_the_recount(self, pair, pg_clean):
        """40 users vote 5 times each at once over HTTP and sockets on two instances: the last update
        every observer keeps, GET on both instances and a recount of stored votes all agree."""
        a, b, stand_ins = pair
        st = await open_studio(a, stand_ins)
        d = await add_decision(st, ["A", "B", "C"])
        obs_a, _ = await connect(a, st.session_id, st.artist)
        obs_b, _ = await connect(b, st.session_id, st.artist)
        expected = await _storm([a, b], st, d["id"], ["A", "B", "C"], voters=40, rounds=5, seed=7)
        assert await _recount(pg_clean, d["id"]) == {k: v for k, v in expected.items() if v}
        for ws in (obs_a, obs_b):
            assert (await settled(ws, d["id"], expected))["results"] == expected
        for c in (a, b):
            assert (await get_session(c, st, st.artist))["decisions"][0]["results"] == expected
        for ws in (obs_a, obs_b):
            await ws.close()

    async def test_one_instance_in_memory(self, aiohttp_client, tmp_path):
        """The same storm on the in-memory adapters: the observer ends on the recount."""
        client = await aiohttp_client(create_app(base_config(tmp_path)))
        st = await open_studio(client)
        d = await add_decision(st, ["A", "B"])
        obs, _ = await connect(client, st.session_id, st.artist)
        expected = await _storm([client], st, d["id"], ["A", "B"], voters=30, rounds=4, seed=3)
        assert (await settled(obs, d["id"], expected))["results"] == expected
        assert (await get_session(client, st, st.artist))["decisions"][0]["results"] == expected
        await obs.close()
