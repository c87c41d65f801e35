"""Request ids, the error envelope for everything, CORS, and the request helpers handlers use."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from audifi_core.auth.model import AuthContext, Role
from audifi_core.errors import AudifiError, Conflict, Forbidden, Unauthorized, ValidationError
from audifi_core.ports import IdempotencyState

from .keys import AUTH, CONFIG, PLATFORM, REQUEST_ID
from .serde import read_body

__all__ = [
    "request_id_middleware",
    "cors_middleware",
    "error_body",
    "auth_context",
    "optional_auth",
    "require_role",
    "idempotent",
    "client_ip",
]

log = structlog.get_logger("audifi.http")
_RID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {400: "VALIDATION_ERROR", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
               405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE", 429: "RATE_LIMITED"}


def error_body(code: str, message: str, details: dict[str, Any] | None, request_id: str) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details:
        err["details"] = details
    return {"error": err, "requestId": request_id}


def _error_response(err: AudifiError, rid: str) -> web.Response:
    headers = {"X-Request-Id": rid}
    if err.status == 429:
        headers["Retry-After"] = str(err.details.get("retryAfter", 1))
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="audifi"'
    return web.Response(body=orjson.dumps(error_body(err.code, err.message, err.details, rid)),
                        status=err.status, content_type="application/json", headers=headers)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _RID.match(incoming) else "req_" + secrets.token_hex(8)
    request[REQUEST_ID] = rid
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=rid)
    try:
        response = await handler(request)
    except AudifiError as e:
        if e.status >= 500:
            log.warning("request_failed", code=e.code, error=e.message)
        return _error_response(e, rid)
    except web.HTTPException as e:
        if e.status < 400:
            e.headers["X-Request-Id"] = rid
            raise
        code = _HTTP_CODES.get(e.status, "NOT_FOUND" if e.status == 404 else "ERROR")
        message = {404: f"No route for {request.method} {request.path}",
                   405: f"Method {request.method} not allowed on {request.path}"}.get(e.status, e.reason)
        resp = web.Response(body=orjson.dumps(error_body(code, message, None, rid)), status=e.status,
                            content_type="application/json", headers={"X-Request-Id": rid})
        if e.status == 405 and "Allow" in e.headers:
            resp.headers["Allow"] = e.headers["Allow"]
        return resp
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return web.Response(body=orjson.dumps(error_body("INTERNAL_ERROR", "Internal error", None, rid)),
                            status=500, content_type="application/json", headers={"X-Request-Id": rid})
    if not response.prepared:
        response.headers["X-Request-Id"] = rid
    return response


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.app[CONFIG].cors_origins
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if not allowed:
            raise Forbidden("Origin not allowed", details={"origin": origin})
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin or "",
            "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, X-Request-Id",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        })
    response = await handler(request)
    if allowed and not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = origin or ""
        response.headers["Access-Control-Expose-Headers"] = "X-Request-Id, Retry-After"
        response.headers["Vary"] = "Origin"
    return response


def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


def _bearer(request: web.Request) -> str | None:
    h = request.headers.get("Authorization", "")
    scheme, _, token = h.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def auth_context(request: web.Request) -> AuthContext:
    cached = request.get(AUTH)
    if cached is not None:
        return cached
    token = _bearer(request)
    if token is None:
        raise Unauthorized("Sign in first: missing Bearer token")
    ctx = await request.app[PLATFORM].auth.authenticate(token)
    request[AUTH] = ctx
    structlog.contextvars.bind_contextvars(user_id=ctx.user_id)
    return ctx


async def optional_auth(request: web.Request) -> AuthContext | None:
    if _bearer(request) is None:
        return None
    return await auth_context(request)


async def require_role(request: web.Request, role: Role) -> AuthContext:
    ctx = await auth_context(request)
    if not ctx.user.has_role(role):
        raise Forbidden(f"The {role.value} role is required")
    return ctx


IDEMPOTENCY_TTL = 24 * 3600


def idempotent(handler: Handler) -> Handler:
    """``Idempotency-Key``: (user, method + path, key) → the first response for 24 h; 409 otherwise."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return await handler(request)
        if not 1 <= len(key) <= 255 or not key.isprintable():
            raise ValidationError("Bad Idempotency-Key", fields={"Idempotency-Key": "1-255 printable characters"})
        ctx = await auth_context(request)
        body = b"" if request.content_type.startswith("multipart/") else await read_body(request)
        fingerprint = hashlib.sha256(body).hexdigest()
        scope = hashlib.sha256(f"{ctx.user_id}\n{request.method} {request.path}\n{key}".encode()).hexdigest()
        store = request.app[PLATFORM].idempotency
        rec = await store.begin(scope, fingerprint, IDEMPOTENCY_TTL)
        if rec.state is IdempotencyState.MISMATCH:
            raise Conflict("Idempotency-Key was used with another body", details={"idempotencyKey": key})
        if rec.state is IdempotencyState.IN_FLIGHT:
            raise Conflict("A request with this Idempotency-Key is still running", details={"idempotencyKey": key})
        if rec.state is IdempotencyState.DONE:
            return web.Response(body=orjson.dumps(rec.body), status=rec.status, content_type="application/json",
                                headers={"Idempotent-Replayed": "true"})
        try:
            response = await handler(request)
        except AudifiError as e:
            if e.status < 500:
                rid = request.get(REQUEST_ID, "")
                await store.finish(scope, fingerprint, e.status,
                                   error_body(e.code, e.message, e.details, rid), IDEMPOTENCY_TTL)
            else:
                await store.release(scope)
            raise
        except BaseException:
            await store.release(scope)
            raise
        if isinstance(response, web.Response) and response.status < 500 and response.body is not None:
            raw = response.body
            stored = orjson.loads(raw) if raw else None  # type: ignore[arg-type]
            await store.finish(scope, fingerprint, response.status, stored, IDEMPOTENCY_TTL)
        else:
            await store.release(scope)
        return response

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper
