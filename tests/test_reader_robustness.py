"""The reader never crashes on the wallet's bytes (fuzzed SessionData, DeviceEngagement,
DeviceResponse plaintext, HTTP bodies), and its trust store imports a signed VICAL."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_present_kit import DOCTYPE, NS, T0, StatusPublisher, reader_world

import wallet_sim
from mcred.api_routes import _LazyReader
from mcred.present import present_in_process, reader_app, reader_pipeline
from protocols import cbor, cose
from protocols.mdoc import DisclosedDocument, SessionData, VerificationResult
from reader.errors import ReaderSessionError
from reader.http import ReaderService
from reader.session import ReaderSession, RequestSpec
from reader.trust import TrustError, TrustStore, VicalImport, check_vical_succession
from wallet_sim.consent import RulesConsent
from wallet_sim.engagement import Engagement
from wallet_sim.wallet import Wallet

REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False}})
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return reader_world(tmp_path_factory.mktemp("home"))


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzzed_session_data_gives_a_failed_session_check(world, data):
    reader = ReaderSession([REQUEST], world["pipeline"])
    reader.start(Engagement.new().bytes)
    outcome = reader.receive(data)
    assert not outcome.valid and outcome.result.checks[0].name == "session"


@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=80).map(lambda t: "mdoc:" + t))
def test_fuzzed_engagement_raises_only_reader_session_error(world, data):
    try:
        ReaderSession([REQUEST], world["pipeline"]).start(data)
    except ReaderSessionError:
        pass


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzzed_device_response_plaintext_is_a_verdict_not_a_crash(world, data):
    result = world["pipeline"].verify(data, session_transcript=None)
    assert not result.valid


def test_mutated_real_response_never_crashes_nor_accepts_a_changed_value(world):
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    w = Wallet(se.transmit, RulesConsent.allow_all(), clock=world["clock"])
    out = present_in_process(w, ReaderSession([REQUEST], world["pipeline"]))
    assert out.valid
    genuine = out.result["documents"][0]["elements"]
    raw = out.device_response
    for i in range(0, len(raw), max(1, len(raw) // 150)):
        for bit in (0x01, 0x80):
            mutated = raw[:i] + bytes([raw[i] ^ bit]) + raw[i + 1:]
            result = world["pipeline"].verify(mutated, session_transcript=out.session_transcript)
            # a mutation in an unsigned, ignored place (an unknown map key) may still verify,
            # but then only with genuine values: never a changed one
            for doc in result.to_json()["documents"]:
                for ns, elements in doc["elements"].items():
                    assert elements.items() <= genuine.get(ns, {}).items()


def test_http_endpoints_answer_garbage_with_4xx(world):
    client = TestClient(reader_app(ReaderService(world["pipeline"], [REQUEST])))
    assert client.post("/sessions", content=b"\x00garbage").status_code == 400
    assert client.post("/sessions", content=b"mdoc:!!!").status_code == 400
    assert client.post("/sessions/nope", content=b"x").status_code == 404
    assert client.get("/sessions/nope/result").status_code == 404
    r = client.post("/sessions", content=Engagement.new().uri.encode())
    assert r.status_code == 201 and r.headers["content-type"] == "application/cbor"
    sid = r.headers["x-session-id"]
    assert client.get(f"/sessions/{sid}/result").status_code == 409
    r = client.post(f"/sessions/{sid}", content=b"\xa0")
    assert r.status_code == 200 and SessionData.decode(r.content).status == 20
    verdict = client.get(f"/sessions/{sid}/result").json()
    assert verdict["valid"] is False and verdict["checks"][0]["name"] == "session"


def _present_and_fetch_result(world, client):
    """The phone presents to the reader app behind ``client``; the session id and the
    result route's answer."""
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    session = Wallet(se.transmit, RulesConsent.allow_all(), clock=world["clock"]).start()
    r = client.post("/sessions", content=session.engagement.uri.encode())
    sid = r.headers["x-session-id"]
    assert client.post(f"/sessions/{sid}", content=session.receive(r.content)).status_code == 200
    return sid, client.get(f"/sessions/{sid}/result")


def test_verdict_is_the_outcome_as_json_byte_for_byte(world):
    """The result route serves the verdict serialized once, when the SessionData was verified:
    the bytes and media type FastAPI's JSONResponse renders from the outcome."""
    service = ReaderService(world["pipeline"], [REQUEST])
    client = TestClient(reader_app(service))
    sid, r = _present_and_fetch_result(world, client)
    outcome = service.outcome(sid)
    assert outcome.valid and r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.content == JSONResponse(outcome.result.to_json()).body


def test_disclosed_values_json_has_no_number_for_are_rendered_as_strings(world):
    """A NaN or an infinity among the disclosed values (CBOR floats; JSON has no number for
    them): the verdict still renders, with "NaN", "Infinity", "-Infinity" (the protobuf JSON
    mapping's strings); the result route answers 200, not the catch-all 500 it gave before."""
    odd = (float("nan"), float("inf"), float("-inf"))

    class OddValues:
        def verify(self, response, **kwargs):
            result = world["pipeline"].verify(response, **kwargs)
            docs = tuple(DisclosedDocument(d.doc_type, {ns: {k: odd[i % 3] for i, k in enumerate(e)}
                                                         for ns, e in d.elements.items()})
                         for d in result.documents)
            return VerificationResult(result.checks, docs)

    client = TestClient(reader_app(ReaderService(OddValues(), [REQUEST])), raise_server_exceptions=False)
    sid, r = _present_and_fetch_result(world, client)
    assert r.status_code == 200
    values = [v for d in r.json()["documents"] for e in d["elements"].values() for v in e.values()]
    assert values and set(values) <= {"NaN", "Infinity", "-Infinity"} and "NaN" in values


def test_lazy_reader_answers_an_unknown_verdict_without_being_built():
    """The issuer service's reader is built on first use (key store, database); the result
    route runs on the event loop and must not build it: no session exists before open()."""
    lazy = _LazyReader(None)  # a context would only be read by the build
    assert lazy.verdict("nope") is None and lazy._service is None


# -- VICAL -----------------------------------------------------------------------------------


def _vical_signer():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"), x509.NameAttribute(NameOID.COMMON_NAME, "VICAL")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(T0 - dt.timedelta(days=1)).not_valid_after(T0 + dt.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return key, cert


def _vical(key, cert, iaca_cert, doc_types):
    der = cert.public_bytes(serialization.Encoding.DER)
    payload = {"version": "1.0", "vicalProvider": "Test VICAL", "date": T0, "vicalIssueID": 3,
               "certificateInfos": [{"certificate": iaca_cert.public_bytes(serialization.Encoding.DER),
                                     "serialNumber": iaca_cert.serial_number, "ski": b"\x01",
                                     "docType": doc_types, "issuingCountry": "JP"},
                                    {"certificate": b"junk", "docType": ["x"]}]}
    return cose.Sign1.create(cose.key_signer(key), cbor.dumps(payload), unprotected={33: der}).encode()


def test_vical_import_scopes_anchors_to_their_doctypes(world):
    key, cert = _vical_signer()
    store = TrustStore()
    imported = store.import_vical(_vical(key, cert, world["pki"].iaca, [DOCTYPE]), vical_anchors=[cert], now=T0)
    assert imported.imported == 1 and imported.provider == "Test VICAL" and len(imported.skipped) == 1
    assert imported.issue_id == 3 and imported.date == T0
    clock = world["clock"]
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    w = Wallet(se.transmit, RulesConsent.allow_all(), clock=clock)
    pipe = reader_pipeline(trust=store, clock=clock, fetcher=StatusPublisher(world["pki"], clock))
    assert present_in_process(w, ReaderSession([REQUEST], pipe)).valid
    # the same IACA scoped to another docType does not vouch for ours
    store = TrustStore()
    store.import_vical(_vical(key, cert, world["pki"].iaca, ["org.iso.18013.5.1.mDL"]), vical_anchors=[cert], now=T0)
    pipe = reader_pipeline(trust=store, clock=clock, fetcher=StatusPublisher(world["pki"], clock))
    out = present_in_process(w, ReaderSession([REQUEST], pipe))
    assert {c["name"] for c in out.result["checks"] if not c["passed"]} == {"trust_anchor_scope"}


def test_vical_from_an_untrusted_signer_is_refused(world):
    key, cert = _vical_signer()
    _, other = _vical_signer()
    with pytest.raises(TrustError, match="VICAL refused"):
        TrustStore().import_vical(_vical(key, cert, world["pki"].iaca, [DOCTYPE]), vical_anchors=[other], now=T0)
    with pytest.raises(TrustError):
        TrustStore().import_vical(b"\x00", vical_anchors=[cert], now=T0)


def test_a_vical_with_a_detached_or_unreadable_payload_is_refused():
    """Annex C: the VICAL is the COSE_Sign1's payload. A detached payload (nil) has nothing
    to verify or read; a signed payload that is no CBOR has no certificateInfos: each a
    TrustError that says why, and nothing is imported."""
    key, cert = _vical_signer()
    der = cert.public_bytes(serialization.Encoding.DER)
    store = TrustStore()
    detached = cose.Sign1.create(cose.key_signer(key), None, detached=cbor.dumps({"version": "1.0"}),
                                 unprotected={33: der}).encode()
    with pytest.raises(TrustError, match="detached"):
        store.import_vical(detached, vical_anchors=[cert], now=T0)
    garbage = cose.Sign1.create(cose.key_signer(key), b"\xff\xff", unprotected={33: der}).encode()
    with pytest.raises(TrustError, match="VICAL payload"):
        store.import_vical(garbage, vical_anchors=[cert], now=T0)
    assert len(store) == 0


_INFOS = [{"certificate": b"junk", "docType": ["x"]}]


@pytest.mark.parametrize(("payload", "why"), [
    ([1, 2], "not a map with certificateInfos"),
    ({"vicalProvider": "P", "date": T0}, "not a map with certificateInfos"),
    ({"vicalProvider": "P", "date": T0, "certificateInfos": {"certificate": b""}}, "not a map with certificateInfos"),
    ({"date": T0, "certificateInfos": _INFOS}, "vicalProvider"),
    ({"vicalProvider": "P", "date": "2026-06-01T09:00:00Z", "certificateInfos": _INFOS}, "date"),
    ({"vicalProvider": "P", "date": T0, "nextUpdate": T0 - dt.timedelta(seconds=1), "certificateInfos": _INFOS},
     "nextUpdate"),
])
def test_a_vical_payload_without_its_required_fields_is_refused(payload, why):
    """Annex C: the VICAL map has vicalProvider (tstr), date (tdate) and certificateInfos
    (an array), and is not to be used past its nextUpdate: anything else is a TrustError
    that names what is wrong, and nothing is imported."""
    key, cert = _vical_signer()
    der = cert.public_bytes(serialization.Encoding.DER)
    store = TrustStore()
    signed = cose.Sign1.create(cose.key_signer(key), cbor.dumps(payload), unprotected={33: der}).encode()
    with pytest.raises(TrustError, match=why):
        store.import_vical(signed, vical_anchors=[cert], now=T0)
    assert len(store) == 0


def test_a_vical_is_used_up_to_its_next_update_included(world):
    key, cert = _vical_signer()
    der = cert.public_bytes(serialization.Encoding.DER)
    payload = {"vicalProvider": "P", "date": T0, "nextUpdate": T0, "certificateInfos": [
        {"certificate": world["pki"].iaca.public_bytes(serialization.Encoding.DER), "docType": [DOCTYPE]}]}
    signed = cose.Sign1.create(cose.key_signer(key), cbor.dumps(payload), unprotected={33: der}).encode()
    assert TrustStore().import_vical(signed, vical_anchors=[cert], now=T0).imported == 1


def test_vical_entries_without_a_certificate_or_a_doctype_list_are_skipped_by_name(world):
    """Each CertificateInfo needs its certificate (bstr) and docType ([+ tstr]); one that
    lacks them is skipped with its place named, and the others are imported. A
    vicalIssueID that is no uint is not reported."""
    key, cert = _vical_signer()
    der = cert.public_bytes(serialization.Encoding.DER)
    good = {"certificate": world["pki"].iaca.public_bytes(serialization.Encoding.DER), "docType": [DOCTYPE]}
    infos = [7, {"docType": [DOCTYPE]}, {**good, "docType": []}, {**good, "docType": [1]}, {**good, "docType": "x"},
             good]
    payload = {"vicalProvider": "P", "date": T0, "vicalIssueID": True, "certificateInfos": infos}
    signed = cose.Sign1.create(cose.key_signer(key), cbor.dumps(payload), unprotected={33: der}).encode()
    store = TrustStore()
    imported = store.import_vical(signed, vical_anchors=[cert], now=T0)
    assert imported.imported == 1 and len(store) == 1
    assert imported.issue_id is None  # a bool is no uint
    assert imported.skipped == ("certificateInfos[0]: no certificate", "certificateInfos[1]: no certificate",
                                *(f"certificateInfos[{n}]: docType must be a non-empty list of text" for n in (2, 3, 4)))


_LATER = T0 + dt.timedelta(days=1)


@pytest.mark.parametrize(("held", "new", "why"), [
    (None, VicalImport("P", T0, 5, 1, (), b"a"), None),  # the first is taken
    (VicalImport("P", T0, 5, 1, (), b"a"), VicalImport("P", _LATER, 6, 1, (), b"b"), None),  # newer
    (VicalImport("P", T0, 5, 1, (), b"a"), VicalImport("P", T0, 5, 1, (), b"a"), None),  # the same again
    (VicalImport("P", T0, 5, 1, (), b"a"), VicalImport("Q", T0, 1, 1, (), b"b"), None),  # another provider's
    (VicalImport("P", T0, 5, 1, (), b"a"), VicalImport("P", _LATER, 4, 1, (), b"b"),
     "'P' vicalIssueID 4 goes back from 5, that of the VICAL held"),  # the issue ID rules, not the date
    (VicalImport("P", T0, 5, 1, (), b"a"), VicalImport("P", T0, 5, 1, (), b"b"),
     "'P' vicalIssueID 5 is that of the VICAL held but its content differs"),
    (VicalImport("P", _LATER, None, 1, (), b"a"), VicalImport("P", T0, None, 1, (), b"b"),
     f"'P' date {T0.isoformat()} goes back from {_LATER.isoformat()}"),  # no issue IDs: the dates
    (VicalImport("P", _LATER, 5, 1, (), b"a"), VicalImport("P", T0, None, 1, (), b"b"), "date"),
    (VicalImport("P", T0, None, 1, (), b"a"), VicalImport("P", T0, None, 1, (), b"b"), "content differs"),
    (VicalImport("P", T0, None, 1, (), b"a"), VicalImport("P", _LATER, None, 1, (), b"b"), None),
])
def test_a_vical_that_goes_back_from_the_one_held_is_refused(held, new, why):
    """A replayed VICAL, validly signed and before its nextUpdate, may list an IACA its
    provider has since dropped: from the provider of the VICAL held, a lower vicalIssueID
    (without issue IDs: an earlier date) is refused, and so is an equal one of other content."""
    if why is None:
        check_vical_succession(held, new)
    else:
        with pytest.raises(TrustError, match=re.escape(why)) as refused:
            check_vical_succession(held, new)
        assert str(refused.value).startswith("VICAL refused: 'P' ")


def test_import_vical_refuses_a_rollback_before_adding_an_iaca(world):
    key, cert = _vical_signer()
    older = _vical(key, cert, world["pki"].iaca, [DOCTYPE])  # vicalIssueID 3
    held = TrustStore().import_vical(older, vical_anchors=[cert], now=T0)
    assert held.issue_id == 3 and len(held.digest) == 32
    # the same VICAL signed again (another signature, the same content) is the same VICAL
    again = TrustStore().import_vical(_vical(key, cert, world["pki"].iaca, [DOCTYPE]), vical_anchors=[cert],
                                      now=T0, held=held)
    assert again.digest == held.digest and again.imported == 1
    store = TrustStore()
    with pytest.raises(TrustError, match="vicalIssueID 3 goes back from 4"):
        store.import_vical(older, vical_anchors=[cert], now=T0,
                           held=VicalImport("Test VICAL", T0, 4, 1, (), b"x" * 32))
    assert len(store) == 0


def test_anchor_for_by_object_follows_a_replaced_anchor():
    """anchor_for finds the store's own certificate objects by identity; when an anchor is
    re-added (same certificate, new scope) the old object is answered with the new anchor."""
    from reader.trust import TrustAnchor

    _, cert = _vical_signer()
    store = TrustStore()
    first = store.add(cert)
    assert store.anchor_for(cert) is first and first.allows("any")
    again = x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER))  # equal, not the same object
    scoped = store.add(TrustAnchor(again, frozenset({DOCTYPE}), "VICAL"))
    assert len(store) == 1
    assert store.anchor_for(cert) is scoped and store.anchor_for(again) is scoped
    assert not store.anchor_for(cert).allows("org.iso.18013.5.1.mDL")
    _, other = _vical_signer()
    assert store.anchor_for(other) is None


# -- found by the deep fuzz campaign (mutated and re-signed responses, status tokens) ---------


def _issuer_signed(pki, *, valid_from, valid_until, signed=None, status=None) -> bytes:
    from protocols import mdoc

    device = ec.generate_private_key(ec.SECP256R1())
    return mdoc.build_issuer_signed(
        {NS: {"family_name": "山田"}}, DOCTYPE, device.public_key(), cose.key_signer(pki.ds_key),
        [pki.ds.public_bytes(serialization.Encoding.DER)], valid_from, valid_until, signed=signed,
        status=status).encode()


@pytest.mark.parametrize(("valid_from", "valid_until", "passed"), [
    (T0, dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), True),  # "never expires"
    (dt.datetime(1, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), True),
    (dt.datetime(9999, 12, 31, 23, 59, 58, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
     False),
])
def test_an_mso_valid_to_the_end_of_time_gets_a_validity_verdict(world, valid_from, valid_until, passed):
    """An MSO whose validUntil is 9999-12-31T23:59:59Z (or validFrom 0001-01-01): the skew
    added to it overflowed datetime, and the verdict was the catch-all "unverifiable:
    OverflowError: date value out of range" for the whole document instead of ``validity``."""
    pki = world["pki"]
    data = _issuer_signed(pki, valid_from=valid_from, valid_until=valid_until, signed=min(T0, valid_from))
    result = world["pipeline"].verify_issuer_signed(data)
    checks = {c.name: c for c in result.checks}
    assert "validity" in checks, [(c.name, c.reason) for c in result.checks]
    assert checks["validity"].passed is passed
    assert not any("Overflow" in c.reason for c in result.checks)
