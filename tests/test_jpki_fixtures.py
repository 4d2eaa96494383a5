"""Shared builders for the JPKI tests (no tests here): a small PKI per key type."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from protocols.jpki import (
    BasicFour,
    JpkiProfile,
    JpkiSex,
    KeyType,
    Municipality,
    Purpose,
    Validity,
    build_auth_certificate,
    build_ocsp_responder_certificate,
    build_root_ca,
    build_signing_certificate,
    end_entity_validity,
)

NOW = datetime.now(UTC).replace(microsecond=0)
CHIYODA = Municipality("東京都", "千代田区", "131016")
SAPPORO = Municipality("北海道", "札幌市", "011002")
BIRTH = date(1980, 2, 17)


def new_key(key_type: KeyType):
    if key_type is KeyType.RSA_2048:
        return rsa.generate_private_key(65537, 2048)
    return ec.generate_private_key(ec.SECP384R1())


@dataclass(frozen=True)
class Pki:
    profile: JpkiProfile
    key_type: KeyType
    root_keys: dict
    roots: dict
    responder_keys: dict
    responders: dict

    def issue_signing(self, serial: int, municipality: Municipality = CHIYODA,
                      subject_key=None):
        subject_key = subject_key or new_key(self.key_type)
        cert = build_signing_certificate(
            profile=self.profile, issuer=self.roots[Purpose.SIGN],
            issuer_key=self.root_keys[Purpose.SIGN], subject_key=subject_key.public_key(),
            serial=serial, validity=end_entity_validity(
                self.profile_rule, NOW - timedelta(days=1), BIRTH),
            subject_id=f"TESTID{serial:08d}", municipality=municipality,
            basic_four=HOLDER,
        )
        return cert, subject_key

    def issue_auth(self, serial: int, municipality: Municipality = CHIYODA, subject_key=None):
        subject_key = subject_key or new_key(self.key_type)
        cert = build_auth_certificate(
            profile=self.profile, issuer=self.roots[Purpose.AUTH],
            issuer_key=self.root_keys[Purpose.AUTH], subject_key=subject_key.public_key(),
            serial=serial, validity=end_entity_validity(
                self.profile_rule, NOW - timedelta(days=1), BIRTH),
            subject_id=f"TESTAUTH{serial:08d}", municipality=municipality,
        )
        return cert, subject_key

    @property
    def profile_rule(self):
        from protocols.jpki import CURRENT_CARD_RULE, NEXT_CARD_RULE

        return CURRENT_CARD_RULE if self.key_type is KeyType.RSA_2048 else NEXT_CARD_RULE


HOLDER = BasicFour.of(
    family_name="試験", given_name="花子", sex=JpkiSex.FEMALE, birth_date=BIRTH,
    address="東京都千代田区霞が関二丁目一番二号",
)

CA_VALIDITY = Validity(NOW - timedelta(days=30), NOW + timedelta(days=3650))


@functools.cache
def pki(key_type: KeyType) -> Pki:
    profile = JpkiProfile(key_type=key_type)
    root_keys, roots, responder_keys, responders = {}, {}, {}, {}
    for n, purpose in enumerate(Purpose):
        key = new_key(key_type)
        root_keys[purpose] = key
        roots[purpose] = build_root_ca(profile=profile, purpose=purpose, key=key,
                                       serial=1000 + n, validity=CA_VALIDITY)
        rkey = new_key(key_type)
        responder_keys[purpose] = rkey
        responders[purpose] = build_ocsp_responder_certificate(
            profile=profile, purpose=purpose, issuer=roots[purpose], issuer_key=key,
            responder_key=rkey.public_key(), serial=2000 + n,
            validity=Validity(NOW - timedelta(days=1), NOW + timedelta(days=30)))
    return Pki(profile, key_type, root_keys, roots, responder_keys, responders)


def pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM)
