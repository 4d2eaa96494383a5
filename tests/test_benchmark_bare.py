"""The bare sketches in benchmarks/bare.py are a yardstick only if they do the whole work:
an mdoc the sketch issues must pass our full verification, and the sketch verifier must
accept our DeviceResponse, return its elements and refuse a changed item."""

import datetime as dt

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from benchmarks import bare
from benchmarks import mdoc as bm
from protocols import cose, mdoc


@pytest.fixture(scope="module")
def world():
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    iaca, ds_key, ds_cert = bm.make_pki(now)
    e_key = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    st = mdoc.SessionTranscript.build(mdoc.DeviceEngagement.build(e_key).encode(), e_key, None)
    return now, iaca, ds_key, ds_cert, st


def test_sketch_issued_mdoc_passes_our_verifier(world):
    now, iaca, ds_key, ds_cert, st = world
    device = ec.generate_private_key(ec.SECP256R1())
    items, issuer_auth = bare.sketch_issue(bm.ELEMENTS[bm.NS], bm.NS, bm.DOC_TYPE, device.public_key(), ds_key,
                                           ds_cert.public_bytes(Encoding.DER), now - dt.timedelta(hours=1),
                                           now + dt.timedelta(days=30))
    issued = mdoc.IssuerSigned.decode(cbor2.dumps({"nameSpaces": {bm.NS: [cbor2.loads(i) for i in items]},
                                                   "issuerAuth": issuer_auth}))
    response = mdoc.DeviceResponse((mdoc.build_document(issued, st, signer=cose.key_signer(device)),)).encode()
    result = mdoc.verify_device_response(response, trust_anchors=[iaca], session_transcript=st, now=now)
    assert result.valid, [c for c in result.checks if not c.passed]


def test_sketch_verifier_checks_our_response(world):
    now, iaca, ds_key, ds_cert, st = world
    device = ec.generate_private_key(ec.SECP256R1())
    issued = mdoc.build_issuer_signed(bm.ELEMENTS, bm.DOC_TYPE, device.public_key(), cose.key_signer(ds_key),
                                      [ds_cert.public_bytes(Encoding.DER)], now - dt.timedelta(hours=1),
                                      now + dt.timedelta(days=30))
    response = mdoc.DeviceResponse((mdoc.build_document(issued, st, signer=cose.key_signer(device)),)).encode()
    assert bare.sketch_verify(response, st.raw, ds_cert.public_key()) == bm.ELEMENTS[bm.NS]
    changed = response.replace("東京都千代田区".encode(), "東京都千代田町".encode())
    assert changed != response
    with pytest.raises(ValueError, match="resident_address"):
        bare.sketch_verify(changed, st.raw, ds_cert.public_key())
