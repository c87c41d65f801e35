"""``Web3CoinReads``: the ERC-20 reads the Chain port lacks (name, symbol, decimals, totalSupply).

Encoded from the shipped ABIs like ``Web3Chain``; a revert, an empty answer or an unreachable node
becomes ``ChainError`` (BLOCKCHAIN_ERROR, 502 at the edge).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError

from audifi_core.coins.ports import TokenInfo
from audifi_core.errors import ChainError

from ..chain.abi import function

__all__ = ["Web3CoinReads"]

_TRANSIENT = (aiohttp.ClientError, OSError, asyncio.TimeoutError, ConnectionError)


class Web3CoinReads:
    def __init__(self, w3: AsyncWeb3, *, timeout: float = 30.0):
        self._w3 = w3
        self._timeout = timeout

    async def _call(self, contract: str, to: str, fn: str) -> Any:
        f = function(contract, fn)
        try:
            raw = await asyncio.wait_for(
                self._w3.eth.call({"to": to_checksum_address(to), "data": f.encode()}), self._timeout)
        except ContractLogicError as e:
            raise ChainError(f"{contract}.{fn} reverted", details={"reason": "reverted"}) from e
        except _TRANSIENT as e:
            raise ChainError(f"{contract}.{fn}: the node is unreachable", details={"reason": "unavailable"}) from e
        except Exception as e:  # noqa: BLE001 - every node/EVM failure is a ChainError at this port
            raise ChainError(f"{contract}.{fn} failed", details={"reason": "failed"}) from e
        if not raw:
            raise ChainError(f"{contract}.{fn}: no contract at {to}", details={"address": to})
        return f.decode_output(bytes(raw))[0]

    async def token_info(self, token: str) -> TokenInfo:
        name, symbol, decimals, supply = await asyncio.gather(
            self._call("ArtistCoin", token, "name"), self._call("ArtistCoin", token, "symbol"),
            self._call("ArtistCoin", token, "decimals"), self._call("ArtistCoin", token, "totalSupply"))
        return TokenInfo(name=name, symbol=symbol, decimals=int(decimals), total_supply=int(supply))

    async def total_supply(self, token: str) -> int:
        return int(await self._call("CoinPool", token, "totalSupply"))
