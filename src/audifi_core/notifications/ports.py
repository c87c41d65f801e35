"""What the notifications context needs: an inbox repository bound to the unit of work."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from .model import Notification

__all__ = ["NotificationRepository"]


class NotificationRepository(Protocol):
    """``uow.notifications``: the inbox, its mail queue, and who took part in what."""

    async def add(self, notification: Notification) -> bool:
        """Store it (mail pending when it has ``mail_to``); ``False`` when this event already notified this user."""
        ...

    async def page(self, user_id: str, after: tuple[datetime, str] | None, limit: int) -> list[Notification]:
        """Newest first; ``after`` is the (created_at, id) of the last item of the previous page."""
        ...

    async def mark_read(self, user_id: str, ids: list[str], at: datetime) -> int: ...

    async def add_participant(self, session_id: str, user_id: str) -> None: ...

    async def participants(self, session_id: str) -> list[str]: ...

    async def add_holding(self, master_id: str, user_id: str, shares: int) -> None:
        """Add ``shares`` (negative to remove) to what the user holds of the master."""
        ...

    async def holders(self, master_ids: list[str]) -> list[str]:
        """Users holding at least one share of any of these masters."""
        ...

    async def claim_mail(self, limit: int) -> list[Notification]:
        """Move up to ``limit`` pending mails to ``sending`` and return them (oldest first)."""
        ...

    async def finish_mail(self, notification_id: str, *, sent: bool, retry: bool) -> None:
        """``sent`` → sent; otherwise back to pending (``retry``) or failed, counting the attempt."""
        ...
