"""This instance's side of the fan-out: the studio sockets connected here, fed from the Broadcaster.

Every message is encoded once and offered to each member's bounded send queue; a member whose
queue is full is dropped (it never delays the others). ``vote_update`` is coalesced again here,
per decision: stale ``seq`` dropped, the first update sent at once, then at most one per interval
with the newest tallies — whatever number of instances publish. A revoked auth session kicks its
sockets, whichever instance revoked it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol

import attrs
import orjson

__all__ = ["Member", "LocalHub", "CLOSE_REVOKED", "CLOSE_FORBIDDEN", "CLOSE_UNAUTHORIZED", "CLOSE_TOO_SLOW"]

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_REVOKED = 4401
CLOSE_TOO_SLOW = 1013  # "try again later": the client fell behind and should reconnect


class Member(Protocol):
    """A socket as the hub sees it."""

    conn_id: str
    session_id: str
    auth_session_id: str | None

    def offer(self, data: bytes) -> bool:
        """Queue ``data`` (an encoded message); ``False`` when the bounded queue is full."""
        ...

    def kick(self, code: int, reason: str) -> None:
        """Close soon (never blocks the caller)."""
        ...


@attrs.define
class _Coalesce:
    session_id: str
    max_seq: int = 0
    last: float = float("-inf")
    pending: dict[str, Any] | None = None
    timer: asyncio.TimerHandle | None = None


class LocalHub:
    def __init__(self, *, interval: float = 0.05, queue_limit: int = 256):
        self.interval = interval
        self.queue_limit = queue_limit
        self._sessions: dict[str, set[Member]] = {}
        self._auth: dict[str, set[Member]] = {}
        self._decisions: dict[str, _Coalesce] = {}
        self.dropped = 0  # slow members dropped so far
        self.sent = 0     # vote_update fan-outs done

    # ------------------------------------------------------------ membership
    def attach(self, member: Member) -> None:
        """An authenticated socket: a revocation of its auth session kicks it."""
        if member.auth_session_id:
            self._auth.setdefault(member.auth_session_id, set()).add(member)

    def join(self, member: Member) -> None:
        """From now on the member gets the messages of its studio session."""
        self._sessions.setdefault(member.session_id, set()).add(member)

    def part(self, member: Member) -> None:
        members = self._sessions.get(member.session_id)
        if members is not None:
            members.discard(member)
            if not members:
                del self._sessions[member.session_id]
                self._forget_session(member.session_id)

    def detach(self, member: Member) -> None:
        self.part(member)
        if member.auth_session_id:
            members = self._auth.get(member.auth_session_id)
            if members is not None:
                members.discard(member)
                if not members:
                    del self._auth[member.auth_session_id]

    def members(self, session_id: str) -> list[Member]:
        return list(self._sessions.get(session_id, ()))

    def local_conns(self) -> dict[str, list[str]]:
        """Studio session id → connection ids joined here (presence heartbeats)."""
        return {sid: [m.conn_id for m in ms] for sid, ms in self._sessions.items()}

    def _forget_session(self, session_id: str) -> None:
        for key in [k for k, st in self._decisions.items() if st.session_id == session_id]:
            st = self._decisions.pop(key)
            if st.timer is not None:
                st.timer.cancel()

    def close(self) -> None:
        for st in self._decisions.values():
            if st.timer is not None:
                st.timer.cancel()
        self._decisions.clear()

    # ------------------------------------------------------------ broadcaster topics
    def on_message(self, envelope: dict[str, Any]) -> None:
        session_id = envelope.get("sessionId")
        message = envelope.get("message")
        if not isinstance(session_id, str) or not isinstance(message, dict):
            return
        if session_id not in self._sessions:
            return
        kind = message.get("type")
        if kind == "vote_update":
            self._vote_update(session_id, message)
            return
        if kind == "decision_closed":
            st = self._state(session_id, message.get("decisionId"))
            seq = message.get("seq")
            if st is not None and isinstance(seq, int):
                st.max_seq = max(st.max_seq, seq)
                if st.pending is not None and st.pending.get("seq", 0) <= seq:
                    st.pending = None
        self.send(session_id, orjson.dumps(message))

    def on_revoked(self, envelope: dict[str, Any]) -> None:
        ids = envelope.get("sessionIds")
        if not isinstance(ids, list):
            return
        for sid in ids:
            for m in list(self._auth.get(sid, ())):
                m.kick(CLOSE_REVOKED, "session ended")

    # ------------------------------------------------------------ fan-out
    def send(self, session_id: str, data: bytes) -> None:
        """Offer ``data`` to every member of the session; drop those that cannot keep up."""
        for m in list(self._sessions.get(session_id, ())):
            if not m.offer(data):
                self.dropped += 1
                self.part(m)
                m.kick(CLOSE_TOO_SLOW, "too slow")

    def _state(self, session_id: str, decision_id: Any) -> _Coalesce | None:
        if not isinstance(decision_id, str):
            return None
        st = self._decisions.get(decision_id)
        if st is None:
            st = self._decisions[decision_id] = _Coalesce(session_id)
        return st

    def _vote_update(self, session_id: str, message: dict[str, Any]) -> None:
        st = self._state(session_id, message.get("decisionId"))
        seq = message.get("seq")
        if st is None or not isinstance(seq, int) or seq <= st.max_seq:
            return  # stale: a newer update went out or waits already
        st.max_seq = seq
        loop = asyncio.get_running_loop()
        now = loop.time()
        if st.timer is None and now - st.last >= self.interval:
            st.last = now
            self._fan_out(session_id, message)
            return
        st.pending = message
        if st.timer is None:
            st.timer = loop.call_at(st.last + self.interval, self._flush, message["decisionId"], st)

    def _flush(self, decision_id: str, st: _Coalesce) -> None:
        st.timer = None
        if st.pending is None or self._decisions.get(decision_id) is not st:
            return
        message, st.pending = st.pending, None
        st.last = asyncio.get_running_loop().time()
        self._fan_out(st.session_id, message)

    def _fan_out(self, session_id: str, message: dict[str, Any]) -> None:
        self.sent += 1
        self.send(session_id, orjson.dumps(message))

    def kick_all(self, members: Iterable[Member], code: int, reason: str) -> None:
        for m in list(members):
            m.kick(code, reason)
