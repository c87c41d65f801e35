"""Calldata encoding and log decoding for our contracts, straight from the shipped ABIs (eth_abi)."""

from __future__ import annotations

import functools
from typing import Any

import attrs
from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address

from audifi_core.chain.model import ChainLog

from .artifacts import load_artifact

__all__ = ["Function", "function", "decode_log", "TRANSFER_TOPIC", "CONTRACTS"]

CONTRACTS = ("MasterFactory", "MasterShares", "DividendVault", "CoinFactory", "ArtistCoin", "CoinStaking",
             "CoinPool")
TRANSFER_TOPIC = keccak(text="Transfer(address,address,uint256)")


def _type(param: dict[str, Any]) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(_type(c) for c in param["components"])
        return f"({inner}){t[5:]}"
    return t


@attrs.frozen
class Function:
    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def encode(self, *args: Any) -> str:
        return "0x" + (self.selector + encode(list(self.inputs), list(args))).hex()

    def decode_output(self, data: bytes) -> tuple[Any, ...]:
        return tuple(_norm(t, v) for t, v in zip(self.outputs, decode(list(self.outputs), data), strict=True))


@functools.cache
def function(contract: str, name: str) -> Function:
    """The (unique) function ``name`` of ``contract``'s ABI."""
    matches = [e for e in load_artifact(contract).abi if e.get("type") == "function" and e.get("name") == name]
    if len(matches) != 1:
        raise LookupError(f"{contract}.{name}: {len(matches)} ABI entries")
    e = matches[0]
    inputs = tuple(_type(p) for p in e["inputs"])
    outputs = tuple(_type(p) for p in e.get("outputs", []))
    return Function(name, keccak(text=f"{name}({','.join(inputs)})")[:4], inputs, outputs)


def _norm(t: str, v: Any) -> Any:
    if t == "address":
        return to_checksum_address(v)
    if t.startswith("bytes") and isinstance(v, bytes):
        return "0x" + v.hex()
    if t.endswith("[]") and isinstance(v, list | tuple):
        return [_norm(t[:-2], x) for x in v]
    return v


@attrs.frozen
class _Event:
    name: str
    indexed: tuple[tuple[str, str], ...]
    plain: tuple[tuple[str, str], ...]


@functools.cache
def _events() -> dict[tuple[bytes, int], _Event]:
    """(topic0, topic count) → event: ERC-721 and ERC-20 ``Transfer`` share topic0, not the count."""
    out: dict[tuple[bytes, int], _Event] = {}
    for contract in CONTRACTS:
        for e in load_artifact(contract).abi:
            if e.get("type") != "event" or e.get("anonymous"):
                continue
            types = [_type(p) for p in e["inputs"]]
            topic0 = keccak(text=f"{e['name']}({','.join(types)})")
            indexed = tuple((p["name"], _type(p)) for p in e["inputs"] if p.get("indexed"))
            plain = tuple((p["name"], _type(p)) for p in e["inputs"] if not p.get("indexed"))
            out.setdefault((topic0, 1 + len(indexed)), _Event(e["name"], indexed, plain))
    return out


def _hex(v: Any) -> str:
    if isinstance(v, bytes | bytearray):
        return "0x" + bytes(v).hex()
    s = str(v)
    return s if s.startswith("0x") else "0x" + s


def _bytes(v: Any) -> bytes:
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    s = str(v)
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def decode_log(raw: dict[str, Any]) -> ChainLog | None:
    """A node's log entry (web3 or JSON-RPC shape) decoded, or ``None`` when it is not one of ours."""
    topics = [_bytes(t) for t in raw["topics"]]
    if not topics:
        return None
    ev = _events().get((topics[0], len(topics)))
    if ev is None:
        return None
    args: dict[str, Any] = {}
    for (name, t), topic in zip(ev.indexed, topics[1:], strict=True):
        args[name] = _norm(t, decode([t], topic)[0]) if t in ("address", "bool") or t.startswith(("uint", "int")) \
            else "0x" + topic.hex()
    if ev.plain:
        values = decode([t for _, t in ev.plain], _bytes(raw["data"]))
        for (name, t), v in zip(ev.plain, values, strict=True):
            args[name] = _norm(t, v)

    def num(v: Any) -> int:
        return v if isinstance(v, int) else int(str(v), 16)

    return ChainLog(address=to_checksum_address(raw["address"]), event=ev.name, args=args,
                    block_number=num(raw["blockNumber"]), block_hash=_hex(raw["blockHash"]),
                    tx_hash=_hex(raw["transactionHash"]), log_index=num(raw["logIndex"]), topic_count=len(topics))
