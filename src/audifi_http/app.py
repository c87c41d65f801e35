"""``create_app(config)``: the platform in a cleanup context, every route mounted, graceful shutdown."""

from __future__ import annotations

import importlib
import importlib.util
import weakref
from collections.abc import AsyncIterator

import structlog
from aiohttp import WSCloseCode, web

from audifi_adapters.config import Config
from audifi_adapters.platform import open_platform
from audifi_core.ports import Clock, IdGenerator

from .api import RouteTable
from .keys import CONFIG, PLATFORM, ROUTES, SOCKETS
from .middleware import cors_middleware, request_id_middleware
from .routes import auth, dev, ops

__all__ = ["create_app", "build_routes"]

log = structlog.get_logger("audifi.app")


ROUTE_MODULES = ("chain", "masters", "studio", "coins", "payments", "analytics")


def build_routes(config: Config) -> RouteTable:
    """Every route, from each context's ``audifi_http.routes.<name>.register(t, config)``."""
    t = RouteTable()
    ops.register(t)
    auth.register(t)
    for name in ROUTE_MODULES:
        module_name = f"audifi_http.routes.{name}"
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name).register(t, config)
    if not config.production:
        dev.register(t, mailbox=not config.smtp_url)
    return t


def create_app(config: Config, *, clock: Clock | None = None, ids: IdGenerator | None = None) -> web.Application:
    config.validate()
    app = web.Application(middlewares=[request_id_middleware, cors_middleware],
                          client_max_size=config.upload_limit_bytes + 1024 * 1024)
    app[CONFIG] = config
    app[SOCKETS] = weakref.WeakSet()
    routes = build_routes(config)
    app[ROUTES] = routes
    routes.mount(app)

    async def platform_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_platform(config, clock=clock, ids=ids) as platform:
            app[PLATFORM] = platform
            log.info("audifi_ready", mode=config.env, public_url=config.public_url,
                     adapters=",".join(f"{k}={v}" for k, v in platform.adapters.items()))
            yield

    async def close_sockets(app: web.Application) -> None:
        for ws in list(app[SOCKETS]):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    app.cleanup_ctx.append(platform_ctx)
    app.on_shutdown.append(close_sockets)
    return app
