"""Content-addressed storage port (IPFS): audio masters, artwork, JSON metadata.

Adapters (``audifi_adapters.ipfs``): a local directory for development, a Kubo node over its
HTTP RPC, Pinata. Whatever the adapter, the same bytes get the same CID, the one
``ipfs add --cid-version=1`` gives (raw leaves, 256 KiB chunks, balanced DAG).

Checking the content type of an upload is the caller's job; :data:`AUDIO_CONTENT_TYPES` lists
the audio types the product accepts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import attrs

from audifi_core.errors import ValidationError

__all__ = [
    "AUDIO_CONTENT_TYPES",
    "ContentStore",
    "StoredContent",
    "canonical_json",
]

AUDIO_CONTENT_TYPES: frozenset[str] = frozenset({
    "audio/wav",
    "audio/x-wav",
    "audio/wave",
    "audio/mpeg",
    "audio/flac",
    "audio/x-flac",
    "audio/ogg",
    "audio/aac",
    "audio/mp4",
    "audio/webm",
    "audio/aiff",
    "audio/x-aiff",
})


@attrs.frozen
class StoredContent:
    """What was stored: its CID (CIDv1, base32) and its size in bytes (the content's own)."""

    cid: str
    size: int


def canonical_json(obj: object) -> bytes:
    """The one byte form of a JSON value: sorted keys, no spaces, UTF-8 (not ``\\u`` escapes).

    Raises :class:`ValidationError` for what JSON cannot hold (NaN, infinities, non-string
    keys that cannot be sorted, sets, lone surrogates...).
    """
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise ValidationError("Value is not representable as JSON",
                              fields={"json": str(exc)}) from None


@runtime_checkable
class ContentStore(Protocol):
    """Stores content by CID and gives it back.

    Errors: :class:`~audifi_core.errors.PayloadTooLarge` (``details["limit"]``) as soon as a
    stream exceeds ``max_bytes``, with nothing kept; :class:`~audifi_core.errors.UpstreamError`
    when the store or the service behind it fails (``details["service"]`` names it);
    :class:`~audifi_core.errors.NotFound` from ``open`` for an unknown CID;
    :class:`~audifi_core.errors.ValidationError` for a string that is no CID.
    """

    async def add_stream(self, chunks: AsyncIterator[bytes], *, name: str, content_type: str,
                         max_bytes: int | None = None) -> StoredContent:
        """Store bytes arriving as chunks of any size, never holding them all in memory."""
        ...

    async def add_bytes(self, data: bytes, *, name: str, content_type: str) -> StoredContent:
        """Store bytes already in memory (small things: artwork, documents)."""
        ...

    async def add_json(self, obj: object, *, name: str) -> StoredContent:
        """Store ``canonical_json(obj)``: equal values give equal CIDs."""
        ...

    async def open(self, cid: str) -> AsyncIterator[bytes]:
        """Look the content up and return an async iterator over its bytes.

        Awaiting it raises ``NotFound`` / ``UpstreamError`` before any byte is produced, so an
        HTTP handler can still answer with an error status; iterate the result to stream it
        (``contextlib.aclosing`` it when stopping early, to release the file or connection).
        """
        ...

    async def check(self) -> None:
        """Return when the store is usable; raise ``UpstreamError`` when it is not."""
        ...
