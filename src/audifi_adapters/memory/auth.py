"""In-memory sign-in sessions (refresh-token families)."""

from __future__ import annotations

from datetime import datetime

import attrs

from audifi_core.auth.model import AuthSession, RotateOutcome
from audifi_core.ports import Clock

__all__ = ["InMemorySessionStore"]

_KEEP_PREVIOUS = 50


class InMemorySessionStore:
    def __init__(self, clock: Clock):
        self._clock = clock
        self._sessions: dict[str, AuthSession] = {}

    def _live(self, sid: str) -> AuthSession | None:
        s = self._sessions.get(sid)
        if s is not None and s.expires_at <= self._clock.now():
            del self._sessions[sid]
            return None
        return s

    async def create(self, session: AuthSession) -> None:
        self._sessions[session.id] = session

    async def get(self, session_id: str) -> AuthSession | None:
        return self._live(session_id)

    async def touch(self, session_id: str, now: datetime) -> None:
        s = self._live(session_id)
        if s is not None:
            self._sessions[session_id] = attrs.evolve(s, last_seen_at=now)

    async def rotate(self, session_id: str, presented_hash: str, new_hash: str,
                     expires_at: datetime) -> RotateOutcome:
        s = self._live(session_id)
        if s is None:
            return RotateOutcome.UNKNOWN
        if s.refresh_hash == presented_hash:
            prev = (s.previous_hashes + (presented_hash,))[-_KEEP_PREVIOUS:]
            self._sessions[session_id] = attrs.evolve(s, refresh_hash=new_hash, previous_hashes=prev,
                                                      expires_at=expires_at)
            return RotateOutcome.ROTATED
        if presented_hash in s.previous_hashes:
            return RotateOutcome.REUSED
        return RotateOutcome.UNKNOWN

    async def revoke(self, session_id: str) -> AuthSession | None:
        return self._sessions.pop(session_id, None)

    async def revoke_user(self, user_id: str, except_session: str | None = None) -> list[str]:
        ids = [sid for sid, s in self._sessions.items() if s.user_id == user_id and sid != except_session]
        for sid in ids:
            del self._sessions[sid]
        return ids

    async def list_for_user(self, user_id: str) -> list[AuthSession]:
        return [s for sid, s in list(self._sessions.items()) if s.user_id == user_id and self._live(sid)]
