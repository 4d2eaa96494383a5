"""SCP03 cryptographic building blocks over the ``cryptography`` package
(GlobalPlatform Card Spec Amendment D, clauses 4.1 and 6.2; NIST SP 800-108 counter KDF
with AES-CMAC as PRF; ISO/IEC 9797-1 padding method 2).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from protocols.gp.errors import KeyError_, Scp03PaddingError

AES_KEY_LENGTHS = (16, 24, 32)

#: Derivation constants (Amendment D Table 4-1).
DDC_CARD_CRYPTOGRAM = 0x00
DDC_HOST_CRYPTOGRAM = 0x01
DDC_CARD_CHALLENGE = 0x02
DDC_S_ENC = 0x04
DDC_S_MAC = 0x06
DDC_S_RMAC = 0x07


def check_aes_key(key: bytes, what: str = "key") -> bytes:
    if len(key) not in AES_KEY_LENGTHS:
        raise KeyError_(f"{what} is {len(key)} bytes; AES keys are 16, 24 or 32 bytes")
    return bytes(key)


def cmac(key: bytes, data: bytes) -> bytes:
    """Full 16-byte AES-CMAC (NIST SP 800-38B)."""
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def kdf(key: bytes, constant: int, l_bits: int, context: bytes) -> bytes:
    """Amendment D 4.1.5 data derivation: for i = 1.. concatenate
    ``CMAC(key, 00*11 || constant || 00 || L[2] || i || context)`` and keep L bits."""
    if l_bits <= 0 or l_bits % 8 or l_bits > 0xFFFF:
        raise KeyError_(f"derived length L = {l_bits} bits is not a positive byte multiple")
    out = b""
    i = 1
    while len(out) * 8 < l_bits:
        block = (
            b"\x00" * 11
            + bytes([constant])
            + b"\x00"
            + l_bits.to_bytes(2, "big")
            + bytes([i])
            + context
        )
        out += cmac(key, block)
        i += 1
    return out[: l_bits // 8]


def aes_ecb_block(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


class KeyedAes:
    """One AES key set up once for the many operations a secure channel session does with
    it: AES-CMAC by copying a keyed CMAC context, single ECB blocks (the C-DEC / R-ENC
    ICVs) through one long-lived ECB context, CBC with the key object reused. The same
    ``cryptography`` primitives as :func:`cmac`, :func:`aes_ecb_block` and the CBC
    helpers, without a key schedule per message; the results are identical."""

    __slots__ = ("_aes", "_cmac", "_ecb")

    def __init__(self, key: bytes) -> None:
        self._aes = algorithms.AES(check_aes_key(key))
        self._cmac = CMAC(self._aes)
        self._ecb = Cipher(self._aes, modes.ECB()).encryptor()

    def __repr__(self) -> str:  # never print key bytes
        return "KeyedAes(...)"

    def cmac(self, data: bytes) -> bytes:
        c = self._cmac.copy()
        c.update(data)
        return c.finalize()

    def ecb_block(self, block: bytes) -> bytes:
        if len(block) != 16:
            raise ValueError(f"an AES block is 16 bytes, not {len(block)}")
        return self._ecb.update(block)  # ECB: each block independent, context reusable

    def cbc_encrypt(self, iv: bytes, data: bytes) -> bytes:
        enc = Cipher(self._aes, modes.CBC(iv)).encryptor()
        return enc.update(data) + enc.finalize()

    def cbc_decrypt(self, iv: bytes, data: bytes) -> bytes:
        dec = Cipher(self._aes, modes.CBC(iv)).decryptor()
        return dec.update(data) + dec.finalize()


def pad80(data: bytes, block: int = 16) -> bytes:
    """ISO/IEC 9797-1 method 2: append 80 then 00s to a block multiple (always pads)."""
    n = len(data) + 1
    return data + b"\x80" + b"\x00" * (-n % block)


def unpad80(data: bytes, block: int = 16) -> bytes:
    """Strict inverse of :func:`pad80`: the padding is 80 00.. within the last block."""
    if not data or len(data) % block:
        raise Scp03PaddingError(f"{len(data)} deciphered bytes are not a non-empty multiple of {block}")
    i = len(data.rstrip(b"\x00")) - 1  # the last non-zero byte
    if i < 0 or data[i] != 0x80:
        raise Scp03PaddingError("deciphered data does not end in 80 00.. padding")
    if len(data) - i > block:
        raise Scp03PaddingError(f"padding of {len(data) - i} bytes is longer than one block")
    return data[:i]


def kcv(key: bytes) -> bytes:
    """Key check value of an AES key: first 3 bytes of AES-ECB(key, 16 x 01)
    (Amendment D 7.2.2)."""
    return aes_ecb_block(check_aes_key(key), b"\x01" * 16)[:3]
