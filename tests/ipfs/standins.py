"""Local stand-ins for Kubo's RPC API and Pinata's API, answering as their docs say.

Blobs are kept in memory by CID (computed with our UnixFS builder, as the real services
would). ``fail_status`` makes every endpoint answer that status; ``wrong_cid`` makes the
add/pin endpoints answer a CID that is not the content's.
"""

from __future__ import annotations

import datetime as dt
import json

from aiohttp import web

from audifi_adapters.ipfs.unixfs import UnixFsBuilder, cid_of_bytes

# CID of b"something else", to answer when told to lie.
WRONG_CID = "bafkreibz4ug5tnooo7ueiulmt5wzenxdpnvotuzp5qp6lrx3fcuc3h3haa"


class _StandIn:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_status: int | None = None
        self.wrong_cid = False
        self.app = web.Application(middlewares=[self._middleware])

    @web.middleware
    async def _middleware(self, request: web.Request, handler):  # noqa: ANN001
        self.requests.append((request.method, request.path))
        if self.fail_status is not None:
            return web.json_response(self._error_body("injected failure"),
                                     status=self.fail_status)
        return await handler(request)

    def _error_body(self, message: str) -> dict:
        raise NotImplementedError


async def _read_file_part(part) -> tuple[bytes, tuple[UnixFsBuilder, UnixFsBuilder]]:  # noqa: ANN001
    """Read one file part as a stream, hashing it both ways (CIDv1, CIDv0) as it comes."""
    v1 = UnixFsBuilder(cid_version=1)
    v0 = UnixFsBuilder(cid_version=0)
    data = bytearray()
    while chunk := await part.read_chunk(65536):
        data += chunk
        v1.feed(chunk)
        v0.feed(chunk)
    return bytes(data), (v1, v0)


class KuboStandIn(_StandIn):
    """``/api/v0/add``, ``/api/v0/cat``, ``/api/v0/version``; POST only, as Kubo's RPC."""

    def __init__(self) -> None:
        super().__init__()
        self.app.router.add_route("*", "/api/v0/add", self.add)
        self.app.router.add_route("*", "/api/v0/cat", self.cat)
        self.app.router.add_route("*", "/api/v0/version", self.version)
        self.add_params: list[dict[str, str]] = []

    def _error_body(self, message: str) -> dict:
        return {"Message": message, "Code": 0, "Type": "error"}

    def _refuse_get(self, request: web.Request) -> web.Response | None:
        if request.method != "POST":
            return web.Response(status=405, text=f"405 - Method Not Allowed: {request.method}")
        return None

    async def add(self, request: web.Request) -> web.StreamResponse:
        if (refusal := self._refuse_get(request)) is not None:
            return refusal
        params = dict(request.query)
        self.add_params.append(params)
        cid_version = int(params.get("cid-version", "0"))
        raw_leaves = params.get("raw-leaves", "true" if cid_version == 1 else "false") == "true"
        if params.get("chunker", "size-262144") != "size-262144" or raw_leaves != (cid_version == 1):
            return web.json_response(self._error_body("stand-in supports the defaults only"),
                                     status=500)
        reader = await request.multipart()
        lines = []
        added: dict[str, bytes] = {}
        while (part := await reader.next()) is not None:
            if part.name != "file" and part.name != "path":
                continue
            data, (v1, v0) = await _read_file_part(part)
            builder = v1 if cid_version == 1 else v0
            cid = builder.finish()
            (v0 if builder is v1 else v1).finish()
            added[cid] = data
            lines.append({"Name": part.filename or cid, "Hash": WRONG_CID if self.wrong_cid else cid,
                          "Size": str(builder.dag_size)})
        # Only a request read to its end stores anything (an aborted upload leaves nothing).
        self.blobs.update(added)
        resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "X-Chunked-Output": "1"})
        await resp.prepare(request)
        for line in lines:
            await resp.write(json.dumps(line).encode() + b"\n")
        await resp.write_eof()
        return resp

    async def cat(self, request: web.Request) -> web.StreamResponse:
        if (refusal := self._refuse_get(request)) is not None:
            return refusal
        cid = request.query.get("arg", "")
        if not cid:
            return web.json_response(self._error_body("argument \"ipfs-path\" is required"),
                                     status=400)
        data = self.blobs.get(cid)
        if data is None:
            return web.json_response(
                self._error_body(f"block was not found locally (offline): ipld: could not find {cid}"),
                status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain",
                                           "X-Stream-Output": "1"})
        await resp.prepare(request)
        for i in range(0, len(data), 100_000):
            await resp.write(data[i:i + 100_000])
        await resp.write_eof()
        return resp

    async def version(self, request: web.Request) -> web.Response:
        if (refusal := self._refuse_get(request)) is not None:
            return refusal
        return web.json_response({"Version": "0.35.0", "Commit": "", "Repo": "16",
                                  "System": "amd64/linux", "Golang": "go1.24.2"})


class PinataStandIn(_StandIn):
    """``/pinning/pinFileToIPFS``, ``/pinning/pinJSONToIPFS``, ``/data/testAuthentication``
    and a gateway's ``/ipfs/<cid>``."""

    def __init__(self, api_key: str = "key", secret_key: str = "secret") -> None:
        super().__init__()
        self.api_key = api_key
        self.secret_key = secret_key
        self.metadata: list[dict] = []
        self.json_pins = 0
        self.corrupt_reads = False
        self.app.router.add_post("/pinning/pinFileToIPFS", self.pin_file)
        self.app.router.add_post("/pinning/pinJSONToIPFS", self.pin_json)
        self.app.router.add_get("/data/testAuthentication", self.test_authentication)
        self.app.router.add_get("/ipfs/{cid}", self.gateway)

    def _error_body(self, message: str) -> dict:
        return {"error": {"reason": "INTERNAL_SERVER_ERROR", "details": message}}

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if (request.headers.get("pinata_api_key") != self.api_key
                or request.headers.get("pinata_secret_api_key") != self.secret_key):
            return web.json_response(
                {"error": {"reason": "INVALID_API_KEYS", "details": "Invalid API key provided"}},
                status=401)
        return None

    def _answer(self, cid: str, pin_size: int) -> web.Response:
        return web.json_response({
            "IpfsHash": WRONG_CID if self.wrong_cid else cid,
            "PinSize": pin_size,
            "Timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "isDuplicate": False,
        })

    async def pin_file(self, request: web.Request) -> web.Response:
        if (refusal := self._unauthorized(request)) is not None:
            return refusal
        reader = await request.multipart()
        file = None
        options: dict = {}
        metadata: dict = {}
        while (part := await reader.next()) is not None:
            if part.name == "file":
                file = await _read_file_part(part)
            elif part.name == "pinataOptions":
                options = json.loads(await part.text())
            elif part.name == "pinataMetadata":
                metadata = json.loads(await part.text())
        if file is None:
            return web.json_response({"error": "Invalid request format."}, status=400)
        data, (v1, v0) = file
        builder = v1 if options.get("cidVersion", 0) == 1 else v0
        cid = builder.finish()
        (v0 if builder is v1 else v1).finish()
        self.blobs[cid] = data
        self.metadata.append(metadata)
        return self._answer(cid, builder.dag_size)

    async def pin_json(self, request: web.Request) -> web.Response:
        if (refusal := self._unauthorized(request)) is not None:
            return refusal
        body = await request.json()
        content = body["pinataContent"]
        # What JavaScript's JSON.stringify gives for the parsed content (key order kept).
        data = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
        version = body.get("pinataOptions", {}).get("cidVersion", 0)
        cid = cid_of_bytes(data, version=version)
        self.blobs[cid] = data
        self.metadata.append(body.get("pinataMetadata", {}))
        self.json_pins += 1
        return self._answer(cid, len(data))

    async def test_authentication(self, request: web.Request) -> web.Response:
        if (refusal := self._unauthorized(request)) is not None:
            return refusal
        return web.json_response(
            {"message": "Congratulations! You are communicating with the Pinata API!"})

    async def gateway(self, request: web.Request) -> web.Response:
        data = self.blobs.get(request.match_info["cid"])
        if data is None:
            return web.Response(status=404, text="Not Found")
        if self.corrupt_reads:
            data = data[:-1] + bytes([data[-1] ^ 1]) if data else b"?"
        return web.Response(body=data, content_type="application/octet-stream")
