"""ISO/IEC 18013-5 second-edition requests between our reader and our wallet, in-process,
over HTTP and online (Annex C): readerAuthAll reaches the holder as readerAuth does; an
alternative stands in for an element the document does not hold; use cases pick the
document set the wallet answers, and the reader refuses an answer that meets no mandatory
one; issuerIdentifiers keep a document of another issuer back; maximumResponseSize is kept."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_present_kit import DOCTYPE, NS, Clock, kit_pipeline, kit_world, reader_pki
from test_wallet_session import Peer

import wallet_sim
from mcred.present import present_in_process, present_online_in_process, present_over_http
from protocols import cbor
from protocols.cardsub import ISO_NAMESPACE
from protocols.mdoc import (
    AlternativeDataElements,
    DeviceRequest,
    DeviceResponse,
    DocRequestInfo,
    UseCase,
)
from reader.errors import ReaderSessionError
from reader.http import ReaderService
from reader.online import OnlineReaderSession
from reader.session import MATCHES_REQUEST, ReaderSession, RequestSpec
from wallet_sim.consent import InteractiveConsent, RulesConsent
from wallet_sim.wallet import Wallet

REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_20": False}})
MDL = RequestSpec("org.iso.18013.5.1.mDL", {ISO_NAMESPACE: {"family_name": False, "age_over_18": False}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory, slots=(0, 1))


def wallet(world, consent=None, **kw) -> Wallet:
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    return Wallet(se.transmit, consent or RulesConsent.allow_all(), clock=Clock(), **kw)


def reader(world, requests=(REQUEST,), **kw) -> ReaderSession:
    return ReaderSession(list(requests), kit_pipeline(world["pki"]), **kw)


def check(out, name: str) -> dict:
    return next(c for c in out.result["checks"] if c["name"] == name)


def disclosed(out) -> dict[str, dict[str, set[str]]]:
    """docType -> namespace -> the identifiers the reader got"""
    return {d["docType"]: {ns: set(e) for ns, e in d["elements"].items()} for d in out.result["documents"]}


def response_event(out):
    return [e for e in out.wallet_events if e.kind == "response"]


# -- readerAuthAll --------------------------------------------------------------------------------


def test_reader_auth_all_shows_the_verified_reader_to_the_holder(world):
    pki = reader_pki()
    shown = []
    consent = InteractiveConsent(ask=lambda q: "y", show=shown.append)
    r = reader(world, (REQUEST, MDL), reader_signer=pki.signer, reader_chain=pki.chain, reader_auth_all=True)
    out = present_in_process(wallet(world, consent, reader_trust_anchors=[pki.ca]), r)
    assert out.valid, out.result
    assert shown[0] == "reader: CN=Shop Reader 1,C=JP (verified)"
    held, not_held = response_event(out)
    assert held.reader.trusted and held.reader.signature_valid
    assert not_held.detail == "docType not held" and not_held.reader == held.reader
    assert not_held.not_held == {ns: frozenset(ids) for ns, ids in MDL.items.items()} and not not_held.refused
    # what the reader sent: one signature for both DocRequests, none of their own
    assert r.reader_auth_all and all(d.reader_auth is None for d in r._device_request().doc_requests)


def test_reader_auth_all_by_an_untrusted_reader_is_named_and_a_cautious_holder_releases_nothing(world):
    pki = reader_pki()
    shown = []
    out = present_in_process(wallet(world, InteractiveConsent(ask=lambda q: "y", show=shown.append)),
                             reader(world, reader_signer=pki.signer, reader_chain=pki.chain, reader_auth_all=True))
    assert out.valid and "NOT trusted" in shown[0]
    cautious = RulesConsent.from_mapping({"documents": {"*": {"*": "*"}}, "trusted_readers_only": True})
    out = present_in_process(wallet(world, cautious),
                             reader(world, reader_signer=pki.signer, reader_chain=pki.chain, reader_auth_all=True))
    assert not out.valid and response_event(out)[0].detail == "nothing released"
    out = present_in_process(wallet(world, cautious, reader_trust_anchors=[pki.ca]),
                             reader(world, reader_signer=pki.signer, reader_chain=pki.chain, reader_auth_all=True))
    assert out.valid


def test_reader_auth_all_needs_a_reader_key():
    with pytest.raises(ReaderSessionError, match="readerAuthAll needs a reader key"):
        ReaderSession([REQUEST], None, reader_auth_all=True)


# -- alternativeDataElements ----------------------------------------------------------------------


def _age_21_or(*alternatives) -> RequestSpec:
    info = DocRequestInfo(alternative_data_elements=(AlternativeDataElements(
        (NS, "age_over_21"), tuple(tuple((NS, e) for e in s) for s in alternatives)),))
    return RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_21": True}}, info)


def test_an_alternative_stands_in_for_an_element_the_document_does_not_hold(world):
    asked = []
    consent = InteractiveConsent(ask=lambda q: asked.append(q) or "y", show=lambda s: None)
    # the first set names an element nobody holds; the second is held
    out = present_in_process(wallet(world, consent), reader(world, (_age_21_or(("age_in_years",), ("birth_date",)),)))
    assert out.valid, out.result
    assert check(out, MATCHES_REQUEST)["passed"]
    assert disclosed(out) == {DOCTYPE: {NS: {"family_name", "birth_date"}}}
    assert any("birth_date (will be RETAINED) (in place of" in q and "age_over_21" in q for q in asked)
    event = response_event(out)[0]
    assert "birth_date in place of age_over_21" in event.detail
    # not held, not refused by the holder; told so in the document's errors all the same
    assert event.not_held == {NS: frozenset({"age_over_21"})} and event.refused == {}
    doc = DeviceResponse.decode(out.device_response).documents[0]
    assert doc.errors == {NS: {"age_over_21": 0}}


def test_without_alternatives_nothing_stands_in(world):
    out = present_in_process(wallet(world), reader(world, (RequestSpec(
        DOCTYPE, {NS: {"family_name": False, "age_over_21": False}}),)))
    assert out.valid and disclosed(out) == {DOCTYPE: {NS: {"family_name"}}}


def test_the_holder_may_refuse_the_alternative(world):
    consent = InteractiveConsent(ask=lambda q: "n" if "birth_date" in q else "y", show=lambda s: None)
    out = present_in_process(wallet(world, consent), reader(world, (_age_21_or(("birth_date",)),)))
    assert out.valid and disclosed(out) == {DOCTYPE: {NS: {"family_name"}}}


def test_a_reader_refuses_an_element_that_is_no_alternative_of_what_it_asked(world):
    # the wallet is sent alternatives that the reader's own request spec does not list
    plain = RequestSpec(DOCTYPE, {NS: {"family_name": False, "age_over_21": False}})
    r, sender = reader(world, (plain,)), reader(world, (_age_21_or(("birth_date",)),))

    def sent():
        sender.transcript = r.transcript
        return sender._device_request()

    r._device_request = sent
    out = present_in_process(wallet(world), r)
    assert not out.valid and check(out, MATCHES_REQUEST)["reason"] == f"not requested: {NS}/birth_date"


# -- use cases ------------------------------------------------------------------------------------


def test_a_use_case_with_alternative_document_sets_gets_the_set_the_wallet_holds(world):
    r = reader(world, (MDL, REQUEST), use_cases=[UseCase(True, ((0,), (1,)))])
    out = present_in_process(wallet(world), r)
    assert out.valid, out.result
    response = DeviceResponse.decode(out.device_response)
    assert [d.doc_type for d in response.documents] == [DOCTYPE]
    assert response.document_errors == ()  # the mDL set was not chosen: nothing to excuse
    assert [e.doc_type for e in response_event(out)] == [DOCTYPE]


def test_an_answer_that_meets_no_mandatory_use_case_is_refused_by_the_reader(world):
    r = reader(world, (REQUEST, MDL), use_cases=[UseCase(True, ((0, 1),))])
    out = present_in_process(wallet(world), r)
    assert not out.valid
    matches = check(out, MATCHES_REQUEST)
    assert not matches["passed"] and matches["reason"] == (
        f"mandatory use case 0 not met: none of {DOCTYPE}+org.iso.18013.5.1.mDL disclosed")
    assert any(e.kind == "use_cases" for e in out.wallet_events)
    # an optional use case that is not met does not fail the presentation
    out = present_in_process(wallet(world), reader(world, (REQUEST, MDL), use_cases=[
        UseCase(True, ((0,),)), UseCase(False, ((1,),))]))
    assert out.valid, out.result


def test_use_cases_must_name_requests_the_reader_makes():
    with pytest.raises(ReaderSessionError, match="use case 0"):
        ReaderSession([REQUEST], None, use_cases=[UseCase(True, ((1,),))])


# -- issuerIdentifiers ----------------------------------------------------------------------------


def _ski(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_issuer_identifiers_keep_back_a_document_of_another_issuer(world):
    ours = _ski(world["pki"].iaca)
    out = present_in_process(wallet(world), reader(world, (REQUEST.with_info(
        DocRequestInfo(issuer_identifiers=(b"\x01" * 20, ours))),)))
    assert out.valid, out.result
    out = present_in_process(wallet(world), reader(world, (REQUEST.with_info(
        DocRequestInfo(issuer_identifiers=(b"\x01" * 20,))),)))
    assert not out.valid
    assert response_event(out)[0].detail == "docType not held from any of the reader's issuerIdentifiers"
    assert DeviceResponse.decode(out.device_response).document_errors == ({DOCTYPE: 0},)


# -- maximumResponseSize --------------------------------------------------------------------------


def test_a_document_over_the_readers_maximum_response_size_is_not_sent(world):
    portrait = RequestSpec(DOCTYPE, {NS: {"family_name": False, "portrait": False}})
    out = present_in_process(wallet(world), reader(world, (portrait.with_info(
        DocRequestInfo(maximum_response_size=200)),)))
    assert not out.valid
    event = response_event(out)[0]
    assert "over the reader's maximumResponseSize (200)" in event.detail
    out = present_in_process(wallet(world), reader(world, (portrait.with_info(
        DocRequestInfo(maximum_response_size=100_000)),)))
    assert out.valid, out.result


# -- the same over HTTP and online ----------------------------------------------------------------


def test_a_reader_service_signs_with_reader_auth_all_over_http(world):
    from fastapi.testclient import TestClient

    from mcred.present import reader_app

    pki = reader_pki()
    service = ReaderService(kit_pipeline(world["pki"]), [MDL, REQUEST], reader_signer=pki.signer,
                            reader_chain=pki.chain, reader_auth_all=True, use_cases=[UseCase(True, ((0,), (1,)))])
    shown = []
    w = wallet(world, InteractiveConsent(ask=lambda q: "y", show=shown.append), reader_trust_anchors=[pki.ca])
    with TestClient(reader_app(service)) as client:
        out = present_over_http(w, str(client.base_url), client=client)
    assert out.valid, out.result
    assert shown[0] == "reader: CN=Shop Reader 1,C=JP (verified)"
    assert list(disclosed(out)) == [DOCTYPE]


def test_an_online_annex_c_request_carries_reader_auth_all(world):
    pki = reader_pki()
    shown = []
    w = wallet(world, InteractiveConsent(ask=lambda q: "y", show=shown.append), reader_trust_anchors=[pki.ca])
    r = OnlineReaderSession([REQUEST], kit_pipeline(world["pki"]), "https://shop.example", reader_signer=pki.signer,
                            reader_chain=pki.chain, reader_auth_all=True)
    out = present_online_in_process(w, r)
    assert out.valid, out.result
    assert "(verified)" in shown[-1] or any("(verified)" in s for s in shown)
    sent = DeviceRequest.decode(r.request.device_request)
    assert sent.version == "1.1" and len(sent.reader_auth_all) == 1
    assert cbor.loads(sent.encode())["readerAuthAll"]


# -- fuzz: a mutated second-edition request never crashes the wallet ----------------------------


@pytest.fixture(scope="module")
def signed_request_parts(world):
    pki = reader_pki()
    info = DocRequestInfo(alternative_data_elements=(AlternativeDataElements(
        (NS, "age_over_21"), (((NS, "birth_date"),),)),), issuer_identifiers=(b"\x01" * 20,), maximum_response_size=9000)
    return pki, [_age_21_or(("birth_date",)), REQUEST.with_info(info)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_second_edition_requests_get_status_codes_and_leave_the_se_intact(world, signed_request_parts, data):
    pki, specs = signed_request_parts
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    s0 = se.persisted_image()
    s = wallet(world, reader_trust_anchors=[pki.ca]).start()
    peer = Peer(s)
    r = ReaderSession(specs, None, reader_signer=pki.signer, reader_chain=pki.chain, reader_auth_all=True,
                      use_cases=[UseCase(True, ((0,), (1,)))])
    r.transcript = peer.transcript
    raw = bytearray(r._device_request().encode())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    response = peer.response(s.receive(peer.establishment(bytes(raw))))
    try:
        cbor.loads(bytes(raw))
        parsed = True
    except cbor.CborDecodeError:
        parsed = False
    assert response.status in ((0, 12) if parsed else (11,))
    assert se.persisted_image() == s0


# -- the commands -----------------------------------------------------------------------------------


def _pem_files(tmp_path, world, pki):
    from cryptography.hazmat.primitives import serialization

    files = {"iaca": world["pki"].iaca_pem(),
             "cert": pki.leaf.public_bytes(serialization.Encoding.PEM),
             "key": pki.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()),
             "consent": b'{"documents": {"*": {"*": "*"}}}'}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: str(tmp_path / name) for name in files}


def test_mcred_reader_nfc_asks_with_the_second_edition(world, tmp_path, monkeypatch):
    import json

    from test_present_kit import make_phone
    from typer.testing import CliRunner

    from mcred.cli.main import app

    monkeypatch.setenv("MCRED_HOME", str(world["home"]))
    # no status list to fetch from here; valid at the command's own clock
    phone = make_phone(world["home"], world["pki"], idx=None, now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    f = _pem_files(tmp_path, world, reader_pki())
    base = ["reader", "nfc", "--json", "--phone", phone, "--consent", f["consent"], "--trust", f["iaca"],
            "--no-require-status", "--no-ds-crl", "--request", f"{NS}:family_name,{NS}:age_over_21!"]
    result = CliRunner().invoke(app, [*base, "--reader-cert", f["cert"], "--reader-key", f["key"], "--reader-auth-all",
                                      "--alternative", f"{NS}:age_over_21={NS}:age_in_years|{NS}:birth_date",
                                      "--issuer-identifiers", "--max-response-size", "20000"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["valid"] and set(out["documents"][0]["elements"][NS]) == {"family_name", "birth_date"}
    # an issuer the reader does not trust: the wallet keeps the document back
    other = tmp_path / "other.pem"
    from test_present_kit import make_pki

    other.write_bytes(make_pki("Other").iaca_pem())
    result = CliRunner().invoke(app, ["reader", "nfc", "--json", "--phone", phone, "--consent", f["consent"],
                                      "--trust", str(other), "--no-require-status", "--no-ds-crl", "--issuer-identifiers"])
    assert result.exit_code == 1 and not json.loads(result.stdout)["valid"]


@pytest.mark.parametrize(("args", "message"), [
    (["--reader-auth-all"], "--reader-auth-all signs the request: give --reader-cert and --reader-key"),
    (["--alternative", f"{NS}:age_over_21"], "expected NS:ID=NS:ID"),
    (["--alternative", f"{NS}:age_over_21={NS}:birth_date"], "is not asked for (--request)"),
    (["--alternative", f"{NS}:family_name=birth_date"], "'birth_date' is not NAMESPACE:IDENTIFIER"),
    # the README's placeholder left in: every answer came back with no documents
    (["--request", "NS:age_over_21"], "'NS': docType jp.mcred.mynumber.cardsub.1 has the namespaces"),
])
def test_second_edition_options_name_what_is_wrong(world, tmp_path, args, message):
    import json

    from typer.testing import CliRunner

    from mcred.cli.main import app

    iaca = tmp_path / "iaca.pem"
    iaca.write_bytes(world["pki"].iaca_pem())
    result = CliRunner().invoke(app, ["reader", "nfc", "--json", "--phone", "ph-x", "--consent", str(iaca),
                                      "--trust", str(iaca), "--request", f"{NS}:family_name", *args])
    assert result.exit_code == 2, result.output
    assert message in json.loads(result.stdout)["error"]


def test_mcred_reader_serve_settings_carry_the_second_edition(world, tmp_path):
    from mcred.present import ReaderServeConfig

    f = _pem_files(tmp_path, world, reader_pki())
    config = ReaderServeConfig(trust=(f["iaca"],), reader_cert=f["cert"], reader_key=f["key"], reader_auth_all=True,
                               request=(f"{NS}:family_name", f"{NS}:age_over_21"),
                               alternatives=(f"{NS}:age_over_21={NS}:birth_date",), issuer_identifiers=True,
                               max_response_size=5000)
    service, _, what = ReaderServeConfig.from_json(config.to_json()).build()  # as each worker builds it
    info = service.requests[0].info
    assert service.reader_auth_all
    assert info.issuer_identifiers == (_ski(world["pki"].iaca),) and info.maximum_response_size == 5000
    assert info.alternatives_for((NS, "age_over_21")) == (((NS, "birth_date"),),)
    assert "'requestInfo'" in what and "'maximumResponseSize': 5000" in what


# -- the same asked in DCQL (OpenID4VP): claim sets, credential sets, trusted authorities -----------


def test_alternatives_become_dcql_claim_sets_as_multipaz_converts_them():
    from protocols.mdoc import oid4vp

    info = DocRequestInfo(alternative_data_elements=(AlternativeDataElements(
        (ISO_NAMESPACE, "age_over_18"), (((ISO_NAMESPACE, "age_in_years"),), ((ISO_NAMESPACE, "birth_date"),))),),
        issuer_identifiers=(b"\xaa" * 20,))
    q = oid4vp.credential_query("cred0", "org.iso.18013.5.1.mDL",
                                {ISO_NAMESPACE: {"given_name": False, "age_over_18": False}}, info)
    assert q.to_json() == {
        "id": "cred0", "format": "mso_mdoc", "meta": {"doctype_value": "org.iso.18013.5.1.mDL"},
        "claims": [{"id": f"c{i}", "path": [ISO_NAMESPACE, e], "intent_to_retain": False}
                   for i, e in enumerate(("given_name", "age_over_18", "age_in_years", "birth_date"))],
        "claim_sets": [["c0", "c1"], ["c0", "c2"], ["c0", "c3"]],
        "trusted_authorities": [{"type": "aki", "values": ["qqqqqqqqqqqqqqqqqqqqqqqqqqo"]}]}
    assert oid4vp.parse_dcql({"credentials": [q.to_json()]})[0] == q
    # no second-edition info: the plain query of before
    assert "claim_sets" not in oid4vp.credential_query("q0", "d", {"n": {"e": True}}).to_json()


@pytest.mark.parametrize("bad", [
    [], [{"type": "aki"}], [{"type": "aki", "values": []}], [{"type": "", "values": ["x"]}],
    [{"type": "aki", "values": ["not base64url!"]}], "aki",
])
def test_malformed_trusted_authorities_are_named(bad):
    from protocols.mdoc import oid4vp

    query = {"id": "q0", "format": "mso_mdoc", "meta": {"doctype_value": DOCTYPE},
             "claims": [{"path": [NS, "family_name"]}], "trusted_authorities": bad}
    with pytest.raises(oid4vp.Oid4vpError, match=r"trusted_authorities"):
        oid4vp.parse_dcql({"credentials": [query]})


def _oid4vp_reader(world, requests, **kw):
    from reader.online import Oid4vpReaderSession

    return Oid4vpReaderSession(list(requests), kit_pipeline(world["pki"]), "https://shop.example", **kw)


def test_an_openid4vp_reader_asks_the_second_edition_in_dcql(world):
    ours = _ski(world["pki"].iaca)
    spec = _age_21_or(("birth_date",)).with_info(DocRequestInfo(
        alternative_data_elements=_age_21_or(("birth_date",)).info.alternative_data_elements, issuer_identifiers=(ours,)))
    r = _oid4vp_reader(world, (MDL, spec), use_cases=[UseCase(True, ((0,), (1,)))])
    out = present_online_in_process(wallet(world), r)
    assert out.valid, out.result
    assert disclosed(out) == {DOCTYPE: {NS: {"family_name", "birth_date"}}}
    dcql = r.request.to_json()["data"]["dcql_query"]
    assert dcql["credential_sets"] == [{"options": [["q0"], ["q1"]]}]
    assert dcql["credentials"][1]["claim_sets"] == [["c0", "c1"], ["c0", "c2"]]
    assert dcql["credentials"][1]["trusted_authorities"][0]["type"] == "aki"


def test_an_openid4vp_query_for_another_issuer_gets_nothing(world):
    r = _oid4vp_reader(world, (REQUEST.with_info(DocRequestInfo(issuer_identifiers=(b"\x01" * 20,))),))
    out = present_online_in_process(wallet(world), r)
    assert not out.valid
    assert response_event(out)[0].detail == "docType not held from any of the reader's issuerIdentifiers"


def test_a_cross_device_reader_asks_the_second_edition_in_dcql(world):
    from mcred.present import present_cross_device_in_process
    from reader.online import Oid4vpRedirectReaderSession

    r = Oid4vpRedirectReaderSession([MDL, _age_21_or(("birth_date",))], kit_pipeline(world["pki"]),
                                    response_uri="https://shop.example/oid4vp/responses/1",
                                    use_cases=[UseCase(True, ((0,), (1,)))])
    out = present_cross_device_in_process(wallet(world), r)
    assert out.valid, out.result
    assert disclosed(out) == {DOCTYPE: {NS: {"family_name", "birth_date"}}}
