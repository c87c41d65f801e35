"""Analytics: the events we count, the metrics we derive from them, and the reports we answer with.

Client events (``POST /events``) are ``play``, ``pause``, ``skip``, ``complete``, ``page_view`` and
``share_view``. Server events come from the bus and are the only source of money and shares:

* ``vote.cast``          ``{sessionId, decisionId, masterId, userId}``  → one vote
* ``share.transferred``  ``{masterId, userId, count}``                 → ``count`` shares sold
* ``payment.succeeded``  ``{masterId?, userId, amount, currency, quantity?}`` → revenue (with a masterId)

Metrics per bucket (an hour or a UTC day), per master and per artist:
``plays`` = play events; ``uniqueListeners`` = distinct listeners among them (the signed-in user,
else the client's ``anonymousId``); ``votes``; ``sharesSold``; ``revenue`` = one Money per currency.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import attrs

__all__ = [
    "CLIENT_TYPES",
    "SERVER_TYPES",
    "MAX_BATCH",
    "MAX_ID_LENGTH",
    "MAX_EVENT_BYTES",
    "MAX_BODY_BYTES",
    "DEDUPE_WINDOW",
    "MAX_BUCKETS",
    "AnalyticsEvent",
    "ClientBatch",
    "ClientRow",
    "Interval",
    "Scope",
    "Money",
    "Metrics",
    "SeriesPoint",
    "Report",
    "MetricsAccumulator",
    "listener_of",
    "floor_to",
    "buckets_between",
]

CLIENT_TYPES = frozenset({"play", "pause", "skip", "complete", "page_view", "share_view"})
SERVER_TYPES = frozenset({"vote.cast", "share.transferred", "payment.succeeded"})
MAX_BATCH = 1000
MAX_ID_LENGTH = 128  # ids, masterId, anonymousId
MAX_EVENT_BYTES = 32 * 1024
MAX_BODY_BYTES = 1024 * 1024
DEDUPE_WINDOW = timedelta(days=7)
MAX_BUCKETS = 2000


@attrs.frozen(slots=True)
class AnalyticsEvent:
    """One stored event; ``properties`` is the client's JSON object, already serialized."""

    id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    master_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    quantity: int | None = None
    amount: int | None = None
    currency: str | None = None
    properties: str | None = None


#: One client event as ingested: (id, type, occurred_at, master_id, anonymous_id, properties JSON).
ClientRow = tuple[str, str, datetime, "str | None", "str | None", "str | None"]


@attrs.frozen
class ClientBatch:
    """The client events of one request: same arrival time, same (optional) signed-in user."""

    received_at: datetime
    user_id: str | None
    rows: list[ClientRow]

    def __len__(self) -> int:
        return len(self.rows)

    def events(self) -> list[AnalyticsEvent]:
        return [AnalyticsEvent(id=r[0], type=r[1], occurred_at=r[2], received_at=self.received_at, master_id=r[3],
                               user_id=self.user_id, anonymous_id=r[4], properties=r[5]) for r in self.rows]


class Interval(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"

    @property
    def delta(self) -> timedelta:
        return timedelta(hours=1) if self is Interval.HOUR else timedelta(days=1)


class Scope(enum.StrEnum):
    MASTER = "master"
    ARTIST = "artist"


@attrs.frozen
class Money:
    amount: int
    currency: str


@attrs.frozen
class Metrics:
    plays: int = 0
    unique_listeners: int = 0
    votes: int = 0
    shares_sold: int = 0
    revenue: list[Money] = attrs.Factory(list)


@attrs.frozen
class SeriesPoint:
    """One bucket: it starts at ``start`` and lasts one ``interval``."""

    start: datetime
    plays: int = 0
    unique_listeners: int = 0
    votes: int = 0
    shares_sold: int = 0
    revenue: list[Money] = attrs.Factory(list)

    @classmethod
    def of(cls, start: datetime, m: Metrics) -> SeriesPoint:
        return cls(start, m.plays, m.unique_listeners, m.votes, m.shares_sold, list(m.revenue))


@attrs.frozen
class Report:
    """Totals and a series over whole buckets from the one holding ``from`` to the one holding ``to``."""

    from_: datetime
    to: datetime
    interval: Interval
    totals: Metrics
    series: list[SeriesPoint]
    master_id: str | None = None
    artist_id: str | None = None


def listener_of(user_id: str | None, anonymous_id: str | None) -> str | None:
    """Who listened: the signed-in user, else the client's anonymous id (SQL mirrors this)."""
    if user_id is not None:
        return user_id
    if anonymous_id is not None:
        return "anon:" + anonymous_id
    return None


def revenue_list(totals: dict[str, int]) -> list[Money]:
    return [Money(amount, cur) for cur, amount in sorted(totals.items())]


class MetricsAccumulator:
    """Folds events into Metrics; the in-memory adapter and tests share this one definition."""

    def __init__(self) -> None:
        self.plays = 0
        self.listeners: set[str] = set()
        self.votes = 0
        self.shares = 0
        self.revenue: dict[str, int] = {}

    def add(self, e: AnalyticsEvent) -> None:
        if e.type == "play":
            self.plays += 1
            who = listener_of(e.user_id, e.anonymous_id)
            if who is not None:
                self.listeners.add(who)
        elif e.type == "vote.cast":
            self.votes += 1
        elif e.type == "share.transferred":
            self.shares += e.quantity or 0
        elif e.type == "payment.succeeded" and e.amount is not None and e.currency:
            self.revenue[e.currency] = self.revenue.get(e.currency, 0) + e.amount

    def add_all(self, events: Iterable[AnalyticsEvent]) -> MetricsAccumulator:
        for e in events:
            self.add(e)
        return self

    def metrics(self) -> Metrics:
        return Metrics(self.plays, len(self.listeners), self.votes, self.shares, revenue_list(self.revenue))


def floor_to(when: datetime, interval: Interval) -> datetime:
    """The start of the UTC hour or day holding ``when``."""
    w = when.astimezone(UTC)
    if interval is Interval.HOUR:
        return w.replace(minute=0, second=0, microsecond=0)
    return w.replace(hour=0, minute=0, second=0, microsecond=0)


def buckets_between(start: datetime, end: datetime, interval: Interval) -> list[datetime]:
    """Bucket starts from the one holding ``start`` to the one holding ``end`` (inclusive)."""
    b = floor_to(start, interval)
    last = floor_to(end, interval)
    out = []
    while b <= last:
        out.append(b)
        b += interval.delta
    return out
