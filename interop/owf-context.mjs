// Test-only: the crypto context the @owf/mdoc bridges give that library (it leaves every
// cryptographic operation to the caller), written with node:crypto from the context's types;
// nothing of mcred's. Shared by owf-mdoc/verify.mjs, dcapi-hpke/dcapi.mjs and
// oid4vp-jose/oid4vp.mjs, which hand in the library's own CoseKey (each folder has its own
// node_modules; this file imports none).
//
// owfContext(CoseKey) is the whole context: digests, ECDSA in IEEE P1363 form, ECDH + HKDF-SHA256
// for EMacKey, HMAC-SHA256, X509Certificate for the chain. owfContext(CoseKey, { online: why })
// verifies signatures only and refuses to sign or to MAC, saying why (an online presentation
// is device-signed: there is no reader key to agree a MAC key with).
import * as nodeCrypto from "node:crypto";

const HASH = { "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" };
const SIGN_HASH = { [-7]: "sha256", [-35]: "sha384", [-36]: "sha512" };
const der = (pemOrDer) => new nodeCrypto.X509Certificate(Buffer.from(pemOrDer));
const publicKeyOf = (coseKey) => {
  const { kty, crv, x, y } = coseKey.jwk;
  return nodeCrypto.createPublicKey({ key: { kty, crv, x, y }, format: "jwk" });
};

export function owfContext(CoseKey, { online = null } = {}) {
  const refuse = (what) => () => {
    throw new Error(`${what}: ${online}`);
  };
  return {
    crypto: {
      random: (length) => new Uint8Array(nodeCrypto.randomBytes(length)),
      digest: ({ digestAlgorithm, bytes }) =>
        new Uint8Array(nodeCrypto.createHash(HASH[digestAlgorithm]).update(bytes).digest()),
      calculateEphemeralMacKey: online ? refuse("no device MAC online") : ({ privateKey, publicKey, sessionTranscriptBytes, info }) => {
        const ecdh = nodeCrypto.createECDH("prime256v1");
        ecdh.setPrivateKey(Buffer.from(privateKey));
        const shared = ecdh.computeSecret(Buffer.from(publicKey));
        const salt = nodeCrypto.createHash("sha256").update(sessionTranscriptBytes).digest();
        const k = new Uint8Array(nodeCrypto.hkdfSync("sha256", shared, salt, Buffer.from(info), 32));
        return CoseKey.create({ keyType: 4, k });
      },
    },
    cose: {
      sign1: {
        sign: online ? refuse("this bridge only verifies") : ({ toBeSigned, key, algorithm }) => new Uint8Array(
          nodeCrypto.sign(SIGN_HASH[algorithm ?? key.algorithm], toBeSigned,
            { key: nodeCrypto.createPrivateKey({ key: key.jwk, format: "jwk" }), dsaEncoding: "ieee-p1363" })),
        verify: ({ key, sign1 }) => {
          const alg = sign1.protectedHeaders.headers.get(1);
          return nodeCrypto.verify(SIGN_HASH[alg], sign1.toBeSigned,
            { key: publicKeyOf(key), dsaEncoding: "ieee-p1363" }, sign1.signature);
        },
      },
      mac0: {
        sign: online ? refuse("no device MAC online") : ({ key, toBeAuthenticated }) =>
          new Uint8Array(nodeCrypto.createHmac("sha256", key.k).update(toBeAuthenticated).digest()),
        verify: online ? () => false : ({ mac0, key }) => {
          const tag = nodeCrypto.createHmac("sha256", key.k).update(mac0.toBeAuthenticated).digest();
          return tag.length === mac0.tag.length && nodeCrypto.timingSafeEqual(tag, Buffer.from(mac0.tag));
        },
      },
    },
    x509: {
      getIssuerNameField: ({ certificate, field }) =>
        der(certificate).issuer.split("\n").filter((l) => l.startsWith(`${field}=`)).map((l) => l.slice(field.length + 1)),
      getPublicKey: ({ certificate }) =>
        CoseKey.fromJwk(der(certificate).publicKey.export({ format: "jwk" })),
      verifyCertificateChain: ({ trustedCertificates, x5chain, now }) => {
        const at = now ?? new Date();
        const chain = x5chain.map(der);
        const anchors = trustedCertificates.map(der);
        for (const [i, cert] of chain.entries()) {
          if (at < new Date(cert.validFrom) || at > new Date(cert.validTo)) {
            throw new Error(`certificate ${i} (${cert.subject}) is not valid at ${at.toISOString()}`);
          }
          const next = chain[i + 1];
          if (next !== undefined) {
            if (!cert.checkIssued(next) || !cert.verify(next.publicKey)) throw new Error(`certificate ${i} is not issued by ${i + 1}`);
            continue;
          }
          const anchor = anchors.find((a) => cert.checkIssued(a) && cert.verify(a.publicKey));
          if (anchor === undefined) throw new Error(`certificate ${i} (${cert.subject}) chains to no trusted certificate`);
          if (at < new Date(anchor.validFrom) || at > new Date(anchor.validTo)) throw new Error("the trust anchor is not valid now");
        }
      },
      getCertificateData: ({ certificate }) => {
        const c = der(certificate);
        return { issuerName: c.issuer, subjectName: c.subject, serialNumber: c.serialNumber,
          thumbprint: c.fingerprint256, notBefore: new Date(c.validFrom), notAfter: new Date(c.validTo),
          pem: c.toString() };
      },
    },
  };
}

// A decoded element value as JSON the Python side compares: integers, dates and byte strings
// as text (hex).
export const plain = (v) => (typeof v === "bigint" ? v.toString()
  : v instanceof Date ? v.toISOString()
  : v instanceof Uint8Array ? Buffer.from(v).toString("hex")
  : v !== null && typeof v === "object" && v.constructor?.name === "DateOnly" ? v.toString()
  : v);

// Merge the disclosed elements of a DeviceResponse into `into`: {namespace: {identifier: value}}.
export function addElements(into, response) {
  for (const doc of response.documents ?? []) {
    for (const [ns, items] of doc.issuerSigned.issuerNamespaces.issuerNamespaces) {
      into[ns] = { ...into[ns], ...Object.fromEntries(items.map((i) => [i.elementIdentifier, plain(i.elementValue)])) };
    }
  }
  return into;
}
