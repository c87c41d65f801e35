"""EIP-191 signature recovery and HD custody keys (eth_account adapters)."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_checksum_address

from audifi_adapters.chain import custody as custody_module
from audifi_adapters.chain.custody import ACCOUNT_PATH, HdCustody
from audifi_adapters.chain.signatures import EthAccountSignatureVerifier
from audifi_core.auth.siwe import SiweMessage, parse_siwe_message
from audifi_core.errors import ValidationError

TEST_MNEMONIC = "test test test test test test test test test test test junk"
ADDRESS_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ADDRESS_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
KEY_0 = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
KEY_1 = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture(scope="module")
def custody() -> HdCustody:
    return HdCustody(TEST_MNEMONIC)


@pytest.fixture
def verifier() -> EthAccountSignatureVerifier:
    return EthAccountSignatureVerifier()


def sign(key: bytes, message: str) -> bytes:
    return bytes(Account.sign_message(encode_defunct(text=message), private_key=key).signature)


def assemble(r: int, s: int, v: int) -> str:
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


def signature_error(verifier: EthAccountSignatureVerifier, signature: object, message: str = "hi") -> str:
    with pytest.raises(ValidationError) as caught:
        verifier.recover_personal_sign(message, signature)  # type: ignore[arg-type]
    assert set(caught.value.fields) == {"signature"}
    assert caught.value.status == 400
    return caught.value.fields["signature"]


class TestRecoverPersonalSign:
    @pytest.mark.parametrize("message", ["hello", "", "multi\nline\n", "ünïcødé ✓", "x" * 5000])
    def test_recovers_the_signer(self, verifier, message):
        """A fresh key's personal_sign signature recovers to that key's address."""
        account = Account.create()
        signature = "0x" + sign(account.key, message).hex()
        assert verifier.recover_personal_sign(message, signature) == account.address

    def test_known_key_vector(self, verifier):
        """The public hardhat key 0 recovers to its well-known address, EIP-55 cased."""
        recovered = verifier.recover_personal_sign("AudiFi", "0x" + sign(KEY_0, "AudiFi").hex())
        assert recovered == ADDRESS_0
        assert is_checksum_address(recovered)

    def test_wrong_message_gives_another_address(self, verifier):
        """The same signature over a different message recovers to a different address."""
        signature = "0x" + sign(KEY_0, "pay 1 ETH").hex()
        assert verifier.recover_personal_sign("pay 2 ETH", signature) != ADDRESS_0

    def test_tampered_signature_gives_another_address(self, verifier):
        """Changing r recovers some other key (or fails), never the signer."""
        raw = bytearray(sign(KEY_0, "hello"))
        raw[5] ^= 0x01
        try:
            assert verifier.recover_personal_sign("hello", "0x" + raw.hex()) != ADDRESS_0
        except ValidationError as e:
            assert set(e.fields) == {"signature"}

    def test_v_zero_or_one_accepted(self, verifier):
        """v in {0, 1} (some hardware wallets) recovers the same address as 27/28."""
        raw = sign(KEY_1, "ledger")
        assert raw[64] in (27, 28)
        alt = raw[:64] + bytes([raw[64] - 27])
        assert verifier.recover_personal_sign("ledger", "0x" + alt.hex()) == ADDRESS_1

    @pytest.mark.parametrize("render", [lambda raw: raw.hex(), lambda raw: "0X" + raw.hex().upper()])
    def test_prefix_and_case_are_flexible(self, verifier, render):
        """Signatures without 0x, or in upper case, are accepted."""
        assert verifier.recover_personal_sign("hi", render(sign(KEY_1, "hi"))) == ADDRESS_1

    @pytest.mark.parametrize("signature", [None, 42, b"\x00" * 65])
    def test_not_a_string(self, verifier, signature):
        """A non-string signature is rejected."""
        assert "hex string" in signature_error(verifier, signature)

    @pytest.mark.parametrize("signature", ["", "0x", "0x" + "ab" * 64, "0x" + "ab" * 66, "0x" + "a" * 129])
    def test_wrong_length(self, verifier, signature):
        """Anything but 65 bytes is rejected."""
        assert "65 bytes" in signature_error(verifier, signature)

    @pytest.mark.parametrize("signature", ["0x" + "zz" * 65, "0x" + "ab" * 64 + "1g",
                                           "0x" + " 1" * 65, "0x" + "١" * 130])
    def test_not_hex(self, verifier, signature):
        """Non-hex characters are rejected."""
        assert "hexadecimal" in signature_error(verifier, signature)

    @pytest.mark.parametrize("v", [2, 26, 29, 35, 36, 255])
    def test_bad_v(self, verifier, v):
        """v outside 0/1/27/28 (including EIP-155 values) is rejected."""
        raw = sign(KEY_0, "hi")
        assert "v must be" in signature_error(verifier, "0x" + (raw[:64] + bytes([v])).hex())

    @pytest.mark.parametrize("r, s", [(0, 1), (1, 0), (SECP256K1_N, 1), (1, SECP256K1_N),
                                      (2**256 - 1, 1)])
    def test_r_s_out_of_range(self, verifier, r, s):
        """r or s of zero or at least n are rejected."""
        assert "between 1 and n-1" in signature_error(verifier, assemble(r, s, 27))

    def test_high_s_rejected(self, verifier):
        """The malleable high-s twin of a valid signature is rejected."""
        raw = sign(KEY_0, "hi")
        r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
        assert verifier.recover_personal_sign("hi", "0x" + raw.hex()) == ADDRESS_0
        twin = assemble(r, SECP256K1_N - s, 55 - v)
        assert "upper half" in signature_error(verifier, twin)

    def test_unrecoverable_signature(self, verifier):
        """An r that is no curve point's x recovers no key and is rejected."""
        assert "no public key" in signature_error(verifier, assemble(5, 1, 27))

    def test_message_must_be_text(self, verifier):
        """A non-str message is a validation error on the message field."""
        with pytest.raises(ValidationError) as caught:
            verifier.recover_personal_sign(b"hi", "0x" + sign(KEY_0, "hi").hex())  # type: ignore[arg-type]
        assert set(caught.value.fields) == {"message"}

    def test_siwe_message_round_trip(self, verifier, custody):
        """A SIWE text signed by custody key 1 recovers to the address the message names."""
        message = SiweMessage(domain="audifi.io", address=custody.address_for(1),
                              statement="Link this wallet to AudiFi", uri="https://audifi.io",
                              chain_id=8453, nonce="Zx81kQpL02aa",
                              issued_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
        text = message.to_text()
        signature = "0x" + sign(custody.private_key_for(1), text).hex()
        signer = verifier.recover_personal_sign(text, signature)
        assert signer == parse_siwe_message(text).address == ADDRESS_1


class TestHdCustody:
    def test_public_test_vectors(self, custody):
        """Indices 0 and 1 of the public test mnemonic give the well-known addresses and keys."""
        assert custody.address_for(0) == ADDRESS_0
        assert custody.address_for(1) == ADDRESS_1
        assert custody.private_key_for(0) == KEY_0
        assert custody.private_key_for(1) == KEY_1

    @pytest.mark.parametrize("index", [0, 1, 2, 17, 1000, 2**31 - 1])
    def test_key_and_address_agree(self, custody, index):
        """Each private key is 32 bytes and controls the address given for its index."""
        key = custody.private_key_for(index)
        assert isinstance(key, bytes) and len(key) == 32
        assert Account.from_key(key).address == custody.address_for(index)
        assert is_checksum_address(custody.address_for(index))

    def test_indices_are_distinct(self, custody):
        """Different indices derive different accounts."""
        assert len({custody.address_for(i) for i in range(20)}) == 20

    def test_path_is_bip44_ethereum(self):
        """The derivation path is m/44'/60'/0'/0/{index}."""
        assert ACCOUNT_PATH.format(index=7) == "m/44'/60'/0'/0/7"

    def test_passphrase_changes_the_wallet(self):
        """A BIP-39 passphrase yields a different wallet from the same words."""
        assert HdCustody(TEST_MNEMONIC, passphrase="x").address_for(0) != ADDRESS_0

    @pytest.mark.parametrize("index", [-1, 2**31, True, 1.0, "1", None])
    def test_bad_index(self, custody, index):
        """Indices that are not ints in 0..2**31-1 raise ValueError."""
        with pytest.raises(ValueError, match="custody index"):
            custody.address_for(index)
        with pytest.raises(ValueError, match="custody index"):
            custody.private_key_for(index)

    def test_derivation_is_cached(self, monkeypatch):
        """Each index is derived once, however often it is asked for."""
        calls: list[str] = []
        real = Account.from_mnemonic

        def counting(*args, **kwargs):
            calls.append(kwargs["account_path"])
            return real(*args, **kwargs)

        monkeypatch.setattr(custody_module.Account, "from_mnemonic", counting)
        c = HdCustody(TEST_MNEMONIC)
        for _ in range(5):
            assert c.address_for(1) == ADDRESS_1
            assert c.private_key_for(1) == KEY_1
            assert c.address_for(0) == ADDRESS_0
        assert sorted(calls) == ["m/44'/60'/0'/0/0", "m/44'/60'/0'/0/1"]

    def test_concurrent_use_derives_once(self, monkeypatch):
        """Many threads asking for the same indices agree and derive each index once."""
        calls: list[str] = []
        calls_lock = threading.Lock()
        real = Account.from_mnemonic

        def counting(*args, **kwargs):
            with calls_lock:
                calls.append(kwargs["account_path"])
            return real(*args, **kwargs)

        monkeypatch.setattr(custody_module.Account, "from_mnemonic", counting)
        c = HdCustody(TEST_MNEMONIC)
        indices = [i % 6 for i in range(120)]
        with ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(c.address_for, indices))
        expected = {i: Account.from_key(c.private_key_for(i)).address for i in range(6)}
        assert results == [expected[i] for i in indices]
        assert sorted(calls) == sorted(ACCOUNT_PATH.format(index=i) for i in range(6))

    def test_invalid_mnemonic(self):
        """A phrase with a bad checksum raises ValueError without quoting the words."""
        words = "test test test test test test test test test test test test"
        with pytest.raises(ValueError) as caught:
            HdCustody(words)
        assert "test test" not in str(caught.value)
        assert caught.value.__context__ is None and caught.value.__cause__ is None

    def test_non_string_mnemonic(self):
        """A non-string mnemonic raises ValueError."""
        with pytest.raises(ValueError):
            HdCustody(None)  # type: ignore[arg-type]

    def test_mnemonic_property(self, custody):
        """The mnemonic property returns the phrase the custody was built from."""
        assert custody.mnemonic == TEST_MNEMONIC

    def test_secret_hidden_from_repr_and_str(self, custody):
        """Neither repr nor str shows any of the mnemonic."""
        for text in (repr(custody), str(custody), f"{custody!r} {custody}"):
            assert "junk" not in text and "test" not in text
            assert "hidden" in text

    def test_cannot_be_pickled(self, custody):
        """Pickling (which would carry the secret) is refused."""
        with pytest.raises(TypeError):
            pickle.dumps(custody)

    def test_generate(self):
        """generate() gives a fresh, valid 24-word mnemonic, different each time, hidden from repr."""
        a, b = HdCustody.generate(), HdCustody.generate()
        words = a.mnemonic.split()
        assert len(words) == 24
        assert a.mnemonic != b.mnemonic
        assert a.address_for(0) != b.address_for(0)
        assert HdCustody(a.mnemonic).address_for(3) == a.address_for(3)
        assert repr(a) == str(a) == "HdCustody(mnemonic=<hidden>)"
        assert a.mnemonic not in repr(a)
