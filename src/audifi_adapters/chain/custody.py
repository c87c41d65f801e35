"""Custodial keys derived from one BIP-39 mnemonic along BIP-44 m/44'/60'/0'/0/{index}."""

from __future__ import annotations

import threading

from eth_account import Account
from eth_account.hdaccount import Language, generate_mnemonic
from eth_utils import ValidationError as EthUtilsValidationError

__all__ = ["HdCustody", "ACCOUNT_PATH"]

#: BIP-44 path of custodial account ``index`` (coin type 60 = Ether, external chain 0).
ACCOUNT_PATH = "m/44'/60'/0'/0/{index}"
_MAX_INDEX = 2**31 - 1  # the last non-hardened child index


class HdCustody:
    """Derives (and caches) the key and EIP-55 address of each custodial account index.

    Thread-safe: derivation happens under a lock, so each index is derived once. The mnemonic and
    passphrase never appear in ``repr``/``str``. An invalid mnemonic raises ValueError at
    construction; an index outside 0..2**31-1 (or not an int) raises ValueError.
    """

    __slots__ = ("__mnemonic", "__passphrase", "_keys", "_lock")

    def __init__(self, mnemonic: str, passphrase: str = ""):
        Account.enable_unaudited_hdwallet_features()
        if not isinstance(mnemonic, str) or not isinstance(passphrase, str):
            raise ValueError("mnemonic and passphrase must be strings")
        self.__mnemonic = mnemonic
        self.__passphrase = passphrase
        self._keys: dict[int, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self._derive(0)  # validates the mnemonic now rather than at first use

    @classmethod
    def generate(cls) -> HdCustody:
        """A custody over a fresh, random 24-word English mnemonic."""
        return cls(generate_mnemonic(num_words=24, lang=Language.ENGLISH))

    @property
    def mnemonic(self) -> str:
        """The BIP-39 phrase: a secret, to be stored encrypted and never logged."""
        return self.__mnemonic

    def address_for(self, index: int) -> str:
        """The EIP-55 address of account ``index``."""
        return self._derive(index)[0]

    def private_key_for(self, index: int) -> bytes:
        """The 32-byte private key of account ``index``."""
        return self._derive(index)[1]

    def _derive(self, index: int) -> tuple[str, bytes]:
        if type(index) is not int or not 0 <= index <= _MAX_INDEX:
            raise ValueError(f"custody index must be an int from 0 to {_MAX_INDEX}")
        with self._lock:
            cached = self._keys.get(index)
            if cached is None:
                account = None
                try:
                    account = Account.from_mnemonic(self.__mnemonic, passphrase=self.__passphrase,
                                                    account_path=ACCOUNT_PATH.format(index=index))
                except EthUtilsValidationError:
                    pass  # raised below, outside this block: eth_utils' message quotes the words
                if account is None:
                    raise ValueError("not a valid BIP-39 mnemonic")
                cached = (account.address, bytes(account.key))
                self._keys[index] = cached
            return cached

    def __repr__(self) -> str:
        return "HdCustody(mnemonic=<hidden>)"

    __str__ = __repr__

    def __reduce__(self):  # keep the secret out of pickles, caches and task queues
        raise TypeError("HdCustody holds a secret and cannot be pickled")
