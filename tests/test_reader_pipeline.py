"""Reader pipeline checks beyond the session tests: keyAuthorizations, the MSO signed within
the DS certificate's validity, Annex B profile failures reported by name."""

from __future__ import annotations

import dataclasses
import datetime as dt

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_present_kit import NS, STATUS_URI, T0, Clock, StatusPublisher, make_pki

from mcred.present import reader_pipeline
from protocols import cbor, cose
from protocols.cose import CoseKey
from protocols.mdoc import (
    DeviceResponse,
    Document,
    IssuerSigned,
    MsoStatus,
    SessionTranscript,
    StatusListRef,
    build_device_signed,
    build_issuer_signed,
    derive_emac_key,
    ecdh,
)
from protocols.status import StatusList, build_status_list_token
from reader.fetch import HttpAnswer
from reader.pipeline import (
    DEFAULT_CACHE_SECONDS,
    HttpxFetcher,
    PipelineConfig,
    ReaderPipeline,
    StatusListCache,
)
from reader.trust import TrustAnchor, TrustStore

DOCTYPE = "jp.mcred.mynumber.cardsub.1"
NOW = T0 + dt.timedelta(minutes=1)


def transcript():
    key = CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    return SessionTranscript.build(b"\xa1\x00c1.0", key, None)


def response(ds_key, ds_cert, *, key_authorizations=None, device_elements=None, signed=None, valid_from=T0,
             doc_type=DOCTYPE):
    device = ec.generate_private_key(ec.SECP256R1())
    isg = build_issuer_signed({NS: {"family_name": "山田"}}, doc_type, device.public_key(), cose.key_signer(ds_key),
                              [ds_cert.public_bytes(serialization.Encoding.DER)], valid_from,
                              valid_from + dt.timedelta(days=30), signed=signed,
                              key_authorizations=key_authorizations)
    st = transcript()
    ds = build_device_signed(doc_type, st, signer=cose.key_signer(device), device_name_spaces=device_elements)
    return DeviceResponse((Document(doc_type, isg, ds),)).encode(), st


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


def test_trust_anchor_scope_is_judged_for_each_doctype_on_a_warm_pipeline():
    """An IACA trusted for one docType only (a VICAL entry's scope): a document of another
    docType under the same DS certificate is refused, also right after one of the trusted
    docType was accepted (the pipeline keeps the last profile verdicts per DS chain), and
    the other way round."""
    pki = make_pki()
    clock = Clock(NOW)
    scoped = TrustStore([TrustAnchor(pki.iaca, frozenset({DOCTYPE}))])
    pipe = reader_pipeline(trust=scoped, clock=clock, fetcher=StatusPublisher(pki, clock))
    mine, other = response(pki.ds_key, pki.ds), response(pki.ds_key, pki.ds, doc_type="org.example.other")
    for order in ((mine, other, mine), (other, mine)):
        for data, st in order:
            result = pipe.verify(data, session_transcript=st)
            assert result.check("trust_anchor_scope").passed is (data is mine[0]), result.check("trust_anchor_scope")
            assert ("trust_anchor_scope" in failed(result)) is (data is other[0])


def _status(cache, pki, now, index=3):
    outcome = cache.lookup(STATUS_URI, index, [pki.iaca], now)
    return {c.name: c for c in outcome.checks}


def test_a_status_list_read_offline_is_trusted_up_to_the_maximum_offline_age_and_not_a_second_more():
    """Offline, the cached list serves until max_offline_age after it was fetched (its own
    exp far away here, so that the offline bound is what decides); past it, freshness fails
    (what the stale list says is still reported, the verdict fails on freshness). Offline
    without any cached list: nothing to tell."""
    pki = make_pki()
    clock = Clock(NOW)
    publisher = StatusPublisher(pki, clock, lifetime=7 * 86400)
    cache = StatusListCache(publisher)
    online = _status(cache, pki, NOW)
    assert all(c.passed for c in online.values())
    assert not online["revocation_status"].reason.startswith("OFFLINE")
    cache.offline, cache.max_offline_age = True, dt.timedelta(hours=2)
    edge = _status(cache, pki, NOW + dt.timedelta(hours=2))
    assert all(c.passed for c in edge.values()), edge
    assert edge["revocation_status"].reason.startswith("OFFLINE: index 3 of ")
    late = _status(cache, pki, NOW + dt.timedelta(hours=2, seconds=1))
    assert late["status_list_freshness"].passed is False and late["status_list_freshness"].code == "unavailable"
    assert "beyond the maximum offline age" in late["status_list_freshness"].reason
    cold = StatusListCache(publisher, offline=True)
    nothing = _status(cold, pki, NOW)
    assert [c.passed for c in nothing.values()] == [False, False, False]
    assert all(c.code == "unavailable" and "OFFLINE: no cached list" in c.reason for c in nothing.values())


def test_a_status_list_issued_in_the_future_or_an_index_beyond_it_or_no_list_at_all_tells_nothing():
    """A list whose iat is more than 60 s ahead of the reader's clock is not fresh (60 s of
    skew is); an index past the list's end, or bytes that are no Status List Token, give no
    status: each refusal ``unavailable``, never a VALID."""
    pki = make_pki()
    issued_at = NOW.replace(microsecond=0)
    publisher = StatusPublisher(pki, Clock(issued_at))
    for behind, fresh in ((60, True), (61, False)):
        checks = _status(StatusListCache(publisher), pki, issued_at - dt.timedelta(seconds=behind))
        assert checks["status_list_freshness"].passed is fresh, checks["status_list_freshness"]
        if not fresh:
            assert "in the future" in checks["status_list_freshness"].reason
            assert checks["status_list_freshness"].code == "unavailable"
    beyond = _status(StatusListCache(publisher), pki, issued_at, index=publisher.size * 64)
    assert beyond["revocation_status"].passed is False and beyond["revocation_status"].code == "unavailable"
    garbage = _status(StatusListCache(lambda uri, etag: HttpAnswer(200, b"\xa0")), pki, issued_at)
    assert garbage["status_list_signature"].passed is False and garbage["status_list_signature"].code == "unavailable"
    assert garbage["status_list_freshness"].passed is False and garbage["status_list_freshness"].code == "unavailable"
    assert garbage["revocation_status"].passed is False


def _pipeline(pki, trust=None):
    clock = Clock(NOW)
    return reader_pipeline(trust=trust or pki.trust(), clock=clock, fetcher=StatusPublisher(pki, clock))


@pytest.mark.parametrize(("now", "code"), [
    (T0 - dt.timedelta(minutes=5), None),  # validFrom - skew
    (T0 + dt.timedelta(days=30, minutes=5), None),  # validUntil + skew
    (T0 - dt.timedelta(minutes=5, microseconds=1), "not_yet_valid"),
    (T0 + dt.timedelta(days=30, minutes=5, microseconds=1), "expired"),
])
def test_the_reader_validity_takes_the_skew_on_both_sides_and_not_a_microsecond_more(now, code):
    pki = make_pki()
    result = _pipeline(pki).verify(*response(pki.ds_key, pki.ds)[:1], session_transcript=None, now=now)
    validity = result.check("validity")
    assert validity.passed is (code is None), validity
    assert validity.code == (code or "ok")


def _resigned(pki, data, **validity):
    """The response with its MSO's validityInfo changed and signed again by the DS."""
    dr = DeviceResponse.decode(data)
    doc = dr.documents[0]
    mso = doc.issuer_signed.mso()
    mso = dataclasses.replace(mso, validity_info=dataclasses.replace(mso.validity_info, **validity))
    auth = cose.Sign1.create(cose.key_signer(pki.ds_key), mso.to_bytes(), unprotected=doc.issuer_signed.issuer_auth.unprotected)
    return DeviceResponse((dataclasses.replace(doc, issuer_signed=IssuerSigned(doc.issuer_signed.name_spaces, auth)),)).encode()


@pytest.mark.parametrize("now", [T0 - dt.timedelta(days=1), T0, NOW])
def test_the_reader_refuses_an_mso_whose_valid_until_is_not_after_its_valid_from_by_that_name(now):
    """ISO/IEC 18013-5 9.1.2.4 (validUntil later than validFrom): the pipeline's own validity
    check, with its skew, said "expired" or "not_yet_valid" of an MSO that is never valid."""
    from protocols.cbor import tdate_text

    pki = make_pki()
    data, st = response(pki.ds_key, pki.ds)
    for until in (T0, T0 - dt.timedelta(seconds=1)):
        result = _pipeline(pki).verify(_resigned(pki, data, valid_until=until), session_transcript=st, now=now)
        validity = result.check("validity")
        assert not validity.passed and validity.code == "malformed", validity
        assert validity.reason == (f"{DOCTYPE}: validUntil {tdate_text(until)} is not later than validFrom "
                                   f"{tdate_text(T0)}: an MSO that is never valid (ISO/IEC 18013-5 9.1.2.4)")


def test_mso_signed_within_ds_validity_includes_both_ends_of_the_ds_certificate():
    pki = make_pki()
    data, st = response(pki.ds_key, pki.ds)
    ds_from, ds_until = pki.ds.not_valid_before_utc, pki.ds.not_valid_after_utc
    for signed, ok in ((ds_from, True), (ds_until, True), (ds_from - dt.timedelta(seconds=1), False),
                       (ds_until + dt.timedelta(seconds=1), False)):
        # validFrom not before signed (ISO/IEC 18013-5 9.1.2.4), the reader's instant within
        start, end = max(T0, signed), max(T0 + dt.timedelta(days=30), signed + dt.timedelta(days=1))
        result = _pipeline(pki).verify(_resigned(pki, data, signed=signed, valid_from=start, valid_until=end),
                                       session_transcript=st, now=max(NOW, start))
        if signed > ds_until:  # presented after the DS certificate's end: its chain fails too
            assert {"issuer_certificate_chain", "mso_signed_within_ds_validity"} <= failed(result), failed(result)
            continue
        assert result.check("mso_signed_within_ds_validity").passed is ok, signed
        assert failed(result) == (set() if ok else {"mso_signed_within_ds_validity"})


def test_the_reader_refuses_an_mso_valid_from_before_its_signing_as_backdated():
    """ISO/IEC 18013-5 9.1.2.4 (validFrom equal or later than signed): an MSO that vouches for
    a time before it was signed passed every check. Now ``validity`` fails, code malformed."""
    from protocols.cbor import tdate_text

    pki = make_pki()
    data, st = response(pki.ds_key, pki.ds)
    signed = T0 + dt.timedelta(seconds=1)
    result = _pipeline(pki).verify(_resigned(pki, data, signed=signed), session_transcript=st)
    assert failed(result) == {"validity"}
    validity = result.check("validity")
    assert validity.code == "malformed"
    assert validity.reason == (f"{DOCTYPE}: validFrom {tdate_text(T0)} is earlier than signed {tdate_text(signed)}: "
                               "a backdated MSO (ISO/IEC 18013-5 9.1.2.4: validFrom shall be equal or later than signed)")


def test_an_untrusted_ds_leaves_the_reader_checks_that_need_it_not_checked_once_each():
    """No trusted DS chain: mso_signed_within_ds_validity, the Annex B profiles, the scope and
    the three status checks are each reported once, "not checked" (the status list is not
    even fetched: it would be verified against the untrusted chain's anchor)."""
    pki, stranger = make_pki(), make_pki("Stranger")
    device = ec.generate_private_key(ec.SECP256R1())
    isg = build_issuer_signed({NS: {"family_name": "山田"}}, DOCTYPE, device.public_key(), cose.key_signer(pki.ds_key),
                              [pki.ds.public_bytes(serialization.Encoding.DER)], T0, T0 + dt.timedelta(days=30),
                              status=MsoStatus(StatusListRef(3, STATUS_URI)))
    st = transcript()
    data = DeviceResponse((Document(DOCTYPE, isg, build_device_signed(DOCTYPE, st, signer=cose.key_signer(device))),)
                          ).encode()
    publisher = StatusPublisher(pki, Clock(NOW))
    pipe = reader_pipeline(trust=stranger.trust(), clock=Clock(NOW), fetcher=publisher)
    result = pipe.verify(data, session_transcript=st)
    names = [c.name for c in result.checks]
    for name in ("mso_signed_within_ds_validity", "iaca_profile", "ds_profile", "trust_anchor_scope",
                 "status_list_signature", "status_list_freshness", "revocation_status"):
        assert names.count(name) == 1, name
        assert result.check(name).code == "not_checked", result.check(name)
    assert publisher.calls == []


def test_an_issuer_signed_alone_through_the_pipeline_has_no_key_authorizations_check():
    """Nothing is device-signed before a presentation: verify_issuer_signed reports no
    key_authorizations check when the MSO declares none (a presentation reports it passed)."""
    pki = make_pki()
    data, st = response(pki.ds_key, pki.ds)
    issuer_signed = DeviceResponse.decode(data).documents[0].issuer_signed
    alone = _pipeline(pki).verify_issuer_signed(cbor.dumps(issuer_signed.to_cbor()))
    assert alone.valid, failed(alone)
    assert alone.check("key_authorizations") is None
    presented = _pipeline(pki).verify(data, session_transcript=st)
    assert presented.check("key_authorizations").passed
    # the docType asked for is compared, and the instant given is the one judged
    other = _pipeline(pki).verify_issuer_signed(cbor.dumps(issuer_signed.to_cbor()), doc_type="org.example.other")
    assert failed(other) == {"doc_type"}
    late = _pipeline(pki).verify_issuer_signed(cbor.dumps(issuer_signed.to_cbor()), now=T0 + dt.timedelta(days=31))
    assert late.check("validity").code == "expired"


def test_device_mac_through_the_pipeline_with_the_readers_key():
    """deviceMac: the pipeline hands the reader's ephemeral private key to the verifier."""
    pki = make_pki()
    device, reader = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    isg = build_issuer_signed({NS: {"family_name": "山田"}}, DOCTYPE, device.public_key(), cose.key_signer(pki.ds_key),
                              [pki.ds.public_bytes(serialization.Encoding.DER)], T0, T0 + dt.timedelta(days=30))
    st = transcript()
    emac = derive_emac_key(ecdh(device, reader.public_key()), st)
    data = DeviceResponse((Document(DOCTYPE, isg, build_device_signed(DOCTYPE, st, emac_key=emac)),)).encode()
    assert _pipeline(pki).verify(data, session_transcript=st, reader_private_key=reader).valid
    other = _pipeline(pki).verify(data, session_transcript=st, reader_private_key=ec.generate_private_key(ec.SECP256R1()))
    assert failed(other) == {"device_authentication"}


def test_the_profile_verdicts_kept_for_the_last_ds_chain_are_not_handed_to_another():
    """Two trusted IACAs, each trusted for one docType; their documents of the first one's
    docType presented in turn to one pipeline: the second IACA's document fails
    trust_anchor_scope every time, though it comes right after an accepted one."""
    mine, theirs = make_pki("Mine"), make_pki("Theirs")
    store = TrustStore([TrustAnchor(mine.iaca, frozenset({DOCTYPE})),
                        TrustAnchor(theirs.iaca, frozenset({"org.example.other"}))])
    pipe = _pipeline(mine, trust=store)
    ok, bad = response(mine.ds_key, mine.ds), response(theirs.ds_key, theirs.ds)
    for _ in range(2):
        assert pipe.verify(ok[0], session_transcript=ok[1]).valid
        assert failed(pipe.verify(bad[0], session_transcript=bad[1])) == {"trust_anchor_scope"}


def test_an_expired_status_list_is_not_fresh_online_or_offline():
    """A list past its exp is refused as expired, also offline within the maximum offline
    age and also while still within its ttl (exp before fetch + ttl): a revoked mdoc must
    not pass on an expired list that said VALID. A list that does not chain to the
    document's IACA tells nothing (unavailable)."""
    pki = make_pki()
    issued_at = NOW.replace(microsecond=0)
    publisher = StatusPublisher(pki, Clock(issued_at), ttl=3600, lifetime=600)
    cache = StatusListCache(publisher)
    assert all(c.passed for c in _status(cache, pki, issued_at).values())
    for offline in (False, True):
        cache.offline, cache.max_offline_age = offline, dt.timedelta(hours=2)
        expired = _status(cache, pki, issued_at + dt.timedelta(seconds=600))
        assert expired["status_list_freshness"].passed is False, (offline, expired)
        assert "list expired" in expired["status_list_freshness"].reason
        assert expired["status_list_freshness"].code == "unavailable"
    foreign = StatusPublisher(pki, Clock(issued_at), signer_key=ec.generate_private_key(ec.SECP256R1()))
    untrusted = _status(StatusListCache(foreign), pki, issued_at)
    assert untrusted["status_list_signature"].passed is False
    assert untrusted["status_list_signature"].code == "unavailable"


class _CacheControl:
    """A status endpoint (``inner``) whose Cache-Control header says ``value`` instead."""

    def __init__(self, inner, value: str) -> None:
        self.inner, self.value = inner, value

    def __call__(self, uri, etag):
        answer = self.inner(uri, etag)
        return HttpAnswer(answer.status, answer.body, {**answer.headers, "cache-control": self.value})


@pytest.mark.parametrize(("ttl", "cache_control"), [
    (None, "public, max-age=99999999999999999999"),  # the HTTP answer's own header: nobody signed it
    (None, "max-age=" + "9" * 5000),  # more digits than int() reads from text (4300): never given to it
    (10**15, None),  # the token's signed ttl (StatusPublisher sends max-age = ttl too)
])
def test_a_lifetime_beyond_what_a_datetime_can_add_gives_a_status_not_a_crash(ttl, cache_control):
    """A status list whose Cache-Control max-age (or signed ttl) is more seconds than
    datetime can add to the fetch time: the cache's freshness arithmetic raised
    OverflowError and the whole presentation became "unverifiable: OverflowError". RFC 9111
    1.2.2 says to take such a delta-seconds as 2**31; the lookup now answers as for any
    list (found by the deep fuzz campaign)."""
    pki = make_pki()
    clock = Clock(NOW)
    publisher = StatusPublisher(pki, clock, ttl=ttl, lifetime=7 * 86400)
    cache = StatusListCache(publisher if cache_control is None else _CacheControl(publisher, cache_control))
    for later in (0, 3599, 3601):  # the first lookup, one from the cache, one past a short bound
        checks = _status(cache, pki, NOW + dt.timedelta(seconds=later))
        assert all(c.passed for c in checks.values()), checks


class _Lists:
    """A status endpoint answering 200 with the next of ``tokens`` at each fetch (the last
    one again once they run out) and the header ``cache_control`` when given; ``calls``
    counts the fetches."""

    def __init__(self, tokens, cache_control=None) -> None:
        self.tokens, self.cache_control, self.calls = list(tokens), cache_control, 0

    def __call__(self, uri, etag):
        token = self.tokens[min(self.calls, len(self.tokens) - 1)]
        self.calls += 1
        return HttpAnswer(200, token, {} if self.cache_control is None else {"cache-control": self.cache_control})


def _token(pki, iat, *, exp=None, ttl=None):
    return build_status_list_token(StatusList.empty(64, bits=2), uri=STATUS_URI, iat=iat, exp=exp, ttl=ttl,
                                   signer=cose.key_signer(pki.status_key), certificate=pki.status_cert)


def _fetches_at(pki, endpoint, *seconds):
    """The endpoint's fetch count after a lookup at each of ``seconds`` after NOW."""
    cache = StatusListCache(endpoint)
    counts = []
    for s in seconds:
        cache.lookup(STATUS_URI, 3, [pki.iaca], NOW + dt.timedelta(seconds=s))
        counts.append(endpoint.calls)
    return counts


def test_a_list_without_ttl_or_max_age_is_kept_for_the_default_time_and_not_a_second_more():
    pki = make_pki()
    endpoint = _Lists([_token(pki, NOW.replace(microsecond=0))])
    d = DEFAULT_CACHE_SECONDS
    assert _fetches_at(pki, endpoint, 0, d - 1, d) == [1, 1, 2]


@pytest.mark.parametrize("max_age", [60, 2**31 - 1])  # the largest max-age kept as sent (10 digits)
def test_the_http_max_age_bounds_the_cache_of_a_list_without_ttl_to_the_second(max_age):
    """RFC 9111 5.2.2.1: the answer is stale ``max-age`` seconds after it was fetched (the
    token has no ttl nor exp here); any max-age below 2**31 is taken as it is."""
    pki = make_pki()
    endpoint = _Lists([_token(pki, NOW.replace(microsecond=0))], cache_control=f"public, max-age={max_age}")
    assert _fetches_at(pki, endpoint, 0, max_age - 1, max_age) == [1, 1, 2]


@pytest.mark.parametrize(("ttl", "max_age"), [(60, 3600), (3600, 60)])
def test_the_signed_ttl_and_the_http_max_age_bound_the_cache_whichever_is_shorter(ttl, max_age):
    """draft-ietf-oauth-status-list: a Status List Token may be cached for its ttl before a
    fresh copy is fetched; an HTTP max-age that says longer does not extend that, and a
    shorter one is kept too."""
    pki = make_pki()
    endpoint = _Lists([_token(pki, NOW.replace(microsecond=0), ttl=ttl)], cache_control=f"max-age={max_age}")
    short = min(ttl, max_age)
    assert _fetches_at(pki, endpoint, 0, short - 1, short) == [1, 1, 2]


def test_a_cached_list_is_fetched_again_at_its_exp_and_the_new_copy_answers():
    """A list past its exp must not answer (status-list 13.7); a cached copy whose exp has
    come is refetched at that very instant, within its ttl, and the issuer's new copy is
    what the reader judges by."""
    pki = make_pki()
    issued = NOW.replace(microsecond=0)
    endpoint = _Lists([_token(pki, issued, exp=issued + dt.timedelta(seconds=100), ttl=3600),
                       _token(pki, issued + dt.timedelta(seconds=100), exp=issued + dt.timedelta(seconds=200),
                              ttl=3600)])
    cache = StatusListCache(endpoint)
    for later, fetches in ((0, 1), (99, 1), (100, 2)):
        checks = _status(cache, pki, issued + dt.timedelta(seconds=later))
        assert endpoint.calls == fetches
        assert all(c.passed for c in checks.values()), (later, checks)


def test_a_list_that_did_not_verify_is_asked_about_again_without_a_crash():
    """A cached list whose signature did not verify has no token: looking it up again (its
    freshness, its lifetime) still answers ``unavailable`` for each status check."""
    pki = make_pki()
    foreign = StatusPublisher(pki, Clock(NOW), signer_key=ec.generate_private_key(ec.SECP256R1()))
    cache = StatusListCache(foreign)
    for later in (0, 10, 400):
        checks = _status(cache, pki, NOW + dt.timedelta(seconds=later))
        assert checks["status_list_signature"].passed is False and checks["revocation_status"].passed is False
        assert checks["status_list_signature"].code == checks["revocation_status"].code == "unavailable"


def _short_lived_signer(pki, not_before, not_after):
    """``pki`` with a status-list signer certificate valid only from ``not_before`` to
    ``not_after`` (its IACA's own key signs it, as the issuer's would)."""
    from protocols import iaca

    cert = iaca.sign(iaca.status_list_signer_builder(
        pki.status_key.public_key(), pki.iaca, common_name="Test Status (short)", not_before=not_before,
        not_after=not_after, crl_uri="https://issuer.test/crl"), pki.iaca_key)
    return dataclasses.replace(pki, status_cert=cert)


@pytest.mark.parametrize("memo", [True, False])
def test_a_cached_list_whose_signer_certificate_has_expired_is_not_trusted_within_its_ttl(memo):
    """The first lookup verified the signer chain at its time; a later one inside the list's
    ttl (3600 s) but after the signer certificate's notAfter must not take the list on the
    strength of that: status_list_signature fails naming the signer's validity, and
    revocation_status is not checked (unavailable). At the last instant of the
    certificate the list still answers. ``memo``: the same index (the kept outcome) or
    another (the kept verification) asked later."""
    pki = make_pki()
    issued = NOW.replace(microsecond=0)
    short = _short_lived_signer(pki, issued - dt.timedelta(days=1), issued + dt.timedelta(seconds=30))
    endpoint = _Lists([_token(short, issued, ttl=3600)])
    cache = StatusListCache(endpoint)
    assert all(c.passed for c in _status(cache, pki, issued).values())
    later = 4 if memo else 5
    assert all(c.passed for c in _status(cache, pki, issued + dt.timedelta(seconds=30), index=3).values())
    checks = _status(cache, pki, issued + dt.timedelta(seconds=31), index=3 if memo else later)
    assert endpoint.calls == 1  # within its ttl: not fetched again, judged again
    sig = checks["status_list_signature"]
    assert not sig.passed and sig.code == "unavailable" and "status_signer.validity" in sig.reason, sig
    assert not checks["revocation_status"].passed and checks["revocation_status"].code == "unavailable"


def test_a_cached_list_whose_signer_certificate_is_not_yet_valid_at_a_lookup_is_not_trusted():
    """The same the other way: a list cached while its signer was valid, asked about at an
    earlier instant (a reader's clock set back, a verification at a past time) before the
    signer's notBefore, is not trusted, whether the outcome was kept or not."""
    pki = make_pki()
    issued = NOW.replace(microsecond=0)
    late = _short_lived_signer(pki, issued - dt.timedelta(seconds=10), issued + dt.timedelta(days=1))
    cache = StatusListCache(_Lists([_token(late, issued - dt.timedelta(seconds=10), ttl=3600)]))
    assert all(c.passed for c in _status(cache, pki, issued).values())
    for index in (3, 4):
        checks = _status(cache, pki, issued - dt.timedelta(seconds=11), index=index)
        sig = checks["status_list_signature"]
        assert not sig.passed and "status_signer.validity" in sig.reason, sig
        assert not checks["revocation_status"].passed
    assert all(c.passed for c in _status(cache, pki, issued - dt.timedelta(seconds=10)).values())


def test_the_http_fetcher_asks_with_if_none_match_only_when_it_holds_an_etag():
    """RFC 9110 13.1.2: a revalidation names the ETag kept; a first fetch names none."""
    seen = []

    def answer(request):
        seen.append((request.headers.get("if-none-match"), request.headers.get("accept")))
        return httpx.Response(200, content=b"token", headers={"etag": '"v1"'})

    fetcher = HttpxFetcher(httpx.Client(transport=httpx.MockTransport(answer)))
    assert fetcher(STATUS_URI, None).headers["etag"] == '"v1"'
    fetcher(STATUS_URI, '"v1"')
    assert seen == [(None, "application/statuslist+cwt"), ('"v1"', "application/statuslist+cwt")]


def test_a_refresh_answered_with_an_http_error_keeps_the_cached_list():
    """An HTTP error status is no list: the body of a 503 never replaces the verified copy,
    which answers on (within its exp; no signed ttl here) and the reason says the refresh
    failed."""
    pki = make_pki()
    endpoint = _Lists([_token(pki, NOW.replace(microsecond=0))], cache_control="max-age=60")
    cache = StatusListCache(endpoint)
    assert all(c.passed for c in _status(cache, pki, NOW).values())
    asked = []
    cache.fetcher = lambda uri, etag: asked.append(uri) or HttpAnswer(503, b"\xa0")  # a body: no list
    later = _status(cache, pki, NOW + dt.timedelta(seconds=61))
    assert asked == [STATUS_URI]
    assert all(c.passed for c in later.values()), later
    assert later["status_list_freshness"].reason.startswith("refresh failed (HTTP 503); ")


def test_a_clock_without_a_timezone_gives_a_refusal_not_a_verdict():
    """The core refuses a naive ``now`` (MdocError); at the reader's boundary that is an
    unverifiable response, never a result without checks or one that passes."""
    pki = make_pki()
    data, st = response(pki.ds_key, pki.ds)
    result = _pipeline(pki).verify(data, session_transcript=st, now=NOW.replace(tzinfo=None))
    assert not result.valid and result.failed() == ["response_status"]
    assert result.checks[0].code == "malformed" and "unverifiable" in result.checks[0].reason


def test_an_unexpected_error_inside_verification_is_a_refusal_not_a_crash():
    """The reader's boundary: whatever escapes the verifier (here a reader's own extra check
    that fails with a bug) gives an unverifiable response, for a presentation and for an
    IssuerSigned alone, never an exception to the caller or a result without checks."""
    pki = make_pki()

    def broken(ctx):
        raise RuntimeError("bug in a check")

    clock = Clock(NOW)
    pipe = ReaderPipeline(pki.trust(), clock=clock, status=StatusListCache(StatusPublisher(pki, clock)),
                          extra_checks=[broken])
    data, st = response(pki.ds_key, pki.ds)
    result = pipe.verify(data, session_transcript=st)
    assert result.failed() == ["response_status"] and result.checks[0].code == "malformed"
    assert "unverifiable: RuntimeError: bug in a check" in result.checks[0].reason
    alone = pipe.verify_issuer_signed(DeviceResponse.decode(data).documents[0].issuer_signed.encode())
    assert alone.failed() == ["mso_structure"] and alone.checks[0].code == "malformed"
    assert "RuntimeError" in alone.checks[0].reason


def test_a_reader_configured_without_profile_checks_judges_the_chain_and_scope_only():
    """PipelineConfig(check_profiles=False): no Annex B verdicts (iaca_profile, ds_profile),
    so a DS certificate outside Table B.3 that chains to the IACA is accepted; the trust
    anchor's scope is still judged."""
    pki = make_pki()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "DS")]))
            .issuer_name(pki.iaca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(T0 - dt.timedelta(days=1)).not_valid_after(T0 + dt.timedelta(days=600))
            .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.0.18013.5.1.2")]), critical=True)
            .sign(pki.iaca_key, hashes.SHA256()))
    clock = Clock(NOW)
    pipe = ReaderPipeline(pki.trust(), clock=clock, config=PipelineConfig(check_profiles=False),
                          status=StatusListCache(StatusPublisher(pki, clock)))
    data, st = response(key, cert)
    result = pipe.verify(data, session_transcript=st)
    names = [c.name for c in result.checks]
    assert result.valid, failed(result)
    assert "ds_profile" not in names and "iaca_profile" not in names and "trust_anchor_scope" in names
    scoped = TrustStore([TrustAnchor(pki.iaca, frozenset({"org.iso.18013.5.1.mDL"}))])
    elsewhere = ReaderPipeline(scoped, clock=clock, config=PipelineConfig(check_profiles=False),
                               status=StatusListCache(StatusPublisher(pki, clock)))
    assert failed(elsewhere.verify(data, session_transcript=st)) == {"trust_anchor_scope"}
