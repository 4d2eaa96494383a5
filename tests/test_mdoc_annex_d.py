"""ISO/IEC 18013-5:2021 Annex D reproduced value by value (vectors in ../shared/vectors)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from test_mdoc_vectors import cert, hexv, private_key, public_xy

from protocols import cbor, cose, mdoc

NOW = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)


def test_device_engagement_qr_decodes_and_reencodes():
    de = mdoc.DeviceEngagement.decode(hexv("device_engagement_qr"))
    assert de.version == "1.0"
    assert (de.e_device_key.x, de.e_device_key.y) == public_xy("ephemeral_device_key")
    assert cbor.dumps(cbor.CBORTag(24, de.e_device_key_bytes)) == hexv("e_device_key_bytes")
    rebuilt = mdoc.DeviceEngagement.build(de.e_device_key, retrieval_methods=list(de.retrieval_methods))
    assert rebuilt.encode() == hexv("device_engagement_qr")
    assert mdoc.DeviceEngagement.from_qr_uri(rebuilt.to_qr_uri()) == de


def test_session_transcript_parts_and_rebuild():
    st = mdoc.SessionTranscript.decode(hexv("session_transcript_bytes"))
    assert st.raw == hexv("session_transcript")
    assert st.tagged == hexv("session_transcript_bytes")
    assert st.device_engagement_bytes == hexv("device_engagement_in_transcript")
    assert mdoc.DeviceEngagement.decode(st.device_engagement_bytes).e_device_key == \
        mdoc.DeviceEngagement.decode(hexv("device_engagement_qr")).e_device_key
    assert st.handover == [hexv("handover_select"), hexv("handover_request")]
    rebuilt = mdoc.SessionTranscript.build(st.device_engagement_bytes, st.e_reader_key_bytes, st.handover)
    assert rebuilt.raw == hexv("session_transcript")
    assert mdoc.SessionTranscript.decode(hexv("session_transcript")) == st


def test_ecdh_and_session_keys():
    reader, device = private_key("ephemeral_reader_key"), private_key("ephemeral_device_key")
    z = mdoc.ecdh(reader, device.public_key())
    assert z == hexv("ecdh_shared_secret") == mdoc.ecdh(device, reader.public_key())
    assert hashlib.sha256(hexv("session_transcript_bytes")).digest() == hexv("hkdf_salt")
    for transcript in (hexv("session_transcript_bytes"), hexv("session_transcript")):
        assert mdoc.derive_session_keys(z, transcript) == (hexv("sk_reader"), hexv("sk_device"))
    assert mdoc.SessionEncryption.iv(mdoc.session.READER_IDENTIFIER, 1) == hexv("iv_reader_msg1")
    assert mdoc.SessionEncryption.iv(mdoc.session.MDOC_IDENTIFIER, 1) == hexv("iv_device_msg1")


def _sessions():
    st = hexv("session_transcript_bytes")
    se = mdoc.SessionEstablishment.decode(hexv("session_establishment"))
    de = mdoc.DeviceEngagement.decode(hexv("device_engagement_qr"))
    reader = mdoc.SessionEncryption.for_reader(private_key("ephemeral_reader_key"), de.e_device_key, st)
    device = mdoc.SessionEncryption.for_mdoc(private_key("ephemeral_device_key"), se.e_reader_key, st)
    return se, reader, device


def test_session_establishment_decrypts_and_reencrypts():
    se, reader, device = _sessions()
    assert (se.e_reader_key.x, se.e_reader_key.y) == public_xy("ephemeral_reader_key")
    assert device.decrypt(se.data) == hexv("device_request")
    assert mdoc.SessionEstablishment.build(se.e_reader_key, reader.encrypt(hexv("device_request"))).encode() == \
        hexv("session_establishment")


def test_session_data_decrypts_and_reencrypts():
    se, reader, device = _sessions()
    reader.encrypt(hexv("device_request"))
    device.decrypt(se.data)
    sd = mdoc.SessionData.decode(hexv("session_data"))
    assert sd.status is None
    assert mdoc.SessionData(data=device.encrypt(hexv("device_response"))).encode() == hexv("session_data")
    assert reader.decrypt(sd.data) == hexv("device_response")


def test_session_termination():
    sd = mdoc.SessionData.decode(hexv("session_termination"))
    assert sd == mdoc.SessionData(status=mdoc.SESSION_STATUS_TERMINATION)
    assert sd.encode() == hexv("session_termination")


def test_session_replay_and_wrong_direction_are_refused():
    se, reader, device = _sessions()
    assert device.decrypt(se.data) == hexv("device_request")
    with pytest.raises(mdoc.SessionDecryptError):
        device.decrypt(se.data)  # replay: counter moved on
    sd = mdoc.SessionData.decode(hexv("session_data"))
    with pytest.raises(mdoc.SessionDecryptError):
        device.decrypt(sd.data)  # mdoc's own direction
    assert reader.decrypt(sd.data) == hexv("device_response")


def test_device_request_and_items_request():
    req = mdoc.DeviceRequest.decode(hexv("device_request"))
    assert req.version == "1.0" and len(req.doc_requests) == 1
    items = req.doc_requests[0].items_request
    assert items.raw == hexv("items_request")
    assert items.doc_type == "org.iso.18013.5.1.mDL"
    assert items.name_spaces["org.iso.18013.5.1"] == {
        "family_name": True, "document_number": True, "driving_privileges": True,
        "issue_date": True, "expiry_date": True, "portrait": False,
    }
    assert req.doc_requests[0].reader_auth.encode() == hexv("reader_auth")
    assert req.encode() == hexv("device_request")
    rebuilt = mdoc.ItemsRequest.build(items.doc_type, items.name_spaces)
    assert rebuilt.raw == hexv("items_request")


def test_reader_authentication_bytes_and_signature():
    req = mdoc.DeviceRequest.decode(hexv("device_request"))
    assert mdoc.reader_authentication_bytes(hexv("session_transcript_bytes"), hexv("items_request")) == \
        hexv("reader_authentication_bytes")
    result = mdoc.verify_reader_auth(
        req, session_transcript=hexv("session_transcript_bytes"), trust_anchors=[cert("reader_root_cert")], now=NOW
    )
    assert result.valid, result.to_json()
    assert [c.name for c in result.checks] == ["reader_certificate_chain", "reader_authentication"]
    late = mdoc.verify_reader_auth(
        req, session_transcript=hexv("session_transcript_bytes"), trust_anchors=[cert("reader_root_cert")],
        now=dt.datetime(2024, 6, 1, tzinfo=dt.UTC),
    )
    assert late.failed() == ["reader_certificate_chain"]
    wrong = mdoc.verify_reader_auth(
        req, session_transcript=hexv("session_transcript_bytes")[:-1] + b"\0", trust_anchors=[cert("reader_root_cert")], now=NOW
    )
    assert "reader_authentication" in wrong.failed()


def test_device_response_structure_and_reencoding():
    dr = mdoc.DeviceResponse.decode(hexv("device_response"))
    assert dr.status == 0 and dr.version == "1.0" and len(dr.documents) == 1
    doc = dr.documents[0]
    assert doc.issuer_signed.issuer_auth.encode() == hexv("issuer_auth")
    assert doc.issuer_signed.issuer_auth.payload == hexv("mobile_security_object_bytes")
    assert doc.device_signed.device_auth.device_mac.encode() == hexv("device_mac")
    assert doc.device_signed.name_spaces_bytes == b"\xa0"
    items = doc.issuer_signed.items()["org.iso.18013.5.1"]
    assert [i.element_identifier for i in items] == [
        "family_name", "issue_date", "expiry_date", "document_number", "portrait", "driving_privileges"
    ]
    portrait = next(i for i in items if i.element_identifier == "portrait")
    assert portrait.element_value == hexv("portrait")
    assert dr.encode() == hexv("device_response")


def test_mso_contents():
    doc = mdoc.DeviceResponse.decode(hexv("device_response")).documents[0]
    mso = doc.issuer_signed.mso()
    assert mso.version == "1.0" and mso.digest_algorithm == "SHA-256"
    assert mso.doc_type == "org.iso.18013.5.1.mDL"
    assert {ns: len(d) for ns, d in mso.value_digests.items()} == {"org.iso.18013.5.1": 13, "org.iso.18013.5.1.US": 4}
    assert (mso.device_key_info.device_key.x, mso.device_key_info.device_key.y) == public_xy("static_device_key")
    v = mso.validity_info
    assert v.signed == v.valid_from == dt.datetime(2020, 10, 1, 13, 30, 2, tzinfo=dt.UTC)
    assert v.valid_until == dt.datetime(2021, 10, 1, 13, 30, 2, tzinfo=dt.UTC)
    assert mso.status is None
    assert mso.to_bytes() == hexv("mobile_security_object_bytes")  # our encoder agrees
    for item in doc.issuer_signed.items()["org.iso.18013.5.1"]:
        assert mso.value_digests["org.iso.18013.5.1"][item.digest_id] == item.digest()
        assert IssuerSignedItem_reencodes(item)


def IssuerSignedItem_reencodes(item) -> bool:  # noqa: N802 - reads as a sentence
    return mdoc.IssuerSignedItem.create(item.digest_id, item.random, item.element_identifier, item.element_value).raw == item.raw


def test_device_authentication_bytes_rebuilt_byte_for_byte():
    assert mdoc.device_authentication_bytes(
        hexv("session_transcript_bytes"), "org.iso.18013.5.1.mDL", b"\xa0"
    ) == hexv("device_authentication_bytes")


def test_emac_key():
    z = mdoc.ecdh(private_key("static_device_key"), private_key("ephemeral_reader_key").public_key())
    assert z == hexv("ecdh_mac_secret") == mdoc.ecdh(private_key("ephemeral_reader_key"), private_key("static_device_key").public_key())
    assert mdoc.derive_emac_key(z, hexv("session_transcript_bytes")) == hexv("e_mac_key")
    assert mdoc.build_device_signed(
        "org.iso.18013.5.1.mDL", hexv("session_transcript_bytes"), emac_key=hexv("e_mac_key")
    ).device_auth.device_mac.encode() == hexv("device_mac")


def test_ds_certificate_chain():
    chain = mdoc.verify_chain([hexv("ds_cert")], [cert("iaca_cert")], NOW, eku=mdoc.EKU_MDL_DS)
    assert chain.public_key.public_numbers() == cert("ds_cert").public_key().public_numbers()
    cose.Sign1.decode(hexv("issuer_auth")).verify(chain.public_key)


def test_full_device_response_verification():
    result = mdoc.verify_device_response(
        hexv("device_response"),
        trust_anchors=[cert("iaca_cert")],
        session_transcript=hexv("session_transcript_bytes"),
        now=NOW,
        reader_private_key=private_key("ephemeral_reader_key"),
    )
    assert result.valid, result.to_json()
    assert [c.name for c in result.checks] == [
        "response_status", "issuer_certificate_chain", "issuer_signature", "mso_structure",
        "doc_type", "value_digests", "validity", "device_authentication",
    ]
    (doc,) = result.documents
    assert doc.doc_type == "org.iso.18013.5.1.mDL"
    elements = doc.elements["org.iso.18013.5.1"]
    assert elements["family_name"] == "Doe" and elements["document_number"] == "123456789"
    js = result.to_json()
    assert js["documents"][0]["elements"]["org.iso.18013.5.1"]["issue_date"] == "2019-10-20"
    import base64
    assert base64.b64decode(js["documents"][0]["elements"]["org.iso.18013.5.1"]["portrait"]) == hexv("portrait")


def test_annex_d_verification_fails_outside_validity_and_without_key():
    late = mdoc.verify_device_response(
        hexv("device_response"), trust_anchors=[cert("iaca_cert")],
        session_transcript=hexv("session_transcript_bytes"), now=dt.datetime(2022, 1, 1, tzinfo=dt.UTC),
        reader_private_key=private_key("ephemeral_reader_key"),
    )
    assert "validity" in late.failed() and "issuer_certificate_chain" in late.failed()
    nokey = mdoc.verify_device_response(
        hexv("device_response"), trust_anchors=[cert("iaca_cert")],
        session_transcript=hexv("session_transcript_bytes"), now=NOW,
    )
    assert nokey.failed() == ["device_authentication"]
    wrong_anchor = mdoc.verify_device_response(
        hexv("device_response"), trust_anchors=[cert("reader_root_cert")],
        session_transcript=hexv("session_transcript_bytes"), now=NOW,
        reader_private_key=private_key("ephemeral_reader_key"),
    )
    assert wrong_anchor.failed() == ["issuer_certificate_chain"]
    assert wrong_anchor.documents == ()
