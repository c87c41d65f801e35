"""Chain benchmark: shares minted/transferred per second through chain jobs vs raw web3, same run.

    python bench/chain.py [--rounds 5] [--count 100] [--no-anvil]

For each backend (the in-process EVM; anvil from tests/chain/node when installed) it prints:
* raw web3: sign + ``eth_sendRawTransaction`` + receipt of ``batchMint(count)`` / ``batchTransfer(count ids)``;
* job: enqueue the domain call in a unit of work → the background runner signs, stores, broadcasts
  → the job is ``confirmed`` (what ``POST /masters/:id/mint`` costs end to end, without HTTP).
PERFORMANCE.md target: job ≤ 1.5× raw for ``mint 100`` on the in-process EVM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from audifi_adapters.chain.wiring import ChainServices, open_chain
from audifi_adapters.config import Config
from audifi_adapters.memory.store import InMemoryDatabase
from audifi_core.chain.model import (
    PLATFORM,
    DeployMaster,
    JobKind,
    JobStatus,
    MintShares,
    TransferShares,
)
from audifi_core.system import RandomIds, SystemClock

MNEMONIC = "test test test test test test test test test test test junk"
ANVIL = Path(__file__).resolve().parents[1] / "tests/chain/node/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
WALLET = "0x6813Eb9362372EEF6200f3b1dbC3f819671cBA69"


async def raw_send(s: ChainServices, tx: Any) -> float:
    """Sign and send one transaction with plain web3 calls; seconds until its receipt."""
    w3 = s.chain.w3  # type: ignore[attr-defined]
    key = s.chain._key(PLATFORM)  # type: ignore[attr-defined]
    sender = Account.from_key(key).address
    t0 = time.perf_counter()
    nonce = await w3.eth.get_transaction_count(sender, "pending")
    fees = await s.chain.fees()
    signed = Account.sign_transaction({"to": tx.to, "data": tx.data, "value": tx.value, "gas": tx.gas,
                                       "nonce": nonce, "chainId": s.chain.chain_id, "maxFeePerGas": fees.max_fee,
                                       "maxPriorityFeePerGas": fees.priority_fee}, key)
    h = await w3.eth.send_raw_transaction(signed.raw_transaction)
    r = await w3.eth.wait_for_transaction_receipt(h, timeout=60, poll_latency=0.002)
    assert r["status"] == 1
    return time.perf_counter() - t0


async def job_run(s: ChainServices, uow: Any, kind: JobKind, key: str, call: Any) -> float:
    t0 = time.perf_counter()
    async with uow() as u:
        job = await s.jobs.enqueue(u, kind, key, "usr_bench", call)
    while True:
        j = await s.jobs.load(job.id)
        if j.status is JobStatus.CONFIRMED:
            return time.perf_counter() - t0
        if j.status is JobStatus.FAILED:
            raise RuntimeError(f"job failed: {j.error}")
        await asyncio.sleep(0.002)


async def bench(name: str, config: Config, rounds: int, count: int) -> None:
    db = InMemoryDatabase()
    async with contextlib.AsyncExitStack() as stack:
        s = await open_chain(config, stack, uow=db.uow, database=db, clock=SystemClock(), ids=RandomIds(),
                             poll_interval=0.5)
        c, platform = s.chain, s.chain.address_of(PLATFORM)
        tag = RandomIds().new_id("b")
        await job_run(s, db.uow, JobKind.DEPLOY_MASTER, f"{tag}:m", DeployMaster(f"{tag}-m", WALLET, "ipfs://b",
                                                                                   10**6))
        shares = (await c.masters_of(f"{tag}-m")).shares
        raw_mint, job_mint, raw_xfer, job_xfer = [], [], [], []
        for i in range(rounds):
            raw_mint.append(await raw_send(s, c.mint_tx(shares, platform, count, f"{tag}:raw:{i}")))
            job_mint.append(await job_run(s, db.uow, JobKind.MINT, f"{tag}:job:{i}", MintShares(shares, platform,
                                                                                                count)))
        ids = list(range(1, 2 * rounds * count + 1))
        for i in range(rounds):
            a, b = ids[2 * i * count:(2 * i + 1) * count], ids[(2 * i + 1) * count:(2 * i + 2) * count]
            raw_xfer.append(await raw_send(s, c.transfer_tx(shares, platform, WALLET, tuple(a))))
            job_xfer.append(await job_run(s, db.uow, JobKind.TRANSFER, f"{tag}:x:{i}",
                                          TransferShares(shares, platform, WALLET, tuple(b))))
    med = statistics.median
    print(f"\n== {name} ({rounds} rounds, {count} shares per transaction; medians)")
    print(f"mint {count}:     raw web3 {med(raw_mint) * 1000:7.1f} ms ({count / med(raw_mint):7.0f} shares/s)   "
          f"job → confirmed {med(job_mint) * 1000:7.1f} ms ({count / med(job_mint):7.0f} shares/s)   "
          f"ratio {med(job_mint) / med(raw_mint):.2f}×")
    print(f"transfer {count}: raw web3 {med(raw_xfer) * 1000:7.1f} ms ({count / med(raw_xfer):7.0f} shares/s)   "
          f"job → confirmed {med(job_xfer) * 1000:7.1f} ms ({count / med(job_xfer):7.0f} shares/s)   "
          f"ratio {med(job_xfer) / med(raw_xfer):.2f}×")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--no-anvil", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = {"data_dir": Path(tmp), "custody_mnemonic": MNEMONIC}
        asyncio.run(bench("in-process EVM (eth-tester + py-evm)", Config.dev(**base), args.rounds, args.count))
        if args.no_anvil or not ANVIL.exists():
            print("\n(anvil not installed: `cd tests/chain/node && npm ci`)" if not args.no_anvil else "")
            return
        port = 18545
        proc = subprocess.Popen([str(ANVIL), "--port", str(port), "--silent", "--mnemonic", MNEMONIC],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            cfg = Config.dev(**base, rpc_url=f"http://127.0.0.1:{port}")
            asyncio.run(bench("anvil over HTTP (auto-mining)", cfg, args.rounds, args.count))
        finally:
            proc.terminate()
            proc.wait(5)


if __name__ == "__main__":
    main()
