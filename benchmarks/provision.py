"""``python -m benchmarks provision [--db sqlite|postgresql]``: one provisioning run
(:func:`mcred.provision.provision`, P-384 JPKI keys and one mdoc, as ``benchmarks api``
runs it in-process) timed, and its database round trips counted by kind.

The round trips are what the database sees (:mod:`mcred.db_trips`): on PostgreSQL libpq's
own trace, so the pool's pre-pings, psycopg's ``BEGIN`` and ``DEALLOCATE ALL`` and the
extra round trip that prepares a statement count too; on SQLite every statement the
library runs. The first provisions are not measured (they set up the issuer's keys).
Counts do not depend on the machine, but psycopg prepares a statement on a connection
after its fifth run there (one round trip, once per connection): the table shows the
run with the fewest, which is the steady state, and the range over the runs. The
milliseconds depend on the machine (a shared one varies 1.5x minute to minute): compare
counts, and times only from runs alternated in one sitting.

PostgreSQL: ``$MCRED_BENCH_POSTGRES_URL``, else ``$MCRED_TEST_POSTGRES_URL``, else
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; the run makes a schema of its own
and drops it after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.api import pg_schema

PG_URL = os.environ.get("MCRED_BENCH_POSTGRES_URL", os.environ.get(
    "MCRED_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
WARMUP = 5


def _holder(i: int) -> dict:
    return {"family_name": "往復", "given_name": f"太郎{i}", "family_name_kana": "オウフク",
            "given_name_kana": "タロウ", "birth_date": "1980-04-01", "sex": 1,
            "address": f"東京都千代田区{i}-1", "prefecture": "東京都", "municipality": "千代田区"}


def measure(home: Path, url: str, runs: int) -> dict:
    """Provision ``WARMUP`` phones, then ``runs`` more, each timed and counted."""
    from mcred.context import Context
    from mcred.db_trips import RoundTrips
    from mcred.provision import issuer_port, parse_holder, provision

    ctx = Context(home=home, database=url)
    trips = RoundTrips(ctx.engine)
    ctx.engine.dispose()  # every connection from here on is counted
    issuer_port(ctx)  # the CAs and the IACA made once, as an installation has them

    def one(i: int) -> None:
        provision(ctx, ctx.new_phone(), parse_holder(_holder(i)),
                  key_type="p384", mdoc_batch=1, pin="1234", password="ABC123", puk="12345678")

    for i in range(WARMUP):
        one(i)
    seconds: list[float] = []
    counts: list[Counter[str]] = []
    for i in range(runs):
        before = trips.snapshot()
        t0 = time.perf_counter()
        one(WARMUP + i)
        seconds.append(time.perf_counter() - t0)
        counts.append(trips.since(before))
    trips.detach()
    ctx.engine.dispose()
    return {"dialect": ctx.engine.dialect.name, "runs": runs,
            "ms": {"median": statistics.median(seconds) * 1e3, "min": min(seconds) * 1e3,
                   "max": max(seconds) * 1e3},
            "round_trips": {"min": min(c.total() for c in counts),
                            "max": max(c.total() for c in counts),
                            # the run with the fewest: the steady state (no prepare left)
                            "fewest": dict(min(counts, key=Counter.total)),
                            "prepares": sum(c["prepare"] for c in counts)}}


def pg_unreachable(url: str) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used, or None."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def run(db: str, runs: int, pg_url: str = PG_URL) -> dict:
    """:func:`measure` in a temporary data directory (and a PostgreSQL schema of its own)."""
    with tempfile.TemporaryDirectory() as d:
        home = Path(d)
        if db == "sqlite":
            return measure(home, f"sqlite:///{home / 'mcred.sqlite3'}", runs)
        url, drop = pg_schema(pg_url)
        try:
            return measure(home, url, runs)
        finally:
            drop()


def main(argv: list[str] | None = None) -> int:
    from mcred.db_trips import describe

    ap = argparse.ArgumentParser(prog="python -m benchmarks provision")
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--runs", type=int, default=10, help="measured provisions per database")
    ap.add_argument("--database", default=PG_URL, help="PostgreSQL URL (a schema is made)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    why = pg_unreachable(args.database) if "postgresql" in dbs else None
    if why and args.db == "both":
        print(f"(postgresql left out: not reachable at {args.database}: {why})")
        dbs.remove("postgresql")
    elif why:
        print(f"postgresql not reachable at {args.database}: {why}", file=sys.stderr)
        return 2
    out = {db: run(db, args.runs, args.database) for db in dbs}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"one provision (P-384 JPKI, 1 mdoc), {args.runs} runs after {WARMUP} unmeasured")
    print(f"{'database':10} {'ms median':>9} {'min':>6} {'max':>6}   round trips per provision "
          "(SQLite: statements run)")
    for db, r in out.items():
        ms, rt = r["ms"], r["round_trips"]
        spread = "" if rt["min"] == rt["max"] else (
            f"  [{rt['min']}..{rt['max']} over the runs, {rt['prepares']} prepares in all]")
        print(f"{db:10} {ms['median']:9.1f} {ms['min']:6.1f} {ms['max']:6.1f}   "
              f"{describe(Counter(rt['fewest']))}{spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
