"""Artist coin, liquidity and staking routes (API.md "Artist coin, liquidity, staking").

Non-custodial: apart from the deployment (a chain job the platform signs), every POST answers
unsigned transactions ``{to, data, value, chainId}`` for the user's own wallet to sign in order.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from audifi_core.chain.model import ChainJobView
from audifi_core.coins.model import (
    CoinAmountRequest,
    CoinTransactions,
    CoinView,
    DeployCoinRequest,
    LiquidityRequest,
    PoolView,
    RewardsRequest,
    StakeView,
    SwapOut,
    SwapRequest,
)
from audifi_core.coins.service import CoinService
from audifi_core.errors import InternalError

from ..api import RouteTable
from ..keys import PLATFORM
from ..middleware import auth_context, idempotent
from ..serde import json_response, parse, read_json

__all__ = ["register"]


def _coins(request: web.Request) -> CoinService:
    service = getattr(request.app[PLATFORM], "coins", None)
    if service is None:
        raise InternalError("The coin context is not wired")
    return service


def register(t: RouteTable, config: Any = None) -> None:  # noqa: ARG001 - the context protocol
    tag = "coins"

    @t.post("/coins/{artistId}/deploy", summary="Deploy the artist's coin, its staking contract and an empty "
            "coin/ETH pool (a chain job; the whole supply goes to the artist's wallet)", who="owner",
            body=DeployCoinRequest, response=ChainJobView, status=202, idempotent=True, tag=tag,
            errors=(409, 502))
    @idempotent
    async def deploy_coin(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        CoinService.require_owner(ctx.user, request.match_info["artistId"], artist_role=True)
        body = parse(await read_json(request), DeployCoinRequest)
        job = await _coins(request).deploy(ctx.user, request.match_info["artistId"], body)
        return json_response(job, status=202)

    @t.get("/coins/{artistId}", summary="The artist's coin (read from chain, cached per block)",
           response=CoinView, tag=tag, errors=(404, 502))
    async def get_coin(request: web.Request) -> web.Response:
        return json_response(await _coins(request).get_coin(request.match_info["artistId"]))

    @t.get("/coins/{artistId}/pool", summary="The coin/ETH pool: reserves, price (wei per whole coin), LP supply",
           response=PoolView, tag=tag, errors=(404, 409, 502))
    async def get_pool(request: web.Request) -> web.Response:
        return json_response(await _coins(request).pool(request.match_info["artistId"]))

    @t.post("/coins/{artistId}/pool/liquidity", summary="Unsigned approve (when short) + addLiquidity; LP tokens "
            "to the sender", who="auth", body=LiquidityRequest, response=CoinTransactions, idempotent=True, tag=tag,
            errors=(404, 409, 502))
    @idempotent
    async def add_liquidity(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), LiquidityRequest)
        return json_response(await _coins(request).liquidity(ctx.user, request.match_info["artistId"], body))

    @t.post("/coins/{artistId}/swap", summary="Unsigned swap (buy: ETH→coin; sell: approve when short + "
            "coin→ETH) with a quote from the current reserves", who="auth", body=SwapRequest, response=SwapOut,
            idempotent=True, tag=tag, errors=(404, 409, 502))
    @idempotent
    async def swap(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), SwapRequest)
        return json_response(await _coins(request).swap(ctx.user, request.match_info["artistId"], body))

    @t.post("/coins/{artistId}/stake", summary="Unsigned approve (when short) + stake", who="auth",
            body=CoinAmountRequest, response=CoinTransactions, idempotent=True, tag=tag, errors=(404, 409, 502))
    @idempotent
    async def stake(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), CoinAmountRequest)
        return json_response(await _coins(request).stake(ctx.user, request.match_info["artistId"], body))

    @t.post("/coins/{artistId}/unstake", summary="Unsigned unstake (at most the staked amount)", who="auth",
            body=CoinAmountRequest, response=CoinTransactions, idempotent=True, tag=tag, errors=(404, 409, 502))
    @idempotent
    async def unstake(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), CoinAmountRequest)
        return json_response(await _coins(request).unstake(ctx.user, request.match_info["artistId"], body))

    @t.post("/coins/{artistId}/rewards", summary="Unsigned approve (when short) + notifyRewardAmount from the "
            "coin's artist wallet", who="owner", body=RewardsRequest, response=CoinTransactions, idempotent=True,
            tag=tag, errors=(404, 409, 502))
    @idempotent
    async def fund_rewards(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        CoinService.require_owner(ctx.user, request.match_info["artistId"])
        body = parse(await read_json(request), RewardsRequest)
        return json_response(await _coins(request).rewards(ctx.user, request.match_info["artistId"], body))

    @t.get("/coins/{artistId}/stakes/{address}", summary="A staker's stake and unclaimed rewards, read from chain",
           response=StakeView, tag=tag, errors=(404, 409, 502))
    async def get_stake(request: web.Request) -> web.Response:
        svc = _coins(request)
        return json_response(await svc.stakes(request.match_info["artistId"], request.match_info["address"]))
