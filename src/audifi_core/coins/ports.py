"""What the coin context needs beyond the Chain port: its repository and a few ERC-20 reads."""

from __future__ import annotations

from typing import Protocol

import attrs

from .model import ArtistCoin

__all__ = ["CoinRepository", "TokenInfo", "CoinReads", "EventCursor"]


@attrs.frozen
class TokenInfo:
    name: str
    symbol: str
    decimals: int
    total_supply: int


@attrs.frozen
class EventCursor:
    """The last indexed chain log the coin context turned into domain events."""

    block_number: int
    log_index: int


class CoinRepository(Protocol):
    """Artists' coins, one per artist (``uow.coins``)."""

    async def add(self, coin: ArtistCoin) -> None:
        """Insert; ``Conflict`` when the artist has a coin already (a unique constraint, not a read)."""
        ...

    async def replace_failed(self, coin: ArtistCoin, failed_job_id: str) -> bool:
        """Overwrite the artist's coin only while it is the failed one of ``failed_job_id``."""
        ...

    async def get(self, artist_id: str) -> ArtistCoin | None: ...

    async def by_job(self, job_id: str) -> ArtistCoin | None: ...

    async def update(self, coin: ArtistCoin) -> None: ...

    async def deployed(self) -> list[ArtistCoin]:
        """Every deployed coin, oldest first."""
        ...

    async def forget_chain_state(self) -> int:
        """A new dev chain: drop deployed coins (their contracts are gone) and the event cursor."""
        ...

    async def event_cursor(self) -> EventCursor | None: ...

    async def set_event_cursor(self, cursor: EventCursor) -> None: ...


class CoinReads(Protocol):
    """ERC-20 reads the Chain port lacks. Every failure raises ``ChainError``."""

    async def token_info(self, token: str) -> TokenInfo:
        """name, symbol, decimals and totalSupply of an ERC-20 (the coin, or the pool's LP token)."""
        ...

    async def total_supply(self, token: str) -> int: ...
