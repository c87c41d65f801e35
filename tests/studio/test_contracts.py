"""One contract suite per V Studio port, run against every adapter of it.

StudioRepository: memory and PostgreSQL. Broadcaster and Presence: memory and Redis.
Entitlements: memory and the payments bridge. (StudioMasters/ShareHoldings against the masters
context: ``test_studio_masters_e2e.py``.)
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import attrs
import pytest
from redis.asyncio import Redis

from audifi_adapters.memory import InMemoryDatabase
from audifi_adapters.postgres import PostgresDatabase
from audifi_adapters.studio.bridges import PlatformEntitlements
from audifi_adapters.studio.memory import (
    InMemoryBroadcaster,
    InMemoryEntitlements,
    InMemoryPresence,
    InMemoryStudioMasters,
)
from audifi_adapters.studio.postgres import PostgresVoteLedger
from audifi_adapters.studio.redis import RedisBroadcaster, RedisPresence
from audifi_adapters.studio_context import open_context  # noqa: F401  (registers uow.studio)
from audifi_core.errors import Conflict, NotFound
from audifi_core.events import DomainEvent
from audifi_core.studio.model import (
    Audience,
    Contribution,
    Decision,
    DecisionStatus,
    MasterRef,
    Person,
    StudioSession,
)
from audifi_core.studio.ports import RowLock
from audifi_core.studio.service import UnitOfWorkVoteLedger

from ..conftest import REDIS_URL

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["memory", "postgres"])
def dsn(request) -> str | None:
    return None if request.param == "memory" else request.getfixturevalue("pg_clean")


@pytest.fixture
async def db(dsn):
    if dsn is None:
        yield InMemoryDatabase()
        return
    pg = await PostgresDatabase.connect(dsn, 5)
    yield pg
    await pg.close()


def session(sid: str = "vss_1", weighted: bool = False) -> StudioSession:
    return StudioSession(id=sid, master_id="mst_1", artist_id="usr_artist", title="T", audience=Audience.EVERYONE,
                         created_at=NOW, weighted=weighted)


def decision(did: str, pos: int, sid: str = "vss_1", closes_at: datetime | None = None,
             options: tuple[str, ...] = ("A", "B", "C")) -> Decision:
    return Decision(id=did, session_id=sid, position=pos, prompt="?", options=options, created_at=NOW,
                    closes_at=closes_at)


async def seeded(db: Any, *, weighted: bool = False, weights: dict[str, int] | None = None) -> None:
    async with db.uow() as u:
        await u.studio.add_session(session(weighted=weighted))
        await u.studio.add_decision(decision("dec_1", 1), weights if weighted else None)
        await u.studio.add_decision(decision("dec_2", 2, closes_at=NOW + timedelta(minutes=5)),
                                    weights if weighted else None)


class TestStudioRepository:
    async def test_sessions_and_producers(self, db):
        """A session round-trips and updates; producers are unique, in order; duplicates are Conflict."""
        async with db.uow() as u:
            await u.studio.add_session(session())
            await u.studio.add_producer("vss_1", "usr_p1", NOW)
            await u.studio.add_producer("vss_1", "usr_p2", NOW + timedelta(seconds=1))
            await u.studio.add_producer("vss_1", "usr_p1", NOW + timedelta(seconds=2))
        async with db.uow() as u:
            s = await u.studio.get_session("vss_1", RowLock.UPDATE)
            assert s == session()
            await u.studio.update_session(s.lock(NOW, "bafy"))
        async with db.uow(readonly=True) as u:
            got = await u.studio.get_session("vss_1")
            assert got.locked and got.final_cid == "bafy" and got.locked_at == NOW
            assert await u.studio.producers("vss_1") == ["usr_p1", "usr_p2"]
            assert await u.studio.is_producer("vss_1", "usr_p2") and not await u.studio.is_producer("vss_1", "x")
            assert await u.studio.get_session("vss_nope") is None
        with pytest.raises(Conflict):
            async with db.uow() as u:
                await u.studio.add_session(session())

    async def test_decisions(self, db):
        """Decisions come back by position; open_only filters; updates stick."""
        await seeded(db)
        async with db.uow() as u:
            d = await u.studio.get_decision("dec_1", RowLock.UPDATE)
            await u.studio.update_decision(d.close(NOW, "B"))
        async with db.uow(readonly=True) as u:
            assert [d.id for d in await u.studio.decisions("vss_1")] == ["dec_1", "dec_2"]
            assert [d.id for d in await u.studio.decisions("vss_1", open_only=True)] == ["dec_2"]
            closed = await u.studio.get_decision("dec_1")
            assert closed.status is DecisionStatus.CLOSED and closed.winner == "B" and closed.closed_at == NOW
            assert await u.studio.count_decisions("vss_1") == 2
            assert await u.studio.get_decision("dec_nope") is None

    async def test_vote_is_an_upsert_while_open(self, db):
        """First vote True, a replacement False; closed, past closesAt, other session, bad choice: None."""
        await seeded(db)
        async with db.uow() as u:
            assert await u.studio.cast_vote("vss_1", "dec_1", "u1", "A", NOW, False) is True
            assert await u.studio.cast_vote("vss_1", "dec_1", "u1", "B", NOW, False) is False
            assert await u.studio.cast_vote("vss_1", "dec_1", "u2", "B", NOW, False) is True
            assert await u.studio.cast_vote("vss_1", "dec_1", "u3", "Z", NOW, False) is None
            assert await u.studio.cast_vote("vss_other", "dec_1", "u3", "A", NOW, False) is None
            assert await u.studio.cast_vote("vss_1", "dec_2", "u3", "A", NOW + timedelta(minutes=5), False) is None
            assert await u.studio.cast_vote("vss_1", "dec_2", "u3", "A", NOW, False) is True
        async with db.uow() as u:
            d = await u.studio.get_decision("dec_2", RowLock.UPDATE)
            await u.studio.update_decision(d.close(NOW, "A"))
        async with db.uow() as u:
            assert await u.studio.cast_vote("vss_1", "dec_2", "u4", "A", NOW, False) is None
        async with db.uow(readonly=True) as u:
            t = await u.studio.tally("dec_1")
            assert t.results == {"A": 0, "B": 2, "C": 0} and t.weighted_results is None

    async def test_seq_then_recount(self, db):
        """Every tally takes a new, larger seq; tallies() shares one seq across the session."""
        await seeded(db)
        async with db.uow(readonly=True) as u:
            t1 = await u.studio.tally("dec_1")
            t2 = await u.studio.tally("dec_1")
            both = await u.studio.tallies("vss_1")
            counts = await u.studio.counts("dec_1")
            assert await u.studio.tally("dec_nope") is None
        assert 0 < t1.seq < t2.seq < both["dec_1"].seq == both["dec_2"].seq
        assert list(both) == ["dec_1", "dec_2"] and counts.seq == 0 and counts.counts == (0, 0, 0)

    async def test_weighted_votes_use_the_snapshot(self, db):
        """A weighted decision's votes weigh what the voter held when it opened (0 if nothing)."""
        await seeded(db, weighted=True, weights={"u1": 10, "u2": 3})
        async with db.uow() as u:
            for user, choice in (("u1", "A"), ("u2", "B"), ("u3", "B")):
                await u.studio.cast_vote("vss_1", "dec_1", user, choice, NOW, True)
            await u.studio.cast_vote("vss_1", "dec_1", "u2", "A", NOW, True)
        async with db.uow(readonly=True) as u:
            t = await u.studio.tally("dec_1")
        assert t.results == {"A": 2, "B": 1, "C": 0} and t.weighted_results == {"A": 13, "B": 0, "C": 0}

    async def test_due_and_contributions(self, db):
        """due_decisions/next_due follow closesAt; contributions keep their order; last_cid."""
        await seeded(db)
        async with db.uow(readonly=True) as u:
            assert await u.studio.due_decisions(NOW, 10) == []
            assert await u.studio.due_decisions(NOW + timedelta(minutes=5), 10) == [("vss_1", "dec_2")]
            assert await u.studio.next_due() == NOW + timedelta(minutes=5)
        cs = [Contribution(id=f"ctb_{i}", session_id="vss_1", user_id="u", kind="stem", description=str(i),
                           created_at=NOW, cid=cid) for i, cid in enumerate(["bafy1", None, "bafy3", None])]
        async with db.uow() as u:
            for c in cs:
                await u.studio.add_contribution(c)
        async with db.uow(readonly=True) as u:
            assert await u.studio.contributions("vss_1") == cs
            assert await u.studio.last_cid("vss_1") == "bafy3"
            assert await u.studio.last_cid("vss_nope") is None

    async def test_rollback_leaves_nothing(self, db):
        """A unit of work that fails writes no session, decision or vote."""
        with pytest.raises(RuntimeError):
            async with db.uow() as u:
                await u.studio.add_session(session("vss_9"))
                await u.studio.add_decision(decision("dec_9", 1, "vss_9"))
                await u.studio.cast_vote("vss_9", "dec_9", "u1", "A", NOW, False)
                raise RuntimeError("boom")
        async with db.uow(readonly=True) as u:
            assert await u.studio.get_session("vss_9") is None and await u.studio.get_decision("dec_9") is None


def _ledger(db: Any) -> Any:
    return PostgresVoteLedger(db) if isinstance(db, PostgresDatabase) else UnitOfWorkVoteLedger(db.uow)


async def _outbox(db: Any) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(db, PostgresDatabase):
        async with db.connection() as c:
            rows = await c.fetch("SELECT id, data FROM outbox ORDER BY seq")
        return [(r["id"], r["data"]) for r in rows]
    return [(r.event.id, r.event.data) for r in db.outbox]


class TestVoteLedger:
    async def test_vote_and_event_commit_together(self, db):
        """A vote stores its vote.cast event (with first) in the same transaction; a refused one neither."""
        await seeded(db)
        woken: list[int] = []
        db.on_commit.append(lambda: woken.append(1))
        ledger = _ledger(db)

        def ev(i: int) -> DomainEvent:
            return DomainEvent(id=f"evt_{i}", type="vote.cast", occurred_at=NOW, data={"userId": "u1", "n": i})

        assert await ledger.cast("vss_1", "dec_1", "u1", "A", NOW, False, ev(1)) is True
        assert await ledger.cast("vss_1", "dec_1", "u1", "C", NOW, False, ev(2)) is False
        assert await ledger.cast("vss_1", "dec_1", "u1", "Z", NOW, False, ev(3)) is None
        assert await ledger.cast("vss_1", "dec_2", "u1", "A", NOW + timedelta(hours=1), False, ev(4)) is None
        assert await _outbox(db) == [("evt_1", {"userId": "u1", "n": 1, "first": True}),
                                     ("evt_2", {"userId": "u1", "n": 2, "first": False})]
        await asyncio.sleep(0.05)  # the PostgreSQL ledger wakes the relay a little later, once for many votes
        assert 1 <= len(woken) <= 2
        async with db.uow(readonly=True) as u:
            assert (await u.studio.tally("dec_1")).results == {"A": 0, "B": 0, "C": 1}


    async def test_a_burst_of_votes(self, db):
        """60 votes at once (a user voting twice among them): each answered, the later one wins,
        one event per vote, exactly one of them first per user."""
        await seeded(db)
        ledger = _ledger(db)
        plan = [(f"u{i}", "ABC"[i % 3]) for i in range(58)] + [("u0", "C"), ("u1", "A")]

        async def cast(k: int, user: str, choice: str) -> bool | None:
            ev = DomainEvent(id=f"evt_b{k}", type="vote.cast", occurred_at=NOW, data={"userId": user})
            return await ledger.cast("vss_1", "dec_1", user, choice, NOW, False, ev)

        got = await asyncio.gather(*(cast(k, u, c) for k, (u, c) in enumerate(plan)))
        assert got == [True] * 58 + [False, False]
        rows = await _outbox(db)
        assert len(rows) == 60 and sum(d["first"] for _, d in rows) == 58
        async with db.uow(readonly=True) as u:
            t = await u.studio.tally("dec_1")
        expected = {"A": 0, "B": 0, "C": 0}
        for choice in dict(plan).values():
            expected[choice] += 1
        assert t.results == expected


async def _waiting_locks(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(10):
            while True:
                if await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND wait_event_type = 'Lock'"):
                    return
                await asyncio.sleep(0.01)
    finally:
        await conn.close()


class TestVoteVersusClose:
    """PostgreSQL only: a close waits for votes in flight, and a vote in flight behind a close is refused."""

    @pytest.fixture
    async def pg(self, pg_clean):
        pg = await PostgresDatabase.connect(pg_clean, 5)
        await seeded(pg)
        yield pg, pg_clean
        await pg.close()

    async def test_close_counts_the_vote_in_flight(self, pg):
        """A close started while a vote is uncommitted waits for it, and its recount includes it."""
        db, dsn = pg
        cast, release = asyncio.Event(), asyncio.Event()

        async def voter() -> None:
            async with db.uow() as u:
                assert await u.studio.cast_vote("vss_1", "dec_1", "u1", "B", NOW, False) is True
                cast.set()
                await release.wait()

        async def closer() -> Any:
            async with db.uow() as u:
                await u.studio.get_decision("dec_1", RowLock.UPDATE)
                return await u.studio.counts("dec_1")

        v = asyncio.create_task(voter())
        await cast.wait()
        c = asyncio.create_task(closer())
        await _waiting_locks(dsn)  # the close waits behind the vote
        release.set()
        await v
        assert (await c).results == {"A": 0, "B": 1, "C": 0}

    async def test_vote_behind_a_close_is_refused(self, pg):
        """A vote that arrives while a close holds the decision waits, then sees it closed."""
        db, dsn = pg
        held, release = asyncio.Event(), asyncio.Event()

        async def closer() -> None:
            async with db.uow() as u:
                d = await u.studio.get_decision("dec_1", RowLock.UPDATE)
                await u.studio.update_decision(d.close(NOW, "A"))
                held.set()
                await release.wait()

        async def voter() -> bool | None:
            async with db.uow() as u:
                return await u.studio.cast_vote("vss_1", "dec_1", "u1", "B", NOW, False)

        c = asyncio.create_task(closer())
        await held.wait()
        v = asyncio.create_task(voter())
        await _waiting_locks(dsn)
        release.set()
        await c
        assert await v is None


# ------------------------------------------------------------------------------ Broadcaster
@pytest.fixture(params=["memory", "redis"])
async def broadcasters(request):
    """Two instances' broadcasters (the same one twice in memory: one process)."""
    if request.param == "memory":
        b = InMemoryBroadcaster()
        yield b, b, []
        return
    prefix = request.getfixturevalue("redis_prefix")
    r = Redis.from_url(REDIS_URL)
    a, b = RedisBroadcaster(r, prefix), RedisBroadcaster(r, prefix)
    yield a, b, [a, b]
    for x in (a, b):
        await x.close()
    await r.aclose()


async def _eventually(check: Any) -> None:
    async with asyncio.timeout(5):
        while True:
            if check():
                return
            await asyncio.sleep(0.005)


class TestBroadcaster:
    async def test_every_listener_of_a_topic_everywhere(self, broadcasters):
        """A message published on one instance reaches the topic's listeners on every instance, as JSON."""
        a, b, started = broadcasters
        got_a: list[dict] = []
        got_b: list[dict] = []
        other: list[dict] = []
        a.listen("studio", got_a.append)
        b.listen("studio", got_b.append)
        b.listen("revoked", other.append)
        for x in started or [a]:
            await x.start()
        msg = {"sessionId": "s", "message": {"type": "pong", "at": [1, 2]}}
        await a.publish("studio", msg)
        await _eventually(lambda: got_a and got_b)
        assert got_a == got_b == [msg] and other == []
        got_a[0]["message"]["type"] = "mutated"
        assert got_b[0]["message"]["type"] == "pong"  # each listener has its own copy
        await b.publish("revoked", {"sessionIds": ["ses_1"]})
        await _eventually(lambda: other)
        assert other == [{"sessionIds": ["ses_1"]}]


# ------------------------------------------------------------------------------ Presence
@pytest.fixture(params=["memory", "redis"])
async def presence(request):
    if request.param == "memory":
        yield InMemoryPresence()
        return
    prefix = request.getfixturevalue("redis_prefix")
    r = Redis.from_url(REDIS_URL)
    yield RedisPresence(r, prefix)
    await r.aclose()


ANN = Person("u1", "Ann")
BOB = Person("u2", "Bob")


class TestPresence:
    async def test_two_tabs_are_present_once(self, presence):
        """A user's first connection joins, the second does not; the last one to go leaves."""
        assert (await presence.join("s1", "c1", ANN)).joined == (ANN,)
        assert (await presence.join("s1", "c2", BOB)).joined == (BOB,)
        assert (await presence.join("s1", "c3", ANN)).joined == ()
        assert (await presence.join("s1", "c3", ANN)).joined == ()  # the same connection again
        assert await presence.present("s1") == [ANN, BOB]
        assert (await presence.leave("s1", "c1")).left == ()
        assert (await presence.leave("s1", "c3")).left == ("u1",)
        assert (await presence.leave("s1", "c3")).left == ()
        assert await presence.present("s1") == [BOB]
        assert await presence.present("s2") == []
        assert await presence.refresh({"s1": ["c2"]}) == {}


class TestRedisPresenceExpiry:
    async def test_a_dead_instances_connections_expire(self, redis_prefix):
        """Connections not refreshed within the TTL are forgotten; the refresher learns who left."""
        r = Redis.from_url(REDIS_URL)
        try:
            alive = RedisPresence(r, redis_prefix, ttl_seconds=5)
            dying = RedisPresence(r, redis_prefix, ttl_seconds=0.2)
            await alive.join("s1", "a1", ANN)
            await dying.join("s1", "d1", BOB)
            await dying.join("s1", "d2", ANN)
            await asyncio.sleep(0.3)
            changes = await alive.refresh({"s1": ["a1"]})
            assert changes["s1"].left == ("u2",)
            assert await alive.present("s1") == [ANN]
        finally:
            await r.aclose()


# ------------------------------------------------------------------------------ Entitlements, masters
@attrs.define
class FakePayments:
    granted: set[tuple[str, str]] = attrs.Factory(set)

    async def has_entitlement(self, user_id: str, name: str) -> bool:
        return (user_id, name) in self.granted


@attrs.define
class FakePlatform:
    payments: Any = None


@pytest.fixture(params=["memory", "payments"])
def entitlements(request):
    if request.param == "memory":
        m = InMemoryEntitlements()
        return m, m.grant
    payments = FakePayments()
    return PlatformEntitlements(FakePlatform(payments), InMemoryEntitlements()), \
        lambda u, e: payments.granted.add((u, e))


class TestEntitlements:
    async def test_granted_only(self, entitlements):
        """has() is true only for a granted (user, entitlement)."""
        port, grant = entitlements
        assert not await port.has("u1", "vstudio.subscribers")
        grant("u1", "vstudio.subscribers")
        assert await port.has("u1", "vstudio.subscribers")
        assert not await port.has("u2", "vstudio.subscribers") and not await port.has("u1", "other")


class TestInMemoryStudioMasters:
    async def test_get_and_lock_once(self):
        """Unknown master: MASTER_NOT_FOUND; lock sets finalAudioCid/lockedAt once, then Conflict."""
        m = InMemoryStudioMasters()
        with pytest.raises(NotFound) as e:
            await m.get("mst_x")
        assert e.value.code == "MASTER_NOT_FOUND"
        m.add(MasterRef(id="mst_1", artist_id="usr_a"))
        db = InMemoryDatabase()
        async with db.uow() as u:
            await m.lock(u, "mst_1", "bafy", NOW)
        got = await m.get("mst_1")
        assert (got.final_audio_cid, got.locked_at) == ("bafy", NOW)
        with pytest.raises(Conflict):
            await m.lock(None, "mst_1", "bafy", NOW)
