"""A JPKI CRL is current for a relying party when its thisUpdate is at most CLOCK_SKEW after
the relying party's clock and its nextUpdate has not passed (protocols.jpki.relying_party).
A CRL made on request is stamped after the relying party read its clock: the full suite
once refused such a CRL when the two straddled a second."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.jpki.relying_party import CLOCK_SKEW, check_crl

T0 = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pki():
    key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(_name("root")).issuer_name(_name("root"))
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(T0 - dt.timedelta(days=1)).not_valid_after(T0 + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(_name("leaf")).issuer_name(root.subject)
            .public_key(ec.generate_private_key(ec.SECP256R1()).public_key()).serial_number(2)
            .not_valid_before(T0 - dt.timedelta(days=1)).not_valid_after(T0 + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return key, root, leaf


def _crl(key, root, this_update: dt.datetime) -> x509.CertificateRevocationList:
    return (x509.CertificateRevocationListBuilder().issuer_name(root.subject)
            .last_update(this_update).next_update(this_update + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


def test_crl_currency_at_its_edges():
    key, root, leaf = _pki()
    # stamped a second after the relying party read its clock: current
    assert check_crl(leaf, root, _crl(key, root, T0 + dt.timedelta(seconds=1)), T0).passed
    # at the edge of the allowed skew: current; one second more: not current
    assert check_crl(leaf, root, _crl(key, root, T0 + CLOCK_SKEW), T0).passed
    late = check_crl(leaf, root, _crl(key, root, T0 + CLOCK_SKEW + dt.timedelta(seconds=1)), T0)
    assert not late.passed and "thisUpdate" in late.reason
    # nextUpdate passed, by one second: not current
    old = check_crl(leaf, root, _crl(key, root, T0 - dt.timedelta(days=1, seconds=1)), T0)
    assert not old.passed and "nextUpdate" in old.reason
