"""NFC engagement against an independent NDEF implementation: don/ndef-js (the PhoneGap NFC
plugin's NDEF library) in node, interop/ndef-js/handover.cjs. Ours is nfcpy's ndeflib.

It reads our phone's Handover Select record for record (Hs 1.5 with the alternative carrier
"nfc", auxiliary "mdoc"; the DeviceEngagement and NFC carrier records by type and id) and
Annex D's messages as we read them; the Handover Request it writes is ours byte for byte;
and a negotiated tap in which the reader's request is the one ndef-js wrote is VALID, that
request in the SessionTranscript."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from node_bridge import NodeBridge
from test_wallet_session import REQUEST, make_wallet, pipeline, world  # noqa: F401 - fixtures

from mcred.present import present_nfc_in_process
from protocols.mdoc import SessionTranscript, nfc
from reader.session import ReaderSession

NODE = NodeBridge("ndef-js", "ndef", "handover.cjs")
why = NODE.unavailable()
pytestmark = pytest.mark.skipif(why is not None, reason=f"NDEF interop (ndef-js): {why}")

VECTORS = json.loads((Path(__file__).parents[2] / "shared" / "vectors" / "iso18013-5-annex-d.json").read_text())
V = {k: bytes.fromhex(v["hex"]) for k, v in VECTORS["vectors"].items() if "hex" in v}


def read(message: bytes) -> list[dict]:
    return NODE.call({"read": message.hex()})["records"]


def test_ndef_js_reads_our_phones_handover_select(world):  # noqa: F811
    out = present_nfc_in_process(make_wallet(world), ReaderSession([REQUEST], pipeline(world)))
    assert out.valid, out.result
    transcript = SessionTranscript.decode(out.session_transcript)
    hs_bytes = transcript.handover[0]
    hs, de, carrier = read(hs_bytes)
    assert (hs["tnf"], hs["type"], hs["version"]) == (1, "Hs", 0x15)
    (ac,) = hs["inner"]
    assert ac["type"] == "ac" and ac["carrier"] == {"power_state": 1, "reference": "nfc", "auxiliary": ["mdoc"]}
    assert (de["tnf"], de["type"], de["id"]) == (4, "iso.org:18013:deviceengagement", "mdoc")
    assert bytes.fromhex(de["payload"]) == transcript.device_engagement_bytes
    assert (carrier["tnf"], carrier["type"], carrier["id"]) == (4, "iso.org:18013:nfc", "nfc")
    assert nfc.NfcCarrier.from_payload(bytes.fromhex(carrier["payload"])) == nfc.NfcCarrier()


def test_ndef_js_reads_annex_d_as_we_do():
    for name, ours in (("handover_select", nfc.HandoverSelect.decode(V["handover_select"])),
                       ("handover_request", nfc.HandoverRequest.decode(V["handover_request"]))):
        records = read(V[name])
        theirs = [x["carrier"] for x in records[0]["inner"] if x["type"] == "ac"]
        assert [c["reference"] for c in theirs] == [c.reference for c in ours.carriers]
        assert [c["auxiliary"] for c in theirs] == [list(c.auxiliary) for c in ours.carriers]
        by_id = {r["id"]: r for r in records[1:]}
        for c in ours.carriers:
            assert bytes.fromhex(by_id[c.reference]["payload"]) == c.payload


@pytest.mark.parametrize("carrier", [None, nfc.NfcCarrier(255, 256)])
def test_ndef_js_writes_our_handover_request_byte_for_byte(carrier):
    payload = carrier.payload() if carrier else b"\x01"
    theirs = bytes.fromhex(NODE.call({"request": {"collision": 0x0102, "nfc": payload.hex()}})["message"])
    assert theirs == nfc.handover_request(carrier, collision=0x0102)


def test_a_negotiated_tap_with_ndef_js_s_handover_request_is_valid(world):  # noqa: F811
    theirs = bytes.fromhex(NODE.call({"request": {"collision": 0xBEEF, "nfc": "01"}})["message"])
    out = present_nfc_in_process(make_wallet(world), ReaderSession([REQUEST], pipeline(world)),
                                 handover="negotiated", handover_request=theirs)
    assert out.valid, out.result
    assert SessionTranscript.decode(out.session_transcript).handover[1] == theirs
