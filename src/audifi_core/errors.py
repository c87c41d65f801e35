"""Errors of the domain, each with a stable code and HTTP status (API.md error table).

Adapters translate driver failures into these; the HTTP edge renders every one of them as the
API.md envelope. Nothing here knows about HTTP beyond the status number it maps to.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AudifiError",
    "ValidationError",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "RateLimited",
    "ChainError",
    "UpstreamError",
    "InternalError",
]


class AudifiError(Exception):
    """Base of every domain error: a code, an HTTP status, a message and details."""

    code = "INTERNAL_ERROR"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ValidationError(AudifiError):
    """Input does not parse; ``details['fields']`` maps each bad field to why."""

    code = "VALIDATION_ERROR"
    status = 400

    def __init__(self, message: str = "Invalid request", *, fields: dict[str, str] | None = None,
                 details: dict[str, Any] | None = None):
        d = dict(details or {})
        d["fields"] = dict(fields or {})
        super().__init__(message, details=d)

    @property
    def fields(self) -> dict[str, str]:
        return self.details["fields"]


class Unauthorized(AudifiError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(AudifiError):
    code = "FORBIDDEN"
    status = 403


class NotFound(AudifiError):
    """Unknown id; ``code`` may be narrowed, e.g. ``MASTER_NOT_FOUND``."""

    code = "NOT_FOUND"
    status = 404


class Conflict(AudifiError):
    code = "CONFLICT"
    status = 409


class PayloadTooLarge(AudifiError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class RateLimited(AudifiError):
    code = "RATE_LIMITED"
    status = 429

    def __init__(self, message: str = "Too many requests", *, retry_after: int = 1,
                 details: dict[str, Any] | None = None):
        d = dict(details or {})
        d["retryAfter"] = max(1, int(retry_after))
        super().__init__(message, details=d)
        self.retry_after = d["retryAfter"]


class ChainError(AudifiError):
    """A chain/RPC call failed and nothing was recorded as done."""

    code = "BLOCKCHAIN_ERROR"
    status = 502


class UpstreamError(AudifiError):
    """Stripe, IPFS or mail failed."""

    code = "UPSTREAM_ERROR"
    status = 502


class InternalError(AudifiError):
    code = "INTERNAL_ERROR"
    status = 500
