"""Notifications: a bus consumer turning domain events into inbox entries and mail.

Events and the data this consumer relies on (producers follow these shapes):

* ``payment.succeeded``  ``{userId, amount, currency, masterId?, quantity?, title?, plan?}`` → receipt to the payer
* ``dividend.deposited`` ``{masterId, amount (wei string), holderIds?, title?}``    → every holder
* ``ipo.launched``       ``{masterId, artistId?, title?}``  → the artist and holders of the artist's masters
* ``session.locked``     ``{sessionId, masterId, participantIds?, title?}`` → every participant (each
  user seen in ``vote.cast`` of the session, plus ``participantIds``)
* ``vote.cast``          ``{sessionId, userId, …}``  and ``share.transferred`` ``{masterId, userId, count}``
  are remembered (participants, holders) and notify nobody.

Each event notifies each user at most once (unique (event, user)); the mail goes out after the
inbox entry commits, claimed first so a crash mid-send never sends it twice.
"""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from ..errors import ValidationError
from ..events import DomainEvent
from ..ports import Clock, IdGenerator, Mail, Mailer
from ..uow import UnitOfWork, UnitOfWorkFactory
from .model import Notification, NotificationKind, NotificationPage

__all__ = ["NotificationService", "CONSUMER", "format_money", "format_wei"]

CONSUMER = "notifications"
log = structlog.get_logger("audifi.notifications")
_ZERO_DECIMAL = frozenset({"jpy", "krw", "vnd", "clp", "isk", "huf", "twd", "ugx", "xaf", "xof"})


def format_money(amount: int, currency: str) -> str:
    cur = currency.lower()
    if cur in _ZERO_DECIMAL:
        return f"{amount} {cur.upper()}"
    return f"{Decimal(amount) / 100:.2f} {cur.upper()}"


def format_wei(amount: Any) -> str:
    eth = Decimal(int(str(amount))) / Decimal(10**18)
    text = format(eth.normalize(), "f")
    return f"{text} ETH"


def _master_name(d: dict[str, Any]) -> str:
    title = d.get("title")
    return f"“{title}”" if title else f"master {d.get('masterId', '?')}"


class NotificationService:
    def __init__(self, uow: UnitOfWorkFactory, mailer: Mailer, clock: Clock, ids: IdGenerator, directory: Any,
                 *, max_mail_attempts: int = 5):
        self._uow = uow
        self._mailer = mailer
        self._clock = clock
        self._ids = ids
        self._directory = directory
        self._max_attempts = max_mail_attempts

    # ------------------------------------------------------------------ consumer
    async def on_event(self, u: UnitOfWork, event: DomainEvent) -> None:
        """The bus consumer (run inside the unit of work that marks the event processed)."""
        d = event.data
        repo = u.notifications  # type: ignore[attr-defined]
        t = event.type
        if t == "vote.cast":
            await repo.add_participant(str(d["sessionId"]), str(d["userId"]))
        elif t == "share.transferred":
            await repo.add_holding(str(d["masterId"]), str(d["userId"]), int(d["count"]))
        elif t == "payment.succeeded":
            what = format_money(int(d["amount"]), str(d["currency"]))
            if d.get("masterId"):
                n = d.get("quantity")
                shares = f"{n} share{'s' if n != 1 else ''} of " if n else ""
                body = f"We received your payment of {what} for {shares}{_master_name(d)}. Thank you!"
            elif d.get("plan"):
                body = f"We received your payment of {what} for the {d['plan']} plan. Thank you!"
            else:
                body = f"We received your payment of {what}. Thank you!"
            await self._notify(u, event, [str(d["userId"])], NotificationKind.PURCHASE_RECEIPT,
                               "Your AudiFi receipt", body)
        elif t == "dividend.deposited":
            holders = [str(x) for x in d.get("holderIds") or []]
            holders += await repo.holders([str(d["masterId"])])
            await self._notify(u, event, holders, NotificationKind.DIVIDEND_DEPOSITED, "Dividend deposited",
                               f"A dividend of {format_wei(d['amount'])} was deposited for {_master_name(d)}. "
                               "Claim your share from your holdings.")
        elif t == "ipo.launched":
            master_id = str(d["masterId"])
            artist = d.get("artistId") or await self._directory.artist_of(master_id)
            users = [str(artist)] if artist else []
            if artist:
                users += await repo.holders(await self._directory.masters_of(str(artist)) or [master_id])
            await self._notify(u, event, users, NotificationKind.IPO_LIVE, "IPO is live",
                               f"The IPO of {_master_name(d)} is live: shares are on sale now.")
        elif t == "session.locked":
            users = [str(x) for x in d.get("participantIds") or []]
            users += await repo.participants(str(d["sessionId"]))
            await self._notify(u, event, users, NotificationKind.SESSION_LOCKED, "Session locked",
                               f"The V Studio session on {_master_name(d)} is locked: the final master is set.")

    async def _notify(self, u: UnitOfWork, event: DomainEvent, user_ids: list[str], kind: NotificationKind,
                      title: str, body: str) -> int:
        n_added = 0
        now = event.occurred_at  # the inbox orders by when it happened, however late the bus delivered it
        for uid in dict.fromkeys(user_ids):  # each user once, in order
            user = await u.users.get(uid)
            n = Notification(id=self._ids.new_id("ntf"), user_id=uid, event_id=event.id, kind=kind, title=title,
                             body=body, created_at=now, mail_to=user.email if user is not None else None)
            if await u.notifications.add(n):  # type: ignore[attr-defined]
                n_added += 1
        return n_added

    # ------------------------------------------------------------------ mail
    async def deliver_mail(self, limit: int = 50) -> int:
        """Send pending mails (claimed first: at most once each); returns how many went out."""
        async with self._uow() as u:
            batch = await u.notifications.claim_mail(limit)  # type: ignore[attr-defined]
        sent = 0
        for n in batch:
            ok = False
            try:
                await self._mailer.send(Mail(to=n.mail_to, subject=n.title,
                                             text=f"{n.body}\n\n— AudiFi (see all notifications in the app)"))
                ok = True
                sent += 1
            except Exception as e:  # noqa: BLE001 - any mailer failure: retry later, then give up
                log.warning("notification_mail_failed", notification_id=n.id, error=repr(e))
            async with self._uow() as u:
                await u.notifications.finish_mail(  # type: ignore[attr-defined]
                    n.id, sent=ok, retry=n.mail_attempts + 1 < self._max_attempts)
        return sent

    # ------------------------------------------------------------------ inbox
    async def inbox(self, user_id: str, cursor: str | None, limit: int) -> NotificationPage:
        if not 1 <= limit <= 100:
            raise ValidationError("limit must be 1-100", fields={"limit": "between 1 and 100"})
        after = _decode_cursor(cursor) if cursor else None
        async with self._uow(readonly=True) as u:
            rows = await u.notifications.page(user_id, after, limit + 1)  # type: ignore[attr-defined]
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = _encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return NotificationPage([r.view() for r in rows], nxt)

    async def mark_read(self, user_id: str, ids: list[str]) -> int:
        async with self._uow() as u:
            return await u.notifications.mark_read(user_id, ids, self._clock.now())  # type: ignore[attr-defined]


def _encode_cursor(at: datetime, nid: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{nid}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, nid = raw.split("|", 1)
        return datetime.fromisoformat(at), nid
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("Bad cursor", fields={"cursor": "not a cursor this API returned"}) from None
