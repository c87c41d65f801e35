"""MasterFactory, MasterShares and DividendVault on the in-process EVM."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.logs import DISCARD

from audifi_adapters.chain.artifacts import (
    ArtifactNotFound,
    available_artifacts,
    load_artifact,
)

if TYPE_CHECKING:  # the fixtures' class; conftest modules are not imported at run time
    from conftest import EvmChain

EXAMPLES = int(os.environ.get("AUDIFI_CONTRACT_EXAMPLES", "20"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

URI = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
MINT_GAS = 15_000_000

PLATFORM, ARTIST = 0, 1
USERS = (2, 3, 4, 5)
RECIPIENT = 9


def master_id(n: int) -> bytes:
    return keccak(text=f"master-{n}")


def logs(contract: Any, event: str, receipt: Any) -> list[Any]:
    """The decoded `event` logs that `contract` itself emitted in `receipt`."""
    decoded = getattr(contract.events, event)().process_receipt(receipt, errors=DISCARD)
    return [log for log in decoded if log.address == contract.address]


def op_id(label: str) -> bytes:
    return keccak(text=f"op-{label}")


@attrs.define
class Master:
    shares: Any
    vault: Any
    create_receipt: Any


@pytest.fixture(scope="module")
def master_factory(evm_module_chain: EvmChain) -> Any:
    return evm_module_chain.deploy("MasterFactory", gas=6_000_000)


def create_master(
    chain: EvmChain, factory: Any, n: int = 1, max_supply: int | None = 1_000
) -> Master:
    a = chain.accounts
    receipt = chain.send(
        factory.functions.createMaster(master_id(n), a[ARTIST], URI), a[PLATFORM], gas=1_000_000
    )
    shares_addr, vault_addr = factory.functions.mastersOf(master_id(n)).call()
    master = Master(
        chain.at("MasterShares", shares_addr), chain.at("DividendVault", vault_addr), receipt
    )
    if max_supply is not None:
        chain.send(master.shares.functions.setMaxSupply(max_supply), a[PLATFORM], gas=100_000)
    return master


@pytest.fixture
def master(evm_chain: EvmChain, master_factory: Any) -> Master:
    return create_master(evm_chain, master_factory)


def mint(chain: EvmChain, m: Master, to: str, count: int, label: str) -> tuple[int, Any]:
    fn = m.shares.functions.batchMint(to, count, op_id(label))
    first = fn.call({"from": chain.accounts[PLATFORM], "gas": MINT_GAS})
    receipt = chain.send(fn, chain.accounts[PLATFORM], gas=MINT_GAS)
    return first, receipt


# --- artifacts -------------------------------------------------------------------------------


def test_artifacts_ship_every_contract() -> None:
    names = {
        "MasterFactory",
        "MasterShares",
        "DividendVault",
        "CoinFactory",
        "ArtistCoin",
        "CoinStaking",
        "CoinPool",
    }
    assert names <= set(available_artifacts())
    for name in names:
        artifact = load_artifact(name)
        assert artifact.name == name
        assert artifact.bytecode.startswith("0x") and len(artifact.bytecode) > 2
        assert artifact.deployed_bytecode.startswith("0x")
        assert len(artifact.deployed_bytecode) // 2 - 1 <= 24_576  # EIP-170
        assert isinstance(artifact.abi, list) and artifact.abi
    assert load_artifact("MasterFactory") is load_artifact("MasterFactory")  # cached


def test_unknown_artifact_raises() -> None:
    with pytest.raises(ArtifactNotFound):
        load_artifact("NoSuchContract")
    with pytest.raises(ArtifactNotFound):
        load_artifact("../MasterFactory")


# --- MasterFactory ---------------------------------------------------------------------------


def test_create_master_deploys_and_registers(evm_chain: EvmChain, master_factory: Any) -> None:
    a = evm_chain.accounts
    predicted = master_factory.functions.predictMaster(master_id(7)).call()
    m = create_master(evm_chain, master_factory, 7, max_supply=None)
    print(f"\ncreateMaster gas used: {m.create_receipt.gasUsed}")
    assert m.create_receipt.gasUsed < 600_000
    assert [m.shares.address, m.vault.address] == list(predicted)

    (created,) = logs(master_factory, "MasterCreated", m.create_receipt)
    assert created.args.masterId == master_id(7)
    assert (created.args.shares, created.args.vault, created.args.artist) == (
        m.shares.address,
        m.vault.address,
        a[ARTIST],
    )
    (registered,) = logs(m.shares, "MasterRegistered", m.create_receipt)
    assert registered.args.masterId == master_id(7) and registered.args.artist == a[ARTIST]

    s = m.shares.functions
    assert s.name().call() == "AudiFi Master Share"
    assert s.symbol().call() == "AFS"
    assert s.owner().call() == a[PLATFORM]
    assert s.masterId().call() == master_id(7)
    assert s.artist().call() == a[ARTIST]
    assert s.vault().call() == m.vault.address
    assert s.maxSupply().call() == 0 and s.totalMinted().call() == 0
    assert s.supportsInterface(bytes.fromhex("80ac58cd")).call()  # ERC-721
    assert m.vault.functions.shares().call() == m.shares.address
    assert m.vault.functions.masterId().call() == master_id(7)
    assert (
        master_factory.functions.mastersOf(master_id(8)).call()
        == [
            "0x0000000000000000000000000000000000000000",
        ]
        * 2
    )


def test_create_master_twice_reverts(
    evm_chain: EvmChain, master_factory: Any, master: Master
) -> None:
    a = evm_chain.accounts
    evm_chain.expect_revert(
        master_factory.functions.createMaster(master_id(1), a[ARTIST], URI),
        a[PLATFORM],
        "MasterExists(bytes32)",
    )
    assert master_factory.functions.mastersOf(master_id(1)).call()[0] == master.shares.address


def test_create_master_only_owner(evm_chain: EvmChain, master_factory: Any) -> None:
    a = evm_chain.accounts
    evm_chain.expect_revert(
        master_factory.functions.createMaster(master_id(2), a[ARTIST], URI),
        a[ARTIST],
        "OwnableUnauthorizedAccount(address)",
    )
    assert master_factory.functions.mastersOf(master_id(2)).call()[0] == "0x" + "00" * 20


def test_clones_and_implementations_cannot_be_reinitialised(
    evm_chain: EvmChain, master_factory: Any, master: Master
) -> None:
    a = evm_chain.accounts
    attacker = a[USERS[0]]
    shares_impl = evm_chain.at(
        "MasterShares", master_factory.functions.sharesImplementation().call()
    )
    vault_impl = evm_chain.at(
        "DividendVault", master_factory.functions.vaultImplementation().call()
    )
    for shares in (master.shares, shares_impl):
        evm_chain.expect_revert(
            shares.functions.initialize(master_id(9), attacker, attacker, attacker, "x"),
            attacker,
            "AlreadyInitialized()",
        )
    for vault in (master.vault, vault_impl):
        evm_chain.expect_revert(
            vault.functions.initialize(attacker, master_id(9)), attacker, "AlreadyInitialized()"
        )
    assert master.shares.functions.owner().call() == a[PLATFORM]
    assert master.vault.functions.shares().call() == master.shares.address


# --- MasterShares ----------------------------------------------------------------------------


def test_max_supply_set_once(evm_chain: EvmChain, master_factory: Any) -> None:
    a = evm_chain.accounts
    m = create_master(evm_chain, master_factory, 3, max_supply=None)
    s = m.shares.functions
    evm_chain.expect_revert(
        s.batchMint(a[USERS[0]], 1, op_id("early")),
        a[PLATFORM],
        "ExceedsMaxSupply(uint256,uint256,uint256)",
    )
    evm_chain.expect_revert(s.setMaxSupply(0), a[PLATFORM], "InvalidMaxSupply()")
    evm_chain.expect_revert(s.setMaxSupply(10), a[ARTIST], "OwnableUnauthorizedAccount(address)")
    evm_chain.send(s.setMaxSupply(10), a[PLATFORM], gas=100_000)
    evm_chain.expect_revert(s.setMaxSupply(20), a[PLATFORM], "MaxSupplyAlreadySet()")
    assert s.maxSupply().call() == 10
    mint(evm_chain, m, a[USERS[0]], 10, "all")
    evm_chain.expect_revert(
        s.batchMint(a[USERS[0]], 1, op_id("more")),
        a[PLATFORM],
        "ExceedsMaxSupply(uint256,uint256,uint256)",
    )
    assert s.totalMinted().call() == 10


def test_batch_mint_sequential_ids_events_and_uri(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    s = master.shares.functions
    first, receipt = mint(evm_chain, master, a[USERS[0]], 3, "one")
    assert first == 1
    transfers = logs(master.shares, "Transfer", receipt)
    assert [(t.args["from"], t.args.to, t.args.tokenId) for t in transfers] == [
        ("0x" + "00" * 20, a[USERS[0]], i) for i in (1, 2, 3)
    ]
    first, _ = mint(evm_chain, master, a[USERS[1]], 2, "two")
    assert first == 4
    assert s.totalMinted().call() == 5
    assert [s.ownerOf(i).call() for i in range(1, 6)] == [a[USERS[0]]] * 3 + [a[USERS[1]]] * 2
    assert s.balanceOf(a[USERS[0]]).call() == 3
    assert s.tokenURI(5).call() == URI
    with pytest.raises(Exception, match="reverted"):
        s.tokenURI(6).call()
    with pytest.raises(Exception, match="reverted"):
        s.tokenURI(0).call()


def test_batch_mint_count_bounds(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    s = master.shares.functions
    evm_chain.expect_revert(
        s.batchMint(a[USERS[0]], 0, op_id("zero")), a[PLATFORM], "InvalidCount(uint256)"
    )
    evm_chain.expect_revert(
        s.batchMint(a[USERS[0]], 251, op_id("big")), a[PLATFORM], "InvalidCount(uint256)"
    )
    evm_chain.expect_revert(
        s.batchMint("0x" + "00" * 20, 1, op_id("nobody")),
        a[PLATFORM],
        "ERC721InvalidReceiver(address)",
    )
    assert s.totalMinted().call() == 0
    # a failed mint does not burn its opId
    mint(evm_chain, master, a[USERS[0]], 1, "zero")
    assert s.totalMinted().call() == 1


def test_batch_mint_gas(evm_chain: EvmChain, master_factory: Any) -> None:
    a = evm_chain.accounts
    m = create_master(evm_chain, master_factory, 4, max_supply=10_000)
    _, r100 = mint(evm_chain, m, a[USERS[0]], 100, "g100")
    _, r250 = mint(evm_chain, m, a[USERS[1]], 250, "g250")
    _, r250b = mint(evm_chain, m, a[USERS[0]], 250, "g250b")
    print(
        f"\ncreateMaster gas {m.create_receipt.gasUsed}; batchMint(100) gas {r100.gasUsed}; "
        f"batchMint(250) gas {r250.gasUsed} (new holder) / {r250b.gasUsed} (existing holder)"
    )
    assert r250.gasUsed < MINT_GAS and r250b.gasUsed < MINT_GAS
    assert r100.gasUsed < r250.gasUsed
    assert m.shares.functions.totalMinted().call() == 600
    assert m.shares.functions.balanceOf(a[USERS[0]]).call() == 350


@PROPERTY
@given(sender=st.sampled_from([PLATFORM, ARTIST, *USERS, RECIPIENT]), count=st.integers(1, 20))
def test_only_owner_mints(
    evm_chain: EvmChain, master_factory: Any, sender: int, count: int
) -> None:
    a = evm_chain.accounts
    with evm_chain.snapshot():
        m = create_master(evm_chain, master_factory, 5)
        fn = m.shares.functions.batchMint(a[USERS[0]], count, op_id(f"prop-{count}"))
        if sender == PLATFORM:
            evm_chain.send(fn, a[sender], gas=MINT_GAS)
            assert m.shares.functions.totalMinted().call() == count
            assert m.shares.functions.balanceOf(a[USERS[0]]).call() == count
        else:
            evm_chain.expect_revert(
                fn, a[sender], "OwnableUnauthorizedAccount(address)", gas=MINT_GAS
            )
            assert m.shares.functions.totalMinted().call() == 0


@PROPERTY
@given(
    labels=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=8),
    counts=st.lists(st.integers(1, 5), min_size=8, max_size=8),
)
def test_op_id_replay_reverts(
    evm_chain: EvmChain, master_factory: Any, labels: list[str], counts: list[int]
) -> None:
    a = evm_chain.accounts
    with evm_chain.snapshot():
        m = create_master(evm_chain, master_factory, 6)
        s = m.shares.functions
        seen: set[str] = set()
        minted = 0
        for label, count in zip(labels, counts, strict=False):
            fn = s.batchMint(a[USERS[0]], count, op_id(label))
            if label in seen:
                data = evm_chain.expect_revert(
                    fn, a[PLATFORM], "OpAlreadyUsed(bytes32)", gas=MINT_GAS
                )
                assert data[4:] == op_id(label)
            else:
                evm_chain.send(fn, a[PLATFORM], gas=MINT_GAS)
                seen.add(label)
                minted += count
                assert s.opUsed(op_id(label)).call()
            assert s.totalMinted().call() == minted
        assert s.balanceOf(a[USERS[0]]).call() == minted


def test_batch_transfer_by_holder_and_operator(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    holder, other, operator = a[USERS[0]], a[USERS[1]], a[USERS[2]]
    s = master.shares.functions
    mint(evm_chain, master, holder, 6, "m")
    receipt = evm_chain.send(s.batchTransfer(holder, other, [1, 3]), holder, gas=300_000)
    assert len(logs(master.shares, "Transfer", receipt)) == 2
    evm_chain.send(s.setApprovalForAll(operator, True), holder, gas=100_000)
    evm_chain.send(s.batchTransfer(holder, other, [2, 6]), operator, gas=300_000)
    assert [s.ownerOf(i).call() for i in range(1, 7)] == [
        other,
        other,
        other,
        holder,
        holder,
        other,
    ]
    # each id must be owned by `from`
    evm_chain.expect_revert(
        s.batchTransfer(holder, other, [4, 1]),
        holder,
        "ERC721IncorrectOwner(address,uint256,address)",
    )
    evm_chain.expect_revert(
        s.batchTransfer(holder, "0x" + "00" * 20, [4]), holder, "ERC721InvalidReceiver(address)"
    )
    assert s.ownerOf(4).call() == holder


@PROPERTY
@given(
    caller=st.sampled_from([PLATFORM, ARTIST, USERS[1], USERS[2], RECIPIENT]),
    ids=st.lists(st.integers(1, 5), min_size=1, max_size=5),
    token_approved=st.booleans(),
)
def test_batch_transfer_by_non_operator_reverts(
    evm_chain: EvmChain, master_factory: Any, caller: int, ids: list[int], token_approved: bool
) -> None:
    a = evm_chain.accounts
    holder = a[USERS[0]]
    with evm_chain.snapshot():
        m = create_master(evm_chain, master_factory, 10)
        s = m.shares.functions
        mint(evm_chain, m, holder, 5, "m")
        if token_approved:  # a per-token approval is not enough for batchTransfer
            evm_chain.send(s.approve(a[caller], ids[0]), holder, gas=100_000)
        evm_chain.expect_revert(
            s.batchTransfer(holder, a[caller], ids),
            a[caller],
            "NotOwnerNorOperator(address,address)",
            gas=500_000,
        )
        assert all(s.ownerOf(i).call() == holder for i in range(1, 6))


# --- DividendVault ---------------------------------------------------------------------------


def test_deposit_with_zero_supply_reverts(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    v = master.vault.functions
    evm_chain.expect_revert(v.deposit(), a[ARTIST], "NoSharesMinted()", value=10**18)
    evm_chain.expect_revert(v.deposit(), a[ARTIST], "NoSharesMinted()", value=1)
    assert v.totalDeposited().call() == 0
    assert evm_chain.balance(master.vault.address) == 0
    mint(evm_chain, master, a[USERS[0]], 1, "m")
    evm_chain.expect_revert(v.deposit(), a[ARTIST], "ZeroDeposit()", value=0)
    evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=10**18)
    assert v.totalDeposited().call() == 10**18


def test_deposit_claim_and_late_minted_token(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    v = master.vault.functions
    u0, u1, to = a[USERS[0]], a[USERS[1]], a[RECIPIENT]
    mint(evm_chain, master, u0, 4, "first")  # ids 1..4
    receipt = evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=1_000)
    (dep,) = logs(master.vault, "DividendDeposited", receipt)
    assert dep.args.masterId == master_id(1) and dep.args.amount == 1_000
    mint(evm_chain, master, u1, 2, "late")  # ids 5..6 start at the current cumulative
    assert v.claimable([5, 6]).call() == 0
    evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=600)
    assert v.cumulativePerShare().call() == 250 + 100
    assert [v.claimableOf(i).call() for i in range(1, 7)] == [350] * 4 + [100] * 2
    assert v.claimable([1, 2, 3, 4, 5, 6]).call() == 1_600

    before = evm_chain.balance(to)
    receipt = evm_chain.send(v.claim([1, 2], to), u0, gas=300_000)
    (claimed,) = logs(master.vault, "DividendClaimed", receipt)
    assert (claimed.args.to, claimed.args.amount, claimed.args.ids) == (to, 700, [1, 2])
    assert evm_chain.balance(to) - before == 700
    assert v.claimable([1, 2]).call() == 0
    assert v.totalClaimed().call() == 700
    assert evm_chain.balance(master.vault.address) == 1_600 - 700


def test_claim_with_duplicate_ids_pays_once(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    v = master.vault.functions
    mint(evm_chain, master, a[USERS[0]], 3, "m")
    evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=3 * 10**15)
    assert v.claimable([2, 2, 2, 3, 2]).call() == 2 * 10**15
    before = evm_chain.balance(a[RECIPIENT])
    receipt = evm_chain.send(v.claim([2, 2, 3, 2, 3], a[RECIPIENT]), a[USERS[0]], gas=300_000)
    (claimed,) = logs(master.vault, "DividendClaimed", receipt)
    assert claimed.args.amount == 2 * 10**15
    assert evm_chain.balance(a[RECIPIENT]) - before == 2 * 10**15
    assert v.claimable([1, 2, 3]).call() == 10**15
    # claiming again pays nothing more
    evm_chain.send(v.claim([2, 3], a[RECIPIENT]), a[USERS[0]], gas=300_000)
    assert evm_chain.balance(a[RECIPIENT]) - before == 2 * 10**15
    assert v.totalClaimed().call() == 2 * 10**15


def test_claim_requires_owner_or_operator(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    v = master.vault.functions
    holder, other, operator = a[USERS[0]], a[USERS[1]], a[USERS[2]]
    mint(evm_chain, master, holder, 2, "m")
    mint(evm_chain, master, other, 1, "o")
    evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=300)
    evm_chain.expect_revert(v.claim([1, 3], holder), holder, "NotOwnerNorOperator(uint256,address)")
    evm_chain.expect_revert(
        v.claim([1], a[PLATFORM]), a[PLATFORM], "NotOwnerNorOperator(uint256,address)"
    )
    evm_chain.expect_revert(v.claim([9], holder), holder, "ERC721NonexistentToken(uint256)")
    evm_chain.expect_revert(v.claim([1], "0x" + "00" * 20), holder, "ZeroAddress()")
    assert v.totalClaimed().call() == 0
    evm_chain.send(master.shares.functions.setApprovalForAll(operator, True), holder, gas=100_000)
    before = evm_chain.balance(a[RECIPIENT])
    evm_chain.send(v.claim([1, 2], a[RECIPIENT]), operator, gas=300_000)
    assert evm_chain.balance(a[RECIPIENT]) - before == 200


def test_unclaimed_dividends_travel_with_the_token(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    v = master.vault.functions
    seller, buyer = a[USERS[0]], a[USERS[1]]
    mint(evm_chain, master, seller, 2, "m")
    evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=2_000)
    evm_chain.send(v.claim([2], seller), seller, gas=300_000)
    evm_chain.send(
        master.shares.functions.batchTransfer(seller, buyer, [1, 2]), seller, gas=300_000
    )
    evm_chain.expect_revert(v.claim([1], seller), seller, "NotOwnerNorOperator(uint256,address)")
    assert v.claimable([1, 2]).call() == 1_000  # id 1's unclaimed share moved to the buyer
    before = evm_chain.balance(a[RECIPIENT])
    evm_chain.send(v.claim([1, 2], a[RECIPIENT]), buyer, gas=300_000)
    assert evm_chain.balance(a[RECIPIENT]) - before == 1_000


def test_rounding_dust_is_tracked_and_carried(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    v = master.vault.functions
    mint(evm_chain, master, a[USERS[0]], 3, "m")
    evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=10)  # 3 each, 1 wei dust
    assert (v.cumulativePerShare().call(), v.dust().call()) == (3, 1)
    evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=2)  # 2 + 1 dust = 1 each
    assert (v.cumulativePerShare().call(), v.dust().call()) == (4, 0)
    evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=1)  # below the supply: all dust
    assert (v.cumulativePerShare().call(), v.dust().call()) == (4, 1)
    assert v.totalDeposited().call() == 13 == v.claimable([1, 2, 3]).call() + v.dust().call()
    assert v.checkpointCount().call() == 1


def test_plain_eth_transfer_is_a_deposit(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    mint(evm_chain, master, a[USERS[0]], 2, "m")
    tx = evm_chain.w3.eth.send_transaction(
        {"from": a[ARTIST], "to": master.vault.address, "value": 500, "gas": 200_000}
    )
    receipt = evm_chain.w3.eth.get_transaction_receipt(tx)
    assert receipt.status == 1
    assert logs(master.vault, "DividendDeposited", receipt)[0].args.amount == 500
    assert master.vault.functions.claimable([1, 2]).call() == 500


# Hand-assembled helper contracts (no test-only Solidity in the shipped artifacts).


def deploy_reentrant_claimer(chain: EvmChain, vault: str, claim_calldata: bytes) -> str:
    """Any call makes it call `vault` with `claim_calldata`, its own address patched in as `to`.
    Called by an EOA (no value) it bubbles a failure up; paid by the vault (value > 0) it
    re-enters, records `1 + success` of the re-entrant call in storage slot 0, and accepts."""
    size = len(claim_calldata).to_bytes(2, "big")
    # fmt: off
    code: list[Any] = [
        0x61, size, ("push2", "data"), 0x60, 0, 0x39,  # CODECOPY(0, data, size)
        0x30, 0x60, 36, 0x52,  # MSTORE(36, ADDRESS): claim(ids, to = this)
        0x60, 0, 0x60, 0, 0x61, size, 0x60, 0, 0x60, 0,  # ret 0,0; args 0,size; value 0
        0x73, bytes.fromhex(vault[2:]), 0x5A, 0xF1,  # PUSH20 vault, GAS, CALL -> success
        0x34, 0x15, ("push2", "kick"), 0x57,  # CALLVALUE ISZERO -> kick
        0x60, 1, 0x01, 0x60, 0, 0x55, 0x00,  # paid by the vault: slot0 = success + 1; STOP
        ("label", "kick"), 0x5B, ("push2", "ok"), 0x57,  # called by an EOA: success -> ok
        0x3D, 0x60, 0, 0x60, 0, 0x3E, 0x3D, 0x60, 0, 0xFD,  # bubble the revert
        ("label", "ok"), 0x5B, 0x00,
        ("label", "data"), claim_calldata,
    ]
    # fmt: on
    return chain.deploy_runtime(chain.assemble(code))


def test_claim_is_non_reentrant(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    v = master.vault
    w3 = evm_chain.w3
    mint(evm_chain, master, a[USERS[0]], 2, "m")
    evm_chain.send(v.functions.deposit(), a[ARTIST], gas=200_000, value=10**6)
    calldata = bytes.fromhex(v.encode_abi("claim", args=[[1], "0x" + "00" * 20])[2:])
    attacker = deploy_reentrant_claimer(evm_chain, v.address, calldata)
    # the attacker contract owns share 1 and claims it to itself
    evm_chain.send(
        master.shares.functions.batchTransfer(a[USERS[0]], attacker, [1]), a[USERS[0]], gas=200_000
    )
    assert master.shares.functions.ownerOf(1).call() == attacker

    tx = w3.eth.send_transaction({"from": a[USERS[1]], "to": attacker, "gas": 500_000})
    assert w3.eth.get_transaction_receipt(tx).status == 1
    # the vault paid once, and the re-entrant claim failed (slot 0 == 1 + success == 1)
    assert evm_chain.balance(attacker) == 5 * 10**5
    assert int.from_bytes(w3.eth.get_storage_at(attacker, 0), "big") == 1
    assert v.functions.totalClaimed().call() == 5 * 10**5
    assert v.functions.claimable([1, 2]).call() == 5 * 10**5


def test_failed_payment_reverts_the_claim(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    v = master.vault.functions
    rejecter = evm_chain.deploy_runtime(bytes([0x60, 0, 0x60, 0, 0xFD]))  # always REVERT
    mint(evm_chain, master, a[USERS[0]], 1, "m")
    evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=777)
    evm_chain.expect_revert(v.claim([1], rejecter), a[USERS[0]], "PaymentFailed()")
    assert v.claimableOf(1).call() == 777 and v.totalClaimed().call() == 0


# --- the accounting property -----------------------------------------------------------------

Mint = st.tuples(st.just("mint"), st.sampled_from(USERS), st.integers(1, 6))
Deposit = st.tuples(
    st.just("deposit"), st.integers(1, 10**6), st.sampled_from([1, 7, 10**3, 10**12])
)
Transfer = st.tuples(
    st.just("transfer"), st.sampled_from(USERS), st.sampled_from(USERS), st.integers(0, 2**16)
)
Claim = st.tuples(st.just("claim"), st.sampled_from(USERS), st.integers(0, 2**16), st.booleans())


@PROPERTY
@given(ops=st.lists(st.one_of(Mint, Deposit, Transfer, Claim), min_size=3, max_size=20))
def test_dividend_accounting_conserves_every_wei(
    evm_chain: EvmChain, master_factory: Any, ops: list[tuple[Any, ...]]
) -> None:
    """paid + claimable + dust == deposits after every step, and each token's claimable matches an
    exact reference model (per-token entitlement from its mint on, dust carried forward)."""
    a = evm_chain.accounts
    with evm_chain.snapshot():
        m = create_master(evm_chain, master_factory, 11)
        v, s = m.vault.functions, m.shares.functions
        owner_of: dict[int, str] = {}
        owed: dict[int, int] = {}  # reference model
        dust = deposited = paid = 0
        received = evm_chain.balance(a[RECIPIENT])
        for step, op in enumerate(ops):
            kind = op[0]
            if kind == "mint":
                _, user, count = op
                first, _ = mint(evm_chain, m, a[user], count, f"p{step}")
                for i in range(first, first + count):
                    owner_of[i], owed[i] = a[user], 0
            elif kind == "deposit":
                _, base, scale = op
                amount = base * scale
                supply = len(owner_of)
                if supply == 0:
                    evm_chain.expect_revert(
                        v.deposit(), a[ARTIST], "NoSharesMinted()", value=amount
                    )
                    continue
                evm_chain.send(v.deposit(), a[ARTIST], gas=300_000, value=amount)
                per_share, dust = divmod(amount + dust, supply)
                for i in owed:
                    owed[i] += per_share
                deposited += amount
            elif kind == "transfer":
                _, src, dst, pick = op
                mine = sorted(i for i, o in owner_of.items() if o == a[src])
                if not mine:
                    continue
                ids = [mine[(pick + k) % len(mine)] for k in range(1 + pick % 3)]
                ids = list(dict.fromkeys(ids))
                evm_chain.send(s.batchTransfer(a[src], a[dst], ids), a[src], gas=500_000)
                for i in ids:
                    owner_of[i] = a[dst]
            else:
                _, user, pick, dup = op
                mine = sorted(i for i, o in owner_of.items() if o == a[user])
                if not mine:
                    continue
                ids = [mine[(pick + k) % len(mine)] for k in range(1 + pick % 4)]
                if dup:
                    ids = ids + ids[:1]
                evm_chain.send(v.claim(ids, a[RECIPIENT]), a[user], gas=1_000_000)
                for i in set(ids):
                    paid += owed[i]
                    owed[i] = 0
            all_ids = sorted(owner_of)
            claimable = v.claimable(all_ids).call() if all_ids else 0
            assert claimable == sum(owed.values())
            assert v.dust().call() == dust
            assert v.totalDeposited().call() == deposited
            assert v.totalClaimed().call() == paid
            assert paid + claimable + dust == deposited
            assert evm_chain.balance(m.vault.address) == deposited - paid
        assert evm_chain.balance(a[RECIPIENT]) - received == paid
        assert {i: v.claimableOf(i).call() for i in owed} == owed


def test_claim_of_250_shares_gas(evm_chain: EvmChain, master_factory: Any) -> None:
    a = evm_chain.accounts
    m = create_master(evm_chain, master_factory, 12, max_supply=10_000)
    v = m.vault.functions
    holder = a[USERS[0]]
    # 20 supply checkpoints before the holder's 250 shares, and deposits after
    for k in range(20):
        mint(evm_chain, m, a[USERS[1]], 1, f"pre{k}")
        evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=10**15)
    first, _ = mint(evm_chain, m, holder, 250, "big")
    for _ in range(3):
        evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=10**18)
    ids = list(range(first, first + 250))
    dust = 0
    for supply in range(1, 21):
        _, dust = divmod(10**15 + dust, supply)
    per_share = 0
    for _ in range(3):
        share, dust = divmod(10**18 + dust, 270)
        per_share += share
    owed = v.claimable(ids).call({"gas": 30_000_000})
    assert owed == 250 * per_share
    assert v.dust().call() == dust
    receipt = evm_chain.send(v.claim(ids, a[RECIPIENT]), holder, gas=MINT_GAS)
    print(f"\nclaim(250 ids, {v.checkpointCount().call()} checkpoints) gas {receipt.gasUsed}")
    assert receipt.gasUsed < 10_000_000
    assert logs(m.vault, "DividendClaimed", receipt)[0].args.amount == owed
    assert v.claimable(ids).call({"gas": 30_000_000}) == 0


def test_checkpoints_follow_distinct_supplies(evm_chain: EvmChain, master: Master) -> None:
    a = evm_chain.accounts
    v = master.vault.functions
    for batch, count in enumerate([3, 2, 5]):
        mint(evm_chain, master, a[USERS[0]], count, f"b{batch}")
        for _ in range(2):
            evm_chain.send(v.deposit(), a[ARTIST], gas=200_000, value=10**9)
    assert v.checkpointCount().call() == 3
    assert [v.checkpointAt(i).call()[0] for i in range(3)] == [3, 5, 10]
    starts = [v.entitlementStart(i).call() for i in (1, 3, 4, 5, 6, 10, 11)]
    c = [0, 2 * 10**9 // 3]
    c.append(c[1] + 2 * (10**9 // 5))
    assert starts[:6] == [c[0], c[0], c[1], c[1], c[2], c[2]]
    assert starts[6] == v.cumulativePerShare().call()
    assert to_checksum_address(master.shares.address) == v.shares().call()
