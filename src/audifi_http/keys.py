"""Typed application state keys."""

from __future__ import annotations

import weakref

from aiohttp import web

from audifi_adapters.config import Config
from audifi_adapters.platform import Platform
from audifi_core.auth.model import AuthContext

from .api import RouteTable

__all__ = ["CONFIG", "PLATFORM", "ROUTES", "SOCKETS", "REQUEST_ID", "AUTH", "RAW_BODY"]

CONFIG = web.AppKey("audifi.config", Config)
PLATFORM = web.AppKey("audifi.platform", Platform)
ROUTES = web.AppKey("audifi.routes", RouteTable)
SOCKETS = web.AppKey("audifi.sockets", weakref.WeakSet)
REQUEST_ID = web.RequestKey("audifi.request_id", str)
AUTH = web.RequestKey("audifi.auth", AuthContext)
RAW_BODY = web.RequestKey("audifi.raw_body", bytes)
