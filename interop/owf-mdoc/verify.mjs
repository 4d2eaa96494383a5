// Test-only bridge to @owf/mdoc (OpenWallet Foundation, TypeScript; the mdoc library of
// Credo): reads one JSON request on stdin, writes one JSON answer on stdout. Used by
// tests/test_mdoc_interop_owf.py.
//
//   {"iaca": [PEM, ...], "cases": [{"name", "response": hex, "transcript": hex
//     (the SessionTranscript array), "readerKey": hex COSE_Key with d | null, "now": ISO,
//     "emptyExternalAad": bool}]}
//   -> {"cases": {name: {"valid", "error", "failed": [check, ...], "passed": [check, ...],
//                        "elements": {ns: {id: value}}, "deviceMac": true | false | null}}}
//   {"mode": "issue", "docType", "nameSpaces": {ns: {id: value | {"fullDate": "YYYY-MM-DD"}}},
//    "validFrom", "validUntil" (ISO), "issuerKey": JWK (private), "issuerCertificate": PEM,
//    "deviceKey": JWK (private), "transcript": hex (array), "deviceRequest": hex}
//   -> {"response": hex}  (an mdoc @owf/mdoc issues, answering our DeviceRequest with a
//                          device signature over our SessionTranscript)
//   {"mode": "bench", "iaca": [PEM, ...], "response": hex, "transcript": hex (array), "runs": N}
//   -> {"runs": N, "median_us": x}   (DeviceResponse.verify, full)
//
// "deviceMac" is the library's own DeviceMac.verify on the first document (null without a
// deviceMac). @owf/mdoc 0.6.0 cannot accept any deviceMac through DeviceResponse.verify:
// it compares the alg name "HS256" with the number 5, and after a valid MAC still reports
// "No Device Signature or Device Mac found". One level down, its MAC_structure leaves out
// external_aad when none is set, where RFC 9052 section 6.3 puts an empty bstr, so a case
// with "emptyExternalAad": true sets that empty bstr first (the standard structure).
//
// The library leaves every cryptographic operation to a context object (MdocContext): this
// one is node:crypto only (digests, ECDSA in IEEE P1363 form, ECDH + HKDF-SHA256 for
// EMacKey, HMAC-SHA256, X509Certificate for the chain), shared with the online bridges in
// ../owf-context.mjs; nothing of mcred's.
import * as nodeCrypto from "node:crypto";
import { CoseKey, DateOnly, DeviceAuthentication, DeviceKey, DeviceRequest, DeviceResponse, IssuerSignedBuilder,
  SessionTranscript } from "@owf/mdoc";
import { addElements, owfContext } from "../owf-context.mjs";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const der = (pemOrDer) => new nodeCrypto.X509Certificate(Buffer.from(pemOrDer));
const publicJwk = (coseKey) => {
  const { kty, crv, x, y } = coseKey.jwk;
  return { kty, crv, x, y };
};

const ctx = owfContext(CoseKey);


async function one(c) {
  const out = { valid: false, error: null, failed: [], passed: [], elements: {} };
  try {
    const response = DeviceResponse.decode(Buffer.from(c.response, "hex"));
    await response.verify({
      sessionTranscript: SessionTranscript.decode(Buffer.from(c.transcript, "hex")),
      trustedCertificates: req.iaca.map((pem) => new Uint8Array(der(pem).raw)),
      ephemeralReaderKey: c.readerKey ? CoseKey.decode(Buffer.from(c.readerKey, "hex")) : undefined,
      now: c.now ? new Date(c.now) : undefined,
      onCheck: (a) => (a.status === "FAILED" ? out.failed : out.passed).push(`${a.category}: ${a.check}${a.reason ? ` (${a.reason})` : ""}`),
    }, ctx);
    out.valid = out.failed.length === 0;
    const doc = response.documents?.[0];
    const mac = doc?.deviceSigned.deviceAuth.deviceMac;
    out.deviceMac = null;
    if (mac && c.readerKey) {
      const sessionTranscript = SessionTranscript.decode(Buffer.from(c.transcript, "hex"));
      mac.detachedPayload = DeviceAuthentication.create({ sessionTranscript, docType: doc.docType,
        deviceNamespaces: doc.deviceSigned.deviceNamespaces }).encode({ asDataItem: true });
      if (c.emptyExternalAad) mac.externalAad = new Uint8Array(0);
      out.deviceMac = await mac.verify({
        publicKey: doc.issuerSigned.issuerAuth.mobileSecurityObject.deviceKeyInfo.deviceKey,
        privateKey: CoseKey.decode(Buffer.from(c.readerKey, "hex")), sessionTranscript, info: "EMacKey" }, ctx);
    }
    addElements(out.elements, response);
  } catch (e) {
    out.valid = false;
    out.error = `${e?.name ?? "Error"}: ${e?.message ?? e}`;
  }
  return [c.name, out];
}

async function issue(r) {
  const value = (v) => (v !== null && typeof v === "object" && "fullDate" in v ? new DateOnly(v.fullDate) : v);
  const builder = new IssuerSignedBuilder(r.docType, ctx);
  for (const [ns, values] of Object.entries(r.nameSpaces)) {
    builder.addIssuerNamespace(ns, Object.fromEntries(Object.entries(values).map(([k, v]) => [k, value(v)])));
  }
  const deviceKey = CoseKey.fromJwk({ ...r.deviceKey, alg: "ES256" });
  const issuerSigned = await builder.sign({
    signingKey: CoseKey.fromJwk({ ...r.issuerKey, alg: "ES256" }), algorithm: -7, digestAlgorithm: "SHA-256",
    validityInfo: { signed: new Date(r.validFrom), validFrom: new Date(r.validFrom), validUntil: new Date(r.validUntil) },
    deviceKeyInfo: { deviceKey: DeviceKey.fromJwk(publicJwk(deviceKey)) },
    certificates: [new Uint8Array(der(r.issuerCertificate).raw)],
  });
  const response = await DeviceResponse.createWithDeviceRequest({
    deviceRequest: DeviceRequest.decode(Buffer.from(r.deviceRequest, "hex")),
    sessionTranscript: SessionTranscript.decode(Buffer.from(r.transcript, "hex")),
    issuerSigned: [issuerSigned],
    signature: { signingKey: deviceKey },
  }, ctx);
  return { response: Buffer.from(response.encode()).toString("hex") };
}

async function bench(r) {
  // DeviceResponse.decode + verify (chain, issuer signature, digests, validity, device
  // signature), timed in this process; the first run must pass
  const bytes = Buffer.from(r.response, "hex");
  const trustedCertificates = r.iaca.map((pem) => new Uint8Array(der(pem).raw));
  const transcript = Buffer.from(r.transcript, "hex");
  const once = async () => {
    const failed = [];
    await DeviceResponse.decode(bytes).verify({
      sessionTranscript: SessionTranscript.decode(transcript), trustedCertificates,
      onCheck: (a) => { if (a.status === "FAILED") failed.push(a.check); },
    }, ctx);
    return failed;
  };
  const failed = await once();
  if (failed.length) throw new Error(`the response does not verify: ${failed.join("; ")}`);
  const times = [];
  for (let i = 0; i < r.runs; i++) {
    const t0 = performance.now();
    await once();
    times.push((performance.now() - t0) * 1000);
  }
  times.sort((a, b) => a - b);
  return { runs: r.runs, median_us: times[Math.floor(times.length / 2)] };
}

if (req.mode === "bench") {
  process.stdout.write(JSON.stringify(await bench(req)));
} else if (req.mode === "issue") {
  process.stdout.write(JSON.stringify(await issue(req)));
} else {
  const cases = Object.fromEntries(await Promise.all(req.cases.map(one)));
  process.stdout.write(JSON.stringify({ cases }));
}
