"""The wallet app: engagement QR, consent and selective disclosure, documentErrors,
deviceMac through the SE's KEY AGREEMENT, reader authentication shown to the holder,
session termination, and fuzzing: garbage never crashes it, it answers the proper status
code and the SE image (the stored credential) is unchanged."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_present_kit import DOCTYPE, NS, Clock, kit_pipeline, kit_world, reader_pki

import wallet_sim
from mcred.present import present_in_process
from protocols import cbor, cose
from protocols.mdoc import (
    DeviceEngagement,
    DeviceRequest,
    DeviceResponse,
    DocRequest,
    ItemsRequest,
    SessionData,
    SessionEncryption,
    SessionEstablishment,
    SessionTranscript,
)
from reader.session import ReaderSession, RequestSpec
from wallet_sim.consent import ConsentError, InteractiveConsent, RulesConsent
from wallet_sim.engagement import Engagement
from wallet_sim.wallet import Wallet

REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "birth_date": True, "portrait": False}})
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory, slots=(0, 1, 2))


def se(world):
    return wallet_sim.open_secure_element(world["phone"], world["home"])


def make_wallet(world, consent=None, **kw):
    return Wallet(se(world).transmit, consent or RulesConsent.allow_all(), clock=Clock(), **kw)


def pipeline(world, clock=None):
    return kit_pipeline(world["pki"], clock)


class Peer:
    """A bare reader for fuzzing: establishes the session and sends what it is given."""

    def __init__(self, session) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.erk = cose.CoseKey.from_public_key(self.key.public_key())
        self.transcript = SessionTranscript.build(session.engagement.bytes, self.erk, None)
        self.crypto = SessionEncryption.for_reader(self.key, session.engagement.device_engagement.e_device_key,
                                                   self.transcript)

    def establishment(self, plaintext: bytes) -> bytes:
        return SessionEstablishment.build(self.erk, self.crypto.encrypt(plaintext)).encode()

    def response(self, answer: bytes) -> DeviceResponse:
        return DeviceResponse.decode(self.crypto.decrypt(SessionData.decode(answer).data))


def request_bytes(items=None, doc_type=DOCTYPE) -> bytes:
    return DeviceRequest((DocRequest(ItemsRequest.build(doc_type, items or {NS: {"family_name": False}})),)).encode()


# -- engagement ------------------------------------------------------------------------------


def test_engagement_qr_uri_png_and_terminal(tmp_path):
    e = Engagement.new()
    assert e.uri.startswith("mdoc:") and "=" not in e.uri
    assert DeviceEngagement.from_qr_uri(e.uri).encode() == e.bytes
    assert e.save_png(tmp_path / "qr.png").read_bytes().startswith(b"\x89PNG")
    assert "█" in e.terminal() or "▀" in e.terminal()
    assert Engagement.new().bytes != e.bytes  # a fresh EDeviceKey per presentation


# -- consent, selective disclosure, errors ------------------------------------------------------


def test_only_consented_items_leave_the_phone_and_refusals_are_in_errors(world):
    consent = RulesConsent.from_mapping({"documents": {DOCTYPE: {NS: ["family_name", "portrait", "birth_date"]}},
                                         "refuse_intent_to_retain": True})
    out = present_in_process(make_wallet(world, consent), ReaderSession([REQUEST], pipeline(world)))
    assert out.valid
    assert set(out.result["documents"][0]["elements"][NS]) == {"family_name", "portrait"}
    doc = DeviceResponse.decode(out.device_response).documents[0]
    assert doc.errors == {NS: {"birth_date": 0}}  # retained: refused by the rules
    assert {n for n in doc.issuer_signed.name_spaces} == {NS}
    assert len(doc.issuer_signed.name_spaces[NS]) == 2


def test_doctype_not_held_and_nothing_released_go_to_document_errors(world):
    other = RequestSpec("org.iso.18013.5.1.mDL", {"org.iso.18013.5.1": {"family_name": False}})
    out = present_in_process(make_wallet(world), ReaderSession([other, REQUEST], pipeline(world)))
    dr = DeviceResponse.decode(out.device_response)
    assert dr.document_errors == ({"org.iso.18013.5.1.mDL": 0},)
    assert [d.doc_type for d in dr.documents] == [DOCTYPE]
    refuse = RulesConsent.from_mapping({"documents": {}})
    out = present_in_process(make_wallet(world, refuse), ReaderSession([REQUEST], pipeline(world)))
    dr = DeviceResponse.decode(out.device_response)
    assert dr.documents == () and dr.document_errors == ({DOCTYPE: 0},)
    assert not out.valid and "response_status" in {c["name"] for c in out.result["checks"] if not c["passed"]}


def test_device_mac_through_the_se_key_agreement(world):
    out = present_in_process(make_wallet(world, device_auth="mac"), ReaderSession([REQUEST], pipeline(world)))
    assert out.valid
    doc = DeviceResponse.decode(out.device_response).documents[0]
    assert doc.device_signed.device_auth.device_mac is not None
    dev = {c["name"]: c["reason"] for c in out.result["checks"]}["device_authentication"]
    assert "deviceMac" in dev


def test_batch_rotation_takes_the_least_used_mso(world, tmp_path):
    w = make_wallet(world, state_path=tmp_path / "wallet.json")
    used = [next(e.slot for e in present_in_process(w, ReaderSession([REQUEST], pipeline(world))).wallet_events
                 if e.kind == "response") for _ in range(4)]
    assert sorted(used[:3]) == [0, 1, 2] and used[3] in (0, 1, 2)
    again = make_wallet(world, state_path=tmp_path / "wallet.json")  # remembered across restarts
    assert sum(again._uses.values()) == 4


def test_reader_certificate_is_shown_to_the_holder_before_consent(world):
    pki = reader_pki()
    shown, asked = [], []
    consent = InteractiveConsent(ask=lambda q: asked.append(q) or "y", show=shown.append)
    wallet = Wallet(se(world).transmit, consent, clock=Clock(), reader_trust_anchors=[pki.ca])
    reader = ReaderSession([REQUEST], pipeline(world), reader_signer=pki.signer, reader_chain=pki.chain)
    out = present_in_process(wallet, reader)
    assert out.valid
    assert shown[0] == "reader: CN=Shop Reader 1,C=JP (verified)"
    assert any("birth_date" in q and "RETAINED" in q for q in asked)
    event = next(e for e in out.wallet_events if e.kind == "response")
    assert event.reader.trusted and event.reader.signature_valid
    # without the reader CA the holder is told the reader certificate is not trusted, and why
    shown.clear()
    wallet = Wallet(se(world).transmit, consent, clock=Clock())
    reader = ReaderSession([REQUEST], pipeline(world), reader_signer=pki.signer, reader_chain=pki.chain)
    present_in_process(wallet, reader)
    assert shown[0].startswith("reader: CN=Shop Reader 1,C=JP (signature valid, reader certificate NOT trusted: ")
    assert "no trust anchor" in shown[0], shown[0]


def test_a_reader_certificate_without_the_reader_eku_is_named_as_such_not_as_an_untrusted_issuer(world):
    """Its CA is trusted; the leaf lacks EKU mdlReaderAuth (Annex B.1.7), so it is no reader
    certificate. The prompt said "issuer NOT trusted", which sent the holder looking at the
    wrong certificate: it names the reader certificate and the reason. The event's fields
    (trusted, signature_valid, reason) stay what they were."""
    pki = reader_pki(eku=False)
    shown: list[str] = []
    wallet = Wallet(se(world).transmit, InteractiveConsent(ask=lambda q: "n", show=shown.append), clock=Clock(),
                    reader_trust_anchors=[pki.ca])
    out = present_in_process(wallet, ReaderSession([REQUEST], pipeline(world), reader_signer=pki.signer,
                                                   reader_chain=pki.chain))
    why = f"{DOCTYPE}: leaf certificate lacks extended key usage 1.0.18013.5.1.6"  # the DocRequest's readerAuth
    assert shown[0] == f"reader: CN=Shop Reader 1,C=JP (signature valid, reader certificate NOT trusted: {why})"
    assert "issuer" not in shown[0]
    event = next(e for e in out.wallet_events if e.kind == "response")
    assert event.reader.signature_valid and not event.reader.trusted and not event.reader.revocation_failed
    assert event.reader.reason == why


def test_rules_file_errors_name_the_place(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"documents": {"x": {"ns": 3}}}')
    with pytest.raises(ConsentError, match=r"documents\['x'\]\['ns'\]"):
        RulesConsent.from_file(p)
    p.write_text("{nope")
    with pytest.raises(ConsentError):
        RulesConsent.from_file(p)


# -- termination and status codes ---------------------------------------------------------------


def test_termination_and_status_codes(world):
    w = make_wallet(world)
    s = w.start()
    peer = Peer(s)
    answer = s.receive(peer.establishment(request_bytes()))
    assert peer.response(answer).status == 0 and s.state == "open"
    assert s.receive(SessionData(status=20).encode()) is None
    assert s.state == "terminated" and s.receive(b"anything") is None
    # wrong key / replay: status 10 (session encryption), session ends
    s = w.start()
    peer = Peer(s)
    s.receive(peer.establishment(request_bytes()))
    replay = SessionData(data=peer.crypto.encrypt(request_bytes())).encode()
    peer.crypto.receive_counter += 1
    assert s.receive(replay) is not None
    assert SessionData.decode(s.receive(replay)).status == 10 and s.state == "terminated"
    # undecodable SessionEstablishment: status 11
    s = w.start()
    assert SessionData.decode(s.receive(b"\xa1\x61x\x01")).status == 11
    # a DeviceRequest that is not CBOR: DeviceResponse status 11; CBOR but not a request: 12
    for plaintext, status in ((b"\xff\x00", 11), (cbor.dumps({"version": "1.0"}), 12)):
        s = w.start()
        peer = Peer(s)
        assert peer.response(s.receive(peer.establishment(plaintext))).status == status


# -- fuzzing --------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzzed_session_messages_never_crash_and_leave_the_se_intact(world, data):
    s0 = se(world).persisted_image()
    w = make_wallet(world)
    s = w.start()
    out = s.receive(data)
    assert SessionData.decode(out).status in (10, 11)
    s = w.start()
    peer = Peer(s)
    s.receive(peer.establishment(request_bytes()))
    out = s.receive(data)
    assert out is None or SessionData.decode(out).status in (10, 11)
    assert se(world).persisted_image() == s0


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**40) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | st.integers(0, 3), inner, max_size=4),
    max_leaves=12,
)
request_like = st.fixed_dictionaries({"version": st.sampled_from(["1.0", "2", 1]),
                                      "docRequests": st.lists(cbor_values, max_size=2)})


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), cbor_values.map(cbor.dumps), request_like.map(cbor.dumps)))
def test_fuzzed_device_requests_get_status_codes_and_leave_the_se_intact(world, data):
    s0 = se(world).persisted_image()
    s = make_wallet(world).start()
    peer = Peer(s)
    response = peer.response(s.receive(peer.establishment(data)))
    try:
        cbor.loads(data)
        parsed = True
    except cbor.CborDecodeError:
        parsed = False
    assert response.status in ((0, 12) if parsed else (11,))
    assert se(world).persisted_image() == s0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**40) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=16), inner, max_size=5),
    max_leaves=16,
)
_dcql_like = st.fixed_dictionaries({"credentials": st.lists(st.fixed_dictionaries({
    "id": st.sampled_from(["q0", "x", ""]), "format": st.sampled_from(["mso_mdoc", "dc+sd-jwt"]),
    "meta": st.fixed_dictionaries({"doctype_value": st.sampled_from([DOCTYPE, "org.iso.18013.5.1.mDL", ""])}),
    "claims": st.lists(st.fixed_dictionaries({"path": st.lists(st.sampled_from([NS, "family_name", "portrait", ""]),
                                                                max_size=3)}), max_size=3)}), max_size=2)})
online_requests = st.one_of(
    json_values,
    st.fixed_dictionaries({"protocol": st.sampled_from(["org-iso-mdoc", "openid4vp-v1-unsigned", "openid4vp-v1-signed"]),
                           "data": json_values}),
    st.fixed_dictionaries({"protocol": st.just("openid4vp-v1-unsigned"), "data": st.fixed_dictionaries({
        "response_type": st.just("vp_token"), "response_mode": st.sampled_from(["dc_api", "dc_api.jwt"]),
        "nonce": st.text(min_size=1, max_size=8), "dcql_query": _dcql_like})}),
    st.fixed_dictionaries({"protocol": st.just("org-iso-mdoc"), "data": st.fixed_dictionaries({
        "deviceRequest": st.one_of(st.text(max_size=12), cbor_values.map(
            lambda v: base64.urlsafe_b64encode(cbor.dumps(v)).rstrip(b"=").decode())),
        "encryptionInfo": st.text(max_size=40)})}),
)


@FUZZ
@given(request=online_requests)
def test_fuzzed_online_requests_get_an_answer_or_a_typed_refusal_and_leave_the_se_intact(world, request):
    """A web page's request, of either protocol or neither: the wallet answers (a credential
    or OAuth's access_denied) or raises OnlineRequestError, nothing else, and the SE keeps
    its content."""
    from wallet_sim.wallet import OnlineRequestError

    s0 = se(world).persisted_image()
    try:
        answer = make_wallet(world).online("https://shop.example").respond(request)
        assert isinstance(answer, dict) and answer["protocol"] in ("org-iso-mdoc", "openid4vp-v1-unsigned",
                                                                   "openid4vp-v1-signed")
    except OnlineRequestError:
        pass
    assert se(world).persisted_image() == s0


_PARAMS = ["client_id", "request_uri", "request_uri_method", "response_uri", "response_mode", "response_type", "nonce",
           "state", "dcql_query", "client_metadata", "redirect_uri"]
scanned_uris = st.one_of(
    st.text(max_size=200),
    st.dictionaries(st.sampled_from(_PARAMS), st.one_of(
        st.text(max_size=40), st.sampled_from(["redirect_uri:https://rp.example/r", "https://rp.example/r",
                                               "x509_san_dns:rp.example", "direct_post.jwt", "vp_token"]),
        json_values.map(json.dumps))).map(lambda q: "openid4vp://?" + urlencode(q)))


@FUZZ
@given(uri=scanned_uris, request_object=st.none() | st.text(max_size=300))
def test_fuzzed_cross_device_requests_get_a_post_or_a_typed_refusal_and_leave_the_se_intact(world, uri,
                                                                                           request_object):
    """A scanned QR code (any URI) and whatever its request_uri answered: the wallet names
    the POST of its answer or raises OnlineRequestError, nothing else, and the SE keeps its
    content."""
    from wallet_sim.wallet import HttpExchange, OnlineRequestError

    s0 = se(world).persisted_image()
    try:
        post = make_wallet(world).cross_device(uri).respond(request_object)
        assert isinstance(post, HttpExchange) and post.method == "POST" and post.form
    except OnlineRequestError:
        pass
    assert se(world).persisted_image() == s0
