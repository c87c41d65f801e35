"""The notifications context: a per-user inbox and mail, fed by domain events."""

from .model import MailState, Notification, NotificationKind, NotificationPage, NotificationView
from .ports import NotificationRepository
from .service import CONSUMER, NotificationService, format_money, format_wei

__all__ = [
    "MailState",
    "Notification",
    "NotificationKind",
    "NotificationPage",
    "NotificationView",
    "NotificationRepository",
    "NotificationService",
    "CONSUMER",
    "format_money",
    "format_wei",
]
