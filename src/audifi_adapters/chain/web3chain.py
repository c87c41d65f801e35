"""Web3Chain: the Chain port on web3.py's AsyncWeb3 (a JSON-RPC node, or the in-process EVM).

* Calldata is encoded from the shipped ABIs; every platform transaction carries an explicit gas
  limit from a per-call table (never web3's automatic estimation: on py-evm it doubles the cost).
* Signing is local (eth-account, coincurve): the platform key and the HD custody keys.
* Reads retry transient RPC failures; every revert or RPC failure becomes ``ChainError``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, TransactionNotFound

from audifi_core.chain.jobs import op_id
from audifi_core.chain.model import (
    PLATFORM,
    BlockRef,
    ChainLog,
    CoinAddresses,
    Fees,
    MasterAddresses,
    Receipt,
    SignedTx,
    TxRequest,
    UnsignedTx,
)
from audifi_core.chain.ports import ChainIdentity
from audifi_core.errors import ChainError

from .abi import decode_log, function
from .artifacts import load_artifact
from .custody import HdCustody

__all__ = ["Web3Chain", "GAS", "master_key", "classify_send_error"]

log = logging.getLogger("audifi.chain.web3")
T = TypeVar("T")
ZERO = "0x0000000000000000000000000000000000000000"
GWEI = 10**9

#: Gas limits per call: fixed base + per item, with a margin over what the contracts use.
GAS = {
    "createMaster": (500_000, 0),
    "setMaxSupply": (80_000, 0),
    "batchMint": (100_000, 32_000),
    "batchTransfer": (80_000, 25_000),
    "claim": (120_000, 30_000),
    "createCoin": (800_000, 0),
    "transfer": (21_000, 0),
    "deposit": (120_000, 0),
    "approve": (70_000, 0),
    "addLiquidity": (300_000, 0),
    "swap": (200_000, 0),
    "stake": (200_000, 0),
    "unstake": (200_000, 0),
    "notifyRewardAmount": (250_000, 0),
    "deploy": (6_000_000, 0),
}


def _gas(name: str, items: int = 0) -> int:
    base, per = GAS[name]
    return base + per * items


def master_key(master_id: str) -> bytes:
    """The bytes32 ``masterId`` of a domain master id on-chain."""
    return keccak(text=master_id)


_TRANSIENT = (aiohttp.ClientError, OSError, asyncio.TimeoutError, ConnectionError)


_EXPECTED = re.compile(r"expected (\d+), but got (\d+)", re.IGNORECASE)


def classify_send_error(message: str) -> str:
    m = message.lower()
    gap = _EXPECTED.search(message)
    if gap is not None:  # eth-tester: "Invalid transaction nonce: Expected 5, but got 6"
        return "nonce_too_low" if int(gap.group(2)) < int(gap.group(1)) else "unavailable"
    if "nonce too high" in m:
        return "unavailable"  # an earlier nonce is not in yet: send again later
    if "already known" in m or "already imported" in m or "known transaction" in m:
        return "already_known"
    if "nonce too low" in m or "invalid transaction nonce" in m or "nonce" in m and "low" in m:
        return "nonce_too_low"
    if "underpriced" in m or "replacement" in m:
        return "underpriced"
    if "insufficient funds" in m or "sender balance" in m or "insufficient balance" in m:
        return "insufficient_funds"
    return "rejected"


class Web3Chain:
    """The Chain port over ``AsyncWeb3``. Build with ``Web3Chain(w3, chain_id, platform_key, …)``."""

    def __init__(self, w3: AsyncWeb3, *, chain_id: int, platform_key: bytes, factories: dict[str, str],
                 custody: HdCustody | None = None, name: str = "rpc", priority_fee: int | None = None,
                 retries: int = 3, retry_delay: float = 0.2, timeout: float = 30.0):
        self.w3 = w3
        self.name = name
        self.chain_id = chain_id
        self._platform = Account.from_key(platform_key)
        self._custody = custody
        self._factories = {k: to_checksum_address(v) for k, v in factories.items()}
        self._priority = priority_fee
        self._retries = retries
        self._retry_delay = retry_delay
        self._timeout = timeout
        self._genesis: str | None = None

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    async def deploy_factories(w3: AsyncWeb3, platform_key: bytes, chain_id: int) -> dict[str, str]:
        """Deploy MasterFactory and CoinFactory from the platform key (dev chains)."""
        acct = Account.from_key(platform_key)
        nonce = await w3.eth.get_transaction_count(acct.address, "pending")
        out: dict[str, str] = {}
        base = (await w3.eth.get_block("latest")).get("baseFeePerGas", GWEI)
        for i, name in enumerate(("MasterFactory", "CoinFactory")):
            tx = {"data": load_artifact(name).bytecode, "value": 0, "gas": _gas("deploy"), "nonce": nonce + i,
                  "chainId": chain_id, "maxFeePerGas": 2 * base + GWEI, "maxPriorityFeePerGas": GWEI}
            signed = Account.sign_transaction(tx, platform_key)
            h = await w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = await w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.05)
            if receipt["status"] != 1:
                raise ChainError(f"deploying {name} failed", details={"tx": h.to_0x_hex()})
            out[name] = to_checksum_address(receipt["contractAddress"])
        return out

    # ------------------------------------------------------------------ plumbing
    async def _rpc(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        delay = self._retry_delay
        for attempt in range(self._retries + 1):
            try:
                return await asyncio.wait_for(fn(), self._timeout)
            except ChainError:
                raise
            except ContractLogicError as e:
                raise ChainError(f"{what} reverted", details={"reason": "reverted", "data": str(e.data or "")}) from e
            except _TRANSIENT as e:
                if attempt == self._retries:
                    raise ChainError(f"{what}: the node is unreachable", details={"reason": "unavailable"}) from e
                await asyncio.sleep(delay)
                delay *= 2
            except Exception as e:  # noqa: BLE001 - every node/EVM failure is a ChainError at this port
                reason = "reverted" if "revert" in str(e).lower() else "failed"
                raise ChainError(f"{what} failed: {_short(e)}", details={"reason": reason}) from e
        raise AssertionError("unreachable")

    async def _call(self, contract: str, to: str, fn: str, *args: Any) -> tuple[Any, ...]:
        f = function(contract, fn)
        data = f.encode(*args)
        raw = await self._rpc(f"{contract}.{fn}", lambda: self.w3.eth.call({"to": to_checksum_address(to),
                                                                             "data": data}))
        if not raw:
            raise ChainError(f"{contract}.{fn}: no contract at {to}", details={"address": to})
        return f.decode_output(bytes(raw))

    def _tx(self, contract: str, to: str, fn: str, *args: Any, value: int = 0, gas: str | None = None,
            items: int = 0) -> TxRequest:
        return TxRequest(to_checksum_address(to), function(contract, fn).encode(*args), value,
                         _gas(gas or fn, items), fn)

    def _unsigned(self, contract: str, to: str, fn: str, *args: Any, value: int = 0) -> UnsignedTx:
        return UnsignedTx(to=to_checksum_address(to), data=function(contract, fn).encode(*args), value=str(value),
                          chain_id=self.chain_id)

    # ------------------------------------------------------------------ identity & signers
    def address_of(self, signer: str) -> str:
        if signer == PLATFORM:
            return self._platform.address
        if signer.startswith("custody:") and self._custody is not None:
            return self._custody.address_for(int(signer.split(":", 1)[1]))
        raise ChainError(f"unknown signer {signer!r}")

    def _key(self, signer: str) -> bytes:
        if signer == PLATFORM:
            return bytes(self._platform.key)
        if signer.startswith("custody:") and self._custody is not None:
            return self._custody.private_key_for(int(signer.split(":", 1)[1]))
        raise ChainError(f"unknown signer {signer!r}")

    def factories(self) -> dict[str, str]:
        return dict(self._factories)

    async def identity(self) -> ChainIdentity:
        if self._genesis is None:
            b = await self._rpc("genesis block", lambda: self.w3.eth.get_block(0))
            self._genesis = b["hash"].to_0x_hex()
        cid = await self._rpc("chain id", lambda: self.w3.eth.chain_id)
        return ChainIdentity(int(cid), self._genesis)

    # ------------------------------------------------------------------ platform transactions
    def create_master_tx(self, master_id: str, artist: str, token_uri: str) -> TxRequest:
        return self._tx("MasterFactory", self._factories["MasterFactory"], "createMaster", master_key(master_id),
                        to_checksum_address(artist), token_uri)

    def set_max_supply_tx(self, shares: str, max_supply: int) -> TxRequest:
        return self._tx("MasterShares", shares, "setMaxSupply", max_supply)

    def mint_tx(self, shares: str, to: str, count: int, op_key: str) -> TxRequest:
        return self._tx("MasterShares", shares, "batchMint", to_checksum_address(to), count, op_id(op_key),
                        items=count)

    def transfer_tx(self, shares: str, from_address: str, to: str, ids: tuple[int, ...]) -> TxRequest:
        return self._tx("MasterShares", shares, "batchTransfer", to_checksum_address(from_address),
                        to_checksum_address(to), list(ids), items=len(ids))

    def claim_tx(self, vault: str, ids: tuple[int, ...], to: str) -> TxRequest:
        return self._tx("DividendVault", vault, "claim", list(ids), to_checksum_address(to), items=len(ids))

    def create_coin_tx(self, artist: str, name: str, symbol: str, initial_supply: int) -> TxRequest:
        return self._tx("CoinFactory", self._factories["CoinFactory"], "createCoin", to_checksum_address(artist),
                        name, symbol, initial_supply)

    def eth_transfer_tx(self, to: str, value: int) -> TxRequest:
        return TxRequest(to_checksum_address(to), "0x", value, _gas("transfer"), "transfer")

    # ------------------------------------------------------------------ unsigned user transactions
    def dividend_deposit(self, vault: str, amount: int) -> UnsignedTx:
        return self._unsigned("DividendVault", vault, "deposit", value=amount)

    def dividend_claim(self, vault: str, ids: tuple[int, ...], to: str) -> UnsignedTx:
        return self._unsigned("DividendVault", vault, "claim", list(ids), to_checksum_address(to))

    def approve(self, token: str, spender: str, amount: int) -> UnsignedTx:
        return self._unsigned("ArtistCoin", token, "approve", to_checksum_address(spender), amount)

    def add_liquidity(self, pool: str, coin_amount: int, eth_amount: int, min_coin: int, min_eth: int,
                      to: str, deadline: int) -> UnsignedTx:
        return self._unsigned("CoinPool", pool, "addLiquidity", coin_amount, min_coin, min_eth,
                              to_checksum_address(to), deadline, value=eth_amount)

    def swap_eth_for_coin(self, pool: str, eth_in: int, min_out: int, to: str, deadline: int) -> UnsignedTx:
        return self._unsigned("CoinPool", pool, "swapExactEthForCoin", min_out, to_checksum_address(to), deadline,
                              value=eth_in)

    def swap_coin_for_eth(self, pool: str, coin_in: int, min_out: int, to: str, deadline: int) -> UnsignedTx:
        return self._unsigned("CoinPool", pool, "swapExactCoinForEth", coin_in, min_out, to_checksum_address(to),
                              deadline)

    def stake(self, staking: str, amount: int) -> UnsignedTx:
        return self._unsigned("CoinStaking", staking, "stake", amount)

    def unstake(self, staking: str, amount: int) -> UnsignedTx:
        return self._unsigned("CoinStaking", staking, "unstake", amount)

    def notify_reward_amount(self, staking: str, amount: int, duration: int) -> UnsignedTx:
        return self._unsigned("CoinStaking", staking, "notifyRewardAmount", amount, duration)

    # ------------------------------------------------------------------ reads
    async def masters_of(self, master_id: str) -> MasterAddresses | None:
        shares, vault = await self._call("MasterFactory", self._factories["MasterFactory"], "mastersOf",
                                         master_key(master_id))
        return None if int(shares, 16) == 0 else MasterAddresses(shares, vault)

    async def coin_of(self, artist: str) -> CoinAddresses | None:
        coin, staking, pool = await self._call("CoinFactory", self._factories["CoinFactory"], "coinOf",
                                               to_checksum_address(artist))
        return None if int(coin, 16) == 0 else CoinAddresses(coin, staking, pool)

    async def owner_of(self, shares: str, token_id: int) -> str | None:
        try:
            (owner,) = await self._call("MasterShares", shares, "ownerOf", token_id)
        except ChainError as e:
            if e.details.get("reason") == "reverted":
                return None
            raise
        return owner

    async def total_minted(self, shares: str) -> int:
        return (await self._call("MasterShares", shares, "totalMinted"))[0]

    async def max_supply(self, shares: str) -> int:
        return (await self._call("MasterShares", shares, "maxSupply"))[0]

    async def eth_balance(self, address: str) -> int:
        return await self._rpc("balance", lambda: self.w3.eth.get_balance(to_checksum_address(address)))

    async def token_balance(self, token: str, owner: str) -> int:
        return (await self._call("ArtistCoin", token, "balanceOf", to_checksum_address(owner)))[0]

    async def allowance(self, token: str, owner: str, spender: str) -> int:
        return (await self._call("ArtistCoin", token, "allowance", to_checksum_address(owner),
                                 to_checksum_address(spender)))[0]

    async def staked_of(self, staking: str, user: str) -> int:
        return (await self._call("CoinStaking", staking, "stakedOf", to_checksum_address(user)))[0]

    async def earned(self, staking: str, user: str) -> int:
        return (await self._call("CoinStaking", staking, "earned", to_checksum_address(user)))[0]

    async def reserves(self, pool: str) -> tuple[int, int]:
        coin, eth = await self._call("CoinPool", pool, "getReserves")
        return coin, eth

    async def claimable(self, vault: str, ids: tuple[int, ...]) -> int:
        return (await self._call("DividendVault", vault, "claimable", list(ids)))[0]

    # ------------------------------------------------------------------ blocks and logs
    async def head(self) -> int:
        return await self._rpc("block number", lambda: self.w3.eth.block_number)

    async def block(self, number: int) -> BlockRef | None:
        async def get() -> Any:
            try:
                return await self.w3.eth.get_block(number)
            except Exception as e:  # noqa: BLE001 - web3 raises BlockNotFound; eth-tester its own error
                if "not found" in str(e).lower() or "BlockNotFound" in type(e).__name__:
                    return None
                raise

        b = await self._rpc(f"block {number}", get)
        if b is None:
            return None
        return BlockRef(int(b["number"]), b["hash"].to_0x_hex(), b["parentHash"].to_0x_hex(), int(b["timestamp"]))

    async def logs(self, from_block: int, to_block: int, addresses: list[str]) -> list[ChainLog]:
        if not addresses or to_block < from_block:
            return []
        raw = await self._rpc("logs", lambda: self.w3.eth.get_logs({
            "fromBlock": from_block, "toBlock": to_block,
            "address": [to_checksum_address(a) for a in addresses]}))
        out = [d for d in (decode_log(dict(r)) for r in raw) if d is not None]
        out.sort(key=lambda lg: (lg.block_number, lg.log_index))
        return out

    # ------------------------------------------------------------------ sending
    async def fees(self) -> Fees:
        latest = await self._rpc("latest block", lambda: self.w3.eth.get_block("latest"))
        base = int(latest.get("baseFeePerGas") or GWEI)
        tip = self._priority
        if tip is None:
            try:
                tip = int(await self._rpc("priority fee", lambda: self.w3.eth.max_priority_fee))
            except ChainError:
                tip = GWEI
        return Fees(max_fee=2 * base + tip, priority_fee=tip)

    async def nonce(self, address: str, block: int | str = "pending") -> int:
        return await self._rpc("nonce", lambda: self.w3.eth.get_transaction_count(to_checksum_address(address),
                                                                                  block))  # type: ignore[arg-type]

    def sign(self, signer: str, tx: TxRequest, nonce: int, fees: Fees) -> SignedTx:
        body = {"to": tx.to, "data": tx.data, "value": tx.value, "gas": tx.gas, "nonce": nonce,
                "chainId": self.chain_id, "maxFeePerGas": fees.max_fee, "maxPriorityFeePerGas": fees.priority_fee,
                "type": 2}
        signed = Account.sign_transaction(body, self._key(signer))
        return SignedTx(raw=bytes(signed.raw_transaction), tx_hash="0x" + bytes(signed.hash).hex(),
                        sender=self.address_of(signer), nonce=nonce)

    async def broadcast(self, raw: bytes) -> str:
        try:
            h = await asyncio.wait_for(self.w3.eth.send_raw_transaction(raw), self._timeout)
        except _TRANSIENT as e:
            raise ChainError("broadcast: the node is unreachable", details={"reason": "unavailable"}) from e
        except Exception as e:  # noqa: BLE001 - classified for the runner
            reason = classify_send_error(_short(e))
            raise ChainError(f"broadcast refused: {_short(e)}", details={"reason": reason}) from e
        return "0x" + bytes(h).hex()

    async def receipt(self, tx_hash: str) -> Receipt | None:
        async def get() -> Any:
            try:
                return await self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None
            except Exception as e:  # noqa: BLE001 - eth-tester: "Transaction ... not found"
                if "not found" in str(e).lower():
                    return None
                raise

        r = await self._rpc("receipt", get)
        if r is None or r.get("blockNumber") is None:
            return None
        logs = tuple(d for d in (decode_log(dict(x)) for x in r["logs"]) if d is not None)
        return Receipt(tx_hash=tx_hash, success=r["status"] == 1, block_number=int(r["blockNumber"]),
                       block_hash=r["blockHash"].to_0x_hex(), gas_used=int(r["gasUsed"]), logs=logs)

    async def wait_receipt(self, tx_hash: str, within: float = 30.0, poll: float = 0.05) -> Receipt:
        """Poll for a receipt; ChainError after ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            r = await self.receipt(tx_hash)
            if r is not None:
                return r
            if loop.time() > deadline:
                raise ChainError("no receipt in time", details={"txHash": tx_hash, "reason": "timeout"})
            await asyncio.sleep(poll)


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) < 300 else text[:300] + "…"
