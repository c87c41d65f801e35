"""The route table: every route declared once with its types, so OpenAPI cannot drift from it."""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

import attrs
from aiohttp import web

from .serde import camel

__all__ = ["Route", "RouteTable", "openapi_document", "schema_of", "Raw"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Raw:
    """Marker: a body or response not described by an attrs class."""

    def __init__(self, schema: dict[str, Any], content_type: str = "application/json"):
        self.schema = schema
        self.content_type = content_type


@attrs.frozen
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    who: str = "public"
    body: Any = None
    response: Any = None
    status: int = 200
    query: dict[str, tuple[Any, str]] = attrs.Factory(dict)
    tag: str = "misc"
    idempotent: bool = False
    errors: tuple[int, ...] = ()
    websocket: bool = False


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, method: str, path: str, *, summary: str, **kw: Any) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(method=method.upper(), path=path, handler=fn, summary=summary, **kw))
            return fn

        return deco

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)

    def mount(self, app: web.Application) -> None:
        for r in self.routes:
            app.router.add_route(r.method, r.path, r.handler)


# ----------------------------------------------------------------------- JSON Schema from types
def schema_of(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    if tp is None or tp is type(None):
        return {"type": "null"}
    if isinstance(tp, Raw):
        return tp.schema
    if tp is Any:
        return {}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is datetime:
        return {"type": "string", "format": "date-time"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"type": "string", "enum": [m.value for m in tp]}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [schema_of(a, components) for a in args]}
    if origin in (list, tuple, set, frozenset):
        return {"type": "array", "items": schema_of(args[0], components) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1], components) if args else {}}
    if attrs.has(tp):
        name = tp.__name__
        if name not in components:
            components[name] = {}  # placeholder against recursion
            hints = typing.get_type_hints(tp)
            props, required = {}, []
            for a in attrs.fields(tp):
                props[camel(a.name)] = schema_of(hints.get(a.name, Any), components)
                doc = a.metadata.get("doc")
                if doc:
                    props[camel(a.name)]["description"] = doc
                if a.default is attrs.NOTHING:
                    required.append(camel(a.name))
            components[name] = {"type": "object", "properties": props}
            if required:
                components[name]["required"] = required
            if tp.__doc__:
                components[name]["description"] = tp.__doc__.strip().splitlines()[0]
        return {"$ref": f"#/components/schemas/{name}"}
    return {}


_ERROR = {
    "type": "object",
    "required": ["error", "requestId"],
    "properties": {
        "error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}}},
        "requestId": {"type": "string"},
    },
}
_STATUS_TEXT = {400: "Invalid input (VALIDATION_ERROR)", 401: "UNAUTHORIZED", 403: "FORBIDDEN",
                404: "NOT_FOUND", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE", 429: "RATE_LIMITED",
                502: "BLOCKCHAIN_ERROR or UPSTREAM_ERROR", 503: "Not ready"}


def openapi_document(routes: list[Route], *, title: str, version: str, server: str) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": _ERROR}
    paths: dict[str, Any] = {}
    for r in routes:
        op: dict[str, Any] = {"summary": r.summary, "tags": [r.tag], "operationId": r.handler.__name__,
                              "x-audifi-who": r.who}
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in re.findall(r"{(\w+)}", r.path)]
        for qname, (qtype, qdesc) in r.query.items():
            params.append({"name": qname, "in": "query", "required": False, "description": qdesc,
                           "schema": schema_of(qtype, components)})
        if r.idempotent:
            params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string", "maxLength": 255},
                           "description": "Repeat-safe: same key and body → the first response (24 h)"})
        if params:
            op["parameters"] = params
        if r.body is not None:
            ct = r.body.content_type if isinstance(r.body, Raw) else "application/json"
            op["requestBody"] = {"required": True, "content": {ct: {"schema": schema_of(r.body, components)}}}
        if r.websocket:
            op["description"] = "WebSocket upgrade (see API.md 'V Studio' for the messages)"
        ok: dict[str, Any] = {"description": "OK" if r.status < 300 else "Accepted"}
        if r.response is not None:
            ct = r.response.content_type if isinstance(r.response, Raw) else "application/json"
            ok["content"] = {ct: {"schema": schema_of(r.response, components)}}
        responses: dict[str, Any] = {str(r.status): ok}
        codes = set(r.errors) | {400, 500}
        if r.who != "public":
            codes |= {401, 403}
        for code in sorted(codes):
            responses[str(code)] = {"description": _STATUS_TEXT.get(code, "Error"),
                                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        op["responses"] = responses
        if r.who != "public":
            op["security"] = [{"bearer": []}]
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": server}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
