"""The payments use cases: share and subscription checkout, subscriptions, portal, invoices, withdraw.

Used by the HTTP edge and by other contexts (``has_entitlement`` / ``entitlements`` for the
studio's ``subscribers`` audience; ``subscription_summary`` for ``User.subscription``). Settling
payments (webhooks, chain job hooks, the reconciler) is :class:`~.settlement.Settlement`.

A share checkout reserves specific token ids in the masters ledger (a primary key decides, so
concurrent checkouts never oversell) in the same unit of work that takes a slot of the user's open
checkouts and counts the shares toward ``maxPerUser`` (both conditional counters); only then is the
gateway asked for a session, with the checkout id as its idempotency key.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import structlog

from audifi_core.auth.model import AuthContext, User
from audifi_core.auth.service import FRESH_SECONDS
from audifi_core.chain.model import ChainJobView, JobKind, TransferShares, custody_signer
from audifi_core.errors import (
    AudifiError,
    Conflict,
    NotFound,
    RateLimited,
    Unauthorized,
    UpstreamError,
    ValidationError,
)
from audifi_core.masters.model import MAX_TOTAL_SHARES
from audifi_core.ports import Mail

from .model import (
    ENTITLED_STATUSES,
    Checkout,
    CheckoutKind,
    CheckoutRequest,
    CheckoutStatus,
    CheckoutView,
    InvoiceView,
    Money,
    PortalView,
    Subscription,
    SubscriptionView,
)
from .settings import WITHDRAW_PREFIX
from .settlement import Settlement

__all__ = ["PaymentsService", "PaymentEntitlements"]

log = structlog.get_logger("audifi.payments")

_MAX_WITHDRAW = 250


def _refused(e: AudifiError) -> bool:
    """The gateway answered and refused (so it made nothing), as opposed to an unknown outcome."""
    status = e.details.get("status")
    return (isinstance(status, int) and 400 <= status < 500 and status not in (409, 429)
            and e.details.get("type") != "idempotency_error")


class PaymentEntitlements:
    """The ``Entitlements`` port other contexts use: ``await entitlements.has(user_id, name)``."""

    def __init__(self, service: PaymentsService):
        self._s = service

    async def has(self, user_id: str, entitlement: str) -> bool:
        return await self._s.has_entitlement(user_id, entitlement)


class PaymentsService(Settlement):
    # ================================================================== helpers
    async def _limit(self, key: str, rule: tuple[int, int], what: str) -> None:
        d = await self._limiter.hit(key, rule[0], rule[1])
        if not d.allowed:
            raise RateLimited(f"Too many {what}; try again later", retry_after=d.retry_after)

    async def _customer(self, user: User) -> str:
        """The user's customer at the gateway, created once (idempotency key per user)."""
        async with self._uow(readonly=True) as u:
            cid = await u.payments.customer_of(user.id)  # type: ignore[attr-defined]
        if cid:
            return cid
        cid = await self.gateway.create_customer(user.id, user.email, f"customer:{user.id}")
        async with self._uow() as u:
            return await u.payments.add_customer(user.id, cid, self._clock.now())  # type: ignore[attr-defined]

    def _expires_at(self, created: datetime) -> datetime:
        return created + timedelta(seconds=self.settings.checkout_ttl + self.settings.checkout_ttl_margin)

    # ================================================================== checkout
    async def create_checkout(self, user: User, ip: str, *, kind: str, master_id: str | None = None,
                              quantity: int | None = None, plan: str | None = None) -> CheckoutView:
        """``{kind:"shares", masterId, quantity}`` or ``{kind:"subscription", plan}`` → a hosted checkout."""
        if kind == CheckoutKind.SHARES.value:
            fields = {}
            if not master_id:
                fields["masterId"] = "required"
            if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_TOTAL_SHARES:
                fields["quantity"] = f"an integer from 1 to {MAX_TOTAL_SHARES}"
            if fields:
                raise ValidationError("Invalid checkout", fields=fields)
        elif kind == CheckoutKind.SUBSCRIPTION.value:
            offered = self.settings.offered()
            if plan not in offered:
                raise ValidationError("Unknown plan", fields={"plan": "one of " + ", ".join(offered)})
        else:
            raise ValidationError("Invalid checkout", fields={"kind": "shares or subscription"})
        await self._limit(f"pay:checkout:user:{user.id}", self.settings.checkout_per_user, "checkouts")
        await self._limit(f"pay:checkout:ip:{ip}", self.settings.checkout_per_ip, "checkouts")
        if kind == CheckoutKind.SHARES.value:
            assert master_id is not None and quantity is not None
            return await self._share_checkout(user, master_id, quantity)
        assert plan is not None
        return await self._subscription_checkout(user, plan)

    async def _share_checkout(self, user: User, master_id: str, quantity: int) -> CheckoutView:
        if self.shares is None:
            raise Conflict("Shares are not on sale on this server")
        m = await self.shares.get_master(master_id)
        if m.ipo is None or self.shares.ipo_status(m) != "live":
            raise Conflict("Shares are on sale only while the IPO is live", details={"masterId": master_id})
        customer = await self._customer(user)
        now = self._clock.now()
        chk_id = self._ids.new_id("chk")
        price: Money = m.ipo.price
        async with self._uow() as u:
            p: Any = u.payments  # type: ignore[attr-defined]
            if not await p.take_open_slot(user.id, self.settings.max_open_checkouts):
                raise Conflict(f"At most {self.settings.max_open_checkouts} open checkouts",
                               details={"limit": self.settings.max_open_checkouts})
            if not await p.take_shares(user.id, master_id, quantity, m.ipo.max_per_user):
                raise Conflict(f"At most {m.ipo.max_per_user} shares of this master per user",
                               details={"masterId": master_id, "maxPerUser": m.ipo.max_per_user})
            token_ids = await self.shares.reserve_tokens(u, master_id, quantity, chk_id)
            checkout = Checkout(id=chk_id, user_id=user.id, kind=CheckoutKind.SHARES, status=CheckoutStatus.CREATING,
                                amount=Money(price.amount * quantity, price.currency), created_at=now, updated_at=now,
                                master_id=master_id, quantity=quantity, token_ids=tuple(token_ids))
            await p.add_checkout(checkout)
        view = await self._open_session(checkout, self._share_request(checkout, customer, m.title, price))
        await self._expire_previous(user.id, keep=chk_id)
        return view

    def _share_request(self, c: Checkout, customer: str, title: str, price: Money) -> CheckoutRequest:
        return CheckoutRequest(
            mode="payment", client_reference_id=c.id, customer_id=customer, expires_at=self._expires_at(c.created_at),
            success_url=self.settings.success_url, cancel_url=self.settings.cancel_url,
            metadata={"checkoutId": c.id, "userId": c.user_id, "kind": "shares", "masterId": c.master_id or "",
                      "quantity": str(c.quantity)},
            quantity=c.quantity, unit_amount=price, product_name=f"{title} (share)", three_d_secure=True)

    def _subscription_request(self, c: Checkout, customer: str) -> CheckoutRequest:
        assert c.plan is not None
        return CheckoutRequest(
            mode="subscription", client_reference_id=c.id, customer_id=customer,
            expires_at=self._expires_at(c.created_at), success_url=self.settings.success_url,
            cancel_url=self.settings.cancel_url,
            metadata={"checkoutId": c.id, "userId": c.user_id, "kind": "subscription", "plan": c.plan},
            price_id=self.settings.price_ids[c.plan])

    async def _open_session(self, c: Checkout, request: CheckoutRequest) -> CheckoutView:
        """Ask the gateway (idempotency key = the checkout id). When it refused (a 4xx answer) no session
        exists and the reservation ends; when the outcome is unknown (network, 5xx) a session may exist,
        so the checkout stays ``creating`` until the reconciler asks again with the same key."""
        try:
            s = await self.gateway.create_checkout(request, f"checkout:{c.id}")
        except AudifiError as e:
            if _refused(e):
                async with self._uow() as u:
                    await self.end(u, c, CheckoutStatus.FAILED)
            else:
                log.warning("checkout_outcome_unknown", checkout_id=c.id, error=e.message)
            raise
        async with self._uow() as u:
            p: Any = u.payments  # type: ignore[attr-defined]
            await p.update_checkout(c.id, self._clock.now(), session_id=s.id, url=s.url, expires_at=s.expires_at)
            await p.transition(c.id, (CheckoutStatus.CREATING,), CheckoutStatus.OPEN, self._clock.now())
        if s.url is None or s.expires_at is None:
            raise AudifiError("The payment gateway returned a session without a URL")
        return CheckoutView(session_id=s.id, url=s.url, expires_at=s.expires_at)

    async def _expire_previous(self, user_id: str, keep: str) -> None:
        """A user's previous open share checkouts are expired at the gateway (its ``expired`` event
        then releases their reservations)."""
        async with self._uow(readonly=True) as u:
            previous = await u.payments.open_checkouts(user_id, CheckoutKind.SHARES.value)  # type: ignore[attr-defined]
        for c in previous:
            if c.id == keep or c.session_id is None or c.status is not CheckoutStatus.OPEN:
                continue
            try:
                await self.gateway.expire_checkout(c.session_id)
            except AudifiError as e:
                log.warning("expire_previous_failed", checkout_id=c.id, error=e.message)

    async def _subscription_checkout(self, user: User, plan: str) -> CheckoutView:
        current = await self._current(user.id)
        if current is not None and current.status in ENTITLED_STATUSES:
            raise Conflict("You have a subscription already: change it in the customer portal",
                           details={"plan": current.plan, "status": current.status})
        customer = await self._customer(user)
        p_ = self.settings.plan(plan)
        assert p_ is not None
        now = self._clock.now()
        chk_id = self._ids.new_id("chk")
        async with self._uow() as u:
            p: Any = u.payments  # type: ignore[attr-defined]
            if not await p.take_open_slot(user.id, self.settings.max_open_checkouts):
                raise Conflict(f"At most {self.settings.max_open_checkouts} open checkouts",
                               details={"limit": self.settings.max_open_checkouts})
            checkout = Checkout(id=chk_id, user_id=user.id, kind=CheckoutKind.SUBSCRIPTION,
                                status=CheckoutStatus.CREATING, amount=p_.price, created_at=now, updated_at=now,
                                plan=plan, quantity=1)
            await p.add_checkout(checkout)
        return await self._open_session(checkout, self._subscription_request(checkout, customer))

    async def _finish_creating(self, c: Checkout) -> bool:
        """A checkout left ``creating`` (crash between the reservation and the gateway's answer): ask
        again with the same idempotency key and parameters; if the gateway can no longer make that
        session (its expiry passed) none exists, so the reservation ends."""
        try:
            async with self._uow(readonly=True) as u:
                customer = await u.payments.customer_of(c.user_id)  # type: ignore[attr-defined]
            if customer is None:
                raise UpstreamError("no customer stored for the checkout's user")
            if c.kind is CheckoutKind.SHARES:
                assert self.shares is not None and c.master_id is not None
                m = await self.shares.get_master(c.master_id)
                req = self._share_request(c, customer, m.title, m.ipo.price)
            else:
                req = self._subscription_request(c, customer)
            await self._open_session(c, req)
            return True
        except AudifiError as e:
            if _refused(e):  # _open_session ended it: the gateway says no such session was made
                return True
            log.warning("finish_creating_failed", checkout_id=c.id, error=e.message)
            return False

    # ================================================================== subscriptions
    async def _current(self, user_id: str) -> Subscription | None:
        async with self._uow(readonly=True) as u:
            subs = await u.payments.subscriptions_of(user_id)  # type: ignore[attr-defined]
        if not subs:
            return None
        subs.sort(key=lambda s: (s.status in ENTITLED_STATUSES, s.updated_at, s.id), reverse=True)
        return subs[0]

    def _view(self, s: Subscription) -> SubscriptionView:
        p = self.settings.plan(s.plan) if s.plan else None
        ents = list(p.entitlements) if p is not None and s.status in ENTITLED_STATUSES else []
        return SubscriptionView(plan=s.plan, status=s.status, current_period_end=s.current_period_end,
                                cancel_at_period_end=s.cancel_at_period_end, entitlements=ents)

    async def subscription(self, user_id: str) -> SubscriptionView | None:
        s = await self._current(user_id)
        return self._view(s) if s is not None else None

    async def subscription_summary(self, user_id: str) -> dict[str, str] | None:
        """``User.subscription``: ``{plan, status}`` or ``None``."""
        s = await self._current(user_id)
        if s is None or s.status in ("canceled", "incomplete_expired"):
            return None
        return {"plan": s.plan or "", "status": s.status}

    async def has_entitlement(self, user_id: str, entitlement: str) -> bool:
        async with self._uow(readonly=True) as u:
            subs = await u.payments.subscriptions_of(user_id)  # type: ignore[attr-defined]
        for s in subs:
            p = self.settings.plan(s.plan) if s.plan else None
            if p is not None and s.status in ENTITLED_STATUSES and entitlement in p.entitlements:
                return True
        return False

    @property
    def entitlements(self) -> PaymentEntitlements:
        return PaymentEntitlements(self)

    async def cancel_subscription(self, user_id: str) -> SubscriptionView:
        """Cancel at the period's end (the gateway's answer is stored as the newest state)."""
        s = await self._current(user_id)
        if s is None or s.status not in ENTITLED_STATUSES:
            raise NotFound("You have no active subscription", code="SUBSCRIPTION_NOT_FOUND")
        async with self._uow() as u:
            ticket = await u.payments.next_ticket()  # type: ignore[attr-defined]
        g = await self.gateway.cancel_at_period_end(s.id, f"cancel:{s.id}:{self._ids.token(8)}")
        sub = Subscription(id=g.id, user_id=s.user_id, customer_id=g.customer_id or s.customer_id, status=g.status,
                           plan=self.settings.plan_of_price(g.price_id) or s.plan, price_id=g.price_id or s.price_id,
                           current_period_end=g.current_period_end, cancel_at_period_end=g.cancel_at_period_end,
                           updated_at=self._clock.now(), ticket=ticket)
        async with self._uow() as u:
            await u.payments.put_subscription(sub)  # type: ignore[attr-defined]
        return self._view(sub)

    async def portal(self, user: User) -> PortalView:
        customer = await self._customer(user)
        return PortalView(url=await self.gateway.portal_url(customer, self.settings.return_url))

    async def invoices(self, user_id: str, limit: int = 24) -> list[InvoiceView]:
        async with self._uow(readonly=True) as u:
            customer = await u.payments.customer_of(user_id)  # type: ignore[attr-defined]
        if customer is None:
            return []
        return [InvoiceView(id=i.id, amount=i.amount, status=i.status, hosted_url=i.hosted_url,
                            created_at=i.created_at)
                for i in await self.gateway.list_invoices(customer, limit)]

    # ================================================================== withdraw
    async def withdraw(self, ctx: AuthContext, master_id: str, count: Any, to: str) -> ChainJobView:
        """Custodial shares of a master to a wallet linked ≥ 24 h ago, after the hold (409 before); the
        user is mailed. One ``withdraw`` chain job, keyed by the ids it moves."""
        now = self._clock.now()
        if (now - ctx.session.authenticated_at).total_seconds() > FRESH_SECONDS:
            raise Unauthorized("Recent sign-in required", details={"reauth": True})
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= _MAX_WITHDRAW:
            raise ValidationError("Invalid count", fields={"count": f"an integer from 1 to {_MAX_WITHDRAW}"})
        if not isinstance(to, str) or len(to) != 42 or not to.startswith("0x"):
            raise ValidationError("Invalid address", fields={"to": "an Ethereum address"})
        if self.shares is None or self._jobs is None:
            raise Conflict("Shares are not held on this server")
        await self._limit(f"pay:withdraw:{ctx.user_id}", self.settings.withdraw_per_user, "withdrawals")
        m = await self.shares.get_master(master_id)
        if m.contract_address is None:
            raise Conflict(f"Master {master_id} is not registered on-chain", details={"masterId": master_id})
        async with self._uow(readonly=True) as u:
            user = await u.users.get(ctx.user_id)
            wallets = await u.users.wallets_of(ctx.user_id)
            wallet = next((w for w in wallets if w.address.lower() == to.lower()), None)
            if wallet is None:
                raise Conflict("Withdraw only to one of your linked wallets", details={"to": to})
            if (now - wallet.linked_at).total_seconds() < self.settings.wallet_min_age:
                raise Conflict("That wallet was linked less than 24 hours ago",
                               details={"to": to, "withdrawableAt": (wallet.linked_at + timedelta(
                                   seconds=self.settings.wallet_min_age)).isoformat()})
            hold = await u.masters.hold_until(ctx.user_id, master_id)  # type: ignore[attr-defined]
            if hold is not None and now < hold:
                raise Conflict("These shares are still in their hold period",
                               details={"masterId": master_id, "withdrawableAt": hold.isoformat()})
            custodial = self.shares.custodial_address(user.index)
            going_back = {t for c in await u.payments.returning(ctx.user_id, master_id)  # type: ignore[attr-defined]
                          for t in c.token_ids}
            ids = [t for t in await u.chain_projection.tokens_of(  # type: ignore[attr-defined]
                m.contract_address, custodial, count + len(going_back)) if t not in going_back]
        if len(ids) < count:
            raise Conflict(f"Only {len(ids)} shares of this master are held for you",
                           details={"masterId": master_id, "available": len(ids)})
        ids = sorted(ids)[:count]
        digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:24]
        async with self._uow() as u:
            job = await self._jobs.enqueue(u, JobKind.WITHDRAW, f"{WITHDRAW_PREFIX}{ctx.user_id}:{master_id}:{digest}",
                                           ctx.user_id, TransferShares(m.contract_address, custodial, wallet.address,
                                                                       tuple(ids), custody_signer(user.index)))
        try:
            await self._mailer.send(Mail(
                to=user.email, subject="Your AudiFi shares are on their way",
                text=(f"You asked to withdraw {count} share(s) of \u201c{m.title}\u201d to {wallet.address}.\n"
                      f"Chain job: {job.id}. If this was not you, sign in and secure your account now.")))
        except Exception as e:  # noqa: BLE001 - the job is queued; a lost mail must not hide it
            log.warning("withdraw_mail_failed", user_id=ctx.user_id, error=repr(e))
        log.info("withdraw_queued", user_id=ctx.user_id, master_id=master_id, count=count, job_id=job.id)
        return job.view()
