"""Masters, IPO, shares, dividends over HTTP (API.md "Masters, IPO, shares, dividends").

``/jobs/*`` is served by ``routes/chain.py``. Every handler is a thin adapter over
``platform.masters`` (:class:`audifi_core.masters.MasterService`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import attrs
import orjson
from aiohttp import BodyPartReader, web
from aiohttp.hdrs import CONTENT_TYPE

from audifi_core.auth.model import Role
from audifi_core.chain.model import ChainJobView
from audifi_core.errors import PayloadTooLarge, ValidationError
from audifi_core.masters.model import (
    DividendsView,
    Holding,
    IpoView,
    MasterPage,
    MasterView,
    Money,
    SharesView,
    Transactions,
)

from ..api import Raw, RouteTable
from ..keys import PLATFORM
from ..middleware import auth_context, idempotent, optional_auth, require_role
from ..serde import dump, json_response, parse, read_json

__all__ = ["register"]

METADATA_LIMIT = 64 * 1024
AUDIO_CHUNK = 256 * 1024


@attrs.frozen
class IpoBody:
    total_shares: int = attrs.field(metadata={"doc": "1…10000; also the contract's maxSupply"})
    price_per_share: Money
    starts_at: datetime
    ends_at: datetime
    max_per_user: int | None = attrs.field(default=None, metadata={"doc": "default 10 % of totalShares"})


@attrs.frozen
class MintBody:
    count: int = attrs.field(metadata={"doc": "1…250 shares in this batch"})


@attrs.frozen
class DepositBody:
    amount: str = attrs.field(metadata={"doc": "wei, decimal string"})
    address: str | None = attrs.field(default=None, metadata={"doc": "one of your linked wallets (default: the first)"})


@attrs.frozen
class ClaimBody:
    address: str | None = attrs.field(default=None, metadata={
        "doc": "where the shares are: a linked wallet (default: the first) or your custodial address"})
    to: str | None = attrs.field(default=None, metadata={
        "doc": "custodial claims only: pay to your custodial address (default) or one of your linked wallets"})


_MULTIPART = Raw({
    "type": "object",
    "required": ["audio", "metadata"],
    "properties": {
        "audio": {"type": "string", "format": "binary", "description": "the audio file (audio/* content type)"},
        "metadata": {"type": "string", "description": 'JSON {"title", "description"?, "genre"?, "bpm"?, "isrc"?}'},
    },
}, content_type="multipart/form-data")


def _svc(request: web.Request) -> Any:
    return request.app[PLATFORM].masters


def _bad_body(why: str) -> ValidationError:
    return ValidationError("Expected multipart/form-data with the parts audio and metadata", fields={"body": why})


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        chunk = await part.read_chunk(AUDIO_CHUNK)
        if not chunk:
            return
        yield chunk


async def _read_small(part: BodyPartReader, limit: int) -> bytes:
    buf = bytearray()
    async for chunk in _part_chunks(part):
        buf += chunk
        if len(buf) > limit:
            raise PayloadTooLarge("The metadata part is too large", details={"limit": limit})
    return bytes(buf)


async def _next_part(reader: Any) -> Any:
    try:
        return await reader.next()
    except (ValueError, AssertionError, RuntimeError) as e:  # a malformed multipart body is the client's
        raise _bad_body(f"malformed multipart body: {e}") from e


def _viewer_header(request: web.Request) -> bool:
    return bool(request.headers.get("Authorization"))


def register(t: RouteTable, config: Any = None) -> None:  # noqa: C901 - one closure per route
    @t.post("/masters", summary="Register a master: audio + ERC-721 metadata pinned to IPFS, contracts deployed "
                                "by a chain job", who="artist", body=_MULTIPART, response=MasterView, status=201,
            errors=(413, 429, 502), idempotent=True, tag="masters")
    @idempotent
    async def create_master(request: web.Request) -> web.Response:
        ctx = await require_role(request, Role.ARTIST)
        svc = _svc(request)
        limit = svc.settings.upload_limit_bytes
        if request.content_length is not None and request.content_length > limit + METADATA_LIMIT + 65536:
            raise PayloadTooLarge("The upload is too large", details={"limit": limit})
        if not request.content_type.startswith("multipart/"):
            raise _bad_body("expected multipart/form-data")
        await svc.check_quota(ctx.user_id)
        reader = await request.multipart()
        metadata = audio = None
        while (part := await _next_part(reader)) is not None:
            if not isinstance(part, BodyPartReader):
                raise _bad_body("nested multipart is not accepted")
            if part.name == "metadata":
                raw = await _read_small(part, METADATA_LIMIT)
                try:
                    data = orjson.loads(raw)
                except orjson.JSONDecodeError as e:
                    raise ValidationError("Malformed metadata", fields={"metadata": f"malformed JSON: {e}"}) from e
                metadata = svc.parse_metadata(data)
            elif part.name == "audio":
                if audio is not None:
                    raise _bad_body("one audio part only")
                audio = await svc.store_audio(_part_chunks(part), filename=part.filename or "audio",
                                              content_type=part.headers.get(CONTENT_TYPE, ""))
            else:
                await part.release()
        missing = {name: "required" for name, v in (("audio", audio), ("metadata", metadata)) if v is None}
        if missing:
            raise ValidationError("Missing parts", fields=missing)
        master = await svc.register(ctx.user_id, metadata, audio)
        return json_response(await svc.master_view(master.id, ctx.user_id), status=201)

    @t.get("/masters", summary="Masters, newest first (an artist's own pending/failed ones to that artist)",
           response=MasterPage, query={"artistId": (str, "only this artist's masters"),
                                       "cursor": (str, "nextCursor of the previous page"),
                                       "limit": (int, "1…100, default 20")}, tag="masters")
    async def list_masters(request: web.Request) -> web.Response:
        viewer = await optional_auth(request) if _viewer_header(request) else None
        q = request.query
        try:
            limit = int(q.get("limit", "20"))
        except ValueError:
            raise ValidationError("Invalid limit", fields={"limit": "an integer from 1 to 100"}) from None
        page = await _svc(request).list_masters(artist_id=q.get("artistId") or None, cursor=q.get("cursor") or None,
                                                limit=limit, viewer_id=viewer.user_id if viewer else None)
        return json_response(page)

    @t.get("/masters/{id}", summary="A master", response=MasterView, errors=(404,), tag="masters")
    async def get_master(request: web.Request) -> web.Response:
        viewer = await optional_auth(request) if _viewer_header(request) else None
        view = await _svc(request).master_view(request.match_info["id"], viewer.user_id if viewer else None)
        return json_response(view)

    @t.post("/masters/{id}/ipo", summary="Configure the master's IPO (once)", who="owner", body=IpoBody,
            response=IpoView, errors=(404, 409), idempotent=True, tag="masters")
    @idempotent
    async def configure_ipo(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), IpoBody)
        view = await _svc(request).configure_ipo(
            ctx.user_id, request.match_info["id"], total_shares=body.total_shares, price=body.price_per_share,
            starts_at=body.starts_at, ends_at=body.ends_at, max_per_user=body.max_per_user)
        return json_response(view)

    @t.post("/masters/{id}/mint", summary="Mint a batch of shares to the treasury (a chain job)", who="owner",
            body=MintBody, response=ChainJobView, status=202, errors=(404, 409), idempotent=True, tag="masters")
    @idempotent
    async def mint(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), MintBody)
        job = await _svc(request).mint(ctx.user_id, request.match_info["id"], body.count)
        return json_response(job, status=202)

    @t.get("/masters/{id}/shares", summary="Shareholders from the chain's Transfer events (user ids: owner only)",
           response=SharesView, errors=(404,), tag="masters")
    async def shares(request: web.Request) -> web.Response:
        viewer = await optional_auth(request) if _viewer_header(request) else None
        svc, mid = _svc(request), request.match_info["id"]
        viewer_id = viewer.user_id if viewer else None
        view = await svc.shares_view(mid, viewer_id)
        out = dump(view)
        if viewer_id is None or (await svc.get_master(mid)).artist_id != viewer_id:
            for h in out["holders"]:
                h.pop("userId", None)
        return _json(out)

    @t.get("/masters/{id}/dividends", summary="Dividend deposits from the chain; claimable for ?address=",
           response=DividendsView, query={"address": (str, "an address holding shares")}, errors=(404, 409, 502),
           tag="masters")
    async def dividends(request: web.Request) -> web.Response:
        view = await _svc(request).dividends_view(request.match_info["id"], request.query.get("address") or None)
        out = dump(view)
        if out.get("claimable") is None:
            out.pop("claimable", None)
        return _json(out)

    @t.post("/masters/{id}/dividends/deposit", summary="An unsigned deposit transaction from your linked wallet",
            who="owner", body=DepositBody, response=Transactions, errors=(404, 409), tag="masters")
    async def deposit(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), DepositBody)
        txs = await _svc(request).deposit(ctx.user_id, request.match_info["id"], body.amount, body.address)
        return json_response(txs)

    @t.post("/masters/{id}/dividends/claim", summary="Claim dividends: unsigned transactions for a linked wallet, "
                                                     "202 ChainJob for the custodial address", who="auth",
            body=ClaimBody, response=Transactions | ChainJobView, errors=(404, 409, 502), idempotent=True,
            tag="masters")
    @idempotent
    async def claim(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request, optional=True), ClaimBody)
        outcome = await _svc(request).claim(ctx.user_id, request.match_info["id"], body.address, body.to)
        if outcome.job is not None:
            return json_response(outcome.job, status=202)
        return json_response(Transactions(outcome.transactions or []))

    @t.get("/user/holdings", summary="Your shares at every address of yours (linked wallets, custodial)",
           who="auth", response=list[Holding], tag="masters")
    async def holdings(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        return json_response(await _svc(request).holdings(ctx.user_id))


def _json(out: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(out), status=status, content_type="application/json")
