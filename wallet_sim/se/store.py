"""Persistence of one SE image: a CBOR map written atomically (temporary file,
``os.replace``), like a card's NVM that never holds a half-written update.

Atomic against a crashed *process* (a reader sees the old image or the new one, never
part of one). ``fsync`` before the rename, which adds durability against a crashed
*machine* at a few ms per command, is off unless ``MCRED_SE_FSYNC=1``
(specs/secure-element.md, Persistence)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import cbor2

from wallet_sim.se.constants import (
    CARD_SECURED,
    DEFAULT_MAX_FAILED_AUTHENTICATIONS,
    FACTORY_KEY,
    FACTORY_KVN,
    ISD_AID,
    SD_PERSONALIZED,
)
from wallet_sim.se.errors import SeStateError

STATE_VERSION = 1
SE_FILE = "se.cbor"

# CPLC fields, GPCS 2.3.1 Table H-2 (name, length); 42 bytes in all.
CPLC_FIELDS: tuple[tuple[str, int], ...] = (
    ("ic_fabricator", 2), ("ic_type", 2), ("os_id", 2), ("os_release_date", 2),
    ("os_release_level", 2), ("ic_fabrication_date", 2), ("ic_serial_number", 4),
    ("ic_batch_identifier", 2), ("ic_module_fabricator", 2), ("ic_module_packaging_date", 2),
    ("icc_manufacturer", 2), ("ic_embedding_date", 2), ("ic_pre_personalizer", 2),
    ("ic_pre_personalization_date", 2), ("ic_pre_personalization_equipment", 4),
    ("ic_personalizer", 2), ("ic_personalization_date", 2),
    ("ic_personalization_equipment", 4),
)


def new_cplc() -> bytes:
    """A CPLC with fixed simulator identifiers and a random IC serial number and batch."""
    fixed = {
        "ic_fabricator": bytes.fromhex("4D43"),  # "MC"
        "ic_type": bytes.fromhex("5345"),  # "SE"
        "os_id": bytes.fromhex("4D43"),
        "os_release_date": bytes.fromhex("5001"),
        "os_release_level": bytes.fromhex("0100"),
        "ic_serial_number": secrets.token_bytes(4),
        "ic_batch_identifier": secrets.token_bytes(2),
    }
    return b"".join(fixed.get(name, b"\x00" * n) for name, n in CPLC_FIELDS)


def decode_cplc(cplc: bytes) -> dict[str, str]:
    out, i = {}, 0
    for name, n in CPLC_FIELDS:
        out[name] = cplc[i : i + n].hex().upper()
        i += n
    return out


def key_diversification_data(cplc: bytes) -> bytes:
    """KDD = IC fabricator || IC type || IC serial number || IC batch identifier (10 bytes)."""
    f = decode_cplc(cplc)
    return bytes.fromhex(f["ic_fabricator"] + f["ic_type"] + f["ic_serial_number"] + f["ic_batch_identifier"])


def factory_state(*, max_failed_authentications: int = DEFAULT_MAX_FAILED_AUTHENTICATIONS,
                  sequence_counter: int = 0) -> dict:
    """The image of an SE fresh from the factory: ISD with the factory keyset only."""
    cplc = new_cplc()
    return {
        "version": STATE_VERSION,
        "cplc": cplc,
        "kdd": key_diversification_data(cplc),
        "card_life_cycle": CARD_SECURED,
        "isd": {"aid": ISD_AID, "life_cycle": SD_PERSONALIZED},
        "keysets": {FACTORY_KVN: {"enc": FACTORY_KEY, "mac": FACTORY_KEY, "dek": FACTORY_KEY}},
        "sequence_counter": sequence_counter,
        "failed_authentications": {},
        "blocked_kvns": [],
        "max_failed_authentications": max_failed_authentications,
        "applications": [],
    }


def encode_state(state: dict) -> bytes:
    return cbor2.dumps(state, canonical=True)


def load_state(path: Path) -> dict:
    try:
        state = cbor2.loads(path.read_bytes())
    except (OSError, ValueError, cbor2.CBORDecodeError) as e:
        raise SeStateError(f"cannot read SE image {path}: {e}") from e
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise SeStateError(f"SE image {path} has unknown version")
    return state


FSYNC_ENV = "MCRED_SE_FSYNC"


def fsync_enabled() -> bool:
    """Whether ``MCRED_SE_FSYNC=1`` asks for an fsync before each rename (read per write)."""
    return os.environ.get(FSYNC_ENV, "").strip() == "1"


def write_atomically(path: Path, data: bytes, *, fsync: bool | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path`` and ``os.replace`` it over ``path``.

    ``fsync`` None means :func:`fsync_enabled`; a failed write leaves ``path`` untouched."""
    if fsync is None:
        fsync = fsync_enabled()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
