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


def kdf(key: bytes | KeyedAes, constant: int, l_bits: int, context: bytes) -> bytes:
    """Amendment D 4.1.5 data derivation: for i = 1.. concatenate
    ``CMAC(key, 00*11 || constant || 00 || L[2] || i || context)`` and keep L bits.
    ``key`` may be a :class:`KeyedAes` already set up (a handshake derives several values
    from each of its keys)."""
    if l_bits <= 0 or l_bits % 8 or l_bits > 0xFFFF:
        raise KeyError_(f"derived length L = {l_bits} bits is not a positive byte multiple")
    mac = key.cmac if isinstance(key, KeyedAes) else lambda data: cmac(key, data)
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
        out += mac(block)
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
    ICVs) through one long-lived ECB context, CBC through one ``Cipher`` built once. The
    same ``cryptography`` primitives as :func:`cmac`, :func:`aes_ecb_block` and the CBC
    helpers, without a key schedule or an argument check per message; the results are
    identical. Each context is made when first needed (a key used only for CMAC never
    builds an ECB context).

    CBC runs under a zero IV with one block put in front: CBC chains each ciphertext block
    into the next, so enciphering ``block || data`` under IV 0 gives ``AES(block)``
    followed by ``data`` enciphered with IV ``AES(block)``, and deciphering ``iv ||
    data`` under IV 0 gives a throw-away block followed by ``data`` deciphered with IV
    ``iv``. That is CBC with any IV from one prebuilt ``Cipher``, and, for SCP03's
    ICV = AES(S-ENC, counter block), the ICV and the encipherment in one pass
    (:meth:`cbc_encrypt_icv`). Deciphering needs no fresh context at all: the throw-away
    block works whatever the context deciphered before (:meth:`cbc_decrypt`)."""

    __slots__ = ("_aes", "_cmac", "_ecb", "_cbc", "_dec")

    def __init__(self, key: bytes) -> None:
        self._aes = algorithms.AES(check_aes_key(key))
        self._cmac: CMAC | None = None
        self._ecb = None
        self._cbc: Cipher | None = None
        self._dec = None

    def __repr__(self) -> str:  # never print key bytes
        return "KeyedAes(...)"

    def cmac(self, data: bytes) -> bytes:
        base = self._cmac
        if base is None:
            base = self._cmac = CMAC(self._aes)
        c = base.copy()
        c.update(data)
        return c.finalize()

    def ecb_block(self, block: bytes) -> bytes:
        if len(block) != 16:
            raise ValueError(f"an AES block is 16 bytes, not {len(block)}")
        ecb = self._ecb
        if ecb is None:
            ecb = self._ecb = Cipher(self._aes, modes.ECB()).encryptor()
        return ecb.update(block)  # ECB: each block independent, context reusable

    def _zero_iv_cbc(self) -> Cipher:
        cbc = self._cbc
        if cbc is None:
            cbc = self._cbc = Cipher(self._aes, modes.CBC(bytes(16)))
        return cbc

    def cbc_encrypt(self, iv: bytes, data: bytes) -> bytes:
        enc = Cipher(self._aes, modes.CBC(iv)).encryptor()
        return enc.update(data) + enc.finalize()

    def cbc_encrypt_icv(self, block: bytes, data: bytes) -> bytes:
        """``data`` enciphered in CBC with IV = AES(key, ``block``) (see the class)."""
        return _behind(self._zero_iv_cbc().encryptor(), block, data, "an AES block")

    def cbc_decrypt(self, iv: bytes, data: bytes) -> bytes:
        """``data`` deciphered in CBC with ``iv``, through one decryption context kept for
        the key's life: CBC deciphers each block with the ciphertext block before it, so
        ``iv || data`` fed to a context in any state gives a throw-away block, then
        ``data`` deciphered under ``iv``. Only whole blocks go in (checked first), so the
        context never holds a partial block between messages."""
        if len(iv) != 16:
            raise ValueError(f"a CBC IV is 16 bytes, not {len(iv)}")
        if len(data) % 16:
            raise ValueError(f"CBC data of {len(data)} bytes is not a whole number of blocks")
        dec = self._dec
        if dec is None:
            dec = self._dec = self._zero_iv_cbc().decryptor()
        return dec.update(iv + data)[16:]


def _behind(ctx, lead: bytes, data: bytes, what: str) -> bytes:
    """``data`` through the zero-IV CBC context ``ctx`` behind the block ``lead``, which CBC
    chains into it (see :class:`KeyedAes`); the lead's own output block is dropped."""
    if len(lead) != 16:
        raise ValueError(f"{what} is 16 bytes, not {len(lead)}")
    out = ctx.update(lead + data)
    ctx.finalize()  # refuses data that is not a whole number of blocks
    return out[16:]


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
