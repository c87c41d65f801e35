"""What V Studio needs: its rows, the masters it works on, holdings, entitlements, fan-out, presence."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from audifi_core.events import DomainEvent
from audifi_core.uow import UnitOfWork

from .model import Contribution, Decision, MasterRef, Person, PresenceChange, StudioSession, Tally

__all__ = [
    "RowLock",
    "StudioRepository",
    "VoteLedger",
    "StudioMasters",
    "ShareHoldings",
    "Entitlements",
    "STUDIO_SUBSCRIBER_ENTITLEMENT",
    "Broadcaster",
    "MessageHandler",
    "Presence",
]

#: The entitlement a subscription plan grants to take part in ``subscribers`` sessions.
STUDIO_SUBSCRIBER_ENTITLEMENT = "vstudio.subscribers"


class RowLock(enum.Enum):
    """How a read inside a unit of work holds the row until commit (PostgreSQL row locks)."""

    NONE = "none"
    SHARE = "share"    # FOR KEY SHARE: many holders at once; blocks only UPDATE locks
    UPDATE = "update"  # FOR UPDATE: waits for every SHARE holder, then excludes them


class StudioRepository(Protocol):
    """``uow.studio``. A vote is an upsert; tallies are recounts; ``seq`` comes from the database."""

    # -- sessions and producers
    async def add_session(self, session: StudioSession) -> None: ...

    async def get_session(self, session_id: str, lock: RowLock = RowLock.NONE) -> StudioSession | None: ...

    async def update_session(self, session: StudioSession) -> None: ...

    async def add_producer(self, session_id: str, user_id: str, at: datetime) -> None:
        """Invite (a repeat is a no-op)."""
        ...

    async def producers(self, session_id: str) -> list[str]:
        """Producer user ids in invitation order."""
        ...

    async def is_producer(self, session_id: str, user_id: str) -> bool: ...

    # -- decisions and votes
    async def add_decision(self, decision: Decision, weights: Mapping[str, int] | None = None) -> None:
        """Insert, with the weight snapshot (user id → shares held now) of a weighted session."""
        ...

    async def count_decisions(self, session_id: str) -> int: ...

    async def get_decision(self, decision_id: str, lock: RowLock = RowLock.NONE) -> Decision | None: ...

    async def decisions(self, session_id: str, *, open_only: bool = False,
                        lock: RowLock = RowLock.NONE) -> list[Decision]:
        """By position."""
        ...

    async def update_decision(self, decision: Decision) -> None: ...

    async def cast_vote(self, session_id: str, decision_id: str, user_id: str, choice: str, at: datetime,
                        weighted: bool) -> bool | None:
        """Upsert the user's vote while the decision is open at ``at`` and ``choice`` is one of its
        options, holding the decision against a concurrent close (a SHARE lock) until commit.

        ``True`` for a first vote, ``False`` for a replaced one, ``None`` when nothing was written.
        A weighted vote carries the user's weight from the snapshot taken when the decision opened.
        """
        ...

    async def counts(self, decision_id: str) -> Tally:
        """A recount inside the unit of work (``seq`` 0): the winner at close."""
        ...

    async def tally(self, decision_id: str) -> Tally | None:
        """A new ``seq``, *then* a recount of the committed votes (outside any write transaction)."""
        ...

    async def tallies(self, session_id: str) -> dict[str, Tally]:
        """One new ``seq``, then a recount of every decision of the session."""
        ...

    async def due_decisions(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """``(session id, decision id)`` of open decisions whose ``closesAt`` has passed."""
        ...

    async def next_due(self) -> datetime | None:
        """The earliest ``closesAt`` of an open decision."""
        ...

    # -- contributions
    async def add_contribution(self, contribution: Contribution) -> None: ...

    async def contributions(self, session_id: str) -> list[Contribution]: ...

    async def last_cid(self, session_id: str) -> str | None:
        """The CID of the newest contribution that has one."""
        ...


class VoteLedger(Protocol):
    """The hot path of a vote: the upsert and its ``vote.cast`` event, in one transaction."""

    async def cast(self, session_id: str, decision_id: str, user_id: str, choice: str, at: datetime,
                   weighted: bool, event: DomainEvent) -> bool | None:
        """As :meth:`StudioRepository.cast_vote`, and ``event`` (its data completed with ``first``) stored
        in the transactional outbox by the same transaction. ``None``: nothing was written."""
        ...


class StudioMasters(Protocol):
    """The masters context as the studio sees it."""

    async def get(self, master_id: str) -> MasterRef:
        """``NotFound`` (``MASTER_NOT_FOUND``) for an unknown id."""
        ...

    async def lock(self, uow: UnitOfWork, master_id: str, final_cid: str | None, at: datetime) -> None:
        """Set the master's ``finalAudioCid``/``lockedAt`` inside ``uow``; ``Conflict`` if locked."""
        ...


class ShareHoldings(Protocol):
    async def shares_held(self, user_id: str, master_id: str) -> int: ...

    async def holders(self, master_id: str) -> dict[str, int]:
        """User id → shares of the master held now (the weight snapshot of a decision)."""
        ...


class Entitlements(Protocol):
    async def has(self, user_id: str, entitlement: str) -> bool: ...


MessageHandler = Callable[[dict[str, Any]], None]


class Broadcaster(Protocol):
    """Fan-out between instances: every instance listening on a topic gets every message on it."""

    def listen(self, topic: str, handler: MessageHandler) -> None:
        """Register before :meth:`start`; ``handler`` runs on the event loop, must not block."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        """Deliver ``message`` (JSON-ready) to every listener of ``topic`` on every instance."""
        ...


class Presence(Protocol):
    """Who is connected to a session, across instances; a user with two tabs is present once."""

    async def join(self, session_id: str, conn_id: str, person: Person) -> PresenceChange: ...

    async def leave(self, session_id: str, conn_id: str) -> PresenceChange: ...

    async def present(self, session_id: str) -> list[Person]:
        """In order of arrival."""
        ...

    async def refresh(self, conns: Mapping[str, Iterable[str]]) -> dict[str, PresenceChange]:
        """Keep this instance's connections (session id → connection ids) alive; forget those of
        dead instances in the same sessions. Returns the users who left that way, per session."""
        ...
