"""POST /masters and the reads of masters over HTTP, on memory and on PostgreSQL + Redis, with the
in-process EVM: real audio, real CIDs, contracts deployed by a chain job, every error path."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import attrs
import pytest

from audifi_adapters.config import Config
from audifi_adapters.ipfs import cid_of_bytes
from audifi_core.errors import ChainError
from audifi_http import create_app

from ..http.helpers import bearer, error_of, platform_of, sign_in
from .kit import artist, fast, master, registered, until, upload, wait_job, wav_bytes


@pytest.fixture
async def client(aiohttp_client, backend: Config, clock):
    return await aiohttp_client(create_app(fast(backend, MASTER_DAILY_QUOTA="3"), clock=clock))


def events_of(client, kind: str) -> list[Any]:
    """Subscribe to the bus: the list fills with every event of ``kind`` relayed from the outbox."""
    seen: list[Any] = []

    async def handler(event):
        if event.type == kind:
            seen.append(event)

    platform_of(client).bus.subscribe(f"test-{kind}-{id(seen)}", handler)
    return seen


async def read_all(platform, cid: str) -> bytes:
    out = b""
    async for chunk in await platform.content.open(cid):
        out += chunk
    return out


class TestRegister:
    async def test_an_artist_registers_a_master_on_ipfs_and_chain(self, client) -> None:
        """201 pending with real CIDs and ERC-721 metadata; a job deploys both contracts; registered, event once."""
        registered_events = events_of(client, "master.registered")
        s = await artist(client, "ann@example.com")
        audio = wav_bytes(40.0)  # 640 KB of 16-bit PCM: three 256 KiB chunks, a two-level DAG
        r = await upload(client, s, audio, {"title": "Night Drive", "genre": "synthwave", "bpm": 118,
                                            "isrc": "US-S1Z-99-00001", "description": "demo"})
        assert r.status == 201, await r.text()
        m = await r.json()
        assert m["status"] == "pending" and m["contractAddress"] is None and m["ipo"] is None
        assert m["audioCid"] == cid_of_bytes(audio)
        assert m["metadata"] == {"title": "Night Drive", "genre": "synthwave", "bpm": 118, "isrc": "USS1Z9900001",
                                 "description": "demo"}
        assert set(m) >= {"id", "artistId", "title", "metadata", "audioCid", "metadataCid", "contractAddress",
                          "dividendAddress", "status", "ipo", "finalAudioCid", "lockedAt", "createdAt"}
        p = platform_of(client)
        erc721 = json.loads(await read_all(p, m["metadataCid"]))
        assert erc721["name"] == "Night Drive" and erc721["animation_url"] == f"ipfs://{m['audioCid']}"
        assert {"trait_type": "BPM", "value": 118} in erc721["attributes"]
        assert await read_all(p, m["audioCid"]) == audio
        job = await wait_job(client, s, m["deployJobId"])
        assert job["kind"] == "deploy_master"
        done = await master(client, m["id"], s)
        assert done["status"] == "registered"
        assert done["contractAddress"] == job["result"]["sharesAddress"]
        assert done["dividendAddress"] == job["result"]["vaultAddress"]
        onchain = await p.chain.chain.masters_of(m["id"])
        assert (onchain.shares, onchain.vault) == (done["contractAddress"], done["dividendAddress"])
        await until(lambda: len(registered_events) > 0)
        await asyncio.sleep(0.2)
        assert [e.data["masterId"] for e in registered_events] == [m["id"]]

    async def test_who_may_register_and_what(self, client) -> None:
        """Anonymous 401, a fan 403, non-audio 400, a missing part 400, bad metadata 400 with fields."""
        fan = await sign_in(client, "fan@example.com")
        s = await artist(client, "bea@example.com")
        await error_of(await client.post("/masters", data=b"x"), 401)
        assert (await error_of(await upload(client, fan), 403))["code"] == "FORBIDDEN"
        e = await error_of(await upload(client, s, b"%PDF-1.4", content_type="application/pdf"), 400)
        assert e["code"] == "VALIDATION_ERROR" and "audio" in e["details"]["fields"]
        e = await error_of(await client.post("/masters", json={"title": "x"}, headers=bearer(s)), 400)
        assert e["code"] == "VALIDATION_ERROR"
        e = await error_of(await upload(client, s, metadata={"title": "", "bpm": "fast", "isrc": "nope"}), 400)
        assert set(e["details"]["fields"]) == {"metadata.title", "metadata.bpm", "metadata.isrc"}
        e = await error_of(await upload(client, s, metadata="{not json"), 400)
        assert "metadata" in e["details"]["fields"]
        r = await client.get("/masters", params={"artistId": s["user"]["id"]}, headers=bearer(s))
        assert (await r.json())["items"] == []  # nothing was recorded

    async def test_daily_quota_holds_under_concurrent_uploads(self, client, clock) -> None:
        """Quota 3: of 6 concurrent uploads exactly 3 are recorded; the rest 429 with Retry-After; a new day resets."""
        s = await artist(client, "quota@example.com")
        rs = await asyncio.gather(*(upload(client, s, metadata={"title": f"t{i}"}) for i in range(6)))
        statuses = sorted(r.status for r in rs)
        assert statuses == [201, 201, 201, 429, 429, 429]
        for r in rs:
            if r.status == 429:
                e = await error_of(r, 429)
                assert e["code"] == "RATE_LIMITED" and int(r.headers["Retry-After"]) >= 1
        page = await (await client.get("/masters", params={"artistId": s["user"]["id"]}, headers=bearer(s))).json()
        assert len(page["items"]) == 3
        clock.advance(86400)
        r = await client.post("/auth/refresh", json={"refreshToken": s["refreshToken"]})
        assert (await upload(client, await r.json())).status == 201

    async def test_pending_masters_are_the_artists_own_and_lists_page(self, client) -> None:
        """A pending master is 404 to others until registered; ?artistId lists newest first with a cursor."""
        s = await artist(client, "list@example.com")
        other = await sign_in(client, "other@example.com")
        first = await registered(client, s, metadata={"title": "one"})
        r = await upload(client, s, metadata={"title": "two"})
        second = await r.json()
        if second["status"] == "pending":
            await error_of(await client.get(f"/masters/{second['id']}", headers=bearer(other)), 404)
        await until(lambda: _status_is(client, second["id"], "registered"))
        third = await registered(client, s, metadata={"title": "three"})
        got: list[str] = []
        cursor = None
        while True:
            params = {"artistId": s["user"]["id"], "limit": "2", **({"cursor": cursor} if cursor else {})}
            page = await (await client.get("/masters", params=params)).json()
            got += [m["id"] for m in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert got == [third["id"], second["id"], first["id"]]
        e = await error_of(await client.get("/masters/mst_nope"), 404)
        assert e["code"] == "MASTER_NOT_FOUND" and e["details"]["masterId"] == "mst_nope"
        await error_of(await client.get("/masters", params={"limit": "500"}), 400)


async def _status_is(client, mid: str, status: str) -> bool:
    r = await client.get(f"/masters/{mid}")
    return r.status == 200 and (await r.json())["status"] == status


class TestContract:
    async def test_openapi_describes_every_masters_route(self, client) -> None:
        """/openapi.json has each API.md masters row, the multipart upload and Idempotency-Key where it applies."""
        doc = await (await client.get("/openapi.json")).json()
        paths = doc["paths"]
        for path, method in [("/masters", "post"), ("/masters", "get"), ("/masters/{id}", "get"),
                             ("/masters/{id}/ipo", "post"), ("/masters/{id}/mint", "post"),
                             ("/masters/{id}/shares", "get"), ("/masters/{id}/dividends", "get"),
                             ("/masters/{id}/dividends/deposit", "post"), ("/masters/{id}/dividends/claim", "post"),
                             ("/user/holdings", "get")]:
            assert method in paths[path], (method, path)
        assert "multipart/form-data" in paths["/masters"]["post"]["requestBody"]["content"]
        for path in ("/masters", "/masters/{id}/ipo", "/masters/{id}/mint", "/masters/{id}/dividends/claim"):
            assert any(p["name"] == "Idempotency-Key" for p in paths[path]["post"]["parameters"])
        ipo = doc["components"]["schemas"]["IpoView"]["properties"]
        assert set(ipo) == {"totalShares", "minted", "pricePerShare", "startsAt", "endsAt", "maxPerUser",
                            "sharesSold", "status"}


class TestLimits:
    async def test_an_upload_over_the_limit_is_413_and_leaves_nothing(self, aiohttp_client, tmp_path, clock) -> None:
        """UPLOAD_LIMIT_BYTES 4096: a 16 KB WAV is refused with 413; no master, no stored object."""
        from ..conftest import base_config

        app = create_app(fast(base_config(tmp_path, upload_limit_bytes=4096)), clock=clock)
        client = await aiohttp_client(app)
        s = await artist(client, "big@example.com")
        e = await error_of(await upload(client, s, wav_bytes(1.0)), 413)
        assert e["code"] == "PAYLOAD_TOO_LARGE"
        page = await (await client.get("/masters", params={"artistId": s["user"]["id"]}, headers=bearer(s))).json()
        assert page["items"] == []
        objects = tmp_path / "data" / "ipfs" / "objects"
        assert not objects.exists() or list(objects.iterdir()) == []


    async def test_a_large_upload_streams_and_is_never_held_whole(self, aiohttp_client, tmp_path, clock) -> None:
        """A 24 MB WAV streams in with the CID of its bytes while traced memory stays under a third of it."""
        import tracemalloc

        from ..conftest import base_config

        client = await aiohttp_client(create_app(fast(base_config(tmp_path)), clock=clock))
        s = await artist(client, "stream@example.com")
        path = tmp_path / "big.wav"
        header = wav_bytes(0.01)
        with path.open("wb") as f:
            f.write(header)
            block = bytes(range(256)) * 4096  # 1 MiB
            for _ in range(24):
                f.write(block)
        with path.open("rb") as fh:
            form = aiohttp.FormData()
            form.add_field("metadata", json.dumps({"title": "Long take"}), content_type="application/json")
            form.add_field("audio", fh, filename="big.wav", content_type="audio/wav")
            tracemalloc.start()
            try:
                r = await client.post("/masters", data=form, headers=bearer(s))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert r.status == 201, await r.text()
        assert (await r.json())["audioCid"] == cid_of_bytes(path.read_bytes())
        assert peak < path.stat().st_size // 3, peak


class TestChainFailures:
    async def test_rpc_down_leaves_a_pending_master_whose_job_resumes(self, client, monkeypatch) -> None:
        """While the node is unreachable the master stays pending (job queued); when it is back, registered."""
        s = await artist(client, "down@example.com")
        chain = platform_of(client).chain.chain
        real = chain.masters_of

        async def down(*_a, **_k):
            raise ChainError("the node is unreachable", details={"reason": "unavailable"})

        monkeypatch.setattr(chain, "masters_of", down)
        r = await upload(client, s)
        m = await r.json()
        await asyncio.sleep(0.5)
        assert (await master(client, m["id"], s))["status"] == "pending"
        job = await (await client.get(f"/jobs/{m['deployJobId']}", headers=bearer(s))).json()
        assert job["status"] == "queued"
        monkeypatch.setattr(chain, "masters_of", real)
        await until(lambda: _status_is(client, m["id"], "registered"))

    async def test_a_failed_deploy_is_failed_then_retried_to_registered(self, client, monkeypatch) -> None:
        """A reverted deploy marks the master failed with the error; POST /jobs/:id/retry registers it once."""
        registered_events = events_of(client, "master.registered")
        s = await artist(client, "fail@example.com")
        chain = platform_of(client).chain.chain
        real = chain.create_master_tx

        def broken(master_id, artist_address, token_uri):
            tx = real(master_id, artist_address, token_uri)
            return attrs.evolve(tx, data="0xdeadbeef")  # an unknown selector: reverts

        monkeypatch.setattr(chain, "create_master_tx", broken)
        m = await (await upload(client, s)).json()
        await wait_job(client, s, m["deployJobId"], "failed")
        failed = await until(lambda: _failed(client, m["id"], s))
        assert failed["error"]["code"] == "TX_REVERTED" and failed["contractAddress"] is None
        await error_of(await client.get(f"/masters/{m['id']}"), 404)  # not public
        monkeypatch.setattr(chain, "create_master_tx", real)
        r = await client.post(f"/jobs/{m['deployJobId']}/retry", headers=bearer(s))
        assert r.status == 202, await r.text()
        await until(lambda: _status_is(client, m["id"], "registered"))
        done = await master(client, m["id"])
        assert done["error"] is None and done["contractAddress"]
        await until(lambda: len(registered_events) > 0)
        assert len(registered_events) == 1


async def _failed(client, mid: str, s) -> dict[str, Any] | None:
    m = await master(client, mid, s)
    return m if m["status"] == "failed" else None
