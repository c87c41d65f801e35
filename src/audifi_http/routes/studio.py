"""V Studio over HTTP and the WebSocket ``/vstudio/sessions/{id}/ws`` (API.md "V Studio").

The socket: auth by a first ``{"type":"auth","token"}`` message or ``?token=`` (never logged);
``join`` answered by a ``snapshot``; votes are the same use case as ``POST …/vote``; a bad message
gets an ``error`` and the socket stays open. One reader (the handler) and one writer task per
socket; the writer drains a bounded queue the hub fills; a client that cannot keep up is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import struct
from collections import deque
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import attrs
import orjson
import structlog
from aiohttp import WSMsgType, web

from audifi_adapters.config import Config
from audifi_adapters.studio.hub import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, LocalHub
from audifi_adapters.studio_context import HUB
from audifi_core.auth.model import AuthContext
from audifi_core.errors import AudifiError, Forbidden, InternalError, Unauthorized
from audifi_core.studio.model import Contribution, DecisionView, StudioSessionView, VoteResult

from ..api import RouteTable
from ..keys import PLATFORM, SOCKETS
from ..middleware import auth_context
from ..serde import dump, json_response, parse, read_json

__all__ = ["register", "StudioSocket", "AUTH_TIMEOUT", "MAX_MESSAGE_BYTES"]

log = structlog.get_logger("audifi.studio.ws")

AUTH_TIMEOUT = 10.0
MAX_MESSAGE_BYTES = 16 * 1024
HEARTBEAT = 30.0


@attrs.frozen
class CreateSessionBody:
    master_id: str
    title: str
    audience: Literal["everyone", "subscribers", "shareholders"]
    weighted: bool = attrs.field(default=False, metadata={"doc": "weigh votes by shares held when a decision opens"})


@attrs.frozen
class ProducerBody:
    user_id: str


@attrs.frozen
class DecisionBody:
    prompt: str
    options: list[str] = attrs.field(metadata={"doc": "2 to 10 distinct labels"})
    closes_at: datetime | None = attrs.field(default=None, metadata={"doc": "closed by the server at this time"})


@attrs.frozen
class VoteBody:
    decision_id: str
    choice: str


@attrs.frozen
class ContributionBody:
    kind: str = attrs.field(metadata={"doc": "e.g. stem, mix, master, note (≤ 40 characters)"})
    description: str
    cid: str | None = None


@attrs.frozen
class LockBody:
    final_cid: str | None = attrs.field(
        default=None, metadata={"doc": "defaults to the newest contribution's CID, then the master's audio"})


def _platform(request: web.Request) -> Any:
    return request.app[PLATFORM]


def _studio(request: web.Request) -> Any:
    studio = _platform(request).studio
    if studio is None:
        raise InternalError("The studio context is not wired")
    return studio


# ------------------------------------------------------------------------------ the socket
_conn_ids = itertools.count(1)
_INSTANCE = os.urandom(4).hex()
DIRECT_WRITE_LIMIT = 64 * 1024  # write straight to the transport while its buffer is below this
_frame_cache: list[bytes] = [b"", b""]


def text_frame(payload: bytes) -> bytes:
    """An RFC 6455 text frame as a server sends it (FIN, unmasked, uncompressed). The hub offers the
    same bytes object to every member, so it is framed once per message, not once per socket."""
    if _frame_cache[0] is payload:
        return _frame_cache[1]
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    frame = header + payload
    _frame_cache[0], _frame_cache[1] = payload, frame
    return frame


class StudioSocket:
    """One connected socket: its identity and a bounded send queue.

    A message for an idle socket whose peer keeps up is written at once; otherwise it is queued
    (at most ``queue_limit``) and a writer task, alive only while the queue is not empty, drains it.
    ``offer`` returning ``False`` (queue full) tells the hub to drop the socket.
    """

    __slots__ = ("ws", "request", "session_id", "conn_id", "user_id", "display_name", "auth_session_id", "joined",
                 "closing",
                 "closer", "_limit", "_queue", "_held", "_transport", "_writer")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, session_id: str, queue_limit: int):
        self.ws = ws
        self.request = request
        self.session_id = session_id
        self.conn_id = f"{_INSTANCE}-{next(_conn_ids)}"
        self.user_id: str | None = None  # who authenticated (the rest of the AuthContext is not kept)
        self.display_name = ""
        self.auth_session_id: str | None = None
        self.joined = False
        self.closing = False
        self.closer: asyncio.Task[None] | None = None
        self._limit = queue_limit
        self._queue: deque[bytes] | None = None
        self._held: list[bytes] | None = None
        self._transport = request.transport
        self._writer: asyncio.Task[None] | None = None

    def authenticate(self, ctx: AuthContext) -> None:
        self.user_id = ctx.user_id
        self.display_name = ctx.user.display_name
        self.auth_session_id = ctx.session.id

    # -- the hub's side
    def offer(self, data: bytes) -> bool:
        if self.closing:
            return True
        if self._held is not None:
            if len(self._held) >= self._limit:
                return False
            self._held.append(data)
            return True
        if self._writer is None:
            # nothing queued: while the peer keeps up, write the frame now (no task woken per socket)
            t = self._transport
            if t is not None and not t.is_closing() and t.get_write_buffer_size() < DIRECT_WRITE_LIMIT:
                t.write(text_frame(data))
                return True
            self._queue = deque()
            self._writer = asyncio.get_running_loop().create_task(self._write(self._queue))
        queue = self._queue
        assert queue is not None
        if len(queue) >= self._limit:
            return False
        queue.append(data)
        return True

    def hold(self) -> None:
        """Keep what the hub offers until :meth:`release` (between joining and the snapshot)."""
        self._held = []

    def release(self, first: bytes | None) -> None:
        held, self._held = self._held or [], None
        for data in ([first] if first is not None else []) + held:
            if not self.offer(data):
                self.kick(1013, "too slow")
                return

    def kick(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.closer = asyncio.get_running_loop().create_task(self._close(code, reason))
        _background.add(self.closer)
        self.closer.add_done_callback(_background.discard)

    # -- the reader's side
    def send(self, message: dict[str, Any]) -> None:
        if not self.offer(orjson.dumps(message)):
            self.kick(1013, "too slow")

    def error(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        m: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if details:
            m["details"] = details
        self.send(m)

    async def _write(self, queue: deque[bytes]) -> None:
        ws = self.ws
        try:
            while queue:
                await ws.send_frame(queue.popleft(), WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            self.closing = True  # the peer went away; the reader sees it too
        finally:
            self._writer = None
            self._queue = None

    async def _close(self, code: int, reason: str) -> None:
        try:
            writer = self._writer
            if writer is not None:  # what is already queued goes first (e.g. the error explaining the close)
                await asyncio.wait({writer}, timeout=1.0)
                writer.cancel()
            async with asyncio.timeout(5.0):
                await self.ws.close(code=code, message=reason.encode(), drain=False)
        except Exception:  # noqa: BLE001 - a stuck client: cut it off
            pass
        finally:
            transport = self.request.transport
            if transport is not None and not transport.is_closing():
                transport.abort()

    async def shutdown(self) -> None:
        self.closing = True
        writer = self._writer
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer


_background: set[asyncio.Task[None]] = set()


def _origin_allowed(request: web.Request, config: Config) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser
    if origin in config.cors_origins:
        return True
    own = urlsplit(config.public_url)
    return origin == f"{own.scheme}://{own.netloc}"


class _Socket:
    """The reader: parses each client message and calls the use cases."""

    def __init__(self, request: web.Request, sock: StudioSocket, hub: LocalHub):
        self.request = request
        self.platform = _platform(request)
        self.studio = self.platform.studio
        self.sock = sock
        self.hub = hub

    def _fail(self, e: AudifiError) -> None:
        self.sock.error(e.code, e.message, e.details)

    async def handle(self, raw: str) -> None:
        sock = self.sock
        if len(raw) > MAX_MESSAGE_BYTES:
            sock.error("PAYLOAD_TOO_LARGE", f"A message is at most {MAX_MESSAGE_BYTES} bytes")
            return
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            sock.error("VALIDATION_ERROR", "Malformed JSON")
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "ping":
            sock.send({"type": "pong"})
            return
        if kind == "auth":
            await self._auth(msg)
            return
        if kind not in ("join", "vote"):
            sock.error("VALIDATION_ERROR", "Unknown message type",
                       {"fields": {"type": "one of auth, join, vote, ping"}})
            return
        if sock.user_id is None:
            sock.error("UNAUTHORIZED", "Authenticate first: {\"type\":\"auth\",\"token\":…}")
            return
        if kind == "join":
            await self._join(msg)
        else:
            await self._vote(msg)

    async def _auth(self, msg: dict[str, Any]) -> None:
        sock = self.sock
        if sock.user_id is not None:
            sock.error("CONFLICT", "Already authenticated")
            return
        token = msg.get("token")
        if not isinstance(token, str) or not token:
            sock.error("VALIDATION_ERROR", "A token is required", {"fields": {"token": "required"}})
            return
        try:
            ctx = await self.platform.auth.authenticate(token)
        except Unauthorized as e:
            self._fail(e)
            sock.kick(CLOSE_UNAUTHORIZED, "unauthorized")
            return
        sock.authenticate(ctx)
        self.hub.attach(sock)

    async def _join(self, msg: dict[str, Any]) -> None:
        sock = self.sock
        assert sock.user_id is not None
        user_id = msg.get("userId")
        if user_id is not None and user_id != sock.user_id:
            sock.error("FORBIDDEN", "userId must be the signed-in user", {"fields": {"userId": "not yours"}})
            return
        if sock.joined:
            sock.error("CONFLICT", "Already joined")
            return
        sock.hold()
        self.hub.join(sock)
        try:
            view = await self.studio.join(sock.user_id, sock.display_name, sock.session_id, sock.conn_id)
        except AudifiError as e:
            self.hub.part(sock)
            sock.release(None)
            self._fail(e)
            if isinstance(e, Forbidden):
                sock.kick(CLOSE_FORBIDDEN, "forbidden")
            return
        sock.joined = True
        sock.release(orjson.dumps({"type": "snapshot", "session": dump(view)}))

    async def _vote(self, msg: dict[str, Any]) -> None:
        sock = self.sock
        assert sock.user_id is not None
        decision_id, choice = msg.get("decisionId"), msg.get("choice")
        fields = {}
        if not isinstance(decision_id, str) or not decision_id:
            fields["decisionId"] = "required"
        if not isinstance(choice, str) or not choice:
            fields["choice"] = "required"
        if fields:
            sock.error("VALIDATION_ERROR", "Invalid vote", {"fields": fields})
            return
        try:
            await self.studio.vote(sock.user_id, sock.session_id, decision_id, choice, respond=False)
        except AudifiError as e:
            self._fail(e)


async def studio_socket(request: web.Request) -> web.StreamResponse:
    """``GET /vstudio/sessions/{id}/ws``: upgrade, then the messages of API.md."""
    platform = _platform(request)
    studio = _studio(request)
    if not _origin_allowed(request, platform.config):
        raise Forbidden("Origin not allowed", details={"origin": request.headers.get("Origin")})
    session_id = request.match_info["id"]
    await studio.session_meta(session_id)  # 404 before the upgrade
    ctx: AuthContext | None = None
    token = request.query.get("token")
    if token:
        ctx = await platform.auth.authenticate(token)
        await studio.require_audience(ctx.user_id, session_id)
    hub: LocalHub = platform.extras[HUB]
    ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE_BYTES * 4, heartbeat=HEARTBEAT,
                               timeout=5.0)
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    sock = StudioSocket(ws, request, session_id, hub.queue_limit)
    reader = _Socket(request, sock, hub)
    if ctx is not None:
        sock.authenticate(ctx)
        hub.attach(sock)
        ctx = None  # the socket keeps the ids it needs, not the whole context
    loop = asyncio.get_running_loop()
    deadline = loop.time() + AUTH_TIMEOUT
    try:
        while not sock.closing:
            try:
                if sock.user_id is None:
                    msg = await ws.receive(timeout=max(0.001, deadline - loop.time()))
                else:
                    msg = await ws.receive()
            except TimeoutError:
                sock.error("UNAUTHORIZED", f"Authenticate within {AUTH_TIMEOUT:g} s")
                sock.kick(CLOSE_UNAUTHORIZED, "authentication timeout")
                break
            if msg.type is WSMsgType.TEXT:
                await reader.handle(msg.data)
            elif msg.type is WSMsgType.BINARY:
                sock.error("VALIDATION_ERROR", "Text (JSON) messages only")
            else:
                break
    finally:
        if sock.joined:
            try:
                await studio.leave(session_id, sock.conn_id)
            except Exception as e:  # noqa: BLE001 - presence expires by itself
                log.warning("studio_leave_failed", error=repr(e))
        hub.detach(sock)
        if sock.closer is not None:
            # returning closes the socket with 1000: let the kick's close (its code) finish first
            with contextlib.suppress(Exception):
                await asyncio.shield(sock.closer)
        else:
            await sock.shutdown()
        sockets.discard(ws)
    return ws


# ------------------------------------------------------------------------------ routes
def register(t: RouteTable, config: Config | None = None) -> None:
    tag = "vstudio"

    @t.post("/vstudio/sessions", summary="Open a studio session on one of your masters (not a locked one)",
            who="owner of the master", body=CreateSessionBody, response=StudioSessionView, status=201,
            errors=(404, 409), tag=tag)
    async def create_studio_session(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), CreateSessionBody)
        view = await _studio(request).create_session(ctx.user_id, body.master_id, body.title, body.audience,
                                                     body.weighted)
        return json_response(view, status=201)

    @t.get("/vstudio/sessions/{id}", summary="A studio session: decisions with tallies, producers, present users, "
                                             "contributions", who="auth (audience)", response=StudioSessionView,
           errors=(404,), tag=tag)
    async def get_studio_session(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        return json_response(await _studio(request).get_session(ctx.user_id, request.match_info["id"]))

    @t.post("/vstudio/sessions/{id}/producers", summary="Invite a producer (they may contribute, whatever the "
                                                        "audience)", who="owner", body=ProducerBody, status=204,
            errors=(404, 409), tag=tag)
    async def invite_studio_producer(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), ProducerBody)
        await _studio(request).invite_producer(ctx.user_id, request.match_info["id"], body.user_id)
        return web.Response(status=204)

    @t.post("/vstudio/sessions/{id}/decisions", summary="Open a decision point (2–10 distinct options, "
                                                        "optional closesAt)", who="owner", body=DecisionBody,
            response=DecisionView, status=201, errors=(404, 409), tag=tag)
    async def open_studio_decision(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), DecisionBody)
        view = await _studio(request).open_decision(ctx.user_id, request.match_info["id"], body.prompt,
                                                    body.options, body.closes_at)
        return json_response(view, status=201)

    @t.post("/vstudio/sessions/{id}/decisions/{decisionId}/close",
            summary="Close a decision: the winner has the highest count (weighted sessions: weighted total), "
                    "ties broken by option order", who="owner", response=DecisionView, errors=(404, 409), tag=tag)
    async def close_studio_decision(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        view = await _studio(request).close_decision(ctx.user_id, request.match_info["id"],
                                                     request.match_info["decisionId"])
        return json_response(view)

    @t.post("/vstudio/sessions/{id}/vote", summary="Vote (a later vote replaces yours while the decision is "
                                                   "open); the tallies after it, with their seq",
            who="auth (audience)", body=VoteBody, response=VoteResult, errors=(404, 409), tag=tag)
    async def studio_vote(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), VoteBody)
        result = await _studio(request).vote(ctx.user_id, request.match_info["id"], body.decision_id, body.choice)
        return json_response(result)

    @t.post("/vstudio/sessions/{id}/contributions", summary="Add a contribution (stem, mix, note…)",
            who="producer or owner", body=ContributionBody, response=Contribution, status=201,
            errors=(404, 409), tag=tag)
    async def add_studio_contribution(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request), ContributionBody)
        c = await _studio(request).add_contribution(ctx.user_id, request.match_info["id"], body.kind,
                                                    body.description, body.cid)
        return json_response(c, status=201)

    @t.post("/vstudio/sessions/{id}/lock", summary="Lock the session and the master (finalAudioCid, lockedAt); "
                                                   "open decisions close; nothing changes after",
            who="owner", body=LockBody, response=StudioSessionView, errors=(404, 409), tag=tag)
    async def lock_studio_session(request: web.Request) -> web.Response:
        ctx = await auth_context(request)
        body = parse(await read_json(request, optional=True), LockBody)
        view = await _studio(request).lock(ctx.user_id, request.match_info["id"], body.final_cid)
        return json_response(view)

    t.get("/vstudio/sessions/{id}/ws",
          summary="V Studio WebSocket: auth by first message {type:auth, token} or ?token=; join → snapshot; "
                  "vote, ping; server: snapshot, user_joined, user_left, decision_opened, vote_update, "
                  "decision_closed, contribution_added, session_locked, error, pong",
          who="auth (audience)", websocket=True, status=101, errors=(404,), tag=tag,
          query={"token": (str, "access token (alternative to the auth message; never logged)")})(studio_socket)
