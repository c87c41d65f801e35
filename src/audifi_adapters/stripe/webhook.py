"""Webhook signature verification with the official SDK (``stripe.Webhook.construct_event``).

The signature is checked on the raw body with a 300 s tolerance; the header may carry several
``v1`` signatures (Stripe signs with the old and the new secret while one rotates), and we may hold
several secrets ourselves (``STRIPE_WEBHOOK_SECRET`` as a comma-separated list): any match passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import stripe

from audifi_core.payments.model import GatewayEvent
from audifi_core.payments.ports import BadSignature

__all__ = ["verify_event", "TOLERANCE", "split_secrets"]

TOLERANCE = 300


def split_secrets(*values: str | None) -> list[str]:
    out: list[str] = []
    for v in values:
        for s in (v or "").split(","):
            s = s.strip()
            if s and s not in out:
                out.append(s)
    return out


def verify_event(payload: bytes, signature: str | None, secrets: Sequence[str],
                 tolerance: int = TOLERANCE) -> GatewayEvent:
    if not secrets:
        raise BadSignature("no webhook secret is configured")
    if not signature:
        raise BadSignature("missing Stripe-Signature header")
    last: Exception | None = None
    for secret in secrets:
        try:
            event = stripe.Webhook.construct_event(payload, signature, secret, tolerance)
        except stripe.SignatureVerificationError as e:
            last = e
            continue
        except (ValueError, UnicodeDecodeError) as e:
            raise BadSignature(f"malformed payload: {e}") from e
        data = event.to_dict()
        obj = (data.get("data") or {}).get("object")
        if not data.get("id") or not data.get("type") or not isinstance(obj, dict):
            raise BadSignature("not an event")
        return GatewayEvent(id=str(data["id"]), type=str(data["type"]),
                            created=datetime.fromtimestamp(int(data.get("created") or 0), UTC), object=obj)
    msg = str(last) if last else "invalid signature"
    if "tolerance" in msg:
        raise BadSignature("stale signature (timestamp outside the tolerance)")
    raise BadSignature("signature does not match")
