"""Dev-mode helpers, mounted only while their in-process adapter is the live one."""

from __future__ import annotations

import attrs
from aiohttp import web

from ..api import RouteTable
from ..keys import PLATFORM
from ..serde import json_response

__all__ = ["register"]


@attrs.frozen
class MailOut:
    to: str
    subject: str
    text: str
    sent_at: str


def register(t: RouteTable, *, mailbox: bool) -> None:
    if mailbox:
        @t.get("/dev/mailbox", summary="Mail the outbox adapter sent, newest first (dev only)",
               response=list[MailOut], query={"to": (str, "recipient email")}, tag="dev")
        async def dev_mailbox(request: web.Request) -> web.Response:
            box = request.app[PLATFORM].dev_mailbox
            assert box is not None
            to = request.query.get("to")
            items = [{"to": m.to, "subject": m.subject, "text": m.text,
                      "sentAt": m.sent_at.isoformat().replace("+00:00", "Z") if m.sent_at else None}
                     for m in box.mailbox(to)]
            return json_response(items)
