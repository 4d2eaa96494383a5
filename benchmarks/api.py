"""``python -m benchmarks api``: the issuer service under load (issue 8 item 5).

One run, one PostgreSQL schema, one data directory, three workloads, each measured twice:

* in-process: the same functions the routes call (``mcred.provision.provision``,
  ``JpkiIssuer.ocsp_respond``, ``MdocService.status_token``) called directly, one thread;
* over HTTP: ``uvicorn --factory mcred.service:app_from_env --workers 4`` on 127.0.0.1,
  with a bearer token; provisioning posted as jobs and polled to the end, OCSP (POST) and
  status lists (GET) from client threads with keep-alive connections.

Reported: operations per second, p50 / p99 latency, and the HTTP/in-process ratio. Job
latency is the job's own ``created_at -> finished_at``. The clients run on the same machine
as the server (loopback only), so on a small machine they take CPU from it: the ratios are
an upper bound on the service's overhead. Bounded by ``--jobs`` and ``--seconds``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PG_URL = os.environ.get("MCRED_BENCH_POSTGRES_URL", os.environ.get(
    "MCRED_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
HOST = "127.0.0.1"


def _holder(i: int) -> dict:
    return {"family_name": "負荷", "given_name": f"太郎{i}", "family_name_kana": "フカ",
            "given_name_kana": "タロウ", "birth_date": "1980-04-01", "sex": 1,
            "address": f"東京都千代田区{i}-1", "prefecture": "東京都", "municipality": "千代田区"}


def _pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")


def _summary(latencies: list[float], wall: float) -> dict:
    return {"n": len(latencies), "per_s": len(latencies) / wall if wall else 0.0,
            "p50_ms": _pct(latencies, 50) * 1e3, "p99_ms": _pct(latencies, 99) * 1e3}


def _loop(fn: Callable[[], object], seconds: float, threads: int = 1) -> dict:
    """Call ``fn`` from ``threads`` threads for ``seconds``; latencies of every call."""
    stop = time.perf_counter() + seconds
    lat: list[list[float]] = [[] for _ in range(threads)]

    def worker(k: int) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            fn()
            lat[k].append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return _summary([x for part in lat for x in part], time.perf_counter() - t0)


def _schema(url: str) -> tuple[str, Callable[[], None]]:
    import sqlalchemy as sa

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{name}"'))

    def drop() -> None:
        with admin.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()

    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{name}", drop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _in_process(ctx, jobs: int, seconds: float) -> tuple[dict, bytes, str]:  # noqa: ANN001
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import ocsp

    import wallet_sim
    from mcred.provision import jpki_issuer, mdoc_service, parse_holder, provision

    def one(i: int):  # noqa: ANN202
        return provision(ctx, wallet_sim.create_phone(ctx.home), parse_holder(_holder(i)),
                         key_type="p384", mdoc_batch=1, pin="1234", password="ABC123",
                         puk="12345678")

    one(20_000)  # warm-up, not counted
    lat = []
    t0 = time.perf_counter()
    last = None
    for i in range(jobs):
        s = time.perf_counter()
        last = one(10_000 + i)
        lat.append(time.perf_counter() - s)
    prov = _summary(lat, time.perf_counter() - t0)

    issuer = jpki_issuer(ctx)
    cert = x509.load_der_x509_certificate(last.sign_certificate)
    der = ocsp.OCSPRequestBuilder().add_certificate(
        cert, issuer.root("sign"), hashes.SHA256()).build().public_bytes(Encoding.DER)
    oc = _loop(lambda: issuer.ocsp_respond(der), seconds)

    from issuer.db import StatusList

    with ctx.sessions() as s:
        list_id = s.query(StatusList.id).first()[0]
    svc = mdoc_service(ctx)
    st = _loop(lambda: svc.status_token(list_id), seconds)
    return {"provisioning": prov, "ocsp": oc, "status_list": st}, der, list_id


def _over_http(base: str, token: str, jobs: int, seconds: float, der: bytes, list_id: str,
               threads: int, workers: int) -> dict:
    import httpx

    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=h, timeout=120) as c:
        phones = [c.post("/phones", json={}).json()["id"] for _ in range(jobs)]

    def run_jobs(indices: list[int]) -> tuple[dict[str, dict], float]:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(post, indices))
        done: dict[str, dict] = {}
        with httpx.Client(base_url=base, headers=h, timeout=120) as c:
            while len(done) < len(ids):
                for j in ids:
                    if j not in done:
                        v = c.get(f"/jobs/{j}").json()
                        if v["state"] not in ("queued", "running"):
                            done[j] = v
                time.sleep(0.05)
        failed = [v for v in done.values() if v["state"] != "succeeded"]
        if failed:
            raise RuntimeError(f"{len(failed)} provisioning jobs failed: {failed[0]['error']}")
        return done, time.perf_counter() - t0

    def post(i: int) -> str:
        with httpx.Client(base_url=base, headers=h, timeout=120) as c:
            r = c.post("/provisioning", json={
                "phone_id": phones[i], "holder": _holder(i), "key_type": "p384",
                "mdoc_batch": 1, "pin": "1234", "password": "ABC123", "puk": "12345678"})
            r.raise_for_status()
            return r.json()["id"]

    # Warm-up, not counted: every worker process loads the issuers and opens its pool.
    with httpx.Client(base_url=base, headers=h, timeout=120) as c:
        spare = [c.post("/phones", json={}).json()["id"] for _ in range(2 * workers)]
    phones.extend(spare)
    run_jobs(list(range(jobs, jobs + len(spare))))
    done, wall = run_jobs(list(range(jobs)))

    def secs(v: dict) -> float:
        a = dt.datetime.fromisoformat(v["created_at"])
        b = dt.datetime.fromisoformat(v["finished_at"])
        return (b - a).total_seconds()

    prov = _summary([secs(v) for v in done.values()], wall)

    local = threading.local()

    def client():  # noqa: ANN202
        if not hasattr(local, "c"):
            local.c = httpx.Client(base_url=base, timeout=30)
        return local.c

    def ocsp_once() -> None:
        r = client().post("/ocsp", content=der,
                          headers={"Content-Type": "application/ocsp-request"})
        assert r.status_code == 200

    def status_once() -> None:
        r = client().get(f"/status/{list_id}")
        assert r.status_code == 200

    _loop(ocsp_once, 1.0, threads)  # warm-up: fresh connections reach every worker
    _loop(status_once, 1.0, threads)
    return {"provisioning": prov, "ocsp": _loop(ocsp_once, seconds, threads),
            "status_list": _loop(status_once, seconds, threads)}


def _serve(home: Path, url: str, port: int, workers: int, job_threads: int):  # noqa: ANN202
    env = dict(os.environ, MCRED_HOME=str(home), MCRED_DATABASE_URL=url,
               MCRED_JOB_WORKERS=str(job_threads))
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "mcred.service:app_from_env",
         "--host", HOST, "--port", str(port), "--workers", str(workers),
         "--log-level", "warning", "--no-access-log"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("uvicorn exited: " + proc.stderr.read().decode()[-2000:])
        try:
            if httpx.get(f"http://{HOST}:{port}/trust/iaca.pem", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("uvicorn did not answer within 60 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks api")
    ap.add_argument("--jobs", type=int, default=40, help="provisioning jobs per measurement")
    ap.add_argument("--seconds", type=float, default=3.0, help="per OCSP / status run")
    ap.add_argument("--workers", type=int, default=4, help="uvicorn worker processes")
    ap.add_argument("--job-threads", type=int, default=2, help="job threads per worker")
    ap.add_argument("--client-threads", type=int, default=8)
    ap.add_argument("--database", default=PG_URL, help="PostgreSQL URL (a schema is made)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from issuer.api.auth import create_token
    from mcred.context import Context
    from mcred.provision import issuer_port

    url, drop = _schema(args.database)
    proc = None
    try:
        with tempfile.TemporaryDirectory() as d:
            home = Path(d)
            ctx = Context(home=home, database=url)
            issuer_port(ctx)  # CAs and IACA set up once, before any worker starts
            _, token = create_token(ctx.sessions, ["operator"], "benchmark")
            inproc, der, list_id = _in_process(ctx, args.jobs, args.seconds)
            port = _free_port()
            proc = _serve(home, url, port, args.workers, args.job_threads)
            http = _over_http(f"http://{HOST}:{port}", token, args.jobs, args.seconds, der,
                              list_id, args.client_threads, args.workers)
            ctx.engine.dispose()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop()

    out = {"cpus": os.cpu_count(), "workers": args.workers, "job_threads": args.job_threads,
           "client_threads": args.client_threads, "in_process": inproc, "http": http,
           "ratio_http_over_in_process": {
               k: http[k]["per_s"] / inproc[k]["per_s"] for k in inproc if inproc[k]["per_s"]}}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"issuer service on {os.cpu_count()} CPUs: uvicorn x{args.workers} workers "
          f"({args.job_threads} job threads each), PostgreSQL, loopback clients "
          f"({args.client_threads} threads)")
    print(f"{'workload':14} {'in-process/s':>13} {'p50 ms':>8} {'p99 ms':>8}   "
          f"{'HTTP/s':>8} {'p50 ms':>8} {'p99 ms':>8}   {'HTTP/in-proc':>12}")
    for k in ("provisioning", "ocsp", "status_list"):
        a, b = inproc[k], http[k]
        print(f"{k:14} {a['per_s']:13.1f} {a['p50_ms']:8.1f} {a['p99_ms']:8.1f}   "
              f"{b['per_s']:8.1f} {b['p50_ms']:8.1f} {b['p99_ms']:8.1f}   "
              f"{out['ratio_http_over_in_process'][k]:12.2f}")
    print("(provisioning in-process: one after another in one thread; over HTTP: all posted "
          "at once as jobs, latency = job created -> finished, queueing included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
