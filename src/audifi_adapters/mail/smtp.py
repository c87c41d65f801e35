"""SMTP mailer over the standard library, run in a worker thread (``smtp://`` or ``smtps://``)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from audifi_core.errors import UpstreamError
from audifi_core.ports import Mail

__all__ = ["SmtpMailer"]


class SmtpMailer:
    """``smtp://user:pass@host:587?starttls=1`` or ``smtps://user:pass@host:465``."""

    def __init__(self, url: str, sender: str, timeout: float = 15.0):
        u = urlsplit(url)
        if u.scheme not in ("smtp", "smtps"):
            raise ValueError("SMTP_URL must start with smtp:// or smtps://")
        self._ssl = u.scheme == "smtps"
        self._host = u.hostname or "localhost"
        self._port = u.port or (465 if self._ssl else 25)
        self._user = unquote(u.username) if u.username else None
        self._password = unquote(u.password) if u.password else None
        q = parse_qs(u.query)
        self._starttls = q.get("starttls", ["0"])[0] in ("1", "true", "yes")
        self._sender = sender
        self._timeout = timeout

    def _send(self, mail: Mail) -> None:
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg.set_content(mail.text)
        ctx = ssl.create_default_context()
        cls = smtplib.SMTP_SSL if self._ssl else smtplib.SMTP
        kwargs = {"context": ctx} if self._ssl else {}
        with cls(self._host, self._port, timeout=self._timeout, **kwargs) as s:
            if self._starttls:
                s.starttls(context=ctx)
            if self._user:
                s.login(self._user, self._password or "")
            s.send_message(msg)

    async def send(self, mail: Mail) -> None:
        try:
            await asyncio.to_thread(self._send, mail)
        except (OSError, smtplib.SMTPException) as e:
            raise UpstreamError("Mail could not be sent", details={"service": "smtp"}) from e

    async def check(self) -> None:
        def probe() -> None:
            cls = smtplib.SMTP_SSL if self._ssl else smtplib.SMTP
            with cls(self._host, self._port, timeout=5) as s:
                s.noop()

        try:
            await asyncio.to_thread(probe)
        except (OSError, smtplib.SMTPException) as e:
            raise UpstreamError("SMTP server unreachable", details={"service": "smtp"}) from e
