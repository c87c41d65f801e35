"""Content store on Pinata's pinning API, reading back through an IPFS gateway.

* files: ``POST {api}/pinning/pinFileToIPFS``, ``multipart/form-data`` with the ``file`` part
  (streamed), ``pinataMetadata`` (``{"name", "keyvalues"}``) and ``pinataOptions``
  (``{"cidVersion": 1}``);
* JSON: ``POST {api}/pinning/pinJSONToIPFS`` with ``{"pinataOptions", "pinataMetadata",
  "pinataContent"}``;
* both answer ``{"IpfsHash", "PinSize", "Timestamp"}``;
* health: ``GET {api}/data/testAuthentication``;
* reads: ``GET {gateway}/ipfs/<cid>``; the bytes served are hashed on the way and checked
  against the CID (``verify_reads``), since a gateway is not trusted to serve the right bytes.

Authentication: headers ``pinata_api_key`` / ``pinata_secret_api_key``
(``PINATA_API_KEY`` / ``PINATA_SECRET_KEY`` in the environment, see :meth:`from_env`).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from audifi_core.content import StoredContent, canonical_json
from audifi_core.errors import UpstreamError

from .kubo import HttpStoreBase, safe_filename
from .unixfs import CidTracker, cid_of_bytes, normalize_cid

__all__ = ["PinataContentStore"]

DEFAULT_API_URL = "https://api.pinata.cloud"
DEFAULT_GATEWAY_URL = "https://gateway.pinata.cloud"

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_JS_SAFE_INT = 2**53 - 1


def _same_under_js_stringify(obj: object) -> bool:
    """Whether ``JSON.stringify(JSON.parse(canonical_json(obj)))`` gives the same bytes back.

    Not so when an object has array-index keys (JavaScript puts them first, in numeric
    order), for floats (Python and JavaScript print them differently) and for integers
    beyond 2**53. Such values are pinned as a file of their canonical bytes instead.
    """
    if obj is None or isinstance(obj, bool | str):
        return True
    if isinstance(obj, int):
        return -_JS_SAFE_INT <= obj <= _JS_SAFE_INT
    if isinstance(obj, list | tuple):
        return all(_same_under_js_stringify(v) for v in obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str) or (_ARRAY_INDEX.fullmatch(k) and int(k) < 2**32 - 1):
                return False
            if not _same_under_js_stringify(v):
                return False
        return True
    return False


class PinataContentStore(HttpStoreBase):
    """A :class:`~audifi_core.content.ContentStore` on Pinata."""

    service = "pinata"

    def __init__(self, api_key: str, secret_key: str, *, api_url: str = DEFAULT_API_URL,
                 gateway_url: str = DEFAULT_GATEWAY_URL, gateway_token: str | None = None,
                 verify_reads: bool = True, session: aiohttp.ClientSession | None = None,
                 timeout: aiohttp.ClientTimeout | None = None):
        super().__init__(session=session, timeout=timeout)
        self.api_url = api_url.rstrip("/")
        self.gateway_url = gateway_url.rstrip("/")
        self.verify_reads = verify_reads
        self._auth = {"pinata_api_key": api_key, "pinata_secret_api_key": secret_key}
        self._gateway_headers = (
            {"x-pinata-gateway-token": gateway_token} if gateway_token else {})

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **kwargs: Any) -> PinataContentStore:
        """Keys from ``PINATA_API_KEY`` / ``PINATA_SECRET_KEY`` (and ``PINATA_GATEWAY_URL``,
        ``PINATA_GATEWAY_TOKEN`` when set). ``KeyError`` names a missing key."""
        opts: dict[str, Any] = {}
        if environ.get("PINATA_GATEWAY_URL"):
            opts["gateway_url"] = environ["PINATA_GATEWAY_URL"]
        if environ.get("PINATA_GATEWAY_TOKEN"):
            opts["gateway_token"] = environ["PINATA_GATEWAY_TOKEN"]
        opts.update(kwargs)
        return cls(environ["PINATA_API_KEY"], environ["PINATA_SECRET_KEY"], **opts)

    async def add_stream(self, chunks: AsyncIterator[bytes], *, name: str, content_type: str,
                         max_bytes: int | None = None) -> StoredContent:
        filename = safe_filename(name)
        fields = {
            "pinataMetadata": json.dumps(
                {"name": filename, "keyvalues": {"contentType": content_type}}),
            "pinataOptions": json.dumps({"cidVersion": 1}),
        }
        return await self._upload(
            f"{self.api_url}/pinning/pinFileToIPFS", chunks=chunks,
            tracker=CidTracker(max_bytes), filename=filename,
            content_type=content_type or "application/octet-stream", params=None,
            headers=self._auth, extra_fields=fields, parse=self._parse_pin)

    async def add_bytes(self, data: bytes, *, name: str, content_type: str) -> StoredContent:
        async def one() -> AsyncIterator[bytes]:
            yield bytes(data)

        return await self.add_stream(one(), name=name, content_type=content_type)

    async def add_json(self, obj: object, *, name: str) -> StoredContent:
        data = canonical_json(obj)
        if not _same_under_js_stringify(obj):
            return await self.add_bytes(data, name=name, content_type="application/json")
        expected = cid_of_bytes(data)
        meta = json.dumps({"name": safe_filename(name)}).encode()
        # Built by hand so that pinataContent goes out in its canonical key order.
        body = (b'{"pinataOptions":{"cidVersion":1},"pinataMetadata":' + meta
                + b',"pinataContent":' + data + b"}")
        headers = {**self._auth, "Content-Type": "application/json"}
        try:
            async with self._session().post(f"{self.api_url}/pinning/pinJSONToIPFS", data=body,
                                            headers=headers, **self._request_kwargs()) as resp:
                if resp.status // 100 != 2:
                    raise await self._bad_status("pinJSONToIPFS", resp)
                answer = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._unreachable("pinJSONToIPFS", exc) from None
        got = self._parse_pin(answer)
        try:
            got = normalize_cid(got)
        except ValueError:
            raise UpstreamError("pinata: answered an invalid CID",
                                details={"service": self.service, "cid": got}) from None
        if got != expected:
            raise self._mismatch(got, expected)
        return StoredContent(cid=expected, size=len(data))

    async def open(self, cid: str) -> AsyncIterator[bytes]:
        key = self._cid_arg(cid)
        return await self._open_response(
            "GET", f"{self.gateway_url}/ipfs/{key}", cid=key, headers=self._gateway_headers,
            verify=self.verify_reads)

    async def check(self) -> None:
        try:
            async with self._session().get(f"{self.api_url}/data/testAuthentication",
                                           headers=self._auth,
                                           **self._request_kwargs()) as resp:
                if resp.status // 100 != 2:
                    raise await self._bad_status("testAuthentication", resp)
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._unreachable("testAuthentication", exc) from None

    def _parse_pin(self, body: bytes) -> str:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("IpfsHash"), str):
            raise UpstreamError("pinata: pin answered no IpfsHash",
                                details={"service": self.service})
        return answer["IpfsHash"]
