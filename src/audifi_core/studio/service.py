"""V Studio use cases: sessions, producers, decisions, votes, contributions, lock, presence.

HTTP and the WebSocket call the same methods. Every state change commits first and is announced
after, through the ``Broadcaster`` (vote tallies through the coalescing :class:`TallyPump`);
``vote.cast`` and ``session.locked`` go through the transactional outbox.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs
import structlog

from audifi_core.errors import Conflict, Forbidden, NotFound, ValidationError
from audifi_core.events import DomainEvent
from audifi_core.ports import Clock, IdGenerator
from audifi_core.uow import UnitOfWorkFactory

from .model import (
    Audience,
    Contribution,
    Decision,
    DecisionStatus,
    DecisionView,
    Person,
    PresenceChange,
    SessionMeta,
    StudioSession,
    StudioSessionView,
    Tally,
    VoteResult,
    pick_winner,
    wire_time,
)
from .ports import (
    STUDIO_SUBSCRIBER_ENTITLEMENT,
    Broadcaster,
    Entitlements,
    Presence,
    RowLock,
    ShareHoldings,
    StudioMasters,
    VoteLedger,
)
from .pump import TallyPump

__all__ = ["StudioService", "StudioSettings", "UnitOfWorkVoteLedger", "STUDIO_TOPIC", "REVOKED_TOPIC"]

log = structlog.get_logger("audifi.studio")

#: Broadcaster topics: ``{"sessionId", "message"}`` for sockets of a session; revoked auth sessions.
STUDIO_TOPIC = "studio"
REVOKED_TOPIC = "revoked"

MIN_OPTIONS, MAX_OPTIONS = 2, 10
MAX_DECISIONS = 200
_CID = re.compile(r"^[A-Za-z0-9]{16,200}$")


@attrs.frozen
class StudioSettings:
    coalesce_interval: float = 0.05   # at most one vote_update per decision per interval
    scheduler_interval: float = 0.5   # how often the closesAt scheduler looks (it also sleeps to the due time)
    meta_cache_size: int = 10_000


def _text(value: Any, name: str, limit: int, fields: dict[str, str], *, required: bool = True) -> str | None:
    if value is None:
        if required:
            fields[name] = "required"
        return None
    if not isinstance(value, str):
        fields[name] = "expected a string"
        return None
    v = value.strip()
    if not v:
        if required:
            fields[name] = "must not be empty"
        return None
    if len(v) > limit:
        fields[name] = f"at most {limit} characters"
        return None
    return v


def _cid(value: Any, name: str, fields: dict[str, str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _CID.match(value.strip()):
        fields[name] = "not a CID"
        return None
    return value.strip()


class UnitOfWorkVoteLedger:
    """The vote in a unit of work: ``uow.studio.cast_vote`` and the event through ``uow.emit``."""

    def __init__(self, uow: UnitOfWorkFactory):
        self._uow = uow

    async def cast(self, session_id: str, decision_id: str, user_id: str, choice: str, at: datetime,
                   weighted: bool, event: DomainEvent) -> bool | None:
        async with self._uow() as u:
            first = await u.studio.cast_vote(session_id, decision_id, user_id, choice, at, weighted)
            if first is not None:
                u.emit(attrs.evolve(event, data={**event.data, "first": first}))
        return first


class StudioService:
    def __init__(self, *, uow: UnitOfWorkFactory, masters: StudioMasters, holdings: ShareHoldings,
                 entitlements: Entitlements, broadcaster: Broadcaster, presence: Presence, clock: Clock,
                 ids: IdGenerator, votes: VoteLedger | None = None, tally_uow: UnitOfWorkFactory | None = None,
                 settings: StudioSettings | None = None):
        self.settings = settings or StudioSettings()
        self._uow = uow
        self._votes = votes or UnitOfWorkVoteLedger(uow)
        self._tally_uow = tally_uow or uow
        self.masters = masters
        self.holdings = holdings
        self.entitlements = entitlements
        self._broadcaster = broadcaster
        self.presence = presence
        self._clock = clock
        self._ids = ids
        self._meta: dict[str, SessionMeta] = {}
        self.pump = TallyPump(self._read_tally, self._publish_tally, self.settings.coalesce_interval)

    async def close(self) -> None:
        await self.pump.close()

    # ------------------------------------------------------------------ helpers
    def _event(self, type_: str, data: dict[str, Any]) -> DomainEvent:
        return DomainEvent(id=self._ids.new_id("evt"), type=type_, occurred_at=self._clock.now(), data=data)

    async def session_meta(self, session_id: str) -> SessionMeta:
        """The session's fixed fields (cached); ``STUDIO_SESSION_NOT_FOUND`` for an unknown id."""
        meta = self._meta.get(session_id)
        if meta is not None:
            return meta
        async with self._uow(readonly=True) as u:
            s = await u.studio.get_session(session_id)
        if s is None:
            raise NotFound(f"Studio session {session_id} not found", code="STUDIO_SESSION_NOT_FOUND",
                           details={"sessionId": session_id})
        if len(self._meta) >= self.settings.meta_cache_size:
            self._meta.pop(next(iter(self._meta)))
        self._meta[session_id] = s.meta
        return s.meta

    async def _owner(self, user_id: str, session_id: str) -> SessionMeta:
        meta = await self.session_meta(session_id)
        if meta.artist_id != user_id:
            raise Forbidden("Only the master's artist may do this", details={"sessionId": session_id})
        return meta

    async def may_take_part(self, meta: SessionMeta, user_id: str) -> bool:
        """The artist, invited producers and the session's audience."""
        if user_id == meta.artist_id or meta.audience is Audience.EVERYONE:
            return True
        if meta.audience is Audience.SUBSCRIBERS:
            if await self.entitlements.has(user_id, STUDIO_SUBSCRIBER_ENTITLEMENT):
                return True
        elif meta.audience is Audience.SHAREHOLDERS:
            if await self.holdings.shares_held(user_id, meta.master_id) > 0:
                return True
        async with self._uow(readonly=True) as u:
            return await u.studio.is_producer(meta.id, user_id)

    async def require_audience(self, user_id: str, session_id: str) -> SessionMeta:
        meta = await self.session_meta(session_id)
        if not await self.may_take_part(meta, user_id):
            raise Forbidden(f"This session is open to {meta.audience.value} only",
                            details={"sessionId": session_id, "audience": meta.audience.value})
        return meta

    async def _announce(self, session_id: str, message: dict[str, Any]) -> None:
        try:
            await self._broadcaster.publish(STUDIO_TOPIC, {"sessionId": session_id, "message": message})
        except Exception as e:  # noqa: BLE001 - committed already; a reconnect's snapshot makes clients whole
            log.warning("studio_announce_failed", session_id=session_id, type=message.get("type"), error=repr(e))

    async def _read_tally(self, decision_id: str) -> Tally | None:
        """The pump's reads (on their own connections when given, so a storm never queues them)."""
        async with self._tally_uow(readonly=True) as u:
            return await u.studio.tally(decision_id)

    async def _publish_tally(self, session_id: str, tally: Tally) -> None:
        await self._broadcaster.publish(STUDIO_TOPIC, {"sessionId": session_id, "message": tally.message()})

    async def _tally(self, decision_id: str) -> Tally:
        async with self._uow(readonly=True) as u:
            t = await u.studio.tally(decision_id)
        assert t is not None, decision_id
        return t

    # ------------------------------------------------------------------ sessions
    async def create_session(self, user_id: str, master_id: str, title: str, audience: str,
                             weighted: bool = False) -> StudioSessionView:
        fields: dict[str, str] = {}
        t = _text(title, "title", 200, fields)
        try:
            aud = Audience(audience)
        except ValueError:
            fields["audience"] = "one of everyone, subscribers, shareholders"
        if fields:
            raise ValidationError("Invalid studio session", fields=fields)
        master = await self.masters.get(master_id)
        if master.artist_id != user_id:
            raise Forbidden("Only the master's artist may open a studio session on it",
                            details={"masterId": master_id})
        if master.locked_at is not None:
            raise Conflict("The master is locked", details={"masterId": master_id})
        assert t is not None
        session = StudioSession(id=self._ids.new_id("vss"), master_id=master.id, artist_id=master.artist_id,
                                title=t, audience=aud, weighted=bool(weighted), created_at=self._clock.now())
        async with self._uow() as u:
            await u.studio.add_session(session)
        return await self.view(session.id)

    async def get_session(self, user_id: str, session_id: str) -> StudioSessionView:
        await self.require_audience(user_id, session_id)
        return await self.view(session_id)

    async def view(self, session_id: str) -> StudioSessionView:
        """The whole session as GET and the socket's ``snapshot`` show it."""
        async with self._uow(readonly=True) as u:
            s = await u.studio.get_session(session_id)
            if s is None:
                raise NotFound(f"Studio session {session_id} not found", code="STUDIO_SESSION_NOT_FOUND",
                               details={"sessionId": session_id})
            decisions = await u.studio.decisions(session_id)
            contributions = await u.studio.contributions(session_id)
            producers = []
            for pid in await u.studio.producers(session_id):
                user = await u.users.get(pid)
                producers.append(Person(pid, user.display_name if user else pid))
            tallies = await u.studio.tallies(session_id) if decisions else {}
        present = await self.presence.present(session_id)
        return StudioSessionView(
            id=s.id, master_id=s.master_id, artist_id=s.artist_id, title=s.title, audience=s.audience.value,
            weighted=s.weighted, status=s.status.value, created_at=s.created_at, locked_at=s.locked_at,
            final_cid=s.final_cid, decisions=[DecisionView.of(d, tallies[d.id]) for d in decisions],
            producers=producers, present=present, contributions=contributions)

    async def invite_producer(self, user_id: str, session_id: str, producer_id: str) -> None:
        await self._owner(user_id, session_id)
        async with self._uow() as u:
            s = await u.studio.get_session(session_id, RowLock.SHARE)
            assert s is not None
            if s.locked:
                raise Conflict("The session is locked", details={"sessionId": session_id})
            if await u.users.get(producer_id) is None:
                raise NotFound(f"User {producer_id} not found", code="USER_NOT_FOUND",
                               details={"userId": producer_id})
            await u.studio.add_producer(session_id, producer_id, self._clock.now())

    # ------------------------------------------------------------------ decisions
    async def open_decision(self, user_id: str, session_id: str, prompt: str, options: list[str],
                            closes_at: datetime | None = None) -> DecisionView:
        meta = await self._owner(user_id, session_id)
        now = self._clock.now()
        fields: dict[str, str] = {}
        p = _text(prompt, "prompt", 500, fields)
        labels: list[str] = []
        if not isinstance(options, list) or not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
            fields["options"] = f"{MIN_OPTIONS} to {MAX_OPTIONS} labels"
        else:
            for i, o in enumerate(options):
                label = _text(o, f"options.{i}", 100, fields)
                if label is not None:
                    labels.append(label)
            if len(labels) == len(options) and len(set(labels)) != len(labels):
                fields["options"] = "labels must be distinct"
        if closes_at is not None and closes_at <= now:
            fields["closesAt"] = "must be in the future"
        if fields:
            raise ValidationError("Invalid decision", fields=fields)
        assert p is not None
        weights = await self.holdings.holders(meta.master_id) if meta.weighted else None
        async with self._uow() as u:
            s = await u.studio.get_session(session_id, RowLock.SHARE)
            assert s is not None
            if s.locked:
                raise Conflict("The session is locked", details={"sessionId": session_id})
            n = await u.studio.count_decisions(session_id)
            if n >= MAX_DECISIONS:
                raise Conflict(f"A session has at most {MAX_DECISIONS} decisions", details={"sessionId": session_id})
            decision = Decision(id=self._ids.new_id("dec"), session_id=session_id, position=n + 1, prompt=p,
                                options=tuple(labels), created_at=now, closes_at=closes_at)
            await u.studio.add_decision(decision, weights)
        view = DecisionView.of(decision, await self._tally(decision.id))
        await self._announce(session_id, {"type": "decision_opened", "decision": view.to_wire()})
        return view

    async def close_decision(self, user_id: str, session_id: str, decision_id: str) -> DecisionView:
        await self._owner(user_id, session_id)
        view = await self._close(session_id, decision_id, explicit=True)
        assert view is not None
        return view

    async def _close(self, session_id: str, decision_id: str, *, explicit: bool) -> DecisionView | None:
        async with self._uow() as u:
            d = await u.studio.get_decision(decision_id, RowLock.UPDATE)  # waits for votes in flight
            if d is None or d.session_id != session_id:
                raise NotFound(f"Decision {decision_id} not found", code="DECISION_NOT_FOUND",
                               details={"decisionId": decision_id})
            if d.status is DecisionStatus.CLOSED:
                if explicit:
                    raise Conflict("The decision is closed", details={"decisionId": decision_id})
                return None
            c = await u.studio.counts(decision_id)
            d = d.close(self._clock.now(), pick_winner(d.options, c.counts, c.weights))
            await u.studio.update_decision(d)
        view = DecisionView.of(d, await self._tally(decision_id))
        await self._announce_closed(view)
        return view

    async def _announce_closed(self, view: DecisionView) -> None:
        message: dict[str, Any] = {"type": "decision_closed", "decisionId": view.id, "winner": view.winner,
                                   "results": view.results, "seq": view.seq}
        if view.weighted_results is not None:
            message["weightedResults"] = view.weighted_results
        await self._announce(view.session_id, message)

    async def close_due(self) -> int:
        """Close every open decision whose ``closesAt`` has passed (any instance may; once)."""
        n = 0
        while True:
            async with self._uow(readonly=True) as u:
                due = await u.studio.due_decisions(self._clock.now(), 100)
            for session_id, decision_id in due:
                if await self._close(session_id, decision_id, explicit=False) is not None:
                    n += 1
            if len(due) < 100:
                return n

    async def run_scheduler(self) -> None:
        """Close decisions at ``closesAt``; the times live in the database, so a restart loses none."""
        interval = self.settings.scheduler_interval
        while True:
            try:
                await self.close_due()
                async with self._uow(readonly=True) as u:
                    nxt = await u.studio.next_due()
                wait = interval
                if nxt is not None:
                    wait = min(interval, max(0.0, (nxt - self._clock.now()).total_seconds()))
            except Exception as e:  # noqa: BLE001 - keep the scheduler alive
                log.warning("studio_scheduler_failed", error=repr(e))
                wait = interval
            await asyncio.sleep(max(wait, 0.01))

    # ------------------------------------------------------------------ votes
    async def vote(self, user_id: str, session_id: str, decision_id: str, choice: str, *,
                   respond: bool = True) -> VoteResult | None:
        """One vote per user per decision; a later vote replaces it while open.

        With ``respond`` the tallies right after the vote are returned (HTTP); the socket path
        leaves them to the coalesced ``vote_update`` everyone gets.
        """
        if not isinstance(choice, str) or not choice:
            raise ValidationError("Invalid vote", fields={"choice": "required"})
        if not isinstance(decision_id, str) or not decision_id:
            raise ValidationError("Invalid vote", fields={"decisionId": "required"})
        meta = await self.require_audience(user_id, session_id)
        now = self._clock.now()
        event = self._event("vote.cast", {
            "sessionId": session_id, "masterId": meta.master_id, "artistId": meta.artist_id,
            "decisionId": decision_id, "userId": user_id, "choice": choice})
        first = await self._votes.cast(session_id, decision_id, user_id, choice, now, meta.weighted, event)
        if first is None:
            async with self._uow(readonly=True) as u:
                raise await self._refusal(u, session_id, decision_id, choice, now)
        gen = self.pump.committed(session_id, decision_id)
        if not respond:
            return None
        tally = await self._tally(decision_id)
        self.pump.offer(decision_id, tally, gen)
        return VoteResult.of(tally)

    async def _refusal(self, u: Any, session_id: str, decision_id: str, choice: str, now: datetime) -> Exception:
        d = await u.studio.get_decision(decision_id)
        if d is None or d.session_id != session_id:
            return NotFound(f"Decision {decision_id} not found", code="DECISION_NOT_FOUND",
                            details={"decisionId": decision_id})
        s = await u.studio.get_session(session_id)
        if s is not None and s.locked:
            return Conflict("The session is locked", details={"sessionId": session_id})
        if not d.is_open_at(now):
            return Conflict("The decision is closed", details={"decisionId": decision_id})
        if choice not in d.options:
            return ValidationError("Invalid vote", fields={"choice": f"one of {', '.join(d.options)}"})
        return Conflict("The vote was not recorded; try again", details={"decisionId": decision_id})

    # ------------------------------------------------------------------ contributions and lock
    async def add_contribution(self, user_id: str, session_id: str, kind: str, description: str,
                               cid: str | None = None) -> Contribution:
        meta = await self.session_meta(session_id)
        if user_id != meta.artist_id:
            async with self._uow(readonly=True) as u:
                if not await u.studio.is_producer(session_id, user_id):
                    raise Forbidden("Only invited producers and the artist contribute",
                                    details={"sessionId": session_id})
        fields: dict[str, str] = {}
        k = _text(kind, "kind", 40, fields)
        desc = _text(description, "description", 2000, fields)
        c = _cid(cid, "cid", fields)
        if fields:
            raise ValidationError("Invalid contribution", fields=fields)
        assert k is not None and desc is not None
        contribution = Contribution(id=self._ids.new_id("ctb"), session_id=session_id, user_id=user_id, kind=k,
                                    description=desc, cid=c, created_at=self._clock.now())
        async with self._uow() as u:
            s = await u.studio.get_session(session_id, RowLock.SHARE)
            assert s is not None
            if s.locked:
                raise Conflict("The session is locked", details={"sessionId": session_id})
            await u.studio.add_contribution(contribution)
        await self._announce(session_id, {"type": "contribution_added", "contribution": contribution.to_wire()})
        return contribution

    async def lock(self, user_id: str, session_id: str, final_cid: str | None = None) -> StudioSessionView:
        """Close every open decision, lock the master (its ``finalAudioCid``/``lockedAt``) and the session.

        ``finalCid`` defaults to the newest contribution's CID, then the master's audio.
        """
        meta = await self._owner(user_id, session_id)
        fields: dict[str, str] = {}
        cid = _cid(final_cid, "finalCid", fields)
        if fields:
            raise ValidationError("Invalid lock", fields=fields)
        master = await self.masters.get(meta.master_id)
        now = self._clock.now()
        closed: list[Decision] = []
        async with self._uow() as u:
            s = await u.studio.get_session(session_id, RowLock.UPDATE)
            assert s is not None
            if s.locked:
                raise Conflict("The session is locked", details={"sessionId": session_id})
            for d in await u.studio.decisions(session_id, open_only=True, lock=RowLock.UPDATE):
                c = await u.studio.counts(d.id)
                d = d.close(now, pick_winner(d.options, c.counts, c.weights))
                await u.studio.update_decision(d)
                closed.append(d)
            final = cid or await u.studio.last_cid(session_id) or master.audio_cid
            await self.masters.lock(u, meta.master_id, final, now)
            await u.studio.update_session(s.lock(now, final))
            u.emit(self._event("session.locked", {
                "sessionId": session_id, "masterId": meta.master_id, "artistId": meta.artist_id,
                "finalCid": final, "lockedAt": wire_time(now)}))
        for d in closed:
            await self._announce_closed(DecisionView.of(d, await self._tally(d.id)))
        await self._announce(session_id, {"type": "session_locked", "sessionId": session_id,
                                          "finalCid": final, "lockedAt": wire_time(now)})
        return await self.view(session_id)

    # ------------------------------------------------------------------ presence
    async def _announce_presence(self, session_id: str, change: PresenceChange) -> None:
        for p in change.joined:
            await self._announce(session_id, {"type": "user_joined", "userId": p.user_id,
                                              "displayName": p.display_name})
        for uid in change.left:
            await self._announce(session_id, {"type": "user_left", "userId": uid})

    async def join(self, user_id: str, display_name: str, session_id: str, conn_id: str) -> StudioSessionView:
        """A socket joins: presence (announced when it is the user's first connection) and the snapshot."""
        await self.require_audience(user_id, session_id)
        change = await self.presence.join(session_id, conn_id, Person(user_id, display_name))
        await self._announce_presence(session_id, change)
        return await self.view(session_id)

    async def leave(self, session_id: str, conn_id: str) -> None:
        await self._announce_presence(session_id, await self.presence.leave(session_id, conn_id))

    async def refresh_presence(self, conns: Mapping[str, Iterable[str]]) -> None:
        for session_id, change in (await self.presence.refresh(conns)).items():
            await self._announce_presence(session_id, change)

    async def announce_revoked(self, auth_session_ids: list[str]) -> None:
        """Every instance closes the sockets of these auth sessions."""
        try:
            await self._broadcaster.publish(REVOKED_TOPIC, {"sessionIds": list(auth_session_ids)})
        except Exception as e:  # noqa: BLE001 - never fail the logout itself
            log.warning("studio_revoke_announce_failed", error=repr(e))
