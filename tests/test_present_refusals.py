"""Issue 6 "Done when": each forgery or stale input is refused by the named check.

Phones are personalised directly (tests/test_present_kit.py); the presentation runs
in-process through the same wallet and reader session objects the HTTP transport uses."""

from __future__ import annotations

import datetime as dt

import pytest
from test_present_kit import DOCTYPE, NS, Clock, StatusPublisher, make_phone, make_pki

import wallet_sim
from mcred.present import present_in_process, reader_pipeline
from protocols import cbor
from protocols.mdoc import DeviceResponse, Document, IssuerSigned, build_document
from protocols.status import Status
from reader.session import ReaderSession, RequestSpec
from wallet_sim.consent import RulesConsent
from wallet_sim.wallet import SeMdocApplet, SeSigner, Wallet

REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "given_name_roman": False, "age_over_20": False}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    pki, other = make_pki("Test"), make_pki("Rogue")
    return {
        "home": home, "pki": pki,
        "phone": make_phone(home, pki, slots=(0,)),
        "phone_b": make_phone(home, pki, slots=(0,)),
        "rogue_phone": make_phone(home, other, slots=(0,)),
    }


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def publisher(world, clock):
    return StatusPublisher(world["pki"], clock)


def wallet(world, phone="phone", clock=None, **kw):
    se = wallet_sim.open_secure_element(world[phone], world["home"])
    return Wallet(se.transmit, RulesConsent.allow_all(), clock=clock or Clock(), **kw)


def pipeline(world, clock, publisher, **kw):
    return reader_pipeline(trust=world["pki"].trust(), clock=clock, fetcher=publisher, **kw)


def present(world, clock, publisher, phone="phone", **kw):
    p = pipeline(world, clock, publisher, **kw)
    out = present_in_process(wallet(world, phone, clock), ReaderSession([REQUEST], p))
    return out, p


def failed(result: dict) -> set[str]:
    return {c["name"] for c in result["checks"] if not c["passed"]}


def test_baseline_is_valid_with_only_the_requested_items(world, clock, publisher):
    out, _ = present(world, clock, publisher)
    assert out.valid, failed(out.result)
    (doc,) = out.result["documents"]
    assert doc["docType"] == DOCTYPE
    assert doc["elements"] == {NS: {"family_name": "山田", "given_name_roman": "HANAKO", "age_over_20": True}}


def _reverify(world, clock, publisher, out, response: bytes):
    return pipeline(world, clock, publisher).verify(
        response, session_transcript=out.session_transcript).to_json()


def test_flipped_bit_in_an_item_fails_value_digests(world, clock, publisher):
    out, _ = present(world, clock, publisher)
    dr = DeviceResponse.decode(out.device_response)
    doc = dr.documents[0]
    raws = list(doc.issuer_signed.name_spaces[NS])
    i = next(n for n, r in enumerate(raws) if b"HANAKO" in r)
    pos = raws[i].index(b"HANAKO") + 1
    raws[i] = raws[i][:pos] + bytes([raws[i][pos] ^ 0x01]) + raws[i][pos + 1:]
    forged = IssuerSigned({**doc.issuer_signed.name_spaces, NS: tuple(raws)}, doc.issuer_signed.issuer_auth)
    response = DeviceResponse((Document(doc.doc_type, forged, doc.device_signed),)).encode()
    result = _reverify(world, clock, publisher, out, response)
    assert not result["valid"] and "value_digests" in failed(result)
    assert result["documents"] == []


def test_ds_outside_the_trust_store_fails_issuer_certificate_chain(world, clock, publisher):
    out, _ = present(world, clock, publisher, phone="rogue_phone")
    assert not out.valid
    assert "issuer_certificate_chain" in failed(out.result)


def test_wrong_doctype_fails_doc_type(world, clock, publisher):
    out, _ = present(world, clock, publisher)
    dr = DeviceResponse.decode(out.device_response)
    doc = dr.documents[0]
    response = DeviceResponse((Document("org.iso.18013.5.1.mDL", doc.issuer_signed, doc.device_signed),)).encode()
    result = _reverify(world, clock, publisher, out, response)
    assert not result["valid"] and "doc_type" in failed(result)


def test_expired_validity_fails_validity(world, clock, publisher):
    clock.advance(days=31)  # MSOs are valid 30 days; skew is 5 minutes
    out, _ = present(world, clock, publisher)
    assert not out.valid
    assert failed(out.result) == {"validity"}


def test_validity_skew_is_configurable(world, clock, publisher):
    clock.advance(days=30, minutes=2)  # 1 minute past validUntil (MSO signed at T0, clock starts at T0+1min)
    out, _ = present(world, clock, publisher)
    assert out.valid  # within the default 5 minutes
    out, _ = present(world, clock, publisher, skew=dt.timedelta(seconds=10))
    assert failed(out.result) == {"validity"}


def _session_with_forged_answer(world, clock, publisher, make_response):
    """Run a real reader session; a forging phone answers ``make_response(transcript)``
    encrypted under this session's keys."""
    from protocols.mdoc import (
        SessionData,
        SessionEncryption,
        SessionEstablishment,
        SessionTranscript,
    )
    from wallet_sim.engagement import Engagement

    reader = ReaderSession([REQUEST], pipeline(world, clock, publisher))
    engagement = Engagement.new()
    est = SessionEstablishment.decode(reader.start(engagement.bytes))
    transcript = SessionTranscript.build(engagement.bytes, est.e_reader_key_bytes, None)
    crypto = SessionEncryption.for_mdoc(engagement.e_device_private_key, est.e_reader_key, transcript)
    crypto.decrypt(est.data)
    return reader.receive(SessionData(data=crypto.encrypt(make_response(transcript))).encode())


def test_response_replayed_into_another_session_fails_device_authentication(world, clock, publisher):
    first, _ = present(world, clock, publisher)
    assert first.valid
    outcome = _session_with_forged_answer(world, clock, publisher, lambda st: first.device_response)
    assert not outcome.valid
    assert failed(outcome.result.to_json()) == {"device_authentication"}


def test_device_signature_from_another_phone_fails_device_authentication(world, clock, publisher):
    mine = wallet(world, "phone", clock).credentials()[0].issuer_signed
    se_b = wallet_sim.open_secure_element(world["phone_b"], world["home"])
    other_key = SeSigner(SeMdocApplet(se_b.transmit), 0)

    def forged(transcript):
        doc = build_document(mine, transcript, disclose={NS: ["family_name"]}, signer=other_key)
        return DeviceResponse((doc,)).encode()

    outcome = _session_with_forged_answer(world, clock, publisher, forged)
    assert not outcome.valid
    assert failed(outcome.result.to_json()) == {"device_authentication"}


@pytest.mark.parametrize("status,word", [(Status.INVALID, "revoked"), (Status.SUSPENDED, "SUSPENDED")])
def test_revoked_and_suspended_fail_revocation_status(world, clock, publisher, status, word):
    publisher.set(0, status)
    out, _ = present(world, clock, publisher)
    assert failed(out.result) == {"revocation_status"}
    reason = next(c["reason"] for c in out.result["checks"] if c["name"] == "revocation_status")
    assert word in reason


def test_status_list_with_a_bad_signature_fails_status_list_signature(world, clock, publisher):
    from cryptography.hazmat.primitives.asymmetric import ec

    publisher.signer_key = ec.generate_private_key(ec.SECP256R1())
    out, _ = present(world, clock, publisher)
    assert "status_list_signature" in failed(out.result)
    assert not out.valid


def test_stale_list_beyond_ttl_online_fails_status_list_freshness(world, clock, publisher):
    p = pipeline(world, clock, publisher)
    out = present_in_process(wallet(world, clock=clock), ReaderSession([REQUEST], p))
    assert out.valid
    clock.advance(seconds=publisher.ttl + 60)
    publisher.down = True  # the reader is online but cannot refresh: the cached list is stale
    out = present_in_process(wallet(world, clock=clock), ReaderSession([REQUEST], p))
    assert failed(out.result) == {"status_list_freshness"}
    reason = next(c["reason"] for c in out.result["checks"] if c["name"] == "status_list_freshness")
    assert "ttl" in reason and "refresh failed" in reason


def test_offline_mode_uses_the_cached_list_up_to_max_age_and_says_so(world, clock, publisher):
    p = pipeline(world, clock, publisher)
    assert present_in_process(wallet(world, clock=clock), ReaderSession([REQUEST], p)).valid
    p.status.offline, p.status.max_offline_age = True, dt.timedelta(hours=2)
    publisher.down = True
    clock.advance(minutes=30)  # beyond the ttl, within the offline maximum age
    out = present_in_process(wallet(world, clock=clock), ReaderSession([REQUEST], p))
    assert out.valid
    reasons = {c["name"]: c["reason"] for c in out.result["checks"]}
    assert reasons["status_list_freshness"].startswith("OFFLINE")
    assert reasons["revocation_status"].startswith("OFFLINE")
    clock.advance(hours=2)
    out = present_in_process(wallet(world, clock=clock), ReaderSession([REQUEST], p))
    assert failed(out.result) == {"status_list_freshness"}


def test_etag_revalidation_keeps_the_list_without_refetching(world, clock, publisher):
    p = pipeline(world, clock, publisher)
    assert present_in_process(wallet(world, clock=clock), ReaderSession([REQUEST], p)).valid
    assert present_in_process(wallet(world, clock=clock), ReaderSession([REQUEST], p)).valid
    assert len(publisher.calls) == 1  # second presentation served from the cache (within ttl)
    clock.advance(seconds=publisher.ttl + 1)
    assert present_in_process(wallet(world, clock=clock), ReaderSession([REQUEST], p)).valid
    assert publisher.calls[-1][1] is not None  # If-None-Match sent
    assert p.status.revalidations == 1 and p.status.fetches == 1


def test_cbor_of_the_saved_transcript_reverifies(world, clock, publisher):
    from mcred.present import verify_saved

    out, p = present(world, clock, publisher)
    result = verify_saved(out.saved(), p)
    assert result.valid
    assert cbor.loads(out.saved())["deviceResponse"] == out.device_response


def test_unrequested_items_fail_matches_request(world, clock, publisher):
    mine = wallet(world, "phone", clock).credentials()[0]
    se_a = wallet_sim.open_secure_element(world["phone"], world["home"])
    key = SeSigner(SeMdocApplet(se_a.transmit), mine.slot)

    def oversharing(transcript):
        doc = build_document(mine.issuer_signed, transcript, disclose={NS: ["family_name", "birth_date"]}, signer=key)
        return DeviceResponse((doc,)).encode()

    outcome = _session_with_forged_answer(world, clock, publisher, oversharing)
    assert failed(outcome.result.to_json()) == {"matches_request"}
    assert "birth_date" in outcome.result.check("matches_request").reason


def test_document_disclosing_nothing_fails_matches_request(world, clock, publisher):
    """IssuerSigned may omit nameSpaces (CDDL ``?``); the reader asked for items and must
    not call "valid" a document that disclosed none of them."""
    mine = wallet(world, "phone", clock).credentials()[0]
    se_a = wallet_sim.open_secure_element(world["phone"], world["home"])
    key = SeSigner(SeMdocApplet(se_a.transmit), mine.slot)

    def nothing(transcript):
        doc = build_document(mine.issuer_signed, transcript, disclose={}, signer=key)
        assert doc.issuer_signed.name_spaces == {}
        return DeviceResponse((doc,)).encode()

    outcome = _session_with_forged_answer(world, clock, publisher, nothing)
    assert failed(outcome.result.to_json()) == {"matches_request"}
    assert "no requested element disclosed" in outcome.result.check("matches_request").reason


def test_the_wallets_applet_handle_survives_another_process_writing_the_se(world, clock):
    """Another process writing the phone's SE (a TSM refresh while a wallet runs) makes the
    wallet's SE object load the image again, as a re-inserted card: channel 0 is back on
    the ISD. The wallet's handle remembered that it had selected the mdoc applet, so its
    SIGN reached the ISD and got 6A88, and every later one too. It selects again once and
    repeats the command."""
    import os

    mine = wallet(world, "phone", clock).credentials()[0]
    se = wallet_sim.open_secure_element(world["phone"], world["home"])
    applet = SeMdocApplet(se.transmit)
    assert len(applet.sign_digest(mine.slot, bytes(32))) == 64
    image = se.path
    stat = os.stat(image)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # another writer's stamp
    assert len(applet.sign_digest(mine.slot, bytes(32))) == 64
    assert len(applet.sign_digest(mine.slot, bytes(32))) == 64
