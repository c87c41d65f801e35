"""Content store in a local directory, for development and tests.

Layout under ``root``: ``objects/<cid>`` holds each content's bytes (named by its CIDv1, the
one ``ipfs add --cid-version=1`` gives), ``tmp/`` holds uploads in progress. An upload is
written to a temp file while its CID is computed, then renamed to its CID; on any error the
temp file is removed.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from audifi_core.content import StoredContent, canonical_json
from audifi_core.errors import NotFound, UpstreamError, ValidationError

from .unixfs import CidTracker, normalize_cid

__all__ = ["LocalContentStore"]

_SERVICE = "local"
_WRITE_BUFFER = 1 << 20
_READ_SIZE = 1 << 18


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class LocalContentStore:
    """A :class:`~audifi_core.content.ContentStore` on the local file system."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"

    def path_of(self, cid: str) -> Path:
        """Where the bytes of ``cid`` live (whether or not they are there)."""
        return self._objects / self._key(cid)

    async def add_stream(self, chunks: AsyncIterator[bytes], *, name: str, content_type: str,
                         max_bytes: int | None = None) -> StoredContent:
        tracker = CidTracker(max_bytes)
        try:
            await asyncio.to_thread(self._make_dirs)
        except OSError as exc:
            raise self._upstream("cannot prepare the content directory", exc) from None
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        fh: BinaryIO | None = None
        try:
            fh = await asyncio.to_thread(tmp.open, "xb")
            pending = bytearray()
            async for chunk in tracker.passthrough(chunks):
                pending += chunk
                if len(pending) >= _WRITE_BUFFER:
                    await asyncio.to_thread(fh.write, pending)
                    pending = bytearray()
            if pending:
                await asyncio.to_thread(fh.write, pending)
            await asyncio.to_thread(fh.close)
            fh = None
            cid = tracker.finish()
            await asyncio.to_thread(os.replace, tmp, self._objects / cid)
        except OSError as exc:
            raise self._upstream("cannot write content", exc) from None
        finally:
            if fh is not None:
                await asyncio.to_thread(fh.close)
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
        return StoredContent(cid=cid, size=tracker.size)

    async def add_bytes(self, data: bytes, *, name: str, content_type: str) -> StoredContent:
        return await self.add_stream(_one(bytes(data)), name=name, content_type=content_type)

    async def add_json(self, obj: object, *, name: str) -> StoredContent:
        return await self.add_bytes(canonical_json(obj), name=name,
                                    content_type="application/json")

    async def open(self, cid: str) -> AsyncIterator[bytes]:
        path = self.path_of(cid)
        try:
            fh = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise NotFound(f"no content {cid}", code="CONTENT_NOT_FOUND",
                           details={"cid": cid}) from None
        except OSError as exc:
            raise self._upstream("cannot read content", exc) from None
        return self._read(fh)

    async def check(self) -> None:
        try:
            await asyncio.to_thread(self._check_sync)
        except OSError as exc:
            raise self._upstream("content directory is not usable", exc) from None

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _key(cid: str) -> str:
        try:
            return normalize_cid(cid)
        except ValueError:
            raise ValidationError("Invalid CID", fields={"cid": "not a CID"}) from None

    def _make_dirs(self) -> None:
        self._objects.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _check_sync(self) -> None:
        self._make_dirs()
        probe = self._tmp / f"check-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()

    async def _read(self, fh: BinaryIO) -> AsyncIterator[bytes]:
        try:
            while True:
                try:
                    block = await asyncio.to_thread(fh.read, _READ_SIZE)
                except OSError as exc:
                    raise self._upstream("cannot read content", exc) from None
                if not block:
                    return
                yield block
        finally:
            await asyncio.to_thread(fh.close)

    def _upstream(self, what: str, exc: OSError) -> UpstreamError:
        return UpstreamError(f"{_SERVICE} content store: {what}",
                             details={"service": _SERVICE, "reason": exc.strerror or str(exc)})
