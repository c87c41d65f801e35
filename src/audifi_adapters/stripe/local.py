"""LocalStripe: an in-process model of the Stripe objects AudiFi uses, answering in Stripe's JSON.

It backs the dev gateway (no ``STRIPE_SECRET_KEY``: the checkout URL is our
``/dev/checkout/:id/complete``) and the HTTP stand-in the tests point the official SDK at. Objects
and events have the shapes of Stripe's API reference (``checkout.session``, ``customer``,
``subscription`` with item-level billing periods, ``invoice`` with ``parent.subscription_details``,
``charge``, ``refund``, ``dispute``, ``radar.early_fraud_warning``, ``event``); creates honour
idempotency keys as Stripe does (same key + same parameters → the first answer; other parameters →
an ``idempotency_error``). Webhook payloads are signed like Stripe's (``t=…,v1=…``, one ``v1`` per
secret while a secret rotates).

Operations return the object and append the events they cause to :attr:`LocalStripe.events`;
delivering them is the caller's business (the dev gateway feeds them through the webhook path, the
tests deliver them as they like: repeated, concurrent, out of order).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["LocalStripe", "LocalStripeError", "API_VERSION", "sign_payload"]

API_VERSION = "2026-10-28.endive"
_MIN_EXPIRY, _MAX_EXPIRY = 30 * 60, 24 * 3600
_PERIOD = {"day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}


class LocalStripeError(Exception):
    """An API error as Stripe reports it: HTTP status, ``type``, ``code``, ``message``, ``param``."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
        if self.param:
            err["param"] = self.param
        return {"error": err}


def sign_payload(payload: str, secrets_: list[str], timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header: ``t=<unix>,v1=<hmac-sha256 of "t.payload">`` for each secret."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    sigs = [hmac.new(s.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest() for s in secrets_]
    return ",".join([f"t={ts}", *(f"v1={s}" for s in sigs)])


def _int(v: Any, param: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError) as e:
        raise LocalStripeError(400, f"Invalid integer: {v}", param=param) from e


def _bool(v: Any) -> bool:
    return v is True or str(v).lower() == "true"


def _list(v: Any) -> list[Any]:
    if isinstance(v, list):
        return v
    if isinstance(v, dict):  # form-decoded ``a[0][b]`` arrives as {"0": {...}}
        return [v[k] for k in sorted(v, key=lambda k: int(k))]
    return []


class LocalStripe:
    def __init__(self, now: Callable[[], datetime], *, url_for: Callable[[str], str],
                 portal_base: str = "http://127.0.0.1/portal", hosted_base: str = "http://127.0.0.1/invoice"):
        self._now = now
        self._url_for = url_for
        self._portal_base = portal_base.rstrip("/")
        self._hosted_base = hosted_base.rstrip("/")
        self.customers: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}  # by payment intent
        self.refunds: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, idempotency key)
        self._idem: dict[tuple[str, str], tuple[str, Any]] = {}

    # ------------------------------------------------------------------ plumbing
    def _ts(self) -> int:
        return int(self._now().timestamp())

    @staticmethod
    def _id(prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(12)}"

    def _emit(self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None,
              idempotency_key: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        event = {"id": self._id("evt"), "object": "event", "api_version": API_VERSION, "created": self._ts(),
                 "data": data, "livemode": False, "pending_webhooks": 1,
                 "request": {"id": self._id("req"), "idempotency_key": idempotency_key}, "type": type_}
        self.events.append(event)
        return event

    def idempotent(self, path: str, key: str | None, params: Any, fn: Callable[[], Any]) -> Any:
        """Stripe's idempotency: the first answer for (path, key) again, or an error for other parameters."""
        self.requests.append(("POST", path, key))
        if not key:
            return fn()
        fingerprint = json.dumps(params, sort_keys=True, default=str)
        got = self._idem.get((path, key))
        if got is not None:
            if got[0] != fingerprint:
                raise LocalStripeError(400, "Keys for idempotent requests can only be used with the same parameters "
                                            "they were first used with.", type_="idempotency_error")
            if isinstance(got[1], LocalStripeError):
                raise got[1]
            return copy.deepcopy(got[1])
        try:
            out = fn()
        except LocalStripeError as e:
            if e.status < 500:
                self._idem[(path, key)] = (fingerprint, e)
            raise
        self._idem[(path, key)] = (fingerprint, copy.deepcopy(out))
        return out

    def add_price(self, price_id: str, unit_amount: int, currency: str = "usd", interval: str | None = "month",
                  product_name: str = "AudiFi plan") -> dict[str, Any]:
        p = {"id": price_id, "object": "price", "active": True, "currency": currency, "unit_amount": unit_amount,
             "recurring": {"interval": interval, "interval_count": 1} if interval else None,
             "type": "recurring" if interval else "one_time", "product": self._id("prod"),
             "nickname": product_name, "livemode": False}
        self.prices[price_id] = p
        return p

    # ------------------------------------------------------------------ customers
    def create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        c = {"id": self._id("cus"), "object": "customer", "created": self._ts(), "email": params.get("email"),
             "metadata": dict(params.get("metadata") or {}), "livemode": False, "name": params.get("name")}
        self.customers[c["id"]] = c
        return copy.deepcopy(c)

    def _customer(self, customer_id: Any, param: str = "customer") -> dict[str, Any]:
        c = self.customers.get(str(customer_id))
        if c is None:
            raise LocalStripeError(400, f"No such customer: '{customer_id}'", code="resource_missing", param=param)
        return c

    # ------------------------------------------------------------------ checkout sessions
    def create_session(self, params: dict[str, Any]) -> dict[str, Any]:
        mode = params.get("mode")
        if mode not in ("payment", "subscription", "setup"):
            raise LocalStripeError(400, "Invalid mode", param="mode")
        if params.get("customer"):
            self._customer(params["customer"])
        now = self._ts()
        expires_at = _int(params.get("expires_at", now + _MAX_EXPIRY), "expires_at")
        if not _MIN_EXPIRY <= expires_at - now <= _MAX_EXPIRY:
            raise LocalStripeError(400, "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                                        "Checkout Session creation.", param="expires_at")
        items = _list(params.get("line_items"))
        if not items:
            raise LocalStripeError(400, "Missing required param: line_items.", param="line_items")
        total, currency, lines = 0, None, []
        for i, it in enumerate(items):
            qty = _int(it.get("quantity", 1), f"line_items[{i}][quantity]")
            if it.get("price"):
                price = self.prices.get(str(it["price"]))
                if price is None:
                    raise LocalStripeError(400, f"No such price: '{it['price']}'", code="resource_missing",
                                           param=f"line_items[{i}][price]")
                if mode == "payment" and price.get("recurring"):
                    raise LocalStripeError(400, "You must be in `subscription` mode to use a recurring price.")
            elif it.get("price_data"):
                pd = it["price_data"]
                price = {"id": self._id("price"), "object": "price", "currency": pd.get("currency"),
                         "unit_amount": _int(pd.get("unit_amount"), f"line_items[{i}][price_data][unit_amount]"),
                         "recurring": None, "product_data": pd.get("product_data")}
            else:
                raise LocalStripeError(400, "Each line item needs a price or price_data.", param=f"line_items[{i}]")
            total += int(price["unit_amount"]) * qty
            currency = price["currency"]
            lines.append({"price": price, "quantity": qty})
        sid = self._id("cs_test")
        s = {"id": sid, "object": "checkout.session", "mode": mode, "status": "open", "payment_status": "unpaid",
             "amount_subtotal": total, "amount_total": total, "currency": currency,
             "client_reference_id": params.get("client_reference_id"), "customer": params.get("customer"),
             "customer_email": params.get("customer_email"), "created": now, "expires_at": expires_at,
             "livemode": False, "metadata": dict(params.get("metadata") or {}), "payment_intent": None,
             "subscription": None, "invoice": None, "success_url": params.get("success_url"),
             "cancel_url": params.get("cancel_url"), "url": self._url_for(sid),
             "payment_method_options": params.get("payment_method_options") or {},
             "payment_intent_data": params.get("payment_intent_data") or {},
             "subscription_data": params.get("subscription_data") or {}, "_lines": lines}
        self.sessions[sid] = s
        return self._public(s)

    @staticmethod
    def _public(s: dict[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in s.items() if not k.startswith("_")}
        if out.get("status") != "open":
            out["url"] = None  # Stripe clears the URL once the session is not open
        return out

    def session(self, session_id: str) -> dict[str, Any]:
        s = self.sessions.get(session_id)
        if s is None:
            raise LocalStripeError(404, f"No such checkout.session: '{session_id}'", code="resource_missing",
                                   param="session")
        return s

    def retrieve_session(self, session_id: str) -> dict[str, Any]:
        return self._public(self.session(session_id))

    def expire_session(self, session_id: str) -> dict[str, Any]:
        s = self.session(session_id)
        if s["status"] != "open":
            raise LocalStripeError(400, f"Only Checkout Sessions with a status in [\"open\"] can be expired. This "
                                        f"Checkout Session has a status of \"{s['status']}\".")
        s["status"] = "expired"
        self._emit("checkout.session.expired", self._public(s))
        return self._public(s)

    def expire_due(self) -> list[str]:
        """Expire every open session past its ``expires_at`` (what Stripe does on its own)."""
        now = self._ts()
        due = [sid for sid, s in self.sessions.items() if s["status"] == "open" and s["expires_at"] <= now]
        for sid in due:
            self.expire_session(sid)
        return due

    # ------------------------------------------------------------------ paying (the hosted page's side)
    def pay(self, session_id: str, *, delayed: bool = False) -> dict[str, Any]:
        """The customer pays on the hosted page. ``delayed``: a delayed method (bank debit): the session
        completes unpaid and :meth:`settle` decides later."""
        s = self.session(session_id)
        if s["status"] != "open":
            raise LocalStripeError(400, f"Checkout Session {session_id} is {s['status']}, not open.")
        if s.get("customer") is None:
            cus = self.create_customer({"email": s.get("customer_email")})
            s["customer"] = cus["id"]
        s["status"] = "complete"
        if s["mode"] == "subscription":
            sub = self._start_subscription(s)
            s["subscription"] = sub["id"]
            s["invoice"] = sub["latest_invoice"]
            s["payment_status"] = "paid"
            self._emit("checkout.session.completed", self._public(s))
            return self._public(s)
        pi = self._id("pi")
        s["payment_intent"] = pi
        if delayed:
            s["payment_status"] = "unpaid"
            self._emit("checkout.session.completed", self._public(s))
            return self._public(s)
        self._charge(s)
        self._emit("checkout.session.completed", self._public(s))
        return self._public(s)

    def settle(self, session_id: str, *, succeeded: bool) -> dict[str, Any]:
        """A delayed payment's outcome."""
        s = self.session(session_id)
        if s["status"] != "complete" or s["payment_status"] != "unpaid":
            raise LocalStripeError(400, f"Checkout Session {session_id} has no pending payment.")
        if succeeded:
            self._charge(s)
            self._emit("checkout.session.async_payment_succeeded", self._public(s))
        else:
            self._emit("checkout.session.async_payment_failed", self._public(s))
        return self._public(s)

    def _charge(self, s: dict[str, Any]) -> dict[str, Any]:
        s["payment_status"] = "paid"
        ch = {"id": self._id("ch"), "object": "charge", "amount": s["amount_total"], "amount_captured": s["amount_total"],
              "amount_refunded": 0, "currency": s["currency"], "customer": s["customer"], "paid": True,
              "payment_intent": s["payment_intent"], "refunded": False, "disputed": False, "status": "succeeded",
              "created": self._ts(), "livemode": False,
              "metadata": dict((s.get("payment_intent_data") or {}).get("metadata") or {})}
        self.charges[s["payment_intent"]] = ch
        self._emit("charge.succeeded", ch)
        return ch

    def charge_of(self, payment_intent: str) -> dict[str, Any]:
        ch = self.charges.get(payment_intent)
        if ch is None:
            raise LocalStripeError(404, f"No such payment_intent: '{payment_intent}'", code="resource_missing",
                                   param="payment_intent")
        return ch

    # ------------------------------------------------------------------ refunds, disputes, fraud warnings
    def create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        pi = params.get("payment_intent")
        if not pi:
            raise LocalStripeError(400, "One of `charge` or `payment_intent` is required.", param="payment_intent")
        ch = self.charge_of(str(pi))
        amount = _int(params.get("amount", ch["amount"] - ch["amount_refunded"]), "amount")
        if amount <= 0 or amount > ch["amount"] - ch["amount_refunded"]:
            raise LocalStripeError(400, f"Charge {ch['id']} has already been refunded.", code="charge_already_refunded")
        previous = {"amount_refunded": ch["amount_refunded"], "refunded": ch["refunded"]}
        ch["amount_refunded"] += amount
        ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
        r = {"id": self._id("re"), "object": "refund", "amount": amount, "charge": ch["id"], "currency": ch["currency"],
             "payment_intent": pi, "status": "succeeded", "created": self._ts(),
             "metadata": dict(params.get("metadata") or {})}
        self.refunds[r["id"]] = r
        self._emit("refund.created", r)
        self._emit("charge.refunded", ch, previous)
        return copy.deepcopy(r)

    def dispute(self, payment_intent: str, reason: str = "fraudulent") -> dict[str, Any]:
        ch = self.charge_of(payment_intent)
        ch["disputed"] = True
        d = {"id": self._id("dp"), "object": "dispute", "amount": ch["amount"], "charge": ch["id"],
             "currency": ch["currency"], "payment_intent": payment_intent, "reason": reason,
             "status": "needs_response", "created": self._ts(), "livemode": False}
        self._emit("charge.dispute.created", d)
        return d

    def early_fraud_warning(self, payment_intent: str) -> dict[str, Any]:
        ch = self.charge_of(payment_intent)
        w = {"id": self._id("issfr"), "object": "radar.early_fraud_warning", "actionable": True, "charge": ch["id"],
             "created": self._ts(), "fraud_type": "made_with_stolen_card", "livemode": False,
             "payment_intent": payment_intent}
        self._emit("radar.early_fraud_warning.created", w)
        return w

    # ------------------------------------------------------------------ subscriptions and invoices
    def _start_subscription(self, s: dict[str, Any]) -> dict[str, Any]:
        line = s["_lines"][0]
        price = line["price"]
        now = self._ts()
        period = _PERIOD.get((price.get("recurring") or {}).get("interval") or "month", _PERIOD["month"])
        sub_id = self._id("sub")
        sub = {"id": sub_id, "object": "subscription", "customer": s["customer"], "status": "active",
               "cancel_at_period_end": False, "cancel_at": None, "canceled_at": None, "created": now,
               "start_date": now, "livemode": False, "currency": price["currency"],
               "metadata": dict((s.get("subscription_data") or {}).get("metadata") or {}),
               "items": {"object": "list", "data": [{
                   "id": self._id("si"), "object": "subscription_item", "price": copy.deepcopy(price),
                   "quantity": line["quantity"], "subscription": sub_id, "current_period_start": now,
                   "current_period_end": now + period}], "has_more": False},
               "latest_invoice": None}
        self.subscriptions[sub_id] = sub
        self._emit("customer.subscription.created", sub)
        inv = self._invoice(sub, "subscription_create")
        sub["latest_invoice"] = inv["id"]
        return sub

    def _invoice(self, sub: dict[str, Any], reason: str, *, paid: bool = True) -> dict[str, Any]:
        item = sub["items"]["data"][0]
        amount = int(item["price"]["unit_amount"]) * int(item["quantity"])
        inv_id = self._id("in")
        inv = {"id": inv_id, "object": "invoice", "customer": sub["customer"], "currency": sub["currency"],
               "amount_due": amount, "amount_paid": amount if paid else 0, "amount_remaining": 0 if paid else amount,
               "billing_reason": reason, "status": "paid" if paid else "open", "created": self._ts(),
               "hosted_invoice_url": f"{self._hosted_base}/{inv_id}", "livemode": False,
               "parent": {"type": "subscription_details", "quote_details": None,
                          "subscription_details": {"subscription": sub["id"], "metadata": sub["metadata"]}},
               "period_start": item["current_period_start"], "period_end": item["current_period_end"]}
        self.invoices[inv_id] = inv
        self._emit("invoice.paid" if paid else "invoice.payment_failed", inv)
        return inv

    def subscription(self, sub_id: str) -> dict[str, Any]:
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise LocalStripeError(404, f"No such subscription: '{sub_id}'", code="resource_missing", param="id")
        return sub

    def update_subscription(self, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
        sub = self.subscription(sub_id)
        if sub["status"] == "canceled":
            raise LocalStripeError(400, "A canceled subscription can only update its cancellation_details and "
                                        "metadata.")
        previous: dict[str, Any] = {}
        if "cancel_at_period_end" in params:
            flag = _bool(params["cancel_at_period_end"])
            if flag != sub["cancel_at_period_end"]:
                previous["cancel_at_period_end"] = sub["cancel_at_period_end"]
                sub["cancel_at_period_end"] = flag
                sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"] if flag else None
                sub["canceled_at"] = self._ts() if flag else None
        if "metadata" in params:
            previous["metadata"] = dict(sub["metadata"])
            sub["metadata"].update(params["metadata"] or {})
        if previous:
            self._emit("customer.subscription.updated", sub, previous)
        return copy.deepcopy(sub)

    def renew(self, sub_id: str, *, paid: bool = True) -> dict[str, Any]:
        """The next billing period: an invoice paid (or failed: ``past_due``)."""
        sub = self.subscription(sub_id)
        item = sub["items"]["data"][0]
        previous = {"status": sub["status"], "items": copy.deepcopy(sub["items"])}
        if sub["cancel_at_period_end"]:
            return self.cancel_now(sub_id)
        period = item["current_period_end"] - item["current_period_start"]
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] += period
        sub["status"] = "active" if paid else "past_due"
        inv = self._invoice(sub, "subscription_cycle", paid=paid)
        sub["latest_invoice"] = inv["id"]
        self._emit("customer.subscription.updated", sub, previous)
        return copy.deepcopy(sub)

    def cancel_now(self, sub_id: str) -> dict[str, Any]:
        sub = self.subscription(sub_id)
        sub["status"] = "canceled"
        sub["canceled_at"] = sub["canceled_at"] or self._ts()
        sub["ended_at"] = self._ts()
        self._emit("customer.subscription.deleted", sub)
        return copy.deepcopy(sub)

    def list_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        limit = max(1, min(100, _int(params.get("limit", 10), "limit")))
        rows = [i for i in self.invoices.values()
                if not params.get("customer") or i["customer"] == params["customer"]]
        rows.sort(key=lambda i: (i["created"], i["id"]), reverse=True)
        return {"object": "list", "data": copy.deepcopy(rows[:limit]), "has_more": len(rows) > limit,
                "url": "/v1/invoices"}

    # ------------------------------------------------------------------ billing portal
    def create_portal_session(self, params: dict[str, Any]) -> dict[str, Any]:
        self._customer(params.get("customer"))
        pid = self._id("bps")
        return {"id": pid, "object": "billing_portal.session", "customer": params["customer"],
                "return_url": params.get("return_url"), "created": self._ts(), "livemode": False,
                "url": f"{self._portal_base}/session/{pid}"}

    @staticmethod
    def created_at(obj: dict[str, Any]) -> datetime:
        return datetime.fromtimestamp(int(obj["created"]), UTC)
