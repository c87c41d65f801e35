"""Test kit for the coin HTTP tests: wallets linked with SIWE, funded and signing through /dev/rpc."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from audifi_core.auth.siwe import SiweMessage

from ..http.helpers import bearer, platform_of, sign_in

ETH = 10**18
COIN = 10**18


async def rpc(client: TestClient, method: str, *params: Any) -> Any:
    """One JSON-RPC call to the in-process chain through POST /dev/rpc; its result."""
    r = await client.post("/dev/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    assert r.status == 200, await r.text()
    body = await r.json()
    assert "error" not in body, body
    return body["result"]


async def receipt(client: TestClient, tx_hash: str) -> dict[str, Any]:
    for _ in range(200):
        got = await rpc(client, "eth_getTransactionReceipt", tx_hash)
        if got is not None:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"no receipt for {tx_hash}")


async def fund(client: TestClient, address: str, wei: int) -> None:
    """Send ETH from a funded dev account (not the platform signer, account 0)."""
    dev = (await rpc(client, "eth_accounts"))[1]
    h = await rpc(client, "eth_sendTransaction", {"from": dev, "to": address, "value": hex(wei), "gas": hex(21000)})
    assert (await receipt(client, h))["status"] == "0x1"


async def send(client: TestClient, acct: LocalAccount, tx: dict[str, Any], gas: int = 500_000) -> dict[str, Any]:
    """Sign an unsigned API transaction ``{to, data, value, chainId}`` with ``acct``; it must succeed."""
    nonce = int(await rpc(client, "eth_getTransactionCount", acct.address, "pending"), 16)
    base = int((await rpc(client, "eth_getBlockByNumber", "latest", False))["baseFeePerGas"], 16)
    signed = acct.sign_transaction({"to": tx["to"], "data": tx["data"], "value": int(tx["value"]),
                                    "chainId": tx["chainId"], "nonce": nonce, "gas": gas, "type": 2,
                                    "maxFeePerGas": 2 * base + 10**9, "maxPriorityFeePerGas": 10**9})
    h = await rpc(client, "eth_sendRawTransaction", "0x" + bytes(signed.raw_transaction).hex())
    got = await receipt(client, h)
    assert got["status"] == "0x1", got
    return got


async def send_all(client: TestClient, acct: LocalAccount, body: dict[str, Any]) -> None:
    assert body["from"] == acct.address
    for tx in body["transactions"]:
        await send(client, acct, tx)


async def link_wallet(client: TestClient, session: dict[str, Any], clock: Any,
                      acct: LocalAccount | None = None) -> LocalAccount:
    """Link a wallet to the session's user with a signed EIP-4361 message."""
    acct = acct or Account.create()
    r = await client.post("/auth/wallet/nonce", headers=bearer(session))
    assert r.status == 200, await r.text()
    n = await r.json()
    text = SiweMessage(domain=n["domain"], address=acct.address, statement="Link this wallet to AudiFi",
                       uri=n["uri"], version="1", chain_id=n["chainId"], nonce=n["nonce"], issued_at=clock.now(),
                       expiration_time=clock.now() + timedelta(minutes=5)).to_text()
    signature = "0x" + acct.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")
    r = await client.post("/auth/wallet/link", json={"message": text, "signature": signature},
                          headers=bearer(session))
    assert r.status == 200, await r.text()
    return acct


async def artist(client: TestClient, email: str, name: str = "Ann") -> dict[str, Any]:
    """A signed-in user with the artist role (ARTIST_SIGNUP=open in dev)."""
    s = await sign_in(client, email)
    r = await client.post("/me/artist", json={"artistName": name}, headers=bearer(s))
    assert r.status == 200, await r.text()
    return s


async def wait_job(client: TestClient, session: dict[str, Any], job_id: str, within: float = 60.0) -> dict[str, Any]:
    """Poll GET /jobs/{id} until the job is confirmed or failed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        r = await client.get(f"/jobs/{job_id}", headers=bearer(session))
        job = await r.json()
        if job["status"] in ("confirmed", "failed"):
            return job
        assert loop.time() < deadline, job
        await asyncio.sleep(0.05)


async def token_balance(client: TestClient, token: str, owner: str) -> int:
    return await platform_of(client).chain.chain.token_balance(token, owner)


async def time_travel(client: TestClient, seconds: int) -> None:
    """Move the in-process chain's clock forward and mine a block there."""
    evm = platform_of(client).chain.evm
    latest = int((await rpc(client, "eth_getBlockByNumber", "latest", False))["timestamp"], 16)
    pending = (await evm.run(evm.tester.get_block_by_number, "pending"))["timestamp"]
    await evm.run(evm.tester.time_travel, max(latest + seconds, pending))
    await evm.mine(1)


async def until(predicate: Any, within: float = 30.0) -> Any:
    """Poll an async predicate until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        got = await predicate()
        if got:
            return got
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
