"""Analytics and notifications (API.md "Analytics and notifications")."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import attrs
from aiohttp import web

from audifi_core.analytics import (
    CLIENT_TYPES,
    MAX_BATCH,
    MAX_BODY_BYTES,
    MAX_EVENT_BYTES,
    Interval,
    Report,
)
from audifi_core.auth.model import Role
from audifi_core.errors import PayloadTooLarge, ValidationError
from audifi_core.notifications import NotificationPage

from ..api import Raw, RouteTable
from ..keys import PLATFORM
from ..middleware import auth_context, client_ip, optional_auth, require_role
from ..serde import json_response, parse, read_json

__all__ = ["register"]

_EVENT_SCHEMA = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "id": {"type": "string", "maxLength": 128, "description": "dedupes for 7 days whatever occurredAt says"},
        "type": {"enum": sorted(CLIENT_TYPES)},
        "occurredAt": {"type": "string", "format": "date-time", "description": "default: arrival; a future "
                       "time is clamped to arrival"},
        "masterId": {"type": "string", "maxLength": 128},
        "anonymousId": {"type": "string", "maxLength": 128, "description": "the listener without a token"},
        "properties": {"type": "object"},
    },
    "description": f"at most {MAX_EVENT_BYTES} bytes as JSON",
}
_BODY = Raw({"oneOf": [_EVENT_SCHEMA, {"type": "object", "required": ["batch"], "properties": {
    "batch": {"type": "array", "maxItems": MAX_BATCH, "items": _EVENT_SCHEMA}}}],
    "description": f"one event or a batch; at most {MAX_BODY_BYTES} bytes"})


@attrs.frozen
class Accepted:
    """How many events are now durable (duplicates of known ids included, counted once)."""

    accepted: int


@attrs.frozen
class ReadBody:
    ids: list[str]


@attrs.frozen
class Updated:
    updated: int


_REPORT_QUERY = {
    "from": (datetime, "start (RFC 3339); default: 48 hours / 30 days before `to`; rounded down to a bucket"),
    "to": (datetime, "end (RFC 3339); default: now, so the current bucket is included"),
    "interval": (Interval, "bucket size: hour or day (default day)"),
}


def _time(request: web.Request, name: str) -> datetime | None:
    v = request.query.get(name)
    if v is None or v == "":
        return None
    try:
        d = datetime.fromisoformat(v.replace(" ", "+"))  # a raw '+' in a query string arrives as a space
    except ValueError:
        raise ValidationError("Invalid query", fields={name: "expected an RFC 3339 timestamp"}) from None
    if d.tzinfo is None:
        raise ValidationError("Invalid query", fields={name: "timestamp needs a time zone"})
    return d.astimezone(UTC)


def _interval(request: web.Request) -> Interval:
    v = request.query.get("interval", "day")
    try:
        return Interval(v)
    except ValueError:
        raise ValidationError("Invalid query", fields={"interval": "hour or day"}) from None


def _limit(request: web.Request) -> int:
    v = request.query.get("limit", "20")
    if not v.isdigit() or not 1 <= int(v) <= 100:
        raise ValidationError("Invalid query", fields={"limit": "an integer from 1 to 100"})
    return int(v)


async def _read_all(request: web.Request, limit: int) -> bytes:
    """The whole body (every chunk, not just the first to arrive), at most ``limit`` bytes (413 beyond)."""
    too_large = PayloadTooLarge(f"A body is at most {limit} bytes", details={"limit": limit})
    n = request.content_length
    if n is not None:
        if n > limit:
            raise too_large
        try:
            return await request.content.readexactly(n) if n else b""
        except asyncio.IncompleteReadError:
            raise ValidationError("The body ended early", fields={"body": "shorter than Content-Length"}) from None
    buf = bytearray()
    while chunk := await request.content.read(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            raise too_large
    return bytes(buf)


def register(t: RouteTable, config: object = None) -> None:
    tag = "analytics"

    @t.post("/events", summary="Ingest client events (one or a batch ≤ 1000); 202 once durable",
            who="public (rate-limited per IP) or auth", body=_BODY, response=Accepted, status=202, tag=tag,
            errors=(413, 429))
    async def ingest_events(request: web.Request) -> web.Response:
        ctx = await optional_auth(request)
        raw = await _read_all(request, MAX_BODY_BYTES)
        if not raw.strip():
            raise ValidationError("A JSON body is required", fields={"body": "required"})
        n = await request.app[PLATFORM].analytics.ingest(raw, user_id=ctx.user_id if ctx else None,
                                                         ip=client_ip(request))
        return json_response(Accepted(n), status=202)

    @t.get("/analytics/dashboard", summary="Totals and series over the artist's masters", who="artist",
           response=Report, query=_REPORT_QUERY, tag=tag)
    async def dashboard(request: web.Request) -> web.Response:
        ctx = await require_role(request, Role.ARTIST)
        report = await request.app[PLATFORM].analytics.dashboard(
            ctx.user_id, _time(request, "from"), _time(request, "to"), _interval(request))
        return json_response(report)

    @t.get("/analytics/masters/{id}", summary="Totals and series for one master", who="owner",
           response=Report, query=_REPORT_QUERY, tag=tag, errors=(404,))
    async def master_analytics(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        report = await request.app[PLATFORM].analytics.master_report(
            ctx.user_id, request.match_info["id"], _time(request, "from"), _time(request, "to"),
            _interval(request))
        return json_response(report)

    @t.get("/notifications", summary="The signed-in user's inbox, newest first", who="auth",
           response=NotificationPage, query={"cursor": (str, "nextCursor of the previous page"),
                                            "limit": (int, "1-100 (default 20)")}, tag="notifications")
    async def notifications(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        page = await request.app[PLATFORM].notifications.inbox(ctx.user_id, request.query.get("cursor") or None,
                                                               _limit(request))
        return json_response(page)

    @t.post("/notifications/read", summary="Mark inbox entries read", who="auth", body=ReadBody,
            response=Updated, tag="notifications")
    async def notifications_read(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), ReadBody)
        if len(body.ids) > 100:
            raise ValidationError("At most 100 ids", fields={"ids": "at most 100"})
        n = await request.app[PLATFORM].notifications.mark_read(ctx.user_id, body.ids)
        return json_response(Updated(n))
