"""V Studio adapters: memory and PostgreSQL repositories, memory and Redis broadcaster and
presence, the local socket hub, and bridges to the other contexts."""

from .bridges import PlatformEntitlements, PlatformShareHoldings, PlatformStudioMasters
from .hub import LocalHub, Member
from .memory import (
    InMemoryBroadcaster,
    InMemoryEntitlements,
    InMemoryPresence,
    InMemoryShareHoldings,
    InMemoryStudioMasters,
    InMemoryStudioRepository,
)
from .postgres import PostgresStudioRepository
from .redis import RedisBroadcaster, RedisPresence

__all__ = [
    "InMemoryBroadcaster",
    "InMemoryEntitlements",
    "InMemoryPresence",
    "InMemoryShareHoldings",
    "InMemoryStudioMasters",
    "InMemoryStudioRepository",
    "LocalHub",
    "Member",
    "PlatformEntitlements",
    "PlatformShareHoldings",
    "PlatformStudioMasters",
    "PostgresStudioRepository",
    "RedisBroadcaster",
    "RedisPresence",
]
