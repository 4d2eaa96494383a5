"""Loader for the ISO/IEC 18013-5 Annex D vectors, shared by the test_cbor/cose/mdoc files."""

from __future__ import annotations

import json
from functools import cache

from conftest import VECTORS as SHARED_VECTORS
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

VECTORS = SHARED_VECTORS / "iso18013-5-annex-d.json"


@cache
def _vectors() -> dict:
    return json.loads(VECTORS.read_text())["vectors"]


def hexv(name: str) -> bytes:
    return bytes.fromhex(_vectors()[name]["hex"])


def private_key(name: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int(_vectors()[name]["d"], 16), ec.SECP256R1())


def public_xy(name: str) -> tuple[bytes, bytes]:
    v = _vectors()[name]
    return bytes.fromhex(v["x"]), bytes.fromhex(v["y"])


def cert(name: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(hexv(name))


def test_key_pairs_match_their_public_points():
    for name in ("ephemeral_reader_key", "ephemeral_device_key", "static_device_key"):
        numbers = private_key(name).public_key().public_numbers()
        x, y = public_xy(name)
        assert (numbers.x, numbers.y) == (int.from_bytes(x, "big"), int.from_bytes(y, "big"))
