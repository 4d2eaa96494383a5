"""A VICAL signer revoked (specs/issuer-keys.md, "The VICAL", "A VICAL signer revoked"): a
VICAL signer's key in other hands could sign a VICAL of any IACA, which every reader following
the VICAL would trust. The operator revokes it (``mcred mdoc vical-signer revoke``, POST
/trust/vical-signer-revocations): it signs nothing more, the VICAL is re-signed at once by a
new signer generation (its issue ID still growing), and the VICAL CA's CRL
(/trust/vical-ca.crl, the distribution point every VICAL signer certificate names) lists it.
A reader importing a VICAL looks its signer up on that CRL (reader/vical_crl.py) and refuses
one the revoked key signs; the stand-alone reader following the VICAL keeps the trust it had
and says why, and fails closed when the CRL cannot be had. Both database backends."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import shutil
import subprocess

import pytest
from api_helpers import bearer
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from documented import check_every_answer
from fastapi.testclient import TestClient
from mdoc_world import mdoc_world
from test_iaca_rollover import BASE, NOW, world  # noqa: F401 - a fixture
from test_vical_publication import (
    _crl_fetch,
    _following_reader,
    _issuer_app,
    _payload,
    _Published,
    _served,
)
from typer.testing import CliRunner

from issuer.db import AuditEvent
from issuer.keystore import CoseSignerAdapter
from issuer.mdoc.errors import SignerRevocationError, UnknownSigner
from protocols import cbor, iaca
from protocols.cose import Sign1, key_signer
from protocols.mdoc.vical import VicalEntry, sign_vical, vical_payload
from reader.ds_crl import CrlFetchError
from reader.trust import TrustError, TrustStore
from reader.vical_crl import VicalSignerCheck

DOCTYPE = "jp.mcred.mynumber.cardsub.1"


def _signer_of(vical: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(Sign1.decode(cbor.loads(vical)).x5chain[0])


def _crl_url(cert: x509.Certificate) -> str:
    (dp,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return dp.full_name[0].value


def _crl(client, path: str = "/trust/vical-ca.crl") -> x509.CertificateRevocationList:  # noqa: ANN001
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl", (r.status_code, r.text)
    return x509.load_der_x509_crl(r.content)


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _reason(entry: x509.RevokedCertificate) -> str:
    return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value


def _attacker_iaca() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return iaca.sign(iaca.iaca_builder(key.public_key(), common_name="attacker IACA", not_before=NOW,
                                       not_after=NOW + dt.timedelta(days=365), issuer_alt_name_uri="http://evil.test/i",
                                       crl_uri="http://evil.test/c"), key)


def _forged(svc, label: str, at: dt.datetime, issue_id: int, rogue: x509.Certificate) -> bytes:  # noqa: ANN001
    """A VICAL listing ``rogue`` (and the issuer's IACAs), signed with the key of VICAL signer
    ``label`` as its holder would: through the issuer's key store, the signer's own certificate
    in x5chain."""
    cert = _signer_cert(svc, label)
    entries = [VicalEntry(c, (DOCTYPE,), "mcred simulated issuing authority") for c in [*svc.trusted_iacas(), rogue]]
    payload = vical_payload("mcred simulated issuing authority", at, entries, issue_id=issue_id,
                            next_update=at + dt.timedelta(hours=24))
    return sign_vical(payload, CoseSignerAdapter(svc.pki.keystore.signer(label)), [cert.public_bytes(Encoding.DER)])


def _signer_cert(svc, label: str) -> x509.Certificate:  # noqa: ANN001
    from issuer.db import IssuerKey
    from issuer.mdoc.txn import run_transaction

    return run_transaction(svc.sessions, lambda s: x509.load_der_x509_certificate(s.get(IssuerKey, label).certificate))


def test_a_revoked_vical_signer_signs_nothing_more_and_the_vical_ca_crl_lists_it(world):  # noqa: F811
    svc, sessions, clock, client = world
    first = client.get("/trust/vical").content
    signer1 = _signer_of(first)
    # every VICAL signer certificate names its VICAL CA's CRL (Annex C's VICAL signer profile)
    assert _crl_url(signer1) == f"{BASE}/trust/vical-ca.crl"
    (ca,) = x509.load_pem_x509_certificates(client.get("/trust/vical-ca.pem").content)
    empty = _crl(client)
    assert empty.issuer == ca.subject and empty.is_signature_valid(ca.public_key()) and len(empty) == 0
    assert empty.next_update_utc - empty.last_update_utc == dt.timedelta(hours=24)
    assert client.get("/trust/vical-ca-1.crl").content == client.get("/trust/vical-ca.crl").content
    assert client.get("/trust/vical-ca-2.crl").json()["type"] == "/problems/unknown-vical-ca"
    (listed,) = svc.vical_signers()
    assert (listed.label, listed.active, listed.ca, listed.crl) == (
        "mdoc-vical-signer-1", True, "mdoc-vical-ca-1", f"{BASE}/trust/vical-ca.crl")

    clock.now = NOW + dt.timedelta(minutes=10)
    done = svc.revoke_vical_signer("mdoc-vical-signer-1", "superseded", actor="test")
    assert done.changed and done.amended_from is None
    assert (done.info.label, done.info.reason, done.info.revoked_at, done.info.active) == (
        "mdoc-vical-signer-1", "superseded", clock.now, False)
    # the VICAL was re-signed in the same transaction, by the next generation, a later issue ID
    assert done.signing.label == "mdoc-vical-signer-2" and done.signing.active
    assert done.vical_issue_id > _payload(first)["vicalIssueID"]
    now_served = client.get("/trust/vical").content
    signer2 = _signer_of(now_served)
    assert format(signer2.serial_number, "x") == done.signing.serial != format(signer1.serial_number, "x")
    assert _payload(now_served)["vicalIssueID"] == done.vical_issue_id
    assert _payload(now_served)["certificateInfos"] == _payload(first)["certificateInfos"]  # the same IACAs
    signer2.verify_directly_issued_by(ca)  # under the same VICAL CA: readers need no new anchor
    assert _crl_url(signer2) == f"{BASE}/trust/vical-ca.crl"
    crl = _crl(client)
    entry = crl.get_revoked_certificate_by_serial_number(signer1.serial_number)
    assert entry is not None and _reason(entry) == "superseded" and len(crl) == 1
    assert entry.revocation_date_utc == clock.now and _number(crl) > _number(empty)
    assert crl.is_signature_valid(ca.public_key())
    with sessions() as s:
        (event,) = s.query(AuditEvent).filter_by(action="mdoc.vical-signer.revoke").all()
    assert (event.actor, event.subject) == ("test", "mdoc-vical-signer-1")
    assert event.detail["reason"] == "superseded" and event.detail["signing"] == "mdoc-vical-signer-2"
    assert event.detail["vical_issue_id"] == done.vical_issue_id

    # keyCompromise amends the reason (its time kept), the CRL says so at once; again: no change
    clock.now = NOW + dt.timedelta(minutes=20)
    amended = svc.revoke_vical_signer(format(signer1.serial_number, "x"), "keyCompromise", actor="test")
    assert amended.changed and amended.amended_from == "superseded" and amended.info.reason == "keyCompromise"
    assert amended.signing.label == "mdoc-vical-signer-2" and amended.vical_issue_id == done.vical_issue_id
    again = _crl(client)
    entry = again.get_revoked_certificate_by_serial_number(signer1.serial_number)
    assert _reason(entry) == "keyCompromise" and entry.revocation_date_utc == NOW + dt.timedelta(minutes=10)
    assert _number(again) > _number(crl)
    with sessions() as s:
        assert s.query(AuditEvent).filter_by(action="mdoc.vical-signer.revoke.amend").count() == 1
    assert not svc.revoke_vical_signer("mdoc-vical-signer-1", "superseded").changed
    with pytest.raises(UnknownSigner, match="no VICAL signer"):
        svc.revoke_vical_signer("mdoc-ds-1", "keyCompromise")
    with pytest.raises(SignerRevocationError, match="not put on hold"):
        svc.revoke_vical_signer("mdoc-vical-signer-2", "certificateHold")

    # a reader importing the re-signed VICAL looks its signer up on the CRL and takes it
    asked: list[str] = []
    store = TrustStore()
    took = store.import_vical(now_served, vical_anchors=[ca], now=clock.now,
                              signer_revocation=VicalSignerCheck(_crl_fetch(client, asked)))
    assert took.imported == 1 and asked == [f"{BASE}/trust/vical-ca.crl"]

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not on PATH: the CRL's reading by OpenSSL is not checked")
    text = subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-text"], input=client.get(
        "/trust/vical-ca.crl").content, capture_output=True, check=True).stdout.decode()
    serial = format(signer1.serial_number, "X")
    assert "mcred VICAL CA 1" in text and "Key Compromise" in text
    assert int(re.search(r"CRL Number: *\n *(\d+)", text).group(1)) == _number(again), text
    assert f"Serial Number: {serial.zfill(len(serial) + len(serial) % 2)}" in text, text


def test_a_vical_signer_made_before_signers_named_the_crl_is_replaced_at_the_next_signing(world, monkeypatch):  # noqa: F811
    """An installation whose VICAL signer was made before signers named the VICAL CA's CRL:
    no reader could look it up (nor a revocation of it reach one), so the next VICAL is
    signed by a new generation that names it."""
    svc, _sessions, clock, client = world
    made = iaca.vical_signer_builder

    def without_crl(*args, crl_uri=None, **kwargs):  # noqa: ANN002, ANN003, ANN202 - as before this change
        return made(*args, **kwargs)

    monkeypatch.setattr(iaca, "vical_signer_builder", without_crl)
    old = _signer_of(svc.vical())
    with pytest.raises(x509.ExtensionNotFound):
        old.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert svc.vical_signers()[0].crl is None
    monkeypatch.undo()
    clock.now = NOW + dt.timedelta(minutes=1)
    new = _signer_of(client.get("/trust/vical").content)
    assert new.serial_number != old.serial_number and _crl_url(new) == f"{BASE}/trust/vical-ca.crl"
    assert [(r.label, r.active) for r in svc.vical_signers()] == [("mdoc-vical-signer-1", False),
                                                                   ("mdoc-vical-signer-2", True)]


def test_a_vical_signed_while_its_signer_is_revoked_is_not_signed_with_the_revoked_key(world):  # noqa: F811
    """A request that read the VICAL signer just before a revocation committed, and then took
    the VICAL row to sign a new VICAL, signed it with the revoked key (the keys read before it
    waited): the keys are read again once the row is taken, and it serves the VICAL the
    revocation signed."""
    import threading

    from issuer.mdoc.models import PublishedVical
    from issuer.mdoc.service import MdocService

    svc, sessions, clock, client = world
    client.get("/trust/vical")
    clock.now = NOW + MdocService.VICAL_REUSE  # the VICAL is due again: the next request signs one
    real, read, go = svc.pki.vical_signer, threading.Event(), threading.Event()

    def vical_signer(s, now):  # noqa: ANN001, ANN202 - the request's first read, then it waits
        got = real(s, now)
        if threading.current_thread() is request and not read.is_set():
            read.set()
            assert go.wait(20)
        return got

    svc.pki.vical_signer = vical_signer
    served: list[bytes] = []
    request = threading.Thread(target=lambda: served.append(svc.vical()))
    request.start()
    assert read.wait(20)
    done = svc.revoke_vical_signer("mdoc-vical-signer-1", "keyCompromise", actor="test")  # commits meanwhile
    go.set()
    request.join(20)
    (body,) = served
    assert _signer_of(body).serial_number == int(done.signing.serial, 16)
    with sessions() as s:
        stored = s.get(PublishedVical, "mcred simulated issuing authority")
        assert (stored.body, stored.issue_id) == (body, done.vical_issue_id)


def test_a_vical_forged_with_the_revoked_signers_key_is_refused_by_a_reader_that_looks_it_up(world):  # noqa: F811
    """The revoked signer's key (here through the issuer's key store, as a thief would use it)
    signs a VICAL listing an attacker's IACA with a later issue ID: its chain and signature
    verify, so a reader that does not look the signer up takes it; one that does refuses it,
    naming the signer, its serial and the reason, and fails closed without a usable CRL."""
    svc, _sessions, clock, client = world
    genuine = client.get("/trust/vical").content
    signer1 = _signer_of(genuine)
    cas = svc.vical_cas()
    svc.revoke_vical_signer("mdoc-vical-signer-1", "keyCompromise", actor="test")
    rogue = _attacker_iaca()
    forged = _forged(svc, "mdoc-vical-signer-1", clock.now, _payload(genuine)["vicalIssueID"] + 10, rogue)

    # the gap: on its chain alone the forged VICAL is taken, the attacker's IACA with it
    blind = TrustStore()
    blind.import_vical(forged, vical_anchors=cas, now=clock.now)
    assert rogue in blind.certificates

    store = TrustStore()
    check = VicalSignerCheck(_crl_fetch(client))
    with pytest.raises(TrustError) as refused:
        store.import_vical(forged, vical_anchors=cas, now=clock.now, signer_revocation=check)
    said = str(refused.value)
    assert "VICAL refused: its signer" in said and "mcred VICAL signer 1" in said, said
    assert f"serial {signer1.serial_number:x}" in said and "revoked (keyCompromise)" in said, said
    assert f"{BASE}/trust/vical-ca.crl" in said and len(store) == 0 and check.fetches == 1

    # fail closed: no CRL, a CRL another key signed, a CRL past its nextUpdate
    def down(url: str) -> bytes:
        raise CrlFetchError(f"GET {url}: connection refused")

    genuine_now = client.get("/trust/vical").content  # signed by the next generation
    with pytest.raises(TrustError, match="cannot be looked up: the VICAL CA's CRL is unavailable"):
        TrustStore().import_vical(genuine_now, vical_anchors=cas, now=clock.now,
                                  signer_revocation=VicalSignerCheck(down))
    other = ec.generate_private_key(ec.SECP256R1())
    crl = _crl(client)
    forged_crl = (x509.CertificateRevocationListBuilder().issuer_name(crl.issuer)
                  .last_update(crl.last_update_utc).next_update(crl.next_update_utc)
                  .sign(other, iaca.hash_for_key(other)))
    with pytest.raises(TrustError, match="signature does not verify with the VICAL CA's key"):
        TrustStore().import_vical(forged, vical_anchors=cas, now=clock.now,
                                  signer_revocation=VicalSignerCheck(lambda url: forged_crl.public_bytes(Encoding.DER)))
    why = VicalSignerCheck(_crl_fetch(client))(_signer_of(genuine_now), cas[0], clock.now + dt.timedelta(days=2))
    assert why is not None and "nextUpdate" in why and "has passed" in why, why
    assert VicalSignerCheck(_crl_fetch(client))(_signer_of(genuine_now), cas[0], clock.now) is None


def test_a_vical_signer_certificate_without_a_distribution_point_is_taken_as_before():
    """A VICAL signer made without a CRL distribution point (a test anchor, one made before
    the issuer's signers carried it): nothing to look up, the VICAL is taken on its chain."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = iaca.sign(iaca.vical_ca_builder(ca_key.public_key(), common_name="test VICAL CA", not_before=NOW,
                                         not_after=NOW + dt.timedelta(days=30)), ca_key)
    cert = iaca.sign(iaca.vical_signer_builder(key.public_key(), ca, common_name="test VICAL signer",
                                               not_before=NOW, not_after=NOW + dt.timedelta(days=10)), ca_key)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    data = sign_vical(vical_payload("p", NOW, [VicalEntry(_attacker_iaca(), (DOCTYPE,))]), key_signer(key),
                      [cert.public_bytes(Encoding.DER)])

    def never(url: str) -> bytes:
        raise AssertionError(f"fetched {url}")

    check = VicalSignerCheck(never)
    assert TrustStore().import_vical(data, vical_anchors=[ca], now=NOW + dt.timedelta(hours=1),
                                     signer_revocation=check).imported == 1
    assert check.fetches == 0


def test_the_stand_alone_reader_following_the_vical_keeps_its_trust_when_the_revoked_key_signs_one(world, tmp_path):  # noqa: F811
    """`mcred reader serve --vical URL --vical-trust CA.pem`: a forged VICAL signed by the
    revoked signer, newer than the one held, is refused at the reload (the trust kept,
    last_error naming the signer and the reason); the issuer's own re-signed VICAL is taken
    next. A CRL that cannot be had keeps the trust at a reload and stops the reader at start."""
    from mcred.present_wiring import ReaderServeConfig, ReaderServeError

    svc, _sessions, clock, client = world
    genuine = client.get("/trust/vical").content
    first = svc.iaca_certificate()
    signer1 = _signer_of(genuine)
    published = _Published(genuine)
    reachable = [True]
    plain = _crl_fetch(client)

    def crl(url: str) -> bytes:
        if not reachable[0]:
            raise CrlFetchError(f"GET {url}: connection refused")
        return plain(url)

    with _served(published.app()) as url:
        verifier, ticks, _what = _following_reader(f"{url}/trust/vical", client, tmp_path, crl=crl)
        assert verifier.trust().certificates == [first]

        def look(at: float, body: bytes) -> None:
            published.body, ticks.t = body, at
            verifier.trust()
            verifier.refresher.join(10)

        done = svc.revoke_vical_signer("mdoc-vical-signer-1", "keyCompromise", actor="test")
        rogue = _attacker_iaca()
        look(31.0, _forged(svc, "mdoc-vical-signer-1", clock.now, done.vical_issue_id + 5, rogue))
        assert verifier.trust().certificates == [first] and verifier.reloads == 0
        assert f"serial {signer1.serial_number:x}" in verifier.last_error, verifier.last_error
        assert "mcred VICAL signer 1" in verifier.last_error and "revoked (keyCompromise)" in verifier.last_error

        look(62.0, client.get("/trust/vical").content)  # the issuer's own, signed by the next signer
        assert verifier.trust().certificates == [first] and verifier.reloads == 1 and verifier.last_error is None
        assert verifier.vical.issue_id == done.vical_issue_id

        # the CRL cannot be had: a genuine newer VICAL (an IACA staged) is not taken, the trust stays
        staged = svc.stage_iaca().certificate
        reachable[0] = False
        look(93.0, client.get("/trust/vical").content)
        assert verifier.trust().certificates == [first] and verifier.reloads == 1
        assert "cannot be looked up: the VICAL CA's CRL is unavailable" in verifier.last_error
        reachable[0] = True  # the same bytes are taken once the VICAL changes again
        look(124.0, svc.vical(now=clock.now + dt.timedelta(hours=2)))
        assert verifier.trust().certificates == [first, staged] and verifier.reloads == 2

        # at start, no CRL: the reader does not start, and says why
        reachable[0] = False
        ca = tmp_path / "vical-ca.pem"
        with pytest.raises(ReaderServeError) as refused:
            ReaderServeConfig(vical=f"{url}/trust/vical", vical_trust=(str(ca),)).build(vical_crl_fetch=crl)
        assert "cannot be looked up: the VICAL CA's CRL is unavailable" in str(refused.value)
        assert "connection refused" in str(refused.value)
        # an --offline reader fetches nothing: it takes the VICAL on its chain alone
        offline, _rp, _what = ReaderServeConfig(vical=f"{url}/trust/vical", vical_trust=(str(ca),),
                                                offline=True).build(vical_crl_fetch=crl)
        assert offline.verifier.vical is not None


@pytest.fixture
def served_world(db_url):
    """An issuer whose public URL is a local port its trust routes are served on: the CRL
    distribution point of its VICAL signers is reached over HTTP by the reader's own fetcher."""
    from test_present_http import Server, free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    engine, sessions, clock, svc = mdoc_world(db_url, NOW, base=base)
    clock.now = dt.datetime.now(dt.UTC).replace(microsecond=0)  # the reader judges the CRL at the real time
    with Server(_issuer_app(svc), port):
        yield svc, base
    engine.dispose()


def test_the_reader_fetches_the_vical_ca_crl_over_http(served_world, tmp_path):
    """The default fetcher (reader.ds_crl.HttpCrlFetcher) reaches the distribution point the
    signer's certificate names: the issuer's /trust/vical-ca.crl."""
    from mcred.present_wiring import ReaderServeConfig, ReaderServeError

    svc, base = served_world
    ca = tmp_path / "vical-ca.pem"
    ca.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in svc.vical_cas()))
    config = ReaderServeConfig(vical=f"{base}/trust/vical", vical_trust=(str(ca),))
    service, _rp, what = config.build()
    assert "trusting 1 IACA(s)" in what and service.verifier.vical is not None
    svc.revoke_vical_signer("mdoc-vical-signer-1", "keyCompromise")
    signer2 = _signer_of(svc.vical())
    assert _crl_url(signer2) == f"{base}/trust/vical-ca.crl"
    config.build()  # the issuer's VICAL, now signed by the next signer, is taken over HTTP again
    published = _Published(_forged(svc, "mdoc-vical-signer-1", svc.clock(), 2**40, _attacker_iaca()))
    with _served(published.app()) as url:
        with pytest.raises(ReaderServeError, match=r"revoked \(keyCompromise\)"):
            ReaderServeConfig(vical=f"{url}/trust/vical", vical_trust=(str(ca),)).build()


def test_a_vical_ca_past_its_end_issues_no_crl_and_its_successor_has_its_own(world):  # noqa: F811
    """The VICAL CA is replaced in its last 90 days; its CRL is published per generation, as
    the IACA's (/trust/vical-ca.crl for the first, /trust/vical-ca-N.crl for generation N, the
    URL its signers carry); a CA past its end issues none (410)."""
    svc, _sessions, clock, client = world
    (first,) = svc.vical_cas()
    clock.now = first.not_valid_after_utc - dt.timedelta(days=30)
    cas = svc.vical_cas()
    assert cas[0] != first and "mcred VICAL CA 2" in cas[0].subject.rfc4514_string()
    signer = svc.vical_signers()[-1]
    assert (signer.ca, signer.crl) == ("mdoc-vical-ca-2", f"{BASE}/trust/vical-ca-2.crl")
    crl = _crl(client, "/trust/vical-ca-2.crl")
    assert crl.issuer == cas[0].subject and crl.is_signature_valid(cas[0].public_key())
    assert _crl(client).issuer == first.subject  # the first CA's, while it lasts
    clock.now = first.not_valid_after_utc + dt.timedelta(days=1)
    r = client.get("/trust/vical-ca.crl")
    assert r.status_code == 410 and r.json()["type"] == "/problems/vical-ca-ended"
    assert client.get("/trust/vical-ca-2.crl").status_code == 200


@pytest.fixture
def installation(home):
    from mcred.context import Context

    return Context.open(home)


def _cli(*args: str) -> tuple[int, str]:
    from mcred.cli.main import app

    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def _flat(out: str) -> str:
    """Text output with rich's line wrapping undone: where it wraps depends on the width of
    what is said (a serial is 39 or 40 hex digits), not on what is said."""
    return " ".join(out.split())


def test_cli_vical_signer_list_and_revoke(installation, tmp_path):
    code, out = _cli("mdoc", "vical-signer", "list")
    assert code == 0 and "no VICAL signer yet" in out, out
    assert _cli("mdoc", "vical-signer", "list", "--json") == (0, "[]\n")
    code, out = _cli("export", "vical", "--out", str(tmp_path / "v.cbor"))
    assert code == 0, out
    code, out = _cli("mdoc", "vical-signer", "list", "--json")
    (row,) = json.loads(out)
    assert (row["label"], row["purpose"], row["active"], row["ca"], row["revoked_at"]) == (
        "mdoc-vical-signer-1", "vical-signer", True, "mdoc-vical-ca-1", None)
    assert row["crl"] == f"{installation.public_url}/trust/vical-ca.crl"
    code, out = _cli("mdoc", "vical-signer", "list")
    assert code == 0 and "mdoc-vical-signer-1" in out and "signing" in out and row["serial"] in out, out

    code, out = _cli("mdoc", "vical-signer", "revoke", row["serial"], "--reason", "keyCompromise", "--json")
    assert code == 0, out
    done = json.loads(out)
    assert done["changed"] and done["label"] == "mdoc-vical-signer-1" and done["reason"] == "keyCompromise"
    assert done["signing"]["label"] == "mdoc-vical-signer-2" and done["amended_from"] is None
    vical = (tmp_path / "v.cbor").read_bytes()
    assert done["vical_issue_id"] > _payload(vical)["vicalIssueID"]
    code, out = _cli("export", "vical", "--out", str(tmp_path / "w.cbor"))
    assert _signer_of((tmp_path / "w.cbor").read_bytes()).serial_number == int(done["signing"]["serial"], 16)
    code, out = _cli("mdoc", "vical-signer", "revoke", "mdoc-vical-signer-1", "--reason", "superseded")
    assert code == 0 and "already revoked (keyCompromise)" in _flat(out), out
    code, out = _cli("mdoc", "vical-signer", "revoke", "mdoc-vical-signer-2", "--reason", "superseded")
    assert code == 0 and "revoked (superseded)" in _flat(out) and "mdoc-vical-signer-3" in _flat(out), out
    code, out = _cli("mdoc", "vical-signer", "list")
    assert "revoked (keyCompromise" in _flat(out) and "revoked (superseded" in _flat(out) \
        and "mdoc-vical-signer-3" in _flat(out), out
    code, out = _cli("mdoc", "vical-signer", "revoke", "mdoc-vical-signer-9", "--reason", "keyCompromise", "--json")
    assert code == 2 and "no VICAL signer" in json.loads(out)["error"], out
    code, out = _cli("mdoc", "vical-signer", "revoke", "mdoc-vical-signer-3", "--reason", "certificateHold")
    assert code == 2 and "keyCompromise" in out, out


def test_vical_signer_revocation_over_http_operator_only(installation):
    from mcred.api_models import VicalSignerRevocation
    from mcred.mdoc_flow import mdoc_service
    from mcred.service import create_app

    api = create_app(installation, job_workers=1)
    with contextlib.closing(TestClient(api)) as client:
        checked = check_every_answer(client, api)
        first = client.get("/trust/vical").content
        tok = bearer(installation.sessions, ["operator", "issuer"])
        body = {"signer": "mdoc-vical-signer-1", "reason": "keyCompromise"}
        r = client.post("/trust/vical-signer-revocations", json=body, headers=tok["issuer"])
        assert r.status_code == 403
        r = client.post("/trust/vical-signer-revocations", json={**body, "signer": "mdoc-vical-signer-7"},
                        headers=tok["operator"])
        assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-signer"
        assert "no VICAL signer" in r.json()["detail"]
        r = client.post("/trust/vical-signer-revocations", json={**body, "reason": "certificateHold"},
                        headers=tok["operator"])
        assert r.status_code == 422
        r = client.post("/trust/vical-signer-revocations", json=body, headers=tok["operator"])
        assert r.status_code == 200, r.text
        got = VicalSignerRevocation.model_validate(r.json())
        assert got.changed and got.signing.label == "mdoc-vical-signer-2" and got.reason == "keyCompromise"
        assert got.vical_issue_id > _payload(first)["vicalIssueID"]
        assert _signer_of(client.get("/trust/vical").content).serial_number == int(got.signing.serial, 16)
        crl = x509.load_der_x509_crl(client.get("/trust/vical-ca.crl").content)
        assert crl.get_revoked_certificate_by_serial_number(int(got.serial, 16)) is not None
        assert not client.post("/trust/vical-signer-revocations", json=body, headers=tok["operator"]).json()["changed"]
        assert {"POST /trust/vical-signer-revocations 200", "POST /trust/vical-signer-revocations 403",
                "POST /trust/vical-signer-revocations 404", "GET /trust/vical-ca.crl 200"} <= set(checked), checked
        with installation.sessions() as s:
            (event,) = s.query(AuditEvent).filter_by(action="mdoc.vical-signer.revoke").all()
        assert event.subject == "mdoc-vical-signer-1" and event.actor != "issuer"
        assert mdoc_service(installation).vical_signers()[0].revoked_at is not None
