"""A second, independent mdoc implementation reads ours, and ours reads it: @auth0/mdl (TypeScript, in node)
verifies the card-substitute mdoc the issuer signs and the wallet presents: the DS chain to
our IACA, the MSO signature, every digest, and device authentication over this session's
transcript, by signature and by MAC (ECDH with the reader's ephemeral key). It sees exactly
the elements we disclosed, and refuses what it should: a tampered element, another session's
transcript, an IACA it does not trust. The other way round, an mDL it issues under an Annex B
IACA/DS pair and presents with a device signature passes our reader pipeline. (pymdoccbor,
the Python peer, is in test_mdoc_interop.py; it checks less.)"""

from __future__ import annotations

import datetime as dt

import pytest
from auth0_bridge import call, unavailable
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from node_bridge import jwk
from sqlalchemy.orm import sessionmaker

from issuer.holders import attach_phone, register
from issuer.keystore import MemoryKeyStore
from issuer.mdoc.issuance import make_proof
from issuer.mdoc.service import MdocService
from mcred.db import make_engine, migrate
from protocols import cbor, cose
from protocols.cardsub import DEFAULT_NAMES, ISO_NAMESPACE, parse_holder
from protocols.mdoc import (
    DeviceResponse,
    IssuerSigned,
    SessionTranscript,
    build_document,
    verify_device_response,
)
from protocols.mdoc.session import derive_emac_key

why = unavailable()
pytestmark = pytest.mark.skipif(why is not None, reason=f"@auth0/mdl interop: {why}")

HOLDER = {
    "family_name": "佐藤", "given_name": "太郎", "family_name_kana": "サトウ",
    "given_name_kana": "タロウ", "birth_date": "1985-07-07", "sex": 1,
    "address": "大阪府大阪市北区中之島1-3-20", "prefecture": "大阪府", "municipality": "大阪市",
}
DISCLOSE = {DEFAULT_NAMES.namespace: ["family_name", "given_name", "age_over_20", "document_number"],
            ISO_NAMESPACE: ["family_name_national_character", "birth_date", "age_over_18"]}
PEM = serialization.Encoding.PEM


@pytest.fixture(scope="module")
def issued(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth0") / "issuer.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    svc = MdocService(sessions, MemoryKeyStore(), "http://issuer.test")
    attach_phone(sessions, register(sessions, parse_holder(HOLDER)), "phone-a")
    device = ec.generate_private_key(ec.SECP256R1())
    spki, proof = make_proof(device, svc.mdoc_challenge("job-a", "phone-a", 0))
    signed = IssuerSigned.from_cbor(svc.issue_mdoc("job-a", "phone-a", 0, spki, proof))
    yield svc.iaca_certificate(), device, signed
    engine.dispose()


def _session() -> tuple[ec.EllipticCurvePrivateKey, SessionTranscript]:
    reader = ec.generate_private_key(ec.SECP256R1())
    e_reader = cose.CoseKey.from_public_key(reader.public_key())
    return reader, SessionTranscript.build(cbor.dumps({0: "1.0"}), e_reader)


def _cose_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    """COSE_Key (RFC 9052 7) of a P-256 private key: kty EC2, crv P-256, x, y, d."""
    n = key.public_key().public_numbers()
    return cbor.dumps({1: 2, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big"),
                       -4: key.private_numbers().private_value.to_bytes(32, "big")})


def _case(name, response, st, reader_key=None) -> dict:  # noqa: ANN001
    return {"name": name, "response": response.hex(), "transcript": st.tagged.hex(),
            "readerKey": _cose_private(reader_key).hex() if reader_key is not None else None}


def signed_and_maced(signed, device, session=_session):  # noqa: ANN001, ANN201
    """Our mdoc presented twice, DISCLOSE only: with a device signature over one session's
    transcript, and with a device MAC for another session's reader key.
    (by_signature, its transcript, by_mac, its transcript, that reader's key)."""
    _reader, st = session()
    by_signature = DeviceResponse((build_document(signed, st, disclose=DISCLOSE,
                                                  signer=cose.key_signer(device)),)).encode()
    reader, st_mac = session()
    emac = derive_emac_key(device.exchange(ec.ECDH(), reader.public_key()), st_mac)
    by_mac = DeviceResponse((build_document(signed, st_mac, disclose=DISCLOSE, emac_key=emac),)).encode()
    return by_signature, st, by_mac, st_mac, reader


def test_auth0_verifies_our_mdoc_signed_and_maced_and_sees_exactly_the_disclosed_items(issued):
    iaca, device, signed = issued
    by_signature, st, by_mac, st_mac, reader = signed_and_maced(signed, device)
    answer = call({"mode": "verify", "iaca": [iaca.public_bytes(PEM).decode()],
                   "cases": [_case("signature", by_signature, st), _case("mac", by_mac, st_mac, reader)]})
    ours = verify_device_response(by_signature, trust_anchors=[iaca], session_transcript=st,
                                  now=dt.datetime.now(dt.UTC))
    assert ours.valid
    (doc,) = ours.documents
    assert {ns: set(v) for ns, v in doc.elements.items()} == {ns: set(ids) for ns, ids in DISCLOSE.items()}
    for name in ("signature", "mac"):
        got = answer["cases"][name]
        assert got["valid"] and got["error"] is None, (name, got)
        assert got["issuerSignature"] and got["deviceAuth"] and got["dataIntegrity"], (name, got)
        assert_sees_what_we_disclosed(got["elements"], doc, name)


def assert_sees_what_we_disclosed(elements: dict, doc, name: str) -> None:  # noqa: ANN001
    """A peer's elements (JSON from its bridge) are exactly DISCLOSE, with our values."""
    assert {ns: set(ids) for ns, ids in elements.items()} == {ns: set(ids) for ns, ids in DISCLOSE.items()}, name
    assert elements[DEFAULT_NAMES.namespace]["family_name"] == "佐藤"
    assert elements[ISO_NAMESPACE]["age_over_18"] is True
    for ns, values in doc.elements.items():
        for ident, value in values.items():
            if isinstance(value, str | bool | int):
                assert elements[ns][ident] == value, (ns, ident)


def refusal_cases(signed, device, iaca, session=_session):  # noqa: ANN001, ANN201
    """What a verifier must refuse: (a good response, its transcript, the same with one
    element's kanji changed, another session's transcript, an IACA of the same name with
    another key)."""
    _reader, st = session()
    good = DeviceResponse((build_document(signed, st, disclose=DISCLOSE,
                                          signer=cose.key_signer(device)),)).encode()
    name = "佐藤".encode()
    assert good.count(name) >= 2
    tampered = good.replace(name, "佐籐".encode(), 1)  # same length, another kanji: digest breaks
    _other_reader, other_st = session()
    stranger = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    foreign = (x509.CertificateBuilder().subject_name(iaca.subject).issuer_name(iaca.subject)
               .public_key(stranger.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .sign(stranger, hashes.SHA256()))
    return good, st, tampered, other_st, foreign


def test_auth0_refuses_what_it_should(issued):
    """Not a vacuous pass: the same bridge refuses a tampered element, another session's
    transcript and an IACA it was not given."""
    iaca, device, signed = issued
    good, st, tampered, other_st, foreign = refusal_cases(signed, device, iaca)
    now = dt.datetime.now(dt.UTC)
    base = {"mode": "verify", "iaca": [iaca.public_bytes(PEM).decode()]}
    answer = call({**base, "cases": [_case("tampered", tampered, st), _case("other-session", good, other_st)]})
    tampered_answer = answer["cases"]["tampered"]
    assert not tampered_answer["valid"] and tampered_answer["dataIntegrity"] is False, tampered_answer
    other = answer["cases"]["other-session"]
    assert not other["valid"] and other["deviceAuth"] is False, other
    untrusted = call({"mode": "verify", "iaca": [foreign.public_bytes(PEM).decode()],
                      "cases": [_case("untrusted", good, st)]})["cases"]["untrusted"]
    assert not untrusted["valid"], untrusted
    # and ours agrees on each
    assert not verify_device_response(tampered, trust_anchors=[iaca], session_transcript=st, now=now).valid
    assert not verify_device_response(good, trust_anchors=[iaca], session_transcript=other_st, now=now).valid
    assert not verify_device_response(good, trust_anchors=[foreign], session_transcript=st, now=now).valid


def interop_pki(now: dt.datetime, name: str):
    """An Annex B IACA and document signer of ours for a peer to issue under, and a device
    key: (iaca certificate, DS key, DS certificate, device key)."""
    from protocols.iaca.builders import document_signer_builder, iaca_builder, sign

    iaca_key, ds_key, device = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    iaca = sign(iaca_builder(iaca_key.public_key(), common_name=f"{name} IACA",
                             not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=3000),
                             issuer_alt_name_uri="http://issuer.test/iaca", crl_uri="http://issuer.test/iaca.crl"),
                iaca_key)
    ds = sign(document_signer_builder(ds_key.public_key(), iaca, common_name=f"{name} DS",
                                      not_before=now - dt.timedelta(hours=1), not_after=now + dt.timedelta(days=300),
                                      crl_uri="http://issuer.test/iaca.crl"), iaca_key)
    return iaca, ds_key, ds, device


def test_an_mdoc_issued_and_presented_by_auth0_verifies_with_our_reader():
    """The other way round: @auth0/mdl issues an mDL under an Annex B IACA / DS pair of ours
    and presents it with a device signature over our SessionTranscript; our reader pipeline
    (core checks, Annex B profiles, validity) verifies it and lists exactly what it disclosed."""

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    iaca, ds_key, ds, device = interop_pki(now, "interop")
    _reader, st = _session()
    mdl = "org.iso.18013.5.1"
    answer = call({"mode": "issue", "docType": "org.iso.18013.5.1.mDL",
                   "nameSpaces": {mdl: {"family_name": "Yamada", "given_name": "Hanako",
                                        "birth_date": "1990-04-01", "issuing_country": "JP",
                                        "age_over_18": True, "document_number": "JP123"}},
                   "validFrom": (now - dt.timedelta(minutes=1)).isoformat(),
                   "validUntil": (now + dt.timedelta(days=30)).isoformat(),
                   "issuerKey": jwk(ds_key), "issuerCertificate": ds.public_bytes(PEM).decode(),
                   "deviceKey": jwk(device), "transcript": st.tagged.hex(),
                   "disclose": {mdl: ["family_name", "birth_date", "age_over_18"]}})
    doc = our_reader_verifies(bytes.fromhex(answer["response"]), iaca, st, now)
    assert doc.doc_type == "org.iso.18013.5.1.mDL"
    assert doc.elements == {mdl: {"family_name": "Yamada", "birth_date": dt.date(1990, 4, 1),
                                  "age_over_18": True}}


def our_reader_verifies(response: bytes, iaca, st, now, session=_session):  # noqa: ANN001, ANN201
    """A peer's DeviceResponse through our reader pipeline (core checks, Annex B profiles,
    validity): VALID, and bound to this session (another transcript fails device
    authentication). Its one disclosed document."""
    from reader.pipeline import PipelineConfig, ReaderPipeline
    from reader.trust import TrustStore

    store = TrustStore()
    store.add(iaca)
    result = ReaderPipeline(store, config=PipelineConfig()).verify(response, session_transcript=st, now=now)
    assert result.valid, [c for c in result.checks if not c.passed]
    _other, other_st = session()
    refused = ReaderPipeline(store).verify(response, session_transcript=other_st, now=now)
    assert not refused.valid and "device_authentication" in {c.name for c in refused.checks if not c.passed}
    (doc,) = result.documents
    return doc
