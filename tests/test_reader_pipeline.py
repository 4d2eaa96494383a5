"""Reader pipeline checks beyond the session tests: keyAuthorizations, the MSO signed within
the DS certificate's validity, Annex B profile failures reported by name."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_present_kit import NS, T0, Clock, StatusPublisher, make_pki

from mcred.present import reader_pipeline
from protocols import cose
from protocols.cose import CoseKey
from protocols.mdoc import (
    DeviceResponse,
    Document,
    SessionTranscript,
    build_device_signed,
    build_issuer_signed,
)

DOCTYPE = "jp.mcred.mynumber.cardsub.1"
NOW = T0 + dt.timedelta(minutes=1)


def transcript():
    key = CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    return SessionTranscript.build(b"\xa1\x00c1.0", key, None)


def response(ds_key, ds_cert, *, key_authorizations=None, device_elements=None, signed=None, valid_from=T0):
    device = ec.generate_private_key(ec.SECP256R1())
    isg = build_issuer_signed({NS: {"family_name": "山田"}}, DOCTYPE, device.public_key(), cose.key_signer(ds_key),
                              [ds_cert.public_bytes(serialization.Encoding.DER)], valid_from,
                              valid_from + dt.timedelta(days=30), signed=signed,
                              key_authorizations=key_authorizations)
    st = transcript()
    ds = build_device_signed(DOCTYPE, st, signer=cose.key_signer(device), device_name_spaces=device_elements)
    return DeviceResponse((Document(DOCTYPE, isg, ds),)).encode(), st


def verify(pki, data, st):
    clock = Clock(NOW)
    pipe = reader_pipeline(trust=pki.trust(), clock=clock, fetcher=StatusPublisher(pki, clock))
    return pipe.verify(data, session_transcript=st)


def failed(result):
    return {c.name for c in result.checks if not c.passed}


def test_key_authorizations_allow_and_refuse_device_signed_elements():
    pki = make_pki()
    auth = {"dataElements": {NS: ["nickname"]}}
    ok = verify(pki, *response(pki.ds_key, pki.ds, key_authorizations=auth, device_elements={NS: {"nickname": "ハナ"}}))
    assert ok.valid, failed(ok)
    assert "1 device-signed" in ok.check("key_authorizations").reason
    bad = verify(pki, *response(pki.ds_key, pki.ds, key_authorizations=auth, device_elements={NS: {"family_name": "X"}}))
    assert failed(bad) == {"key_authorizations"}
    whole = verify(pki, *response(pki.ds_key, pki.ds, key_authorizations={"nameSpaces": [NS]},
                                  device_elements={NS: {"family_name": "X"}}))
    assert whole.valid
    # the rule is the core's (protocols.mdoc), reported once; with nothing declared the reader says so
    assert [c.name for c in bad.checks].count("key_authorizations") == 1
    plain = verify(pki, *response(pki.ds_key, pki.ds))
    assert plain.valid and plain.check("key_authorizations").reason == "none declared, nothing device-signed"
    unsanctioned = verify(pki, *response(pki.ds_key, pki.ds, device_elements={NS: {"nickname": "X"}}))
    assert failed(unsanctioned) == {"key_authorizations"}


def test_mso_signed_before_the_ds_certificate_is_refused():
    pki = make_pki()
    early = pki.ds.not_valid_before_utc - dt.timedelta(days=1)
    result = verify(pki, *response(pki.ds_key, pki.ds, signed=early, valid_from=early))
    assert "mso_signed_within_ds_validity" in failed(result)
    assert "OUTSIDE" in result.check("mso_signed_within_ds_validity").reason


def test_ds_certificate_outside_annex_b_fails_ds_profile_by_rule():
    pki = make_pki()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(x509.NameOID.COMMON_NAME, "sloppy DS")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(pki.iaca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(T0 - dt.timedelta(days=1))
            .not_valid_after(T0 + dt.timedelta(days=600))  # beyond Annex B's 457 days
            .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.0.18013.5.1.2")]), critical=True)
            .sign(pki.iaca_key, hashes.SHA256()))
    result = verify(pki, *response(key, cert))
    assert failed(result) == {"ds_profile"}  # the chain, signatures and everything else pass
    reason = result.check("ds_profile").reason
    assert "ds.validity_period" in reason and "ds.key_usage" in reason and "ds.issuer_alt_name" in reason


def test_validity_reasons_are_exact_and_follow_the_clock():
    """The pipeline's validity and mso_signed_within_ds_validity reasons (their fixed parts are
    kept per printed values): exact text, and each verification prints its own ``now``."""
    from protocols.cbor import tdate_text

    pki = make_pki()
    data, st = response(pki.ds_key, pki.ds)
    clock = Clock(NOW)
    pipe = reader_pipeline(trust=pki.trust(), clock=clock, fetcher=StatusPublisher(pki, clock))
    start, end, leaf = T0, T0 + dt.timedelta(days=30), pki.ds
    for now in (NOW, NOW + dt.timedelta(seconds=7)):
        result = pipe.verify(data, session_transcript=st, now=now)
        assert result.valid, failed(result)
        assert result.check("validity").reason == (
            f"{DOCTYPE}: {tdate_text(now)} within validFrom {tdate_text(start)} .. "
            f"validUntil {tdate_text(end)} (skew 0:05:00)")
        assert result.check("mso_signed_within_ds_validity").reason == (
            f"signed {tdate_text(start)} within DS validity {tdate_text(leaf.not_valid_before_utc)} .. "
            f"{tdate_text(leaf.not_valid_after_utc)}")
    late = end + dt.timedelta(minutes=6)
    result = pipe.verify(data, session_transcript=st, now=late)
    assert result.check("validity").reason == (
        f"{DOCTYPE}: {tdate_text(late)} outside validFrom {tdate_text(start)} .. "
        f"validUntil {tdate_text(end)} (skew 0:05:00)")


def test_iaca_profile_is_worked_out_once_per_trust_anchor(monkeypatch):
    """The anchor's time-independent Table B.1 rules are kept with the trust anchor: new
    pipelines and new DS certificates over the same store do not verify its self-signature
    again, and its validity still follows each verification's clock."""
    from protocols import iaca

    pki = make_pki()
    calls = []
    real = iaca.iaca_profile
    monkeypatch.setattr(iaca, "iaca_profile", lambda cert, **kw: calls.append(cert) or real(cert, **kw))
    store = pki.trust()
    data, st = response(pki.ds_key, pki.ds)
    for _ in range(3):  # a fresh pipeline each time: nothing cached in the pipeline
        clock = Clock(NOW)
        pipe = reader_pipeline(trust=store, clock=clock, fetcher=StatusPublisher(pki, clock))
        result = pipe.verify(data, session_transcript=st)
        assert result.valid, failed(result)
        assert result.check("iaca_profile").passed
    assert calls == [pki.iaca]


def test_iaca_out_of_profile_is_reported_from_the_kept_profile():
    """An IACA breaking Table B.1 (here: a validity beyond 20 years) fails ``iaca_profile`` by rule,
    at the first and at later verifications alike."""
    pki = make_pki()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(x509.NameOID.COMMON_NAME, "long IACA")])
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(T0 - dt.timedelta(days=1))
            .not_valid_after(T0 + dt.timedelta(days=7400))  # beyond Annex B's 20 years
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    ds_key = ec.generate_private_key(ec.SECP256R1())
    ds_name = x509.Name([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "JP"),
                         x509.NameAttribute(x509.NameOID.COMMON_NAME, "DS under the long IACA")])
    ds = (x509.CertificateBuilder().subject_name(ds_name).issuer_name(name).public_key(ds_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(T0 - dt.timedelta(days=1))
          .not_valid_after(T0 + dt.timedelta(days=300))
          .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.0.18013.5.1.2")]), critical=True)
          .sign(key, hashes.SHA256()))
    store = pki.trust()
    store.add(root)
    data, st = response(ds_key, ds)
    clock = Clock(NOW)
    for _ in range(2):
        pipe = reader_pipeline(trust=store, clock=clock, fetcher=StatusPublisher(pki, clock))
        reason = pipe.verify(data, session_transcript=st).check("iaca_profile").reason
        assert "iaca.validity_period" in reason and "iaca.key_usage" in reason
