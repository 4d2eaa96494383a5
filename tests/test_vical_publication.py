"""The issuer's trust bundle as a signed VICAL (ISO/IEC 18013-5 Annex C.1.7;
specs/issuer-keys.md, "The VICAL"): /trust/vical and `mcred export vical` carry every IACA
a reader needs (current, staged, older still vouching), each scoped to this issuer's
docType, signed by a VICAL signer (extKeyUsage 1.0.18013.5.1.8) under the VICAL CA that
/trust/vical-ca.pem gives; the reader's own VICAL import takes it, and a reader that
imported it verifies mdocs of a staged IACA once the rollover starts it."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from documented import check_every_answer
from fastapi.testclient import TestClient
from test_iaca_rollover import BASE, NOW, _issue, _present, _reader, world  # noqa: F401 - a fixture
from typer.testing import CliRunner

from issuer.api import mdoc as mdoc_api
from protocols import cbor, cose, iaca
from protocols.cose import Sign1
from protocols.mdoc import MdocEncodeError
from protocols.mdoc.vical import VicalEntry, sign_vical, vical_payload
from reader.trust import TrustError, TrustStore

DOCTYPE = "jp.mcred.mynumber.cardsub.1"


def _payload(data: bytes) -> dict:
    return cbor.loads(Sign1.decode(cbor.loads(data)).payload)


def test_the_vical_carries_the_bundle_scoped_to_the_doctype_and_a_reader_imports_it(world):  # noqa: F811
    svc, _sessions, clock, client = world
    r = client.get("/trust/vical")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/cose")
    assert r.headers["cache-control"] == "public, max-age=3600"
    cas = x509.load_pem_x509_certificates(client.get("/trust/vical-ca.pem").content)
    assert len(cas) == 1
    vical = _payload(r.content)
    assert vical["version"] == "1.0" and vical["vicalProvider"] == "mcred simulated issuing authority"
    assert vical["date"] == clock.now.replace(microsecond=0)
    assert vical["nextUpdate"] == vical["date"] + dt.timedelta(hours=24)
    assert vical["vicalIssueID"] == int(vical["date"].timestamp())
    (info,) = vical["certificateInfos"]
    first = svc.iaca_certificate()
    assert x509.load_der_x509_certificate(info["certificate"]) == first
    assert info["docType"] == [DOCTYPE] and info["issuingCountry"] == "JP"
    assert info["serialNumber"] == first.serial_number  # a biguint (tag 2) decodes to the integer
    assert info["ski"] == first.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert info["subject"] == first.subject.public_bytes() and info["notAfter"] == first.not_valid_after_utc
    # the signer: under the VICAL CA, Annex C.1.7.2's extKeyUsage
    signer = x509.load_der_x509_certificate(Sign1.decode(cbor.loads(r.content)).x5chain[0])
    signer.verify_directly_issued_by(cas[0])
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [iaca.EKU_MDL_VICAL_SIGNER]
    assert "mcred VICAL signer 1" in signer.subject.rfc4514_string()
    assert client.get("/trust/vical").content == r.content  # the same VICAL again while nothing changed

    # staged: the next IACA joins the VICAL at once, a new VICAL (a later issue ID)
    clock.now = NOW + dt.timedelta(days=1)
    staged = svc.stage_iaca()
    later = _payload(client.get("/trust/vical").content)
    assert later["vicalIssueID"] > vical["vicalIssueID"]
    assert [x509.load_der_x509_certificate(i["certificate"]) for i in later["certificateInfos"]] == [
        first, staged.certificate]

    # a reader that imported this VICAL (and nothing else) verifies the first mdocs of the
    # staged IACA once the rollover starts it
    store = TrustStore()
    done = store.import_vical(client.get("/trust/vical").content, vical_anchors=cas, now=clock.now)
    assert (done.imported, done.skipped, done.provider) == (2, (), "mcred simulated issuing authority")
    assert {a.doc_types for a in store.anchors} == {frozenset({DOCTYPE})}
    clock.now = NOW + dt.timedelta(days=20)
    svc.rollover()
    key, signed = _issue(svc, "phone-1", "job-1")
    reader = _reader(client, clock, store.certificates, [])
    data, st = _present(signed, key)
    result = reader.verify(data, session_transcript=st)
    assert result.valid, [c for c in result.checks if not c.passed]


def test_a_vical_from_another_anchor_or_a_signer_without_the_vical_usage_is_refused(world):  # noqa: F811
    svc, _sessions, clock, client = world
    data = client.get("/trust/vical").content
    with pytest.raises(TrustError, match="VICAL refused"):  # the IACA is no VICAL anchor
        TrustStore().import_vical(data, vical_anchors=[svc.iaca_certificate()], now=clock.now)
    # the same payload signed by the document signer, which chains to the IACA: refused for its use
    ds = svc.document_signer()
    forged = sign_vical(Sign1.decode(cbor.loads(data)).payload, ds.signer, [ds.der])
    with pytest.raises(TrustError, match="lacks the VICAL signer's 1.0.18013.5.1.8"):
        TrustStore().import_vical(forged, vical_anchors=[svc.iaca_certificate()], now=clock.now)


def test_vical_payload_refuses_what_the_cddl_does_not_allow():
    key = ec.generate_private_key(ec.SECP256R1())
    root = iaca.sign(iaca.iaca_builder(key.public_key(), common_name="t", not_before=NOW,
                                       not_after=NOW + dt.timedelta(days=30), issuer_alt_name_uri="http://x/i",
                                       crl_uri="http://x/c"), key)
    entry = VicalEntry(root, (DOCTYPE,))
    assert _payload(sign_vical(vical_payload("p", NOW, [entry]), cose.key_signer(key),
                               [root.public_bytes(iaca_der())]))["certificateInfos"][0]["docType"] == [DOCTYPE]
    for bad, kw in ((("",), {}), ((DOCTYPE,), {"issue_id": -1}), ((DOCTYPE,), {"next_update": NOW}),
                    ((DOCTYPE,), {"issue_id": True})):
        with pytest.raises(MdocEncodeError):
            vical_payload("p", NOW, [VicalEntry(root, bad)], **kw)
    with pytest.raises(MdocEncodeError, match="aware"):
        vical_payload("p", NOW.replace(tzinfo=None), [entry])
    with pytest.raises(MdocEncodeError, match="vicalProvider"):
        vical_payload("", NOW, [entry])
    with pytest.raises(MdocEncodeError, match="chain is empty"):
        sign_vical(b"\xa0", cose.key_signer(key), [])


def iaca_der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def test_cli_export_vical_and_a_stand_alone_reader_takes_it(home, tmp_path):
    """`mcred export vical --out F --ca CA.pem`, then the reader service's trust built from
    `--vical F --vical-trust CA.pem` (mcred reader serve) holds the IACA for our docType."""
    import json

    from cryptography.hazmat.primitives.serialization import Encoding

    from mcred.cli.main import app as cli
    from mcred.context import Context
    from mcred.mdoc_flow import mdoc_service
    from mcred.present_wiring import ReaderServeConfig

    out, ca = tmp_path / "vical.cbor", tmp_path / "vical-ca.pem"
    r = CliRunner().invoke(cli, ["export", "vical", "--out", str(out), "--ca", str(ca)])
    assert r.exit_code == 0, r.output
    assert "with 1 IACA(s)" in r.output and "1 VICAL CA(s) written" in r.output
    asked: list[str] = []

    def crl(url: str) -> bytes:  # the installation's VICAL CA CRL, where its signer's certificate says
        asked.append(url)
        return mdoc_service(Context.open()).vical_ca_crl().public_bytes(Encoding.DER)

    store = ReaderServeConfig(vical=str(out), vical_trust=(str(ca),)).parts(vical_crl_fetch=crl).pipeline.trust
    assert asked == [f"{Context.open().public_url}/trust/vical-ca.crl"]  # the signer was looked up
    assert [sorted(a.doc_types) for a in store.anchors] == [[DOCTYPE]]
    listed = json.loads(CliRunner().invoke(cli, ["mdoc", "iaca", "list", "--json"]).output)
    assert format(store.certificates[0].serial_number, "x") == listed[0]["serial"]


def test_the_trust_routes_are_documented(world):  # noqa: F811
    svc, _sessions, _clock, _client = world
    from fastapi import FastAPI

    from issuer.api import problems

    app = FastAPI()
    problems.install(app)
    for router in mdoc_api.routers(lambda: svc):
        app.include_router(router)
    client = TestClient(app)
    checked = check_every_answer(client, app)
    assert client.get("/trust/vical").status_code == 200
    assert client.get("/trust/vical-ca.pem").status_code == 200
    assert {"GET /trust/vical 200", "GET /trust/vical-ca.pem 200"} <= set(checked)
    assert BASE


def _issuer_app(svc):  # noqa: ANN001, ANN202
    from fastapi import FastAPI

    from issuer.api import problems

    app = FastAPI()
    problems.install(app)
    for router in mdoc_api.routers(lambda: svc):
        app.include_router(router)
    return app


@contextlib.contextmanager
def _served(app):  # noqa: ANN001, ANN202
    """``app`` served over HTTP on a free local port (a reader's ``--vical`` URL): its base URL."""
    import socket

    from test_present_http import Server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Server(app, port) as server:
        yield server.url


def _crl_fetch(client, asked: list[str] | None = None):  # noqa: ANN001, ANN202
    """The reader's fetch of the VICAL CA's CRL (the distribution point the VICAL signer's
    certificate names, under the issuer's public URL BASE), answered by the issuer's routes
    through ``client``; each URL asked is appended to ``asked``."""
    from reader.ds_crl import CrlFetchError

    def fetch(url: str) -> bytes:
        if asked is not None:
            asked.append(url)
        if not url.startswith(BASE + "/"):
            raise CrlFetchError(f"GET {url}: not this issuer")
        r = client.get(url.removeprefix(BASE))
        if r.status_code != 200:
            raise CrlFetchError(f"GET {url}: HTTP {r.status_code}")
        return r.content

    return fetch


def _following_reader(url: str, client, tmp_path, *, crl=None):  # noqa: ANN001, ANN202
    """`mcred reader serve --vical URL --vical-trust CA.pem`'s verifier, on a clock the test
    moves; ``crl`` fetches the VICAL CA's CRL (default: :func:`_crl_fetch` through ``client``)."""
    from test_reader_trust_reload import Ticks

    from mcred.present_wiring import ReaderServeConfig, ReloadingVerifier

    ca = tmp_path / "vical-ca.pem"
    ca.write_bytes(client.get("/trust/vical-ca.pem").content)
    service, _rp, what = ReaderServeConfig(vical=url, vical_trust=(str(ca),)).build(
        vical_crl_fetch=crl or _crl_fetch(client))
    verifier = service.verifier
    assert isinstance(verifier, ReloadingVerifier), what
    ticks = Ticks()
    verifier._monotonic, verifier._checked = ticks, 0.0
    return verifier, ticks, what


def test_a_stand_alone_reader_follows_the_issuers_vical_url(world, tmp_path):  # noqa: F811
    """`mcred reader serve --vical http://ISSUER/trust/vical --vical-trust CA.pem`: the reader
    fetches the VICAL at start and again every 30 s, and takes a staged IACA from it without a
    restart; an issuer that stops answering leaves the trust it had."""
    svc, _sessions, _clock, client = world
    with _served(_issuer_app(svc)) as url:
        verifier, ticks, what = _following_reader(f"{url}/trust/vical", client, tmp_path)
        assert "trusting 1 IACA(s)" in what
        assert verifier.trust().certificates == [svc.iaca_certificate()]
        staged = svc.stage_iaca()
        ticks.t = 31.0
        # the fetch runs in a thread of its own: this verification goes on with the trust it had
        assert verifier.trust().certificates == [svc.iaca_certificate()]
        verifier.refresher.join(10)
        assert verifier.trust().certificates == [svc.iaca_certificate(), staged.certificate]
        assert verifier.reloads == 1
    ticks.t = 62.0  # the issuer is gone: the reader keeps what it trusted
    assert len(verifier.trust().certificates) == 2
    verifier.refresher.join(15)
    assert len(verifier.trust().certificates) == 2 and verifier.reloads == 1


class _Published:
    """What a test's issuer answers at /trust/vical (bytes the test sets), and how often it was asked."""

    def __init__(self, body: bytes) -> None:
        self.body, self.asked = body, 0

    def app(self):  # noqa: ANN201
        from fastapi import FastAPI, Response

        app = FastAPI()

        @app.get("/trust/vical")
        def vical() -> Response:
            self.asked += 1
            return Response(self.body, media_type="application/cose")

        return app


def test_a_reader_following_the_vical_refuses_one_that_goes_back_and_fetches_once_a_reload(world, tmp_path):  # noqa: F811
    """A replayed VICAL, validly signed and before its nextUpdate, that still lists what the
    issuer has since changed, is refused by a reader that holds a later one (a lower
    vicalIssueID; the same issue ID with other content): the reader keeps the trust it had and
    :attr:`last_error` names both issue IDs; a later VICAL is taken again. Each look at the
    URL is one fetch, and the bytes fetched are the bytes imported (at start too)."""
    from issuer.mdoc.txn import run_transaction

    svc, _sessions, clock, client = world
    first_vical = client.get("/trust/vical").content
    first = svc.iaca_certificate()
    staged = svc.stage_iaca().certificate
    second_vical = client.get("/trust/vical").content
    id1, id2 = _payload(first_vical)["vicalIssueID"], _payload(second_vical)["vicalIssueID"]
    assert id1 < id2
    published = _Published(first_vical)
    with _served(published.app()) as url:
        verifier, ticks, _what = _following_reader(f"{url}/trust/vical", client, tmp_path)
        # the first VICAL is taken (nothing held), fetched once for building and watching
        assert published.asked == 1
        assert verifier.trust().certificates == [first] and verifier.vical.issue_id == id1

        def look(at: float, body: bytes) -> None:
            published.body, ticks.t = body, at
            verifier.trust()
            verifier.refresher.join(10)

        look(31.0, second_vical)  # a newer one: taken, from the one fetch that saw it change
        assert verifier.trust().certificates == [first, staged] and verifier.reloads == 1
        assert published.asked == 2 and verifier.vical.issue_id == id2 and verifier.last_error is None

        look(62.0, first_vical)  # replayed: refused, the trust stays
        assert verifier.trust().certificates == [first, staged] and verifier.reloads == 1
        assert f"vicalIssueID {id1} goes back from {id2}" in verifier.last_error
        assert published.asked == 3 and verifier.vical.issue_id == id2

        # the issue ID of the VICAL held, signed over other content (the staged IACA left out)
        signer, _ca = run_transaction(svc.sessions, lambda s: svc.pki.vical_signer(s, clock.now))
        payload = _payload(second_vical)
        payload["certificateInfos"] = payload["certificateInfos"][:1]
        other = sign_vical(cbor.dumps(payload), signer.signer, [signer.der])
        look(93.0, other)
        assert verifier.trust().certificates == [first, staged] and verifier.reloads == 1
        assert f"vicalIssueID {id2} is that of the VICAL held but its content differs" in verifier.last_error

        # the issuer's next VICAL (a later issue ID) is taken again
        third_vical = svc.vical(now=clock.now + dt.timedelta(hours=2))
        id3 = _payload(third_vical)["vicalIssueID"]
        assert id3 > id2
        look(124.0, third_vical)
        assert verifier.trust().certificates == [first, staged] and verifier.reloads == 2
        assert verifier.vical.issue_id == id3 and verifier.last_error is None
        assert published.asked == 5
        look(155.0, third_vical)  # unchanged: one fetch, no rebuild
        assert published.asked == 6 and verifier.reloads == 2


def test_every_process_serves_the_same_vical_and_its_issue_id_never_goes_back(world):  # noqa: F811
    """Two API processes on one database (``mcred serve --workers 2``) kept a VICAL each:
    signed a second apart, a reader asking one and then the other saw the issue ID go back,
    and a reader that refuses that (check_vical_succession) refused the issuer's own. The
    VICAL is kept in the database: every process serves the one signed, a new one (its
    IACAs changed, or it is an hour old) has a higher issue ID whichever process signs it, a
    restarted process goes on from it, and a reader following them takes each."""
    from issuer.mdoc.service import MdocService
    from reader.trust import check_vical_succession

    svc, sessions, clock, _client = world
    other = MdocService(sessions, svc.pki.keystore, BASE, clock=clock, status_policy=svc.registry.policy)
    first = svc.vical()
    clock.now = clock.now + dt.timedelta(seconds=30)
    assert other.vical() == first  # the other worker serves the one signed, not one of its own
    ids = [_payload(first)["vicalIssueID"]]
    svc.stage_iaca()  # the IACAs change: a new VICAL, signed by whichever process is asked first
    staged = other.vical()
    assert svc.vical() == staged and len(_payload(staged)["certificateInfos"]) == 2
    ids.append(_payload(staged)["vicalIssueID"])
    clock.now = clock.now + MdocService.VICAL_REUSE  # an hour on: signed again, by the other one
    again = svc.vical()
    assert again != staged and other.vical() == again
    ids.append(_payload(again)["vicalIssueID"])
    # a process on a host whose clock is a few seconds behind: the VICAL signed "later" by
    # the others is not served before its date, and its own still has a higher issue ID
    restarted = MdocService(sessions, svc.pki.keystore, BASE, clock=lambda: clock.now - dt.timedelta(seconds=5),
                            status_policy=svc.registry.policy)
    behind = restarted.vical()
    ids.append(_payload(behind)["vicalIssueID"])
    assert ids == sorted(set(ids)) and ids[-1] == ids[-2] + 1, ids
    cas = svc.vical_cas()
    held = None
    for data in (first, staged, again, behind):
        taken = TrustStore().import_vical(data, vical_anchors=cas, now=_payload(data)["date"], held=held)
        check_vical_succession(held, taken)
        held = taken


def test_a_reader_with_a_database_refuses_at_start_a_vical_older_than_one_a_reader_of_it_took(world, tmp_path, db_url):  # noqa: F811
    """`mcred reader serve --vical URL --db URL`: the last VICAL taken is kept in the reader's
    database (``reader_vicals``), so a restarted reader, or another worker on the database,
    refuses at start a replayed older VICAL (still before its nextUpdate, listing what the
    issuer has since changed) with a precise error, and takes a later one; a reader started
    before, on a reload, is refused what goes back from the row though not from its own
    memory; without ``--db`` the memory is the process's only, and a fresh reader takes the
    replayed one."""
    from mcred.present_wiring import ReaderServeConfig, ReaderServeError

    svc, _sessions, clock, client = world
    first_vical = client.get("/trust/vical").content
    svc.stage_iaca()
    second_vical = client.get("/trust/vical").content
    third_vical = svc.vical(now=clock.now + dt.timedelta(hours=2))
    id1, id2, id3 = (_payload(v)["vicalIssueID"] for v in (first_vical, second_vical, third_vical))
    assert id1 < id2 < id3
    ca = tmp_path / "vical-ca.pem"
    ca.write_bytes(client.get("/trust/vical-ca.pem").content)
    published = _Published(second_vical)
    with _served(published.app()) as url:
        config = ReaderServeConfig(vical=f"{url}/trust/vical", vical_trust=(str(ca),), db=db_url)
        crl = _crl_fetch(client)
        service, _rp, _what = config.build(vical_crl_fetch=crl)  # the first reader: N+1 taken, and kept in the database
        assert service.verifier.vical.issue_id == id2

        published.body = first_vical  # replayed to a freshly started reader (a restart, a new worker)
        with pytest.raises(ReaderServeError) as refused:
            config.build(vical_crl_fetch=crl)
        said = str(refused.value)
        assert f"vicalIssueID {id1} goes back from {id2}" in said and "--db" in said, said
        # without a database a fresh reader has nothing to go back from: memory only, as before
        alone, _rp, _what = dataclasses.replace(config, db=None).build(vical_crl_fetch=crl)
        assert alone.verifier.vical.issue_id == id1

        published.body = third_vical  # the issuer's next VICAL is taken, and moves the row on
        later, _rp, _what = config.build(vical_crl_fetch=crl)
        assert later.verifier.vical.issue_id == id3
        published.body = second_vical  # then N+1 goes back from what the database holds
        with pytest.raises(ReaderServeError, match=f"vicalIssueID {id2} goes back from {id3}"):
            config.build(vical_crl_fetch=crl)

        # a reader started before (it holds N+1) reloads: the issue ID of N+2 over other content
        # goes forward from its memory, not from the database's row, and is refused
        from test_reader_trust_reload import Ticks

        from issuer.mdoc.txn import run_transaction

        verifier, ticks = service.verifier, Ticks()
        verifier._monotonic, verifier._checked = ticks, 0.0
        signer, _ca = run_transaction(svc.sessions, lambda s: svc.pki.vical_signer(s, clock.now))
        payload = _payload(third_vical)
        payload["certificateInfos"] = payload["certificateInfos"][:1]
        published.body, ticks.t = sign_vical(cbor.dumps(payload), signer.signer, [signer.der]), 31.0
        verifier.trust()
        verifier.refresher.join(10)
        assert verifier.reloads == 0 and verifier.vical.issue_id == id2
        assert f"vicalIssueID {id3} is that of the VICAL held but its content differs" in verifier.last_error
        assert "--db" in verifier.last_error
        published.body, ticks.t = third_vical, 62.0  # N+2 itself: taken, the row as it was
        verifier.trust()
        verifier.refresher.join(10)
        assert verifier.reloads == 1 and verifier.vical.issue_id == id3 and verifier.last_error is None


def test_a_reader_without_a_database_keeps_the_last_vical_in_its_vical_memory_file(world, tmp_path):  # noqa: F811
    """`mcred reader serve --vical URL --vical-memory FILE` (no --db): the last VICAL taken
    is kept in that SQLite file, so a restarted reader refuses a replayed older VICAL as one
    with a database does; without it the start line says the memory is this process's only.
    --vical-memory with --db, or without --vical, is refused naming both."""
    from mcred.present_wiring import ReaderServeConfig, ReaderServeError

    svc, _sessions, clock, client = world
    first_vical = client.get("/trust/vical").content
    svc.stage_iaca()
    second_vical = client.get("/trust/vical").content
    id1, id2 = (_payload(v)["vicalIssueID"] for v in (first_vical, second_vical))
    ca = tmp_path / "vical-ca.pem"
    ca.write_bytes(client.get("/trust/vical-ca.pem").content)
    memory = tmp_path / "vical-memory.sqlite3"
    published = _Published(second_vical)
    with _served(published.app()) as url:
        config = ReaderServeConfig(vical=f"{url}/trust/vical", vical_trust=(str(ca),), vical_memory=str(memory))
        crl = _crl_fetch(client)
        service, _rp, what = config.build(vical_crl_fetch=crl)
        assert service.verifier.vical.issue_id == id2
        assert f"the last VICAL taken kept in {memory}" in what
        assert memory.stat().st_mode & 0o777 == 0o600

        published.body = first_vical  # replayed to the reader restarted
        with pytest.raises(ReaderServeError) as refused:
            config.build(vical_crl_fetch=crl)
        said = str(refused.value)
        assert f"vicalIssueID {id1} goes back from {id2}" in said and f"--vical-memory {memory}" in said, said
        alone, _rp, what = dataclasses.replace(config, vical_memory=None).build(vical_crl_fetch=crl)
        assert alone.verifier.vical.issue_id == id1  # the process's memory only, as the line says
        assert "kept in this process only" in what and "--vical-memory FILE" in what

        with pytest.raises(ReaderServeError, match="with --db it is kept in that database"):
            dataclasses.replace(config, db=f"sqlite:///{tmp_path / 'r.db'}").build(vical_crl_fetch=crl)
        with pytest.raises(ReaderServeError, match="give --vical"):
            dataclasses.replace(config, vical=None, trust=(str(ca),)).build(vical_crl_fetch=crl)
        with pytest.raises(ReaderServeError, match=f"--vical-memory {tmp_path}"):
            dataclasses.replace(config, vical_memory=str(tmp_path)).build(vical_crl_fetch=crl)  # a directory
