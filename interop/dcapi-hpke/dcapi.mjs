// Test-only bridge for an independent cross-check of ISO/IEC TS 18013-7 Annex C (protocol
// "org-iso-mdoc" of the W3C Digital Credentials API): reads one JSON request on stdin, writes
// one JSON answer on stdout. Used by tests/test_mdoc_interop_dcapi.py.
//
//   {"mode": "open", "recipientKey": JWK (P-256, with d), "encryptionInfo": text (base64url,
//    as the request carried it), "origin": text, "response": {"protocol", "data": {"response"}},
//    "iaca": [PEM, ...], "now": ISO}
//   -> {"opened", "error", "transcriptHex", "owfTranscriptHex", "encryptionInfo": {...},
//       "valid", "failed": [check, ...], "passed": [check, ...], "elements": {ns: {id: value}}}
//   {"mode": "seal", "recipientKey": JWK (P-256 public), "encryptionInfo": text, "origin": text,
//    "plaintextHex": hex}
//   -> {"response": {"protocol": "org-iso-mdoc", "data": {"response": base64url}}, "transcriptHex"}
//
// Nothing of mcred's is used: the SessionTranscript
//   [null, null, ["dcapi", SHA-256(CBOR([Base64EncryptionInfo, origin]))]]
// is made here with cbor-x and node:crypto from the two strings; HPKE (RFC 9180 base mode,
// DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, empty aad, info = the transcript's
// array bytes) is @hpke/core's; the DeviceResponse inside is verified by @owf/mdoc
// DeviceResponse.verify over the same transcript. @owf/mdoc 0.6.0 knows no Annex C handover
// (SessionTranscript.decode refuses ["dcapi", hash]), so this script adds one: a subclass of
// the library's Handover base (the prototype of its QrHandover) whose encoded structure is
// ["dcapi", hash], given to SessionTranscript.create({handover}).
//
// The crypto context for @owf/mdoc (node:crypto) is the one of ../owf-mdoc/verify.mjs, cut
// to what a device-signed response needs.
import * as nodeCrypto from "node:crypto";
import { Aes128Gcm, CipherSuite, DhkemP256HkdfSha256, HkdfSha256 } from "@hpke/core";
import { CoseKey, DeviceResponse, QrHandover, SessionTranscript } from "@owf/mdoc";
import { Encoder } from "cbor-x";
import { addElements, owfContext } from "../owf-context.mjs";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));

// plain CBOR: byte strings untagged, maps as maps with their real length, no records
const cbor = new Encoder({ useRecords: false, tagUint8Array: false, mapsAsObjects: false, variableMapSize: true });
const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const unb64url = (text) => new Uint8Array(Buffer.from(text, "base64url"));
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const suite = new CipherSuite({ kem: new DhkemP256HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });

function transcript(encryptionInfo, origin) {
  const infoHash = nodeCrypto.createHash("sha256").update(cbor.encode([encryptionInfo, origin])).digest();
  const hash = new Uint8Array(infoHash);
  return { hash, bytes: new Uint8Array(cbor.encode([null, null, ["dcapi", hash]])) };
}

// EncryptionInfo = ["dcapi", {"nonce": bstr, "recipientPublicKey": COSE_Key}], read here to
// see it says what Annex C says and names the key the caller holds
function readEncryptionInfo(text, jwk) {
  const value = cbor.decode(unb64url(text));
  const params = Array.isArray(value) && value.length === 2 && value[0] === "dcapi" ? value[1] : null;
  if (!(params instanceof Map)) return { wellFormed: false };
  const nonce = params.get("nonce");
  const key = params.get("recipientPublicKey");
  const x = key instanceof Map ? key.get(-2) : undefined;
  const y = key instanceof Map ? key.get(-3) : undefined;
  return {
    wellFormed: true,
    keys: [...params.keys()],
    nonceLength: nonce instanceof Uint8Array ? nonce.length : null,
    coseKty: key instanceof Map ? key.get(1) : null,
    coseCrv: key instanceof Map ? key.get(-1) : null,
    recipientKeyMatches: x instanceof Uint8Array && y instanceof Uint8Array && b64url(x) === jwk.x && b64url(y) === jwk.y,
  };
}

// the Annex C handover for @owf/mdoc: ["dcapi", SHA-256(CBOR([Base64EncryptionInfo, origin]))]
const Handover = Object.getPrototypeOf(QrHandover);
class DcapiHandover extends Handover {
  get encodedStructure() {
    return ["dcapi", this.structure];
  }
}

const der = (pemOrDer) => new nodeCrypto.X509Certificate(Buffer.from(pemOrDer));

const ctx = owfContext(CoseKey, { online: "an Annex C presentation is device-signed" });


async function open(r) {
  const { hash, bytes } = transcript(r.encryptionInfo, r.origin);
  const out = { opened: false, error: null, transcriptHex: hex(bytes), owfTranscriptHex: null,
    encryptionInfo: readEncryptionInfo(r.encryptionInfo, r.recipientKey),
    valid: false, failed: [], passed: [], elements: {} };
  let plaintext;
  try {
    const data = r.response?.protocol === "org-iso-mdoc" ? r.response.data : null;
    const sealed = cbor.decode(unb64url(data.response));
    if (!Array.isArray(sealed) || sealed.length !== 2 || sealed[0] !== "dcapi" || !(sealed[1] instanceof Map)) {
      throw new Error('EncryptedResponse: not ["dcapi", {enc, cipherText}]');
    }
    const recipientKey = await suite.kem.importKey("jwk", r.recipientKey, false);
    plaintext = new Uint8Array(await suite.open(
      { recipientKey, enc: sealed[1].get("enc"), info: bytes }, sealed[1].get("cipherText")));
    out.opened = true;
  } catch (e) {
    out.error = `${e?.name ?? "Error"}: ${e?.message ?? e}`;
    return out;
  }
  try {
    const sessionTranscript = SessionTranscript.create({ handover: new DcapiHandover(hash) });
    out.owfTranscriptHex = hex(sessionTranscript.encode());
    const response = DeviceResponse.decode(plaintext);
    await response.verify({
      sessionTranscript,
      trustedCertificates: r.iaca.map((pem) => new Uint8Array(der(pem).raw)),
      now: r.now ? new Date(r.now) : undefined,
      onCheck: (a) => (a.status === "FAILED" ? out.failed : out.passed).push(`${a.category}: ${a.check}${a.reason ? ` (${a.reason})` : ""}`),
    }, ctx);
    out.valid = out.failed.length === 0;
    addElements(out.elements, response);
  } catch (e) {
    out.valid = false;
    out.error = `${e?.name ?? "Error"}: ${e?.message ?? e}`;
  }
  return out;
}

async function seal(r) {
  const { bytes } = transcript(r.encryptionInfo, r.origin);
  const recipientPublicKey = await suite.kem.importKey("jwk", r.recipientKey, true);
  const { ct, enc } = await suite.seal({ recipientPublicKey, info: bytes }, Buffer.from(r.plaintextHex, "hex"));
  const encrypted = cbor.encode(["dcapi", new Map([["enc", new Uint8Array(enc)], ["cipherText", new Uint8Array(ct)]])]);
  return { response: { protocol: "org-iso-mdoc", data: { response: b64url(encrypted) } }, transcriptHex: hex(bytes) };
}

if (req.mode === "open") {
  process.stdout.write(JSON.stringify(await open(req)));
} else if (req.mode === "seal") {
  process.stdout.write(JSON.stringify(await seal(req)));
} else {
  throw new Error(`unknown mode ${JSON.stringify(req.mode)}: "open" or "seal"`);
}
