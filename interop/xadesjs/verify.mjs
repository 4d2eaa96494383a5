// Test-only bridge (tests/test_jpki_xml.py), one JSON request on stdin, one JSON answer on
// stdout:
//   {"verify": "<xml>"}: what xadesjs makes of the document's signature: valid (the
//     signature and every reference), the SigningTime, the number of unsigned signature
//     properties (a SignatureTimeStamp, RevocationValues);
//   {"sign": "<xml>", "pkcs8": b64, "certificate": b64, "algorithm": "ECDSA"|"RSASSA-PKCS1-v1_5",
//    "hash": "SHA-256"|"SHA-384", "namedCurve"?: "P-384"}: the document with an enveloped
//     XAdES-BES signature by xadesjs (SigningTime, SigningCertificate).
import * as xmldom from "@xmldom/xmldom";
import xpath from "xpath";
import * as xadesjs from "xadesjs";
import * as xmlCore from "xml-core";

xmlCore.setNodeDependencies({
  XMLSerializer: xmldom.XMLSerializer,
  DOMParser: xmldom.DOMParser,
  DOMImplementation: xmldom.DOMImplementation,
  xpath,
});
xadesjs.Application.setEngine("NodeJS", globalThis.crypto);

const DS = "http://www.w3.org/2000/09/xmldsig#";

async function verify(xml) {
  const answer = { valid: false };
  const doc = xadesjs.Parse(xml);
  const signatures = doc.getElementsByTagNameNS(DS, "Signature");
  answer.signatures = signatures.length;
  const signed = new xadesjs.SignedXml(doc);
  signed.LoadXml(signatures[0]);
  answer.valid = await signed.Verify();
  const xades = signatures[0].getElementsByTagNameNS("http://uri.etsi.org/01903/v1.3.2#", "QualifyingProperties");
  if (xades.length) {
    const ssp = signed.SignedProperties.SignedSignatureProperties;
    answer.signingTime = ssp.SigningTime && ssp.SigningTime.Value ? ssp.SigningTime.Value.toISOString() : null;
    answer.unsignedProperties = signed.UnsignedProperties.UnsignedSignatureProperties.Count;
  }
  return answer;
}

async function sign(request) {
  const algorithm = request.algorithm === "ECDSA"
    ? { name: "ECDSA", namedCurve: request.namedCurve, hash: request.hash }
    : { name: "RSASSA-PKCS1-v1_5", hash: request.hash };
  const key = await globalThis.crypto.subtle.importKey(
    "pkcs8", Buffer.from(request.pkcs8, "base64"), algorithm, false, ["sign"]);
  const doc = xadesjs.Parse(request.sign);
  const signed = new xadesjs.SignedXml();
  await signed.Sign(algorithm, key, doc, {
    references: [{ uri: request.uri, hash: request.hash, transforms: ["enveloped", "c14n"] }],
    x509: [request.certificate],
    signingCertificate: request.certificate,
    signingTime: { value: new Date() },
  });
  doc.documentElement.appendChild(signed.GetXml());
  return { xml: new xmldom.XMLSerializer().serializeToString(doc) };
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
let answer;
try {
  answer = request.sign !== undefined ? await sign(request) : await verify(request.verify);
} catch (err) {
  answer = { valid: false, error: String(err && err.message ? err.message : err) };
}
process.stdout.write(JSON.stringify(answer));
