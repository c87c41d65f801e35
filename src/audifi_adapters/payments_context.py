"""The payments context for the composition root (see ``contexts.py``).

Attaches ``platform.payments`` (the :class:`PaymentsService`; other contexts use
``platform.payments.has_entitlement(user_id, name)`` or ``platform.payments.entitlements.has(…)``)
and, in ``platform.extras``, ``payments.gateway`` (the gateway in use) and, with the dev gateway,
``payments.local`` (its :class:`LocalStripe`).

The gateway: ``StripePaymentGateway`` when ``STRIPE_SECRET_KEY`` is set (production), or when the
setting ``STRIPE_API_BASE`` points the SDK at a Stripe-compatible endpoint (key from the setting
``STRIPE_API_KEY``); otherwise (dev) the local gateway whose checkout URL is
``/dev/checkout/:id/complete``, signing its events with ``STRIPE_WEBHOOK_SECRET`` or a secret
generated at start.

Settings (environment): ``STRIPE_WEBHOOK_SECRET`` (comma-separated while rotating) and
``STRIPE_WEBHOOK_SECRET_PREVIOUS``; ``STRIPE_PRICE_FAN_MONTHLY`` / ``STRIPE_PRICE_FAN_YEARLY`` /
``STRIPE_PRICE_ARTIST_PRO_MONTHLY`` (plan → price id); ``PAYMENTS_HOLD_DAYS`` (7),
``PAYMENTS_NEW_ACCOUNT_DAYS`` (30), ``PAYMENTS_LARGE_AMOUNT`` (50000, smallest unit),
``PAYMENTS_MAX_OPEN_CHECKOUTS`` (3), ``PAYMENTS_CHECKOUT_PER_USER`` / ``PAYMENTS_CHECKOUT_PER_IP``
("count/seconds": 10/60, 30/60), ``PAYMENTS_SUCCESS_URL`` / ``PAYMENTS_CANCEL_URL`` /
``PAYMENTS_RETURN_URL``, ``PAYMENTS_TASK_INTERVAL`` (1 s), ``PAYMENTS_RECONCILE_INTERVAL`` (60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import attrs
import structlog

from audifi_core.payments.model import DEFAULT_PLANS
from audifi_core.payments.service import PaymentsService
from audifi_core.payments.settings import PaymentSettings

from .config import ConfigError
from .payments.memory import register_memory_payments_repository
from .payments.postgres import register_postgres_payments_repository
from .postgres.db import PostgresDatabase
from .stripe import LocalPaymentGateway, LocalStripe, StripePaymentGateway, split_secrets
from .tasks import start_background

__all__ = ["open_context", "settings_of", "uses_local_gateway", "PRICE_SETTINGS"]

log = structlog.get_logger("audifi.payments")

PRICE_SETTINGS = {p.id: "STRIPE_PRICE_" + p.id.upper() for p in DEFAULT_PLANS}


def uses_local_gateway(config: Any) -> bool:
    """The dev gateway is live: no Stripe key and no Stripe-compatible endpoint configured."""
    return not config.production and not config.stripe_secret_key and not config.setting("STRIPE_API_BASE")


def _rule(config: Any, name: str, default: tuple[int, int]) -> tuple[int, int]:
    raw = config.setting(name)
    if not raw:
        return default
    n, _, secs = raw.partition("/")
    return int(n), int(secs or default[1])


def settings_of(config: Any, *, local: bool) -> PaymentSettings:
    base = config.public_url.rstrip("/")
    prices = {plan: config.setting(name) for plan, name in PRICE_SETTINGS.items() if config.setting(name)}
    if local:
        prices = {p.id: prices.get(p.id, f"price_local_{p.id}") for p in DEFAULT_PLANS}
    s = PaymentSettings(
        price_ids=prices,
        hold_days=int(config.setting("PAYMENTS_HOLD_DAYS", "7")),
        new_account_days=int(config.setting("PAYMENTS_NEW_ACCOUNT_DAYS", "30")),
        large_amount=int(config.setting("PAYMENTS_LARGE_AMOUNT", "50000")),
        max_open_checkouts=int(config.setting("PAYMENTS_MAX_OPEN_CHECKOUTS", "3")),
        checkout_per_user=_rule(config, "PAYMENTS_CHECKOUT_PER_USER", (10, 60)),
        checkout_per_ip=_rule(config, "PAYMENTS_CHECKOUT_PER_IP", (30, 60)),
        success_url=config.setting("PAYMENTS_SUCCESS_URL", f"{base}/payments/done?session_id={{CHECKOUT_SESSION_ID}}"),
        cancel_url=config.setting("PAYMENTS_CANCEL_URL", f"{base}/payments/canceled"),
        return_url=config.setting("PAYMENTS_RETURN_URL", f"{base}/"),
    )
    return s


async def _every(name: str, fn: Any, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - keep the loop alive; every step is idempotent
            log.warning("payments_background_failed", task=name, error=repr(e))


async def _run_tasks_forever(service: PaymentsService, interval: float) -> None:
    while True:
        await service.wait_for_work(interval)
        try:
            while await service.run_tasks():
                pass
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            log.warning("payments_tasks_failed", error=repr(e))


def _subscription_in_user_view(platform: Any, service: PaymentsService) -> None:
    """``User.subscription`` follows the stored subscription: wrap the auth service's ``view``.

    (A stop-gap until the auth service offers a hook for it; see the payments report.)"""
    auth = platform.auth
    original = auth.view

    async def view(user: Any) -> Any:
        v = await original(user)
        try:
            summary = await service.subscription_summary(user.id)
        except Exception as e:  # noqa: BLE001 - a user view must not fail on payments
            log.warning("subscription_summary_failed", user_id=user.id, error=repr(e))
            return v
        return attrs.evolve(v, subscription=summary) if summary else v

    auth.view = view


async def open_context(platform: Any, stack: contextlib.AsyncExitStack, *, run_background: bool) -> None:
    if isinstance(platform.database, PostgresDatabase):
        register_postgres_payments_repository()
    else:
        register_memory_payments_repository()
    cfg = platform.config
    webhook_secrets = split_secrets(cfg.stripe_webhook_secret, cfg.setting("STRIPE_WEBHOOK_SECRET_PREVIOUS"))
    api_base = cfg.setting("STRIPE_API_BASE")
    local = uses_local_gateway(cfg)
    engine: LocalStripe | None = None
    gateway: Any
    if not local:
        key = cfg.stripe_secret_key or cfg.setting("STRIPE_API_KEY")
        if not key:
            raise ConfigError("STRIPE_API_BASE needs STRIPE_API_KEY (or STRIPE_SECRET_KEY in production)")
        if not webhook_secrets:
            raise ConfigError("Stripe needs STRIPE_WEBHOOK_SECRET")
        gateway = StripePaymentGateway(key, webhook_secrets, api_base=api_base)
        stack.push_async_callback(gateway.close)
        platform.adapters["payments"] = "stripe"
    else:
        if not webhook_secrets:
            webhook_secrets = ["whsec_dev_" + secrets.token_urlsafe(24)]
        base = cfg.public_url.rstrip("/")
        engine = LocalStripe(platform.clock.now, url_for=lambda sid: f"{base}/dev/checkout/{sid}/complete",
                             portal_base=f"{base}/dev/portal", hosted_base=f"{base}/dev/invoices")
        gateway = LocalPaymentGateway(engine, webhook_secrets)
        stack.push_async_callback(gateway.close)
        platform.adapters["payments"] = "local"
    settings = settings_of(cfg, local=local)
    if engine is not None:
        for plan in settings.plans:
            engine.add_price(settings.price_ids[plan.id], plan.price.amount, plan.price.currency, plan.interval,
                             plan.name)
    service = PaymentsService(uow=platform.uow, gateway=gateway, shares=platform.masters, jobs=platform.jobs,
                              limiter=platform.limiter, mailer=platform.mailer, clock=platform.clock, ids=platform.ids,
                              settings=settings)
    service.install_hooks()
    if isinstance(gateway, LocalPaymentGateway):
        gateway.deliver = service.receive_webhook
    platform.payments = service
    platform.extras["payments.gateway"] = gateway
    if engine is not None:
        platform.extras["payments.local"] = engine
    _subscription_in_user_view(platform, service)
    if run_background:
        start_background(stack, _run_tasks_forever(service, float(cfg.setting("PAYMENTS_TASK_INTERVAL", "1.0"))),
                         "audifi-payments-tasks")
        start_background(stack, _every("reconcile", service.reconcile,
                                       float(cfg.setting("PAYMENTS_RECONCILE_INTERVAL", "60"))),
                         "audifi-payments-reconciler")
        if isinstance(gateway, LocalPaymentGateway):
            start_background(stack, _every("local-expiry", gateway.expire_due, 5.0), "audifi-payments-local-expiry")
    log.info("payments_ready", gateway=platform.adapters["payments"], plans=",".join(settings.offered()))
