"""POST /events, the dashboards and the inbox over HTTP, on memory and on PostgreSQL + Redis.

Masters are registered for real (IPFS + a chain job on the in-process EVM), so ``master.registered``
reaches analytics through the outbox and the stream like every other domain event.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import attrs
import pytest

from audifi_adapters.config import Config
from audifi_core.events import DomainEvent
from audifi_http import create_app

from ..http.helpers import bearer, error_of, platform_of, sign_in
from ..masters.kit import artist, fast, registered, until


def configured(backend: Config, **settings: str) -> Config:
    env = {"BUS_BLOCK_MS": "100", "ANALYTICS_AGGREGATE_INTERVAL": "0.2", **settings}
    return fast(attrs.evolve(backend, settings={**dict(backend.settings), **env}))


@pytest.fixture
async def client(aiohttp_client, backend: Config, clock):
    return await aiohttp_client(create_app(configured(backend, EVENTS_ANON_RATE="1000/60"), clock=clock))


def ts(d) -> str:
    return d.isoformat().replace("+00:00", "Z")


async def report(client, session, path: str, **query: str) -> dict[str, Any]:
    r = await client.get(path, params=query, headers=bearer(session))
    assert r.status == 200, await r.text()
    return await r.json()


async def emit(client, *events: DomainEvent) -> None:
    """What the masters, studio and payments contexts do: events committed with a unit of work."""
    async with platform_of(client).uow() as u:
        for e in events:
            u.emit(e)


def event(client, eid: str, etype: str, **data: Any) -> DomainEvent:
    return DomainEvent(id=eid, type=etype, occurred_at=platform_of(client).clock.now(), data=data)


async def owned_master(client) -> tuple[dict[str, Any], str]:
    """An artist session and a registered master of theirs, known to analytics."""
    s = await artist(client, "ana@example.com")
    mid = (await registered(client, s))["id"]
    directory = platform_of(client).extras["master_directory"]
    await until(lambda: _in(directory.masters_of(s["user"]["id"]), mid))
    return s, mid


async def _in(coro, item) -> bool:
    return item in await coro


class TestIngest:
    async def test_plays_count_once_per_id_and_late_plays_find_their_hour(self, client, clock):
        """Anonymous and signed-in plays land in the owner's report; a replayed batch counts nothing again;
        a play sent late books into its own hour."""
        s, mid = await owned_master(client)
        batch = {"batch": [{"id": f"c{i}", "type": "play", "masterId": mid, "anonymousId": f"a{i % 3}"}
                           for i in range(6)] + [{"id": "c-skip", "type": "skip", "masterId": mid}]}
        r = await client.post("/events", json=batch)
        assert r.status == 202 and await r.json() == {"accepted": 7}
        fan = await sign_in(client, "fan@example.com")
        r = await client.post("/events", json={"id": "f1", "type": "play", "masterId": mid}, headers=bearer(fan))
        assert r.status == 202 and await r.json() == {"accepted": 1}
        r = await client.post("/events", json=batch)
        assert r.status == 202 and await r.json() == {"accepted": 7}  # accepted again, stored once

        rep = await report(client, s, f"/analytics/masters/{mid}", interval="hour")
        assert rep["masterId"] == mid and rep["artistId"] == s["user"]["id"] and rep["interval"] == "hour"
        assert len(rep["series"]) == 48 and rep["series"][-1]["plays"] == 7  # the current hour is included
        assert rep["totals"] == {"plays": 7, "uniqueListeners": 4, "votes": 0, "sharesSold": 0, "revenue": []}

        three_ago = clock.now() - timedelta(hours=3)
        r = await client.post("/events", json={"id": "late", "type": "play", "masterId": mid,
                                                "anonymousId": "a0", "occurredAt": ts(three_ago)})
        assert r.status == 202
        rep = await report(client, s, f"/analytics/masters/{mid}", interval="hour",
                           **{"from": ts(three_ago), "to": ts(clock.now())})
        assert [p["plays"] for p in rep["series"]] == [1, 0, 0, 7]
        assert rep["totals"]["uniqueListeners"] == 4
        day = await report(client, s, "/analytics/dashboard")
        assert day["artistId"] == s["user"]["id"] and len(day["series"]) == 30
        assert (day["totals"]["plays"], day["totals"]["uniqueListeners"]) == (8, 4)

    async def test_limits_and_invalid_input(self, client):
        """Batch over 1000, event over 32 KB and body over 1 MB are 413 naming the limit; unknown types 400."""
        err = await error_of(await client.post("/events", json={"batch": [{"type": "play"}] * 1001}), 413)
        assert err["code"] == "PAYLOAD_TOO_LARGE" and err["details"]["limit"] == 1000
        big = {"type": "play", "properties": {"x": "y" * 33_000}}
        err = await error_of(await client.post("/events", json={"batch": [big]}), 413)
        assert err["details"] == {"limit": 32768, "field": "batch[0]"}
        huge = {"batch": [{"type": "play", "properties": {"x": "y" * 30_000}}] * 40}
        err = await error_of(await client.post("/events", data=io.BytesIO(json.dumps(huge).encode()),
                                               headers={"Content-Type": "application/json"}), 413)
        assert err["details"]["limit"] == 1024 * 1024
        err = await error_of(await client.post("/events", json={"type": "payment.succeeded", "masterId": "m"}), 400)
        assert "type" in err["details"]["fields"]
        err = await error_of(await client.post("/events", data=b"{nope", headers={"Content-Type": "application/json"}),
                             400)
        assert err["code"] == "VALIDATION_ERROR"
        err = await error_of(await client.post("/events", json={"batch": [{"type": "play", "occurredAt": "soon"}]}),
                             400)
        assert err["details"]["fields"] == {"batch[0].occurredAt": "expected an RFC 3339 timestamp"}


class TestRateLimit:
    async def test_anonymous_uploads_are_limited_per_ip(self, aiohttp_client, backend, clock):
        """Without a token the IP gets 3 uploads a minute, then 429 with Retry-After; a signed-in user is not
        held by the IP's limit."""
        client = await aiohttp_client(create_app(configured(backend, EVENTS_ANON_RATE="3/60"), clock=clock))
        for _ in range(3):
            assert (await client.post("/events", json={"type": "page_view"})).status == 202
        r = await client.post("/events", json={"type": "page_view"})
        err = await error_of(r, 429)
        assert err["code"] == "RATE_LIMITED" and int(r.headers["Retry-After"]) >= 1
        fan = await sign_in(client, "fan@example.com")
        assert (await client.post("/events", json={"type": "page_view"}, headers=bearer(fan))).status == 202


class TestAccess:
    async def test_only_artists_and_owners_see_analytics(self, client):
        """Fans get 403 on the dashboard, another artist 403 on the master, unknown masters 404, no token 401."""
        s, mid = await owned_master(client)
        fan = await sign_in(client, "fan@example.com")
        other = await artist(client, "bob@example.com")
        assert (await error_of(await client.get("/analytics/dashboard", headers=bearer(fan)), 403))
        err = await error_of(await client.get(f"/analytics/masters/{mid}", headers=bearer(other)), 403)
        assert err["code"] == "FORBIDDEN"
        err = await error_of(await client.get("/analytics/masters/mst_nope", headers=bearer(s)), 404)
        assert err["code"] == "MASTER_NOT_FOUND"
        await error_of(await client.get("/analytics/dashboard"), 401)
        await error_of(await client.get("/notifications"), 401)
        assert (await report(client, other, "/analytics/dashboard"))["totals"]["plays"] == 0
        err = await error_of(await client.get("/analytics/dashboard", params={"interval": "week"},
                                              headers=bearer(s)), 400)
        assert "interval" in err["details"]["fields"]
        err = await error_of(await client.get("/analytics/dashboard", params={"interval": "hour",
                                              "from": "2020-01-01T00:00:00Z"}, headers=bearer(s)), 400)
        assert "from" in err["details"]["fields"]


class TestServerEvents:
    async def test_money_shares_votes_and_notifications(self, client):
        """Server events give revenue, shares sold and votes; buyers, holders, voters and the artist are
        notified once each (inbox and mail), even when the bus delivers an event again."""
        s, mid = await owned_master(client)
        buyer = await sign_in(client, "buyer@example.com")
        voter = await sign_in(client, "voter@example.com")
        bid, vid = buyer["user"]["id"], voter["user"]["id"]
        paid = event(client, "evt_pay1", "payment.succeeded", masterId=mid, userId=bid, amount=1500, currency="usd",
                     quantity=3)
        await emit(client, paid,
                   event(client, "evt_tr1", "share.transferred", masterId=mid, userId=bid, count=3),
                   event(client, "evt_v1", "vote.cast", sessionId="ses_1", decisionId="d1", masterId=mid, userId=vid,
                         first=True),
                   event(client, "evt_v2", "vote.cast", sessionId="ses_1", decisionId="d1", masterId=mid, userId=vid,
                         first=False),
                   event(client, "evt_sub", "payment.succeeded", userId=vid, amount=999, currency="usd"))

        async def counted() -> dict[str, Any] | None:
            rep = await report(client, s, f"/analytics/masters/{mid}")
            return rep["totals"] if rep["totals"]["sharesSold"] == 3 and rep["totals"]["votes"] == 1 else None

        totals = await until(counted)
        assert totals["revenue"] == [{"amount": 1500, "currency": "usd"}]

        await emit(client, event(client, "evt_div1", "dividend.deposited", masterId=mid, amount=str(5 * 10**17)),
                   event(client, "evt_lock1", "session.locked", sessionId="ses_1", masterId=mid),
                   event(client, "evt_ipo1", "ipo.launched", masterId=mid))
        bus = platform_of(client).bus
        await bus.publish(paid)  # the bus delivers it once more

        async def inbox(session, n: int) -> list[dict[str, Any]] | None:
            r = await client.get("/notifications", headers=bearer(session))
            items = (await r.json())["items"]
            return items if len(items) >= n else None

        buyer_items = await until(lambda: inbox(buyer, 3))
        assert sorted(i["kind"] for i in buyer_items) == ["dividend_deposited", "ipo_live", "purchase_receipt"]
        receipt = next(i for i in buyer_items if i["kind"] == "purchase_receipt")
        assert "15.00 USD" in receipt["body"] and "3 shares" in receipt["body"] and receipt["readAt"] is None
        dividend = next(i for i in buyer_items if i["kind"] == "dividend_deposited")
        assert "0.5 ETH" in dividend["body"]
        voter_items = await until(lambda: inbox(voter, 2))
        assert sorted(i["kind"] for i in voter_items) == ["purchase_receipt", "session_locked"]
        artist_items = await until(lambda: inbox(s, 1))
        assert [i["kind"] for i in artist_items] == ["ipo_live"]

        mails = await until(lambda: _mails(client, "buyer@example.com", 3))
        assert sorted(m["subject"] for m in mails) == ["Dividend deposited", "IPO is live", "Your AudiFi receipt"]
        await bus.publish(paid)
        await until(lambda: _consumed(client))
        assert len(await inbox(buyer, 0)) == 3 and len(await _mails(client, "buyer@example.com", 0)) == 3
        rep = await report(client, s, f"/analytics/masters/{mid}")
        assert rep["totals"]["revenue"] == [{"amount": 1500, "currency": "usd"}]

    async def test_inbox_pages_and_read_marks(self, client):
        """The inbox pages newest first with a cursor; marking read sets readAt on the user's own entries."""
        fan = await sign_in(client, "fan@example.com")
        uid = fan["user"]["id"]
        p = platform_of(client)
        for i in range(5):
            await emit(client, event(client, f"evt_p{i}", "payment.succeeded", userId=uid, amount=100 + i,
                                     currency="eur"))
            p.clock.advance(1)

        async def five() -> bool:
            r = await client.get("/notifications", params={"limit": "100"}, headers=bearer(fan))
            return len((await r.json())["items"]) == 5

        await until(five)
        r = await client.get("/notifications", params={"limit": "2"}, headers=bearer(fan))
        page1 = await r.json()
        r = await client.get("/notifications", params={"limit": "2", "cursor": page1["nextCursor"]},
                             headers=bearer(fan))
        page2 = await r.json()
        r = await client.get("/notifications", params={"limit": "2", "cursor": page2["nextCursor"]},
                             headers=bearer(fan))
        page3 = await r.json()
        bodies = [i["body"] for i in page1["items"] + page2["items"] + page3["items"]]
        assert [b.split(" of ")[1].split(".")[0] for b in bodies] == ["1", "1", "1", "1", "1"]
        assert [b.split(" of ")[1].split(" ")[0] for b in bodies] == ["1.04", "1.03", "1.02", "1.01", "1.00"]
        assert page3["nextCursor"] is None
        r = await client.post("/notifications/read", json={"ids": [page1["items"][0]["id"]]}, headers=bearer(fan))
        assert await r.json() == {"updated": 1}
        r = await client.get("/notifications", params={"limit": "1"}, headers=bearer(fan))
        assert (await r.json())["items"][0]["readAt"] is not None
        err = await error_of(await client.get("/notifications", params={"cursor": "garbage!"}, headers=bearer(fan)),
                             400)
        assert "cursor" in err["details"]["fields"]


async def _mails(client, to: str, n: int) -> list[dict[str, Any]] | None:
    r = await client.get("/dev/mailbox", params={"to": to})
    mails = [m for m in await r.json() if "magic" not in m["text"] and "?token=" not in m["text"]]
    return mails if len(mails) >= n else None


async def _consumed(client) -> bool:
    bus = platform_of(client).bus
    return all([await bus.log.pending(g) == 0 for g in bus.consumers]) and await _idle(bus)


async def _idle(bus) -> bool:
    floor = await bus.log.floor()
    return floor.min_published_at is None
