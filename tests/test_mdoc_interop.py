"""pymdoccbor interop both ways, and the three things pymdoccbor wrongly accepts (issue 2 item 6)."""

from __future__ import annotations

import base64
import datetime as dt

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from test_mdoc_issuing import DOC_TYPE, NS, make_pki, present, transcript

from protocols import cbor, cose, mdoc

pymdoccbor = pytest.importorskip("pymdoccbor")
from pymdoccbor.mdoc.issuer import MdocCborIssuer  # noqa: E402
from pymdoccbor.mdoc.verifier import MdocCbor  # noqa: E402

NOW = dt.datetime.now(dt.UTC)  # pymdoccbor stamps its MSO with the wall clock


@pytest.fixture(scope="module")
def pki():
    return make_pki(NOW)


def _theirs_verify(data: bytes, pki) -> bool:
    m = MdocCbor()
    m.loads(data)
    return m.verify(trusted_root_certs=[pki[0]])


def _ours(pki, data, st):
    # read the clock after issuing: pymdoccbor's validFrom is its own "now", to the second
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    return mdoc.verify_device_response(data, trust_anchors=[pki[0]], session_transcript=st, now=now)


def _issue_now(pki, dk, **kw):
    iaca, ds_key, ds_cert = pki
    return mdoc.build_issuer_signed(
        {NS: {"family_name": "Yamada", "age_over_18": True}}, kw.pop("doc_type", DOC_TYPE), dk.public_key(),
        cose.key_signer(ds_key), [ds_cert.public_bytes(Encoding.DER)],
        NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=30), **kw,
    )


def test_ours_verifies_with_pymdoccbor(pki):
    dk = ec.generate_private_key(ec.SECP256R1())
    st = transcript()
    data = present(_issue_now(pki, dk), dk, st)
    assert _ours(pki, data, st).valid
    assert _theirs_verify(data, pki)


def _their_issuer_signed(pki, tmp_path, device_key, doc_type=DOC_TYPE) -> dict:
    iaca, ds_key, ds_cert = pki
    cert_path = tmp_path / "ds.pem"
    cert_path.write_bytes(ds_cert.public_bytes(Encoding.PEM))
    n = ds_key.private_numbers()
    issuer = MdocCborIssuer(
        private_key={"KTY": "EC2", "CURVE": "P_256", "ALG": "ES256", "D": n.private_value.to_bytes(32, "big")},
        alg="ES256",
    )
    pem = device_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    issuer.new(
        data={NS: {"family_name": "Suzuki", "age_over_18": True}},
        doctype=doc_type,
        validity={"issuance_date": NOW.date().isoformat(), "expiry_date": (NOW + dt.timedelta(days=30)).date().isoformat()},
        devicekeyinfo=base64.urlsafe_b64encode(pem).decode(),
        cert_path=str(cert_path),
    )
    return cbor2.loads(issuer.dump())


def _padded_device_key():
    # pymdoccbor strips leading zero bytes of the coordinates; pick a key where that cannot happen
    while True:
        k = ec.generate_private_key(ec.SECP256R1())
        n = k.public_key().public_numbers()
        if n.x >= 2**248 and n.y >= 2**248:
            return k


def test_pymdoccbor_mdoc_verifies_with_ours(pki, tmp_path):
    dk = _padded_device_key()
    theirs = _their_issuer_signed(pki, tmp_path, dk)
    issued = mdoc.IssuerSigned.from_cbor(theirs["documents"][0]["issuerSigned"])
    st = transcript()
    data = present(issued, dk, st)
    result = _ours(pki, data, st)
    assert result.valid, result.to_json()
    assert result.documents[0].elements[NS]["family_name"] == "Suzuki"


def test_refuse_zeroed_device_signature(pki):
    dk = ec.generate_private_key(ec.SECP256R1())
    st = transcript()
    dr = mdoc.DeviceResponse.decode(present(_issue_now(pki, dk), dk, st))
    doc = dr.documents[0]
    sig = doc.device_signed.device_auth.device_signature
    zero = cose.Sign1(sig.protected_bytes, sig.protected, sig.unprotected, None, bytes(64))
    bad = mdoc.Document(doc.doc_type, doc.issuer_signed,
                        mdoc.DeviceSigned(doc.device_signed.name_spaces_bytes, mdoc.DeviceAuth(device_signature=zero)))
    data = mdoc.DeviceResponse((bad,)).encode()
    assert _theirs_verify(data, pki)  # the weak verifier accepts it
    assert _ours(pki, data, st).failed() == ["device_authentication"]


def test_refuse_namespace_without_digests(pki):
    dk = ec.generate_private_key(ec.SECP256R1())
    st = transcript()
    issued = _issue_now(pki, dk)
    extra = mdoc.IssuerSignedItem.create(1, bytes(16), "nationality", "XX")
    forged = mdoc.IssuerSigned({**issued.name_spaces, "org.example.forged": (extra.raw,)}, issued.issuer_auth)
    data = present(forged, dk, st)
    assert _theirs_verify(data, pki)
    result = _ours(pki, data, st)
    assert result.failed() == ["value_digests"]
    assert "no digests" in result.check("value_digests").reason


def test_refuse_doc_type_mismatch(pki):
    dk = ec.generate_private_key(ec.SECP256R1())
    st = transcript()
    issued = _issue_now(pki, dk, doc_type="org.example.other.1")
    data = present(issued, dk, st, doc_type=DOC_TYPE)
    assert _theirs_verify(data, pki)
    assert _ours(pki, data, st).failed() == ["doc_type"]


def test_pymdoccbor_strips_coordinate_padding(pki, tmp_path):
    # their device key encoding drops leading zeros (RFC 9053 §7.1.1 says keep them); we refuse it
    for i in range(1, 4000):
        dk = ec.derive_private_key(i, ec.SECP256R1())
        if dk.public_key().public_numbers().x < 2**248:
            break
    theirs = _their_issuer_signed(pki, tmp_path, dk)
    issued = mdoc.IssuerSigned.from_cbor(theirs["documents"][0]["issuerSigned"])
    raw, value = cbor.unembed(issued.issuer_auth.payload)
    assert len(value["deviceKeyInfo"]["deviceKey"][-2]) < 32
    st = transcript()
    result = _ours(pki, _present_mac(issued, st), st)
    assert "mso_structure" in result.failed()


def _present_mac(issued, st) -> bytes:
    doc = mdoc.build_document(issued, st, emac_key=bytes(32), doc_type=DOC_TYPE)
    return mdoc.DeviceResponse((doc,)).encode()
