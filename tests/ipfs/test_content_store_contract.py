"""One contract for every ContentStore adapter: local directory, Kubo RPC, Pinata.

Kubo and Pinata run against the local stand-ins in ``standins.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from standins import KuboStandIn, PinataStandIn  # noqa: E402

from audifi_adapters.ipfs import (  # noqa: E402
    KuboContentStore,
    LocalContentStore,
    PinataContentStore,
    cid_of_bytes,
)
from audifi_core.content import (  # noqa: E402
    AUDIO_CONTENT_TYPES,
    ContentStore,
    StoredContent,
    canonical_json,
)
from audifi_core.errors import (  # noqa: E402
    NotFound,
    PayloadTooLarge,
    UpstreamError,
    ValidationError,
)

_PERIOD = bytes((i * 31 + 7) % 256 for i in range(256))


def pattern(n: int) -> bytes:
    return (_PERIOD * (n // 256 + 1))[:n]


# CIDv1 reference CIDs (shared/vectors/ipfs-cids.json), the small ones.
REFERENCE = {
    b"": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    b"hello world\n": "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
    pattern(1000): "bafkreicqs7t5lbzvf5ijobrk4z47g662labnt6dvvoquzdfu2gqyrlnbpe",
    pattern(262144): "bafkreigtb2zed6k6pq34amzfdj4ovylbble3alojsysuiikydagtlammdm",
    pattern(262145): "bafybeif4z4ikxldcsjhv2l4sxmk57abnwjkwpa57gopqjvdhkyxddhmzf4",
    pattern(1048583): "bafybeihiungcesuy6au7fidtl7qv5pioopar6wlkahdklwhpykjoosgse4",
}
BIG = pattern(1048583)


def _vectors_agree() -> None:
    path = Path("/work/shared/vectors/ipfs-cids.json")
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared/vectors/ipfs-cids.json").exists():
            path = parent / "shared/vectors/ipfs-cids.json"
            break
    if not path.exists():
        return
    listed = {(v["size"], v["cid"]) for v in json.loads(path.read_text())["vectors"]}
    for data, cid in REFERENCE.items():
        assert (len(data), cid) in listed


async def pieces(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    """``data`` in pieces cycling through ``sizes``."""
    pos, i = 0, 0
    while pos < len(data):
        step = sizes[i % len(sizes)]
        yield data[pos:pos + step]
        pos += step
        i += 1


class Endless:
    """An upload that never ends; counts how many pieces were pulled from it."""

    def __init__(self, piece: int = 65536):
        self.piece = pattern(piece)
        self.pulled = 0

    async def __call__(self) -> AsyncIterator[bytes]:
        while True:
            self.pulled += 1
            yield self.piece


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Harness:
    def __init__(self, kind: str, store: ContentStore, *, standin=None,  # noqa: ANN001
                 leftovers: Callable[[], list[str]], unreachable: ContentStore | None = None,
                 broken: Callable[[], ContentStore] | None = None):
        self.kind = kind
        self.store = store
        self.standin = standin
        self._leftovers = leftovers
        self.unreachable = unreachable
        self._broken = broken

    def leftovers(self) -> list[str]:
        return self._leftovers()

    def break_upstream(self) -> None:
        """From now on the service answers 500 (local: the directory is unusable)."""
        if self.standin is not None:
            self.standin.fail_status = 500
        else:
            assert self._broken is not None
            self.store = self._broken()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(params=["local", "kubo", "pinata"])
async def harness(request, tmp_path: Path, aiohttp_server, session) -> Harness:  # noqa: ANN001
    kind = request.param
    if kind == "local":
        root = tmp_path / "store"

        def local_leftovers() -> list[str]:
            return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

        def broken() -> ContentStore:
            blocker = tmp_path / "not-a-dir"
            blocker.write_bytes(b"")
            return LocalContentStore(blocker / "store")

        return Harness(kind, LocalContentStore(root), leftovers=local_leftovers, broken=broken)
    dead = f"http://127.0.0.1:{free_port()}"
    if kind == "kubo":
        kubo = KuboStandIn()
        server = await aiohttp_server(kubo.app)
        return Harness(kind, KuboContentStore(str(server.make_url("")), session=session),
                       standin=kubo, leftovers=lambda: sorted(kubo.blobs),
                       unreachable=KuboContentStore(dead, session=session))
    pinata = PinataStandIn(api_key="k", secret_key="s")
    server = await aiohttp_server(pinata.app)
    base = str(server.make_url("")).rstrip("/")
    return Harness(kind, PinataContentStore("k", "s", api_url=base, gateway_url=base,
                                            session=session),
                   standin=pinata, leftovers=lambda: sorted(pinata.blobs),
                   unreachable=PinataContentStore("k", "s", api_url=dead, gateway_url=dead,
                                                  session=session))


async def read_all(store: ContentStore, cid: str) -> bytes:
    out = bytearray()
    async for block in await store.open(cid):
        out += block
    return bytes(out)


class TestContentStoreContract:
    async def test_is_a_content_store(self, harness: Harness) -> None:
        assert isinstance(harness.store, ContentStore)

    async def test_same_bytes_same_cid_as_ipfs_add(self, harness: Harness) -> None:
        _vectors_agree()
        for data, cid in REFERENCE.items():
            stored = await harness.store.add_bytes(data, name="x.bin",
                                                   content_type="application/octet-stream")
            assert stored == StoredContent(cid=cid, size=len(data))

    async def test_stream_is_rechunked_whatever_the_piece_sizes(self, harness: Harness) -> None:
        stored = await harness.store.add_stream(
            pieces(BIG, [1, 1000, 300_000, 7, 65536, 262144]), name="master.wav",
            content_type="audio/wav", max_bytes=len(BIG))
        assert stored == StoredContent(cid=REFERENCE[BIG], size=len(BIG))

    async def test_adding_twice_is_idempotent(self, harness: Harness) -> None:
        a = await harness.store.add_bytes(b"hello world\n", name="a.txt", content_type="text/plain")
        b = await harness.store.add_bytes(b"hello world\n", name="b.txt", content_type="text/plain")
        assert a == b
        assert await read_all(harness.store, a.cid) == b"hello world\n"

    async def test_add_json_is_canonical_and_stable(self, harness: Harness) -> None:
        one = {"title": "Délà vu", "artists": ["a", "b"], "meta": {"z": None, "bpm": 120, "a": True}}
        two = {"meta": {"a": True, "bpm": 120, "z": None}, "artists": ["a", "b"], "title": "Délà vu"}
        expected = canonical_json(one)
        assert expected == ('{"artists":["a","b"],"meta":{"a":true,"bpm":120,"z":null},'
                            '"title":"Délà vu"}').encode()
        first = await harness.store.add_json(one, name="meta.json")
        second = await harness.store.add_json(two, name="meta.json")
        assert first == second == StoredContent(cid=cid_of_bytes(expected), size=len(expected))
        assert await read_all(harness.store, first.cid) == expected

    async def test_add_json_with_values_javascript_would_reorder(self, harness: Harness) -> None:
        obj = {"2": "b", "10": "a", "ratio": 0.5, "big": 2**60}
        expected = canonical_json(obj)
        stored = await harness.store.add_json(obj, name="odd.json")
        assert stored.cid == cid_of_bytes(expected)
        assert await read_all(harness.store, stored.cid) == expected

    async def test_add_json_refuses_what_json_cannot_hold(self, harness: Harness) -> None:
        with pytest.raises(ValidationError):
            await harness.store.add_json({"x": float("nan")}, name="bad.json")
        assert harness.leftovers() == []

    async def test_open_round_trips(self, harness: Harness) -> None:
        stored = await harness.store.add_stream(pieces(BIG, [12345]), name="m.flac",
                                                content_type="audio/flac")
        assert await read_all(harness.store, stored.cid) == BIG
        empty = await harness.store.add_bytes(b"", name="empty", content_type="text/plain")
        assert await read_all(harness.store, empty.cid) == b""

    async def test_open_accepts_another_base_of_the_same_cid(self, harness: Harness) -> None:
        from multiformats import CID

        stored = await harness.store.add_bytes(b"hello world\n", name="h", content_type="text/plain")
        b58 = str(CID.decode(stored.cid).set(base="base58btc"))
        assert await read_all(harness.store, b58) == b"hello world\n"

    async def test_open_can_stop_early(self, harness: Harness) -> None:
        stored = await harness.store.add_bytes(BIG, name="m", content_type="audio/wav")
        async with contextlib.aclosing(await harness.store.open(stored.cid)) as stream:
            async for block in stream:
                assert block
                break

    async def test_open_unknown_cid_is_not_found(self, harness: Harness) -> None:
        with pytest.raises(NotFound):
            await harness.store.open(REFERENCE[pattern(1000)])

    @pytest.mark.parametrize("bad", ["", "not-a-cid", "../../etc/passwd"])
    async def test_open_invalid_cid_is_validation_error(self, harness: Harness, bad: str) -> None:
        with pytest.raises(ValidationError):
            await harness.store.open(bad)

    async def test_max_bytes_stops_early_and_keeps_nothing(self, harness: Harness) -> None:
        source = Endless(65536)
        with pytest.raises(PayloadTooLarge) as info:
            await harness.store.add_stream(source(), name="huge.wav", content_type="audio/wav",
                                           max_bytes=300_000)
        assert info.value.details == {"limit": 300_000}
        assert info.value.status == 413
        assert source.pulled <= 300_000 // 65536 + 2
        assert harness.leftovers() == []
        # the store is still usable afterwards
        ok = await harness.store.add_bytes(b"hello world\n", name="h", content_type="text/plain")
        assert ok.cid == REFERENCE[b"hello world\n"]

    async def test_max_bytes_is_inclusive(self, harness: Harness) -> None:
        data = pattern(262145)
        stored = await harness.store.add_stream(pieces(data, [100_000]), name="m",
                                                content_type="audio/wav", max_bytes=len(data))
        assert stored.cid == REFERENCE[data]
        with pytest.raises(PayloadTooLarge):
            await harness.store.add_stream(pieces(data, [100_000]), name="m",
                                           content_type="audio/wav", max_bytes=len(data) - 1)

    async def test_failing_source_propagates_and_keeps_nothing(self, harness: Harness) -> None:
        class ClientGone(Exception):
            pass

        async def source() -> AsyncIterator[bytes]:
            yield pattern(100_000)
            yield pattern(100_000)
            raise ClientGone()

        with pytest.raises(ClientGone):
            await harness.store.add_stream(source(), name="m", content_type="audio/wav")
        assert harness.leftovers() == []

    async def test_cancelled_upload_keeps_nothing(self, harness: Harness) -> None:
        started = asyncio.Event()

        async def source() -> AsyncIterator[bytes]:
            yield pattern(300_000)
            started.set()
            await asyncio.Event().wait()  # the client stalls, then goes away
            yield b""

        task = asyncio.create_task(
            harness.store.add_stream(source(), name="m", content_type="audio/wav"))
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)  # let a stand-in see the aborted request
        assert harness.leftovers() == []

    async def test_upstream_failure_is_upstream_error(self, harness: Harness) -> None:
        stored = await harness.store.add_bytes(b"hello world\n", name="h", content_type="text/plain")
        harness.break_upstream()
        store = harness.store
        with pytest.raises(UpstreamError) as info:
            await store.add_bytes(b"abc", name="a", content_type="text/plain")
        assert info.value.details["service"] in {"local", "kubo", "pinata"}
        with pytest.raises(UpstreamError):
            await store.add_stream(pieces(BIG, [65536]), name="a", content_type="audio/wav")
        with pytest.raises(UpstreamError):
            await store.add_json({"a": 1}, name="a.json")
        with pytest.raises(UpstreamError):
            await store.open(stored.cid)
        with pytest.raises(UpstreamError):
            await store.check()

    async def test_unreachable_service_is_upstream_error(self, harness: Harness) -> None:
        if harness.unreachable is None:
            pytest.skip("the local store has no network")
        store = harness.unreachable
        with pytest.raises(UpstreamError) as info:
            await store.add_bytes(b"abc", name="a", content_type="text/plain")
        assert info.value.details["service"] == harness.kind
        with pytest.raises(UpstreamError):
            await store.add_stream(pieces(BIG, [65536]), name="a", content_type="audio/wav")
        with pytest.raises(UpstreamError):
            await store.add_json({"a": 1}, name="a.json")
        with pytest.raises(UpstreamError):
            await store.open(REFERENCE[b"hello world\n"])
        with pytest.raises(UpstreamError):
            await store.check()

    async def test_a_different_cid_from_the_service_is_upstream_error(self, harness: Harness) -> None:
        if harness.standin is None:
            pytest.skip("the local store computes its own CID")
        harness.standin.wrong_cid = True
        with pytest.raises(UpstreamError):
            await harness.store.add_bytes(b"abc", name="a", content_type="text/plain")
        with pytest.raises(UpstreamError):
            await harness.store.add_json({"a": 1}, name="a.json")

    async def test_check_ok(self, harness: Harness) -> None:
        assert await harness.store.check() is None


# -- adapter specifics --------------------------------------------------------------------


async def test_kubo_add_asks_for_cidv1_raw_leaves_and_a_pin(aiohttp_server, session) -> None:  # noqa: ANN001
    kubo = KuboStandIn()
    server = await aiohttp_server(kubo.app)
    store = KuboContentStore(str(server.make_url("")), session=session)
    await store.add_bytes(b"x", name="dir/../x.wav", content_type="audio/wav")
    params = kubo.add_params[-1]
    assert params["cid-version"] == "1"
    assert params["raw-leaves"] == "true"
    assert params["pin"] == "true"
    assert ("POST", "/api/v0/add") in kubo.requests


async def test_pinata_sends_metadata_options_and_keys(aiohttp_server, session) -> None:  # noqa: ANN001
    pinata = PinataStandIn(api_key="k", secret_key="s")
    server = await aiohttp_server(pinata.app)
    base = str(server.make_url("")).rstrip("/")
    store = PinataContentStore("k", "s", api_url=base, gateway_url=base, session=session)
    await store.add_bytes(b"RIFF....", name="master.wav", content_type="audio/wav")
    assert pinata.metadata[-1] == {"name": "master.wav", "keyvalues": {"contentType": "audio/wav"}}
    await store.add_json({"b": 1, "a": 2}, name="meta.json")
    assert pinata.json_pins == 1
    assert pinata.metadata[-1] == {"name": "meta.json"}

    wrong = PinataContentStore("k", "nope", api_url=base, gateway_url=base, session=session)
    with pytest.raises(UpstreamError) as info:
        await wrong.check()
    assert info.value.details["status"] == 401
    with pytest.raises(UpstreamError):
        await wrong.add_bytes(b"x", name="x", content_type="text/plain")


async def test_pinata_gateway_bytes_are_verified(aiohttp_server, session) -> None:  # noqa: ANN001
    pinata = PinataStandIn()
    server = await aiohttp_server(pinata.app)
    base = str(server.make_url("")).rstrip("/")
    store = PinataContentStore("key", "secret", api_url=base, gateway_url=base, session=session)
    stored = await store.add_bytes(pattern(300_000), name="m", content_type="audio/wav")
    pinata.corrupt_reads = True
    with pytest.raises(UpstreamError):
        await read_all(store, stored.cid)


async def test_pinata_from_env() -> None:
    store = PinataContentStore.from_env({"PINATA_API_KEY": "k", "PINATA_SECRET_KEY": "s"})
    assert store._auth == {"pinata_api_key": "k", "pinata_secret_api_key": "s"}
    with pytest.raises(KeyError):
        PinataContentStore.from_env({"PINATA_API_KEY": "k"})


async def test_http_store_owns_its_session_when_given_none(aiohttp_server) -> None:  # noqa: ANN001
    kubo = KuboStandIn()
    server = await aiohttp_server(kubo.app)
    async with KuboContentStore(str(server.make_url(""))) as store:
        await store.check()
    assert store._own_session is None


def test_audio_content_types() -> None:
    assert {"audio/wav", "audio/x-wav", "audio/wave", "audio/mpeg", "audio/flac", "audio/x-flac",
            "audio/ogg", "audio/aac", "audio/mp4", "audio/webm", "audio/aiff",
            "audio/x-aiff"} == set(AUDIO_CONTENT_TYPES)
    assert "video/mp4" not in AUDIO_CONTENT_TYPES
