"""Domain events: ``{id, type, occurredAt, data}`` on the bus, idempotent on ``id``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

__all__ = ["DomainEvent", "EVENT_TYPES"]

EVENT_TYPES = frozenset({
    "user.registered",
    "master.registered",
    "ipo.launched",
    "share.minted",
    "vote.cast",
    "session.locked",
    "dividend.deposited",
    "payment.succeeded",
    "share.transferred",
    "coin.deployed",
    "coin.staked",
    "coin.unstaked",
    "coin.reward_paid",
})


@attrs.frozen
class DomainEvent:
    id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any] = attrs.field(factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "occurredAt": self.occurred_at.isoformat().replace("+00:00", "Z"),
            "data": self.data,
        }
