// Test-only bridge for tests/test_present_online_browser.py: one JSON request on stdin
// ({"url": the reader's /online page, "chromium": path}), one JSON answer on stdout. Loads the
// page in headless Chromium, clicks its button, and reports what the browser did: the
// requests it sent, console messages and page errors, the Digital Credentials API's presence,
// and whether navigator.credentials.get took the page's requests to the credential picker
// (still pending after a while: no wallet answers here) or refused them at once.
// With {"crossDevice": true, "phone": URL}: clicks the cross-device button instead, waits for
// the QR code image to load under the page's CSP, hands the URI the page shows to the "phone"
// (a POST of {"uri"} to that URL, where the test's wallet scans it and answers the reader),
// and reports the verdict the page then draws.
import puppeteer from "puppeteer-core";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const browser = await puppeteer.launch({ executablePath: req.chromium, headless: true,
  args: ["--no-sandbox", "--disable-gpu"] });
try {
  const page = await browser.newPage();
  const logs = [];
  const seen = [];
  page.on("console", (m) => logs.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  page.on("response", (r) => {
    const u = new URL(r.url());
    seen.push(`${r.request().method()} ${u.pathname}${u.search} ${r.status()}`);
  });
  // record what the page hands the API, and how the API takes it, without changing either
  await page.evaluateOnNewDocument(() => {
    const get = navigator.credentials.get.bind(navigator.credentials);
    window.__dc = { calls: [], outcome: "not called" };
    navigator.credentials.get = (options) => {
      window.__dc.calls.push(JSON.parse(JSON.stringify(options)));
      window.__dc.outcome = "pending";
      const p = get(options);
      p.then(() => { window.__dc.outcome = "resolved"; },
             (e) => { window.__dc.outcome = `${e.name}: ${e.message}`; });
      return p;
    };
  });
  await page.goto(req.url, { waitUntil: "networkidle0" });
  if (req.crossDevice) {
    await page.click("#cross-device");
    try {
      await page.waitForSelector("img.qr", { timeout: 20000 });
    } catch (e) {
      const out = await page.$eval("#out", (d) => d.textContent);
      console.log(JSON.stringify({ seen, logs, qrWidth: 0, error: `no QR code: ${e.message}`, out }));
      process.exit(0);
    }
    const qrWidth = await page.$eval("img.qr", (img) => img.decode().then(() => img.naturalWidth, () => 0));
    const uri = await page.$eval("code.uri", (c) => c.textContent);
    const scanned = await fetch(req.phone, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ uri }) });
    const phone = await scanned.json();
    try {
      await page.waitForSelector("#out h2", { timeout: 20000 });
    } catch (e) {
      const out = await page.$eval("#out", (d) => d.textContent);
      console.log(JSON.stringify({ seen, logs, qrWidth, uri, phone, error: `no verdict: ${e.message}`, out }));
      process.exit(0);
    }
    const verdict = await page.$eval("#out h2", (h) => h.textContent);
    const out = await page.$eval("#out", (d) => d.textContent);
    console.log(JSON.stringify({ seen, logs, qrWidth, uri, phone, verdict, out }));
    process.exit(0);
  }
  const hasApi = await page.evaluate(() => typeof DigitalCredential !== "undefined");
  await page.click("#present");
  await new Promise((r) => setTimeout(r, 2500));
  const dc = await page.evaluate(() => window.__dc);
  const out = await page.$eval("#out", (d) => d.textContent);
  // the control: a request without data is refused at once, so "pending" above means taken
  const malformed = await page.evaluate(async () => {
    try {
      await navigator.credentials.get({ mediation: "required", digital: { requests: [{ protocol: "org-iso-mdoc" }] } });
      return "resolved";
    } catch (e) {
      return e.name;
    }
  });
  console.log(JSON.stringify({ hasApi, seen, logs, calls: dc.calls, outcome: dc.outcome, out, malformed }));
} finally {
  await browser.close();
}
