"""V Studio over HTTP (API.md "V Studio"), on memory and on real PostgreSQL + Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audifi_core.studio.ports import STUDIO_SUBSCRIBER_ENTITLEMENT
from audifi_http import create_app

from ..http.helpers import bearer, error_of, platform_of, sign_in
from .kit import StandIns, add_decision, entitlements, get_session, open_studio, uid, vote


@pytest.fixture
async def client(aiohttp_client, backend):
    return await aiohttp_client(create_app(backend))


def _ts(d: datetime) -> str:
    return d.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TestSessions:
    async def test_create_and_get(self, client):
        """The master's artist opens a session; anyone signed in reads it with empty lists."""
        st = await open_studio(client)
        assert st.body["masterId"] == st.master_id and st.body["artistId"] == st.artist_id
        assert st.body["audience"] == "everyone" and st.body["status"] == "open" and st.body["weighted"] is False
        fan = await sign_in(client, "fan@example.com")
        got = await get_session(client, st, fan)
        assert got["id"] == st.session_id
        assert got["decisions"] == [] and got["producers"] == [] and got["present"] == []
        assert got["contributions"] == [] and got["lockedAt"] is None and got["finalCid"] is None

    async def test_only_the_masters_artist(self, client):
        """Another user cannot open a session on the master (403); an unknown master is 404."""
        st = await open_studio(client)
        other = await sign_in(client, "other@example.com")
        r = await client.post("/vstudio/sessions", json={"masterId": st.master_id, "title": "x",
                                                         "audience": "everyone"}, headers=bearer(other))
        assert (await error_of(r, 403))["code"] == "FORBIDDEN"
        r = await client.post("/vstudio/sessions", json={"masterId": "mst_nope", "title": "x",
                                                         "audience": "everyone"}, headers=bearer(st.artist))
        assert (await error_of(r, 404))["code"] == "MASTER_NOT_FOUND"
        r = await client.post("/vstudio/sessions", json={"masterId": st.master_id, "title": "x",
                                                         "audience": "everyone"})
        await error_of(r, 401)

    async def test_validation(self, client):
        """Bad audience or empty title: 400 naming each field; unknown session 404."""
        st = await open_studio(client)
        r = await client.post("/vstudio/sessions", json={"masterId": st.master_id, "title": " ",
                                                         "audience": "friends"}, headers=bearer(st.artist))
        err = await error_of(r, 400)
        assert "audience" in err["details"]["fields"]
        r = await client.post("/vstudio/sessions", json={"masterId": st.master_id, "title": " ",
                                                         "audience": "everyone"}, headers=bearer(st.artist))
        assert (await error_of(r, 400))["details"]["fields"] == {"title": "must not be empty"}
        r = await client.get("/vstudio/sessions/vss_nope", headers=bearer(st.artist))
        assert (await error_of(r, 404))["code"] == "STUDIO_SESSION_NOT_FOUND"


class TestAudience:
    async def test_subscribers(self, client):
        """A `subscribers` session is 403 to a fan without the entitlement, open once granted."""
        st = await open_studio(client, audience="subscribers")
        d = await add_decision(st)
        fan = await sign_in(client, "sub@example.com")
        assert (await error_of(await client.get(f"/vstudio/sessions/{st.session_id}", headers=bearer(fan)),
                               403))["details"]["audience"] == "subscribers"
        await error_of(await vote(client, st, fan, d["id"], "A"), 403)
        entitlements(client).grant(uid(fan), STUDIO_SUBSCRIBER_ENTITLEMENT)
        assert (await vote(client, st, fan, d["id"], "A")).status == 200

    async def test_shareholders_and_producers(self, client):
        """A `shareholders` session admits holders of the master and invited producers only."""
        st = await open_studio(client, audience="shareholders")
        holder = await sign_in(client, "holder@example.com")
        producer = await sign_in(client, "producer@example.com")
        stranger = await sign_in(client, "stranger@example.com")
        st.stand_ins.holdings.set(uid(holder), st.master_id, 3)
        r = await client.post(f"/vstudio/sessions/{st.session_id}/producers", json={"userId": uid(producer)},
                              headers=bearer(st.artist))
        assert r.status == 204
        for who in (holder, producer, st.artist):
            await get_session(client, st, who)
        await error_of(await client.get(f"/vstudio/sessions/{st.session_id}", headers=bearer(stranger)), 403)
        got = await get_session(client, st, holder)
        assert got["producers"] == [{"userId": uid(producer), "displayName": producer["user"]["displayName"]}]


class TestProducersAndContributions:
    async def test_invite_rules(self, client):
        """Only the owner invites (403), an unknown user is 404, a repeat is harmless."""
        st = await open_studio(client)
        p = await sign_in(client, "p@example.com")
        r = await client.post(f"/vstudio/sessions/{st.session_id}/producers", json={"userId": uid(p)},
                              headers=bearer(p))
        await error_of(r, 403)
        r = await client.post(f"/vstudio/sessions/{st.session_id}/producers", json={"userId": "usr_nope"},
                              headers=bearer(st.artist))
        assert (await error_of(r, 404))["code"] == "USER_NOT_FOUND"
        for _ in range(2):
            r = await client.post(f"/vstudio/sessions/{st.session_id}/producers", json={"userId": uid(p)},
                                  headers=bearer(st.artist))
            assert r.status == 204
        assert len((await get_session(client, st, p))["producers"]) == 1

    async def test_contributions(self, client):
        """Producers and the owner contribute (201, listed in order); a fan gets 403; a bad CID 400."""
        st = await open_studio(client)
        p = await sign_in(client, "prod@example.com")
        fan = await sign_in(client, "fan2@example.com")
        await client.post(f"/vstudio/sessions/{st.session_id}/producers", json={"userId": uid(p)},
                          headers=bearer(st.artist))
        url = f"/vstudio/sessions/{st.session_id}/contributions"
        cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        r = await client.post(url, json={"kind": "stem", "description": "Bass take 2", "cid": cid},
                              headers=bearer(p))
        assert r.status == 201, await r.text()
        c = await r.json()
        assert c["userId"] == uid(p) and c["cid"] == cid and c["kind"] == "stem"
        r = await client.post(url, json={"kind": "note", "description": "Louder chorus"}, headers=bearer(st.artist))
        assert r.status == 201
        await error_of(await client.post(url, json={"kind": "note", "description": "hi"}, headers=bearer(fan)), 403)
        r = await client.post(url, json={"kind": "stem", "description": "x", "cid": "not a cid!"}, headers=bearer(p))
        assert "cid" in (await error_of(r, 400))["details"]["fields"]
        got = await get_session(client, st, fan)
        assert [x["description"] for x in got["contributions"]] == ["Bass take 2", "Louder chorus"]


class TestDecisionsAndVotes:
    async def test_decision_validation(self, client):
        """2–10 distinct options, a prompt, closesAt in the future; only the owner opens one."""
        st = await open_studio(client)
        url = f"/vstudio/sessions/{st.session_id}/decisions"
        h = bearer(st.artist)
        for options in (["A"], ["A", "A"], [str(i) for i in range(11)], ["A", " "]):
            r = await client.post(url, json={"prompt": "?", "options": options}, headers=h)
            await error_of(r, 400)
        past = _ts(datetime.now(UTC) - timedelta(minutes=1))
        r = await client.post(url, json={"prompt": "?", "options": ["A", "B"], "closesAt": past}, headers=h)
        assert "closesAt" in (await error_of(r, 400))["details"]["fields"]
        fan = await sign_in(client, "f@example.com")
        await error_of(await client.post(url, json={"prompt": "?", "options": ["A", "B"]}, headers=bearer(fan)), 403)
        d = await add_decision(st, ["Warm", "Bright", "Raw"])
        assert d["results"] == {"Warm": 0, "Bright": 0, "Raw": 0} and d["status"] == "open"
        assert d["winner"] is None and isinstance(d["seq"], int)

    async def test_vote_replace_and_recount(self, client):
        """One vote per user: a later vote replaces it; results count distinct voters; seq grows."""
        st = await open_studio(client)
        d = await add_decision(st)
        fans = [await sign_in(client, f"v{i}@example.com") for i in range(3)]
        seqs = []
        for f in fans:
            r = await vote(client, st, f, d["id"], "A")
            assert r.status == 200, await r.text()
            seqs.append((await r.json())["seq"])
        r = await vote(client, st, fans[0], d["id"], "B")
        body = await r.json()
        assert body == {"decisionId": d["id"], "results": {"A": 2, "B": 1}, "seq": body["seq"],
                        "weightedResults": None}
        assert seqs == sorted(seqs) and body["seq"] > seqs[-1]
        got = await get_session(client, st, fans[1])
        assert got["decisions"][0]["results"] == {"A": 2, "B": 1}

    async def test_vote_errors(self, client):
        """Unknown decision 404, unknown choice 400, closed decision 409."""
        st = await open_studio(client)
        d = await add_decision(st)
        fan = await sign_in(client, "e@example.com")
        assert (await error_of(await vote(client, st, fan, "dec_nope", "A"), 404))["code"] == "DECISION_NOT_FOUND"
        assert "choice" in (await error_of(await vote(client, st, fan, d["id"], "C"), 400))["details"]["fields"]
        r = await client.post(f"/vstudio/sessions/{st.session_id}/decisions/{d['id']}/close", headers=bearer(fan))
        await error_of(r, 403)
        r = await client.post(f"/vstudio/sessions/{st.session_id}/decisions/{d['id']}/close",
                              headers=bearer(st.artist))
        assert r.status == 200
        await error_of(await vote(client, st, fan, d["id"], "A"), 409)
        r = await client.post(f"/vstudio/sessions/{st.session_id}/decisions/{d['id']}/close",
                              headers=bearer(st.artist))
        await error_of(r, 409)

    async def test_winner_and_ties(self, client):
        """The highest count wins; a tie goes to the earlier option."""
        st = await open_studio(client)
        d1 = await add_decision(st, ["A", "B", "C"])
        d2 = await add_decision(st, ["A", "B", "C"])
        fans = [await sign_in(client, f"w{i}@example.com") for i in range(3)]
        for f, c in zip(fans, ["C", "C", "B"], strict=True):
            await vote(client, st, f, d1["id"], c)
        for f, c in zip(fans[:2], ["C", "B"], strict=True):
            await vote(client, st, f, d2["id"], c)
        url = f"/vstudio/sessions/{st.session_id}/decisions"
        r1 = await (await client.post(f"{url}/{d1['id']}/close", headers=bearer(st.artist))).json()
        r2 = await (await client.post(f"{url}/{d2['id']}/close", headers=bearer(st.artist))).json()
        assert (r1["winner"], r1["results"], r1["status"]) == ("C", {"A": 0, "B": 1, "C": 2}, "closed")
        assert r2["winner"] == "B" and r2["closedAt"] is not None

    async def test_closes_at_passed_is_closed(self, aiohttp_client, backend, clock):
        """Once closesAt passes a vote is 409 even before the scheduler closes the decision."""
        client = await aiohttp_client(create_app(backend, clock=clock))
        st = await open_studio(client)
        d = await add_decision(st, closesAt=_ts(clock.now() + timedelta(seconds=30)))
        fan = await sign_in(client, "late@example.com")
        assert (await vote(client, st, fan, d["id"], "A")).status == 200
        clock.advance(31)
        await error_of(await vote(client, st, fan, d["id"], "B"), 409)


class TestLock:
    async def test_lock_closes_everything(self, client):
        """Lock: open decisions close with winners, the master is locked, then everything is 409."""
        st = await open_studio(client)
        d = await add_decision(st)
        fan = await sign_in(client, "l@example.com")
        await vote(client, st, fan, d["id"], "B")
        cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        r = await client.post(f"/vstudio/sessions/{st.session_id}/lock", json={"finalCid": cid},
                              headers=bearer(st.artist))
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["status"] == "locked" and body["finalCid"] == cid and body["lockedAt"]
        assert body["decisions"][0]["status"] == "closed" and body["decisions"][0]["winner"] == "B"
        m = await st.stand_ins.masters.get(st.master_id)
        assert m.final_audio_cid == cid and m.locked_at is not None
        s = f"/vstudio/sessions/{st.session_id}"
        h = bearer(st.artist)
        await error_of(await vote(client, st, fan, d["id"], "A"), 409)
        await error_of(await client.post(f"{s}/decisions", json={"prompt": "?", "options": ["A", "B"]}, headers=h),
                       409)
        await error_of(await client.post(f"{s}/contributions", json={"kind": "n", "description": "x"}, headers=h),
                       409)
        await error_of(await client.post(f"{s}/producers", json={"userId": uid(fan)}, headers=h), 409)
        await error_of(await client.post(f"{s}/lock", json={}, headers=h), 409)
        r = await client.post("/vstudio/sessions", json={"masterId": st.master_id, "title": "again",
                                                         "audience": "everyone"}, headers=h)
        await error_of(r, 409)

    async def test_final_cid_defaults(self, client):
        """Without finalCid the newest contribution's CID is used, else the master's audio."""
        st = await open_studio(client)
        r = await client.post(f"/vstudio/sessions/{st.session_id}/lock", headers=bearer(st.artist))
        assert r.status == 200, await r.text()
        m = await st.stand_ins.masters.get(st.master_id)
        assert (await r.json())["finalCid"] == m.audio_cid == m.final_audio_cid

        stand = StandIns()
        st2 = await open_studio(client, stand, email="a2@example.com", master_id="mst_two")
        cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        await client.post(f"/vstudio/sessions/{st2.session_id}/contributions",
                          json={"kind": "mix", "description": "final", "cid": cid}, headers=bearer(st2.artist))
        r = await client.post(f"/vstudio/sessions/{st2.session_id}/lock", json={}, headers=bearer(st2.artist))
        assert (await r.json())["finalCid"] == cid


class TestWeighted:
    async def test_weights_snapshot_when_the_decision_opens(self, client):
        """weightedResults use shares held at open: shares moved mid-vote cannot count twice."""
        st = await open_studio(client, audience="shareholders", weighted=True)
        a = await sign_in(client, "wa@example.com")
        b = await sign_in(client, "wb@example.com")
        st.stand_ins.holdings.set(uid(a), st.master_id, 10)
        st.stand_ins.holdings.set(uid(b), st.master_id, 1)
        d = await add_decision(st)
        r = await vote(client, st, a, d["id"], "A")
        assert (await r.json())["weightedResults"] == {"A": 10, "B": 0}
        # a sells their 10 shares to b mid-vote: b still weighs what b held at open
        st.stand_ins.holdings.set(uid(a), st.master_id, 0)
        st.stand_ins.holdings.set(uid(b), st.master_id, 11)
        body = await (await vote(client, st, b, d["id"], "B")).json()
        assert body["results"] == {"A": 1, "B": 1} and body["weightedResults"] == {"A": 10, "B": 1}
        r = await client.post(f"/vstudio/sessions/{st.session_id}/decisions/{d['id']}/close",
                              headers=bearer(st.artist))
        assert (await r.json())["winner"] == "A"


class TestOpenApi:
    async def test_documented(self, client):
        """Every studio row and the socket are in /openapi.json."""
        doc = await (await client.get("/openapi.json")).json()
        paths = doc["paths"]
        assert "post" in paths["/vstudio/sessions"] and "get" in paths["/vstudio/sessions/{id}/ws"]
        for p in ("producers", "decisions", "vote", "contributions", "lock"):
            assert "post" in paths[f"/vstudio/sessions/{{id}}/{p}"]
        assert "StudioSessionView" in doc["components"]["schemas"]
        assert platform_of(client).studio is not None
