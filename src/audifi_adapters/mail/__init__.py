"""Mail adapters: SMTP for production (the dev outbox mailer lives with the memory adapters)."""

from .smtp import SmtpMailer

__all__ = ["SmtpMailer"]
