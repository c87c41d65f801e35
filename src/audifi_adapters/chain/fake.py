"""FakeChain: an in-memory stand-in for the Chain port, for fast core tests.

It models what the job runner and the indexer need: masters (deploy, max supply, opId-guarded
mints, transfers, ownership), coin deployment, ETH balances, per-sender nonces, one block per
transaction, receipts and the same decoded events as the real contracts; plus ``snapshot()`` /
``revert()`` to stage reorganisations. Dividends, pools and staking are not modelled
(their builders raise NotImplementedError).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import attrs
from eth_utils import to_checksum_address

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

from .custody import HdCustody

__all__ = ["FakeChain"]

ZERO = "0x0000000000000000000000000000000000000000"
GWEI = 10**9
_PREFIX = b"fakechain:"


def _h(*parts: object) -> str:
    return "0x" + hashlib.sha3_256("|".join(map(str, parts)).encode()).hexdigest()


def _addr(*parts: object) -> str:
    return to_checksum_address(_h(*parts)[-40:])


class _Revert(Exception):
    pass


@attrs.define
class _Shares:
    master_id: str
    artist: str
    vault: str
    uri: str
    max_supply: int = 0
    minted: int = 0
    owners: dict[int, str] = attrs.Factory(dict)
    ops: set[str] = attrs.Factory(set)


@attrs.define
class _State:
    blocks: list[BlockRef]
    balances: dict[str, int]
    nonces: dict[str, int]
    masters: dict[str, MasterAddresses]
    shares: dict[str, _Shares]
    coins: dict[str, CoinAddresses]
    receipts: dict[str, Receipt]
    logs: list[ChainLog]
    created: int = 0


class FakeChain:
    """Implements ``audifi_core.chain.ports.Chain`` in memory (see the module doc for its scope)."""

    name = "fake"

    def __init__(self, *, chain_id: int = 1337, custody: HdCustody | None = None, platform: str | None = None):
        self.chain_id = chain_id
        self._custody = custody
        self.platform_address = to_checksum_address(platform or _addr("platform"))
        self.master_factory = _addr("MasterFactory")
        self.coin_factory = _addr("CoinFactory")
        self._fork = 0
        genesis = BlockRef(0, _h("genesis", chain_id), "0x" + "00" * 32, 1_700_000_000)
        self._s = _State(blocks=[genesis], balances={self.platform_address: 10**24}, nonces={}, masters={},
                         shares={}, coins={}, receipts={}, logs=[])
        self._pending: dict[tuple[str, int], bytes] = {}
        self.sent: list[str] = []  # every hash accepted, in order (tests assert on it)
        self.fail_broadcast: ChainError | None = None  # the next broadcast raises this (once)

    # -------------------------------------------------------------------- identity & signers
    def address_of(self, signer: str) -> str:
        if signer == PLATFORM:
            return self.platform_address
        if signer.startswith("custody:"):
            index = int(signer.split(":", 1)[1])
            return self._custody.address_for(index) if self._custody else _addr("custody", index)
        raise ChainError(f"unknown signer {signer!r}")

    def factories(self) -> dict[str, str]:
        return {"MasterFactory": self.master_factory, "CoinFactory": self.coin_factory}

    async def identity(self) -> ChainIdentity:
        return ChainIdentity(self.chain_id, self._s.blocks[0].hash)

    # -------------------------------------------------------------------- builders
    @staticmethod
    def _data(fn: str, *args: Any) -> str:
        return "0x" + json.dumps([fn, list(args)]).encode().hex()

    def create_master_tx(self, master_id: str, artist: str, token_uri: str) -> TxRequest:
        return TxRequest(self.master_factory, self._data("createMaster", master_id, artist, token_uri), 0, 900_000,
                         "createMaster")

    def set_max_supply_tx(self, shares: str, max_supply: int) -> TxRequest:
        return TxRequest(shares, self._data("setMaxSupply", max_supply), 0, 80_000, "setMaxSupply")

    def mint_tx(self, shares: str, to: str, count: int, op_key: str) -> TxRequest:
        return TxRequest(shares, self._data("batchMint", to, count, op_id(op_key).hex()), 0,
                         80_000 + 60_000 * count, "batchMint")

    def transfer_tx(self, shares: str, from_address: str, to: str, ids: tuple[int, ...]) -> TxRequest:
        return TxRequest(shares, self._data("batchTransfer", from_address, to, list(ids)), 0,
                         60_000 + 40_000 * len(ids), "batchTransfer")

    def claim_tx(self, vault: str, ids: tuple[int, ...], to: str) -> TxRequest:
        raise NotImplementedError("FakeChain does not model dividend vaults")

    def create_coin_tx(self, artist: str, name: str, symbol: str, initial_supply: int) -> TxRequest:
        return TxRequest(self.coin_factory, self._data("createCoin", artist, name, symbol, str(initial_supply)), 0,
                         2_000_000, "createCoin")

    def eth_transfer_tx(self, to: str, value: int) -> TxRequest:
        return TxRequest(to_checksum_address(to), "0x", value, 21_000, "transfer")

    def _unsupported(self, *_: Any, **__: Any) -> UnsignedTx:
        raise NotImplementedError("FakeChain models masters and coin deployment only")

    dividend_deposit = dividend_claim = approve = add_liquidity = _unsupported
    swap_eth_for_coin = swap_coin_for_eth = stake = unstake = notify_reward_amount = _unsupported

    # -------------------------------------------------------------------- reads
    async def masters_of(self, master_id: str) -> MasterAddresses | None:
        return self._s.masters.get(master_id)

    async def coin_of(self, artist: str) -> CoinAddresses | None:
        return self._s.coins.get(to_checksum_address(artist))

    def _share(self, shares: str) -> _Shares:
        s = self._s.shares.get(to_checksum_address(shares))
        if s is None:
            raise ChainError("no contract at that address", details={"address": shares})
        return s

    async def owner_of(self, shares: str, token_id: int) -> str | None:
        return self._share(shares).owners.get(int(token_id))

    async def total_minted(self, shares: str) -> int:
        return self._share(shares).minted

    async def max_supply(self, shares: str) -> int:
        return self._share(shares).max_supply

    async def eth_balance(self, address: str) -> int:
        return self._s.balances.get(to_checksum_address(address), 0)

    async def token_balance(self, token: str, owner: str) -> int:
        s = self._share(token)
        return sum(1 for o in s.owners.values() if o == to_checksum_address(owner))

    async def allowance(self, token: str, owner: str, spender: str) -> int:
        raise NotImplementedError("FakeChain does not model ERC-20 allowances")

    async def staked_of(self, staking: str, user: str) -> int:
        raise NotImplementedError("FakeChain does not model staking")

    earned = staked_of

    async def reserves(self, pool: str) -> tuple[int, int]:
        raise NotImplementedError("FakeChain does not model pools")

    async def claimable(self, vault: str, ids: tuple[int, ...]) -> int:
        raise NotImplementedError("FakeChain does not model dividend vaults")

    # -------------------------------------------------------------------- blocks and logs
    async def head(self) -> int:
        return self._s.blocks[-1].number

    async def block(self, number: int) -> BlockRef | None:
        return self._s.blocks[number] if 0 <= number < len(self._s.blocks) else None

    async def logs(self, from_block: int, to_block: int, addresses: list[str]) -> list[ChainLog]:
        want = {to_checksum_address(a) for a in addresses}
        return [lg for lg in self._s.logs if from_block <= lg.block_number <= to_block and lg.address in want]

    # -------------------------------------------------------------------- sending
    async def fees(self) -> Fees:
        return Fees(max_fee=2 * GWEI, priority_fee=GWEI)

    async def nonce(self, address: str, block: int | str = "pending") -> int:
        return self._s.nonces.get(to_checksum_address(address), 0)

    def sign(self, signer: str, tx: TxRequest, nonce: int, fees: Fees) -> SignedTx:
        sender = self.address_of(signer)
        body = json.dumps({"from": sender, "nonce": nonce, "to": tx.to, "data": tx.data, "value": str(tx.value),
                           "gas": tx.gas, "maxFee": str(fees.max_fee), "tip": str(fees.priority_fee)},
                          sort_keys=True).encode()
        raw = _PREFIX + body
        return SignedTx(raw=raw, tx_hash=_h("tx", body), sender=sender, nonce=nonce)

    async def broadcast(self, raw: bytes) -> str:
        if self.fail_broadcast is not None:
            err, self.fail_broadcast = self.fail_broadcast, None
            raise err
        if not raw.startswith(_PREFIX):
            raise ChainError("not a FakeChain transaction", details={"reason": "rejected"})
        body = raw[len(_PREFIX):]
        tx = json.loads(body)
        tx_hash = _h("tx", body)
        if tx_hash in self._s.receipts:
            raise ChainError("already known", details={"reason": "already_known"})
        sender, nonce = tx["from"], tx["nonce"]
        expected = self._s.nonces.get(sender, 0)
        if nonce < expected:
            raise ChainError("nonce too low", details={"reason": "nonce_too_low"})
        cost = tx["gas"] * int(tx["maxFee"]) + int(tx["value"])
        if self._s.balances.get(sender, 0) < cost:
            raise ChainError("insufficient funds for gas * price + value", details={"reason": "insufficient_funds"})
        self._pending[(sender, nonce)] = raw
        self.sent.append(tx_hash)
        self._mine_pending(sender)
        return tx_hash

    def _mine_pending(self, sender: str) -> None:
        while (sender, self._s.nonces.get(sender, 0)) in self._pending:
            raw = self._pending.pop((sender, self._s.nonces.get(sender, 0)))
            self._execute(raw)

    async def receipt(self, tx_hash: str) -> Receipt | None:
        return self._s.receipts.get(tx_hash)

    # -------------------------------------------------------------------- execution
    def _execute(self, raw: bytes) -> None:
        body = raw[len(_PREFIX):]
        tx = json.loads(body)
        tx_hash = _h("tx", body)
        s = self._s
        sender = tx["from"]
        s.nonces[sender] = tx["nonce"] + 1
        number = len(s.blocks)
        block_hash = _h("block", number, self._fork, tx_hash)
        gas_used = 21_000 if tx["data"] == "0x" else min(tx["gas"], 50_000)
        s.balances[sender] = s.balances.get(sender, 0) - gas_used * GWEI
        events: list[tuple[str, str, dict[str, Any], int]] = []
        backup = copy.deepcopy((s.balances, s.masters, s.shares, s.coins, s.created))
        try:
            value = int(tx["value"])
            if value:
                if s.balances[sender] < value:
                    raise _Revert("insufficient balance")
                s.balances[sender] -= value
                to = to_checksum_address(tx["to"])
                s.balances[to] = s.balances.get(to, 0) + value
            if tx["data"] != "0x":
                fn, args = json.loads(bytes.fromhex(tx["data"][2:]))
                events = self._call(sender, to_checksum_address(tx["to"]), fn, args)
            success = True
        except (_Revert, ValueError, KeyError, TypeError):
            s.balances, s.masters, s.shares, s.coins, s.created = backup
            events, success = [], False
        logs = tuple(ChainLog(address=a, event=e, args=args, block_number=number, block_hash=block_hash,
                              tx_hash=tx_hash, log_index=i, topic_count=tc)
                     for i, (a, e, args, tc) in enumerate(events))
        s.blocks.append(BlockRef(number, block_hash, s.blocks[-1].hash, s.blocks[-1].timestamp + 1))
        s.logs.extend(logs)
        s.receipts[tx_hash] = Receipt(tx_hash, success, number, block_hash, gas_used, logs)

    def _call(self, sender: str, to: str, fn: str, args: list[Any]) -> list[tuple[str, str, dict[str, Any], int]]:
        s = self._s
        if to == self.master_factory and fn == "createMaster":
            master_id, artist, uri = args
            if sender != self.platform_address:
                raise _Revert("OwnableUnauthorizedAccount")
            if master_id in s.masters:
                raise _Revert("MasterExists")
            s.created += 1
            shares, vault = _addr("shares", s.created), _addr("vault", s.created)
            s.masters[master_id] = MasterAddresses(shares, vault)
            s.shares[shares] = _Shares(master_id, to_checksum_address(artist), vault, uri)
            mid = _h("master", master_id)
            return [(shares, "MasterRegistered", {"masterId": mid, "artist": to_checksum_address(artist)}, 1),
                    (self.master_factory, "MasterCreated",
                     {"masterId": mid, "shares": shares, "vault": vault, "artist": to_checksum_address(artist)}, 2)]
        if to == self.coin_factory and fn == "createCoin":
            artist = to_checksum_address(args[0])
            if sender != self.platform_address:
                raise _Revert("OwnableUnauthorizedAccount")
            if artist in s.coins:
                raise _Revert("CoinExists")
            s.created += 1
            found = CoinAddresses(_addr("coin", s.created), _addr("staking", s.created), _addr("pool", s.created))
            s.coins[artist] = found
            return [(found.coin, "Transfer", {"from": ZERO, "to": artist, "value": int(args[3])}, 3),
                    (self.coin_factory, "CoinCreated", {"artist": artist, "coin": found.coin,
                                                        "staking": found.staking, "pool": found.pool}, 2)]
        share = s.shares.get(to)
        if share is None:
            raise _Revert("no code")
        if fn == "setMaxSupply":
            if sender != self.platform_address:
                raise _Revert("OwnableUnauthorizedAccount")
            if share.max_supply:
                raise _Revert("MaxSupplyAlreadySet")
            if int(args[0]) < 1:
                raise _Revert("InvalidMaxSupply")
            share.max_supply = int(args[0])
            return [(to, "MaxSupplySet", {"max": int(args[0])}, 1)]
        if fn == "batchMint":
            dest, count, op = to_checksum_address(args[0]), int(args[1]), args[2]
            if sender != self.platform_address:
                raise _Revert("OwnableUnauthorizedAccount")
            if op in share.ops:
                raise _Revert("OpAlreadyUsed")
            if not 1 <= count <= 250:
                raise _Revert("InvalidCount")
            if share.max_supply == 0 or share.minted + count > share.max_supply:
                raise _Revert("ExceedsMaxSupply")
            share.ops.add(op)
            first = share.minted + 1
            out = []
            for tid in range(first, first + count):
                share.owners[tid] = dest
                out.append((to, "Transfer", {"from": ZERO, "to": dest, "tokenId": tid}, 4))
            share.minted += count
            out.append((to, "BatchMinted", {"opId": "0x" + op, "to": dest, "firstId": first, "count": count}, 1))
            return out
        if fn == "batchTransfer":
            src, dest, ids = to_checksum_address(args[0]), to_checksum_address(args[1]), [int(i) for i in args[2]]
            if sender != src:
                raise _Revert("NotOwnerNorOperator")
            out = []
            for tid in ids:
                if share.owners.get(tid) != src:
                    raise _Revert("ERC721IncorrectOwner")
                share.owners[tid] = dest
                out.append((to, "Transfer", {"from": src, "to": dest, "tokenId": tid}, 4))
            return out
        raise _Revert(f"unknown function {fn}")

    # -------------------------------------------------------------------- test controls
    def snapshot(self) -> Any:
        return copy.deepcopy(self._s)

    def revert(self, snap: Any) -> None:
        """Return to ``snap``: later blocks vanish; new blocks get new hashes (a reorganisation)."""
        self._s = copy.deepcopy(snap)
        self._pending.clear()
        self._fork += 1

    def fund(self, address: str, wei: int) -> None:
        a = to_checksum_address(address)
        self._s.balances[a] = self._s.balances.get(a, 0) + wei

    def mine(self, count: int = 1) -> None:
        """Add empty blocks (confirmations)."""
        for _ in range(count):
            prev = self._s.blocks[-1]
            n = prev.number + 1
            self._s.blocks.append(BlockRef(n, _h("block", n, self._fork, "empty"), prev.hash, prev.timestamp + 1))
