"""The in-process dev chain: eth-tester + py-evm on ONE worker thread, behind an async web3 provider.

py-evm is synchronous and not thread-safe, so every request (web3's, ``/dev/rpc``'s, snapshots)
runs on the same single-thread executor; the event loop only awaits it. The chain auto-mines one
block per transaction. Its funded accounts' keys are known, so the first one is the platform signer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
from typing import Any

from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.providers.async_base import AsyncBaseProvider
from web3.providers.eth_tester.defaults import API_ENDPOINTS
from web3.providers.eth_tester.main import AsyncEthereumTesterProvider, _make_request
from web3.types import RPCEndpoint, RPCResponse

__all__ = ["InProcessEvm", "ThreadedTesterProvider"]


class ThreadedTesterProvider(AsyncEthereumTesterProvider):
    """web3's async eth-tester provider, with each request executed on the EVM's worker thread."""

    def __init__(self, tester: EthereumTester, executor: concurrent.futures.ThreadPoolExecutor):
        AsyncBaseProvider.__init__(self)  # not the parent's: it would build a second EthereumTester
        self.ethereum_tester = tester
        self.api_endpoints = API_ENDPOINTS
        self._executor = executor
        self._ids = itertools.count()

    async def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _make_request, method, params, self.api_endpoints,
                                          self.ethereum_tester, repr(next(self._ids)))


class InProcessEvm:
    """One fresh in-process chain (new genesis at every start)."""

    def __init__(self, accounts: int = 10):
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="audifi-evm")
        self.tester = self.executor.submit(self._create, accounts).result()
        self.provider = ThreadedTesterProvider(self.tester, self.executor)
        self.w3 = AsyncWeb3(self.provider)
        self.raw_w3 = AsyncWeb3(self.provider, middleware=[])  # passthrough for /dev/rpc
        backend = self.tester.backend
        self.keys: list[bytes] = [k.to_bytes() for k in backend.account_keys]
        self.accounts: list[str] = [to_checksum_address(k.public_key.to_checksum_address()) for k in
                                    backend.account_keys]

    @staticmethod
    def _create(accounts: int) -> EthereumTester:
        backend = PyEVMBackend(genesis_state=PyEVMBackend.generate_genesis_state(num_accounts=accounts))
        return EthereumTester(backend)

    async def run(self, fn: Any, *args: Any) -> Any:
        """Call ``fn(*args)`` on the EVM thread (for tester controls: snapshots, time travel…)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def snapshot(self) -> int:
        return await self.run(self.tester.take_snapshot)

    async def revert(self, snapshot: int) -> None:
        await self.run(self.tester.revert_to_snapshot, snapshot)

    async def mine(self, blocks: int = 1) -> None:
        await self.run(self.tester.mine_blocks, blocks)

    async def rpc(self, method: str, params: Any) -> RPCResponse:
        """One JSON-RPC call through eth-tester's request/response formatting (no web3 result formatters)."""
        fn = await self.provider.request_func(self.raw_w3, self.raw_w3.middleware_onion)
        return await fn(RPCEndpoint(method), params)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
