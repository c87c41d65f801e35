"""A local stand-in for the Stripe endpoints AudiFi calls, for the official SDK's ``api_base``.

An aiohttp server speaking Stripe's wire format over :class:`LocalStripe`: form-encoded requests
with bracketed keys (``line_items[0][price_data][currency]=usd``), ``Authorization: Bearer sk_…``,
``Idempotency-Key`` on creates, JSON objects and ``{"error": {type, code, message, param}}`` errors
with Stripe's status codes. Endpoints: ``POST /v1/customers``, ``POST /v1/checkout/sessions``,
``GET /v1/checkout/sessions/{id}``, ``POST /v1/checkout/sessions/{id}/expire``,
``POST /v1/billing_portal/sessions``, ``GET|POST /v1/subscriptions/{id}``, ``GET /v1/invoices``,
``POST /v1/refunds``.

Tests drive the customer's side in Python (``standin.stripe.pay(session_id)``, ``refund``…) and
deliver the resulting events themselves, signed with the test secret (:meth:`StripeStandIn.signed`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.test_utils import TestServer

from audifi_adapters.stripe.local import LocalStripe, LocalStripeError, sign_payload

__all__ = ["StripeStandIn", "decode_form", "TEST_KEY", "TEST_SECRET"]

TEST_KEY = "sk_test_standin_0123456789"
TEST_SECRET = "whsec_test_standin_secret"
FORM = web.RequestKey("standin.form", dict)
_KEY = re.compile(r"^([^\[]+)((?:\[[^\]]*\])*)$")


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding back into nested dicts (list indexes stay dict keys ``"0"``, ``"1"``…)."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        m = _KEY.match(key)
        if not m:
            continue
        parts = [m.group(1), *re.findall(r"\[([^\]]*)\]", m.group(2))]
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


class StripeStandIn:
    def __init__(self, now: Callable[[], Any]):
        self.url = ""
        self.stripe = LocalStripe(now, url_for=lambda sid: f"{self.url}/pay/{sid}",
                                  portal_base="https://billing.stripe.test/p", hosted_base="https://invoice.stripe.test/i")
        self.fail_next: dict[str, int] = {}  # path prefix → HTTP status to answer once
        self.seen: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []
        self._server: TestServer | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> StripeStandIn:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_post("/v1/customers", self._customers)
        r.add_post("/v1/checkout/sessions", self._create_session)
        r.add_get("/v1/checkout/sessions/{id}", self._get_session)
        r.add_post("/v1/checkout/sessions/{id}/expire", self._expire_session)
        r.add_post("/v1/billing_portal/sessions", self._portal)
        r.add_get("/v1/subscriptions/{id}", self._get_subscription)
        r.add_post("/v1/subscriptions/{id}", self._update_subscription)
        r.add_get("/v1/invoices", self._invoices)
        r.add_post("/v1/refunds", self._refunds)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        self.url = str(self._server.make_url("")).rstrip("/")
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    # ------------------------------------------------------------------ webhooks for the tests
    def events_of(self, *types: str) -> list[dict[str, Any]]:
        return [e for e in self.stripe.events if not types or e["type"] in types]

    @staticmethod
    def signed(event: dict[str, Any], secrets: list[str] | None = None,
               timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        """The raw body and headers Stripe would POST for ``event``."""
        payload = json.dumps(event, separators=(",", ":"))
        header = sign_payload(payload, secrets or [TEST_SECRET], timestamp)
        return payload.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}

    # ------------------------------------------------------------------ HTTP
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer sk_"):
            return web.json_response({"error": {"type": "invalid_request_error",
                                                "message": "Invalid API Key provided"}}, status=401)
        form = decode_form(await request.text()) if request.method == "POST" else dict(request.query)
        self.seen.append((request.method, request.path, form, dict(request.headers)))
        for prefix, status in list(self.fail_next.items()):
            if request.path.startswith(prefix):
                del self.fail_next[prefix]
                return web.json_response({"error": {"type": "api_error", "message": "Injected failure"}},
                                         status=status)
        request[FORM] = form
        try:
            body = await handler(request)
        except LocalStripeError as e:
            return web.json_response(e.body(), status=e.status)
        return web.json_response(body, headers={"Request-Id": f"req_standin_{len(self.seen)}",
                                                "Stripe-Version": request.headers.get("Stripe-Version", "")})

    def _create(self, request: web.Request, fn: Callable[[dict[str, Any]], Any]) -> Any:
        form = request[FORM]
        return self.stripe.idempotent(request.path, request.headers.get("Idempotency-Key"), form, lambda: fn(form))

    async def _customers(self, request: web.Request) -> Any:
        return self._create(request, self.stripe.create_customer)

    async def _create_session(self, request: web.Request) -> Any:
        return self._create(request, self.stripe.create_session)

    async def _get_session(self, request: web.Request) -> Any:
        return self.stripe.retrieve_session(request.match_info["id"])

    async def _expire_session(self, request: web.Request) -> Any:
        return self._create(request, lambda _: self.stripe.expire_session(request.match_info["id"]))

    async def _portal(self, request: web.Request) -> Any:
        return self._create(request, self.stripe.create_portal_session)

    async def _get_subscription(self, request: web.Request) -> Any:
        return self.stripe.subscription(request.match_info["id"])

    async def _update_subscription(self, request: web.Request) -> Any:
        return self._create(request, lambda f: self.stripe.update_subscription(request.match_info["id"], f))

    async def _invoices(self, request: web.Request) -> Any:
        return self.stripe.list_invoices(request[FORM])

    async def _refunds(self, request: web.Request) -> Any:
        return self._create(request, self.stripe.create_refund)
