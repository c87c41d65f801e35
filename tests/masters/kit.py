"""Test kit of the masters HTTP tests: artists, SIWE-linked wallets, uploads, polling, /dev/rpc."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import math
import struct
import wave
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import attrs
from aiohttp.test_utils import TestClient
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from audifi_adapters.config import Config
from audifi_core.auth.siwe import SiweMessage

from ..http.helpers import bearer, platform_of, sign_in

ETH = 10**18


def fast(config: Config, **settings: str) -> Config:
    """The config with quick chain polling and the masters scheduler ticking often (tests)."""
    env = {"MASTER_TICK_INTERVAL": "0.1", **settings}
    return attrs.evolve(config, chain_poll_interval=0.05, settings={**dict(config.settings), **env})


def wav_bytes(seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A real PCM WAV file: a 440 Hz tone."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                          for i in range(int(seconds * rate)))
        w.writeframes(frames)
    return buf.getvalue()


async def until(check: Callable[[], Awaitable[Any] | Any], within: float = 30.0, every: float = 0.05) -> Any:
    """Poll ``check()`` (sync or async) until it returns something truthy; that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        got = check()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s (last: {got!r})")
        await asyncio.sleep(every)


async def artist(client: TestClient, email: str) -> dict[str, Any]:
    """Sign in and take the artist role (ARTIST_SIGNUP=open in dev)."""
    s = await sign_in(client, email)
    r = await client.post("/me/artist", json={"artistName": email.split("@")[0]}, headers=bearer(s))
    assert r.status == 200, await r.text()
    return s


async def refresh(client: TestClient, session: dict[str, Any]) -> dict[str, Any]:
    """A new session after the clock moved past the access token's life."""
    r = await client.post("/auth/refresh", json={"refreshToken": session["refreshToken"]})
    assert r.status == 200, await r.text()
    return await r.json()


async def link_wallet(client: TestClient, session: dict[str, Any], clock: Any,
                      acct: LocalAccount | None = None) -> LocalAccount:
    acct = acct or Account.create()
    r = await client.post("/auth/wallet/nonce", headers=bearer(session))
    assert r.status == 200, await r.text()
    n = await r.json()
    text = SiweMessage(domain=n["domain"], address=acct.address, statement="Link my wallet", uri=n["uri"],
                       version="1", chain_id=n["chainId"], nonce=n["nonce"], issued_at=clock.now(),
                       expiration_time=clock.now() + timedelta(minutes=5)).to_text()
    sig = "0x" + acct.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")
    r = await client.post("/auth/wallet/link", json={"message": text, "signature": sig}, headers=bearer(session))
    assert r.status == 200, await r.text()
    return acct


def form(audio: bytes | None, metadata: Any, *, content_type: str = "audio/wav",
         filename: str = "track.wav") -> aiohttp.FormData:
    f = aiohttp.FormData()
    if metadata is not None:
        f.add_field("metadata", metadata if isinstance(metadata, str | bytes) else json.dumps(metadata), content_type="application/json")
    if audio is not None:
        f.add_field("audio", audio, filename=filename, content_type=content_type)
    return f


async def upload(client: TestClient, session: dict[str, Any], audio: bytes | None = None,
                 metadata: Any = None, **kw: Any) -> aiohttp.ClientResponse:
    return await client.post("/masters", data=form(wav_bytes() if audio is None else audio,
                                                   metadata if metadata is not None else {"title": "Song"}, **kw),
                             headers=bearer(session))


async def job_of(client: TestClient, session: dict[str, Any], job_id: str) -> dict[str, Any]:
    r = await client.get(f"/jobs/{job_id}", headers=bearer(session))
    assert r.status == 200, await r.text()
    return await r.json()


async def wait_job(client: TestClient, session: dict[str, Any], job_id: str, status: str = "confirmed",
                   within: float = 30.0) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        j = await job_of(client, session, job_id)
        return j if j["status"] == status else None

    return await until(done, within)


async def master(client: TestClient, master_id: str, session: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await client.get(f"/masters/{master_id}", headers=bearer(session) if session else None)
    assert r.status == 200, await r.text()
    return await r.json()


async def registered(client: TestClient, session: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """Upload a master and wait until its contracts are deployed."""
    r = await upload(client, session, **kw)
    assert r.status == 201, await r.text()
    mid = (await r.json())["id"]

    async def ready() -> dict[str, Any] | None:
        m = await master(client, mid, session)
        return m if m["status"] == "registered" else None

    return await until(ready)


def ipo_body(clock: Any, total: int = 100, *, starts_in: float = 3600, lasts: float = 7 * 86400,
             **over: Any) -> dict[str, Any]:
    start = clock.now() + timedelta(seconds=starts_in)
    body = {"totalShares": total, "pricePerShare": {"amount": 500, "currency": "usd"},
            "startsAt": _ts(start), "endsAt": _ts(start + timedelta(seconds=lasts))}
    body.update(over)
    return body


def _ts(d: datetime) -> str:
    return d.isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------ the dev chain
async def rpc(client: TestClient, method: str, *params: Any) -> Any:
    r = await client.post("/dev/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    body = await r.json()
    assert "error" not in body, body
    return body["result"]


async def receipt(client: TestClient, tx_hash: str) -> dict[str, Any]:
    return await until(lambda: rpc(client, "eth_getTransactionReceipt", tx_hash))


async def fund(client: TestClient, address: str, wei: int) -> None:
    dev = (await rpc(client, "eth_accounts"))[1]
    h = await rpc(client, "eth_sendTransaction", {"from": dev, "to": address, "value": hex(wei), "gas": hex(21000)})
    assert (await receipt(client, h))["status"] == "0x1"


async def balance(client: TestClient, address: str) -> int:
    return int(await rpc(client, "eth_getBalance", address, "latest"), 16)


async def send(client: TestClient, acct: LocalAccount, tx: dict[str, Any], gas: int = 600_000) -> dict[str, Any]:
    """Sign an API transaction ``{to, data, value, chainId}`` and send it raw; its (successful) receipt."""
    nonce = int(await rpc(client, "eth_getTransactionCount", acct.address, "pending"), 16)
    base = int((await rpc(client, "eth_getBlockByNumber", "latest", False))["baseFeePerGas"], 16)
    signed = acct.sign_transaction({"to": tx["to"], "data": tx["data"], "value": int(tx["value"]),
                                    "chainId": tx["chainId"], "nonce": nonce, "gas": gas, "type": 2,
                                    "maxFeePerGas": 2 * base + 10**9, "maxPriorityFeePerGas": 10**9})
    h = await rpc(client, "eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())
    got = await receipt(client, h)
    assert got["status"] == "0x1", got
    return got


__all__ = ["ETH", "artist", "balance", "bearer", "fast", "form", "fund", "ipo_body", "job_of", "link_wallet",
           "master", "platform_of", "refresh", "registered", "rpc", "send", "sign_in", "until", "upload", "wait_job",
           "wav_bytes"]
