"""``python -m benchmarks issue``: issue 5, item 6, in one run: first the mdocs issued per
second against one ECDSA sign plus the digests (:mod:`benchmarks.issue_mdoc`, also run alone
as ``python -m benchmarks issue_mdoc``), then the status list. ``--part mdoc|status`` runs
one of them; ``--entries N`` a smaller list (the target is stated for 100 million).

A 100-million entry, 1-bit Status List with 1 % of entries INVALID is rebuilt from its
revoked indices, compressed and signed as a Status List Token; then one status is changed
and the token republished. Next to it, the floors measured in the same run: zlib level 6
and level 9 (default strategy) on the same bytes, and one ECDSA P-256 signature.
Targets: rebuild + compress + sign under 1 s, size at most 1.2x zlib level 9.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import zlib

from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.timing import timed
from protocols import cose, iaca
from protocols.status import Status, StatusList, build_status_list_token

SIZE = 100_000_000


def _pki():
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    ik = ec.generate_private_key(ec.SECP256R1())
    ic = iaca.sign(iaca.iaca_builder(
        ik.public_key(), common_name="bench IACA", not_before=t0,
        not_after=t0 + dt.timedelta(days=3650), issuer_alt_name_uri="http://127.0.0.1:8470/",
        crl_uri="http://127.0.0.1:8470/crl/iaca.crl"), ik)
    sk = ec.generate_private_key(ec.SECP256R1())
    sc = iaca.sign(iaca.status_list_signer_builder(
        sk.public_key(), ic, common_name="bench status list signer", not_before=t0,
        not_after=t0 + dt.timedelta(days=400), crl_uri="http://127.0.0.1:8470/crl/iaca.crl"), ik)
    return sk, sc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks issue")
    ap.add_argument("--part", choices=("all", "mdoc", "status"), default="all")
    ap.add_argument("--runs", type=int, default=300, help="mdoc part: timed issuances")
    ap.add_argument("--entries", type=int, default=SIZE,
                    help="status list entries (the target is for 100,000,000)")
    args = ap.parse_args(argv)
    if args.part in ("all", "mdoc"):
        from benchmarks import issue_mdoc

        issue_mdoc.main(repeat=args.runs)
    if args.part == "mdoc":
        return 0
    return _status_list(args.entries)


def _status_list(size: int) -> int:
    revoked_n = size // 100
    sk, sc = _pki()
    signer = cose.key_signer(sk)
    now = dt.datetime.now(dt.UTC)
    uri = "http://127.0.0.1:8470/status/bench"
    print(f"status list: {size:,} entries, 1 bit, {revoked_n:,} INVALID (random indices)")
    revoked = random.Random(2025).sample(range(size), revoked_n)

    def publish(lst: StatusList) -> bytes:
        return build_status_list_token(lst, uri=uri, iat=now, exp=now + dt.timedelta(days=1),
                                       ttl=3600, signer=signer, certificate=sc)

    t_build, lst = timed(lambda: StatusList.from_indices(size, revoked, Status.INVALID))
    t_compress, lst_bytes = timed(lst.compress, repeat=3)
    t_sign, _ = timed(lambda: signer.sign(b"x" * 64), repeat=20)
    t_total, token = timed(lambda: publish(StatusList.from_indices(size, revoked, Status.INVALID)))
    t_update, token2 = timed(lambda: publish(lst.set(revoked[0], Status.VALID)))

    t_z6, z6 = timed(lambda: zlib.compress(lst.raw, 6))
    t_z9, z9 = timed(lambda: zlib.compress(lst.raw, 9))

    rows = [
        ("rebuild (from revoked indices)", t_build, len(lst.raw)),
        ("compress (ours: zlib Z_RLE)", t_compress, len(lst_bytes)),
        ("rebuild + compress + sign (token)", t_total, len(token)),
        ("one status update republished", t_update, len(token2)),
        ("floor: zlib level 6", t_z6, len(z6)),
        ("floor: zlib level 9", t_z9, len(z9)),
        ("floor: one ECDSA P-256 sign", t_sign, 64),
    ]
    for name, seconds, n_bytes in rows:
        print(f"  {name:<36} {seconds * 1000:10.3f} ms  {n_bytes:>12,} B")
    ratio = len(lst_bytes) / len(z9)
    print(f"  size vs zlib 9: {ratio:.3f}x (target <= 1.2x);"
          f" time vs zlib 6: {t_compress / t_z6:.2f}x, vs zlib 9: {t_compress / t_z9:.3f}x")
    ok = t_total < 1.0 and ratio <= 1.2
    print(f"  target (rebuild+compress+sign < 1 s at <= 1.2x zlib 9): {'met' if ok else 'MISSED'}"
          + ("" if size == SIZE else f" (for {size:,} entries; the target is stated for {SIZE:,})"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
