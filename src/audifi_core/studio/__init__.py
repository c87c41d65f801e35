"""V Studio: live collaborative sessions on a master (audiences, decisions, votes, lock)."""

from .model import (
    Audience,
    Contribution,
    Decision,
    DecisionStatus,
    DecisionView,
    MasterRef,
    Person,
    PresenceChange,
    SessionMeta,
    SessionStatus,
    StudioSession,
    StudioSessionView,
    Tally,
    VoteResult,
    pick_winner,
)
from .ports import (
    STUDIO_SUBSCRIBER_ENTITLEMENT,
    Broadcaster,
    Entitlements,
    Presence,
    ShareHoldings,
    StudioMasters,
    StudioRepository,
)
from .pump import TallyPump
from .service import StudioService, StudioSettings

__all__ = [
    "Audience",
    "Broadcaster",
    "Contribution",
    "Decision",
    "DecisionStatus",
    "DecisionView",
    "Entitlements",
    "MasterRef",
    "Person",
    "Presence",
    "PresenceChange",
    "STUDIO_SUBSCRIBER_ENTITLEMENT",
    "SessionMeta",
    "SessionStatus",
    "ShareHoldings",
    "StudioMasters",
    "StudioRepository",
    "StudioService",
    "StudioSession",
    "StudioSessionView",
    "StudioSettings",
    "Tally",
    "TallyPump",
    "VoteResult",
    "pick_winner",
]
