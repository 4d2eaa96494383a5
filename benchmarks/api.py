"""``python -m benchmarks api``: the issuer service under load (issue 8 item 5).

One run, one PostgreSQL schema, one data directory, three workloads, each measured twice:

* in-process: the same functions the routes call (``mcred.provision.provision``,
  ``JpkiIssuer.ocsp_respond``, ``MdocService.status_token``) called directly, one thread;
* over HTTP: ``uvicorn --factory mcred.service:app_from_env --workers 4`` on 127.0.0.1,
  with a bearer token; provisioning posted as jobs and polled to the end, OCSP (POST) and
  status lists (GET) from client threads with keep-alive connections.

Reported: operations per second, p50 / p99 latency, and the HTTP/in-process ratio; and the
HTTP floor: the same clients against a bare ASGI app with the same number of workers,
which is the most any route could reach here. Job
latency is the job's own ``created_at -> finished_at``. The clients run on the same machine
as the server (loopback only), so on a small machine they take CPU from it: the ratios are
an upper bound on the service's overhead. Bounded by ``--jobs`` and ``--seconds``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.scratch import free_port

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


def _client_proc(job: tuple[str, str, bytes, float, int]) -> tuple[list[float], float]:
    """One client process: ``threads`` keep-alive clients hitting one route for ``seconds``."""
    import httpx

    base, path, body, seconds, threads = job
    local = threading.local()

    def once() -> None:
        if not hasattr(local, "c"):
            local.c = httpx.Client(base_url=base, timeout=30)
        if body:
            r = local.c.post(path, content=body,
                             headers={"Content-Type": "application/ocsp-request"})
        else:
            r = local.c.get(path)
        assert r.status_code == 200, r.status_code

    stop = time.perf_counter() + seconds
    lat: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = []
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            once()
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat, time.perf_counter() - t0


def _hammer(base: str, path: str, body: bytes, seconds: float, procs: int,
            threads: int) -> dict:
    """``procs`` client processes x ``threads`` threads; one warm-up second first."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(procs) as pool:
        pool.map(_client_proc, [(base, path, body, 1.0, threads)] * procs)
        parts = pool.map(_client_proc, [(base, path, body, seconds, threads)] * procs)
    lat = [x for part, _ in parts for x in part]
    return _summary(lat, max(w for _, w in parts))


def pg_schema(url: str) -> tuple[str, Callable[[], None]]:
    """A fresh schema on ``url`` (the URL returned sets it as the search path) and its drop."""
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


def _in_process(ctx, jobs: int, seconds: float) -> tuple[dict, bytes, str]:  # noqa: ANN001
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import ocsp

    from mcred.provision import jpki_issuer, mdoc_service, parse_holder, provision

    def one(i: int):  # noqa: ANN202
        return provision(ctx, ctx.new_phone(), parse_holder(_holder(i)),
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
               procs: int, threads: int, workers: int) -> dict:
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

    return {"provisioning": prov,
            "ocsp": _hammer(base, "/ocsp", der, seconds, procs, threads),
            "status_list": _hammer(base, f"/status/{list_id}", b"", seconds, procs, threads)}


def floor_app():  # noqa: ANN201 - ``uvicorn --factory``
    """A bare ASGI app answering 200 with a fixed body: the HTTP + client floor."""
    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": b"\x00" * 64})

    return app


def _floor(port: int, workers: int, seconds: float, procs: int, threads: int) -> dict:
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.api:floor_app", "--host",
         HOST, "--port", str(port), "--workers", str(workers), "--log-level", "warning",
         "--no-access-log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://{HOST}:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        return _hammer(f"http://{HOST}:{port}", "/", b"", seconds, procs, threads)
    finally:
        proc.terminate()
        proc.wait(15)


def serve(home: Path, url: str, port: int, workers: int, job_threads: int):  # noqa: ANN202
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
    ap.add_argument("--client-procs", type=int, default=4, help="client processes")
    ap.add_argument("--client-threads", type=int, default=4, help="threads per client process")
    ap.add_argument("--database", default=PG_URL, help="PostgreSQL URL (a schema is made)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from issuer.api.auth import create_token
    from mcred.context import Context
    from mcred.provision import issuer_port

    url, drop = pg_schema(args.database)
    proc = None
    try:
        with tempfile.TemporaryDirectory() as d:
            home = Path(d)
            ctx = Context(home=home, database=url)
            issuer_port(ctx)  # CAs and IACA set up once, before any worker starts
            _, token = create_token(ctx.sessions, ["operator"], "benchmark")
            inproc, der, list_id = _in_process(ctx, args.jobs, args.seconds)
            port = free_port()
            proc = serve(home, url, port, args.workers, args.job_threads)
            http = _over_http(f"http://{HOST}:{port}", token, args.jobs, args.seconds, der,
                              list_id, args.client_procs, args.client_threads, args.workers)
            ctx.engine.dispose()
            proc.terminate()
            proc.wait(15)
            proc = None
            floor = _floor(free_port(), args.workers, args.seconds, args.client_procs,
                           args.client_threads)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop()

    out = {"cpus": os.cpu_count(), "workers": args.workers, "job_threads": args.job_threads,
           "client_procs": args.client_procs, "client_threads": args.client_threads, "in_process": inproc, "http": http,
           "http_floor": floor,
           "ratio_http_over_in_process": {
               k: http[k]["per_s"] / inproc[k]["per_s"] for k in inproc if inproc[k]["per_s"]}}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"issuer service on {os.cpu_count()} CPUs: uvicorn x{args.workers} workers "
          f"({args.job_threads} job threads each), PostgreSQL, loopback clients "
          f"({args.client_procs} processes x {args.client_threads} threads)")
    print(f"{'workload':14} {'in-process/s':>13} {'p50 ms':>8} {'p99 ms':>8}   "
          f"{'HTTP/s':>8} {'p50 ms':>8} {'p99 ms':>8}   {'HTTP/in-proc':>12}")
    for k in ("provisioning", "ocsp", "status_list"):
        a, b = inproc[k], http[k]
        print(f"{k:14} {a['per_s']:13.1f} {a['p50_ms']:8.1f} {a['p99_ms']:8.1f}   "
              f"{b['per_s']:8.1f} {b['p50_ms']:8.1f} {b['p99_ms']:8.1f}   "
              f"{out['ratio_http_over_in_process'][k]:12.2f}")
    print(f"{'HTTP floor':14} {'':13} {'':8} {'':8}   {floor['per_s']:8.1f} "
          f"{floor['p50_ms']:8.1f} {floor['p99_ms']:8.1f}   (bare ASGI app, same clients)")
    print("(provisioning in-process: one after another in one thread; over HTTP: all posted "
          "at once as jobs, latency = job created -> finished, queueing included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
