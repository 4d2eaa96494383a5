"""Prometheus metrics of the service (``GET /metrics``, scope ``operator``).

Two kinds, both in the text exposition format of ``prometheus_client``:

* **Requests**, counted in this process by a middleware: ``mcred_http_requests_total``
  and ``mcred_http_request_seconds`` by method, *route template* (``/jobs/{job_id}``,
  never the raw path, so the series stay few) and status code; and the GP SERAM requests
  relayed between worker processes, ``mcred_seram_relayed_total`` by side (forwarded,
  answered).
* **The registry**, read from the database at each scrape (so every worker process reports
  the same, installation-wide values): credentials by kind and status, phones by state,
  API and TSM jobs by kind and state, status lists and their allocated indices, and issuer
  key generations by purpose and state.
* **Housekeeping** (:mod:`mcred.housekeeping`), read from ``task_runs`` at each scrape, by
  task: runs and failures so far (``mcred_housekeeping_runs_total``,
  ``mcred_housekeeping_failures_total``, 0 for a task that never ran), and of its last run
  the start (``mcred_housekeeping_last_run_timestamp_seconds``), whether it succeeded
  (``mcred_housekeeping_last_ok``), how long it took (``mcred_housekeeping_last_duration_seconds``),
  and the start of its last success (``mcred_housekeeping_last_success_timestamp_seconds``):
  whichever process ran it, a service worker or a command line.

The parties know nothing of this: the composition root reads their tables and wraps the
app. Scraping needs a bearer token with scope ``operator`` (deny by default).

Several worker processes (``mcred serve --workers N``, ``mcred reader serve --workers N``)
share their counts through ``prometheus_client``'s multiprocess mode: the command makes a
fresh directory, names it in ``PROMETHEUS_MULTIPROC_DIR`` before the workers start (each
writes its counters to a file there), and any worker's scrape reports the sum over all of
them. Without it, a scrape reached one worker and showed that worker's counts only. Running
``uvicorn --workers N`` by hand, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select
from starlette.routing import Match

from mcred.context import Context

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RegistryCollector:
    """Gauges read from the issuer's and the TSM's tables at scrape time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from issuer.api.jobs import Job
        from issuer.db import Credential, IssuerKey, Phone, StatusList
        from tsm.db import JobRow

        up = GaugeMetricFamily("mcred_registry_up", "1 when the registry could be read at this scrape")
        try:
            with self.ctx.sessions() as s:
                creds = s.execute(select(Credential.kind, Credential.status, func.count())
                                  .group_by(Credential.kind, Credential.status)).all()
                phones = s.execute(select(Phone.state, func.count()).group_by(Phone.state)).all()
                api_jobs = s.execute(select(Job.kind, Job.state, func.count())
                                     .group_by(Job.kind, Job.state)).all()
                tsm_jobs = s.execute(select(JobRow.kind, JobRow.state, func.count())
                                     .group_by(JobRow.kind, JobRow.state)).all()
                lists = s.execute(select(func.count(), func.coalesce(func.sum(StatusList.allocated), 0),
                                         func.coalesce(func.sum(StatusList.size), 0))).one()
                keys = s.execute(select(IssuerKey.purpose, IssuerKey.active,
                                        IssuerKey.revoked_at.is_not(None), func.count())
                                 .group_by(IssuerKey.purpose, IssuerKey.active,
                                           IssuerKey.revoked_at.is_not(None))).all()
        except Exception:  # noqa: BLE001 - a scrape reports the registry down, never fails
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        g = GaugeMetricFamily("mcred_credentials", "Issued credentials by kind and status",
                              labels=["kind", "status"])
        for kind, status, n in creds:
            g.add_metric([kind, status], n)
        yield g
        g = GaugeMetricFamily("mcred_phones", "Phones known to the issuer by state", labels=["state"])
        for state, n in phones:
            g.add_metric([state], n)
        yield g
        g = GaugeMetricFamily("mcred_api_jobs", "HTTP API jobs by kind and state", labels=["kind", "state"])
        for kind, state, n in api_jobs:
            g.add_metric([kind, state], n)
        yield g
        g = GaugeMetricFamily("mcred_tsm_jobs", "TSM jobs by kind and state", labels=["kind", "state"])
        for kind, state, n in tsm_jobs:
            g.add_metric([kind, state], n)
        yield g
        count, allocated, size = lists
        yield GaugeMetricFamily("mcred_status_lists", "Token Status Lists", value=count)
        yield GaugeMetricFamily("mcred_status_list_indices_allocated",
                                "Status list indices handed out (never reused)", value=allocated)
        yield GaugeMetricFamily("mcred_status_list_indices", "Status list capacity", value=size)
        g = GaugeMetricFamily("mcred_issuer_keys", "Issuer key generations by purpose and state",
                              labels=["purpose", "state"])
        merged: dict[tuple[str, str], int] = {}
        for purpose, active, revoked, n in keys:
            state = "revoked" if revoked else "active" if active else "retired"
            merged[(purpose, state)] = merged.get((purpose, state), 0) + n
        for (purpose, state), n in sorted(merged.items()):
            g.add_metric([purpose, state], n)
        yield g


class HousekeepingCollector:
    """The scheduled housekeeping's record (``task_runs``), by task, read at scrape time. A
    record that cannot be read is left out (``mcred_registry_up`` says the database is down)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        from mcred.housekeeping import TASKS, last_runs

        try:
            rows = last_runs(self.ctx)
        except Exception:  # noqa: BLE001 - a scrape never fails for it
            return
        runs = CounterMetricFamily("mcred_housekeeping_runs", "Runs of each housekeeping task, by any process",
                                   labels=["task"])
        failures = CounterMetricFamily("mcred_housekeeping_failures", "Runs of each housekeeping task that "
                                       "failed", labels=["task"])
        started = GaugeMetricFamily("mcred_housekeeping_last_run_timestamp_seconds", "When the last run of "
                                    "each housekeeping task started (Unix time)", labels=["task"])
        succeeded = GaugeMetricFamily("mcred_housekeeping_last_success_timestamp_seconds", "When the last "
                                      "successful run of each housekeeping task started (Unix time)",
                                      labels=["task"])
        ok = GaugeMetricFamily("mcred_housekeeping_last_ok", "1 when the last run of each housekeeping task "
                               "succeeded", labels=["task"])
        seconds = GaugeMetricFamily("mcred_housekeeping_last_duration_seconds", "How long the last run of each "
                                    "housekeeping task took", labels=["task"])
        names = [t.name for t in TASKS] + sorted(set(rows) - {t.name for t in TASKS})
        for name in names:
            row = rows.get(name)
            runs.add_metric([name], row.runs if row is not None else 0)
            failures.add_metric([name], row.failures if row is not None else 0)
            if row is None:
                continue
            started.add_metric([name], row.last_started_at.timestamp())
            if row.last_success_at is not None:
                succeeded.add_metric([name], row.last_success_at.timestamp())
            ok.add_metric([name], 1 if row.last_ok else 0)
            seconds.add_metric([name], row.last_seconds)
        yield from (runs, failures, started, succeeded, ok, seconds)


class Metrics:
    """This process's request metrics and (given a context) the registry collector, in one
    registry; the stand-alone reader (:mod:`mcred.reader_ops`) adds its own to it."""

    def __init__(self, ctx: Context | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("mcred_http_requests", "HTTP requests by method, route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.seconds = Histogram("mcred_http_request_seconds", "HTTP request duration by method and route",
                                 ["method", "route"], buckets=_BUCKETS, registry=self.registry)
        self.relayed = Counter("mcred_seram_relayed", "GP SERAM requests relayed between the service's "
                               "processes (tsm.seram_relay): forwarded by the process a phone reached, "
                               "answered by the one holding its session", ["side"], registry=self.registry)
        self._collectors: list = []  # read at scrape time, in this process (the registry's tables)
        if ctx is not None:
            for collector in (RegistryCollector(ctx), HousekeepingCollector(ctx)):
                self._collectors.append(collector)
                self.registry.register(collector)

    def install(self, app: FastAPI) -> None:
        """Count every HTTP request (a plain ASGI middleware: no per-request task or body
        buffering, unlike Starlette's BaseHTTPMiddleware)."""
        app.add_middleware(_RequestMetrics, metrics=self, router=app.router)

    def exposition(self) -> bytes:
        """This process's metrics; with ``PROMETHEUS_MULTIPROC_DIR``, every worker's summed."""
        path = os.environ.get(MULTIPROC_ENV)
        if not path or not os.path.isdir(path):
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)
        for collector in self._collectors:
            registry.register(collector)
        return generate_latest(registry)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_across_workers() -> Iterator[str]:
    """Around starting several workers: a fresh ``PROMETHEUS_MULTIPROC_DIR`` (removed after),
    or the one already set."""
    if os.environ.get(MULTIPROC_ENV):
        yield os.environ[MULTIPROC_ENV]
        return
    with tempfile.TemporaryDirectory(prefix="mcred-metrics-") as path:
        os.environ[MULTIPROC_ENV] = path
        try:
            yield path
        finally:
            os.environ.pop(MULTIPROC_ENV, None)


class _RequestMetrics:
    def __init__(self, app, *, metrics: Metrics, router) -> None:  # noqa: ANN001
        self.app, self.metrics, self.router = app, metrics, router

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_status(message) -> None:  # noqa: ANN001
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = _template(self.router, scope)
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
            self.metrics.seconds.labels(scope["method"], route).observe(time.perf_counter() - t0)


def _template(router, scope) -> str:  # noqa: ANN001
    """The route's path template, or ``unmatched`` (raw paths would make unbounded series).
    A route of a router included under a prefix (the issuer service's ``/reader``) keeps it:
    FastAPI hands over the route with its own path only (``/sessions/{sid}``), so the prefix
    is read back from the request's path, as the part before what the route matched."""
    route = scope.get("route")  # set by the router on the shared scope when it matched
    if route is not None and getattr(route, "path", None):
        return _prefix(route, scope.get("path", "")) + route.path
    for route in router.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL and getattr(route, "path", None):
            return route.path
    return "unmatched"


def _prefix(route, path: str) -> str:  # noqa: ANN001
    regex = getattr(route, "path_regex", None)
    if regex is None or regex.match(path):
        return ""
    i = path.find("/", 1)
    while i != -1:
        if regex.match(path[i:]):
            return path[:i]
        i = path.find("/", i + 1)
    return ""


def metrics_router(metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["operator"])

    @router.get("/metrics", summary="Prometheus metrics: requests of this process, the "
                "installation's registry", response_class=Response,
                responses={200: {"description": "the Prometheus text exposition format",
                                 "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def scrape() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
