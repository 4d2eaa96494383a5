"""The reader pipeline's warm paths (specs/mdoc-encoding.md, "Caches"): a pipeline that has
verified a presentation before gives the same verdicts and reasons as a fresh one, and the
status-list memo is used exactly while the cached list is fresh."""

from __future__ import annotations

import datetime as dt

import pytest
from test_present_kit import NS, STATUS_URI, T0, Clock, StatusPublisher, make_pki
from test_reader_pipeline import DOCTYPE, NOW, response

from mcred.present import reader_pipeline
from protocols import cose
from protocols.mdoc import DeviceAuth, DeviceResponse, DeviceSigned, Document, IssuerSigned
from reader.pipeline import StatusListCache


@pytest.fixture(scope="module")
def pki():
    return make_pki()


def _json(pipe, data, st, now):
    return pipe.verify(data, session_transcript=st, now=now).to_json()


def _fresh(pki, clock):
    return reader_pipeline(trust=pki.trust(), clock=clock, fetcher=StatusPublisher(pki, clock))


def test_warm_pipeline_gives_the_fresh_pipelines_verdicts(pki):
    clock = Clock(NOW)
    warm = _fresh(pki, clock)
    data, st = response(pki.ds_key, pki.ds)
    first = _json(warm, data, st, NOW)
    assert first["valid"] is True
    doc = DeviceResponse.decode(data).documents[0]
    raws = list(doc.issuer_signed.name_spaces[NS])
    flipped = bytearray(raws[0])
    flipped[len(flipped) // 2] ^= 1
    sig = doc.device_signed.device_auth.device_signature
    bad_sig = cose.Sign1(sig.protected_bytes, sig.protected, sig.unprotected, None, sig.signature[::-1])
    cases = {
        "genuine": (data, st),
        "flipped item": (DeviceResponse((Document(DOCTYPE, IssuerSigned({NS: (bytes(flipped),)},
                                                                         doc.issuer_signed.issuer_auth),
                                                  doc.device_signed),)).encode(), st),
        "device signature": (DeviceResponse((Document(DOCTYPE, doc.issuer_signed,
                                                      DeviceSigned(doc.device_signed.name_spaces_bytes,
                                                                   DeviceAuth(device_signature=bad_sig))),)).encode(),
                             st),
        "other session": (data, response(pki.ds_key, pki.ds)[1]),
        "doc type": (DeviceResponse((Document("org.example", doc.issuer_signed, doc.device_signed),)).encode(), st),
        "garbage": (b"\xa0", st),
    }
    for when in (NOW, NOW + dt.timedelta(days=30, minutes=2), NOW + dt.timedelta(days=31)):
        for name, (d, s) in cases.items():
            assert _json(warm, d, s, when) == _json(_fresh(pki, Clock(when)), d, s, when), (name, when)


def test_within_the_skew_the_document_is_listed_as_when_strictly_valid(pki):
    data, st = response(pki.ds_key, pki.ds)
    end = T0 + dt.timedelta(days=30)
    inside = _json(_fresh(pki, Clock(NOW)), data, st, NOW)
    skewed = _json(_fresh(pki, Clock(end)), data, st, end + dt.timedelta(minutes=2))
    assert skewed["valid"] is True and skewed["documents"] == inside["documents"] != []
    late = _json(_fresh(pki, Clock(end)), data, st, end + dt.timedelta(minutes=6))
    assert late["valid"] is False and late["documents"] == []


def test_status_memo_is_used_exactly_while_the_list_is_fresh(pki):
    clock = Clock(NOW)
    publisher = StatusPublisher(pki, clock)
    cache = StatusListCache(publisher)
    anchors = [pki.iaca]
    first = cache.lookup(STATUS_URI, 3, anchors, NOW)
    assert first.checks[2].passed
    entry = cache.entry(STATUS_URI)
    memo = cache._memo[(STATUS_URI, 3)]
    tick = dt.timedelta(microseconds=1)
    until = entry.fetched_at + dt.timedelta(seconds=entry.lifetime())
    exp = entry.token.header.exp
    for t in (NOW, until - tick, until, until + tick, exp - tick, exp, exp + tick):
        assert (t < memo.until) == entry.fresh(t), t
    assert memo.outcome is first and memo.anchor == pki.iaca and memo.since <= NOW  # by name, not by position
    assert cache.lookup(STATUS_URI, 3, anchors, NOW) is first  # memo hit
    assert cache.lookup(STATUS_URI, 3, [], NOW) is not first  # another anchor set: looked up again
    # the same fetch time but another max-age (a revalidation under a stopped clock): not reused
    calls = len(publisher.calls)
    entry.max_age = 1
    again = cache.lookup(STATUS_URI, 3, anchors, NOW)
    assert again is not first and len(publisher.calls) == calls
    assert [c.name for c in again.checks] == [c.name for c in first.checks]
    # past the lifetime: refreshed, not the memo
    later = cache.lookup(STATUS_URI, 3, anchors, NOW + dt.timedelta(seconds=2))
    assert later is not again and len(publisher.calls) == calls + 1


def test_a_list_verified_under_one_iaca_is_not_trusted_for_another(pki):
    """The cached list's signature check is per trust anchor: a list that chained to IACA A
    earlier does not pass ``status_list_signature`` for a document whose chain ends at IACA
    B, whichever index is asked (a new index used to get "verified earlier")."""
    other = make_pki("Other")
    cache = StatusListCache(StatusPublisher(pki, Clock(NOW)))
    assert cache.lookup(STATUS_URI, 3, [pki.iaca], NOW).checks[0].passed
    for idx in (3, 4):  # the memoised index and a new one
        out = cache.lookup(STATUS_URI, idx, [other.iaca], NOW)
        assert [c.passed for c in out.checks] == [False, True, False], (idx, out.checks)
        assert "verified earlier" not in out.checks[0].reason
    # and the first anchor still gets its verdict, memoised or not
    for idx in (3, 5):
        assert [c.passed for c in cache.lookup(STATUS_URI, idx, [pki.iaca], NOW).checks] == [True, True, True]
