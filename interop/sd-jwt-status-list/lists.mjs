// Test-only bridge to @sd-jwt/jwt-status-list (TypeScript): reads one JSON request on stdin,
// writes one JSON answer on stdout. Used by tests/test_status_list_interop_sdjwt.py.
//
//   {"mode": "read", "lists": [{"lst": base64url (zlib), "bits": n}]}
//   -> {"lists": [{"size": n, "set": [[index, status], ...]} | {"error": text}]}
//      (StatusList.decompressStatusList: every entry whose status is not 0)
//   {"mode": "write", "lists": [{"size": n, "bits": n, "set": [[index, status], ...]}]}
//   -> {"lists": [{"lst": base64url}]}   (StatusList.compressStatusList, pako level 9)
import { StatusList } from "@sd-jwt/jwt-status-list";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));

function read({ lst, bits }) {
  try {
    const list = StatusList.decompressStatusList(lst, bits);
    const set = [];
    list.statusList.forEach((s, i) => { if (s !== 0) set.push([i, s]); });
    return { size: list.statusList.length, set };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
}

function write({ size, bits, set }) {
  const values = new Array(size).fill(0);
  for (const [i, s] of set) values[i] = s;
  return { lst: new StatusList(values, bits).compressStatusList() };
}

const run = req.mode === "read" ? read : write;
process.stdout.write(JSON.stringify({ lists: req.lists.map(run) }));
