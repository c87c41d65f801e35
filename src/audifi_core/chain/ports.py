"""What the chain context needs: a Chain, and repositories for jobs, nonces, the cursor, projections."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import attrs

from .model import (
    BlockRef,
    ChainJob,
    ChainLog,
    CoinAddresses,
    Fees,
    MasterAddresses,
    Receipt,
    SignedTx,
    TxRecord,
    TxRequest,
    UnsignedTx,
)

__all__ = [
    "Chain",
    "ChainJobRepository",
    "NonceRepository",
    "IndexerCursorRepository",
    "ChainProjectionRepository",
    "ChainIdentity",
    "ContractRef",
    "DividendRecord",
    "BROADCAST_REASONS",
]

#: ``ChainError.details["reason"]`` of a failed broadcast: what the runner does about it.
BROADCAST_REASONS = (
    "already_known",       # the node has it: treat as broadcast
    "nonce_too_low",       # the nonce is used: ours (look for a receipt) or another transaction's
    "underpriced",         # a replacement needs a higher fee
    "insufficient_funds",  # the sender cannot pay: wait for funds
    "unavailable",         # transient RPC failure: try again later
    "rejected",            # the node will never take these bytes
)


class Chain(Protocol):
    """AudiFi's contracts in domain terms. Every failure raises ``audifi_core.errors.ChainError``.

    Builders are pure (calldata with an explicit gas limit); reads and sends are async.
    """

    name: str
    chain_id: int

    def address_of(self, signer: str) -> str:
        """The address of a signer reference (``PLATFORM`` or ``custody_signer(i)``)."""
        ...

    def factories(self) -> dict[str, str]:
        """``{"MasterFactory": address, "CoinFactory": address}``."""
        ...

    # -- platform transactions (signed by the job runner)
    def create_master_tx(self, master_id: str, artist: str, token_uri: str) -> TxRequest: ...

    def set_max_supply_tx(self, shares: str, max_supply: int) -> TxRequest: ...

    def mint_tx(self, shares: str, to: str, count: int, op_key: str) -> TxRequest:
        """batchMint with ``opId = op_id(op_key)``: the contract refuses the same op twice."""
        ...

    def transfer_tx(self, shares: str, from_address: str, to: str, ids: tuple[int, ...]) -> TxRequest: ...

    def claim_tx(self, vault: str, ids: tuple[int, ...], to: str) -> TxRequest: ...

    def create_coin_tx(self, artist: str, name: str, symbol: str, initial_supply: int) -> TxRequest: ...

    def eth_transfer_tx(self, to: str, value: int) -> TxRequest: ...

    # -- unsigned transactions for users' own wallets
    def dividend_deposit(self, vault: str, amount: int) -> UnsignedTx: ...

    def dividend_claim(self, vault: str, ids: tuple[int, ...], to: str) -> UnsignedTx: ...

    def approve(self, token: str, spender: str, amount: int) -> UnsignedTx: ...

    def add_liquidity(self, pool: str, coin_amount: int, eth_amount: int, min_coin: int, min_eth: int,
                      to: str, deadline: int) -> UnsignedTx: ...

    def swap_eth_for_coin(self, pool: str, eth_in: int, min_out: int, to: str, deadline: int) -> UnsignedTx: ...

    def swap_coin_for_eth(self, pool: str, coin_in: int, min_out: int, to: str, deadline: int) -> UnsignedTx: ...

    def stake(self, staking: str, amount: int) -> UnsignedTx: ...

    def unstake(self, staking: str, amount: int) -> UnsignedTx: ...

    def notify_reward_amount(self, staking: str, amount: int, duration: int) -> UnsignedTx: ...

    # -- reads
    async def masters_of(self, master_id: str) -> MasterAddresses | None: ...

    async def coin_of(self, artist: str) -> CoinAddresses | None: ...

    async def owner_of(self, shares: str, token_id: int) -> str | None: ...

    async def total_minted(self, shares: str) -> int: ...

    async def max_supply(self, shares: str) -> int: ...

    async def eth_balance(self, address: str) -> int: ...

    async def token_balance(self, token: str, owner: str) -> int: ...

    async def allowance(self, token: str, owner: str, spender: str) -> int: ...

    async def staked_of(self, staking: str, user: str) -> int: ...

    async def earned(self, staking: str, user: str) -> int: ...

    async def reserves(self, pool: str) -> tuple[int, int]: ...

    async def claimable(self, vault: str, ids: tuple[int, ...]) -> int: ...

    # -- blocks and logs (the indexer)
    async def identity(self) -> ChainIdentity: ...

    async def head(self) -> int: ...

    async def block(self, number: int) -> BlockRef | None: ...

    async def logs(self, from_block: int, to_block: int, addresses: list[str]) -> list[ChainLog]:
        """Decoded logs of those contracts, ordered by (block, log index)."""
        ...

    # -- sending (the job runner)
    async def fees(self) -> Fees: ...

    async def nonce(self, address: str, block: int | str = "pending") -> int: ...

    def sign(self, signer: str, tx: TxRequest, nonce: int, fees: Fees) -> SignedTx: ...

    async def broadcast(self, raw: bytes) -> str:
        """Send signed bytes; ChainError with ``details["reason"]`` in BROADCAST_REASONS on failure."""
        ...

    async def receipt(self, tx_hash: str) -> Receipt | None: ...


@attrs.frozen
class ChainIdentity:
    chain_id: int
    genesis_hash: str


@attrs.frozen
class ContractRef:
    """A contract the indexer follows: ``kind`` in shares|vault|coin|staking|pool|factory."""

    address: str
    kind: str
    ref: str
    block_number: int


@attrs.frozen
class DividendRecord:
    vault: str
    amount: int
    tx_hash: str
    block_number: int
    log_index: int
    account: str | None = None
    at: datetime | None = None


class ChainJobRepository(Protocol):
    async def add(self, job: ChainJob) -> ChainJob:
        """Insert; when ``op_key`` exists already, return that job instead (and insert nothing)."""
        ...

    async def get(self, job_id: str) -> ChainJob | None: ...

    async def get_by_op_key(self, op_key: str) -> ChainJob | None: ...

    async def lock(self, job_id: str) -> ChainJob | None:
        """Read a job and hold it until this unit of work ends (two runners never both act on it)."""
        ...

    async def notify(self) -> None:
        """Wake the job runner once this unit of work commits."""
        ...

    async def update(self, job: ChainJob) -> None: ...

    async def queued(self, limit: int) -> list[ChainJob]:
        """Oldest first."""
        ...

    async def submitted(self) -> list[ChainJob]: ...

    async def add_tx(self, tx: TxRecord) -> None: ...

    async def update_tx(self, tx: TxRecord) -> None: ...

    async def txs_of(self, job_id: str) -> list[TxRecord]:
        """In creation order."""
        ...

    async def open_txs(self) -> list[TxRecord]:
        """Transactions not yet final, replaced or dropped; by (sender, nonce, creation)."""
        ...


class NonceRepository(Protocol):
    async def get(self, address: str) -> int | None: ...

    async def init(self, address: str, nonce: int) -> None:
        """Create the row if absent (an existing row is left alone)."""
        ...

    async def advance(self, address: str, expected: int, to: int | None = None) -> bool:
        """``nonce = to`` (default ``expected + 1``) only where ``nonce = expected``: two signers never
        share a nonce."""
        ...

    async def reset(self, address: str, nonce: int) -> None: ...

    async def forget_all(self) -> None:
        """Drop every row (a new dev chain): nonces are read from the chain again."""
        ...


class IndexerCursorRepository(Protocol):
    async def identity(self) -> ChainIdentity | None: ...

    async def set_identity(self, identity: ChainIdentity) -> None: ...

    async def cursor(self) -> BlockRef | None:
        """The last block indexed."""
        ...

    async def set_cursor(self, block: BlockRef | None) -> None: ...

    async def remember(self, block: BlockRef) -> None:
        """Keep a block's hash for reorg detection."""
        ...

    async def blocks_after(self, number: int) -> list[BlockRef]:
        """Remembered blocks numbered above ``number``, highest first."""
        ...

    async def forget_after(self, number: int) -> None: ...

    async def prune_below(self, number: int) -> None: ...


class ChainProjectionRepository(Protocol):
    async def add_contract(self, contract: ContractRef) -> None: ...

    async def contracts(self) -> list[ContractRef]: ...

    async def record_log(self, log: ChainLog, at: datetime | None = None) -> bool:
        """Store once per (tx hash, log index); ``False`` when already stored."""
        ...

    async def set_owner(self, contract: str, token_id: int, owner: str, block_number: int,
                        log_index: int) -> None:
        """Record the newest transfer of a token (older positions never overwrite newer ones)."""
        ...

    async def owner(self, contract: str, token_id: int) -> str | None: ...

    async def holders(self, contract: str) -> dict[str, int]:
        """owner address → number of tokens (zero address excluded)."""
        ...

    async def tokens_of(self, contract: str, owner: str, limit: int = 100) -> list[int]: ...

    async def dividends(self, vault: str, event: str = "DividendDeposited") -> list[DividendRecord]: ...

    async def staked(self, staking: str, user: str) -> int: ...

    async def rollback_after(self, block_number: int) -> int:
        """Undo everything above ``block_number``; returns the number of logs removed."""
        ...

    async def clear(self) -> None:
        """Forget all chain-derived state (a new dev chain)."""
        ...
