"""AudiFi's HTTP and WebSocket edge (aiohttp): routes, middleware, OpenAPI, CLI."""

from .app import create_app

__all__ = ["create_app"]
