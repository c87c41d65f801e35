"""Client events in: ``{id?, type, occurredAt?, masterId?, anonymousId?, properties?}`` or ``{"batch": […]}``.

Limits (API.md): at most ``MAX_BATCH`` events per body (``413``), ``MAX_EVENT_BYTES`` per event as
JSON (``413``), only the client types (``400``); unknown keys are ignored. A whole batch is
accepted or refused. The client never names the user (that comes from the token); an
``occurredAt`` in the future is clamped to the arrival time (a client clock running fast cannot
book plays into tomorrow's bucket).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from ..errors import PayloadTooLarge, ValidationError
from .model import CLIENT_TYPES, MAX_BATCH, MAX_EVENT_BYTES, MAX_ID_LENGTH, ClientBatch, ClientRow

__all__ = ["parse_client_events", "parse_client_body", "MAX_ID_LENGTH"]

_TYPES = ", ".join(sorted(CLIENT_TYPES))
_DUMPS = orjson.dumps
_FROMISO = datetime.fromisoformat
_SLACK = 1024  # room for the other fields, each at most MAX_ID_LENGTH characters

try:  # the typed one-pass decoder (msgspec); without it every body takes the careful path
    from . import _typed
except ImportError:  # pragma: no cover - msgspec not installed
    _typed = None  # type: ignore[assignment]


def _text(item: dict[str, Any], key: str, where: str) -> str | None:
    v = item.get(key)
    if v is None:
        return None
    if type(v) is not str or not 0 < len(v) <= MAX_ID_LENGTH:
        raise ValidationError("Invalid event", fields={f"{where}{key}": f"a string of 1-{MAX_ID_LENGTH} characters"})
    return v


def _when(v: Any, where: str, now: datetime) -> datetime:
    if type(v) is not str:
        raise ValidationError("Invalid event", fields={f"{where}occurredAt": "expected an RFC 3339 timestamp"})
    try:
        d = datetime.fromisoformat(v)
    except ValueError:
        raise ValidationError("Invalid event",
                              fields={f"{where}occurredAt": "expected an RFC 3339 timestamp"}) from None
    if d.tzinfo is None:
        raise ValidationError("Invalid event", fields={f"{where}occurredAt": "timestamp needs a time zone"})
    d = d.astimezone(UTC)
    return now if d > now else d


def _checked(item: Any, where: str, now: datetime, new_id: Callable[[], str]) -> ClientRow:
    """The slow path: validate every field and say precisely what is wrong."""
    if type(item) is not dict:
        raise ValidationError("Invalid event", fields={where.rstrip(".") or "body": "expected an object"})
    etype = item.get("type")
    if etype not in CLIENT_TYPES:
        why = "required" if etype is None else f"unknown event type; one of {_TYPES}"
        raise ValidationError("Invalid event", fields={f"{where}type": why})
    props = item.get("properties")
    props_json: str | None = None
    if props is not None:
        if type(props) is not dict:
            raise ValidationError("Invalid event", fields={f"{where}properties": "expected an object"})
        raw = _DUMPS(props)
        # Every other field is at most MAX_ID_LENGTH characters, so only big properties can break the limit.
        if len(raw) + _SLACK > MAX_EVENT_BYTES and len(_DUMPS(item)) > MAX_EVENT_BYTES:
            raise PayloadTooLarge(f"An event is over the {MAX_EVENT_BYTES}-byte limit",
                                  details={"limit": MAX_EVENT_BYTES, "field": where.rstrip(".") or "body"})
        props_json = raw.decode()
    eid = _text(item, "id", where) or new_id()
    at = item.get("occurredAt")
    return (eid, etype, now if at is None else _when(at, where, now), _text(item, "masterId", where),
            _text(item, "anonymousId", where), props_json)


def _fast(item: Any, now: datetime, new_id: Callable[[], str]) -> ClientRow | None:
    """The hot path for well-formed events; ``None`` sends the event through :func:`_checked`."""
    if type(item) is not dict:
        return None
    get = item.get
    etype = get("type")
    if etype not in CLIENT_TYPES:
        return None
    eid = get("id")
    if eid is None:
        eid = new_id()
    elif type(eid) is not str or not 0 < len(eid) <= MAX_ID_LENGTH:
        return None
    master = get("masterId")
    if master is not None and (type(master) is not str or not 0 < len(master) <= MAX_ID_LENGTH):
        return None
    anon = get("anonymousId")
    if anon is not None and (type(anon) is not str or not 0 < len(anon) <= MAX_ID_LENGTH):
        return None
    at = get("occurredAt")
    if at is None:
        at = now
    else:
        if type(at) is not str:
            return None
        try:
            d = _FROMISO(at)
        except ValueError:
            return None
        if d.tzinfo is None:
            return None
        d = d.astimezone(UTC)
        at = now if d > now else d
    props = get("properties")
    if props is None:
        return (eid, etype, at, master, anon, None)
    if type(props) is not dict:
        return None
    raw = _DUMPS(props)
    if len(raw) + _SLACK > MAX_EVENT_BYTES:
        return None
    return (eid, etype, at, master, anon, raw.decode())


def parse_client_body(raw: bytes, *, now: datetime, user_id: str | None, new_id: Callable[[], str]) -> ClientBatch:
    """:func:`parse_client_events` straight from the JSON bytes: a typed decoder validates well-formed
    batches in one pass; anything it refuses goes through the careful path for a precise error."""
    if _typed is not None:
        rows = _typed.decode(raw, now, new_id)
        if rows is not None:
            return ClientBatch(now, user_id, rows)
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValidationError("Malformed JSON", fields={"body": f"malformed JSON: {e.msg}"}) from e
    return parse_client_events(payload, now=now, user_id=user_id, new_id=new_id)


def parse_client_events(payload: Any, *, now: datetime, user_id: str | None,
                        new_id: Callable[[], str]) -> ClientBatch:
    """Validate one event or a batch; the first of equal ids in a batch wins."""
    if type(payload) is not dict:
        raise ValidationError("Expected a JSON object", fields={"body": "expected an object"})
    if "batch" not in payload:
        row = _fast(payload, now, new_id) or _checked(payload, "", now, new_id)
        return ClientBatch(now, user_id, [row])
    batch = payload["batch"]
    if type(batch) is not list:
        raise ValidationError("Invalid batch", fields={"batch": "expected an array of events"})
    if len(batch) > MAX_BATCH:
        raise PayloadTooLarge(f"A batch holds at most {MAX_BATCH} events",
                              details={"limit": MAX_BATCH, "size": len(batch)})
    rows: list[ClientRow] = []
    seen: set[str] = set()
    add = seen.add
    for i, item in enumerate(batch):
        row = _fast(item, now, new_id) or _checked(item, f"batch[{i}].", now, new_id)
        if row[0] in seen:
            continue
        add(row[0])
        rows.append(row)
    return ClientBatch(now, user_id, rows)
