"""Every check of an mdoc verdict carries a ``code`` from one closed vocabulary
(protocols.mdoc.verify.CHECK_CODES; specs/presentation.md 4, "Codes"), so that a counter's or
a web shop's integration tells a revoked credential from a status list to ask again later, a
forged element from a cloned phone, without reading the reason. Each code is pinned on a real
presentation (the kit's phones, PKI and status publisher, tests/test_present_kit.py; the
hostile phone's faults, wallet_sim.faults), the same over the reader's HTTP routes (held to
its OpenAPI document, enum included) as in-process, counted by the failed-checks metric."""

from __future__ import annotations

import ast
import collections
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_present_kit import DOCTYPE, NS, T0, Clock, Pki, StatusPublisher, kit_world

import wallet_sim
from mcred.present import present_online_in_process, reader_app, reader_pipeline
from protocols.mdoc import (
    CHECK_CODES,
    Check,
    SessionData,
    SessionEncryption,
    SessionEstablishment,
    SessionTranscript,
)
from protocols.status import Status
from reader.ds_crl import CrlFetchError, DsCrlCheck
from reader.http import ReaderService
from reader.online import Oid4vpReaderSession
from reader.session import ReaderSession, RequestSpec
from wallet_sim.consent import RulesConsent
from wallet_sim.faults import FAULTS, fault
from wallet_sim.wallet import Wallet

ROOT = Path(__file__).parent.parent
REQUEST = RequestSpec(DOCTYPE, {NS: {"family_name": False, "birth_date": False}})
ORIGIN = "https://shop.example"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return kit_world(tmp_path_factory)


def _iaca_crl(pki: Pki, now: dt.datetime, revoked: tuple[int, ...] = ()) -> bytes:
    """The kit IACA's CRL, current at ``now``, listing ``revoked``."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(pki.iaca.subject)
               .last_update(now - dt.timedelta(hours=1)).next_update(now + dt.timedelta(days=1)))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - dt.timedelta(hours=1))
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build())
    return builder.sign(pki.iaca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _unreachable(url: str) -> bytes:
    raise CrlFetchError(f"GET {url}: connection refused (test)")


def _forged_reply(payload: bytes):
    """A phone answering ``payload`` (no DeviceResponse) under this session's keys."""

    def reply(session, establishment: bytes, _reply: bytes) -> bytes:
        est = SessionEstablishment.decode(establishment)
        transcript = SessionTranscript.build(session.engagement.bytes, est.e_reader_key_bytes, None)
        crypto = SessionEncryption.for_mdoc(session.engagement.e_device_private_key, est.e_reader_key, transcript)
        return SessionData(data=crypto.encrypt(payload)).encode()

    return reply


@dataclass(frozen=True)
class Case:
    """A presentation: the phone (``fault``, ``consent``), the reader's clock (``at``) and
    status list (``statuses``, ``down``), ``ds_crl`` (``"good"``, ``"revoked"``,
    ``"unreachable"``), and what goes back to the reader instead of the wallet's answer
    (``reply(wallet_session, establishment, wallet_reply)``); the check that must carry ``code``."""

    id: str
    check: str
    code: str
    fault: str | None = None
    consent: dict = field(default_factory=lambda: {"*": {"*": "*"}})
    at: dt.timedelta = dt.timedelta(minutes=1)  # after T0, when the MSOs were signed
    statuses: dict = field(default_factory=dict)
    down: bool = False
    ds_crl: str | None = None
    reply: Callable | None = None
    genuine_first: bool = False  # present once genuinely before (replay)

    def make(self, world) -> tuple[Wallet, object]:
        pki = world["pki"]
        clock = Clock(T0 + self.at)
        publisher = StatusPublisher(pki, clock)
        publisher.statuses.update(self.statuses)
        publisher.down = self.down
        ds = None
        if self.ds_crl is not None:
            crl = _iaca_crl(pki, clock(), (pki.ds.serial_number,) if self.ds_crl == "revoked" else ())
            ds = DsCrlCheck(_unreachable if self.ds_crl == "unreachable" else lambda url: crl)
        pipeline = reader_pipeline(trust=pki.trust(), clock=clock, fetcher=publisher, ds_crl=ds or False)
        se = wallet_sim.open_secure_element(world["phone"], world["home"])
        wallet = Wallet(se.transmit, RulesConsent(self.consent), clock=Clock(), fault=fault(self.fault))
        if self.genuine_first:
            assert _run(wallet, ReaderSession([REQUEST], pipeline), None)["valid"]
        return wallet, pipeline


#: One case per code (and one per fault), each from a real presentation.
CASES = [
    Case("honest", "device_authentication", "ok"),
    Case("application-specific-status", "revocation_status", "failed", statuses={0: 3}),
    Case("checks-after-a-failed-issuer-signature", "value_digests", "not_checked", fault="issuer-signature"),
    Case("session-data-garbage", "session", "session_failed", reply=lambda s, e, r: b"\xa0"),
    Case("wallet-error-status", "session", "session_failed", reply=lambda s, e, r: SessionData(status=10).encode()),
    Case("nothing-released", "response_status", "declined", consent={}),
    Case("holder-ended-the-session", "session", "holder_ended", reply=lambda s, e, r: s.terminate()),
    Case("no-device-response", "response_status", "malformed", reply=_forged_reply(b"\xa0")),
    Case("expired", "validity", "expired", at=dt.timedelta(days=31)),
    Case("not-yet-valid", "validity", "not_yet_valid", at=-dt.timedelta(hours=1)),
    Case("revoked", "revocation_status", "revoked", statuses={0: Status.INVALID}),
    Case("suspended", "revocation_status", "suspended", statuses={0: Status.SUSPENDED}),
    Case("status-list-unreachable", "revocation_status", "unavailable", down=True),
    Case("status-list-unreachable-signature", "status_list_signature", "unavailable", down=True),
    Case("ds-revoked", "ds_revocation", "ds_revoked", ds_crl="revoked"),
    Case("ds-not-revoked", "ds_revocation", "ok", ds_crl="good"),
    Case("iaca-crl-unreachable", "ds_revocation", "unavailable", ds_crl="unreachable"),
    # the hostile phone: each fault by the check it names (wallet_sim.faults.FAULTS)
    Case("fault-item-digest", "value_digests", "tampered", fault="item-digest"),
    Case("fault-doc-type", "doc_type", "tampered", fault="doc-type"),
    Case("fault-issuer-signature", "issuer_signature", "tampered", fault="issuer-signature"),
    Case("fault-untrusted-issuer", "issuer_certificate_chain", "untrusted_issuer", fault="untrusted-issuer"),
    Case("fault-device-signature", "device_authentication", "device_auth_failed", fault="device-signature"),
    Case("fault-replay", "device_authentication", "device_auth_failed", fault="replay", genuine_first=True),
    Case("fault-unrequested", "matches_request", "not_requested", fault="unrequested"),
]

#: What each hostile-phone fault must fail, by check and code (specs/presentation.md 4, 15).
FAULT_CODES = {"item-digest": "tampered", "doc-type": "tampered", "issuer-signature": "tampered",
               "untrusted-issuer": "untrusted_issuer", "device-signature": "device_auth_failed",
               "replay": "device_auth_failed", "unrequested": "not_requested"}


def _run(wallet: Wallet, reader: ReaderSession, reply: Callable | None) -> dict:
    session = wallet.start()
    establishment = reader.start(session.engagement.bytes)
    answer = session.receive(establishment) or b""
    if reply is not None:
        answer = reply(session, establishment, answer)
    return reader.receive(answer).result.to_json()


def _codes(verdict: dict) -> list[tuple[str, bool, str]]:
    return [(c["name"], c["passed"], c["code"]) for c in verdict["checks"]]


def _code_of(verdict: dict, name: str) -> str:
    named = [c for c in verdict["checks"] if c["name"] == name]
    assert named, (name, _codes(verdict))
    return next((c for c in named if not c["passed"]), named[0])["code"]


def test_every_code_and_every_fault_has_a_case():
    """A case for each code, and for each fault with the check and code it names (as
    ``mcred wallet faults --json`` and specs/presentation.md 15 list them)."""
    import json

    from typer.testing import CliRunner

    from mcred.cli.main import app as cli

    assert {c.code for c in CASES} == set(CHECK_CODES)
    assert FAULT_CODES.keys() == FAULTS.keys()
    for name, code in FAULT_CODES.items():
        (case,) = [c for c in CASES if c.fault == name and c.id == f"fault-{name}"]
        assert (case.check, case.code) == (FAULTS[name].refused_by, code) == (FAULTS[name].refused_by, FAULTS[name].code)
    out = CliRunner().invoke(cli, ["wallet", "faults", "--json"])
    assert out.exit_code == 0, out.output
    assert {f["fault"]: (f["refused_by"], f["code"]) for f in json.loads(out.output)} == {
        n: (f.refused_by, FAULT_CODES[n]) for n, f in FAULTS.items()}
    spec = (ROOT / "specs" / "presentation.md").read_text()
    table = spec[spec.index("| fault | what the phone does |"):spec.index("Where it is given:")]
    rows = [[cell.strip().strip("`") for cell in line.split("|")[1:-1]] for line in table.splitlines()
            if line.startswith("| `")]
    assert {r[0]: (r[2], r[3]) for r in rows} == {n: (f.refused_by, FAULT_CODES[n]) for n, f in FAULTS.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_case_fails_its_check_with_its_code(world, case):
    """In-process (the reader session and pipeline ``mcred present`` runs): the named
    check's code; a passed check is ``ok`` and a failed one never is."""
    wallet, pipeline = case.make(world)
    verdict = _run(wallet, ReaderSession([REQUEST], pipeline), case.reply)
    assert _code_of(verdict, case.check) == case.code, _codes(verdict)
    assert verdict["valid"] is (case.code == "ok")
    assert all((code == "ok") is passed for _, passed, code in _codes(verdict)), _codes(verdict)
    assert {code for *_, code in _codes(verdict)} <= set(CHECK_CODES)


def _metric_samples(client: TestClient) -> dict[tuple, float]:
    text = client.get("/metrics").text
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "mcred_reader_failed_checks_total"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_codes_over_http_are_the_in_process_ones(world, case):
    """``GET /sessions/{sid}/result`` of the reader service answers the same checks and codes
    as the in-process session, in a verdict its OpenAPI document declares (the enum
    included); ``mcred_reader_failed_checks_total{check, code}`` counts each failed check."""
    from documented import assert_documented

    wallet, pipeline = case.make(world)
    local = _run(wallet, ReaderSession([REQUEST], pipeline), case.reply)
    wallet, pipeline = case.make(world)
    app = reader_app(ReaderService(pipeline, [REQUEST]))
    client = TestClient(app)
    session = wallet.start()
    r = client.post("/sessions", content=session.engagement.uri.encode())
    sid = r.headers["x-session-id"]
    answer = session.receive(r.content) or b""
    if case.reply is not None:
        answer = case.reply(session, r.content, answer)
    assert client.post(f"/sessions/{sid}", content=answer).status_code == 200
    r = client.get(f"/sessions/{sid}/result")
    assert r.status_code == 200, r.text
    assert_documented(app, "GET", "/sessions/{sid}/result", r)
    assert _codes(r.json()) == _codes(local)
    assert _code_of(r.json(), case.check) == case.code
    failed = collections.Counter((n, code) for n, passed, code in _codes(local) if not passed)
    assert _metric_samples(client) == {(("check", n), ("code", code)): float(k) for (n, code), k in failed.items()}


def _without_codes(verdict: dict) -> bytes:
    """``verdict`` as a worker of the version before check codes kept it: no ``code``."""
    import json

    bare = {**verdict, "checks": [{k: v for k, v in c.items() if k != "code"} for c in verdict["checks"]]}
    return json.dumps(bare, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_verdict_kept_without_codes_gets_this_versions_codes_on_read(world, case):
    """Rolling upgrade: a verdict a worker of the previous version kept (no ``code``) is read
    back with the code each check has now, derived from its name and reason; one with
    codes is answered byte for byte as kept."""
    import json

    from reader.http import verdict_json
    from reader.legacy_verdicts import with_codes

    wallet, pipeline = case.make(world)
    reader = ReaderSession([REQUEST], pipeline)
    session = wallet.start()
    establishment = reader.start(session.engagement.bytes)
    answer = session.receive(establishment) or b""
    if case.reply is not None:
        answer = case.reply(session, establishment, answer)
    kept = verdict_json(reader.receive(answer))
    assert with_codes(kept) is kept
    assert json.loads(with_codes(_without_codes(json.loads(kept)))) == json.loads(kept)


def test_the_result_route_answers_a_verdict_kept_without_codes_with_them(world, tmp_path):
    """The sessions table of several workers (``--db``; the issuer's ``/reader``): a verdict
    kept by a worker of the version before codes, read by one of this version, answers the
    codes the OpenAPI document requires (it answered none, against its own document)."""
    from documented import check_every_answer
    from sqlalchemy import update

    from mcred.db import make_engine, migrate
    from reader.sessions import ReaderSessionRow

    engine = make_engine(f"sqlite:///{tmp_path / 'reader.sqlite3'}")
    migrate(engine, "reader@head")
    try:
        wallet, pipeline = next(c for c in CASES if c.id == "revoked").make(world)
        app = reader_app(ReaderService(pipeline, [REQUEST], engine=engine))
        client = TestClient(app)
        check_every_answer(client, app)
        session = wallet.start()
        r = client.post("/sessions", content=session.engagement.uri.encode())
        sid = r.headers["x-session-id"]
        assert client.post(f"/sessions/{sid}", content=session.receive(r.content)).status_code == 200
        now = client.get(f"/sessions/{sid}/result").json()
        assert _code_of(now, "revocation_status") == "revoked" and len(now["checks"]) > 10
        t = ReaderSessionRow.__table__
        with engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == sid).values(verdict=_without_codes(now)))
        r = client.get(f"/sessions/{sid}/result")  # held to the document: code required
        assert r.json() == now
    finally:
        engine.dispose()


def test_an_online_refusal_is_declined_in_process_and_over_http(world):
    """OpenID4VP: a holder who releases nothing answers ``access_denied``: the ``session``
    check's code is ``declined``, from the page's POST as from the in-process session."""
    from documented import assert_documented

    def phone() -> Wallet:
        se = wallet_sim.open_secure_element(world["phone"], world["home"])
        return Wallet(se.transmit, RulesConsent({}), clock=Clock())

    pipeline = reader_pipeline(trust=world["pki"].trust(), clock=Clock(), fetcher=StatusPublisher(world["pki"], Clock()))
    local = present_online_in_process(phone(), Oid4vpReaderSession([REQUEST], pipeline, ORIGIN)).result
    assert _codes(local) == [("session", False, "declined")], local
    app = reader_app(ReaderService(pipeline, [REQUEST], origin=ORIGIN, public_url="http://localhost"))
    client = TestClient(app, base_url="http://localhost")
    opened = client.post("/online/sessions", params={"protocol": "openid4vp-v1-unsigned"}).json()
    r = client.post(f"/online/sessions/{opened['session']}", json=phone().online(ORIGIN).respond(opened["request"]))
    assert r.status_code == 200 and _codes(r.json()) == _codes(local), r.text
    assert_documented(app, "POST", "/online/sessions/{sid}", r)


def test_the_documented_enum_is_the_vocabulary():
    """One source: the reader's OpenAPI document declares each mdoc check's ``code`` as
    CHECK_CODES (required), and specs/presentation.md 4 has a row for each code."""
    from reader.trust import TrustStore

    app = reader_app(ReaderService(reader_pipeline(trust=TrustStore()), []))
    schemas = app.openapi()["components"]["schemas"]
    assert schemas["MdocCheck"]["properties"]["code"]["enum"] == list(CHECK_CODES)
    assert "code" in schemas["MdocCheck"]["required"]
    assert schemas["MdocVerdict"]["properties"]["checks"]["items"] == {"$ref": "#/components/schemas/MdocCheck"}
    spec = (ROOT / "specs" / "presentation.md").read_text()
    table = spec[spec.index("**Codes.**"):spec.index("### Status list cache")]
    documented = [line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")]
    assert documented == list(CHECK_CODES)


def test_a_code_outside_the_vocabulary_is_refused():
    assert Check("x", True, "r", code="revoked").code == "ok"  # a passed check is ok, whatever it would fail as
    assert Check("x", False, "r").code == "failed"
    for bad in ("ok", "Revoked", "gone"):
        with pytest.raises(ValueError, match="CHECK_CODES"):
            Check("x", False, "r", code=bad)
        with pytest.raises(ValueError, match="CHECK_CODES"):
            Check._of("x", False, "r", bad)
    assert Check._of("x", True, "r", "expired").code == "ok"


def _mdoc_check_modules() -> list[Path]:
    """The modules that build the mdoc verdict's checks: those that import its Check."""
    out = []
    for path in sorted([*ROOT.glob("protocols/mdoc/*.py"), *ROOT.glob("reader/*.py"), *ROOT.glob("mcred/**/*.py")]):
        tree = ast.parse(path.read_text())
        own = path.name == "verify.py" and path.parent.name == "mdoc"
        if own or any(isinstance(n, ast.ImportFrom) and n.module in ("protocols.mdoc", "protocols.mdoc.verify")
                      and any(a.name == "Check" for a in n.names) for n in ast.walk(tree)):
            out.append(path)
    return out


def test_no_failing_check_is_built_without_its_code():
    """A check that may fail names its code (``failed`` would hide a revoked credential or a
    status list to ask again later): every ``Check(...)``, ``Check._of(...)`` and the
    verifier's ``add(...)`` whose ``passed`` is not the constant True gives ``code``, and
    every code written is one of CHECK_CODES."""
    modules = _mdoc_check_modules()
    assert {p.name for p in modules} >= {"verify.py", "pipeline.py", "ds_crl.py", "session.py", "online.py",
                                          "http.py", "present_saved.py"}
    missing, written = [], set()
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            kind = (f.id if isinstance(f, ast.Name) else
                    f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None)
            if kind not in ("Check", "Check._of", "add") or len(node.args) < 2:
                continue
            if kind == "add" and path.name != "verify.py":
                continue
            code = next((k.value for k in node.keywords if k.arg == "code"), node.args[3] if len(node.args) > 3 else None)
            if code is None and not (isinstance(node.args[1], ast.Constant) and node.args[1].value is True):
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            for sub in ast.walk(code) if code is not None else ():
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    written.add(sub.value)
    assert not missing, missing
    assert written <= set(CHECK_CODES), written - set(CHECK_CODES)
