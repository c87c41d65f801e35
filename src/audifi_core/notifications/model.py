"""Notifications: a per-user inbox entry (and a mail) per (event, user), at most once."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

__all__ = ["NotificationKind", "Notification", "NotificationView", "NotificationPage", "MailState"]


class NotificationKind(enum.StrEnum):
    PURCHASE_RECEIPT = "purchase_receipt"
    DIVIDEND_DEPOSITED = "dividend_deposited"
    IPO_LIVE = "ipo_live"
    SESSION_LOCKED = "session_locked"


class MailState(enum.StrEnum):
    NONE = "none"  # inbox only (no address known)
    PENDING = "pending"
    SENDING = "sending"  # claimed by a sender: never sent twice, even if it crashed mid-send
    SENT = "sent"
    FAILED = "failed"


@attrs.frozen
class Notification:
    id: str
    user_id: str
    event_id: str
    kind: NotificationKind
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None = None
    mail_to: str | None = None
    mail_attempts: int = 0

    def view(self) -> NotificationView:
        return NotificationView(self.id, self.kind, self.title, self.body, self.created_at, self.read_at)


@attrs.frozen
class NotificationView:
    """One inbox entry as the API shows it."""

    id: str
    kind: NotificationKind
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None = None


@attrs.frozen
class NotificationPage:
    items: list[NotificationView]
    next_cursor: str | None = None
