// Test-only bridge for an independent cross-check of OpenID4VP 1.0 over the W3C Digital
// Credentials API (protocol "openid4vp-v1-unsigned", response_mode "dc_api.jwt"): reads one
// JSON request on stdin, writes one JSON answer on stdout. Used by
// tests/test_mdoc_interop_oid4vp.py.
//
//   {"mode": "open", "verifierKey": JWK (P-256, with d), "request": {"protocol", "data": {...}}
//    (the request object the reader made), "origin": text, "response": {"protocol", "data":
//    {"response": JWE}}, "iaca": [PEM, ...], "now": ISO}
//   -> {"decrypted", "error", "header": {JWE protected header}, "headerProblems": [text, ...],
//       "transcriptHex", "owfTranscriptHex", "thumbprintHex", "keyMatches", "queries": [id, ...],
//       "valid", "failed": [check, ...], "passed": [check, ...], "elements": {ns: {id: value}}}
//   {"mode": "seal", "request": {...}, "vpToken": {queryId: [base64url DeviceResponse, ...]}}
//   -> {"response": {"protocol": "openid4vp-v1-unsigned", "data": {"response": JWE}}, "header"}
//   {"mode": "transcript", "origin", "nonce", "jwk": JWK (public)}
//   -> {"thumbprintHex", "handoverInfoHex", "transcriptHex", "owfTranscriptHex"}
//
// Without the DC API, the cross-device flow (OpenID4VP 1.0 B.2.6.1, response_mode
// "direct_post.jwt"), the request given as its parameters ("claims": client_id, nonce,
// response_uri, state, dcql_query, client_metadata):
//   {"mode": "redirect-transcript", "clientId", "nonce", "jwk", "responseUri"} -> as "transcript"
//   {"mode": "verify-request", "requestObject": JWS} -> {"verified", "header", "claims", "error"}
//       (jose's compactVerify with the x5c leaf's key, typ oauth-authz-req+jwt)
//   {"mode": "redirect-open", "verifierKey", "claims", "form": {"response": JWE}, "iaca", "now"}
//   -> as "open", and "state" (the JWE payload's)
//   {"mode": "redirect-seal", "claims", "vpToken"} -> {"form": {"response": JWE}, "header"}
//
// Nothing of mcred's is used. The RFC 7638 SHA-256 thumbprint of the request's encryption key
// is jose's calculateJwkThumbprint (base64url, decoded to its 32 bytes here); the
// SessionTranscript
//   [null, null, ["OpenID4VPDCAPIHandover", SHA-256(CBOR([origin, nonce, jwkThumbprint]))]]
// (OpenID4VP 1.0 Appendix B.2.6.2) is made twice: by @owf/mdoc 0.6.0's own
// SessionTranscript.forOid4VpDcApi({origin, nonce, jwkThumbprint}, ctx) ("owfTranscriptHex"),
// and by hand with cbor-x and node:crypto ("transcriptHex"). The JWE (ECDH-ES, A*GCM) is
// opened and made by jose (compactDecrypt, CompactEncrypt); the DeviceResponse of each
// vp_token entry is verified by @owf/mdoc DeviceResponse.verify over @owf/mdoc's transcript.
//
// The crypto context for @owf/mdoc (node:crypto) is the one of ../dcapi-hpke/dcapi.mjs, cut to
// what a device-signed response needs.
import * as nodeCrypto from "node:crypto";
import { CoseKey, DeviceResponse, SessionTranscript } from "@owf/mdoc";
import { Encoder } from "cbor-x";
import { calculateJwkThumbprint, CompactEncrypt, compactDecrypt, compactVerify, decodeProtectedHeader, importJWK,
  importX509 } from "jose";
import { addElements, owfContext } from "../owf-context.mjs";

const PROTOCOL = "openid4vp-v1-unsigned";
const ENCS = ["A128GCM", "A192GCM", "A256GCM"];

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));

// plain CBOR: byte strings untagged, maps as maps with their real length, no records
const cbor = new Encoder({ useRecords: false, tagUint8Array: false, mapsAsObjects: false, variableMapSize: true });
const unb64url = (text) => new Uint8Array(Buffer.from(text, "base64url"));
const hex = (bytes) => Buffer.from(bytes).toString("hex");

// the verifier's encryption key as a wallet would pick it out of client_metadata.jwks: the
// first EC P-256 key meant for encryption with ECDH-ES
function requestKey(request) {
  const keys = request?.data?.client_metadata?.jwks?.keys ?? [];
  return keys.find((k) => k?.kty === "EC" && k?.crv === "P-256" && (k.use ?? "enc") === "enc"
    && (k.alg ?? "ECDH-ES") === "ECDH-ES") ?? null;
}

async function thumbprint(jwk) {
  return unb64url(await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, "sha256"));
}

function handTranscript(origin, nonce, jwkThumbprint) {
  return handover("OpenID4VPDCAPIHandover", [origin, nonce, jwkThumbprint]);
}

function handover(name, fields) {
  const info = new Uint8Array(cbor.encode(fields));
  const hash = new Uint8Array(nodeCrypto.createHash("sha256").update(info).digest());
  return { info, bytes: new Uint8Array(cbor.encode([null, null, [name, hash]])) };
}

const der = (pemOrDer) => new nodeCrypto.X509Certificate(Buffer.from(pemOrDer));

const ctx = owfContext(CoseKey, { online: "an OpenID4VP presentation over the DC API is device-signed" });


async function transcripts(origin, nonce, jwk) {
  const jwkThumbprint = jwk === null ? null : await thumbprint(jwk);
  const byHand = handTranscript(origin, nonce, jwkThumbprint);
  const owf = await SessionTranscript.forOid4VpDcApi({ origin, nonce, jwkThumbprint: jwkThumbprint ?? undefined }, ctx);
  return { jwkThumbprint, byHand, owf };
}

async function open(r) {
  const data = r.request?.protocol === PROTOCOL ? r.request.data : null;
  const key = requestKey(r.request);
  const { jwkThumbprint, byHand, owf } = await transcripts(r.origin, data?.nonce, key);
  const jwe = r.response?.protocol === PROTOCOL ? r.response.data?.response : undefined;
  const out = await openWith(r, data, key, jwe, { jwkThumbprint, byHand, owf });
  delete out.payload;
  return out;
}

async function redirectTranscripts(clientId, nonce, jwk, responseUri) {
  const jwkThumbprint = jwk === null ? null : await thumbprint(jwk);
  const byHand = handover("OpenID4VPHandover", [clientId, nonce, jwkThumbprint, responseUri]);
  const owf = await SessionTranscript.forOid4Vp({ clientId, nonce, jwkThumbprint: jwkThumbprint ?? undefined,
    responseUri }, ctx);
  return { jwkThumbprint, byHand, owf };
}

async function redirectOpen(r) {
  const data = r.claims;
  const key = requestKey({ data });
  const t = await redirectTranscripts(data.client_id, data.nonce, key, data.response_uri);
  const out = await openWith(r, data, key, r.form?.response, t);
  out.state = out.payload?.state ?? null;
  delete out.payload;
  return out;
}

async function verifyRequest(r) {
  const out = { verified: false, header: null, claims: null, error: null };
  try {
    out.header = decodeProtectedHeader(r.requestObject);
    const leaf = new nodeCrypto.X509Certificate(Buffer.from(out.header.x5c[0], "base64"));
    const key = await importX509(leaf.toString(), out.header.alg);
    const { payload, protectedHeader } = await compactVerify(r.requestObject, key, { algorithms: ["ES256", "ES384", "ES512"] });
    if (protectedHeader.typ !== "oauth-authz-req+jwt") throw new Error(`typ ${protectedHeader.typ}`);
    out.claims = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
    out.verified = true;
  } catch (e) {
    out.error = `${e?.code ?? e?.name ?? "Error"}: ${e?.message ?? e}`;
  }
  return out;
}

async function redirectSeal(r) {
  const key = requestKey({ data: r.claims });
  const offered = r.claims.client_metadata.encrypted_response_enc_values_supported ?? ["A128GCM"];
  const enc = offered.find((e) => ENCS.includes(e));
  const header = { alg: "ECDH-ES", enc, ...(key.kid !== undefined ? { kid: key.kid } : {}) };
  const publicKey = await importJWK({ kty: key.kty, crv: key.crv, x: key.x, y: key.y }, "ECDH-ES");
  const payload = { vp_token: r.vpToken, ...(r.claims.state !== undefined ? { state: r.claims.state } : {}) };
  const jwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header)
    .encrypt(publicKey);
  return { form: { response: jwe }, header: decodeProtectedHeader(jwe) };
}

async function openWith(r, data, key, jwe, { jwkThumbprint, byHand, owf }) {
  const out = { decrypted: false, error: null, header: null, headerProblems: [], transcriptHex: hex(byHand.bytes),
    owfTranscriptHex: hex(owf.encode()), thumbprintHex: jwkThumbprint === null ? null : hex(jwkThumbprint),
    keyMatches: key !== null && key.x === r.verifierKey.x && key.y === r.verifierKey.y,
    queries: [], valid: false, failed: [], passed: [], elements: {} };
  const offered = data?.client_metadata?.encrypted_response_enc_values_supported ?? ["A128GCM"];
  let payload;
  try {
    if (typeof jwe !== "string") throw new Error("response: no JWE");
    out.header = decodeProtectedHeader(jwe);
    const privateKey = await importJWK(r.verifierKey, "ECDH-ES");
    const { plaintext, protectedHeader } = await compactDecrypt(jwe, privateKey,
      { keyManagementAlgorithms: ["ECDH-ES"], contentEncryptionAlgorithms: ENCS });
    out.decrypted = true;
    if (protectedHeader.alg !== "ECDH-ES") out.headerProblems.push(`alg ${protectedHeader.alg}`);
    if (!offered.includes(protectedHeader.enc)) out.headerProblems.push(`enc ${protectedHeader.enc} not offered`);
    if (key?.kid !== undefined && protectedHeader.kid !== key.kid) {
      out.headerProblems.push(`kid ${protectedHeader.kid} is not the request key's ${key.kid}`);
    }
    payload = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plaintext));
    out.payload = payload;
  } catch (e) {
    out.error = `${e?.code ?? e?.name ?? "Error"}: ${e?.message ?? e}`;
    return out;
  }
  try {
    const trustedCertificates = r.iaca.map((pem) => new Uint8Array(der(pem).raw));
    const token = payload?.vp_token;
    if (token === null || typeof token !== "object") throw new Error("payload: no vp_token object");
    let verified = 0;
    for (const query of data.dcql_query.credentials) {
      const presentations = token[query.id];
      if (presentations === undefined) continue;
      out.queries.push(query.id);
      for (const presentation of presentations) {
        const response = DeviceResponse.decode(unb64url(presentation));
        await response.verify({
          sessionTranscript: owf,
          trustedCertificates,
          now: r.now ? new Date(r.now) : undefined,
          onCheck: (a) => (a.status === "FAILED" ? out.failed : out.passed).push(
            `${a.category}: ${a.check}${a.reason ? ` (${a.reason})` : ""}`),
        }, ctx);
        verified += 1;
        addElements(out.elements, response);
      }
    }
    const unasked = Object.keys(token).filter((id) => !out.queries.includes(id));
    if (unasked.length > 0) throw new Error(`vp_token: not asked for: ${unasked.join(", ")}`);
    out.valid = verified > 0 && out.failed.length === 0;
  } catch (e) {
    out.valid = false;
    out.error = `${e?.name ?? "Error"}: ${e?.message ?? e}`;
  }
  return out;
}

async function seal(r) {
  const data = r.request?.protocol === PROTOCOL ? r.request.data : null;
  const key = requestKey(r.request);
  if (data === null || key === null) throw new Error("request: no openid4vp-v1-unsigned data with an EC P-256 key");
  const offered = data.client_metadata.encrypted_response_enc_values_supported ?? ["A128GCM"];
  const enc = offered.find((e) => ENCS.includes(e));
  const header = { alg: "ECDH-ES", enc, ...(key.kid !== undefined ? { kid: key.kid } : {}) };
  const publicKey = await importJWK({ kty: key.kty, crv: key.crv, x: key.x, y: key.y }, "ECDH-ES");
  const jwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify({ vp_token: r.vpToken })))
    .setProtectedHeader(header)
    .encrypt(publicKey);
  return { response: { protocol: PROTOCOL, data: { response: jwe } }, header: decodeProtectedHeader(jwe) };
}

async function transcriptOnly(r) {
  const { jwkThumbprint, byHand, owf } = await transcripts(r.origin, r.nonce, r.jwk ?? null);
  return { thumbprintHex: jwkThumbprint === null ? null : hex(jwkThumbprint), handoverInfoHex: hex(byHand.info),
    transcriptHex: hex(byHand.bytes), owfTranscriptHex: hex(owf.encode()) };
}

async function redirectTranscriptOnly(r) {
  const { jwkThumbprint, byHand, owf } = await redirectTranscripts(r.clientId, r.nonce, r.jwk ?? null, r.responseUri);
  return { thumbprintHex: jwkThumbprint === null ? null : hex(jwkThumbprint), handoverInfoHex: hex(byHand.info),
    transcriptHex: hex(byHand.bytes), owfTranscriptHex: hex(owf.encode()) };
}

const MODES = { open, seal, transcript: transcriptOnly, "redirect-transcript": redirectTranscriptOnly,
  "verify-request": verifyRequest, "redirect-open": redirectOpen, "redirect-seal": redirectSeal };
if (!(req.mode in MODES)) throw new Error(`unknown mode ${JSON.stringify(req.mode)}: ${Object.keys(MODES).join(", ")}`);
process.stdout.write(JSON.stringify(await MODES[req.mode](req)));
