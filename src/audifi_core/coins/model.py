"""Artist coins: the record of an artist's coin, what clients see of it, and the pool maths.

An artist has at most one coin. Its record is written with the ``deploy_coin`` chain job that
creates it (one unit of work, unique per artist) and learns its addresses when the job is confirmed.
Everything a user does with the coin afterwards (liquidity, swaps, stakes, rewards) is an unsigned
transaction for their own wallet: the platform never holds their keys.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import datetime
from typing import Literal

import attrs

from ..chain.model import UnsignedTx
from ..errors import ValidationError

__all__ = [
    "CoinStatus",
    "ArtistCoin",
    "CoinView",
    "PoolView",
    "StakeView",
    "SwapQuote",
    "CoinTransactions",
    "SwapOut",
    "DeployCoinRequest",
    "LiquidityRequest",
    "SwapRequest",
    "CoinAmountRequest",
    "RewardsRequest",
    "COIN_DECIMALS",
    "MAX_SUPPLY",
    "MAX_UINT256",
    "MINIMUM_LIQUIDITY",
    "FEE_NUMERATOR",
    "FEE_DENOMINATOR",
    "parse_amount",
    "parse_address",
    "validate_coin_params",
    "amount_out",
    "liquidity_used",
    "price_eth",
    "apply_slippage",
]

COIN_DECIMALS = 18
MAX_SUPPLY = 2**128
MAX_UINT256 = 2**256 - 1
MINIMUM_LIQUIDITY = 1000  # LP tokens locked by the pool's first deposit
FEE_NUMERATOR, FEE_DENOMINATOR = 997, 1000  # 0.3 % swap fee (CoinPool.getAmountOut)

_AMOUNT = re.compile(r"^[0-9]{1,78}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_SYMBOL = re.compile(r"^[A-Z]{2,8}$")


class CoinStatus(enum.StrEnum):
    PENDING = "pending"    # the deploy job is queued or running
    DEPLOYED = "deployed"  # the job is confirmed: the addresses are known
    FAILED = "failed"      # the job failed; the artist may retry it or deploy again


@attrs.frozen
class ArtistCoin:
    """An artist's coin as we recorded it (the chain is the truth for balances and reserves)."""

    artist_id: str
    name: str
    symbol: str
    initial_supply: int
    owner_address: str  # the artist's wallet that received the whole supply (and funds rewards)
    job_id: str
    status: CoinStatus
    created_at: datetime
    updated_at: datetime
    coin_address: str | None = None
    staking_address: str | None = None
    pool_address: str | None = None
    attempt: int = 1

    def deployed(self, coin: str, staking: str, pool: str, at: datetime) -> ArtistCoin:
        return attrs.evolve(self, status=CoinStatus.DEPLOYED, coin_address=coin, staking_address=staking,
                            pool_address=pool, updated_at=at)

    def failed(self, at: datetime) -> ArtistCoin:
        return attrs.evolve(self, status=CoinStatus.FAILED, updated_at=at)


# ------------------------------------------------------------------------------ what clients see
@attrs.frozen
class CoinView:
    """An artist's coin (``GET /coins/:artistId``); addresses and figures are null until deployed."""

    address: str | None
    name: str
    symbol: str
    decimals: int
    total_supply: str
    staking_address: str | None
    pool_address: str | None
    status: CoinStatus = CoinStatus.DEPLOYED
    job_id: str | None = None
    owner_address: str | None = None


@attrs.frozen
class PoolView:
    """The coin/ETH pool: reserves in base units / wei; ``priceEth`` is wei per whole coin (10^18 units)."""

    address: str
    reserve_coin: str
    reserve_eth: str
    price_eth: str | None
    total_liquidity: str
    block_number: int | None = None


@attrs.frozen
class StakeView:
    """A staker's position, read from the staking contract: staked coin and unclaimed rewards (base units)."""

    staked: str
    rewards: str
    block_number: int | None = None


@attrs.frozen
class SwapQuote:
    """What the swap would give at the current reserves (amounts in base units / wei)."""

    side: str
    amount_in: str
    amount_out: str
    min_amount_out: str
    fee: str
    price_eth: str
    price_eth_after: str
    reserve_coin: str
    reserve_eth: str
    deadline: int
    block_number: int


@attrs.frozen
class CoinTransactions:
    """Unsigned transactions to sign in order from ``from`` (the user's wallet)."""

    transactions: list[UnsignedTx]
    from_: str | None = attrs.field(default=None, metadata={"doc": "the wallet that must sign them"})


@attrs.frozen
class SwapOut:
    """Unsigned swap transactions (sign in order from ``from``) and the quote they were built with."""

    transactions: list[UnsignedTx]
    quote: SwapQuote
    from_: str | None = attrs.field(default=None, metadata={"doc": "the wallet that must sign them"})


# ------------------------------------------------------------------------------ requests
@attrs.frozen
class DeployCoinRequest:
    name: str
    symbol: str
    initial_supply: str = attrs.field(metadata={"doc": "decimal string of base units (18 decimals), 1…2^128"})
    address: str | None = attrs.field(default=None, metadata={"doc": "the linked wallet receiving the supply"})


@attrs.frozen
class LiquidityRequest:
    coin_amount: str
    eth_amount: str
    min_coin: str | None = attrs.field(default=None, metadata={
        "doc": "default: what the pool would use now, less 0.5 %"})
    min_eth: str | None = attrs.field(default=None, metadata={
        "doc": "default: what the pool would use now, less 0.5 %"})
    deadline: int | None = attrs.field(default=None, metadata={"doc": "unix seconds; default now + 10 min"})
    address: str | None = None


@attrs.frozen
class SwapRequest:
    side: Literal["buy", "sell"] = attrs.field(metadata={"doc": "buy (ETH in, coin out) or sell (coin in, ETH out)"})
    amount_in: str
    min_amount_out: str = attrs.field(metadata={"doc": "goes on-chain unchanged"})
    deadline: int | None = attrs.field(default=None, metadata={"doc": "unix seconds; default now + 10 min"})
    address: str | None = None


@attrs.frozen
class CoinAmountRequest:
    amount: str
    address: str | None = None


@attrs.frozen
class RewardsRequest:
    amount: str
    duration_seconds: int
    address: str | None = None


# ------------------------------------------------------------------------------ validation
def parse_amount(value: object, field: str, *, minimum: int = 1, maximum: int = MAX_UINT256) -> int:
    """A decimal string of base units (wei) within ``minimum…maximum``; else VALIDATION_ERROR."""
    if not isinstance(value, str) or not _AMOUNT.match(value):
        raise ValidationError("Invalid amount", fields={field: "expected a decimal string of base units"})
    n = int(value)
    if n < minimum:
        raise ValidationError("Invalid amount", fields={field: f"must be at least {minimum}"})
    if n > maximum:
        raise ValidationError("Invalid amount", fields={field: f"must be at most {maximum}"})
    return n


def parse_address(value: object, field: str = "address") -> str:
    """An Ethereum address (any case); returned lower-cased for comparisons."""
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ValidationError("Invalid address", fields={field: "expected a 0x-prefixed 20-byte hex address"})
    return value.lower()


def validate_coin_params(name: str, symbol: str, initial_supply: str) -> int:
    """Name 1–32 printable characters, symbol 2–8 uppercase letters, supply 1…2^128; returns the supply."""
    fields: dict[str, str] = {}
    if not 1 <= len(name) <= 32 or not name.isprintable() or name != name.strip():
        fields["name"] = "1-32 printable characters, no surrounding spaces"
    if not _SYMBOL.match(symbol):
        fields["symbol"] = "2-8 uppercase letters A-Z"
    supply = 0
    try:
        supply = parse_amount(initial_supply, "initialSupply", maximum=MAX_SUPPLY)
    except ValidationError as e:
        fields.update(e.fields)
    if fields:
        raise ValidationError("Invalid coin", fields=fields)
    return supply


# ------------------------------------------------------------------------------ pool maths
def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """CoinPool.getAmountOut: constant product with the 0.3 % fee taken from the input."""
    if amount_in <= 0 or reserve_in <= 0 or reserve_out <= 0:
        return 0
    with_fee = amount_in * FEE_NUMERATOR
    return with_fee * reserve_out // (reserve_in * FEE_DENOMINATOR + with_fee)


def liquidity_used(coin_amount: int, eth_amount: int, reserve_coin: int, reserve_eth: int) -> tuple[int, int]:
    """The (coin, eth) CoinPool.addLiquidity would take for these amounts at these reserves."""
    if reserve_coin == 0 or reserve_eth == 0:
        return coin_amount, eth_amount
    coin_optimal = eth_amount * reserve_coin // reserve_eth
    if coin_optimal <= coin_amount:
        return coin_optimal, eth_amount
    return coin_amount, coin_amount * reserve_eth // reserve_coin


def first_deposit_ok(coin_amount: int, eth_amount: int) -> bool:
    """The first deposit must mint more than the locked MINIMUM_LIQUIDITY."""
    return math.isqrt(coin_amount * eth_amount) > MINIMUM_LIQUIDITY


def price_eth(reserve_coin: int, reserve_eth: int) -> int | None:
    """Wei per whole coin (10^18 base units), rounded down; ``None`` for an empty pool."""
    if reserve_coin == 0 or reserve_eth == 0:
        return None
    return reserve_eth * 10**COIN_DECIMALS // reserve_coin


def apply_slippage(amount: int, bps: int) -> int:
    """``amount`` less ``bps`` basis points, rounded down."""
    return amount * (10_000 - bps) // 10_000
