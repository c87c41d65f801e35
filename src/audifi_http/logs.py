"""structlog set-up (JSON in production, console in dev) and an access log that never logs secrets."""

from __future__ import annotations

import logging
import re
import sys

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = ["configure_logging", "AccessLogger", "redact"]

_SECRET_QS = re.compile(r"(?i)([?&](?:token|code|access_token|refresh_token|mfa_token|signature)=)[^&\s]*")


def redact(text: str) -> str:
    return _SECRET_QS.sub(r"\1[redacted]", text)


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=lvl, force=True)
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


class AccessLogger(AbstractAccessLogger):
    """One structured line per request: path only (never the query string), status, time."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        structlog.get_logger("audifi.access").info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round(time * 1000, 2),
            request_id=response.headers.get("X-Request-Id"),
        )

    @property
    def enabled(self) -> bool:
        return True
