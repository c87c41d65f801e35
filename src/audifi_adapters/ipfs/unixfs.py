"""UnixFS file DAG builder: the CID ``ipfs add`` gives, computed locally and streaming.

What it reproduces (Kubo / the reference importer defaults for a single file):

* fixed-size chunker, 262144 bytes (``size-262144``);
* balanced layout, at most 174 links per node: the leaves are grouped 174 at a time into
  parent nodes (a trailing group of one still gets a parent), the parents again, until one
  node is left; a file of a single chunk (the empty file too) is that leaf itself;
* CIDv1 (``--cid-version=1``): raw leaves (codec ``raw``), dag-pb parents, base32;
* CIDv0 (plain ``ipfs add``): dag-pb ``File`` leaves that carry the bytes, base58btc.

The dag-pb (PBNode/PBLink) and UnixFS ``Data`` protobuf messages are encoded by hand here:
links first (field 2), then Data (field 1), as the dag-pb spec fixes; each link with its hash,
an empty name and the cumulative size (``Tsize``) of the sub-DAG.

Streaming: :class:`UnixFsBuilder` takes bytes of any size, cuts them into chunks, hashes every
chunk as soon as it is complete and keeps only the pending links of each tree level (at most
174 per level), never the file. Blocks are not stored: this computes the identifier only.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from multiformats import CID, multihash

from audifi_core.errors import PayloadTooLarge

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINKS",
    "UnixFsBuilder",
    "CidTracker",
    "cid_of_bytes",
    "normalize_cid",
]

CHUNK_SIZE = 262144
MAX_LINKS = 174

_UNIXFS_FILE = 2


def _varint(n: int) -> bytes:
    """Unsigned LEB128, as protobuf and multiformats use."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field_bytes(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def _field_varint(tag: int, n: int) -> bytes:
    return bytes((tag,)) + _varint(n)


# UnixFS Data: Type=1 (varint), Data=2 (bytes), filesize=3 (varint), blocksizes=4 (repeated
# varint, not packed). dag-pb PBLink: Hash=1, Name=2, Tsize=3; PBNode: Links=2 then Data=1.
_TYPE_FILE = _field_varint(0x08, _UNIXFS_FILE)
_EMPTY_NAME = b"\x12\x00"


def _unixfs_file_parent(filesize: int, blocksizes: list[int]) -> bytes:
    parts = [_TYPE_FILE, _field_varint(0x18, filesize)]
    parts.extend(_field_varint(0x20, b) for b in blocksizes)
    return b"".join(parts)


def _pb_link(cid_bytes: bytes, tsize: int) -> bytes:
    body = _field_bytes(0x0A, cid_bytes) + _EMPTY_NAME + _field_varint(0x18, tsize)
    return _field_bytes(0x12, body)


def _pb_node(links: list[bytes], data: bytes) -> bytes:
    return b"".join(links) + _field_bytes(0x0A, data)


def _cid(version: int, codec: str, digest: bytes) -> CID:
    mh = multihash.wrap(digest, "sha2-256")
    return CID("base58btc" if version == 0 else "base32", version, codec, mh)


def _binary_prefix(version: int, codec: str) -> bytes:
    """The bytes of a binary CID before its 32-byte sha2-256 digest (built once per kind:
    constructing a CID object costs about as much as hashing a chunk)."""
    return bytes(_cid(version, codec, bytes(32)))[:-32]


_PREFIX = {
    (0, "dag-pb"): _binary_prefix(0, "dag-pb"),
    (1, "dag-pb"): _binary_prefix(1, "dag-pb"),
    (1, "raw"): _binary_prefix(1, "raw"),
}


class _Link:
    """One pending child: its binary CID, its cumulative DAG size and its file-byte count."""

    __slots__ = ("cid", "tsize", "filesize")

    def __init__(self, cid: bytes, tsize: int, filesize: int):
        self.cid = cid
        self.tsize = tsize
        self.filesize = filesize


class UnixFsBuilder:
    """Streaming builder of a UnixFS file's root CID.

    ``feed()`` any number of times with bytes of any size, then ``finish()`` once. Memory stays
    bounded by one chunk plus ``max_links`` links per tree level.
    """

    def __init__(self, *, cid_version: int = 1, chunk_size: int = CHUNK_SIZE,
                 max_links: int = MAX_LINKS):
        if cid_version not in (0, 1):
            raise ValueError("cid_version must be 0 or 1")
        if chunk_size < 1 or max_links < 2:
            raise ValueError("chunk_size must be >= 1 and max_links >= 2")
        self.cid_version = cid_version
        self.chunk_size = chunk_size
        self.max_links = max_links
        self._buf = bytearray()
        self._levels: list[list[_Link]] = [[]]  # pending links per level; level 0 = leaves
        self._counts: list[int] = [0]  # how many items each level has had in total
        self._size = 0
        self._cid: str | None = None
        self._root: _Link | None = None

    @property
    def size(self) -> int:
        """File bytes fed so far."""
        return self._size

    @property
    def dag_size(self) -> int:
        """Cumulative size of all blocks of the DAG (what Kubo reports as ``Size``)."""
        if self._root is None:
            raise RuntimeError("finish() first")
        return self._root.tsize

    @property
    def cid(self) -> str:
        if self._cid is None:
            raise RuntimeError("finish() first")
        return self._cid

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._cid is not None:
            raise RuntimeError("builder already finished")
        n = len(data)
        if n == 0:
            return
        self._size += n
        cs = self.chunk_size
        view = memoryview(data).cast("B")
        pos = 0
        if self._buf:
            take = min(cs - len(self._buf), n)
            self._buf += view[:take]
            pos = take
            if len(self._buf) < cs:
                return
            self._leaf(self._buf)
            self._buf = bytearray()
        while n - pos >= cs:
            self._leaf(view[pos:pos + cs])
            pos += cs
        if pos < n:
            self._buf += view[pos:]

    def finish(self) -> str:
        if self._cid is not None:
            return self._cid
        if self._buf or self._counts[0] == 0:
            self._leaf(self._buf)  # the tail, or the one (empty) leaf of an empty file
            self._buf = bytearray()
        level = 0
        while True:
            if self._counts[level] == 1 and (
                level + 1 == len(self._counts) or self._counts[level + 1] == 0
            ):
                root = self._levels[level][0]
                break
            if self._levels[level]:
                self._flush(level)
            level += 1
        self._root = root
        self._levels = []
        self._cid = str(CID.decode(root.cid).set(base="base58btc" if self.cid_version == 0
                                                 else "base32"))
        return self._cid

    # -- internals -----------------------------------------------------------------------

    def _leaf(self, chunk: bytes | bytearray | memoryview) -> None:
        n = len(chunk)
        if self.cid_version == 1:
            digest = hashlib.sha256(chunk).digest()
            link = _Link(_PREFIX[1, "raw"] + digest, n, n)
        else:
            # dag-pb node with no links whose Data is UnixFS {File, Data=chunk, filesize=n};
            # hashed in three pieces so the chunk is not copied.
            if n:
                inner_head = _TYPE_FILE + b"\x12" + _varint(n)
            else:
                inner_head = _TYPE_FILE
            inner_tail = _field_varint(0x18, n)
            inner_len = len(inner_head) + n + len(inner_tail)
            head = b"\x0a" + _varint(inner_len) + inner_head
            h = hashlib.sha256(head)
            h.update(chunk)
            h.update(inner_tail)
            link = _Link(_PREFIX[0, "dag-pb"] + h.digest(), len(head) + n + len(inner_tail), n)
        self._push(0, link)

    def _push(self, level: int, link: _Link) -> None:
        if level == len(self._levels):
            self._levels.append([])
            self._counts.append(0)
        pending = self._levels[level]
        pending.append(link)
        self._counts[level] += 1
        if len(pending) == self.max_links:
            self._flush(level)

    def _flush(self, level: int) -> None:
        children = self._levels[level]
        self._levels[level] = []
        filesize = sum(c.filesize for c in children)
        data = _unixfs_file_parent(filesize, [c.filesize for c in children])
        block = _pb_node([_pb_link(c.cid, c.tsize) for c in children], data)
        digest = hashlib.sha256(block).digest()
        tsize = len(block) + sum(c.tsize for c in children)
        self._push(level + 1, _Link(_PREFIX[self.cid_version, "dag-pb"] + digest, tsize,
                                     filesize))


def cid_of_bytes(data: bytes | bytearray | memoryview, version: int = 1) -> str:
    """The CID ``ipfs add`` (``--cid-version=1`` for version 1) gives for these bytes."""
    b = UnixFsBuilder(cid_version=version)
    b.feed(data)
    return b.finish()


def normalize_cid(cid: str) -> str:
    """Parse a CID string; CIDv1 comes back in base32, CIDv0 as given. ValueError if invalid."""
    if not isinstance(cid, str) or not cid or len(cid) > 200:
        raise ValueError("not a CID")
    try:
        parsed = CID.decode(cid)
    except Exception as exc:  # the library raises several types for bad input
        raise ValueError(f"not a CID: {exc}") from None
    if parsed.version == 0:
        return str(parsed)
    return str(parsed.set(base="base32"))


class CidTracker:
    """Counts, limits and hashes bytes on their way somewhere else (a file, an upload).

    ``update()`` raises :class:`PayloadTooLarge` the moment the total exceeds ``max_bytes``
    and remembers it in ``error``, so an adapter can tell it apart from the transport error
    it causes (an aborted upload body).
    """

    def __init__(self, max_bytes: int | None = None, *, cid_version: int = 1):
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.builder = UnixFsBuilder(cid_version=cid_version)
        self.error: BaseException | None = None

    @property
    def size(self) -> int:
        return self.builder.size

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        if self.max_bytes is not None and self.builder.size + len(chunk) > self.max_bytes:
            self.error = PayloadTooLarge(
                f"content exceeds the limit of {self.max_bytes} bytes",
                details={"limit": self.max_bytes},
            )
            raise self.error
        self.builder.feed(chunk)

    def finish(self) -> str:
        return self.builder.finish()

    async def passthrough(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Yield ``chunks`` unchanged, tracking each; a failure of the source is remembered."""
        try:
            async for chunk in chunks:
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise TypeError(f"content chunks must be bytes, not {type(chunk).__name__}")
                self.update(chunk)
                if chunk:
                    yield bytes(chunk)
        except BaseException as exc:
            if self.error is None:
                self.error = exc
            raise
