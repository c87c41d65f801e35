"""Content store on a Kubo (go-ipfs) node, through its HTTP RPC API (``/api/v0``).

* add: ``POST /api/v0/add?cid-version=1&raw-leaves=true&pin=true&chunker=size-262144`` with a
  ``multipart/form-data`` body of one file part, streamed; the answer is NDJSON, one
  ``{"Name", "Hash", "Size"}`` object per added entry.
* open: ``POST /api/v0/cat?arg=<cid>`` streams the bytes back (``text/plain``).
* check: ``POST /api/v0/version`` (``{"Version", "Commit", "Repo", "System", "Golang"}``).

Kubo's RPC takes POST only; errors come back as non-2xx with ``{"Message", "Code", "Type"}``.

This module also holds :class:`HttpStoreBase`, the session handling, error translation and
streamed upload shared with the Pinata adapter.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp.payload import AsyncIterablePayload

from audifi_core.content import StoredContent, canonical_json
from audifi_core.errors import AudifiError, NotFound, UpstreamError, ValidationError

from .unixfs import CidTracker, normalize_cid

__all__ = ["KuboContentStore", "HttpStoreBase"]

_READ_SIZE = 1 << 18
_ERROR_SNIPPET = 300


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def safe_filename(name: str) -> str:
    """The last path component of ``name``, so the service stores one file, not a tree."""
    base = re.split(r"[/\\]", name or "")[-1].strip()
    base = "".join(ch for ch in base if ch.isprintable())
    return base if base not in ("", ".", "..") else "file"


class HttpStoreBase:
    """Session ownership and failure translation for the HTTP content stores.

    Give it an ``aiohttp.ClientSession`` (the caller closes it), or let it make its own on
    first use (``close()`` closes that one). ``async with store:`` works as well.
    """

    service = "http"

    def __init__(self, *, session: aiohttp.ClientSession | None = None,
                 timeout: aiohttp.ClientTimeout | None = None):
        self._given_session = session
        self._own_session: aiohttp.ClientSession | None = None
        self._timeout = timeout

    async def start(self) -> None:
        self._session()

    async def close(self) -> None:
        if self._own_session is not None:
            session, self._own_session = self._own_session, None
            await session.close()

    async def __aenter__(self) -> HttpStoreBase:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _session(self) -> aiohttp.ClientSession:
        if self._given_session is not None:
            return self._given_session
        if self._own_session is None or self._own_session.closed:
            self._own_session = aiohttp.ClientSession()
        return self._own_session

    def _request_kwargs(self) -> dict[str, Any]:
        return {} if self._timeout is None else {"timeout": self._timeout}

    # -- errors --------------------------------------------------------------------------

    def _unreachable(self, what: str, exc: BaseException) -> UpstreamError:
        reason = str(exc) or type(exc).__name__
        return UpstreamError(f"{self.service}: {what} failed: {reason}",
                             details={"service": self.service, "reason": reason})

    async def _bad_status(self, what: str, resp: aiohttp.ClientResponse) -> AudifiError:
        try:
            body = (await resp.read())[:_ERROR_SNIPPET].decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError):
            body = ""
        return UpstreamError(f"{self.service}: {what} answered HTTP {resp.status}",
                             details={"service": self.service, "status": resp.status,
                                      "body": body})

    def _mismatch(self, got: str, expected: str) -> UpstreamError:
        return UpstreamError(
            f"{self.service}: stored content under CID {got}, expected {expected}",
            details={"service": self.service, "cid": got, "expectedCid": expected})

    @staticmethod
    def _cid_arg(cid: str) -> str:
        try:
            return normalize_cid(cid)
        except ValueError:
            raise ValidationError("Invalid CID", fields={"cid": "not a CID"}) from None

    # -- streaming -----------------------------------------------------------------------

    async def _upload(self, url: str, *, chunks: AsyncIterator[bytes], tracker: CidTracker,
                      filename: str, content_type: str, params: Mapping[str, str] | None,
                      headers: Mapping[str, str] | None, extra_fields: Mapping[str, str],
                      parse: Callable[[bytes], str]) -> StoredContent:
        """POST one streamed file part (plus text fields); ``parse`` gets the CID out.

        The bytes go through ``tracker`` on their way out, so our CID is known when the
        service answers; a different CID from the service is an ``UpstreamError``.
        """
        form = aiohttp.MultipartWriter("form-data")
        part = AsyncIterablePayload(tracker.passthrough(chunks), content_type=content_type)
        part.set_content_disposition("form-data", name="file", filename=filename)
        form.append_payload(part)
        for field, value in extra_fields.items():
            form.append(value, {"Content-Type": "application/json"}).set_content_disposition(
                "form-data", name=field)
        try:
            async with self._session().post(url, data=form, params=params, headers=headers,
                                            **self._request_kwargs()) as resp:
                if tracker.error is not None:
                    raise tracker.error
                if resp.status // 100 != 2:
                    raise await self._bad_status("upload", resp)
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if tracker.error is not None:  # our own stream failed: that is the real error
                raise tracker.error from None
            raise self._unreachable("upload", exc) from None
        if tracker.error is not None:
            raise tracker.error
        expected = tracker.finish()
        got = parse(body)
        try:
            got_norm = normalize_cid(got)
        except ValueError:
            raise UpstreamError(f"{self.service}: answered an invalid CID",
                                details={"service": self.service, "cid": got}) from None
        if got_norm != expected:
            raise self._mismatch(got_norm, expected)
        return StoredContent(cid=expected, size=tracker.size)

    async def _open_response(self, method: str, url: str, *, cid: str,
                             params: Mapping[str, str] | None = None,
                             headers: Mapping[str, str] | None = None,
                             not_found: Callable[[int, bytes], bool] = lambda s, b: s == 404,
                             verify: bool = False) -> AsyncIterator[bytes]:
        try:
            resp = await self._session().request(method, url, params=params, headers=headers,
                                                 **self._request_kwargs())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._unreachable("read", exc) from None
        if resp.status // 100 != 2:
            try:
                body = await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError):
                body = b""
            finally:
                resp.release()
            if not_found(resp.status, body):
                raise NotFound(f"no content {cid}", code="CONTENT_NOT_FOUND",
                               details={"cid": cid})
            raise UpstreamError(
                f"{self.service}: read answered HTTP {resp.status}",
                details={"service": self.service, "status": resp.status,
                         "body": body[:_ERROR_SNIPPET].decode("utf-8", "replace")})
        return self._stream_body(resp, cid, verify)

    async def _stream_body(self, resp: aiohttp.ClientResponse, cid: str,
                           verify: bool) -> AsyncIterator[bytes]:
        tracker = CidTracker(cid_version=0 if cid.startswith("Qm") else 1) if verify else None
        try:
            async for block in resp.content.iter_chunked(_READ_SIZE):
                if tracker is not None:
                    tracker.update(block)
                yield block
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._unreachable("read", exc) from None
        finally:
            resp.release()
        if tracker is not None:
            got = tracker.finish()
            if got != cid:
                raise UpstreamError(
                    f"{self.service}: content served for {cid} hashes to {got}",
                    details={"service": self.service, "cid": cid, "servedCid": got})


class KuboContentStore(HttpStoreBase):
    """A :class:`~audifi_core.content.ContentStore` on a Kubo node's RPC API.

    ``api_url`` is the RPC address, e.g. ``http://127.0.0.1:5001``; ``headers`` are sent with
    every call (e.g. ``Authorization`` when the RPC sits behind an authenticating proxy).
    """

    service = "kubo"

    def __init__(self, api_url: str, *, session: aiohttp.ClientSession | None = None,
                 headers: Mapping[str, str] | None = None,
                 timeout: aiohttp.ClientTimeout | None = None):
        super().__init__(session=session, timeout=timeout)
        self.api_url = api_url.rstrip("/")
        self._headers = dict(headers or {})

    def _url(self, command: str) -> str:
        return f"{self.api_url}/api/v0/{command}"

    async def add_stream(self, chunks: AsyncIterator[bytes], *, name: str, content_type: str,
                         max_bytes: int | None = None) -> StoredContent:
        filename = safe_filename(name)
        params = {"cid-version": "1", "raw-leaves": "true", "pin": "true",
                  "chunker": "size-262144", "hash": "sha2-256", "progress": "false"}
        return await self._upload(
            self._url("add"), chunks=chunks, tracker=CidTracker(max_bytes), filename=filename,
            content_type=content_type or "application/octet-stream", params=params,
            headers=self._headers, extra_fields={},
            parse=lambda body: self._parse_add(body, filename))

    async def add_bytes(self, data: bytes, *, name: str, content_type: str) -> StoredContent:
        return await self.add_stream(_one(bytes(data)), name=name, content_type=content_type)

    async def add_json(self, obj: object, *, name: str) -> StoredContent:
        return await self.add_bytes(canonical_json(obj), name=name,
                                    content_type="application/json")

    async def open(self, cid: str) -> AsyncIterator[bytes]:
        key = self._cid_arg(cid)
        return await self._open_response(
            "POST", self._url("cat"), cid=key, params={"arg": key}, headers=self._headers,
            not_found=self._is_not_found)

    async def check(self) -> None:
        try:
            async with self._session().post(self._url("version"), headers=self._headers,
                                            **self._request_kwargs()) as resp:
                if resp.status // 100 != 2:
                    raise await self._bad_status("version", resp)
                info = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise self._unreachable("version", exc) from None
        if not isinstance(info, dict) or not info.get("Version"):
            raise UpstreamError("kubo: version answered no Version",
                                details={"service": self.service})

    # -- internals -----------------------------------------------------------------------

    def _parse_add(self, body: bytes, filename: str) -> str:
        entries: list[dict[str, Any]] = []
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                raise UpstreamError("kubo: add answered something that is not NDJSON",
                                    details={"service": self.service}) from None
            if not isinstance(entry, dict):
                continue
            if entry.get("Type") == "error" or ("Message" in entry and "Hash" not in entry):
                raise UpstreamError(f"kubo: add failed: {entry.get('Message')}",
                                    details={"service": self.service})
            if isinstance(entry.get("Hash"), str):
                entries.append(entry)
        if not entries:
            raise UpstreamError("kubo: add answered no Hash", details={"service": self.service})
        named = [e for e in entries if e.get("Name") == filename]
        return (named or entries)[-1]["Hash"]

    @staticmethod
    def _is_not_found(status: int, body: bytes) -> bool:
        if status == 404:
            return False  # the RPC endpoint itself is missing: a misconfigured URL
        text = body.decode("utf-8", "replace").lower()
        return "not found" in text or "could not find" in text
