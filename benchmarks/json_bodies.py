"""``python -m benchmarks json_bodies [--runs N]``: the strict JSON reader every API body goes
through (protocols.json_strict: repeated names, depth, integers, UTF-8 without a BOM
refused by name) next to its floor, ``json.loads`` on the same bytes, in one run.

Bodies: a provisioning request (about 700 bytes), a linkage batch of 1000 serials (about
30 KB, one container) and 200 status changes as objects (about 20 KB, 201 containers: the
reader walks it for depth).
"""

from __future__ import annotations

import argparse
import json

from benchmarks.timing import interleaved
from protocols.json_strict import loads

HOLDER = {"family_name": "山田", "given_name": "花子", "family_name_kana": "ヤマダ", "given_name_kana": "ハナコ",
          "birth_date": "1990-04-01", "sex": 2, "address": "東京都千代田区霞が関２丁目１番２号",
          "prefecture": "東京都", "municipality": "千代田区"}


def bodies() -> dict[str, bytes]:
    provision = {"phone_id": "ph-0123456789abcdef", "holder": HOLDER, "key_type": "p384", "mdoc_batch": 2,
                 "pin": "1234", "password": "ABC123", "puk": "12345678"}
    linkage = {"serials": [format(0x1F3A5C7E9B2D4F6A8C0E1D3B5F7A9C2E4D6B8F0 + i * 7919, "x") for i in range(1000)]}
    changes = {"changes": [{"phone_id": f"ph-{i:016x}", "credential": "mdoc", "reason": "certificateHold"}
                           for i in range(200)]}
    return {name: json.dumps(body, ensure_ascii=False).encode()
            for name, body in (("provisioning request", provision), ("linkage batch, 1000 serials", linkage),
                               ("200 status changes", changes))}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks json_bodies")
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    cases = bodies()
    for body in cases.values():
        assert loads(body) == json.loads(body)
    fns = {}
    for name, body in cases.items():
        fns[f"ours {name}"] = lambda b=body: loads(b)
        fns[f"floor {name}"] = lambda b=body: json.loads(b)
    timed = interleaved(fns, args.runs)
    print(f"strict JSON bodies (protocols.json_strict.loads) against json.loads, median of {args.runs} runs")
    for name, body in cases.items():
        ours, floor = timed[f"ours {name}"], timed[f"floor {name}"]
        print(f"  {name:30s} {len(body):6d} B  ours {ours * 1e6:8.1f} us  json.loads {floor * 1e6:8.1f} us"
              f"  = {ours / floor:5.2f}x floor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
