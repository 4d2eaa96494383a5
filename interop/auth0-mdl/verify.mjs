// Test-only bridge to @auth0/mdl (TypeScript): reads one JSON request on stdin, writes one
// JSON answer on stdout. Used by tests/test_mdoc_interop_auth0.py and `python -m benchmarks mdoc`.
//
//   {"mode": "verify", "iaca": [PEM, ...], "cases": [{"name", "response": hex,
//     "transcript": hex (SessionTranscriptBytes, tag 24), "readerKey": hex COSE_Key with d | null}]}
//   -> {"cases": {name: {"valid", "error", "issuerSignature", "deviceAuth", "dataIntegrity",
//                        "elements": {ns: {id: value}}}}}
//   {"mode": "issue", "docType", "nameSpaces": {ns: {id: value}}, "validFrom", "validUntil" (ISO),
//    "issuerKey": JWK (private), "issuerCertificate": PEM, "deviceKey": JWK (private),
//    "transcript": hex (SessionTranscriptBytes), "disclose": {ns: [id, ...]}}
//   -> {"response": hex}  (an mdoc issued by @auth0/mdl, presented with a device signature)
//   {"mode": "bench", "iaca": [...], "response": hex, "transcript": hex, "runs": N}
//   -> {"runs": N, "median_us": x}   (Verifier.verify, full: chain, issuer signature, digests,
//                                     device signature)
import { Verifier, Document, MDoc, DeviceResponse } from "@auth0/mdl";
import { performance } from "node:perf_hooks";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const verifier = new Verifier(req.iaca ?? []);
const hex = (s) => (s == null ? undefined : Buffer.from(s, "hex"));
const plain = (v) => (typeof v === "bigint" ? v.toString()
  : v instanceof Date ? v.toISOString()
  : v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v);

async function one(c) {
  const options = { encodedSessionTranscript: hex(c.transcript), ephemeralReaderKey: hex(c.readerKey) };
  const out = { valid: false, error: null };
  try {
    await verifier.verify(hex(c.response), options);
    out.valid = true;
  } catch (e) {
    out.error = String(e && e.message ? e.message : e);
  }
  try {
    const d = await verifier.getDiagnosticInformation(hex(c.response), options);
    out.issuerSignature = d.issuerSignature?.isValid ?? null;
    out.deviceAuth = (d.deviceSignature ?? d.deviceMac)?.isValid ?? null;
    out.dataIntegrity = d.dataIntegrity?.isValid ?? null;
    out.elements = {};
    for (const a of d.attributes ?? []) {
      (out.elements[a.ns] ??= {})[a.id] = plain(a.value);
    }
  } catch (e) {
    out.diagnosticError = String(e && e.message ? e.message : e);
  }
  return out;
}

if (req.mode === "verify") {
  const cases = {};
  for (const c of req.cases) cases[c.name] = await one(c);
  process.stdout.write(JSON.stringify({ cases }));
} else if (req.mode === "issue") {
  let doc = new Document(req.docType);
  for (const [ns, values] of Object.entries(req.nameSpaces)) doc = doc.addIssuerNameSpace(ns, values);
  const { d, ...devicePublic } = req.deviceKey;
  const issued = await doc.useDigestAlgorithm("SHA-256")
    .addValidityInfo({ signed: new Date(req.validFrom), validFrom: new Date(req.validFrom),
                       validUntil: new Date(req.validUntil) })
    .addDeviceKeyInfo({ deviceKey: devicePublic })
    .sign({ issuerPrivateKey: req.issuerKey, issuerCertificate: req.issuerCertificate, alg: "ES256" });
  const fields = Object.entries(req.disclose).flatMap(([ns, ids]) =>
    ids.map((id) => ({ path: [`$['${ns}']['${id}']`], intent_to_retain: false })));
  const definition = { id: "mcred-interop", input_descriptors: [{ id: req.docType,
    format: { mso_mdoc: { alg: ["ES256"] } }, constraints: { limit_disclosure: "required", fields } }] };
  const presented = await DeviceResponse.from(new MDoc([issued]))
    .usingPresentationDefinition(definition)
    .usingSessionTranscriptBytes(hex(req.transcript))
    .authenticateWithSignature(req.deviceKey, "ES256")
    .sign();
  process.stdout.write(JSON.stringify({ response: Buffer.from(presented.encode()).toString("hex") }));
} else if (req.mode === "bench") {
  const response = hex(req.response);
  const options = { encodedSessionTranscript: hex(req.transcript) };
  for (let i = 0; i < 20; i++) await verifier.verify(response, options);
  const times = [];
  for (let i = 0; i < req.runs; i++) {
    const t0 = performance.now();
    await verifier.verify(response, options);
    times.push((performance.now() - t0) * 1000);
  }
  times.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({ runs: req.runs, median_us: times[Math.floor(times.length / 2)] }));
} else {
  process.stdout.write(JSON.stringify({ error: `unknown mode ${req.mode}` }));
  process.exitCode = 2;
}
