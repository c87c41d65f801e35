"""Sign-in sessions in Redis: a hash per session, a set of used refresh hashes, a set per user."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis

from audifi_core.auth.model import AuthSession, RotateOutcome

__all__ = ["RedisSessionStore"]

_ROTATE = """
local cur = redis.call('HGET', KEYS[1], 'refresh')
if not cur then return 0 end
if cur == ARGV[1] then
  redis.call('HSET', KEYS[1], 'refresh', ARGV[2], 'expires_at', ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  return 1
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 2 end
return 0
"""


def _ts(d: datetime) -> str:
    return repr(d.timestamp())


def _dt(s: bytes | str) -> datetime:
    return datetime.fromtimestamp(float(s), UTC)


class RedisSessionStore:
    def __init__(self, redis: Redis, prefix: str, key_ttl_seconds: int = 31 * 24 * 3600):
        """Keys live ``key_ttl_seconds`` past their last write; expiry proper is the service's check."""
        self._r = redis
        self._p = prefix
        self._key_ttl = key_ttl_seconds
        self._rotate = redis.register_script(_ROTATE)

    def _k(self, sid: str) -> str:
        return f"{self._p}sess:{sid}"

    def _prev(self, sid: str) -> str:
        return f"{self._p}sessprev:{sid}"

    def _u(self, uid: str) -> str:
        return f"{self._p}usess:{uid}"

    async def create(self, session: AuthSession) -> None:
        mapping = {
            "id": session.id,
            "user_id": session.user_id,
            "created_at": _ts(session.created_at),
            "last_seen_at": _ts(session.last_seen_at),
            "authenticated_at": _ts(session.authenticated_at),
            "expires_at": _ts(session.expires_at),
            "refresh": session.refresh_hash,
            "user_agent": session.user_agent,
        }
        ttl = self._key_ttl
        async with self._r.pipeline(transaction=True) as p:
            p.hset(self._k(session.id), mapping=mapping)
            p.expire(self._k(session.id), ttl)
            p.sadd(self._u(session.user_id), session.id)
            await p.execute()

    @staticmethod
    def _decode(h: dict[bytes, bytes]) -> AuthSession:
        g = {k.decode(): v.decode() for k, v in h.items()}
        return AuthSession(
            id=g["id"], user_id=g["user_id"], created_at=_dt(g["created_at"]),
            last_seen_at=_dt(g["last_seen_at"]), authenticated_at=_dt(g["authenticated_at"]),
            expires_at=_dt(g["expires_at"]), refresh_hash=g["refresh"], user_agent=g.get("user_agent", ""),
        )

    async def get(self, session_id: str) -> AuthSession | None:
        h = await self._r.hgetall(self._k(session_id))
        return self._decode(h) if h and b"refresh" in h else None

    async def touch(self, session_id: str, now: datetime) -> None:
        # HSET only on an existing hash: a revoked session must not come back half-made.
        await self._r.eval(
            "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_seen_at', ARGV[1]) end",
            1, self._k(session_id), _ts(now))

    async def rotate(self, session_id: str, presented_hash: str, new_hash: str,
                     expires_at: datetime) -> RotateOutcome:
        r = int(await self._rotate(keys=[self._k(session_id), self._prev(session_id)],
                                   args=[presented_hash, new_hash, _ts(expires_at), self._key_ttl]))
        return {1: RotateOutcome.ROTATED, 2: RotateOutcome.REUSED}.get(r, RotateOutcome.UNKNOWN)

    async def revoke(self, session_id: str) -> AuthSession | None:
        s = await self.get(session_id)
        async with self._r.pipeline(transaction=True) as p:
            p.delete(self._k(session_id), self._prev(session_id))
            if s is not None:
                p.srem(self._u(s.user_id), session_id)
            await p.execute()
        return s

    async def revoke_user(self, user_id: str, except_session: str | None = None) -> list[str]:
        sids = [s.decode() for s in await self._r.smembers(self._u(user_id))]
        sids = [s for s in sids if s != except_session]
        if sids:
            async with self._r.pipeline(transaction=True) as p:
                for sid in sids:
                    p.delete(self._k(sid), self._prev(sid))
                p.srem(self._u(user_id), *sids)
                await p.execute()
        return sids

    async def list_for_user(self, user_id: str) -> list[AuthSession]:
        sids = [s.decode() for s in await self._r.smembers(self._u(user_id))]
        if not sids:
            return []
        async with self._r.pipeline(transaction=False) as p:
            for sid in sids:
                p.hgetall(self._k(sid))
            rows = await p.execute()
        out, gone = [], []
        for sid, h in zip(sids, rows, strict=True):
            if h and b"refresh" in h:
                out.append(self._decode(h))
            else:
                gone.append(sid)
        if gone:
            await self._r.srem(self._u(user_id), *gone)
        return out
