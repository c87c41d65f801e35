"""Settings of the payments context (built from configuration by the composition root)."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from .model import DEFAULT_PLANS, Plan

__all__ = ["PaymentSettings", "TRANSFER_PREFIX", "RETURN_PREFIX", "WITHDRAW_PREFIX"]

#: op_key prefixes of the chain jobs this context queues (the rest of the key: the checkout session id).
TRANSFER_PREFIX = "pay:shares:"
RETURN_PREFIX = "pay:return:"
WITHDRAW_PREFIX = "pay:withdraw:"


@attrs.frozen
class PaymentSettings:
    plans: tuple[Plan, ...] = DEFAULT_PLANS
    #: plan id → the gateway's price id; a plan without one is not offered.
    price_ids: dict[str, str] = attrs.Factory(dict)
    checkout_ttl: int = 30 * 60
    #: added to ``checkout_ttl`` so the session still lives 30 minutes after the gateway creates it
    checkout_ttl_margin: int = 60
    max_open_checkouts: int = 3
    checkout_per_user: tuple[int, int] = (10, 60)
    checkout_per_ip: tuple[int, int] = (30, 60)
    withdraw_per_user: tuple[int, int] = (10, 3600)
    hold_days: int = 7
    new_account_days: int = 30
    new_account_extra_days: int = 7
    large_amount: int = 50_000  # in the smallest currency unit
    large_amount_extra_days: int = 14
    wallet_min_age: int = 24 * 3600
    success_url: str = "http://127.0.0.1:8080/payments/done?session_id={CHECKOUT_SESSION_ID}"
    cancel_url: str = "http://127.0.0.1:8080/payments/canceled"
    return_url: str = "http://127.0.0.1:8080/"
    reconcile_batch: int = 100
    #: an open checkout this long past its expiry with no ``expired`` event: ask the gateway
    expiry_grace: int = 10 * 60
    #: a checkout stuck ``creating`` this long (a crash between reserve and create): finish it
    creating_grace: int = 5 * 60
    task_lease: int = 120
    task_batch: int = 20

    def plan(self, plan_id: str) -> Plan | None:
        return next((p for p in self.plans if p.id == plan_id), None)

    def plan_of_price(self, price_id: str | None) -> str | None:
        if price_id is None:
            return None
        return next((p for p, pid in self.price_ids.items() if pid == price_id), None)

    def offered(self) -> list[str]:
        return [p.id for p in self.plans if p.id in self.price_ids]

    def hold_until(self, *, now: datetime, account_created: datetime | None, amount: int) -> datetime:
        """Withdrawable from: the base hold, longer for new accounts and for large amounts."""
        days = self.hold_days
        if account_created is None or now - account_created < timedelta(days=self.new_account_days):
            days += self.new_account_extra_days
        if amount >= self.large_amount:
            days += self.large_amount_extra_days
        return now + timedelta(days=days)
