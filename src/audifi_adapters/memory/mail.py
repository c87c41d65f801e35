"""The dev mailer: keeps what it "sent" for ``/dev/mailbox``."""

from __future__ import annotations

import attrs

from audifi_core.ports import Clock, Mail

__all__ = ["OutboxMailer"]


class OutboxMailer:
    def __init__(self, clock: Clock, keep: int = 1000):
        self._clock = clock
        self._keep = keep
        self.sent: list[Mail] = []

    async def send(self, mail: Mail) -> None:
        self.sent.append(attrs.evolve(mail, sent_at=self._clock.now()))
        del self.sent[: -self._keep]

    def mailbox(self, to: str | None = None) -> list[Mail]:
        items = [m for m in self.sent if to is None or m.to == to.strip().lower()]
        return list(reversed(items))
