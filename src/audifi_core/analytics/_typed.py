"""The one-pass decoder of client event bodies (msgspec): bytes to rows for well-formed batches.

``decode`` returns ``None`` for anything it does not accept outright (bad types, a size limit
possibly crossed, non-object properties, malformed JSON); the careful path in ``intake`` then
produces the precise error, or the rows when the body was valid after all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from .model import CLIENT_TYPES, MAX_BATCH, MAX_EVENT_BYTES, MAX_ID_LENGTH, ClientRow

__all__ = ["decode"]

_SLACK = 1024  # room for the other fields, each at most MAX_ID_LENGTH characters
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]


class _Event(msgspec.Struct):
    type: Literal[tuple(sorted(CLIENT_TYPES))]  # type: ignore[valid-type]
    id: _Id | None = None
    occurredAt: Annotated[datetime, msgspec.Meta(tz=True)] | None = None  # noqa: N815 - the wire name
    masterId: _Id | None = None  # noqa: N815
    anonymousId: _Id | None = None  # noqa: N815
    properties: msgspec.Raw = msgspec.Raw()  # the object's JSON text, untouched (empty when absent)


class _Body(msgspec.Struct):
    batch: list[_Event] | None = None
    type: str | None = None


_DECODE_BODY = msgspec.json.Decoder(_Body).decode
_DECODE_EVENT = msgspec.json.Decoder(_Event).decode


def _row(e: _Event, now: datetime, new_id: Callable[[], str]) -> ClientRow | None:
    at = e.occurredAt
    if at is None:
        at = now
    elif at > now:
        at = now
    elif at.utcoffset():
        at = at.astimezone(UTC)
    raw = bytes(e.properties)
    if not raw:
        return (e.id or new_id(), e.type, at, e.masterId, e.anonymousId, None)
    if raw[:1] != b"{" or len(raw) + _SLACK > MAX_EVENT_BYTES:
        return None  # null, not an object, or maybe too large: the careful path decides
    return (e.id or new_id(), e.type, at, e.masterId, e.anonymousId, raw.decode())


def decode(raw: bytes, now: datetime, new_id: Callable[[], str]) -> list[ClientRow] | None:
    try:
        body = _DECODE_BODY(raw)
        events = body.batch if body.batch is not None else [_DECODE_EVENT(raw)]
    except msgspec.DecodeError:
        return None
    if len(events) > MAX_BATCH:
        return None
    rows: list[ClientRow] = []
    seen: set[str] = set()
    add = seen.add
    for e in events:
        row = _row(e, now, new_id)
        if row is None:
            return None
        if row[0] in seen:
            continue
        add(row[0])
        rows.append(row)
    return rows
