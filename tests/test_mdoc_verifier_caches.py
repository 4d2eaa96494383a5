"""MdocVerifier's caches hold parsed bytes, never verdicts: a hit still needs the issuer
signature over the same bytes, and every time- or transcript-dependent check still runs."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from test_mdoc_issuing import NOW, device_key, issue, pki, present, transcript  # noqa: F401

from protocols import cose, mdoc


def test_a_cached_mso_needs_the_signature_again_and_the_time_and_transcript_checks(pki, device_key):  # noqa: F811
    verifier = mdoc.MdocVerifier([pki[0]])
    st = transcript()
    data = present(issue(pki, device_key), device_key, st)
    assert verifier.verify(data, session_transcript=st, now=NOW).valid
    assert len(verifier._msos) == 1
    # same MSO bytes, broken issuer signature: refused before the cache is consulted
    doc = mdoc.DeviceResponse.decode(data).documents[0]
    auth = doc.issuer_signed.issuer_auth
    forged = cose.Sign1(auth.protected_bytes, auth.protected, auth.unprotected, auth.payload, bytes(64))
    bad = dataclasses.replace(doc, issuer_signed=mdoc.IssuerSigned(doc.issuer_signed.name_spaces, forged))
    result = verifier.verify(mdoc.DeviceResponse((bad,)).encode(), session_transcript=st, now=NOW)
    assert result.check("issuer_signature").passed is False
    assert result.check("mso_structure").reason.endswith("not checked: issuer signature failed")
    # cache hit, but validity at another time and device authentication over another transcript fail
    late = verifier.verify(data, session_transcript=st, now=NOW + dt.timedelta(days=301))
    assert late.failed() == ["validity"]
    other = verifier.verify(data, session_transcript=transcript(), now=NOW)
    assert other.failed() == ["device_authentication"]


def test_cached_mso_is_read_only_and_caches_are_bounded(pki, device_key):  # noqa: F811
    verifier = mdoc.MdocVerifier([pki[0]])
    st = transcript()
    data = present(issue(pki, device_key), device_key, st)
    verifier.verify(data, session_transcript=st, now=NOW)
    (entry,) = verifier._msos.values()
    mso = entry.mso
    ns = next(iter(mso.value_digests))
    with pytest.raises(TypeError):
        mso.value_digests[ns][0] = b"x"  # type: ignore[index]
    with pytest.raises(TypeError):
        mso.value_digests["other"] = {}  # type: ignore[index]
    for _ in range(3):  # fresh salts each time: a new MSO each time
        d = present(issue(pki, device_key), device_key, st)
        verifier.verify(d, session_transcript=st, now=NOW)
    assert len(verifier._msos) == 4
    assert mdoc.MdocVerifier([pki[0]], cache_chains=False)._msos is None


def test_mso_with_key_authorizations_is_not_cached(pki, device_key):  # noqa: F811
    verifier = mdoc.MdocVerifier([pki[0]])
    st = transcript()
    data = present(issue(pki, device_key, key_authorizations={"nameSpaces": ["x"]}), device_key, st)
    assert verifier.verify(data, session_transcript=st, now=NOW).valid
    assert verifier._msos == {}
