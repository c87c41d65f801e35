"""The artist coin context: one ERC-20 per artist, its coin/ETH pool and staking, non-custodial."""

from .cache import BlockCache
from .model import (
    ArtistCoin,
    CoinAmountRequest,
    CoinStatus,
    CoinTransactions,
    CoinView,
    DeployCoinRequest,
    LiquidityRequest,
    PoolView,
    RewardsRequest,
    StakeView,
    SwapOut,
    SwapQuote,
    SwapRequest,
    amount_out,
    liquidity_used,
    price_eth,
)
from .ports import CoinReads, CoinRepository, EventCursor, TokenInfo
from .service import EVENTS_CONSUMER, STAKING_EVENTS, CoinService, CoinSettings

__all__ = [
    "CoinAmountRequest", "ArtistCoin", "BlockCache", "CoinReads", "CoinRepository", "CoinService", "CoinSettings",
    "CoinStatus", "CoinView", "DeployCoinRequest", "EVENTS_CONSUMER", "EventCursor", "LiquidityRequest",
    "PoolView", "RewardsRequest", "STAKING_EVENTS", "StakeView", "SwapOut", "SwapQuote", "SwapRequest",
    "TokenInfo", "CoinTransactions", "amount_out", "liquidity_used", "price_eth",
]
