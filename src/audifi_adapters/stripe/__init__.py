"""Stripe: the SDK-backed gateway, the local dev gateway and its Stripe model, webhook verification."""

from .gateway import StripePaymentGateway, session_params
from .local import API_VERSION, LocalStripe, LocalStripeError, sign_payload
from .local_gateway import LocalPaymentGateway
from .webhook import TOLERANCE, split_secrets, verify_event

__all__ = ["API_VERSION", "LocalPaymentGateway", "LocalStripe", "LocalStripeError", "StripePaymentGateway",
           "TOLERANCE", "session_params", "sign_payload", "split_secrets", "verify_event"]
