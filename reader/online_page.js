// The online test page of the mcred reader (GET /online): a web page asks a wallet for the
// card substitute through the W3C Digital Credentials API, offering both protocols a wallet
// may answer ("org-iso-mdoc", ISO/IEC TS 18013-7 Annex C; "openid4vp-v1-unsigned",
// OpenID4VP 1.0), and shows the reader's verdict. The page is served from the reader's
// own origin, the origin the browser reports to the wallet and the reader binds.
//
// present() is the whole exchange and touches no DOM (tests/test_present_online_page.py runs
// it in node, with the browser's credential picker as its edge); the rest draws the page.

// openid4vp-v1-signed only where the reader has a certificate to sign with (409 otherwise)
export const PROTOCOLS = ["org-iso-mdoc", "openid4vp-v1-signed", "openid4vp-v1-unsigned"];

export async function present(base, { fetchFn = (...a) => fetch(...a), get = (o) => navigator.credentials.get(o),
                                      protocols = PROTOCOLS } = {}) {
  // one session per protocol; the browser and the wallet choose which to answer
  const sessions = [];
  for (const protocol of protocols) {
    const opened = await fetchFn(`${base}/online/sessions?protocol=${encodeURIComponent(protocol)}`, { method: "POST" });
    const session = await opened.json();
    if (opened.status === 409 && protocol === "openid4vp-v1-signed") {
      continue;  // this reader signs no requests
    }
    if (opened.status !== 201) {
      throw new Error(`the reader did not open a ${protocol} session: HTTP ${opened.status} ${session.detail ?? ""}`);
    }
    sessions.push(session);
  }
  const credential = await get({ mediation: "required", digital: { requests: sessions.map((s) => s.request) } });
  const session = sessions.find((s) => credential && s.request.protocol === credential.protocol);
  if (!session) {
    throw new Error(`the browser returned no credential of the protocols asked (${protocols.join(", ")})`);
  }
  const data = typeof credential.data === "string" ? JSON.parse(credential.data) : credential.data;
  const answered = await fetchFn(`${base}/online/sessions/${encodeURIComponent(session.session)}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ protocol: credential.protocol, data }),
  });
  const verdict = await answered.json();
  if (answered.status !== 200) {
    throw new Error(`the reader refused the credential: HTTP ${answered.status} ${verdict.detail ?? ""}`);
  }
  return { protocol: credential.protocol, ...verdict };
}

// the cross-device flow: the reader's authorization request URI shown as a QR code
// (onRequest), then the verdict asked of the reader (a long poll of waitS seconds at a time)
// until the phone has answered
export async function crossDevice(base, { fetchFn = (...a) => fetch(...a), onRequest = () => {},
                                          waitS = 25, timeoutMs = 300000 } = {}) {
  const opened = await fetchFn(`${base}/online/sessions?protocol=openid4vp-cross-device&qr=true`, { method: "POST" });
  const session = await opened.json();
  if (opened.status !== 201) {
    throw new Error(`the reader did not open a cross-device session: HTTP ${opened.status} ${session.detail ?? ""}`);
  }
  onRequest(session.request);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await fetchFn(`${base}/sessions/${encodeURIComponent(session.session)}/result?wait=${waitS}`);
    if (r.status === 200) {
      return { protocol: "openid4vp-cross-device", ...(await r.json()) };
    }
    if (r.status !== 409) {  // 409: no answer yet, or being verified
      const body = await r.json().catch(() => ({}));
      throw new Error(`the reader gave no verdict: HTTP ${r.status} ${body.detail ?? ""}`);
    }
  }
  throw new Error("no phone answered before the session expired");
}

// a phone tapped on the reader's own NFC reader (mcred reader serve --pcsc-reader): the
// reader waits up to waitS seconds for it and answers the verdict
export async function nfcTap(base, { fetchFn = (...a) => fetch(...a), waitS = 30 } = {}) {
  const r = await fetchFn(`${base}/nfc/taps?wait=${waitS}`, { method: "POST" });
  const body = await r.json().catch(() => ({}));
  if (r.status !== 200) {
    throw new Error(`no tap was read: HTTP ${r.status} ${body.detail ?? ""}`);
  }
  return { protocol: "nfc", ...body };
}

// the phone whose QR code the counter's scanner typed (mdoc:...), read over Bluetooth LE on
// the reader's own controller (mcred reader serve --ble-hci): the reader answers the verdict
export async function bleRead(base, engagement, { fetchFn = (...a) => fetch(...a), waitS = 30 } = {}) {
  const r = await fetchFn(`${base}/ble/reads?wait=${waitS}`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ engagement: engagement.trim() }),
  });
  const body = await r.json().catch(() => ({}));
  if (r.status !== 200) {
    const why = typeof body.detail === "string" ? body.detail : "not a phone's QR code (mdoc:...)";
    throw new Error(`no phone was read: HTTP ${r.status} ${why}`);
  }
  return { protocol: "ble", ...body };
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;  // never innerHTML: the wallet's values are data
  if (cls) e.className = cls;
  return e;
}

function render(out, verdict) {
  out.replaceChildren();
  out.append(el("h2", verdict.valid ? "VALID" : "INVALID", verdict.valid ? "ok" : "bad"));
  out.append(el("p", `answered with ${verdict.protocol}`));
  const checks = el("table");
  for (const c of verdict.checks ?? []) {
    const row = el("tr");
    row.append(el("td", c.name), el("td", c.passed ? "pass" : "FAIL", c.passed ? "ok" : "bad"), el("td", c.reason));
    checks.append(row);
  }
  out.append(checks);
  for (const doc of verdict.documents ?? []) {
    out.append(el("h3", doc.docType));
    const items = el("table");
    for (const [ns, elements] of Object.entries(doc.elements ?? {})) {
      for (const [id, value] of Object.entries(elements)) {
        const row = el("tr");
        const cell = el("td");
        if (id === "portrait" && typeof value === "string") {
          const img = el("img");
          img.src = `data:image/jpeg;base64,${value}`;
          img.alt = "portrait";
          cell.append(img);
        } else {
          cell.textContent = JSON.stringify(value);
        }
        row.append(el("td", ns), el("td", id), cell);
        items.append(row);
      }
    }
    out.append(items);
    for (const a of doc.ageOver ?? []) {  // what it says of each age_over_NN asked (ISO/IEC 18013-5 7.2.5)
      out.append(el("p", `${a.namespace} / ${a.requested} asked: ${a.meaning}`));
    }
  }
}

if (typeof document !== "undefined") {
  const base = location.pathname.replace(/\/online\/?$/, "");
  const button = document.getElementById("present");
  const out = document.getElementById("out");
  if (!navigator.credentials || typeof DigitalCredential === "undefined") {
    out.append(el("p", "This browser has no Digital Credentials API (navigator.credentials.get with " +
      "digital requests): use a browser that has it, on https or http://localhost; or a phone, by its QR code.", "bad"));
    button.disabled = true;
  }
  // a button runs one exchange at a time and draws its verdict, or what went wrong
  const onClick = (b, waiting, run) => b.addEventListener("click", async () => {
    b.disabled = true;
    if (waiting) out.replaceChildren(el("p", waiting));
    try {
      render(out, await run());
    } catch (e) {
      out.replaceChildren(el("p", `${e.name}: ${e.message}`, "bad"));
    } finally {
      b.disabled = false;
    }
  });
  const unavailable = (b, why) => {
    b.disabled = true;
    b.title = why;
  };
  const cross = document.getElementById("cross-device");
  if (document.body.dataset.crossDevice !== "true") {
    unavailable(cross, "this reader has no public URL for a phone to reach (mcred reader serve --public-url)");
  }
  onClick(cross, null, () => crossDevice(base, {
    onRequest: (request) => {
      const img = el("img", undefined, "qr");
      img.src = request.qr;
      img.alt = "QR code of the authorization request";
      const uri = el("code", request.uri, "uri");
      out.replaceChildren(el("p", "scan with the phone's wallet; waiting for its answer..."), img, el("p"), uri);
    },
  }));
  const nfc = document.getElementById("nfc");
  if (document.body.dataset.nfc !== "true") {
    unavailable(nfc, "this reader has no NFC reader (mcred reader serve --pcsc-reader)");
  }
  onClick(nfc, "tap a phone on the reader...", () => nfcTap(base));
  const ble = document.getElementById("ble");
  const qr = document.getElementById("ble-qr");
  if (document.body.dataset.ble !== "true") {
    unavailable(ble, "this reader has no Bluetooth controller (mcred reader serve --ble-hci)");
    qr.disabled = true;
  }
  onClick(ble, "reading the phone over Bluetooth...", () => bleRead(base, qr.value));
  // a scanner types the code and Enter: read at once
  qr.addEventListener("keydown", (e) => { if (e.key === "Enter" && !ble.disabled) ble.click(); });
  onClick(button, "waiting for the wallet...", () => {
    // the protocols this reader asks with, as its page says (else each is tried)
    const offered = document.body.dataset.protocols?.split(" ").filter((p) => PROTOCOLS.includes(p));
    return present(base, offered?.length ? { protocols: offered } : {});
  });
}
