"""Test edges for the TSM: a fake issuer (real certificates and MSOs with ``cryptography``,
idempotent by job_ref, counting what it issues) and transports that lose answers.

Also imported by the other ``test_tsm_*`` files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections import Counter

import cbor2
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


class LostAnswer(ConnectionError):
    """The SE processed the command; its answer never arrived."""


class Crash(BaseException):
    """The worker process died (not an Exception: nothing may catch it on the way)."""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class FakeIssuer:
    """Implements tsm.ports.IssuerPort. Certificates are real X.509 (P-384 CA), MSOs are
    real COSE_Sign1-shaped IssuerSigned with the device key; proofs are checked."""

    def __init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.now = now
        self.ca_key = ec.generate_private_key(ec.SECP384R1())
        self.ca = (x509.CertificateBuilder().subject_name(_name("TEST JPKI CA"))
                   .issuer_name(_name("TEST JPKI CA")).public_key(self.ca_key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .sign(self.ca_key, hashes.SHA384()))
        self.challenges: dict[tuple, bytes] = {}
        self.answers: dict[tuple, object] = {}
        self.issued: Counter = Counter()  # (phone, slot) -> certificates / MSOs issued
        self.certificates: list[x509.Certificate] = []

    @staticmethod
    def _check_proof(spki: bytes, message: bytes, proof: bytes) -> None:
        key = serialization.load_der_public_key(spki)
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(proof, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                h = hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()
                key.verify(proof, message, ec.ECDSA(h))
        except InvalidSignature as exc:
            raise AssertionError("proof of possession does not verify") from exc

    def jpki_challenge(self, job_ref: str, phone_id: str, slot: str) -> bytes:
        return self.challenges.setdefault((job_ref, phone_id, slot), os.urandom(32))

    def issue_jpki_certificate(self, job_ref, phone_id, slot, spki_der, proof):
        k = (job_ref, phone_id, slot)
        if k in self.answers:
            return self.answers[k]
        self._check_proof(spki_der, self.challenges[k] + spki_der, proof)
        cert = (x509.CertificateBuilder().subject_name(_name(f"{phone_id} {slot} " + "x" * 40))
                .issuer_name(self.ca.subject)
                .public_key(serialization.load_der_public_key(spki_der))
                .serial_number(x509.random_serial_number())
                .not_valid_before(self.now - dt.timedelta(days=1))
                .not_valid_after(self.now + dt.timedelta(days=1825))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName(f"{slot}.{phone_id}.test.invalid")] * 1), critical=False)
                .sign(self.ca_key, hashes.SHA384()))
        der = cert.public_bytes(serialization.Encoding.DER)
        self.issued[(phone_id, slot)] += 1
        self.certificates.append(cert)
        ans = (der, self.ca.public_bytes(serialization.Encoding.DER))
        self.answers[k] = ans
        return ans

    def mdoc_challenge(self, job_ref, phone_id, slot_index):
        return self.challenges.setdefault((job_ref, phone_id, slot_index), os.urandom(32))

    def issue_mdoc(self, job_ref, phone_id, slot_index, device_public_key_der, proof):
        k = (job_ref, phone_id, slot_index)
        if k in self.answers:
            return self.answers[k]
        self._check_proof(device_public_key_der, self.challenges[k] + device_public_key_der, proof)
        pub = serialization.load_der_public_key(device_public_key_der).public_numbers()
        mso = {"version": "1.0", "digestAlgorithm": "SHA-256", "docType": "test.doc",
               "valueDigests": {}, "deviceKeyInfo": {"deviceKey": {
                   1: 2, -1: 1, -2: pub.x.to_bytes(32, "big"), -3: pub.y.to_bytes(32, "big")}},
               "validityInfo": {}}
        payload = cbor2.dumps(cbor2.CBORTag(24, cbor2.dumps(mso)))
        protected = cbor2.dumps({1: -7})
        to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
        sig = self.ca_key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        issuer_signed = cbor2.dumps({"nameSpaces": {}, "issuerAuth": [protected, {}, payload, sig]})
        self.issued[(phone_id, f"mdoc{slot_index}")] += 1
        self.answers[k] = issuer_signed
        return issuer_signed


class FlakyLink:
    """A transport to ``se`` that, on command number ``lose_at`` (0-based), lets the SE
    process the command and then loses the answer. Counts commands."""

    def __init__(self, se, lose_at: int | None = None) -> None:
        self.se = se
        self.lose_at = lose_at
        self.sent = 0

    def __call__(self, apdu: bytes) -> bytes:
        n = self.sent
        self.sent += 1
        resp = self.se.transmit(apdu)
        if n == self.lose_at:
            raise LostAnswer(f"answer to command {n} lost")
        return resp


def test_fake_issuer_is_idempotent_by_job_ref():
    iss = FakeIssuer()
    key = ec.generate_private_key(ec.SECP384R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    ch = iss.jpki_challenge("j", "p", "sign")
    proof = key.sign(ch + spki, ec.ECDSA(hashes.SHA384()))
    a = iss.issue_jpki_certificate("j", "p", "sign", spki, proof)
    b = iss.issue_jpki_certificate("j", "p", "sign", spki, proof)
    assert a == b and iss.issued[("p", "sign")] == 1
    assert hashlib.sha256(a[0]).digest() and a[0][:2] == b"\x30\x82"


def test_fake_issuer_refuses_a_bad_proof():
    iss = FakeIssuer()
    key = ec.generate_private_key(ec.SECP384R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    iss.jpki_challenge("j", "p", "auth")
    with pytest.raises(AssertionError):
        iss.issue_jpki_certificate("j", "p", "auth", spki, key.sign(b"other", ec.ECDSA(hashes.SHA384())))
