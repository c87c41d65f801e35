"""The payments context: share checkout and fulfilment, subscriptions, webhooks, withdrawals."""

from .model import (
    DEFAULT_PLANS,
    ENTITLED_STATUSES,
    OPEN_STATUSES,
    Checkout,
    CheckoutKind,
    CheckoutRequest,
    CheckoutStatus,
    CheckoutView,
    GatewayEvent,
    GatewayInvoice,
    GatewaySession,
    GatewaySubscription,
    InvoiceView,
    Plan,
    PortalView,
    Reversal,
    Subscription,
    SubscriptionView,
    Task,
    WebhookReceipt,
)
from .ports import BadSignature, Entitlements, PaymentGateway, PaymentsRepository, ShareSales
from .service import PaymentEntitlements, PaymentsService
from .settings import RETURN_PREFIX, TRANSFER_PREFIX, WITHDRAW_PREFIX, PaymentSettings

__all__ = [
    "DEFAULT_PLANS", "ENTITLED_STATUSES", "OPEN_STATUSES", "BadSignature", "Checkout", "CheckoutKind",
    "CheckoutRequest", "CheckoutStatus", "CheckoutView", "Entitlements", "GatewayEvent", "GatewayInvoice",
    "GatewaySession", "GatewaySubscription", "InvoiceView", "PaymentEntitlements", "PaymentGateway",
    "PaymentSettings", "PaymentsRepository", "PaymentsService", "Plan", "PortalView", "RETURN_PREFIX", "Reversal",
    "ShareSales", "Subscription", "SubscriptionView", "TRANSFER_PREFIX", "Task", "WITHDRAW_PREFIX",
    "WebhookReceipt",
]
