"""Test kit of the payments tests: webhook delivery, live IPOs, checkouts, events on the bus."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiohttp.test_utils import TestClient

from ..http.helpers import bearer, mailed_token, platform_of
from ..masters.kit import artist, ipo_body, registered, until, wait_job
from .stripe_standin import StripeStandIn

__all__ = ["deliver", "deliver_many", "live_ipo", "checkout", "sign_in_many", "collect", "service", "master_view",
           "run_tasks", "owner_of"]


async def deliver(client: TestClient, event: dict[str, Any], **kw: Any) -> Any:
    """POST ``event`` to the webhook as Stripe would (signed with the test secret unless told)."""
    body, headers = StripeStandIn.signed(event, **kw)
    return await client.post("/payments/webhook", data=body, headers=headers)


async def deliver_many(client: TestClient, events: list[dict[str, Any]], times: int = 5,
                       seed: int = 7) -> list[Any]:
    """Every event ``times`` times, shuffled, all at once; asserts each was answered 200."""
    batch = [e for e in events for _ in range(times)]
    random.Random(seed).shuffle(batch)
    rs = await asyncio.gather(*(deliver(client, e) for e in batch))
    for r in rs:
        assert r.status == 200, await r.text()
    return rs


def service(client: TestClient) -> Any:
    return platform_of(client).payments


async def run_tasks(client: TestClient) -> None:
    """Run the payments tasks now (subscription fetches) and wait until none is left (the background
    runner may hold some)."""
    while await service(client).run_tasks():
        pass

    async def drained() -> bool:
        async with platform_of(client).uow(readonly=True) as u:
            return await u.payments.pending_tasks() == 0

    await until(drained)


async def sign_in_many(client: TestClient, prefix: str, n: int) -> list[dict[str, Any]]:
    """``n`` users signed in by magic link, each asking from its own address (per-IP limits are for humans)."""
    auth = platform_of(client).auth
    out = []
    for i in range(n):
        email = f"{prefix}{i}@example.com"
        await auth.request_magic_link(email, f"10.7.{i // 250}.{i % 250}")
        r = await client.post("/auth/verify-magic-link", json={"token": await mailed_token(client, email)})
        assert r.status == 200, await r.text()
        out.append(await r.json())
    return out


async def live_ipo(client: TestClient, clock: Any, total: int, *, email: str = "artist@example.com",
                   **over: Any) -> tuple[dict[str, Any], str]:
    """An artist's registered master with an IPO of ``total`` shares, all minted, live now."""
    s = await artist(client, email)
    m = await registered(client, s, metadata={"title": "Live Song"})
    mid = m["id"]
    r = await client.post(f"/masters/{mid}/ipo", json=ipo_body(clock, total, starts_in=0, **over), headers=bearer(s))
    assert r.status == 200, await r.text()
    left = total
    while left:
        n = min(left, 250)
        r = await client.post(f"/masters/{mid}/mint", json={"count": n}, headers=bearer(s))
        assert r.status == 202, await r.text()
        await wait_job(client, s, (await r.json())["id"])
        left -= n

    async def live() -> bool:
        return (await master_view(client, mid))["ipo"]["status"] == "live"

    await until(live)
    return s, mid


async def master_view(client: TestClient, master_id: str) -> dict[str, Any]:
    r = await client.get(f"/masters/{master_id}")
    assert r.status == 200, await r.text()
    return await r.json()


async def checkout(client: TestClient, session: dict[str, Any], master_id: str, quantity: int,
                   **headers: str) -> Any:
    return await client.post("/payments/checkout", json={"kind": "shares", "masterId": master_id,
                                                         "quantity": quantity},
                             headers={**bearer(session), **headers})


def collect(client: TestClient, kind: str) -> list[Any]:
    """Events of ``kind`` as the bus delivers them."""
    seen: list[Any] = []

    async def handler(event: Any) -> None:
        if event.type == kind:
            seen.append(event)

    platform_of(client).bus.subscribe(f"test-payments-{kind}-{id(seen)}", handler)
    return seen


async def owner_of(client: TestClient, master_id: str, token_id: int) -> str | None:
    m = await master_view(client, master_id)
    return await platform_of(client).chain.chain.owner_of(m["contractAddress"], token_id)
