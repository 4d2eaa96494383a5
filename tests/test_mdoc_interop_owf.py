"""A third, independent mdoc implementation reads ours: @owf/mdoc (OpenWallet Foundation,
TypeScript; the library under Credo's wallets, grown from @auth0/mdl with strict schemas
for every structure and the crypto left to a context the caller supplies, node:crypto in
interop/owf-mdoc/verify.mjs). It verifies the card-substitute mdoc our issuer signs and our
wallet presents, by device signature and by device MAC, sees exactly what we disclosed,
and refuses a tampered element, another session's transcript and an untrusted IACA.
(@auth0/mdl is in test_mdoc_interop_auth0.py, pymdoccbor in test_mdoc_interop.py.)"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from node_bridge import NodeBridge
from test_mdoc_interop_auth0 import (  # noqa: F401 - issued is a fixture
    DISCLOSE,
    PEM,
    _cose_private,
    assert_sees_what_we_disclosed,
    issued,
    refusal_cases,
    signed_and_maced,
)

from protocols import cose
from protocols.mdoc import (
    DeviceEngagement,
    DeviceResponse,
    SessionTranscript,
    build_document,
    verify_device_response,
)
from protocols.mdoc.session import derive_emac_key

OWF = NodeBridge("owf-mdoc", "@owf/mdoc", "verify.mjs")
why = OWF.unavailable()
pytestmark = pytest.mark.skipif(why is not None, reason=f"@owf/mdoc interop: {why}")


def _session() -> tuple[ec.EllipticCurvePrivateKey, SessionTranscript]:
    """A reader key and the SessionTranscript of a real engagement (the library decodes the
    DeviceEngagement inside and wants its security, EDeviceKey included)."""
    e_device = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    reader = ec.generate_private_key(ec.SECP256R1())
    return reader, SessionTranscript.build(DeviceEngagement.build(e_device).encode(),
                                           cose.CoseKey.from_public_key(reader.public_key()))


def _case(name, response, st, reader_key=None, *, now=None, empty_aad=True) -> dict:  # noqa: ANN001
    return {"name": name, "response": response.hex(), "transcript": st.raw.hex(),
            "readerKey": _cose_private(reader_key).hex() if reader_key is not None else None,
            "now": (now or dt.datetime.now(dt.UTC)).isoformat(), "emptyExternalAad": empty_aad}


def _call(iaca, *cases) -> dict:  # noqa: ANN001
    return OWF.call({"iaca": [iaca.public_bytes(PEM).decode()], "cases": list(cases)})["cases"]


def test_owf_verifies_our_mdoc_signed_and_maced_and_sees_exactly_the_disclosed_items(issued):  # noqa: F811
    iaca, device, signed = issued
    by_signature, st, by_mac, st_mac, reader = signed_and_maced(signed, device, _session)
    answer = _call(iaca, _case("signature", by_signature, st), _case("mac", by_mac, st_mac, reader))
    ours = verify_device_response(by_signature, trust_anchors=[iaca], session_transcript=st,
                                  now=dt.datetime.now(dt.UTC))
    (doc,) = ours.documents
    assert answer["signature"]["valid"] and answer["signature"]["error"] is None, answer["signature"]
    assert "DEVICE_AUTH: Device signature must be valid" in answer["signature"]["passed"]
    # @owf/mdoc 0.6.0 refuses every deviceMac in DeviceResponse.verify (see verify.mjs): the
    # two refusals are its own, the MAC is verified by its DeviceMac.verify one level down
    mac = answer["mac"]
    assert mac["error"] is None and set(mac["failed"]) <= {
        "DEVICE_AUTH: Device MAC must use alg 5 (HMAC 256/256)",
        "DEVICE_AUTH: No Device Signature or Device Mac found on Device Auth (No Device Signature or "
        "Device Mac found on Device Auth)"}, mac["failed"]
    assert mac["deviceMac"] is True and answer["signature"]["deviceMac"] is None
    for name in ("signature", "mac"):
        got = answer[name]
        assert any(p.startswith("ISSUER_AUTH") for p in got["passed"]), got["passed"]
        assert any(p.startswith("DATA_INTEGRITY") for p in got["passed"]), got["passed"]
        assert_sees_what_we_disclosed(got["elements"], doc, name)


def test_owf_refuses_what_it_should(issued):  # noqa: F811
    iaca, device, signed = issued
    good, st, tampered, other_st, foreign = refusal_cases(signed, device, iaca, _session)
    answer = _call(iaca, _case("good", good, st), _case("tampered", tampered, st),
                   _case("other-session", good, other_st))
    assert answer["good"]["valid"], answer["good"]
    assert not answer["tampered"]["valid"] and any(
        f.startswith("DATA_INTEGRITY") for f in answer["tampered"]["failed"]), answer["tampered"]
    assert not answer["other-session"]["valid"] and any(
        f.startswith("DEVICE_AUTH") for f in answer["other-session"]["failed"]), answer["other-session"]
    # a MAC made for another reader's key does not verify under this one's
    reader, st_mac = _session()
    stranger_reader, _ = _session()
    emac = derive_emac_key(device.exchange(ec.ECDH(), stranger_reader.public_key()), st_mac)
    by_mac = DeviceResponse((build_document(signed, st_mac, disclose=DISCLOSE, emac_key=emac),)).encode()
    assert _call(iaca, _case("mac-other-reader", by_mac, st_mac, reader))["mac-other-reader"]["deviceMac"] is False
    untrusted = _call(foreign, _case("untrusted", good, st))["untrusted"]
    assert not untrusted["valid"] and any(f.startswith("ISSUER_AUTH") for f in untrusted["failed"]), untrusted


def test_owf_on_the_annex_d_device_mac_shows_its_mac_structure_lacks_external_aad():
    """Why the bridge sets an empty external_aad: on the standard's own example (Annex D, a
    deviceMac over its SessionTranscript, with its EReaderKey), @owf/mdoc's MAC check fails
    as the library builds MAC_structure, and passes once the empty bstr RFC 9052 section 6.3
    requires is in it. Our verifier passes the same example (test_mdoc_annex_d.py)."""
    from test_mdoc_vectors import cert, hexv, private_key

    iaca = cert("iaca_cert")
    reader = private_key("ephemeral_reader_key")
    st = SessionTranscript.decode(hexv("session_transcript"))
    at = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)  # inside the example DS certificate's validity
    response = hexv("device_response")
    answer = _call(iaca, _case("as-built", response, st, reader, now=at, empty_aad=False),
                   _case("rfc9052", response, st, reader, now=at, empty_aad=True))
    assert answer["as-built"]["deviceMac"] is False and answer["rfc9052"]["deviceMac"] is True
    assert any(p.startswith("ISSUER_AUTH") for p in answer["rfc9052"]["passed"])
    assert not [f for f in answer["rfc9052"]["failed"] if f.startswith(("ISSUER_AUTH", "DATA_INTEGRITY"))]


def test_an_mdoc_owf_issues_and_presents_for_our_request_verifies_with_our_reader():
    """The other way round: @owf/mdoc issues an mDL under an Annex B IACA / DS pair of ours
    (its own encoder: random 32-bit digestIDs, full-date as tag 1004, cbor-x) and answers our
    reader's DeviceRequest with a device signature over our SessionTranscript; our reader
    pipeline verifies it and lists exactly what it was asked for, and another session's
    transcript fails device authentication."""
    from node_bridge import jwk
    from test_mdoc_interop_auth0 import interop_pki, our_reader_verifies

    from protocols.mdoc.request import DeviceRequest, DocRequest, ItemsRequest

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    iaca, ds_key, ds, device = interop_pki(now, "owf interop")
    _reader, st = _session()
    mdl, doc_type = "org.iso.18013.5.1", "org.iso.18013.5.1.mDL"
    asked = {mdl: {"family_name": False, "birth_date": False, "age_over_18": False}}
    request = DeviceRequest((DocRequest.build(ItemsRequest.build(doc_type, asked)),)).encode()
    answer = OWF.call({"mode": "issue", "docType": doc_type,
                       "nameSpaces": {mdl: {"family_name": "山田", "given_name": "花子",
                                            "birth_date": {"fullDate": "1990-04-01"}, "issuing_country": "JP",
                                            "age_over_18": True, "document_number": "JP123"}},
                       "validFrom": (now - dt.timedelta(minutes=1)).isoformat(),
                       "validUntil": (now + dt.timedelta(days=30)).isoformat(),
                       "issuerKey": jwk(ds_key), "issuerCertificate": ds.public_bytes(PEM).decode(),
                       "deviceKey": jwk(device), "transcript": st.raw.hex(), "deviceRequest": request.hex()})
    doc = our_reader_verifies(bytes.fromhex(answer["response"]), iaca, st, now, _session)
    assert doc.doc_type == doc_type
    assert doc.elements == {mdl: {"family_name": "山田", "birth_date": dt.date(1990, 4, 1), "age_over_18": True}}
