// One JSON request on stdin, one JSON answer on stdout (tests/node_bridge.py).
//   {"read": HEX}: the NDEF message's records as ndef-js decodes them, and for a Handover
//     Select / Request record (Hs / Hr) the records inside its payload (after the version
//     byte) and each alternative carrier record's fields (NFC Forum Connection Handover 1.5).
//   {"request": {"collision": N, "nfc": HEX}}: a Handover Request made with ndef-js: Hr 1.5
//     with a collision resolution record and one alternative carrier "nfc", then the
//     iso.org:18013:nfc carrier configuration record with the given payload.
"use strict";
const ndef = require("ndef");

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const text = (bytes) => Buffer.from(bytes).toString("latin1");

function carrier(payload) {
  // Alternative Carrier record: CPS, carrier data reference, auxiliary data references
  let i = 0;
  const cps = payload[i++] & 0x03;
  const n = payload[i++];
  const reference = text(payload.slice(i, i + n));
  i += n;
  const count = payload[i++];
  const auxiliary = [];
  for (let k = 0; k < count; k++) {
    const m = payload[i++];
    auxiliary.push(text(payload.slice(i, i + m)));
    i += m;
  }
  return { power_state: cps, reference, auxiliary };
}

function read(message) {
  const records = ndef.decodeMessage(Array.from(Buffer.from(message, "hex")));
  return records.map((r) => {
    const out = { tnf: r.tnf, type: text(r.type), id: text(r.id), payload: hex(r.payload) };
    if (r.tnf === ndef.TNF_WELL_KNOWN && (out.type === "Hs" || out.type === "Hr")) {
      out.version = r.payload[0];
      out.inner = ndef.decodeMessage(r.payload.slice(1)).map((x) => {
        const inner = { type: text(x.type), payload: hex(x.payload) };
        if (inner.type === "ac") inner.carrier = carrier(x.payload);
        return inner;
      });
    }
    return out;
  });
}

function request({ collision, nfc }) {
  const cr = ndef.record(ndef.TNF_WELL_KNOWN, "cr", [], [(collision >> 8) & 0xff, collision & 0xff]);
  const ac = ndef.record(ndef.TNF_WELL_KNOWN, "ac", [], [0x01, 3, ...Buffer.from("nfc"), 0]);
  const inner = ndef.encodeMessage([cr, ac]);
  const hr = ndef.record(ndef.TNF_WELL_KNOWN, "Hr", [], [0x15, ...inner]);
  const config = ndef.record(ndef.TNF_EXTERNAL_TYPE, "iso.org:18013:nfc", Array.from(Buffer.from("nfc")),
                             Array.from(Buffer.from(nfc, "hex")));
  return hex(ndef.encodeMessage([hr, config]));
}

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const q = JSON.parse(input);
  const answer = q.read !== undefined ? { records: read(q.read) } : { message: request(q.request) };
  process.stdout.write(JSON.stringify(answer));
});
