"""Redis V Studio adapters: pub/sub fan-out between instances, and presence shared by them.

Presence keeps, per session, each connection's user and expiry (every instance refreshes its own
connections; a dead instance's expire), a per-user connection count (two tabs = present once) and
arrival order. Each operation is one Lua script, so join/leave decisions are atomic across
instances, and uses Redis' clock, so instances' clocks never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from audifi_core.studio.model import Person, PresenceChange
from audifi_core.studio.ports import MessageHandler

__all__ = ["RedisBroadcaster", "RedisPresence"]

log = structlog.get_logger("audifi.studio.redis")


class RedisBroadcaster:
    """Redis pub/sub: one channel per topic, subscribed once at start on a dedicated connection.

    A message reaches this instance's listeners at once, without the round trip through Redis;
    it is published with this instance's origin id, and the copy Redis sends back is skipped.
    """

    def __init__(self, redis: Redis, prefix: str):
        self._r = redis
        self._p = prefix + "studio:bus:"
        self._origin = os.urandom(8).hex()
        self._listeners: dict[bytes, list[MessageHandler]] = {}
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    def listen(self, topic: str, handler: MessageHandler) -> None:
        if self._pubsub is not None:
            raise RuntimeError("listen() before start()")
        self._listeners.setdefault((self._p + topic).encode(), []).append(handler)

    async def start(self) -> None:
        self._pubsub = self._r.pubsub(ignore_subscribe_messages=True)
        if self._listeners:
            await self._pubsub.subscribe(*self._listeners)
            # the confirmations arrive before any message: wait for them, so that nothing
            # published after start() returns is missed
            pending = set(self._listeners)
            async with asyncio.timeout(10):
                while pending:
                    m = await self._pubsub.parse_response(block=True)
                    if isinstance(m, list) and len(m) > 1 and m[0] in (b"subscribe", "subscribe"):
                        pending.discard(m[1] if isinstance(m[1], bytes) else str(m[1]).encode())
        self._task = asyncio.create_task(self._run(), name="studio-redis-broadcaster")

    def _dispatch(self, channel: bytes, raw: bytes) -> None:
        handlers = self._listeners.get(channel)
        if not handlers:
            return
        for h in handlers:
            try:
                h(orjson.loads(raw))
            except Exception as e:  # noqa: BLE001 - one bad handler must not stop fan-out
                log.warning("broadcast_handler_failed", error=repr(e))

    async def _run(self) -> None:
        assert self._pubsub is not None
        origin = self._origin.encode()
        while True:
            try:
                async for m in self._pubsub.listen():
                    if m.get("type") != "message":
                        continue
                    data = m["data"]
                    # "<origin> <json>": our own messages were delivered here already
                    head, _, body = data.partition(b" ")
                    if head == origin:
                        continue
                    try:
                        self._dispatch(m["channel"], body)
                    except orjson.JSONDecodeError:
                        log.warning("broadcast_undecodable", channel=m["channel"])
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - reconnect (redis-py resubscribes on connect)
                log.warning("broadcast_listen_failed", error=repr(e))
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=2.0)  # never hang a shutdown on a stuck read
            self._task = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._pubsub.aclose()
            self._pubsub = None

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        channel = (self._p + topic).encode()
        raw = orjson.dumps(message)
        self._dispatch(channel, raw)
        await self._r.publish(channel, self._origin.encode() + b" " + raw)


_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function gone(u, left)
  local n = redis.call('HINCRBY', KEYS[3], u, -1)
  if n <= 0 then
    redis.call('HDEL', KEYS[3], u)
    redis.call('HDEL', KEYS[4], u)
    redis.call('ZREM', KEYS[5], u)
    table.insert(left, u)
  end
end
local function purge(now, left)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, c in ipairs(dead) do
    local u = redis.call('HGET', KEYS[1], c)
    redis.call('HDEL', KEYS[1], c)
    redis.call('ZREM', KEYS[2], c)
    if u then gone(u, left) end
  end
end
local function add(now, c, u, name, ttl, joined)
  if redis.call('HSETNX', KEYS[1], c, u) == 1 then
    local n = redis.call('HINCRBY', KEYS[3], u, 1)
    if n == 1 then
      redis.call('HSET', KEYS[4], u, name)
      redis.call('ZADD', KEYS[5], now, u)
      table.insert(joined, u)
      table.insert(joined, name)
    end
  end
  redis.call('ZADD', KEYS[2], now + ttl, c)
end
local function keep(ttl)
  for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ttl) end
end
"""

# ARGV: conn, user, name, ttl_ms, key_ttl_s  → {joined (user, name)…, left users}
_JOIN = _COMMON + """
local now = now_ms()
local left, joined = {}, {}
purge(now, left)
add(now, ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), joined)
keep(tonumber(ARGV[5]))
return {joined, left}
"""

# ARGV: conn → {{}, left users}
_LEAVE = _COMMON + """
local now = now_ms()
local left = {}
local u = redis.call('HGET', KEYS[1], ARGV[1])
if u then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  gone(u, left)
end
purge(now, left)
return {{}, left}
"""

# ARGV: ttl_ms, key_ttl_s, then (conn, user, name) triples → {joined…, left}
_REFRESH = _COMMON + """
local now = now_ms()
local left, joined = {}, {}
local ttl = tonumber(ARGV[1])
for i = 3, #ARGV, 3 do
  redis.call('ZADD', KEYS[2], 'XX', now + ttl, ARGV[i])
end
purge(now, left)
for i = 3, #ARGV, 3 do
  add(now, ARGV[i], ARGV[i + 1], ARGV[i + 2], ttl, joined)
end
keep(tonumber(ARGV[2]))
return {joined, left}
"""

# → {user, name, user, name…} in arrival order (dead instances' connections forgotten first)
_PRESENT = _COMMON + """
local left = {}
purge(now_ms(), left)
local out = {}
for _, u in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  table.insert(out, u)
  table.insert(out, redis.call('HGET', KEYS[4], u) or u)
end
return out
"""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _change(raw: list[Any]) -> PresenceChange:
    joined, left = raw
    people = tuple(Person(_s(joined[i]), _s(joined[i + 1])) for i in range(0, len(joined), 2))
    return PresenceChange(joined=people, left=tuple(_s(u) for u in left))


class RedisPresence:
    def __init__(self, redis: Redis, prefix: str, *, ttl_seconds: float = 30.0, key_ttl_seconds: int = 86400):
        self._r = redis
        self._p = prefix + "studio:pr:"
        self._ttl_ms = int(ttl_seconds * 1000)
        self._key_ttl = key_ttl_seconds
        self._join = redis.register_script(_JOIN)
        self._leave = redis.register_script(_LEAVE)
        self._refresh = redis.register_script(_REFRESH)
        self._present = redis.register_script(_PRESENT)
        self._people: dict[tuple[str, str], Person] = {}  # this instance's connections

    def _keys(self, session_id: str) -> list[str]:
        b = f"{self._p}{session_id}:"
        return [b + "conns", b + "exp", b + "users", b + "names", b + "order"]

    async def join(self, session_id: str, conn_id: str, person: Person) -> PresenceChange:
        self._people[(session_id, conn_id)] = person
        raw = await self._join(keys=self._keys(session_id),
                               args=[conn_id, person.user_id, person.display_name, self._ttl_ms, self._key_ttl])
        return _change(raw)

    async def leave(self, session_id: str, conn_id: str) -> PresenceChange:
        self._people.pop((session_id, conn_id), None)
        return _change(await self._leave(keys=self._keys(session_id), args=[conn_id]))

    async def present(self, session_id: str) -> list[Person]:
        raw = await self._present(keys=self._keys(session_id), args=[])
        return [Person(_s(raw[i]), _s(raw[i + 1])) for i in range(0, len(raw), 2)]

    async def refresh(self, conns: Mapping[str, Iterable[str]]) -> dict[str, PresenceChange]:
        out: dict[str, PresenceChange] = {}
        for session_id, ids in conns.items():
            args: list[Any] = [self._ttl_ms, self._key_ttl]
            for c in ids:
                p = self._people.get((session_id, c))
                if p is not None:
                    args += [c, p.user_id, p.display_name]
            change = _change(await self._refresh(keys=self._keys(session_id), args=args))
            if change.joined or change.left:
                out[session_id] = change
        return out
