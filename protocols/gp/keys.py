"""Key management data: PUT KEY key data fields (GPCS 2.3.1 11.8.2.3 Table 11-71 and
Amendment D 7.2 Table 7-10), key check values (Amendment D 7.2.2), the key information
template (GPCS 11.3.3.1, tag E0 / C0) and one key diversification scheme.

Sensitive key components are AES-CBC enciphered under the static Key-DEK with a zero ICV.
Two key component block forms exist and a card must accept both; it tells them apart by
the block length modulo 16:

* Table 7-10 form: ``88 Lb keylen || ciphered`` (Lb = 1 + 16k), e.g. ``88 11 10 ..``;
* Table 11-71 form: ``88 Lb ciphered`` (Lb = 16k), e.g. ``88 10 ..``.

Each component is followed by ``03 KCV``. A 24-byte key is padded with 8 zero bytes before
encryption, and only the Table 7-10 form (which states the clear length) can carry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from protocols.gp.apdu import CommandApdu
from protocols.gp.codes import INS_PUT_KEY
from protocols.gp.crypto import KeyedAes, aes_cbc_encrypt, check_aes_key, cmac, kcv
from protocols.gp.errors import GpError, KeyError_
from protocols.gp.tlv import Tlv, encode, parse_all, parse_one

KEY_TYPE_AES = 0x88
ZERO_ICV = b"\x00" * 16


class KeyBlockForm(Enum):
    WITH_LENGTH = "table_7_10"  # 88 11 10 <16> 03 kcv (GlobalPlatformPro)
    BARE = "table_11_71"  # 88 10 <16> 03 kcv (pySim)


def encrypt_key(dek: bytes, key: bytes) -> bytes:
    """AES-CBC(Key-DEK, ICV 0) of the key, zero-padded to a multiple of 16."""
    check_aes_key(dek, "Key-DEK")
    check_aes_key(key)
    padded = key + b"\x00" * (-len(key) % 16)
    return aes_cbc_encrypt(dek, ZERO_ICV, padded)


def key_component_block(dek: bytes, key: bytes, form: KeyBlockForm = KeyBlockForm.WITH_LENGTH) -> bytes:
    """The ``Lb ..`` part after key type 88 (without KCV)."""
    ct = encrypt_key(dek, key)
    if form is KeyBlockForm.WITH_LENGTH:
        body = bytes([len(key)]) + ct
    else:
        if len(key) % 16:
            raise KeyError_(f"a {len(key)}-byte key needs the length-prefixed key block form")
        body = ct
    return bytes([len(body)]) + body


def put_key_data(new_kvn: int, keys: Sequence[bytes], dek: bytes,
                 form: KeyBlockForm = KeyBlockForm.WITH_LENGTH) -> bytes:
    """PUT KEY data field: new KVN || (88 block 03 KCV) per key."""
    if not 0x01 <= new_kvn <= 0x7F:
        raise KeyError_(f"new KVN {new_kvn:02X} is outside 01..7F")
    out = bytes([new_kvn])
    for k in keys:
        out += bytes([KEY_TYPE_AES]) + key_component_block(dek, k, form) + b"\x03" + kcv(k)
    return out


def put_key_command(old_kvn: int, new_kvn: int, keys: Sequence[bytes], dek: bytes,
                    form: KeyBlockForm = KeyBlockForm.WITH_LENGTH, first_key_id: int = 1,
                    cla: int = 0x80) -> CommandApdu:
    """PUT KEY (GPCS 11.8): P1 = KVN to replace (00 adds a keyset), P2 = 80 | first key id
    (several keys), Le = 00 (the card answers KVN || KCVs)."""
    if not 0 <= old_kvn <= 0x7F:
        raise KeyError_(f"KVN {old_kvn:02X} to replace is outside 00..7F")
    p2 = (0x80 if len(keys) > 1 else 0x00) | first_key_id
    return CommandApdu(cla, INS_PUT_KEY, old_kvn, p2, put_key_data(new_kvn, keys, dek, form), 256)


@dataclass(frozen=True)
class PutKeyData:
    new_kvn: int
    #: the keys in clear (the card's new static keys): never in a repr
    keys: tuple[bytes, ...] = field(repr=False)
    form: KeyBlockForm
    #: the KCV of each key, as :func:`parse_put_key_data` computed and checked them
    #: (empty: computed by :meth:`response`)
    kcvs: tuple[bytes, ...] = ()

    def response(self) -> bytes:
        """The card's answer data: new KVN || KCV of each key (GPCS 11.8.3)."""
        kcvs = self.kcvs if len(self.kcvs) == len(self.keys) else tuple(kcv(k) for k in self.keys)
        return bytes([self.new_kvn]) + b"".join(kcvs)


def parse_put_key_data(data: bytes, dek: bytes) -> PutKeyData:
    """Card side: decipher and check every key of a PUT KEY data field. Raises
    :class:`KeyError_` on any malformed block or KCV mismatch."""
    data = bytes(data)
    if len(data) < 2:
        raise KeyError_(f"PUT KEY data of {len(data)} bytes is too short")
    new_kvn = data[0]
    if not 0x01 <= new_kvn <= 0x7F:
        raise KeyError_(f"new KVN {new_kvn:02X} at offset 0 is outside 01..7F")
    i = 1
    keys: list[bytes] = []
    kcvs: list[bytes] = []
    forms: set[KeyBlockForm] = set()
    dek_aes = KeyedAes(check_aes_key(dek, "Key-DEK"))  # one key schedule for every block
    while i < len(data):
        if data[i] != KEY_TYPE_AES:
            raise KeyError_(f"key type {data[i]:02X} at offset {i}; only AES (88) is supported")
        if i + 2 > len(data):
            raise KeyError_(f"key block at offset {i} is truncated")
        lb = data[i + 1]
        block = data[i + 2 : i + 2 + lb]
        if len(block) != lb:
            raise KeyError_(f"key block at offset {i} claims {lb} bytes, {len(block)} remain")
        if lb % 16 == 1:
            klen, ct = block[0], block[1:]
            form = KeyBlockForm.WITH_LENGTH
        elif lb % 16 == 0 and lb:
            klen, ct = lb, block
            form = KeyBlockForm.BARE
        else:
            raise KeyError_(f"key block length {lb:02X} at offset {i + 1} fits neither form")
        if klen not in (16, 24, 32) or not klen <= len(ct) < klen + 16:
            raise KeyError_(f"key length {klen} does not fit a {len(ct)}-byte ciphered block at offset {i}")
        if len(ct) % 16:
            raise KeyError_(f"ciphered key block of {len(ct)} bytes at offset {i} is not whole AES blocks")
        key = dek_aes.cbc_decrypt(ZERO_ICV, ct)[:klen]
        j = i + 2 + lb
        if j + 1 > len(data):
            raise KeyError_(f"KCV length missing after the key block at offset {i}")
        kl = data[j]
        check = data[j + 1 : j + 1 + kl]
        if kl != 3 or len(check) != 3:
            raise KeyError_(f"KCV at offset {j} is not 03 + 3 bytes")
        if check != kcv(key):
            raise KeyError_(f"KCV {check.hex().upper()} of key {len(keys) + 1} does not match its deciphered value")
        keys.append(key)
        kcvs.append(check)
        forms.add(form)
        i = j + 1 + kl
    if len(forms) != 1:
        raise KeyError_("PUT KEY mixes key block forms") if forms else KeyError_("PUT KEY carries no key")
    return PutKeyData(new_kvn, tuple(keys), forms.pop(), tuple(kcvs))


#: PUT KEY of an elliptic-curve public key (GPCS Amendment F: the CA-KLOC key of SCP11a):
#: ``KVN || B0 <point> || F0 01 <curve> || 00`` (no check value; the card answers the KVN)
KEY_TYPE_ECC_PUBLIC = 0xB0
KEY_TYPE_ECC_PARAMS = 0xF0
#: Amendment F's key parameter reference of NIST P-256 (the only curve taken here)
CURVE_P256 = 0x00
_P256_POINT = 65


def put_ec_public_key_command(old_kvn: int, new_kvn: int, kid: int, point: bytes) -> CommandApdu:
    """PUT KEY (80 D8 old-KVN KID) of a P-256 public key ``point`` (04 || X || Y) as key
    ``kid`` version ``new_kvn``; ``old_kvn`` 00 adds it."""
    if not 0x01 <= new_kvn <= 0x7F or not 0x00 <= old_kvn <= 0x7F or not 0x01 <= kid <= 0x7F:
        raise KeyError_(f"PUT KEY of KID {kid:02X}: KVN {old_kvn:02X} -> {new_kvn:02X} outside 00..7F")
    if len(point) != _P256_POINT or point[0] != 0x04:
        raise KeyError_("an uncompressed P-256 point is 65 bytes starting 04")
    data = bytes([new_kvn]) + encode(KEY_TYPE_ECC_PUBLIC, point) + encode(KEY_TYPE_ECC_PARAMS, bytes([CURVE_P256])) \
        + b"\x00"
    return CommandApdu(0x80, INS_PUT_KEY, old_kvn, kid, data, 256)


def parse_put_ec_public_key_data(data: bytes) -> tuple[int, bytes]:
    """Card side: the new KVN and the P-256 point of a PUT KEY of an EC public key; raises
    :class:`KeyError_` on anything else (another curve, a private key, a check value, bytes
    left over). The point is not checked against the curve here: the caller loads it."""
    data = bytes(data)
    if len(data) < 2 or not 0x01 <= data[0] <= 0x7F:
        raise KeyError_("PUT KEY data does not start with a KVN 01..7F")
    try:
        point, i = parse_one(data, 1)
        params, j = parse_one(data, i)
    except GpError as e:
        raise KeyError_(f"PUT KEY of an EC public key: {e}") from e
    if point.tag != KEY_TYPE_ECC_PUBLIC or len(point.value) != _P256_POINT or point.value[0] != 0x04:
        raise KeyError_("PUT KEY of an EC public key needs B0 with an uncompressed P-256 point")
    if params.tag != KEY_TYPE_ECC_PARAMS or params.value != bytes([CURVE_P256]):
        raise KeyError_("PUT KEY of an EC public key needs F0 01 00 (P-256)")
    if data[j:] != b"\x00":
        raise KeyError_("PUT KEY of an EC public key ends with 00 (no check value), and nothing after it")
    return data[0], point.value


@dataclass(frozen=True)
class KeyInfo:
    """One entry of the key information template (GPCS 11.3.3.1, basic format)."""

    key_id: int
    kvn: int
    key_type: int = KEY_TYPE_AES
    key_length: int = 16

    def to_tlv(self) -> Tlv:
        return Tlv(0xC0, bytes([self.key_id, self.kvn, self.key_type, self.key_length]))


def key_information_template(infos: Sequence[KeyInfo]) -> bytes:
    """GET DATA 00E0 answer: ``E0 { C0 04 id kvn type len } ..``."""
    return encode(0xE0, [k.to_tlv() for k in infos])


def parse_key_information_template(data: bytes) -> tuple[KeyInfo, ...]:
    tlvs = parse_all(data)
    if len(tlvs) != 1 or tlvs[0].tag != 0xE0:
        raise KeyError_("key information template is not a single E0 object")
    out = []
    for c in tlvs[0].children():
        if c.tag != 0xC0 or len(c.value) != 4:
            raise KeyError_(f"key information entry {c.tag:X} of {len(c.value)} bytes is not C0 04")
        out.append(KeyInfo(*c.value))
    return tuple(out)


class DiversifiedKey(Enum):
    ENC = 0x01
    MAC = 0x02
    DEK = 0x03


def diversify_kdf3(master: bytes, kdd: bytes, which: DiversifiedKey) -> bytes:
    """GlobalPlatformPro's "KDF3" template (not part of Amendment D): for i = 1..
    ``CMAC(master, i || 000000 || key type || 00 || KDD[10])``, truncated to the master
    key's length."""
    check_aes_key(master, "master key")
    if len(kdd) != 10:
        raise KeyError_(f"key diversification data of {len(kdd)} bytes, expected 10")
    out = b""
    i = 1
    while len(out) < len(master):
        out += cmac(master, bytes([i]) + b"\x00\x00\x00" + bytes([which.value]) + b"\x00" + kdd)
        i += 1
    return out[: len(master)]
