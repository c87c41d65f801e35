"""The studio's ports backed by other contexts: masters (``platform.masters``) and, once the
payments context offers them, entitlements. Duck-typed on purpose: the other contexts do not
know the studio, and the studio depends only on the calls named in its ports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from audifi_core.studio.model import MasterRef
from audifi_core.studio.ports import Entitlements

__all__ = ["PlatformStudioMasters", "PlatformShareHoldings", "PlatformEntitlements"]


class PlatformStudioMasters:
    """``get_master`` / ``lock_master`` of the masters context."""

    def __init__(self, masters: Any):
        self._m = masters

    async def get(self, master_id: str) -> MasterRef:
        m = await self._m.get_master(master_id)
        return MasterRef(id=m.id, artist_id=m.artist_id, locked_at=getattr(m, "locked_at", None),
                         final_audio_cid=getattr(m, "final_audio_cid", None),
                         audio_cid=getattr(m, "audio_cid", None))

    async def lock(self, uow: Any, master_id: str, final_cid: str | None, at: datetime) -> None:
        await self._m.lock_master(uow, master_id, final_cid, at)


class PlatformShareHoldings:
    """``shares_held`` of the masters context; the weight snapshot from its holders by user."""

    def __init__(self, masters: Any):
        self._m = masters

    async def shares_held(self, user_id: str, master_id: str) -> int:
        return int(await self._m.shares_held(user_id, master_id))

    async def holders(self, master_id: str) -> dict[str, int]:
        """From the holders the master's artist sees (each address with its user id, if ours)."""
        m = await self._m.get_master(master_id)
        view = await self._m.shares_view(master_id, m.artist_id)
        out: dict[str, int] = {}
        for h in view.holders:
            uid = getattr(h, "user_id", None)
            if uid and int(h.shares) > 0:
                out[uid] = out.get(uid, 0) + int(h.shares)
        return out


class PlatformEntitlements:
    """Asks ``platform.payments.has_entitlement(user_id, name)`` when the payments context offers
    it (it opens after the studio, so this is looked up at each call); else the fallback."""

    def __init__(self, platform: Any, fallback: Entitlements):
        self._platform = platform
        self.fallback = fallback

    async def has(self, user_id: str, entitlement: str) -> bool:
        fn = getattr(getattr(self._platform, "payments", None), "has_entitlement", None)
        if fn is not None and await fn(user_id, entitlement):
            return True
        return await self.fallback.has(user_id, entitlement)
