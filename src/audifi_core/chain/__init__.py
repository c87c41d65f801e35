"""The chain context: durable chain jobs, the Chain port, and the indexer's projections."""

from .indexer import ChainMismatch, Indexer, IndexerSettings, TickReport
from .jobs import ChainJobs, Done, JobPlanner, Send, op_id
from .model import (
    PLATFORM,
    BlockRef,
    ChainCall,
    ChainJob,
    ChainJobView,
    ChainLog,
    ClaimDividends,
    CoinAddresses,
    DeployCoin,
    DeployMaster,
    Fees,
    JobError,
    JobKind,
    JobStatus,
    MasterAddresses,
    MintShares,
    Receipt,
    SignedTx,
    TransferShares,
    TxRecord,
    TxRequest,
    TxState,
    UnsignedTx,
    call_from_dict,
    call_to_dict,
    custody_signer,
)
from .ports import (
    Chain,
    ChainIdentity,
    ChainJobRepository,
    ChainProjectionRepository,
    ContractRef,
    DividendRecord,
    IndexerCursorRepository,
    NonceRepository,
)

__all__ = [
    "PLATFORM", "BlockRef", "Chain", "ChainCall", "ChainIdentity", "ChainJob", "ChainJobRepository",
    "ChainJobView", "ChainJobs", "ChainLog", "ChainMismatch", "ChainProjectionRepository", "ClaimDividends",
    "CoinAddresses", "ContractRef", "DeployCoin", "DeployMaster", "DividendRecord", "Done", "Fees",
    "Indexer", "IndexerCursorRepository", "IndexerSettings", "JobError", "JobKind", "JobPlanner",
    "JobStatus", "MasterAddresses", "MintShares", "NonceRepository", "Receipt", "Send", "SignedTx",
    "TickReport", "TransferShares", "TxRecord", "TxRequest", "TxState", "UnsignedTx", "call_from_dict",
    "call_to_dict", "custody_signer", "op_id",
]
