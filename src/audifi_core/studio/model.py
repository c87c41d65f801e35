"""V Studio entities, the tallies derived from stored votes, and what the API shows of them.

A session belongs to a master and its artist; it has an audience, invited producers, decisions
(2–10 distinct options) with one vote per user each, and contributions. Locking the session
closes every open decision and locks the master; nothing changes after that.

Tallies are never stored: they are a recount of the stored votes, stamped with a ``seq`` taken
from the database *before* the recount, so a client that keeps the highest ``seq`` per decision
ends with the complete tallies whatever order updates arrive in from other instances.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import attrs

__all__ = [
    "Audience",
    "SessionStatus",
    "DecisionStatus",
    "MasterRef",
    "StudioSession",
    "SessionMeta",
    "Decision",
    "Tally",
    "Contribution",
    "Person",
    "PresenceChange",
    "DecisionView",
    "StudioSessionView",
    "VoteResult",
    "pick_winner",
    "wire_time",
]


def wire_time(d: datetime | None) -> str | None:
    """RFC 3339 in UTC, as every message and response carries timestamps."""
    return None if d is None else d.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Audience(enum.StrEnum):
    EVERYONE = "everyone"
    SUBSCRIBERS = "subscribers"
    SHAREHOLDERS = "shareholders"


class SessionStatus(enum.StrEnum):
    OPEN = "open"
    LOCKED = "locked"


class DecisionStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


@attrs.frozen
class MasterRef:
    """What the studio needs to know of a master."""

    id: str
    artist_id: str
    locked_at: datetime | None = None
    final_audio_cid: str | None = None
    audio_cid: str | None = None


@attrs.frozen
class StudioSession:
    id: str
    master_id: str
    artist_id: str
    title: str
    audience: Audience
    created_at: datetime
    weighted: bool = False
    status: SessionStatus = SessionStatus.OPEN
    locked_at: datetime | None = None
    final_cid: str | None = None

    @property
    def locked(self) -> bool:
        return self.status is SessionStatus.LOCKED

    def lock(self, at: datetime, final_cid: str | None) -> StudioSession:
        return attrs.evolve(self, status=SessionStatus.LOCKED, locked_at=at, final_cid=final_cid)

    @property
    def meta(self) -> SessionMeta:
        return SessionMeta(id=self.id, master_id=self.master_id, artist_id=self.artist_id,
                           audience=self.audience, weighted=self.weighted)


@attrs.frozen
class SessionMeta:
    """The fields of a session that never change (safe to cache on every instance)."""

    id: str
    master_id: str
    artist_id: str
    audience: Audience
    weighted: bool


@attrs.frozen
class Decision:
    id: str
    session_id: str
    position: int
    prompt: str
    options: tuple[str, ...]
    created_at: datetime
    status: DecisionStatus = DecisionStatus.OPEN
    closes_at: datetime | None = None
    closed_at: datetime | None = None
    winner: str | None = None

    def is_open_at(self, now: datetime) -> bool:
        return self.status is DecisionStatus.OPEN and (self.closes_at is None or now < self.closes_at)

    def close(self, at: datetime, winner: str) -> Decision:
        return attrs.evolve(self, status=DecisionStatus.CLOSED, closed_at=at, winner=winner)


def pick_winner(options: tuple[str, ...], counts: tuple[int, ...],
                weights: tuple[int, ...] | None = None) -> str:
    """The option with the highest count, ties broken by option order.

    In a weighted session the weighted total decides first, then the count, then option order.
    """
    def key(i: int) -> tuple[int, int, int]:
        return (weights[i] if weights is not None else 0, counts[i], -i)

    return options[max(range(len(options)), key=key)]


@attrs.frozen
class Tally:
    """A recount of one decision's stored votes, ``seq`` taken before the recount."""

    decision_id: str
    seq: int
    options: tuple[str, ...]
    counts: tuple[int, ...]
    weights: tuple[int, ...] | None = None

    @property
    def results(self) -> dict[str, int]:
        return dict(zip(self.options, self.counts, strict=True))

    @property
    def weighted_results(self) -> dict[str, int] | None:
        if self.weights is None:
            return None
        return dict(zip(self.options, self.weights, strict=True))

    def message(self) -> dict[str, Any]:
        m: dict[str, Any] = {"type": "vote_update", "decisionId": self.decision_id,
                             "results": self.results, "seq": self.seq}
        if self.weights is not None:
            m["weightedResults"] = self.weighted_results
        return m


@attrs.frozen
class Contribution:
    """A producer's (or the artist's) contribution: a stem, a mix, a note…, optionally on IPFS."""

    id: str
    session_id: str
    user_id: str
    kind: str
    description: str
    created_at: datetime
    cid: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "sessionId": self.session_id, "userId": self.user_id, "kind": self.kind,
                "description": self.description, "cid": self.cid, "createdAt": wire_time(self.created_at)}


@attrs.frozen
class Person:
    user_id: str
    display_name: str


@attrs.frozen
class PresenceChange:
    """Who became present (first connection anywhere) and who left (last connection gone)."""

    joined: tuple[Person, ...] = ()
    left: tuple[str, ...] = ()


@attrs.frozen
class DecisionView:
    """A decision with its live tallies; ``winner`` once closed."""

    id: str
    session_id: str
    prompt: str
    options: list[str]
    status: str
    created_at: datetime
    results: dict[str, int]
    seq: int
    closes_at: datetime | None = None
    closed_at: datetime | None = None
    winner: str | None = None
    weighted_results: dict[str, int] | None = None

    @classmethod
    def of(cls, d: Decision, t: Tally) -> DecisionView:
        return cls(id=d.id, session_id=d.session_id, prompt=d.prompt, options=list(d.options),
                   status=d.status.value, created_at=d.created_at, results=t.results, seq=t.seq,
                   closes_at=d.closes_at, closed_at=d.closed_at, winner=d.winner,
                   weighted_results=t.weighted_results)

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "sessionId": self.session_id, "prompt": self.prompt, "options": self.options,
                "status": self.status, "createdAt": wire_time(self.created_at), "results": self.results,
                "seq": self.seq, "closesAt": wire_time(self.closes_at), "closedAt": wire_time(self.closed_at),
                "winner": self.winner, "weightedResults": self.weighted_results}


@attrs.frozen
class StudioSessionView:
    """A session with its decisions and tallies, producers, present users and contributions."""

    id: str
    master_id: str
    artist_id: str
    title: str
    audience: str
    weighted: bool
    status: str
    created_at: datetime
    decisions: list[DecisionView]
    producers: list[Person]
    present: list[Person]
    contributions: list[Contribution]
    locked_at: datetime | None = None
    final_cid: str | None = None


@attrs.frozen
class VoteResult:
    """The tallies right after a vote (``seq`` orders it among every update of the decision)."""

    decision_id: str
    results: dict[str, int]
    seq: int
    weighted_results: dict[str, int] | None = None

    @classmethod
    def of(cls, t: Tally) -> VoteResult:
        return cls(decision_id=t.decision_id, results=t.results, seq=t.seq, weighted_results=t.weighted_results)
