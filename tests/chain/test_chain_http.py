"""HTTP: ``GET /jobs/{id}``, ``POST /jobs/{id}/retry`` and ``POST /dev/rpc`` on the in-process dev chain."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from eth_account import Account

from audifi_adapters.chain.wiring import open_chain
from audifi_adapters.config import Config
from audifi_adapters.platform import open_platform
from audifi_core.chain.model import DeployMaster, JobKind, JobStatus, MintShares
from audifi_http.api import RouteTable
from audifi_http.keys import CONFIG, PLATFORM
from audifi_http.middleware import request_id_middleware
from audifi_http.routes import chain as chain_routes

ARTIST = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"


@attrs.define
class Env:
    client: TestClient
    platform: Any
    services: Any
    tokens: dict[str, str]
    users: dict[str, str]


async def sign_in(p: Any, email: str) -> tuple[str, str]:
    await p.auth.request_magic_link(email, "127.0.0.1")
    text = p.dev_mailbox.mailbox(email)[0].text
    token = re.search(r"token=([A-Za-z0-9_\-]+)", text).group(1)  # type: ignore[union-attr]
    session = await p.auth.verify_magic_link(token)
    return session.access_token, session.user.id


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    """The platform in dev mode, the chain layer on the in-process EVM, and two signed-in users."""
    config = Config.dev(data_dir=tmp_path / "data", password_hash_memory_kib=1024)
    async with open_platform(config, run_background=False) as p, contextlib.AsyncExitStack() as stack:
        services = getattr(p, "chain", None) or await open_chain(
            p.config, stack, uow=p.uow, database=p.database, clock=p.clock, ids=p.ids, run_background=False)
        app = web.Application(middlewares=[request_id_middleware])
        app[CONFIG] = p.config
        app[PLATFORM] = p
        app[chain_routes.CHAIN] = services
        t = RouteTable()
        chain_routes.register(t, p.config)
        t.mount(app)
        client = TestClient(TestServer(app))
        await client.start_server()
        tokens, users = {}, {}
        for name in ("ann", "bob"):
            tokens[name], users[name] = await sign_in(p, f"{name}@example.com")
        try:
            yield Env(client, p, services, tokens, users)
        finally:
            await client.close()


def bearer(env: Env, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.tokens[who]}"}


async def rpc(env: Env, payload: Any) -> Any:
    r = await env.client.post("/dev/rpc", json=payload)
    assert r.status == 200
    return await r.json()


class TestJobs:
    async def test_the_requester_reads_a_job_and_nobody_else(self, env: Env) -> None:
        """GET /jobs/{id}: the API.md ChainJob shape for its requester; 404 for another user; 401 anonymous."""
        async with env.platform.uow() as u:
            job = await env.services.jobs.enqueue(u, JobKind.DEPLOY_MASTER, "deploy:h1", env.users["ann"],
                                                  DeployMaster("mst_h1", ARTIST, "ipfs://x", 10))
        await env.services.runner.drain()
        r = await env.client.get(f"/jobs/{job.id}", headers=bearer(env, "ann"))
        body = await r.json()
        assert r.status == 200
        assert set(body) == {"id", "kind", "status", "txHashes", "result", "error", "createdAt", "updatedAt"}
        assert (body["kind"], body["status"], body["error"]) == ("deploy_master", "confirmed", None)
        assert len(body["txHashes"]) == 2 and body["result"]["sharesAddress"].startswith("0x")
        other = await env.client.get(f"/jobs/{job.id}", headers=bearer(env, "bob"))
        assert other.status == 404 and (await other.json())["error"]["code"] == "JOB_NOT_FOUND"
        assert (await env.client.get(f"/jobs/{job.id}")).status == 401

    async def test_retry_only_a_failed_job(self, env: Env) -> None:
        """POST /jobs/{id}/retry: 409 while not failed; a failed job → 202 queued, then it runs once."""
        async with env.platform.uow() as u:
            await env.services.jobs.enqueue(u, JobKind.DEPLOY_MASTER, "deploy:h2", env.users["ann"],
                                            DeployMaster("mst_h2", ARTIST, "ipfs://x", None))
        await env.services.runner.drain()
        shares = (await env.services.chain.masters_of("mst_h2")).shares
        async with env.platform.uow() as u:
            mint = await env.services.jobs.enqueue(u, JobKind.MINT, "mint:h2", env.users["ann"],
                                                   MintShares(shares, ARTIST, 2))
        r = await env.client.post(f"/jobs/{mint.id}/retry", headers=bearer(env, "ann"))
        assert r.status == 409
        await env.services.runner.drain()  # no max supply: reverts → failed
        failed = await (await env.client.get(f"/jobs/{mint.id}", headers=bearer(env, "ann"))).json()
        assert failed["status"] == "failed" and failed["error"]["code"] == "TX_REVERTED"
        assert (await env.client.post(f"/jobs/{mint.id}/retry", headers=bearer(env, "bob"))).status == 404
        r = await env.client.post(f"/jobs/{mint.id}/retry", headers=bearer(env, "ann"))
        assert r.status == 202 and (await r.json())["status"] == "queued"
        assert (await env.services.jobs.load(mint.id)).status is JobStatus.QUEUED


class TestDevRpc:
    async def test_eth_methods_and_the_funded_dev_accounts(self, env: Env) -> None:
        """eth_chainId/eth_blockNumber answer as hex; eth_accounts lists funded accounts; net/web3 served."""
        chain_id = await rpc(env, {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        assert chain_id == {"jsonrpc": "2.0", "id": 1, "result": hex(env.services.chain.chain_id)}
        accounts = (await rpc(env, {"jsonrpc": "2.0", "id": 2, "method": "eth_accounts"}))["result"]
        balance = await rpc(env, {"jsonrpc": "2.0", "id": 3, "method": "eth_getBalance",
                                  "params": [accounts[1], "latest"]})
        assert len(accounts) >= 2 and int(balance["result"], 16) > 10**20
        version = await rpc(env, {"jsonrpc": "2.0", "id": "v", "method": "net_version", "params": []})
        assert version["result"] == str(env.services.chain.chain_id)
        client = await rpc(env, {"jsonrpc": "2.0", "id": 4, "method": "web3_clientVersion"})
        assert "AudiFi" in client["result"]

    async def test_a_wallet_sends_an_unsigned_transaction_the_api_returned(self, env: Env) -> None:
        """A script signs {to,data,value,chainId} and sends it raw: the dividend deposit lands."""
        async with env.platform.uow() as u:
            await env.services.jobs.enqueue(u, JobKind.DEPLOY_MASTER, "deploy:h3", env.users["ann"],
                                            DeployMaster("mst_h3", ARTIST, "ipfs://x", 10))
        await env.services.runner.drain()
        m = await env.services.chain.masters_of("mst_h3")
        async with env.platform.uow() as u:
            await env.services.jobs.enqueue(u, JobKind.MINT, "mint:h3", env.users["ann"], MintShares(m.shares, ARTIST, 2))
        await env.services.runner.drain()
        utx = env.services.chain.dividend_deposit(m.vault, 10**18)
        wallet = Account.from_key(env.services.evm.keys[3])
        nonce = await rpc(env, {"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionCount",
                                "params": [wallet.address, "pending"]})
        signed = wallet.sign_transaction({"to": utx.to, "data": utx.data, "value": int(utx.value),
                                          "chainId": utx.chain_id, "nonce": int(nonce["result"], 16),
                                          "gas": 200_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9})
        sent = await rpc(env, {"jsonrpc": "2.0", "id": 2, "method": "eth_sendRawTransaction",
                               "params": ["0x" + bytes(signed.raw_transaction).hex()]})
        receipt = await rpc(env, {"jsonrpc": "2.0", "id": 3, "method": "eth_getTransactionReceipt",
                                  "params": [sent["result"]]})
        assert receipt["result"]["status"] == "0x1"
        assert await env.services.chain.claimable(m.vault, (1, 2)) > 0

    async def test_batches_notifications_and_errors(self, env: Env) -> None:
        """A batch answers each request in order; notifications get nothing; bad input gets error objects."""
        out = await rpc(env, [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
            {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "personal_sign", "params": []},
            {"jsonrpc": "1.0", "id": 3, "method": "eth_blockNumber"},
            {"jsonrpc": "2.0", "id": 4, "method": "eth_call",
             "params": [{"to": env.services.chain.factories()["MasterFactory"], "data": "0xdeadbeef"}, "latest"]},
        ])
        assert [o["id"] for o in out] == [1, 2, 3, 4]
        assert out[0]["result"].startswith("0x")
        assert out[1]["error"]["code"] == -32601 and out[2]["error"]["code"] == -32600
        assert out[3]["error"]["code"] == 3 and "reverted" in out[3]["error"]["message"]
        r = await env.client.post("/dev/rpc", data=b"{not json", headers={"Content-Type": "application/json"})
        assert (await r.json())["error"]["code"] == -32700
        assert (await rpc(env, []))["error"]["code"] == -32600
        only_note = await env.client.post("/dev/rpc", json={"jsonrpc": "2.0", "method": "eth_chainId"})
        assert only_note.status == 204
