"""Operating the stand-alone reader (``mcred reader serve``): what the load balancer and the
monitoring in front of a reader fleet ask of it.

* ``GET /healthz``: the process answers (nothing else touched): ``200 {"status": "ok"}``.
* ``GET /readyz``: the reader can give verdicts: ``trust``, at least one IACA inside its
  validity now, or JPKI roots for the relying party (a reader whose every IACA expired
  would refuse every mdoc); ``sessions``, with ``--db``, the database answers and the
  reader's Alembic branch is at its head. ``200`` with each check, or ``503``
  ``application/problem+json`` naming those that failed.
* ``GET /metrics``: Prometheus text: the HTTP requests by route template and status (as the
  issuer service counts them, :mod:`mcred.metrics`), and the verdicts:
  ``mcred_reader_verdicts_total{valid}``, ``mcred_reader_presentations_total{mode, valid}``
  (mode ``proximity``, ``nfc``, ``org-iso-mdoc``, ``openid4vp``), ``mcred_reader_failed_checks_total{check, code}`` (a
  check's name and its code from the closed vocabulary :data:`protocols.mdoc.verify.CHECK_CODES`, never its
  reason: the series stay few and carry no holder data) and
  ``mcred_reader_verification_seconds`` (decryption and verification of the wallet's
  SessionData). With ``--workers N`` every worker's counts, summed (``prometheus_client``'s
  multiprocess mode, :mod:`mcred.metrics`).

All three are public, like the reader's session routes: they name components, check names
and exception types, never a holder's data, a URL's credentials or a key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram
from sqlalchemy import text

from mcred.api_models import Liveness, Readiness
from mcred.health import readiness
from mcred.metrics import Metrics
from protocols.mdoc import dcapi, nfc, oid4vp, oid4vp_redirect
from reader.http import ReaderService
from reader.relying_party import RelyingPartyService
from reader.session import ReaderOutcome
from reader.sessions import SqlSessionStore
from reader.trust import TrustStore

_VERIFY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 10.0)


class ReaderMetrics(Metrics):
    """The request metrics of :class:`mcred.metrics.Metrics` and the reader's verdicts."""

    def __init__(self) -> None:
        super().__init__()
        self.verdicts = Counter("mcred_reader_verdicts", "mdoc verdicts by validity", ["valid"],
                                registry=self.registry)
        self.failed_checks = Counter("mcred_reader_failed_checks", "failed checks of mdoc verdicts, by check name "
                                     "and code (specs/presentation.md 4, Codes)", ["check", "code"],
                                     registry=self.registry)
        self.presentations = Counter("mcred_reader_presentations", "verdicts by the way the mdoc was presented: "
                                     "proximity (ISO/IEC 18013-5), org-iso-mdoc (18013-7 Annex C), openid4vp",
                                     ["mode", "valid"], registry=self.registry)
        self.verification = Histogram("mcred_reader_verification_seconds",
                                      "decryption and verification of the wallet's SessionData",
                                      buckets=_VERIFY_BUCKETS, registry=self.registry)

    def observe(self, outcome: ReaderOutcome, seconds: float) -> None:
        """:attr:`reader.http.ReaderService.on_outcome`."""
        result = outcome.result
        self.verdicts.labels("true" if result.valid else "false").inc()
        self.presentations.labels(presentation_mode(outcome), "true" if result.valid else "false").inc()
        for check in result.checks:
            if not check.passed:
                self.failed_checks.labels(check.name, check.code).inc()
        self.verification.observe(seconds)


def presentation_mode(outcome: ReaderOutcome) -> str:
    """``proximity`` (QR code), ``nfc`` (a tap), ``org-iso-mdoc``, ``openid4vp`` or
    ``openid4vp-cross-device``, told by
    the session's transcript; ``unknown`` for a session that ended before it had one."""
    transcript = outcome.session_transcript
    if transcript is None:
        return "unknown"
    if dcapi.is_dcapi_transcript(transcript):
        return "org-iso-mdoc"
    if oid4vp.is_oid4vp_transcript(transcript):
        return "openid4vp"
    if oid4vp_redirect.is_redirect_transcript(transcript):
        return "openid4vp-cross-device"
    if nfc.is_nfc_transcript(transcript):
        return "nfc"
    return "proximity"


def check_trust(store: TrustStore, rp: RelyingPartyService | None, now: dt.datetime) -> str:
    """How many IACAs are valid now (raises when there are IACAs and none is), and the
    relying party's roots."""
    total = len(store)
    valid = [a.certificate for a in store.anchors
             if a.certificate.not_valid_before_utc <= now <= a.certificate.not_valid_after_utc]
    if total and not valid:
        raise RuntimeError(f"none of the {total} IACA(s) is inside its validity now")
    parts = []
    if total:
        soonest = min(c.not_valid_after_utc for c in valid)
        parts.append(f"{len(valid)} of {total} IACA(s) valid now, the first to expire on {soonest.date()}")
    if rp is not None:
        parts.append(f"JPKI relying party: {len(rp.roots())} root(s)")
    return "; ".join(parts)


def check_sessions(store: SqlSessionStore) -> str:
    """The sessions' database answers and the reader's branch is at its head."""
    from mcred.db import branch_status

    with store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    applied, head = branch_status(store.engine, "reader")
    if head not in applied:
        raise RuntimeError(f"reader schema not at its head {head}")
    return f"{store.engine.dialect.name}, reader schema at {head}"


def ops_router(service: ReaderService, rp: RelyingPartyService | None,
               trust: TrustStore | Callable[[], TrustStore] | None,
               metrics: ReaderMetrics, clock: Callable[[], dt.datetime] | None = None) -> APIRouter:
    """``trust``: the store the verifier trusts, or a callable giving it as it is now (trust
    files reloaded: :class:`mcred.present_wiring.ReloadingVerifier`); None: a verifier of
    another kind, no check."""
    router = APIRouter(tags=["operations"])
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    checks: dict[str, Callable[[], str]] = {}
    if trust is not None:
        checks["trust"] = lambda: check_trust(trust if isinstance(trust, TrustStore) else trust(), rp, now())
    if isinstance(service.store, SqlSessionStore):
        store = service.store
        checks["sessions"] = lambda: check_sessions(store)

    @router.get("/healthz", summary="Liveness: the process answers", response_model=Liveness)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: a valid trust anchor, the sessions' database",
                response_model=Any, responses={200: {"model": Readiness}, 503: {
                    "description": "/problems/not-ready: a dependency is not ready (checks: each, failed or not)"}})
    def readyz() -> JSONResponse:
        return readiness(checks, "Reader not ready")

    @router.get("/metrics", summary="Prometheus metrics of this process: requests, verdicts",
                response_class=Response,
                responses={200: {"description": "the Prometheus text exposition format",
                                 "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def scrape() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


def install(app: FastAPI, service: ReaderService, rp: RelyingPartyService | None,
            trust: TrustStore | Callable[[], TrustStore] | None,
            clock: Callable[[], dt.datetime] | None = None) -> ReaderMetrics:
    """Add ``/healthz``, ``/readyz`` (answering HEAD as well, for a probe that asks so) and
    ``/metrics`` to the reader's app and count its requests and verdicts."""
    from mcred.service import answer_head

    metrics = ReaderMetrics()
    metrics.install(app)
    service.on_outcome = metrics.observe
    app.include_router(answer_head(ops_router(service, rp, trust, metrics, clock), paths={"/healthz", "/readyz"}))
    return metrics
