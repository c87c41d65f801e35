"""Which content store the masters context gets from the config, and POST /masters through Kubo's and
Pinata's APIs (local stand-ins answering as their docs say): pinned there, the same CIDs, 502 on failure."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import attrs

from audifi_adapters.ipfs import (
    KuboContentStore,
    LocalContentStore,
    PinataContentStore,
    cid_of_bytes,
)
from audifi_adapters.masters import open_content_store
from audifi_http import create_app

from ..conftest import base_config
from ..http.helpers import error_of, platform_of
from .kit import artist, fast, master, until, upload, wav_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ipfs"))

from standins import KuboStandIn, PinataStandIn  # noqa: E402


class TestSelection:
    async def test_pinata_then_kubo_then_a_local_directory(self, tmp_path) -> None:
        """Pinata keys win, then IPFS_API_URL, else data_dir/ipfs; HTTP clients close with the stack."""
        cases = [
            (dict(pinata_api_key="k", pinata_secret_key="s", ipfs_api_url="http://127.0.0.1:5001"),
             PinataContentStore, "pinata"),
            (dict(ipfs_api_url="http://127.0.0.1:5001"), KuboContentStore, "kubo"),
            ({}, LocalContentStore, "local"),
        ]
        for over, kind, name in cases:
            async with contextlib.AsyncExitStack() as stack:
                store, got = await open_content_store(base_config(tmp_path, **over), stack)
                assert isinstance(store, kind) and got == name
        local, _ = await open_content_store(base_config(tmp_path), contextlib.AsyncExitStack())
        assert local.root == tmp_path / "data" / "ipfs"


class TestThroughServices:
    async def test_a_master_registers_through_kubo(self, aiohttp_client, aiohttp_server, tmp_path, clock) -> None:
        """IPFS_API_URL: the audio and the metadata JSON are added to the node with the CIDs of their bytes."""
        kubo = KuboStandIn()
        node = await aiohttp_server(kubo.app)
        cfg = fast(base_config(tmp_path, ipfs_api_url=str(node.make_url("")).rstrip("/")))
        client = await aiohttp_client(create_app(cfg, clock=clock))
        assert platform_of(client).adapters["content"] == "kubo"
        s = await artist(client, "kubo@example.com")
        audio = wav_bytes(20.0)
        r = await upload(client, s, audio, {"title": "Via Kubo"})
        assert r.status == 201, await r.text()
        m = await r.json()
        assert m["audioCid"] == cid_of_bytes(audio) and kubo.blobs[m["audioCid"]] == audio
        erc721 = json.loads(kubo.blobs[m["metadataCid"]])
        assert erc721["animation_url"] == f"ipfs://{m['audioCid']}"
        await until(lambda: _registered(client, m["id"], s))
        kubo.fail_status = 500
        e = await error_of(await upload(client, s, audio, {"title": "Down"}), 502)
        assert e["code"] == "UPSTREAM_ERROR"
        page = await (await client.get("/masters", params={"artistId": s["user"]["id"]})).json()
        assert [x["title"] for x in page["items"]] == ["Via Kubo"]

    async def test_a_master_registers_through_pinata(self, aiohttp_client, aiohttp_server, tmp_path, clock) -> None:
        """PINATA_API_KEY/PINATA_SECRET_KEY: pinFileToIPFS for the audio, pinJSONToIPFS for the metadata."""
        pinata = PinataStandIn(api_key="key-1", secret_key="secret-1")
        api = await aiohttp_server(pinata.app)
        base = str(api.make_url("")).rstrip("/")
        cfg = base_config(tmp_path, pinata_api_key="key-1", pinata_secret_key="secret-1")
        cfg = fast(attrs.evolve(cfg, settings={"PINATA_API_URL": base, "PINATA_GATEWAY_URL": base}))
        client = await aiohttp_client(create_app(cfg, clock=clock))
        assert platform_of(client).adapters["content"] == "pinata"
        s = await artist(client, "pinata@example.com")
        audio = wav_bytes(1.0)
        m = await (await upload(client, s, audio, {"title": "Via Pinata"})).json()
        assert pinata.blobs[m["audioCid"]] == audio and m["metadataCid"] in pinata.blobs
        paths = [p for _, p in pinata.requests]
        assert "/pinning/pinFileToIPFS" in paths and "/pinning/pinJSONToIPFS" in paths
        await until(lambda: _registered(client, m["id"], s))


async def _registered(client, mid: str, s) -> bool:
    return (await master(client, mid, s))["status"] == "registered"



