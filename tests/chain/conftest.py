"""In-process EVM fixtures for the contract tests (py-evm through eth-tester, sync web3)."""

from __future__ import annotations

import ast
import contextlib
import re
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from audifi_adapters.chain.artifacts import load_artifact

# py-evm's gas estimation runs a binary search that doubles the cost: every transaction in these
# tests names its gas explicitly.
DEFAULT_GAS = 3_000_000


@attrs.define
class EvmChain:
    """One in-process chain: the tester (snapshots, time travel), web3, and funded accounts."""

    tester: EthereumTester
    w3: Web3
    accounts: list[str]

    def deploy(
        self, name: str, *args: Any, sender: str | None = None, gas: int = 8_000_000
    ) -> Contract:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx_hash = factory.constructor(*args).transact(
            {"from": sender or self.accounts[0], "gas": gas}
        )
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt.status == 1, f"deploying {name} failed"
        return self.at(name, receipt.contractAddress)

    def at(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=address, abi=load_artifact(name).abi)

    def send(self, fn: Any, sender: str, *, gas: int = DEFAULT_GAS, value: int = 0) -> Any:
        """Transact and return the receipt; the transaction must succeed."""
        tx_hash = fn.transact({"from": sender, "gas": gas, "value": value})
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        assert receipt.status == 1, f"transaction {fn.fn_name} reverted"
        return receipt

    def expect_revert(
        self,
        fn: Any,
        sender: str,
        error: str | None = None,
        *,
        gas: int = DEFAULT_GAS,
        value: int = 0,
    ) -> bytes:
        """The call reverts (with custom error signature ``error``, e.g. ``"OpAlreadyUsed(bytes32)"``)
        and the mined transaction fails too. Returns the revert data."""
        tx = {"from": sender, "gas": gas, "value": value}
        with pytest.raises(TransactionFailed) as info:
            fn.call(tx)
        data = revert_data(info.value)
        if error is not None:
            assert data[:4] == keccak(text=error)[:4], (
                f"expected {error}, got revert data {data.hex()}"
            )
        tx_hash = fn.transact(tx)
        assert self.w3.eth.get_transaction_receipt(tx_hash).status == 0
        return data

    def balance(self, address: str) -> int:
        return self.w3.eth.get_balance(address)

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def time_travel(self, seconds: int) -> int:
        """Move the clock: the next transaction is mined at the latest block's time + `seconds`
        (eth-tester mines an empty block one second before). Returns that timestamp.

        The pending block never runs behind the wall clock (a reverted snapshot can leave the
        chain's latest block far behind it); then the clock moves to the pending time instead,
        as eth-tester refuses to travel backwards."""
        pending = self.tester.get_block_by_number("pending")["timestamp"]
        ts = max(self.now() + seconds, pending)
        self.tester.time_travel(ts)
        return ts

    @staticmethod
    def assemble(items: list[Any]) -> bytes:
        """Tiny EVM assembler for hand-written helper contracts (no test-only Solidity in the
        shipped artifacts): ints are opcodes/bytes, bytes are raw, ("label", name) marks an
        offset and ("push2", name) is a PUSH2 of that offset."""
        offsets: dict[str, int] = {}
        pos = 0
        for item in items:
            if isinstance(item, tuple):
                if item[0] == "label":
                    offsets[item[1]] = pos
                else:
                    pos += 3
            else:
                pos += 1 if isinstance(item, int) else len(item)
        out = bytearray()
        for item in items:
            if isinstance(item, tuple):
                if item[0] == "push2":
                    out += bytes([0x61]) + offsets[item[1]].to_bytes(2, "big")
            elif isinstance(item, int):
                out.append(item)
            else:
                out += item
        return bytes(out)

    def deploy_runtime(self, runtime: bytes) -> str:
        """Deploys raw runtime code (< 256 bytes); returns its address."""
        n = len(runtime)
        assert n < 256
        # PUSH1 n PUSH1 12 PUSH1 0 CODECOPY PUSH1 n PUSH1 0 RETURN, then the runtime
        init = bytes([0x60, n, 0x60, 12, 0x60, 0, 0x39, 0x60, n, 0x60, 0, 0xF3]) + runtime
        tx = self.w3.eth.send_transaction({"from": self.accounts[0], "data": init, "gas": 500_000})
        receipt = self.w3.eth.get_transaction_receipt(tx)
        assert receipt.status == 1
        return receipt.contractAddress

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Everything done inside is undone on exit (one fresh chain state per hypothesis example)."""
        snap = self.tester.take_snapshot()
        try:
            yield
        finally:
            self.tester.revert_to_snapshot(snap)


def revert_data(exc: BaseException) -> bytes:
    """The raw revert bytes carried by eth-tester's TransactionFailed (or its cause)."""
    seen: BaseException | None = exc
    while seen is not None:
        if seen.args and isinstance(seen.args[0], bytes):
            return seen.args[0]
        if seen.args and isinstance(seen.args[0], str):
            # eth-tester carries the bytes as their repr: "execution reverted: b'...'"
            match = re.search(r"""b(['"]).*\1\s*$""", seen.args[0], re.DOTALL)
            if match:
                with contextlib.suppress(ValueError, SyntaxError):
                    value = ast.literal_eval(match.group(0))
                    if isinstance(value, bytes):
                        return value
        seen = seen.__cause__ or seen.__context__
    return b""


def new_evm_chain() -> EvmChain:
    tester = EthereumTester(PyEVMBackend())
    w3 = Web3(EthereumTesterProvider(tester))
    return EvmChain(tester=tester, w3=w3, accounts=list(w3.eth.accounts))


@pytest.fixture(scope="module")
def evm_module_chain() -> EvmChain:
    """One chain per test module (creating a py-evm chain costs about a second)."""
    return new_evm_chain()


@pytest.fixture
def evm_chain(evm_module_chain: EvmChain) -> Iterator[EvmChain]:
    """The module's chain, reverted to its previous state after the test."""
    with evm_module_chain.snapshot():
        yield evm_module_chain


@pytest.fixture
def evm_w3(evm_chain: EvmChain) -> Web3:
    return evm_chain.w3


# --- Chain layer (test_chain_*, test_jobs_*, test_indexer_*): fixtures live in conftest_chain.py,
# loaded by path because tests run with --import-mode=importlib (no package, no sys.path entry).
def _load_chain_fixtures() -> dict[str, object]:
    import importlib.util
    import sys
    from pathlib import Path

    name = "audifi_chain_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("conftest_chain.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return {k: v for k, v in vars(sys.modules[name]).items() if k.startswith("chain_") or k.startswith("anvil")}


globals().update({k: v for k, v in _load_chain_fixtures().items() if k not in globals()})
