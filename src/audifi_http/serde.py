"""The HTTP edge's wire format: camelCase JSON in and out, strict types, VALIDATION_ERROR details."""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import cattrs
import orjson
from aiohttp import web
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from audifi_core.errors import PayloadTooLarge, ValidationError

__all__ = ["camel", "converter", "read_body", "read_json", "parse", "dump", "json_response", "MAX_JSON_BYTES"]

T = TypeVar("T")
MAX_JSON_BYTES = 1024 * 1024


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def rfc3339(d: datetime) -> str:
    return d.astimezone(UTC).isoformat().replace("+00:00", "Z")


converter = cattrs.Converter(forbid_extra_keys=False)


def _strict(tp: type, name: str):
    def hook(v: Any, _: Any) -> Any:
        if tp is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError(f"expected {name}")
        if tp is not int and not isinstance(v, tp):
            raise ValueError(f"expected {name}")
        return v

    return hook


converter.register_structure_hook(str, _strict(str, "a string"))
converter.register_structure_hook(int, _strict(int, "an integer"))
converter.register_structure_hook(bool, _strict(bool, "a boolean"))


def _structure_dt(v: Any, _: Any) -> datetime:
    if not isinstance(v, str):
        raise ValueError("expected an RFC 3339 timestamp")
    try:
        d = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as e:
        raise ValueError("expected an RFC 3339 timestamp") from e
    if d.tzinfo is None:
        raise ValueError("timestamp needs a time zone")
    return d.astimezone(UTC)


converter.register_structure_hook(datetime, _structure_dt)
converter.register_unstructure_hook(datetime, rfc3339)
converter.register_unstructure_hook(enum.Enum, lambda e: e.value)


def _attrs_structure(cl: type) -> Any:
    return make_dict_structure_fn(cl, converter, _cattrs_forbid_extra_keys=False,
                                  **{a.name: override(rename=camel(a.name)) for a in attrs.fields(cl)})


def _attrs_unstructure(cl: type) -> Any:
    return make_dict_unstructure_fn(cl, converter,
                                    **{a.name: override(rename=camel(a.name)) for a in attrs.fields(cl)})


converter.register_structure_hook_factory(attrs.has, _attrs_structure)
converter.register_unstructure_hook_factory(attrs.has, _attrs_unstructure)

_PATH = re.compile(r"^(.*) @ \$\.?(.*)$")


def _fields_of(exc: Exception) -> dict[str, str]:
    fields: dict[str, str] = {}
    for msg in cattrs.transform_error(exc, path="$"):
        m = _PATH.match(msg)
        if m:
            why, where = m.group(1), m.group(2) or "body"
            why = "required" if why.startswith("required field missing") else why
            fields[camelize_path(where)] = why
        else:
            fields["body"] = msg
    return fields


def camelize_path(p: str) -> str:
    return ".".join(camel(x) for x in p.split("."))


async def read_body(request: web.Request, limit: int = MAX_JSON_BYTES) -> bytes:
    """The request body, at most ``limit`` bytes (413 beyond), read once and kept on the request."""
    from .keys import RAW_BODY

    cached = request.get(RAW_BODY)
    if cached is not None:
        return cached
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge("Body too large", details={"limit": limit})
    chunks: list[bytes] = []
    total = 0
    while True:  # StreamReader.read(n) answers what has arrived, not n bytes: read to the end
        chunk = await request.content.read(limit + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge("Body too large", details={"limit": limit})
    raw = b"".join(chunks)
    request[RAW_BODY] = raw
    return raw


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    raw = await read_body(request)
    if not raw.strip():
        if optional:
            return {}
        raise ValidationError("A JSON body is required", fields={"body": "required"})
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValidationError("Malformed JSON", fields={"body": f"malformed JSON: {e.msg}"}) from e


def parse(data: Any, cl: type[T]) -> T:
    if not isinstance(data, dict):
        raise ValidationError("Expected a JSON object", fields={"body": "expected an object"})
    try:
        return converter.structure(data, cl)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as e:
        if isinstance(e, cattrs.BaseValidationError):
            raise ValidationError("Invalid request", fields=_fields_of(e)) from e
        raise ValidationError("Invalid request", fields={"body": str(e)}) from e


def dump(obj: Any) -> Any:
    return converter.unstructure(obj)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps(dump(obj))
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)
