"""Chain jobs over HTTP (API.md ``/jobs/:id``) and the dev chain's JSON-RPC (``POST /dev/rpc``)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from audifi_adapters.chain.dev_rpc import MAX_BATCH, DevRpc
from audifi_adapters.chain.wiring import ChainServices
from audifi_core.chain.model import ChainJobView
from audifi_core.errors import InternalError, NotFound, PayloadTooLarge

from ..api import Raw, RouteTable
from ..keys import PLATFORM
from ..middleware import auth_context
from ..serde import json_response

__all__ = ["register", "CHAIN"]

#: The chain layer's services (``open_chain``'s result).
CHAIN = web.AppKey("audifi.chain", ChainServices)

_RPC_LIMIT = 1024 * 1024
_RPC_SCHEMA = {"oneOf": [
    {"type": "object", "required": ["jsonrpc", "method"],
     "properties": {"jsonrpc": {"const": "2.0"}, "method": {"type": "string"}, "params": {"type": "array"},
                    "id": {"type": ["string", "integer", "null"]}}},
    {"type": "array", "maxItems": MAX_BATCH, "items": {"type": "object"}},
]}


def chain_services(request: web.Request) -> ChainServices:
    """The services under ``CHAIN``, or those the composition root attached as ``platform.chain``."""
    services = request.app.get(CHAIN)
    if services is None and PLATFORM in request.app:
        services = getattr(request.app[PLATFORM], "chain", None)
    if services is None:
        raise InternalError("The chain layer is not wired")
    return services


def register(t: RouteTable, config: Any = None, *, dev_rpc: bool | None = None) -> None:
    """Mount ``/jobs/{id}``, ``/jobs/{id}/retry`` and, on the in-process dev chain, ``/dev/rpc``.

    ``dev_rpc`` defaults to "dev mode without RPC_URL" when a config is given.
    """
    if dev_rpc is None:
        dev_rpc = config is not None and not getattr(config, "production", True) and not getattr(
            config, "rpc_url", None)

    @t.get("/jobs/{id}", summary="A chain job (only its requester sees it)", who="the job's requester",
           response=ChainJobView, tag="jobs", errors=(404,))
    async def get_job(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        return json_response(await chain_services(request).jobs.get(request.match_info["id"], ctx.user_id))

    @t.post("/jobs/{id}/retry", summary="Queue a failed chain job again (same operation key: never doubled)",
            who="the job's requester", response=ChainJobView, status=202, tag="jobs", errors=(404, 409))
    async def retry_job(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        view = await chain_services(request).jobs.retry(request.match_info["id"], ctx.user_id)
        return json_response(view, status=202)

    if dev_rpc:
        @t.post("/dev/rpc", summary="Ethereum JSON-RPC to the in-process dev chain (eth_*, net_version, "
                                    "web3_clientVersion; batches)", body=Raw(_RPC_SCHEMA),
                response=Raw({"type": ["object", "array"]}), tag="dev", errors=(413,))
        async def dev_rpc_endpoint(request: web.Request) -> web.Response:
            evm = chain_services(request).evm
            if evm is None:
                raise NotFound("The dev chain is not in-process")
            raw = await request.content.read(_RPC_LIMIT + 1)
            if len(raw) > _RPC_LIMIT:
                raise PayloadTooLarge("JSON-RPC body too large", details={"limit": _RPC_LIMIT})
            rpc = DevRpc(evm)
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                return _rpc_response(rpc.parse_error(f"parse error: {e.msg}"))
            answer = await rpc.handle(payload)
            if answer is None:
                return web.Response(status=204)
            return _rpc_response(answer)


def _rpc_response(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")
