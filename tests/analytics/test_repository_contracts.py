"""The analytics and notification repositories: one suite, run on memory and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from audifi_adapters.analytics import (
    ensure_partitions,
    register_memory_repositories,
    register_postgres_repositories,
)
from audifi_adapters.memory import InMemoryDatabase
from audifi_adapters.postgres import PostgresDatabase
from audifi_core.analytics import AnalyticsEvent, ClientBatch, Interval, Metrics, Money, Scope
from audifi_core.notifications import Notification, NotificationKind

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture(params=["memory", "postgres"])
def dsn(request) -> str | None:
    return None if request.param == "memory" else request.getfixturevalue("pg_clean")


@pytest.fixture
async def db(dsn):
    if dsn is None:
        register_memory_repositories()
        yield InMemoryDatabase()
        return
    register_postgres_repositories()
    pg = await PostgresDatabase.connect(dsn, 5)
    yield pg
    await pg.close()


def ev(eid: str, etype: str = "play", at: datetime = T0, master: str | None = "m1", *, user: str | None = None,
       anon: str | None = None, quantity: int | None = None, amount: int | None = None,
       currency: str | None = None, received: datetime = T0) -> AnalyticsEvent:
    return AnalyticsEvent(id=eid, type=etype, occurred_at=at, received_at=received, master_id=master, user_id=user,
                          anonymous_id=anon, quantity=quantity, amount=amount, currency=currency,
                          properties='{"p": 1}' if etype == "play" else None)


async def ingest(db, *events: AnalyticsEvent) -> int:
    async with db.uow() as u:
        return await u.analytics.ingest(list(events))


async def report(db, scope: Scope, sid: str, start: datetime, end: datetime, interval: Interval = Interval.HOUR):
    async with db.uow(readonly=True) as u:
        return await u.analytics.report(scope, sid, start, end, interval)


async def aggregate(db) -> int:
    async with db.uow() as u:
        return await u.analytics.aggregate()


async def owns(db, **masters: str) -> None:
    async with db.uow() as u:
        for m, a in masters.items():
            await u.analytics.set_master_artist(m, a)


class TestIngest:
    async def test_ids_dedupe_across_batches(self, db):
        """A replayed batch stores nothing; a batch mixing new and known ids stores only the new."""
        batch = [ev("a", anon="x"), ev("b", anon="y"), ev("c", user="u1")]
        assert await ingest(db, *batch) == 3
        assert await ingest(db, *batch) == 0
        assert await ingest(db, ev("c", at=T0 - 50 * H), ev("d", anon="x")) == 1
        r = await report(db, Scope.MASTER, "m1", T0, T0)
        assert r.totals.plays == 4 and r.totals.unique_listeners == 3

    async def test_client_batches_take_the_bulk_path(self, db):
        """A client batch (arrival time and user for all) stores like events, dedupes against them too."""
        batch = ClientBatch(T0, "u5", [("k1", "play", T0, "m1", None, '{"a": 1}'),
                                       ("k2", "play", T0 + H, "m1", "anon", None),
                                       ("k3", "page_view", T0, None, "anon", None)])
        async with db.uow() as u:
            assert await u.analytics.ingest_client(batch) == 3
            assert await u.analytics.ingest_client(batch) == 0
            assert await u.analytics.ingest([ev("k1"), ev("k4", user="u6")]) == 1
        r = await report(db, Scope.MASTER, "m1", T0, T0 + H)
        assert [(p.plays, p.unique_listeners) for p in r.series] == [(2, 2), (1, 1)]  # k2 is u5's too
        assert r.totals.unique_listeners == 2

    async def test_rollback_leaves_nothing(self, db):
        """Events ingested in a unit of work that fails are gone, ids included."""
        with pytest.raises(RuntimeError):
            async with db.uow() as u:
                await u.analytics.ingest([ev("r1")])
                raise RuntimeError("boom")
        assert (await report(db, Scope.MASTER, "m1", T0, T0)).totals.plays == 0
        assert await ingest(db, ev("r1")) == 1

    async def test_pruned_ids_are_accepted_again(self, db):
        """Ids older than the prune horizon are forgotten; newer ones still dedupe."""
        await ingest(db, ev("old", received=T0 - 8 * 24 * H), ev("new", received=T0))
        async with db.uow() as u:
            assert await u.analytics.prune_ids(T0 - 7 * 24 * H) == 1
        assert await ingest(db, ev("old", received=T0), ev("new", received=T0)) == 1


class TestReports:
    async def _fill(self, db) -> None:
        await owns(db, m1="art1", m2="art1", m3="art2")
        await ingest(
            db,
            ev("p1", anon="a1"), ev("p2", anon="a1"), ev("p3", user="u1"), ev("p4"),  # 4 plays, 2 listeners
            ev("p5", at=T0 + H, user="u1"), ev("p6", at=T0 + H, anon="a2"),
            ev("s1", "skip", anon="a9"), ev("pv", "page_view", master=None, anon="a9"),
            ev("v1", "vote.cast", user="u1"), ev("v2", "vote.cast", at=T0 + H, user="u2"),
            ev("t1", "share.transferred", user="u1", quantity=3), ev("t2", "share.transferred", at=T0 + H, quantity=2),
            ev("$1", "payment.succeeded", user="u1", amount=1500, currency="usd"),
            ev("$2", "payment.succeeded", at=T0 + H, user="u2", amount=700, currency="eur"),
            ev("q1", master="m2", user="u1"), ev("q2", master="m2", user="u3"),
            ev("z1", master="m3", user="u9"),
        )

    async def _check(self, db) -> None:
        r = await report(db, Scope.MASTER, "m1", T0, T0 + H + timedelta(minutes=5))
        assert [p.start for p in r.series] == [T0, T0 + H]
        first, second = r.series
        assert (first.plays, first.unique_listeners, first.votes, first.shares_sold) == (4, 2, 1, 3)
        assert first.revenue == [Money(1500, "usd")]
        assert (second.plays, second.unique_listeners, second.votes, second.shares_sold) == (2, 2, 1, 2)
        assert r.totals == Metrics(6, 3, 2, 5, [Money(700, "eur"), Money(1500, "usd")])
        assert r.master_id == "m1" and r.artist_id == "art1"

        d = await report(db, Scope.ARTIST, "art1", T0 - 3 * H, T0 + 2 * H, Interval.DAY)
        assert [p.start for p in d.series] == [datetime(2026, 5, 1, tzinfo=UTC)]
        assert d.totals == Metrics(8, 4, 2, 5, [Money(700, "eur"), Money(1500, "usd")])  # u1 counted once
        assert (await report(db, Scope.ARTIST, "art2", T0, T0, Interval.DAY)).totals.plays == 1
        empty = await report(db, Scope.ARTIST, "nobody", T0, T0 + 3 * H)
        assert empty.totals == Metrics() and len(empty.series) == 4

    async def test_metrics_per_bucket_master_and_artist(self, db):
        """Plays, distinct listeners, votes, shares and revenue per currency, per hour and per day, exact."""
        await self._fill(db)
        await self._check(db)

    async def test_aggregation_keeps_reports_exact(self, db):
        """After the aggregation job the same reports come from the summaries, unchanged."""
        await self._fill(db)
        await aggregate(db)
        await self._check(db)
        await aggregate(db)
        await self._check(db)

    async def test_a_day_with_stale_hours_is_exact(self, db):
        """After aggregation, new events in aggregated and new hours of the same day: the day report is
        exact before the next run (stored hours + live stale hours, listener sets united) and after it."""
        await self._fill(db)
        await aggregate(db)
        await ingest(db, ev("n1", user="u1"), ev("n2", at=T0 + 2 * H, user="u7"), ev("n3", at=T0 + 2 * H, anon="a1"),
                     ev("n4", "vote.cast", at=T0 + 2 * H, user="u7"),
                     ev("n5", "payment.succeeded", at=T0 + 2 * H, amount=5, currency="usd"),
                     ev("n6", master="m2", at=T0 + 2 * H, user="u8"))
        for _ in range(2):
            d = await report(db, Scope.MASTER, "m1", T0, T0, Interval.DAY)
            assert d.totals == Metrics(9, 4, 3, 5, [Money(700, "eur"), Money(1505, "usd")])
            a = await report(db, Scope.ARTIST, "art1", T0 - 24 * H, T0 + 2 * H, Interval.DAY)
            assert [p.plays for p in a.series] == [0, 12]
            assert (a.totals.plays, a.totals.unique_listeners) == (12, 6)
            h = await report(db, Scope.MASTER, "m1", T0, T0 + 2 * H)
            assert [(p.plays, p.unique_listeners) for p in h.series] == [(5, 2), (2, 2), (2, 2)]
            await aggregate(db)

    async def test_late_events_correct_their_bucket(self, db):
        """An event arriving late for a closed hour updates that hour, the day and the artist."""
        await owns(db, m1="art1")
        await ingest(db, ev("a", user="u1"), ev("b", at=T0 + 3 * H, user="u2"))
        await aggregate(db)
        assert [p.plays for p in (await report(db, Scope.MASTER, "m1", T0, T0 + 3 * H)).series] == [1, 0, 0, 1]
        await ingest(db, ev("late", at=T0 + timedelta(minutes=20), user="u3", received=T0 + 5 * H),
                     ev("late2", at=T0 + H, user="u1", received=T0 + 5 * H))
        r = await report(db, Scope.MASTER, "m1", T0, T0 + 3 * H)
        assert [(p.plays, p.unique_listeners) for p in r.series] == [(2, 2), (1, 1), (0, 0), (1, 1)]
        await aggregate(db)
        r = await report(db, Scope.MASTER, "m1", T0, T0 + 3 * H)
        assert [(p.plays, p.unique_listeners) for p in r.series] == [(2, 2), (1, 1), (0, 0), (1, 1)]
        day = await report(db, Scope.ARTIST, "art1", T0, T0, Interval.DAY)
        assert (day.totals.plays, day.totals.unique_listeners) == (4, 3)

    async def test_an_owner_learned_late_gets_the_past(self, db):
        """Events of a master seen before master.registered count for its artist once the owner is known."""
        await ingest(db, ev("e1", master="m7", user="u1"), ev("e2", master="m7", at=T0 - 30 * H, user="u2"))
        await aggregate(db)
        assert (await report(db, Scope.ARTIST, "art7", T0 - 48 * H, T0, Interval.DAY)).totals.plays == 0
        await owns(db, m7="art7")
        await aggregate(db)
        r = await report(db, Scope.ARTIST, "art7", T0 - 48 * H, T0, Interval.DAY)
        assert r.totals.plays == 2 and [p.plays for p in r.series] == [0, 1, 1]
        async with db.uow(readonly=True) as u:
            assert await u.analytics.artist_of("m7") == "art7"
            assert await u.analytics.masters_of("art7") == ["m7"]


def note(nid: str, user: str, event: str, at: datetime = T0, mail: str | None = "u@x.io") -> Notification:
    return Notification(id=nid, user_id=user, event_id=event, kind=NotificationKind.PURCHASE_RECEIPT, title="t",
                        body="b", created_at=at, mail_to=mail)


class TestNotificationRepository:
    async def test_each_event_notifies_each_user_once(self, db):
        """A second notification for the same (event, user) is refused; another user or event is not."""
        async with db.uow() as u:
            assert await u.notifications.add(note("n1", "u1", "e1"))
            assert not await u.notifications.add(note("n2", "u1", "e1"))
            assert await u.notifications.add(note("n3", "u2", "e1"))
            assert await u.notifications.add(note("n4", "u1", "e2"))
        async with db.uow(readonly=True) as u:
            assert [n.id for n in await u.notifications.page("u1", None, 10)] == ["n4", "n1"]

    async def test_pages_newest_first_and_read_marks(self, db):
        """Pages go newest first by (created_at, id); marking read touches only the owner's entries."""
        async with db.uow() as u:
            for i in range(5):
                await u.notifications.add(note(f"n{i}", "u1", f"e{i}", T0 + timedelta(minutes=i)))
            await u.notifications.add(note("other", "u2", "e0"))
        async with db.uow(readonly=True) as u:
            first = await u.notifications.page("u1", None, 2)
            rest = await u.notifications.page("u1", (first[-1].created_at, first[-1].id), 10)
        assert [n.id for n in first + rest] == ["n4", "n3", "n2", "n1", "n0"]
        async with db.uow() as u:
            assert await u.notifications.mark_read("u1", ["n4", "other", "nope"], T0) == 1
            assert await u.notifications.mark_read("u1", ["n4"], T0) == 0
        async with db.uow(readonly=True) as u:
            assert (await u.notifications.page("u1", None, 1))[0].read_at == T0
            assert (await u.notifications.page("u2", None, 1))[0].read_at is None

    async def test_participants_and_holders(self, db):
        """Participants are remembered once; holders are users with a positive balance."""
        async with db.uow() as u:
            for s, usr in [("s1", "u1"), ("s1", "u2"), ("s1", "u1"), ("s2", "u3")]:
                await u.notifications.add_participant(s, usr)
            await u.notifications.add_holding("m1", "u1", 3)
            await u.notifications.add_holding("m1", "u2", 1)
            await u.notifications.add_holding("m1", "u2", -1)
            await u.notifications.add_holding("m2", "u3", 2)
        async with db.uow(readonly=True) as u:
            assert await u.notifications.participants("s1") == ["u1", "u2"]
            assert await u.notifications.holders(["m1"]) == ["u1"]
            assert await u.notifications.holders(["m1", "m2"]) == ["u1", "u3"]

    async def test_mail_is_claimed_once(self, db):
        """Pending mail is claimed by one sender; failure returns it (then fails for good); inbox-only has none."""
        async with db.uow() as u:
            await u.notifications.add(note("n1", "u1", "e1"))
            await u.notifications.add(note("n2", "u2", "e1", T0 + H))
            await u.notifications.add(note("n3", "u3", "e1", mail=None))
        async with db.uow() as u:
            a = await u.notifications.claim_mail(10)
        async with db.uow() as u:
            assert await u.notifications.claim_mail(10) == []
        assert [n.id for n in a] == ["n1", "n2"]
        async with db.uow() as u:
            await u.notifications.finish_mail("n1", sent=True, retry=False)
            await u.notifications.finish_mail("n2", sent=False, retry=True)
        async with db.uow() as u:
            again = await u.notifications.claim_mail(10)
            assert [(n.id, n.mail_attempts) for n in again] == [("n2", 1)]
            await u.notifications.finish_mail("n2", sent=False, retry=False)
        async with db.uow() as u:
            assert await u.notifications.claim_mail(10) == []


class TestPostgresOnly:
    @pytest.fixture
    def pg_dsn_clean(self, pg_clean):
        return pg_clean

    async def test_summaries_partitions_and_racing_batches(self, pg_dsn_clean):
        """Racing overlapping batches store each id once without deadlock; summaries hold the counts;
        a month's partition created late takes its rows out of the default partition."""
        register_postgres_repositories()
        pg = await PostgresDatabase.connect(pg_dsn_clean, 6)
        try:
            ids = [f"e{i:03d}" for i in range(200)]

            async def one(order: list[str]) -> int:
                async with pg.uow() as u:
                    return await u.analytics.ingest([ev(i, user=f"u{int(i[1:]) % 7}") for i in order])

            got = await asyncio.gather(*(one(ids[k:] + ids[:k]) for k in (0, 50, 100, 150, 199)))
            assert sum(got) == 200
            async with pg.uow() as u:
                assert 1 <= await u.analytics.aggregate() <= 5  # a mark per batch that stored something
                assert await u.analytics.aggregate() == 0
            c = await asyncpg.connect(pg_dsn_clean)
            try:
                row = await c.fetchrow("SELECT plays, listeners FROM analytics_hourly WHERE scope = 'master' "
                                       "AND scope_id = 'm1' AND bucket = $1", T0)
                assert (row["plays"], row["listeners"]) == (200, 7)
                assert await c.fetchval("SELECT count(*) FROM analytics_dirty") == 0
                month = datetime(2031, 3, 1, tzinfo=UTC)
                await ingest(pg, ev("far", at=month + 2 * H))
                assert await c.fetchval("SELECT count(*) FROM analytics_events_default WHERE id = 'far'") == 1
                created = await ensure_partitions(c, month + 24 * H, back=0, ahead=0)
                assert created == ["analytics_events_y2031m03"]
                assert await c.fetchval("SELECT count(*) FROM analytics_events_y2031m03") == 1
                assert await c.fetchval("SELECT count(*) FROM analytics_events_default WHERE id = 'far'") == 0
                assert await ensure_partitions(c, month, back=0, ahead=0) == []
            finally:
                await c.execute("DROP TABLE IF EXISTS analytics_events_y2031m03")
                await c.close()
        finally:
            await pg.close()
