"""EIP-191 ``personal_sign`` signature recovery with eth_account (the SignatureVerifier port)."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature

from audifi_core.errors import ValidationError

__all__ = ["EthAccountSignatureVerifier"]

# Order of the secp256k1 group.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _bad(reason: str) -> ValidationError:
    return ValidationError("Invalid signature", fields={"signature": reason})


class EthAccountSignatureVerifier:
    """Recovers the signer of a ``personal_sign`` (EIP-191 version 0x45) text message.

    The signature is 65 bytes ``r || s || v`` in hex, with or without ``0x``. ``v`` may be 27/28 or
    0/1 (some hardware wallets); EIP-155-style ``v`` has no place in a message signature and is
    rejected. A high ``s`` (above n/2) is rejected as well, as OpenZeppelin's ECDSA does: every
    wallet emits the low-``s`` form, and refusing the other one keeps a signature unique.
    """

    def recover_personal_sign(self, message: str, signature: str) -> str:
        """The EIP-55 address whose key signed ``message``; ValidationError if malformed."""
        if not isinstance(message, str):
            raise ValidationError("Invalid message", fields={"message": "must be text"})
        raw = self._decode(signature)
        r = int.from_bytes(raw[:32], "big")
        s = int.from_bytes(raw[32:64], "big")
        v = raw[64]
        if v not in (0, 1, 27, 28):
            raise _bad("v must be 27 or 28 (or 0 or 1)")
        if not 0 < r < _SECP256K1_N or not 0 < s < _SECP256K1_N:
            raise _bad("r and s must be between 1 and n-1")
        if s > _SECP256K1_N // 2:
            raise _bad("s is in the upper half of the curve order (non-canonical)")
        try:
            return Account.recover_message(encode_defunct(text=message), signature=raw)
        except (BadSignature, ValueError) as exc:  # no public key recovers
            raise _bad("no public key recovers from this signature") from exc

    @staticmethod
    def _decode(signature: str) -> bytes:
        if not isinstance(signature, str):
            raise _bad("must be a hex string")
        digits = signature[2:] if signature[:2] in ("0x", "0X") else signature
        if len(digits) != 130:
            raise _bad("must be 65 bytes (130 hex digits)")
        if not set(digits) <= _HEX_DIGITS:
            raise _bad("must be hexadecimal")
        return bytes.fromhex(digits)
