"""In-memory V Studio adapters: the repository (``uow.studio``), masters/holdings/entitlements
stand-ins, the in-process broadcaster and presence. They are the dev-mode defaults.

Repository rows live in ``InMemoryDatabase.table(...)`` and every write goes through the unit of
work's ``Undo`` log, so a rolled-back unit of work leaves no trace. Values are immutable (tuples,
frozen models) or replaced through ``undo.set``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs
import orjson

from audifi_core.errors import Conflict, NotFound
from audifi_core.studio.model import (
    Contribution,
    Decision,
    DecisionStatus,
    MasterRef,
    Person,
    PresenceChange,
    StudioSession,
    Tally,
)
from audifi_core.studio.ports import MessageHandler, RowLock

from ..memory.store import InMemoryDatabase, Undo

__all__ = [
    "InMemoryStudioRepository",
    "InMemoryStudioMasters",
    "InMemoryShareHoldings",
    "InMemoryEntitlements",
    "InMemoryBroadcaster",
    "InMemoryPresence",
]


class InMemoryStudioRepository:
    def __init__(self, db: InMemoryDatabase, undo: Undo, readonly: bool):
        self._db = db
        self._undo = undo
        self._ro = readonly
        self._sessions: dict[str, StudioSession] = db.table("studio_sessions")
        self._producers: dict[str, tuple[str, ...]] = db.table("studio_producers")
        self._decisions: dict[str, Decision] = db.table("studio_decisions")
        self._by_session: dict[str, tuple[str, ...]] = db.table("studio_session_decisions")
        self._weights: dict[str, Mapping[str, int]] = db.table("studio_weights")
        self._votes: dict[str, dict[str, tuple[str, int]]] = db.table("studio_votes")
        self._contributions: dict[str, tuple[Contribution, ...]] = db.table("studio_contributions")
        self._seq: dict[str, int] = db.table("studio_seq")

    def _w(self) -> None:
        if self._ro:
            raise RuntimeError("read-only unit of work")

    # -- sessions and producers
    async def add_session(self, session: StudioSession) -> None:
        self._w()
        if session.id in self._sessions:
            raise Conflict("Studio session exists", details={"sessionId": session.id})
        self._undo.set(self._sessions, session.id, session)

    async def get_session(self, session_id: str, lock: RowLock = RowLock.NONE) -> StudioSession | None:
        return self._sessions.get(session_id)

    async def update_session(self, session: StudioSession) -> None:
        self._w()
        self._undo.set(self._sessions, session.id, session)

    async def add_producer(self, session_id: str, user_id: str, at: datetime) -> None:
        self._w()
        current = self._producers.get(session_id, ())
        if user_id not in current:
            self._undo.set(self._producers, session_id, (*current, user_id))

    async def producers(self, session_id: str) -> list[str]:
        return list(self._producers.get(session_id, ()))

    async def is_producer(self, session_id: str, user_id: str) -> bool:
        return user_id in self._producers.get(session_id, ())

    # -- decisions and votes
    async def add_decision(self, decision: Decision, weights: Mapping[str, int] | None = None) -> None:
        self._w()
        self._undo.set(self._decisions, decision.id, decision)
        self._undo.set(self._by_session, decision.session_id,
                       (*self._by_session.get(decision.session_id, ()), decision.id))
        self._undo.set(self._votes, decision.id, {})
        if weights is not None:
            self._undo.set(self._weights, decision.id, dict(weights))

    async def count_decisions(self, session_id: str) -> int:
        return len(self._by_session.get(session_id, ()))

    async def get_decision(self, decision_id: str, lock: RowLock = RowLock.NONE) -> Decision | None:
        return self._decisions.get(decision_id)

    async def decisions(self, session_id: str, *, open_only: bool = False,
                        lock: RowLock = RowLock.NONE) -> list[Decision]:
        out = [self._decisions[i] for i in self._by_session.get(session_id, ())]
        if open_only:
            out = [d for d in out if d.status is DecisionStatus.OPEN]
        return out

    async def update_decision(self, decision: Decision) -> None:
        self._w()
        self._undo.set(self._decisions, decision.id, decision)

    async def cast_vote(self, session_id: str, decision_id: str, user_id: str, choice: str, at: datetime,
                        weighted: bool) -> bool | None:
        self._w()
        d = self._decisions.get(decision_id)
        if d is None or d.session_id != session_id or not d.is_open_at(at) or choice not in d.options:
            return None
        votes = self._votes[decision_id]
        weight = self._weights.get(decision_id, {}).get(user_id, 0) if weighted else 0
        first = user_id not in votes
        self._undo.set(votes, user_id, (choice, weight))
        return first

    def _recount(self, decision_id: str, seq: int) -> Tally | None:
        d = self._decisions.get(decision_id)
        if d is None:
            return None
        counts = dict.fromkeys(d.options, 0)
        weights = dict.fromkeys(d.options, 0)
        for choice, weight in self._votes.get(decision_id, {}).values():
            counts[choice] += 1
            weights[choice] += weight
        weighted = decision_id in self._weights
        return Tally(decision_id=decision_id, seq=seq, options=d.options, counts=tuple(counts.values()),
                     weights=tuple(weights.values()) if weighted else None)

    def _next_seq(self) -> int:
        self._seq["n"] = self._seq.get("n", 0) + 1  # like a sequence: never rolled back
        return self._seq["n"]

    async def counts(self, decision_id: str) -> Tally:
        t = self._recount(decision_id, 0)
        assert t is not None
        return t

    async def tally(self, decision_id: str) -> Tally | None:
        return self._recount(decision_id, self._next_seq())

    async def tallies(self, session_id: str) -> dict[str, Tally]:
        seq = self._next_seq()
        out = {}
        for i in self._by_session.get(session_id, ()):
            t = self._recount(i, seq)
            assert t is not None
            out[i] = t
        return out

    async def due_decisions(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        due = sorted((d for d in self._decisions.values() if d.status is DecisionStatus.OPEN
                      and d.closes_at is not None and d.closes_at <= now), key=lambda d: d.closes_at)
        return [(d.session_id, d.id) for d in due[:limit]]

    async def next_due(self) -> datetime | None:
        times = [d.closes_at for d in self._decisions.values()
                 if d.status is DecisionStatus.OPEN and d.closes_at is not None]
        return min(times) if times else None

    # -- contributions
    async def add_contribution(self, contribution: Contribution) -> None:
        self._w()
        sid = contribution.session_id
        self._undo.set(self._contributions, sid, (*self._contributions.get(sid, ()), contribution))

    async def contributions(self, session_id: str) -> list[Contribution]:
        return list(self._contributions.get(session_id, ()))

    async def last_cid(self, session_id: str) -> str | None:
        for c in reversed(self._contributions.get(session_id, ())):
            if c.cid:
                return c.cid
        return None


class InMemoryStudioMasters:
    """Masters the studio can work on, for tests and for dev before the masters context is wired."""

    def __init__(self) -> None:
        self._masters: dict[str, MasterRef] = {}

    def add(self, master: MasterRef) -> None:
        self._masters[master.id] = master

    async def get(self, master_id: str) -> MasterRef:
        m = self._masters.get(master_id)
        if m is None:
            raise NotFound(f"Master with ID {master_id} not found", code="MASTER_NOT_FOUND",
                           details={"masterId": master_id})
        return m

    async def lock(self, uow: Any, master_id: str, final_cid: str | None, at: datetime) -> None:
        m = await self.get(master_id)
        if m.locked_at is not None:
            raise Conflict("The master is locked", details={"masterId": master_id})
        undo = getattr(uow, "undo", None)
        if isinstance(undo, Undo):
            undo.set(self._masters, master_id, attrs.evolve(m, locked_at=at, final_audio_cid=final_cid))
        else:
            self._masters[master_id] = attrs.evolve(m, locked_at=at, final_audio_cid=final_cid)


class InMemoryShareHoldings:
    def __init__(self) -> None:
        self._held: dict[str, dict[str, int]] = {}

    def set(self, user_id: str, master_id: str, shares: int) -> None:
        holders = self._held.setdefault(master_id, {})
        if shares > 0:
            holders[user_id] = shares
        else:
            holders.pop(user_id, None)

    async def shares_held(self, user_id: str, master_id: str) -> int:
        return self._held.get(master_id, {}).get(user_id, 0)

    async def holders(self, master_id: str) -> dict[str, int]:
        return dict(self._held.get(master_id, {}))


class InMemoryEntitlements:
    """Entitlements granted by hand until the payments context backs the port."""

    def __init__(self) -> None:
        self._granted: set[tuple[str, str]] = set()

    def grant(self, user_id: str, entitlement: str) -> None:
        self._granted.add((user_id, entitlement))

    def revoke(self, user_id: str, entitlement: str) -> None:
        self._granted.discard((user_id, entitlement))

    async def has(self, user_id: str, entitlement: str) -> bool:
        return (user_id, entitlement) in self._granted


class InMemoryBroadcaster:
    """One process: a message reaches every listener of its topic, as JSON would carry it."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[MessageHandler]] = {}

    def listen(self, topic: str, handler: MessageHandler) -> None:
        self._listeners.setdefault(topic, []).append(handler)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._listeners.clear()

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        raw = orjson.dumps(message)
        for handler in list(self._listeners.get(topic, ())):
            handler(orjson.loads(raw))


class InMemoryPresence:
    """Connections per session in one process (no instance can die without this dying too)."""

    def __init__(self) -> None:
        self._conns: dict[str, dict[str, str]] = {}          # session → conn → user
        self._users: dict[str, dict[str, list[Any]]] = {}    # session → user → [count, name]

    async def join(self, session_id: str, conn_id: str, person: Person) -> PresenceChange:
        conns = self._conns.setdefault(session_id, {})
        users = self._users.setdefault(session_id, {})
        if conn_id in conns:
            return PresenceChange()
        conns[conn_id] = person.user_id
        entry = users.get(person.user_id)
        if entry is None:
            users[person.user_id] = [1, person.display_name]
            return PresenceChange(joined=(person,))
        entry[0] += 1
        return PresenceChange()

    async def leave(self, session_id: str, conn_id: str) -> PresenceChange:
        conns = self._conns.get(session_id, {})
        user_id = conns.pop(conn_id, None)
        if user_id is None:
            return PresenceChange()
        users = self._users[session_id]
        users[user_id][0] -= 1
        if users[user_id][0] > 0:
            return PresenceChange()
        del users[user_id]
        if not conns:
            self._conns.pop(session_id, None)
            self._users.pop(session_id, None)
        return PresenceChange(left=(user_id,))

    async def present(self, session_id: str) -> list[Person]:
        return [Person(uid, e[1]) for uid, e in self._users.get(session_id, {}).items()]

    async def refresh(self, conns: Mapping[str, Iterable[str]]) -> dict[str, PresenceChange]:
        return {}
