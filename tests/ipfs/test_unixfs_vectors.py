"""The UnixFS builder against the reference importer's CIDs, and its tree shape at depth."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID

from audifi_adapters.ipfs.unixfs import (
    CidTracker,
    UnixFsBuilder,
    cid_of_bytes,
    normalize_cid,
)
from audifi_core.errors import PayloadTooLarge

VECTORS_FILE = Path("/work/shared/vectors/ipfs-cids.json")
_here = Path(__file__).resolve()
for _parent in _here.parents:
    if (_parent / "shared" / "vectors" / "ipfs-cids.json").exists():
        VECTORS_FILE = _parent / "shared" / "vectors" / "ipfs-cids.json"
        break

_PERIOD = bytes((i * 31 + 7) % 256 for i in range(256))


def pattern(n: int) -> bytes:
    """'pattern N': byte i = (i*31+7) % 256 (period 256)."""
    return (_PERIOD * (n // 256 + 1))[:n]


def pattern_pieces(n: int, piece: int) -> Iterator[bytes]:
    """'pattern N' in pieces of ``piece`` bytes (a multiple of 256), never whole."""
    assert piece % 256 == 0
    block = _PERIOD * (piece // 256)
    while n > 0:
        k = min(n, piece)
        yield block[:k]
        n -= k


def vector_content(vector: dict) -> Iterator[bytes]:
    name = vector["name"]
    if name == "empty":
        return iter(())
    if name.startswith("hello world"):
        return iter((b"hello world\n",))
    assert name.startswith("pattern ")
    return pattern_pieces(vector["size"], 1 << 20)


def cid_version(vector: dict) -> int:
    return 1 if "cid-version=1" in vector["kuboFlags"] else 0


VECTORS = json.loads(VECTORS_FILE.read_text())["vectors"]


def test_vector_file_is_not_empty() -> None:
    assert len(VECTORS) >= 14
    assert {cid_version(v) for v in VECTORS} == {0, 1}


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['name']}-v{cid_version(v)}")
def test_every_vector(vector: dict) -> None:
    b = UnixFsBuilder(cid_version=cid_version(vector))
    for piece in vector_content(vector):
        b.feed(piece)
    assert b.size == vector["size"]
    assert b.finish() == vector["cid"]
    assert b.cid == vector["cid"]


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if v["size"] <= 1_100_000],
    ids=lambda v: f"{v['name']}-v{cid_version(v)}",
)
def test_small_vectors_fed_at_odd_sizes(vector: dict) -> None:
    data = b"".join(vector_content(vector))
    assert cid_of_bytes(data, version=cid_version(vector)) == vector["cid"]
    for step in (1, 7, 4096, 262143, 262145, 300000):
        if step == 1 and len(data) > 5000:
            continue
        b = UnixFsBuilder(cid_version=cid_version(vector))
        for i in range(0, len(data), step):
            b.feed(memoryview(data)[i:i + step])
        assert b.finish() == vector["cid"], step


def test_single_chunk_is_the_raw_leaf() -> None:
    data = pattern(262144)
    cid = CID.decode(cid_of_bytes(data))
    assert cid.codec.name == "raw"
    assert cid.raw_digest == hashlib.sha256(data).digest()


def test_dag_size_counts_every_block() -> None:
    b = UnixFsBuilder()
    b.feed(pattern(262145))
    b.finish()
    # two raw leaves plus one small dag-pb root
    assert 262145 < b.dag_size < 262145 + 200


def test_finished_builder_refuses_more() -> None:
    b = UnixFsBuilder()
    b.feed(b"x")
    first = b.finish()
    assert b.finish() == first
    with pytest.raises(RuntimeError):
        b.feed(b"y")


def test_tracker_limit() -> None:
    t = CidTracker(10)
    t.update(b"0123456789")
    with pytest.raises(PayloadTooLarge) as info:
        t.update(b"a")
    assert info.value.details == {"limit": 10}
    assert t.error is info.value


def test_normalize_cid() -> None:
    v1 = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    b58 = str(CID.decode(v1).set(base="base58btc"))
    assert b58 != v1
    assert normalize_cid(b58) == v1
    v0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
    assert normalize_cid(v0) == v0
    for bad in ("", "hello", "../etc/passwd", "bafy" + "a" * 300):
        with pytest.raises(ValueError):
            normalize_cid(bad)


# -- tree shape at depth: the streaming builder against a batch reference ----------------


def _reference(data: bytes, version: int, chunk: int, width: int) -> str:
    """Non-streaming re-statement of the balanced layout: batch the leaves ``width`` at a
    time into parents, then the parents, until one is left; a lone leaf is the root."""
    from audifi_adapters.ipfs import unixfs as u

    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
    nodes = []
    for c in chunks:
        if version == 1:
            nodes.append((u._cid(1, "raw", hashlib.sha256(c).digest()), len(c), len(c)))
        else:
            inner = b"\x08\x02" + (u._field_bytes(0x12, c) if c else b"") + u._field_varint(0x18, len(c))
            block = u._field_bytes(0x0A, inner)
            nodes.append((u._cid(0, "dag-pb", hashlib.sha256(block).digest()), len(block), len(c)))
    if len(nodes) == 1:
        return str(nodes[0][0])
    while True:
        parents = []
        for i in range(0, len(nodes), width):
            group = nodes[i:i + width]
            size = sum(g[2] for g in group)
            block = u._pb_node([u._pb_link(bytes(g[0]), g[1]) for g in group],
                               u._unixfs_file_parent(size, [g[2] for g in group]))
            cid = u._cid(version, "dag-pb", hashlib.sha256(block).digest())
            parents.append((cid, len(block) + sum(g[1] for g in group), size))
        nodes = parents
        if len(nodes) == 1:
            return str(nodes[0][0])


@settings(max_examples=80, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=300),
    chunk=st.integers(min_value=1, max_value=6),
    width=st.integers(min_value=2, max_value=5),
    version=st.sampled_from([0, 1]),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
)
def test_streaming_matches_batch_layout(size: int, chunk: int, width: int, version: int,
                                        cuts: list[int]) -> None:
    data = bytes((i * 7 + 3) % 251 for i in range(size))
    b = UnixFsBuilder(cid_version=version, chunk_size=chunk, max_links=width)
    prev = 0
    for cut in sorted(c for c in cuts if c <= size) + [size]:
        b.feed(data[prev:cut])
        prev = cut
    assert b.finish() == _reference(data, version, chunk, width)
