"""Helpers shared by the JPKI issuer / relying-party tests (no tests here).

The end-entity key pair is generated with ``cryptography`` at the test's edge, standing in
for the SE (the SE integration is exercised where wallet_sim's applet is available).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy.orm import sessionmaker

from issuer import holders
from issuer.jpki import JpkiIssuer, profile_for
from issuer.keystore import MemoryKeyStore
from mcred.db import make_engine, migrate
from protocols.jpki.profile import KeyType

HOLDER = {
    "family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ",
    "given_name_kana": "ハナコ", "birth_date": "1990-04-01", "sex": 2,
    "address": "東京都千代田区霞が関２丁目１番２号", "prefecture": "東京都",
    "municipality": "千代田区", "municipality_code": "131016",
}
OTHER_TOWN = dict(HOLDER, family_name="佐藤", address="大阪府大阪市北区中之島１丁目３番２０号",
                  prefecture="大阪府", municipality="大阪市", municipality_code="271004")
_counter = itertools.count(1)


def open_issuer(db_url: str, public_url: str = "http://127.0.0.1:8470",
                key_type: KeyType = KeyType.EC_P384) -> JpkiIssuer:
    """A migrated registry and its CA (P-384 roots by default: fast to generate; the RSA-2048
    roots are exercised by the OpenSSL and CLI tests, which use the installation default)."""
    engine = make_engine(db_url)
    migrate(engine)
    issuer = JpkiIssuer(sessionmaker(engine, expire_on_commit=False), MemoryKeyStore(),
                        profile_for(public_url))
    issuer.setup(key_type)
    return issuer


@dataclass
class IssuedPhone:
    phone_id: str
    keys: dict
    certs: dict
    holder_id: str = ""


def spki(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def prove(key, nonce: bytes) -> bytes:
    """What the SE applet sends as proof of possession: a signature over nonce || SPKI."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(nonce + spki(key), padding.PKCS1v15(), hashes.SHA256())
    return key.sign(nonce + spki(key), ec.ECDSA(hashes.SHA384()))


def new_key(algorithm: str = "p384"):
    if algorithm == "rsa2048":
        return rsa.generate_private_key(65537, 2048)
    return ec.generate_private_key(ec.SECP384R1())


def provision(issuer: JpkiIssuer, holder: dict | None = None, algorithm: str = "p384",
              phone_id: str | None = None, holder_id: str | None = None) -> IssuedPhone:
    """Both certificates for a new phone of a new holder (of ``holder_id``'s when given)."""
    n = next(_counter)
    phone_id = phone_id or f"phone-{n}"
    if holder_id is None:
        hid = holders.register(issuer.sessions, dict(holder or HOLDER, card_number=f"{n:016d}"))
    else:
        hid = holder_id
    holders.attach_phone(issuer.sessions, hid, phone_id)
    keys, certs = {}, {}
    for slot in ("sign", "auth"):
        key = new_key(algorithm)
        job = f"job-{phone_id}"
        nonce = issuer.jpki_challenge(job, phone_id, slot)
        cert, _root = issuer.issue_jpki_certificate(job, phone_id, slot, spki(key),
                                                    prove(key, nonce))
        keys[slot], certs[slot] = key, cert
    return IssuedPhone(phone_id, keys, certs, hid)


@contextlib.contextmanager
def live_installation(home: Path) -> Iterator[tuple]:
    """An installation in ``home`` (the environment's MCRED_HOME and MCRED_PUBLIC_URL point at
    it, SQLite) and its ``mcred serve`` app on a free port while inside: ``(ctx, issuer, url)``,
    ``issuer`` its JPKI issuer."""
    from test_present_http import Server, free_port

    from mcred.context import Context
    from mcred.jpki_flow import jpki_issuer
    from mcred.service import create_app

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MCRED_HOME", str(home))
    mp.setenv("MCRED_PUBLIC_URL", url)
    mp.delenv("MCRED_DATABASE_URL", raising=False)
    try:
        ctx = Context.open(home)
        issuer = jpki_issuer(ctx)
        with Server(create_app(ctx), port):
            yield ctx, issuer, url
    finally:
        mp.undo()
