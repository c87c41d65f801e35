"""Fixtures of the payments tests: the Stripe stand-in, and app configs pointing the SDK at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest

from audifi_adapters.config import Config

from .stripe_standin import TEST_KEY, TEST_SECRET, StripeStandIn

PRICES = {"fan_monthly": ("price_fan_monthly", 499, "month"), "fan_yearly": ("price_fan_yearly", 4990, "year"),
          "artist_pro_monthly": ("price_artist_pro_monthly", 1999, "month")}


@pytest.fixture
async def standin(clock) -> AsyncIterator[StripeStandIn]:
    """A Stripe stand-in on a loopback port, with the plans' prices, on the test's clock."""
    s = await StripeStandIn(clock.now).start()
    for price_id, amount, interval in PRICES.values():
        s.stripe.add_price(price_id, amount, "usd", interval)
    try:
        yield s
    finally:
        await s.close()


def with_settings(config: Config, **settings: str) -> Config:
    return attrs.evolve(config, settings={**dict(config.settings), **settings})


def quick(config: Config, **settings: str) -> Config:
    """Fast polling of the chain, the masters scheduler and the payments task runner (tests)."""
    return attrs.evolve(with_settings(config, MASTER_TICK_INTERVAL="0.1", PAYMENTS_TASK_INTERVAL="0.05",
                                      PAYMENTS_CHECKOUT_PER_IP="1000/60", PAYMENTS_CHECKOUT_PER_USER="1000/60",
                                      **settings), chain_poll_interval=0.05)


@pytest.fixture
def stripe_config(backend: Config, standin: StripeStandIn) -> Config:
    """The ``backend`` config (memory, or PostgreSQL + Redis) with the real SDK gateway on the stand-in."""
    prices = {f"STRIPE_PRICE_{plan.upper()}": price for plan, (price, _, _) in PRICES.items()}
    return attrs.evolve(quick(backend, STRIPE_API_BASE=standin.url, STRIPE_API_KEY=TEST_KEY,
                              PAYMENTS_RECONCILE_INTERVAL="3600", **prices),
                        stripe_webhook_secret=TEST_SECRET)
