"""Chain models: jobs (durable chain side effects), the calls they perform, transactions, logs."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, ClassVar

import attrs

__all__ = [
    "JobKind",
    "JobStatus",
    "JobError",
    "ChainJob",
    "ChainJobView",
    "ChainCall",
    "DeployMaster",
    "MintShares",
    "TransferShares",
    "ClaimDividends",
    "DeployCoin",
    "call_to_dict",
    "call_from_dict",
    "PLATFORM",
    "custody_signer",
    "UnsignedTx",
    "TxRequest",
    "SignedTx",
    "TxRecord",
    "TxState",
    "Receipt",
    "BlockRef",
    "ChainLog",
    "MasterAddresses",
    "CoinAddresses",
    "Fees",
]

#: The signer reference of the platform key (PRIVATE_KEY, or the funded dev account).
PLATFORM = "platform"


def custody_signer(index: int) -> str:
    """The signer reference of custodial account ``index`` (HD custody)."""
    return f"custody:{int(index)}"


class JobKind(enum.StrEnum):
    DEPLOY_MASTER = "deploy_master"
    MINT = "mint"
    TRANSFER = "transfer"
    WITHDRAW = "withdraw"
    CLAIM = "claim"
    DEPLOY_COIN = "deploy_coin"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"


@attrs.frozen
class JobError:
    code: str
    message: str


# ---------------------------------------------------------------------------------- domain calls
@attrs.frozen
class DeployMaster:
    """MasterFactory.createMaster(keccak(master_id), artist, token_uri), then setMaxSupply."""

    op: ClassVar[str] = "deploy_master"
    master_id: str
    artist: str
    token_uri: str
    max_supply: int | None = None


@attrs.frozen
class MintShares:
    """MasterShares.batchMint(to, count, opId(op_key)); count 1…250."""

    op: ClassVar[str] = "mint"
    shares: str
    to: str
    count: int


@attrs.frozen
class TransferShares:
    """MasterShares.batchTransfer(from, to, ids), signed by ``signer`` (the platform or a custodial key)."""

    op: ClassVar[str] = "transfer"
    shares: str
    from_address: str
    to: str
    ids: tuple[int, ...] = attrs.field(converter=tuple)
    signer: str = PLATFORM


@attrs.frozen
class ClaimDividends:
    """DividendVault.claim(ids, to), signed by the owner of the ids (platform or custodial key)."""

    op: ClassVar[str] = "claim"
    vault: str
    ids: tuple[int, ...] = attrs.field(converter=tuple)
    to: str = ""
    signer: str = PLATFORM


@attrs.frozen
class DeployCoin:
    """CoinFactory.createCoin(artist, name, symbol, initialSupply)."""

    op: ClassVar[str] = "deploy_coin"
    artist: str
    name: str
    symbol: str
    initial_supply: int


ChainCall = DeployMaster | MintShares | TransferShares | ClaimDividends | DeployCoin
_CALLS: dict[str, type] = {c.op: c for c in (DeployMaster, MintShares, TransferShares, ClaimDividends,
                                              DeployCoin)}
_BIG = ("initial_supply",)  # uint256 amounts are kept as decimal strings (JSON-safe)


def call_to_dict(call: ChainCall) -> dict[str, Any]:
    out: dict[str, Any] = {"op": call.op}
    for a in attrs.fields(type(call)):
        v = getattr(call, a.name)
        if a.name in _BIG:
            v = str(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[a.name] = v
    return out


def call_from_dict(data: dict[str, Any]) -> ChainCall:
    d = dict(data)
    cls = _CALLS[d.pop("op")]
    for name in _BIG:
        if name in d:
            d[name] = int(d[name])
    return cls(**d)


# ---------------------------------------------------------------------------------- jobs
@attrs.frozen
class ChainJobView:
    """A durable chain operation as clients see it (API.md ``ChainJob``)."""

    id: str
    kind: JobKind
    status: JobStatus
    tx_hashes: list[str]
    result: dict[str, Any] | None
    error: JobError | None
    created_at: datetime
    updated_at: datetime


@attrs.frozen
class ChainJob:
    """A job: the API fields plus what the runner needs (the call, its steps and their state)."""

    id: str
    kind: JobKind
    status: JobStatus
    requester_id: str
    op_key: str
    call: ChainCall
    created_at: datetime
    updated_at: datetime
    tx_hashes: tuple[str, ...] = ()
    result: dict[str, Any] | None = None
    error: JobError | None = None
    attempts: int = 0
    step: int = 0
    state: dict[str, Any] = attrs.Factory(dict)

    def view(self) -> ChainJobView:
        return ChainJobView(id=self.id, kind=self.kind, status=self.status, tx_hashes=list(self.tx_hashes),
                            result=self.result, error=self.error, created_at=self.created_at,
                            updated_at=self.updated_at)


# ---------------------------------------------------------------------------------- transactions
@attrs.frozen
class UnsignedTx:
    """A transaction for a user's own wallet to sign: ``{to, data, value, chainId}`` (value in wei)."""

    to: str
    data: str
    value: str
    chain_id: int


@attrs.frozen
class TxRequest:
    """What a signer must send: target, calldata (0x hex), wei value and an explicit gas limit."""

    to: str
    data: str
    value: int = 0
    gas: int = 200_000
    label: str = ""


@attrs.frozen
class Fees:
    """EIP-1559 fee caps in wei."""

    max_fee: int
    priority_fee: int

    def bumped(self, factor_pct: int = 125) -> Fees:
        return Fees(max_fee=self.max_fee * factor_pct // 100 + 1,
                    priority_fee=self.priority_fee * factor_pct // 100 + 1)


@attrs.frozen
class SignedTx:
    raw: bytes
    tx_hash: str
    sender: str
    nonce: int


class TxState(enum.StrEnum):
    SIGNED = "signed"        # stored, maybe not yet broadcast
    BROADCAST = "broadcast"  # the node accepted it
    MINED = "mined"          # in a block, not final yet
    FINAL = "final"          # in a final block (succeeded or reverted: see ``success``)
    REPLACED = "replaced"    # another transaction with the same nonce became final
    DROPPED = "dropped"      # never broadcast (rejected); its nonce was filled by a no-op


@attrs.frozen
class TxRecord:
    """A signed transaction of a job, stored before it is broadcast and re-sent byte for byte."""

    id: str
    job_id: str | None
    step: int
    sender: str
    nonce: int
    raw: bytes
    tx_hash: str
    max_fee: int
    priority_fee: int
    state: TxState
    created_at: datetime
    updated_at: datetime
    block_number: int | None = None
    success: bool | None = None
    broadcasts: int = 0


@attrs.frozen
class ChainLog:
    """One log of one of our contracts, decoded by event name; ``topic_count`` tells ERC-721 from ERC-20."""

    address: str
    event: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    topic_count: int


@attrs.frozen
class Receipt:
    tx_hash: str
    success: bool
    block_number: int
    block_hash: str
    gas_used: int
    logs: tuple[ChainLog, ...] = ()


@attrs.frozen
class BlockRef:
    number: int
    hash: str
    parent_hash: str
    timestamp: int = 0


@attrs.frozen
class MasterAddresses:
    shares: str
    vault: str


@attrs.frozen
class CoinAddresses:
    coin: str
    staking: str
    pool: str
