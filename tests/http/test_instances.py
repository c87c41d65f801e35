"""Two app instances on one PostgreSQL + Redis; restarts; the Idempotency-Key mechanism."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from audifi_http import create_app
from audifi_http.keys import ROUTES
from audifi_http.middleware import auth_context, idempotent
from audifi_http.serde import json_response, read_json

from ..conftest import REDIS_URL, base_config
from .helpers import bearer, error_of, mailed_token, sign_in


@pytest.fixture
def shared_config(tmp_path, pg_clean, redis_prefix):
    return base_config(tmp_path, database_url=pg_clean, redis_url=REDIS_URL, redis_prefix=redis_prefix)


class TestTwoInstances:
    async def test_token_from_one_works_on_other(self, aiohttp_client, shared_config):
        """A session made on instance A is valid on B; logout on B kills it on A."""
        a = await aiohttp_client(create_app(shared_config))
        b = await aiohttp_client(create_app(shared_config))
        s = await sign_in(a, "two@example.com")
        assert (await b.get("/me", headers=bearer(s))).status == 200
        r = await b.post("/auth/refresh", json={"refreshToken": s["refreshToken"]})
        assert r.status == 200
        await error_of(await a.post("/auth/refresh", json={"refreshToken": s["refreshToken"]}), 401)
        s2 = await sign_in(a, "two@example.com")
        assert (await b.post("/auth/logout", headers=bearer(s2))).status == 204
        await error_of(await a.get("/me", headers=bearer(s2)), 401)

    async def test_link_from_one_consumed_on_other(self, aiohttp_client, shared_config):
        """A magic link asked on A is verified on B, once."""
        a = await aiohttp_client(create_app(shared_config))
        b = await aiohttp_client(create_app(shared_config))
        await a.post("/auth/magic-link", json={"email": "ab@example.com"})
        token = await mailed_token(a, "ab@example.com")
        assert (await b.post("/auth/verify-magic-link", json={"token": token})).status == 200
        await error_of(await a.post("/auth/verify-magic-link", json={"token": token}), 401)

    async def test_rate_limit_not_doubled(self, aiohttp_client, shared_config):
        """Five links from A and one from B: the sixth is refused, wherever it lands."""
        a = await aiohttp_client(create_app(shared_config))
        b = await aiohttp_client(create_app(shared_config))
        for i in range(5):
            c = a if i % 2 else b
            assert (await c.post("/auth/magic-link", json={"email": "lim@example.com"})).status == 202
        await error_of(await b.post("/auth/magic-link", json={"email": "lim@example.com"}), 429)
        await error_of(await a.post("/auth/magic-link", json={"email": "lim@example.com"}), 429)

    async def test_restart_keeps_sessions(self, aiohttp_client, shared_config):
        """A session survives the app being closed and started again."""
        first = await aiohttp_client(create_app(shared_config))
        s = await sign_in(first, "restart@example.com")
        await first.close()
        second = await aiohttp_client(create_app(shared_config))
        r = await second.get("/me", headers=bearer(s))
        assert r.status == 200 and (await r.json())["email"] == "restart@example.com"


def _app_with_counter(config):
    """An app plus one test route behind the shared Idempotency-Key mechanism, counting effects."""
    app = create_app(config)
    effects: list[dict] = []
    gate = asyncio.Event()
    gate.set()

    @idempotent
    async def do_effect(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = await read_json(request)
        await gate.wait()
        effects.append(body)
        return json_response({"n": len(effects), "user": ctx.user_id}, status=202)

    app.router.add_post("/test/effect", do_effect)
    assert app[ROUTES] is not None
    return app, effects, gate


@pytest.fixture(params=["memory", "shared"])
def idem_config(request, tmp_path):
    if request.param == "memory":
        return base_config(tmp_path)
    return request.getfixturevalue("shared_config")


class TestIdempotencyKey:
    async def test_repeat_returns_first_response(self, aiohttp_client, idem_config):
        """The same key and body gives the first response again, without a second effect."""
        app, effects, _ = _app_with_counter(idem_config)
        c = await aiohttp_client(app)
        s = await sign_in(c, "idem@example.com")
        h = {**bearer(s), "Idempotency-Key": "k1"}
        r1 = await c.post("/test/effect", json={"x": 1}, headers=h)
        r2 = await c.post("/test/effect", json={"x": 1}, headers=h)
        assert r1.status == r2.status == 202
        assert await r1.json() == await r2.json() and len(effects) == 1
        assert r2.headers.get("Idempotent-Replayed") == "true"

    async def test_other_body_conflicts(self, aiohttp_client, idem_config):
        """The same key with another body is 409."""
        app, effects, _ = _app_with_counter(idem_config)
        c = await aiohttp_client(app)
        s = await sign_in(c, "idem2@example.com")
        h = {**bearer(s), "Idempotency-Key": "k2"}
        await c.post("/test/effect", json={"x": 1}, headers=h)
        await error_of(await c.post("/test/effect", json={"x": 2}, headers=h), 409)
        assert len(effects) == 1

    async def test_in_flight_conflicts(self, aiohttp_client, idem_config):
        """A repeat while the first is running is 409; one effect happens."""
        app, effects, gate = _app_with_counter(idem_config)
        c = await aiohttp_client(app)
        s = await sign_in(c, "idem3@example.com")
        h = {**bearer(s), "Idempotency-Key": "k3"}
        gate.clear()
        first = asyncio.ensure_future(c.post("/test/effect", json={"x": 1}, headers=h))
        await asyncio.sleep(0.2)
        await error_of(await c.post("/test/effect", json={"x": 1}, headers=h), 409)
        gate.set()
        assert (await first).status == 202 and len(effects) == 1

    async def test_scoped_per_user(self, aiohttp_client, idem_config):
        """Two users may use the same key independently."""
        app, effects, _ = _app_with_counter(idem_config)
        c = await aiohttp_client(app)
        a = await sign_in(c, "ia@example.com")
        b = await sign_in(c, "ib@example.com")
        for s in (a, b):
            r = await c.post("/test/effect", json={"x": 1}, headers={**bearer(s), "Idempotency-Key": "same"})
            assert r.status == 202
        assert len(effects) == 2

    async def test_concurrent_storm_one_effect(self, aiohttp_client, idem_config):
        """Ten concurrent requests with one key: one effect, the rest 409 or a replay."""
        app, effects, _ = _app_with_counter(idem_config)
        c = await aiohttp_client(app)
        s = await sign_in(c, "storm@example.com")
        h = {**bearer(s), "Idempotency-Key": "storm"}
        rs = await asyncio.gather(*(c.post("/test/effect", json={"x": 1}, headers=h) for _ in range(10)))
        assert len(effects) == 1
        assert all(r.status in (202, 409) for r in rs)
