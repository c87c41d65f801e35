"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

import asyncio

import attrs
from aiohttp import web

from ..api import RouteTable, openapi_document
from ..keys import PLATFORM, ROUTES
from ..serde import json_response

__all__ = ["register"]


@attrs.frozen
class Health:
    status: str


@attrs.frozen
class Readiness:
    status: str
    checks: dict[str, str]
    adapters: dict[str, str]


def register(t: RouteTable) -> None:
    @t.get("/health", summary="Liveness", response=Health, tag="ops")
    async def health(request: web.Request) -> web.Response:
        return json_response(Health("ok"))

    @t.get("/ready", summary="Readiness: each live adapter's check; 503 if one fails", response=Readiness,
           tag="ops", errors=(503,))
    async def ready(request: web.Request) -> web.Response:
        p = request.app[PLATFORM]

        async def run(check) -> str:
            try:
                await asyncio.wait_for(check(), 5)
                return "ok"
            except Exception as e:  # noqa: BLE001 - reported, not raised
                return f"error: {type(e).__name__}"

        names = list(p.checks)
        results = await asyncio.gather(*(run(p.checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        ok = all(v == "ok" for v in checks.values())
        return json_response(Readiness("ok" if ok else "fail", checks, p.adapters), status=200 if ok else 503)

    @t.get("/openapi.json", summary="OpenAPI 3.1 document of every route", tag="ops")
    async def openapi(request: web.Request) -> web.Response:
        cfg = request.app[PLATFORM].config
        doc = openapi_document(request.app[ROUTES].routes, title="AudiFi API", version="0.1.0",
                               server=cfg.public_url)
        return web.json_response(doc)
