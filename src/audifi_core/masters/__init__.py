"""The masters context: master registration, IPO, share minting, shareholders and dividends."""

from .model import (
    MAX_MINT_BATCH,
    MAX_TOTAL_SHARES,
    Allocation,
    ClaimOutcome,
    DividendDeposit,
    DividendsView,
    Holder,
    Holding,
    Ipo,
    IpoStatus,
    IpoView,
    Master,
    MasterMetadata,
    MasterPage,
    MasterStatus,
    MasterView,
    Money,
    SharesView,
    TokenHolding,
    TokenState,
    Transactions,
)
from .ports import MasterReads, MasterRepository
from .service import MasterService, MasterSettings

__all__ = [
    "MAX_MINT_BATCH", "MAX_TOTAL_SHARES", "Allocation", "ClaimOutcome", "DividendDeposit", "DividendsView", "Holder",
    "Holding", "Ipo", "IpoStatus", "IpoView", "Master", "MasterMetadata", "MasterPage", "MasterReads",
    "MasterRepository", "MasterService", "MasterSettings", "MasterStatus", "MasterView", "Money", "SharesView",
    "TokenHolding", "TokenState", "Transactions",
]
