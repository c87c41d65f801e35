"""Masters, their IPO, the share ledger and what the API shows of them.

A master is a recording registered on IPFS (audio + ERC-721 metadata JSON) and on-chain (a
``MasterShares`` ERC-721 and its ``DividendVault``, deployed by a chain job). Its IPO fixes the
number of shares (the contract's ``maxSupply``), their price and the sale window; the IPO status
is derived from the clock and the confirmed mint count, never stored.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

from audifi_core.chain.model import ChainJobView, JobError, UnsignedTx

__all__ = [
    "MasterStatus",
    "IpoStatus",
    "TokenState",
    "Money",
    "MasterMetadata",
    "Ipo",
    "Master",
    "Allocation",
    "TokenHolding",
    "IpoView",
    "MasterView",
    "MasterPage",
    "Holder",
    "SharesView",
    "DividendDeposit",
    "DividendsView",
    "Holding",
    "Transactions",
    "ClaimOutcome",
    "MAX_TOTAL_SHARES",
    "MAX_MINT_BATCH",
]

MAX_TOTAL_SHARES = 10_000
MAX_MINT_BATCH = 250


class MasterStatus(enum.StrEnum):
    PENDING = "pending"
    REGISTERED = "registered"
    FAILED = "failed"


class IpoStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    CLOSED = "closed"


class TokenState(enum.StrEnum):
    """Where a minted share stands in the sale (a share not in the ledger is free, in the treasury)."""

    RESERVED = "reserved"  # held by an open checkout
    SOLD = "sold"          # paid for through a checkout: leaves the treasury for the buyer
    ALLOCATED = "allocated"  # allocated to a user without a checkout (not counted as sold)
    ARTIST = "artist"      # unsold at the IPO's close: moved to the artist


@attrs.frozen
class Money:
    """An amount in the smallest unit of ``currency`` (``{"amount": 1999, "currency": "usd"}``)."""

    amount: int
    currency: str


@attrs.frozen
class MasterMetadata:
    title: str
    description: str | None = None
    genre: str | None = None
    bpm: int | None = None
    isrc: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


@attrs.frozen
class Ipo:
    """The share sale of one master. ``mint_requested`` counts shares in mint jobs (the supply cap
    is enforced on it); ``minted`` counts shares whose mint is confirmed on-chain."""

    master_id: str
    total_shares: int
    price: Money
    starts_at: datetime
    ends_at: datetime
    max_per_user: int
    created_at: datetime
    mint_requested: int = 0
    minted: int = 0
    shares_sold: int = 0
    supply_job_id: str | None = None
    launched_at: datetime | None = None
    closed_at: datetime | None = None

    def status(self, now: datetime) -> IpoStatus:
        """``closed`` from ``ends_at``; ``live`` from ``starts_at`` once fully minted; else ``scheduled``."""
        if now >= self.ends_at:
            return IpoStatus.CLOSED
        if now >= self.starts_at and self.minted >= self.total_shares:
            return IpoStatus.LIVE
        return IpoStatus.SCHEDULED

    def next_change(self, now: datetime) -> datetime | None:
        """The next instant at which :meth:`status` may change by the clock alone."""
        for t in (self.starts_at, self.ends_at):
            if t > now:
                return t
        return None


@attrs.frozen
class Master:
    id: str
    artist_id: str
    title: str
    metadata: dict[str, Any]
    audio_cid: str
    metadata_cid: str
    artist_address: str
    status: MasterStatus
    created_at: datetime
    updated_at: datetime
    contract_address: str | None = None
    dividend_address: str | None = None
    deploy_job_id: str | None = None
    error: JobError | None = None
    final_audio_cid: str | None = None
    locked_at: datetime | None = None
    ipo: Ipo | None = None

    @property
    def token_uri(self) -> str:
        return f"ipfs://{self.metadata_cid}"


@attrs.frozen
class Allocation:
    """Shares moved from the treasury to a user's custodial address by one transfer job, held until."""

    job_id: str
    master_id: str
    user_id: str
    address: str
    token_ids: tuple[int, ...] = attrs.field(converter=tuple)
    hold_until: datetime | None = None
    created_at: datetime | None = None


@attrs.frozen
class TokenHolding:
    """From the chain projection: ``count`` tokens of ``contract`` at ``owner`` (lowest ids first)."""

    contract: str
    owner: str
    count: int
    token_ids: tuple[int, ...] = attrs.field(converter=tuple)


# ------------------------------------------------------------------------------ views (API.md)
@attrs.frozen
class IpoView:
    """An IPO as clients see it; ``status`` derived from the clock and the confirmed mint count."""

    total_shares: int
    minted: int
    price_per_share: Money
    starts_at: datetime
    ends_at: datetime
    max_per_user: int
    shares_sold: int
    status: IpoStatus

    @classmethod
    def of(cls, ipo: Ipo, now: datetime) -> IpoView:
        return cls(total_shares=ipo.total_shares, minted=ipo.minted, price_per_share=ipo.price,
                   starts_at=ipo.starts_at, ends_at=ipo.ends_at, max_per_user=ipo.max_per_user,
                   shares_sold=ipo.shares_sold, status=ipo.status(now))


@attrs.frozen
class MasterView:
    """A master (API.md ``Master``); ``error`` and ``deployJobId`` added for a failed registration."""

    id: str
    artist_id: str
    title: str
    metadata: dict[str, Any]
    audio_cid: str
    metadata_cid: str
    contract_address: str | None
    dividend_address: str | None
    status: MasterStatus
    ipo: IpoView | None
    final_audio_cid: str | None
    locked_at: datetime | None
    created_at: datetime
    deploy_job_id: str | None = None
    error: JobError | None = None

    @classmethod
    def of(cls, m: Master, now: datetime) -> MasterView:
        return cls(id=m.id, artist_id=m.artist_id, title=m.title, metadata=m.metadata, audio_cid=m.audio_cid,
                   metadata_cid=m.metadata_cid, contract_address=m.contract_address,
                   dividend_address=m.dividend_address, status=m.status,
                   ipo=IpoView.of(m.ipo, now) if m.ipo is not None else None, final_audio_cid=m.final_audio_cid,
                   locked_at=m.locked_at, created_at=m.created_at, deploy_job_id=m.deploy_job_id, error=m.error)


@attrs.frozen
class MasterPage:
    items: list[MasterView]
    next_cursor: str | None


@attrs.frozen
class Holder:
    address: str
    shares: int
    user_id: str | None = None


@attrs.frozen
class SharesView:
    """Shareholders from the chain's ``Transfer`` events (the indexer's projection)."""

    total_shares: int
    minted: int
    holders: list[Holder]


@attrs.frozen
class DividendDeposit:
    amount: str
    tx_hash: str
    at: datetime | None


@attrs.frozen
class DividendsView:
    """Deposits from the chain's ``DividendDeposited`` events; wei as decimal strings.

    ``perShare`` is the vault's cumulative wei per share (each deposit adds ``(amount + dust) //
    supply``); ``claimable`` (with ``?address=``) is read from the vault for that address's shares.
    """

    total_deposited: str
    per_share: str
    deposits: list[DividendDeposit]
    claimable: str | None = None


@attrs.frozen
class Holding:
    master_id: str
    title: str
    address: str
    custodial: bool
    shares: int
    token_ids: list[int]
    withdrawable_at: datetime | None


@attrs.frozen
class Transactions:
    """Unsigned transactions for the user's own wallet: ``{to, data, value, chainId}`` each."""

    transactions: list[UnsignedTx]


@attrs.frozen
class ClaimOutcome:
    """A claim: transactions to sign (linked wallet) or a chain job (custodial address)."""

    transactions: list[UnsignedTx] | None = None
    job: ChainJobView | None = None
