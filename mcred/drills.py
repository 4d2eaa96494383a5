"""Handover and revocation drills (issue 7 item 2; specs/drills.md).

A drill provisions subject phones, captures one presentation (DeviceResponse with its
SessionTranscript) and one JPKI signature from each while they are valid, runs the
scenario's workflows (issuer/handover.py with mcred/handover_actions.py), and measures from
wall-clock timestamps the **propagation time**: from the revocation request to the first
refusal of the captured presentation by a reader (status list fetched over the issuer's
HTTP routes, cached up to its ttl) and of the captured signature by the JPKI relying party
(OCSP over HTTP). At the end it asserts the old phone is refused with the right reason,
the new phone (if any) is accepted, and a bystander phone was not disturbed.

The reader and the relying party talk HTTP to the issuer's real FastAPI app through an
in-process transport (``fastapi.testclient``), so a drill needs no port and no server.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cryptography import x509
from sqlalchemy import func, select

import wallet_sim
from issuer import handover as wf
from mcred.context import Context
from mcred.handover_actions import HandoverActions, change_basic_four, mdoc_refusal, renew_card
from mcred.jpki_flow import SeError, sign_challenge, sign_with_se, unblock_pin
from mcred.provision import (
    ProvisionResult,
    abandon,
    issuer_port,
    jpki_issuer,
    mdoc_service,
    provision,
    refresh_mdocs,
    renew_jpki,
    reset_secrets,
    unfinished_job,
)
from mcred.samples import HOLDER
from mcred.timestamps import Stamper, time_stamp_authority, wait_clear_of_stamp
from protocols import cose, mdoc
from protocols.cardsub import parse_holder

SCENARIOS = ("model_change", "resale", "lost_found", "lost_not_found", "stolen", "renewal", "cert_renewal", "moved",
             "death",
             "pin_lock", "puk_lock", "abandoned", "ds_compromise", "kloc_compromise", "iaca_rollover",
             "iaca_compromise", "vical_ca_compromise")
#: the issuer-wide scenarios: every phone a subject, no bystander
WHOLE = ("ds_compromise", "kloc_compromise", "iaca_rollover", "iaca_compromise", "vical_ca_compromise")
#: The Status List Token ttl the drill installation publishes (seconds): short, so that a
#: reader holding a cached list sees a change within a drill; the report states it.
DRILL_TTL = 2
POLL_S = 0.05
CONTENT = b"drill: a document to sign"


#: the XML filing the demo signs (as an e-Gov 電子申請 form is an XML document)
DEMO_FILING = ("<?xml version='1.0' encoding='UTF-8'?>\n"
               "<申請書 xmlns=\"urn:example:mcred:demo\" 様式=\"転入届\"><届出日>2026-12-05</届出日></申請書>\n").encode()


def _said(out) -> tuple[bool, str]:  # noqa: ANN001 - a mcred.present.Presentation
    """A presentation's verdict as the drills say it: VALID, or each failed check."""
    failed = [c for c in out.result["checks"] if not c["passed"]]
    return out.valid, "; ".join(f"{c['name']}: {c['reason']}" for c in failed) or "VALID"


def _rp_said(out: dict) -> tuple[bool, str]:
    """A relying party's verdict as the drills say it: good, or each failed check."""
    failed = [c for c in out["checks"] if not c["passed"]]
    return out["valid"], "; ".join(f"{c['name']}: {c['reason']}" for c in failed) or "good"


class DrillFailure(AssertionError):
    """A drill's end-of-scenario assertion did not hold."""


# --- the environment: issuer app, reader, relying party ---------------------------------------


_TTL_LOCK = threading.Lock()
#: per status registry a drill shortened: [the ttl it had before the first, drills holding it]
_TTL_HELD: dict[int, list[int]] = {}


def _shorten_ttl(registry: Any, ttl: int) -> Callable[[], None]:  # noqa: ANN401 - a StatusRegistry
    """Publish Status List Tokens with ``ttl`` for as long as a drill runs, and the release that
    gives the registry its own ttl back once the last drill holding it is done: a drill run
    by ``POST /drills`` shares the API server's registry, which went on publishing the drill's
    2 s to every reader until the server restarted."""
    with _TTL_LOCK:
        held = _TTL_HELD.setdefault(id(registry), [registry.policy.ttl, 0])
        held[1] += 1
        if registry.policy.ttl != ttl:
            registry.policy = replace(registry.policy, ttl=ttl)
    released = False

    def release() -> None:
        nonlocal released
        with _TTL_LOCK:
            if released:
                return
            released = True
            held[1] -= 1
            if held[1] == 0:
                del _TTL_HELD[id(registry)]
                if registry.policy.ttl != held[0]:
                    registry.policy = replace(registry.policy, ttl=held[0])

    return release


def verdict_of(reader: Any, response: bytes, st: mdoc.SessionTranscript) -> tuple[bool, str]:
    """``reader``'s verdict on a presentation: valid, and its failed checks said (or VALID)."""
    r = reader.verify(response, session_transcript=st)
    failed = [c for c in r.checks if not c.passed]
    return r.valid, "; ".join(f"{c.name}: {c.reason}" for c in failed) or "VALID"


class Env:
    """One installation with its issuer HTTP app, one reader and one relying party."""

    def __init__(self, ctx: Context, *, ttl: int = DRILL_TTL, key_type: str = "p384",
                 mdoc_batch: int = 1) -> None:
        import warnings

        with warnings.catch_warnings():  # starlette's note about httpx2; httpx is what we use
            warnings.simplefilter("ignore", DeprecationWarning)
            from fastapi.testclient import TestClient

        from mcred.service import create_app
        from reader.pipeline import HttpxFetcher, ReaderPipeline, StatusListCache
        from reader.trust import TrustStore

        self.ctx, self.key_type, self.mdoc_batch = ctx, key_type, mdoc_batch
        #: this run's own people (:func:`_holder`): a drill run again in the same installation
        #: ($MCRED_HOME, POST /drills) provisions new people, not the last run's again
        self.run_tag = secrets.token_hex(3)
        issuer_port(ctx)
        svc = mdoc_service(ctx)
        #: the registry's own ttl back (:meth:`close`; at the latest when this goes)
        self._release_ttl = _shorten_ttl(svc.registry, ttl)
        weakref.finalize(self, self._release_ttl)
        self.ttl = ttl
        self.http = TestClient(create_app(ctx), base_url=ctx.public_url)
        self.iaca = svc.iaca_certificate()
        trust = TrustStore()
        for cert in svc.trusted_iacas():  # the current IACA and older generations still vouching
            trust.add(cert, source="drill")
        self.reader = ReaderPipeline(trust, status=StatusListCache(HttpxFetcher(client=self.http)))
        # a reader that also checks the IACA CRL (ds_revocation and the list signer), keeping
        # its copy at most the drill's ttl, like the status list
        from reader.ds_crl import DsCrlCheck, HttpCrlFetcher

        ds_crl = DsCrlCheck(HttpCrlFetcher(self.http), max_age=dt.timedelta(seconds=self.ttl))
        self.ds_reader = ReaderPipeline(trust, status=StatusListCache(HttpxFetcher(client=self.http)),
                                        extra_checks=[ds_crl], signer_revocation=ds_crl.signer_revoked)
        jp = jpki_issuer(ctx)
        self.roots = jp.roots("sign") + jp.roots("auth")
        #: the installation's time-stamping roots: the relying party trusts them
        self.tsa_roots = time_stamp_authority(ctx).roots()
        self._lock = threading.Lock()
        # a relying party's revocation watch (an insurer's CRL sweeps), its list in a database
        # of its own that lives as long as this environment
        import tempfile

        from mcred.db import make_engine, migrate
        from reader.rp_watch import RevocationWatch

        where = tempfile.TemporaryDirectory(prefix="mcred-drill-rp-")
        engine = make_engine(f"sqlite:///{where.name}/rp-watch.sqlite3")
        migrate(engine, "reader@head")
        weakref.finalize(self, lambda: (engine.dispose(), where.cleanup()))
        self.rp_watch = RevocationWatch(engine, self.roots, client=self.http)

    # the phone side -------------------------------------------------------------------------

    def close(self) -> None:
        """Give the issuer's status registry its own ttl back (once no other drill holds it)."""
        self._release_ttl()

    def present(self, phone_id: str) -> tuple[bytes, mdoc.SessionTranscript]:
        """The phone's wallet answers a reader: all items of its least used mdoc, device
        signature by the SE (raises WalletError when the phone holds no credential)."""
        from wallet_sim.wallet import SeMdocApplet, SeSigner, WalletError

        se = wallet_sim.open_secure_element(phone_id, self.ctx.home)
        applet = SeMdocApplet(se.transmit)
        held = [(slot, n) for slot, has, n in applet.slots() if has]
        if not held:
            raise WalletError("the phone holds no mdoc")
        slot, n = held[0]
        issued = mdoc.IssuerSigned.decode(applet.read(slot, n))
        st = _transcript()
        doc = mdoc.build_document(issued, st, signer=SeSigner(applet, slot))
        return mdoc.DeviceResponse((doc,)).encode(), st

    def present_online(self, phone_id: str, origin: str, *, via: str | None = None,
                       protocol: str = "org-iso-mdoc") -> tuple[bool, str]:
        """The phone's wallet answers a web page at ``origin`` online (ISO/IEC TS 18013-7
        Annex C: the response sealed with HPKE; or OpenID4VP 1.0, ``openid4vp-v1-unsigned``:
        a JWE), bound to the origin the browser reports (``via`` a relaying site's); the
        reader's verdict, as :meth:`reader_verdict` says it."""
        from mcred.present import open_wallet, present_online_in_process
        from reader.online import ONLINE_KINDS
        from reader.session import DEFAULT_REQUEST
        from wallet_sim.consent import RulesConsent

        wallet = open_wallet(phone_id, self.ctx.home, RulesConsent.allow_all())
        reader = ONLINE_KINDS[protocol]([DEFAULT_REQUEST], self.reader, origin)
        out = present_online_in_process(wallet, reader, origin=via)
        return _said(out)

    def present_cross_device(self, phone_id: str, site: str) -> tuple[bool, str]:
        """The phone scans the QR code of a page at ``site`` whose browser has no wallet
        (OpenID4VP 1.0, unsigned by value: ``redirect_uri:`` the reader's response_uri there)
        and posts its answer straight to the reader (``direct_post.jwt``); the verdict, as
        :meth:`reader_verdict` says it."""
        from mcred.present import open_wallet, present_cross_device_in_process
        from reader.online import Oid4vpRedirectReaderSession
        from reader.session import DEFAULT_REQUEST
        from wallet_sim.consent import RulesConsent

        wallet = open_wallet(phone_id, self.ctx.home, RulesConsent.allow_all())
        reader = Oid4vpRedirectReaderSession([DEFAULT_REQUEST], self.reader,
                                             response_uri=f"{site}/oid4vp/responses/{secrets.token_urlsafe(8)}")
        out = present_cross_device_in_process(wallet, reader)
        return _said(out)

    def present_nfc(self, phone_id: str) -> tuple[bool, str]:
        """The phone tapped on a reader: NFC engagement (static handover) and data retrieval
        over NFC (ISO/IEC 18013-5 8.2.2.1, 8.3.3.1.2), the wallet behind the phone's AID
        routing; the verdict, as :meth:`reader_verdict` says it."""
        from mcred.present import new_reader_session, open_wallet, present_nfc_in_process
        from wallet_sim.consent import RulesConsent

        wallet = open_wallet(phone_id, self.ctx.home, RulesConsent.allow_all())
        out = present_nfc_in_process(wallet, new_reader_session(self.reader))
        return _said(out)

    def present_ble(self, phone_id: str) -> tuple[bool, str] | None:
        """The phone tapped on a reader that goes on over Bluetooth LE, as ISO/IEC 18013-5
        Annex D does: negotiated handover, mdoc central client mode on the reader's UUID, two
        Bluetooth hosts (bumble) on a virtual radio; the verdict, as :meth:`reader_verdict`
        says it. None when bumble (the ``ble`` extra) is not installed."""
        import blelink

        try:
            blelink.require()
        except blelink.LinkError:
            return None
        from mcred.present import new_reader_session, open_wallet
        from mcred.present_ble import present_tap_ble_in_process
        from wallet_sim.consent import RulesConsent

        wallet = open_wallet(phone_id, self.ctx.home, RulesConsent.allow_all())
        out, _ = present_tap_ble_in_process(wallet, new_reader_session(self.reader), mode="central",
                                            handover="negotiated", timeout=10)
        return _said(out)

    def present_age_over(self, phone_id: str, nn: int = 21) -> tuple[bool, str]:
        """The phone asked for ``age_over_<nn>`` alone, which the card substitute may not
        carry (it has 18 and 20): ISO/IEC 18013-5 7.2.5 has the wallet answer the nearest
        age_over that does. The verdict, and what the reader read into the answer for ``nn``
        (or, when not VALID, each failed check)."""
        from mcred.present import open_wallet, present_in_process
        from reader.session import DEFAULT_REQUEST, ReaderSession, RequestSpec
        from wallet_sim.consent import RulesConsent

        ns = DEFAULT_REQUEST.doc_type
        wallet = open_wallet(phone_id, self.ctx.home, RulesConsent.allow_all())
        out = present_in_process(wallet, ReaderSession([RequestSpec(ns, {ns: {f"age_over_{nn:02d}": False}})],
                                                       self.reader))
        ok, why = _said(out)
        read = [a["meaning"] for d in out.result["documents"] for a in d.get("ageOver", [])]
        return ok, "; ".join(read) if ok and read else why

    def present_second_edition(self, phone_id: str) -> tuple[bool, str, str]:
        """The phone answers a second-edition reader (ISO/IEC 18013-5 DeviceRequest 1.1): the
        request signed once (readerAuthAll) by a reader certificate the wallet trusts; an
        mDL or the card substitute (use cases), only under this issuer's IACA
        (issuerIdentifiers), asking for age_over_21, which the card substitute does not
        carry, or in its place birth_date (alternativeDataElements). The verdict, as
        :meth:`reader_verdict` says it, and what the wallet made of the request."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        from mcred.present import open_wallet, present_in_process
        from mcred.reader_pki import issue_reader_certificate, new_reader_ca
        from reader.session import DEFAULT_REQUEST, ReaderSession, RequestSpec
        from wallet_sim.consent import RulesConsent

        ca, ca_key = new_reader_ca("Drill reader CA", years=1)
        cert, key = issue_reader_certificate(ca, ca_key, "Drill counter reader", days=1)
        ns = DEFAULT_REQUEST.doc_type
        ours = self.iaca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        cardsub = RequestSpec(ns, {ns: {"family_name": False, "age_over_21": False}}, mdoc.DocRequestInfo(
            alternative_data_elements=(mdoc.AlternativeDataElements((ns, "age_over_21"), (((ns, "birth_date"),),)),),
            issuer_identifiers=(ours,)))
        mdl = RequestSpec("org.iso.18013.5.1.mDL", {"org.iso.18013.5.1": {"family_name": False, "age_over_21": False}})
        reader = ReaderSession([mdl, cardsub], self.reader, reader_signer=cose.key_signer(key),
                               reader_chain=[cert.public_bytes(serialization.Encoding.DER)], reader_auth_all=True,
                               use_cases=[mdoc.UseCase(True, ((0,), (1,)))])
        wallet = open_wallet(phone_id, self.ctx.home, RulesConsent.allow_all(), reader_trust_anchors=[ca])
        out = present_in_process(wallet, reader)
        event = next((e for e in out.wallet_events if e.kind == "response"), None)
        told = "no document answered" if event is None else (
            f"the wallet saw {event.reader.subject if event.reader else 'an anonymous reader'}"
            f"{' (verified by readerAuthAll)' if event.reader and event.reader.trusted else ''} and {event.detail}")
        return (*_said(out), told)

    def present_to_revoked_reader(self, phone_id: str) -> tuple[bool, str, str]:
        """The phone is asked by a reader whose certificate its reader CA has revoked
        (keyCompromise); the wallet holds that CA's CRL and its holder releases to trusted
        readers only. The verdict, and what the wallet told the holder of the reader."""
        import datetime as dt

        from cryptography.hazmat.primitives import serialization

        from mcred.present import open_wallet, present_in_process
        from mcred.reader_pki import issue_reader_certificate, new_reader_ca
        from protocols import crl as ca_crl
        from protocols import iaca
        from reader.session import DEFAULT_REQUEST, ReaderSession
        from wallet_sim.consent import RulesConsent
        from wallet_sim.reader_crls import ReaderCrls

        ca, ca_key = new_reader_ca("Drill reader CA", years=1)
        cert, key = issue_reader_certificate(ca, ca_key, "Leaked counter reader", days=1)
        now = dt.datetime.now(dt.UTC)
        crl = ca_crl.crl_builder(ca, number=1, this_update=now, next_update=dt.timedelta(days=1), revoked=[
            ca_crl.Revoked(cert.serial_number, now, "keyCompromise")]).sign(ca_key, iaca.hash_for_key(ca_key))
        reader = ReaderSession([DEFAULT_REQUEST], self.reader, reader_signer=cose.key_signer(key),
                               reader_chain=[cert.public_bytes(serialization.Encoding.DER)])
        cautious = RulesConsent.from_mapping({"documents": {"*": {"*": "*"}}, "trusted_readers_only": True})
        wallet = open_wallet(phone_id, self.ctx.home, cautious, reader_trust_anchors=[ca],
                             reader_revocation=ReaderCrls([crl]))
        out = present_in_process(wallet, reader)
        event = next((e for e in out.wallet_events if e.kind == "response"), None)
        told = ("no reader shown" if event is None or event.reader is None else
                f"{'trusted' if event.reader.trusted else 'NOT trusted'}: {event.reader.reason or 'chain verified'}")
        return (*_said(out), told)

    def sign(self, phone_id: str, secret: str, slot: str = "sign", *, timestamp: bool = False) -> bytes:
        """The drills' document signed by the phone (CMS); with ``timestamp``, with a signature
        time-stamp the installation's TSA gives over HTTP (``POST /tsa``): CAdES-T."""
        se = wallet_sim.open_secure_element(phone_id, self.ctx.home)
        cms, _cert = sign_with_se(se.transmit, slot, secret.encode(), CONTENT)
        if timestamp:
            cms = Stamper.http(f"{self.ctx.public_url}/tsa", roots=self.tsa_roots, client=self.http).stamp_signature(cms)
        return cms

    def sign_pdf(self, phone_id: str, secret: str) -> bytes | None:
        """A one-page contract PDF signed inside by the phone's signing key (PAdES,
        :mod:`mcred.jpki_pdf`); None when pyHanko (the ``pdf`` extra) is not installed."""
        from mcred.jpki_pdf import PdfSigningError, blank_pdf, require, sign_pdf_with_se

        try:
            require()
        except PdfSigningError:
            return None
        se = wallet_sim.open_secure_element(phone_id, self.ctx.home)
        return sign_pdf_with_se(se.transmit, secret.encode(), blank_pdf(), reason="契約")

    def rp_pdf_verdict(self, pdf: bytes) -> tuple[bool, str]:
        from reader.jpki_pdf import verify_pdf

        return _rp_said(verify_pdf(pdf, roots=self.roots, client=self.http, tsa_roots=self.tsa_roots))

    def sign_xml(self, phone_id: str, secret: str) -> bytes | None:
        """A moving-in notification (転入届) as XML, signed inside by the phone's signing key
        with a signature time-stamp from the issuer's TSA (XAdES B-T,
        :mod:`protocols.jpki.xmlsig`); None when signxml (the ``xml`` extra) is not installed."""
        from mcred.jpki_flow import sign_xml_with_se
        from protocols.jpki.xmlsig import XmlExtraMissing, require

        try:
            require()
        except XmlExtraMissing:
            return None
        se = wallet_sim.open_secure_element(phone_id, self.ctx.home)
        stamper = Stamper.http(f"{self.ctx.public_url}/tsa", roots=self.tsa_roots, client=self.http)
        return sign_xml_with_se(se.transmit, secret.encode(), DEMO_FILING, xades=True, stamper=stamper)

    def rp_xml_verdict(self, document: bytes) -> tuple[bool, str]:
        from reader.jpki_xml import verify_xml

        return _rp_said(verify_xml(document, roots=self.roots, client=self.http, tsa_roots=self.tsa_roots))

    # the verifiers --------------------------------------------------------------------------

    def reader_verdict(self, response: bytes, st: mdoc.SessionTranscript, *,
                       ds_crl: bool = False) -> tuple[bool, str]:
        return verdict_of(self.ds_reader if ds_crl else self.reader, response, st)

    def reader_status_said(self, response: bytes, st: mdoc.SessionTranscript) -> str:
        """What the reader's status checks say of a presentation, passed or not: which list
        and index the mdoc points at, its status there, when the reader's copy was fetched and
        for how long it keeps it (a drill's note when the reader never refused)."""
        from reader.pipeline import REVOCATION_STATUS, STATUS_CHECKS, STATUS_LIST_FRESHNESS

        r = self.reader.verify(response, session_transcript=st)
        said = [f"{c.name}: {c.reason}" for c in r.checks if c.name in STATUS_CHECKS
                and (not c.passed or c.name in (STATUS_LIST_FRESHNESS, REVOCATION_STATUS))]
        return "; ".join(said) or "no status check"

    def login(self, phone_id: str, pin: str) -> tuple[bool, str]:
        """利用者証明: a challenge of the relying party signed by the phone's user-authentication
        key (PIN verified in the SE), taken back once and checked with OCSP."""
        from mcred.jpki_flow import sign_challenge
        from reader.relying_party import RelyingPartyService

        rp = RelyingPartyService(self.roots, client=self.http)
        c = rp.challenge()
        se = wallet_sim.open_secure_element(phone_id, self.ctx.home)
        out = rp.authenticate(c.id, *sign_challenge(se.transmit, pin.encode(), c.nonce))
        failed = [x for x in out["checks"] if not x["passed"]]
        return out["valid"], "; ".join(f"{x['name']}: {x['reason']}" for x in failed) or "good"

    def watch_signer(self, cms: bytes) -> str:
        """Put the signer of ``cms`` on the relying party's watch list (its customer
        reference: the certificate's serial); the reference."""
        from cryptography.hazmat.primitives.serialization import Encoding

        ref, cert = _customer(cms)
        self.rp_watch.add(ref, cert.public_bytes(Encoding.DER))
        return ref

    def watch_verdict(self, ref: str) -> tuple[bool, str]:
        """One CRL sweep of ``ref``'s certificates: good, or their status and reason."""
        report = self.rp_watch.sweep("crl", refs=[ref])
        if report.unjudged:
            return False, f"not judged: {report.unjudged[0].problem}"
        (entry,) = self.rp_watch.entries(ref)
        return entry.status == "good", "good" if entry.status == "good" else f"{entry.status} ({entry.reason})"

    def login_certificate(self, phone_id: str, pin: str) -> bytes:
        """The user-authentication certificate the phone's login sends (PIN verified in the SE)."""
        se = wallet_sim.open_secure_element(phone_id, self.ctx.home)
        return sign_challenge(se.transmit, pin.encode(), secrets.token_bytes(32))[1]

    def linkage(self, serials: list[str]) -> list[dict]:
        """The issuer's user-authentication certificate linkage service, as the relying party
        asks it (``POST /jpki/linkage`` answers the same)."""
        from issuer.jpki.linkage import answer

        return answer(self.ctx.sessions, serials, relying_party="drill relying party", actor="drill")["links"]

    def rp_verdict(self, cms: bytes, slot: str = "sign") -> tuple[bool, str]:
        return _rp_said(self._rp_verify(cms, slot))

    def rp_revocation(self, cms: bytes) -> tuple[bool, str]:
        """The relying party's verdict on ``cms``, and what its ``revocation`` check said
        (passed or not: a time-stamped signature passes on a certificate revoked after it)."""
        out = self._rp_verify(cms, "sign")
        said = next((c["reason"] for c in out["checks"] if c["name"] == "revocation"), "no revocation check")
        return out["valid"], said

    def _rp_verify(self, cms: bytes, slot: str) -> dict:
        from reader.relying_party import verify

        return verify(CONTENT, cms, roots=self.roots, slot=slot, client=self.http, tsa_roots=self.tsa_roots)


def _transcript() -> mdoc.SessionTranscript:
    from cryptography.hazmat.primitives.asymmetric import ec

    e_dev = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    e_rdr = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    return mdoc.SessionTranscript.build(mdoc.DeviceEngagement.build(e_dev).encode(), e_rdr, None)


# --- reports ----------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    seconds: float
    started: str


@dataclass
class SubjectReport:
    phone: str
    new_phone: str | None = None
    steps: list[Step] = field(default_factory=list)
    #: seconds from the revocation (or hold) request to the first refusal
    reader_propagation_s: float | None = None
    ocsp_propagation_s: float | None = None
    #: ... to the relying party's watch (a CRL sweep of the signer's certificate)
    watch_propagation_s: float | None = None
    #: ... to the phone's SE refusing what the scenario revoked (kloc_compromise: from the
    #: KLOC CA's rotation to the SE refusing the leaked CA's OCE)
    se_propagation_s: float | None = None
    reader_reason: str = ""
    ocsp_reason: str = ""
    watch_reason: str = ""
    se_reason: str = ""
    final: dict[str, Any] = field(default_factory=dict)

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        started = dt.datetime.now(dt.UTC).isoformat()
        t0 = time.perf_counter()
        out = fn()
        self.steps.append(Step(name, time.perf_counter() - t0, started))
        return out


@dataclass
class DrillReport:
    scenario: str
    phones: int
    status_list_ttl_s: int
    ocsp_ttl_s: int = 0  # the responder reads the registry on every request
    seconds: float = 0.0
    subjects: list[SubjectReport] = field(default_factory=list)
    bystander: dict[str, Any] = field(default_factory=dict)
    passed: bool = False
    error: str | None = None

    def propagation(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            v = sorted(values)
            return {"min": v[0], "median": v[len(v) // 2], "max": v[-1],
                    "p95": v[min(len(v) - 1, int(0.95 * len(v)))]}

        return {who: stats([v for s in self.subjects
                            if (v := getattr(s, f"{who}_propagation_s")) is not None])
                for who in ("reader", "ocsp", "watch", "se")}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["propagation_s"] = self.propagation()
        return d


# --- building blocks --------------------------------------------------------------------------


def _holder(env: Env, i: int, tag: str) -> Any:
    """Subject ``i`` of a drill's ``tag``: a person of their own (an address of their own, in
    this run's :attr:`Env.run_tag`). The registry takes a holder file's identity fields for
    who the person is, and one person holds the credentials on one phone: the same record
    again, in this run or in a later one of the same installation, would be refused."""
    return parse_holder(dict(HOLDER, address=f"{HOLDER['address']} {env.run_tag}-{tag}-{i}"))


def _presented_subjects(env: Env, report: DrillReport, workers: int,
                        tag: str) -> list[tuple[SubjectReport, ProvisionResult, tuple[bytes, Any]]]:
    """``report.phones`` new subjects (:func:`_new_subject`), ``workers`` at a time, each
    presenting once and that presentation accepted: each one's report, provisioning and the
    presentation captured (the response and its session transcript)."""

    def setup(i: int) -> tuple[SubjectReport, ProvisionResult, tuple[bytes, Any]]:
        rep = SubjectReport(phone="")
        r = _new_subject(env, rep, i, tag)
        response, st = rep.timed("present (valid)", lambda: env.present(r.phone_id))
        ok, why = env.reader_verdict(response, st)
        _require(ok, f"{r.phone_id}: fresh presentation refused: {why}")
        return rep, r, (response, st)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(setup, range(1, report.phones + 1)))


def _new_subject(env: Env, rep: SubjectReport, i: int, tag: str) -> ProvisionResult:
    pid = env.ctx.new_phone()
    rep.phone = pid
    return rep.timed("provision", lambda: provision(env.ctx, pid, _holder(env, i, tag),
                                                    key_type=env.key_type,
                                                    mdoc_batch=env.mdoc_batch))


def _capture(env: Env, rep: SubjectReport, r: ProvisionResult) -> tuple[bytes, Any, bytes]:
    """A presentation and a signature made while valid, each accepted (warms the reader's
    status-list cache, as a venue's reader that saw the phone before)."""
    return _capture_phone(env, rep, r.phone_id, r.password)


def _capture_phone(env: Env, rep: SubjectReport, phone_id: str, password: str) -> tuple[bytes, Any, bytes]:
    response, st = rep.timed("present (valid)", lambda: env.present(phone_id))
    ok, why = env.reader_verdict(response, st)
    _require(ok, f"{phone_id}: fresh presentation refused: {why}")
    cms = rep.timed("sign (valid)", lambda: env.sign(phone_id, password))
    ok, why = env.rp_verdict(cms)
    _require(ok, f"{phone_id}: fresh signature refused: {why}")
    ok, why = env.watch_verdict(env.watch_signer(cms))
    _require(ok, f"{phone_id}: the relying party's watch sees {why} before the revocation")
    return response, st, cms


def _open_account(env: Env, phone_id: str, pin: str) -> str:
    """The relying party opens an account keyed by the phone's login certificate and puts that
    certificate on its watch; the account's reference."""
    der = env.login_certificate(phone_id, pin)
    ref = f"account-{x509.load_der_x509_certificate(der).serial_number:x}"[:64]
    env.rp_watch.add(ref, der)
    return ref


def _account_follows(env: Env, rep: SubjectReport, ref: str, phone_id: str, pin: str) -> None:
    """After the login certificate was replaced: a sweep sees the old one gone, the linkage
    service (利用者証明用電子証明書の新旧紐付け) names its successor, the watch takes it on, and
    the phone's login now sends exactly that certificate: the account followed its holder."""
    rep.timed("relying party: sweep", lambda: env.rp_watch.sweep("crl", refs=[ref]))
    found = rep.timed("relying party: relink", lambda: env.rp_watch.relink(env.linkage, refs=[ref]))
    _require(len(found) == 1 and found[0].outcome == "linked",
             f"{phone_id}: the account's login certificate was not linked: {[f.to_dict() for f in found]}")
    now = format(x509.load_der_x509_certificate(env.login_certificate(phone_id, pin)).serial_number, "x")
    _require(found[0].successor == now, f"{phone_id}: linked to {found[0].successor}, but the login "
             f"sends certificate {now}")
    rep.final["rp_account"] = f"followed to the new login certificate ({found[0].serial[:8]} -> {now[:8]})"


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise DrillFailure(message)


def _propagate(env: Env, rep: SubjectReport, captured: tuple[bytes, Any, bytes], t0: float,
               reader_word: str | None, ocsp_word: str, *, timeout: float | None = None) -> None:
    """Poll the reader, the relying party (OCSP) and its revocation watch (a CRL sweep)
    together until each refuses the captured presentation / signature / signer for its word
    (the watch: the OCSP word, the CRL's reason being the same); record the seconds since
    ``t0`` of each. ``reader_word`` None: the event touches no mdoc, the reader is not polled
    (a certificate renewal). :class:`DrillFailure` after ``timeout`` (:func:`_deadline`)."""
    response, st, cms = captured
    timeout = _deadline(env) if timeout is None else timeout
    ref, _signer = _customer(cms)
    checks = {"reader": (lambda: env.reader_verdict(response, st), reader_word),
              "ocsp": (lambda: env.rp_verdict(cms), ocsp_word),
              "watch": (lambda: env.watch_verdict(ref), ocsp_word)}
    if reader_word is None:
        del checks["reader"]
    seen: dict[str, tuple[float, str]] = {}
    last: dict[str, str] = {}
    while len(seen) < len(checks):
        for name, (check, word) in checks.items():
            if name in seen:
                continue
            ok, why = check()
            last[name] = why
            if not ok and word in why:
                seen[name] = (time.perf_counter() - t0, why)
        if time.perf_counter() - t0 > timeout:
            raise DrillFailure(_not_refused(env, rep.phone, captured, checks, seen, last, timeout))
        if len(seen) < len(checks):
            time.sleep(POLL_S)
    if "reader" in seen:
        rep.reader_propagation_s, rep.reader_reason = seen["reader"]
    rep.ocsp_propagation_s, rep.ocsp_reason = seen["ocsp"]
    rep.watch_propagation_s, rep.watch_reason = seen["watch"]


def _deadline(env: Env) -> float:
    """How long after its request a drill waits for a party to see a change (seconds): the
    published ttl (a reader's cached status list) and 30 s for the workflow and the polls."""
    return env.ttl + 30


def _not_refused(env: Env, phone: str, captured: tuple[bytes, Any, bytes], checks: dict,
                 seen: dict[str, tuple[float, str]], last: dict[str, str], timeout: float) -> str:
    """A drill's note when some party never refused: who, what it was shown (the presentation
    and signature captured before the request), what it was waiting for and what it said last
    (the reader: its status checks, passed or not, which name the list, index and its copy's
    ttl)."""
    response, st, _ = captured
    shown = {"reader": "the presentation captured before the request",
             "ocsp": "the signature captured before the request (OCSP)",
             "watch": "the signer of that signature (its CRL sweep)"}
    missing = sorted(set(checks) - set(seen))
    told = []
    for name in missing:
        said = last.get(name, "nothing")
        if name == "reader":
            try:
                said = f"{said} ({env.reader_status_said(response, st)})"
            except Exception as exc:  # noqa: BLE001 - the note must not hide the failure it reports
                said = f"{said} (its status checks not read again: {type(exc).__name__}: {exc})"
        told.append(f"{name}, shown {shown.get(name, name)}, expected {checks[name][1]!r}, last said: {said}")
    refused = "; ".join(f"{n} refused after {t:.1f} s" for n, (t, _) in sorted(seen.items()))
    return (f"{phone}: not refused by {missing} {timeout:.0f} s after the request: " + " | ".join(told)
            + (f" ({refused})" if refused else ""))


def _customer(cms: bytes) -> tuple[str, Any]:
    """The relying party's reference for the signer of ``cms`` (a drill's signature over
    :data:`CONTENT`), and the signing certificate."""
    from protocols.jpki.cms import verify_detached_signature

    cert = verify_detached_signature(cms, CONTENT).signer_certificate
    return f"customer-{cert.serial_number:x}", cert


def _run_workflow(env: Env, rep: SubjectReport, kind: str, holder_id: str, *,
                  old: str | None = None, new: str | None = None,
                  stop_after: str | None = None, handover_id: str | None = None,
                  actions: HandoverActions | None = None) -> str:
    actions = actions or HandoverActions(env.ctx, key_type=env.key_type,
                                         mdoc_batch=env.mdoc_batch)
    hid = handover_id or wf.create(env.ctx.sessions, kind=kind, holder_id=holder_id,
                                   old_phone_id=old, new_phone_id=new, actor="drill",
                                   mdoc_refusal=mdoc_refusal(env.ctx), jpki_key_type=actions.key_type)
    _record_steps(rep, kind, actions.runner("drill").run(hid, stop_after=stop_after))
    return hid


def _record_steps(rep: SubjectReport, kind: str, h: wf.Handover) -> None:
    """The workflow's persisted step timings into the subject's report (each step once)."""
    for step, t in h.detail.get("timings", {}).items():
        if not any(s.name == f"{kind}.{step}" for s in rep.steps):
            rep.steps.append(Step(f"{kind}.{step}", t["seconds"], t["started"]))


def _accepted(env: Env, phone: str, secret: str, what: str) -> None:
    response, st = env.present(phone)
    ok, why = env.reader_verdict(response, st)
    _require(ok, f"{what} {phone}: presentation refused: {why}")
    ok, why = env.rp_verdict(env.sign(phone, secret))
    _require(ok, f"{what} {phone}: signature refused: {why}")


def _holds_nothing(env: Env, phone: str) -> str:
    from wallet_sim.wallet import WalletError

    try:
        env.present(phone)
    except WalletError as exc:
        return f"phone presents nothing: {exc}"
    raise DrillFailure(f"{phone} still presents after its SE was wiped")


def _fresh_refused(env: Env, phone: str, word: str) -> str:
    response, st = env.present(phone)
    ok, why = env.reader_verdict(response, st)
    _require(not ok and word in why, f"{phone}: fresh presentation not refused for {word}: {why}")
    return why


# --- scenarios (one subject each) -------------------------------------------------------------


def model_change(env: Env, i: int) -> SubjectReport:
    """機種変更: the old phone is online; credentials move to a new phone; the old SE is
    wiped by the TSM after the revocation is published."""
    rep = SubjectReport(phone="")
    r = _new_subject(env, rep, i, "mc")
    captured = _capture(env, rep, r)
    account = _open_account(env, r.phone_id, r.pin)
    new = env.ctx.new_phone()
    rep.new_phone = new
    actions = HandoverActions(env.ctx, key_type=env.key_type, mdoc_batch=env.mdoc_batch)
    t0 = time.perf_counter()
    hid = _run_workflow(env, rep, "model_change", r.holder_id, old=r.phone_id, new=new,
                        stop_after="publish", actions=actions)
    # the old phone still holds its content (wiped last): refused by status, fresh too
    _propagate(env, rep, captured, t0, "revoked (INVALID)", "cessationOfOperation")
    rep.final["old_fresh_presentation"] = _fresh_refused(env, r.phone_id, "INVALID")
    _run_workflow(env, rep, "model_change", r.holder_id, handover_id=hid, actions=actions)
    rep.final["old_after_wipe"] = _holds_nothing(env, r.phone_id)
    _accepted(env, new, actions.secrets[new].password, "new phone")
    rep.final["new_phone"] = "accepted"
    _account_follows(env, rep, account, new, actions.secrets[new].pin)
    return rep


def resale(env: Env, i: int) -> SubjectReport:
    """Sold without revocation: a factory reset leaves the SE as it was, so the reset phone
    still presents until the owner reports it; then it is refused."""
    rep = SubjectReport(phone="")
    r = _new_subject(env, rep, i, "rs")
    captured = _capture(env, rep, r)
    rep.timed("factory reset", lambda: wallet_sim.factory_reset(r.phone_id, env.ctx.home))
    _accepted(env, r.phone_id, r.password, "reset phone (before the report)")
    rep.final["after_reset_before_report"] = "still accepted (the SE survives a reset)"
    t0 = time.perf_counter()
    _run_workflow(env, rep, "resale_report", r.holder_id, old=r.phone_id)
    _propagate(env, rep, captured, t0, "revoked (INVALID)", "cessationOfOperation")
    rep.final["reset_phone_fresh_presentation"] = _fresh_refused(env, r.phone_id, "INVALID")
    return rep


def lost_found(env: Env, i: int) -> SubjectReport:
    """Lost: hold (certificateHold, SUSPENDED); found: user-auth released, signing
    certificate re-issued with a new key, mdoc VALID again."""
    rep = SubjectReport(phone="")
    r = _new_subject(env, rep, i, "lf")
    captured = _capture(env, rep, r)
    t0 = time.perf_counter()
    _run_workflow(env, rep, "lost_hold", r.holder_id, old=r.phone_id)
    _propagate(env, rep, captured, t0, "SUSPENDED", "certificateHold")
    rep.final["held_fresh_presentation"] = _fresh_refused(env, r.phone_id, "SUSPENDED")
    _run_workflow(env, rep, "found", r.holder_id, old=r.phone_id)
    ok, why = env.rp_verdict(captured[2])
    _require(not ok and "cessationOfOperation" in why,
             f"old signing certificate not revoked after found: {why}")
    rep.final["old_signature_after_found"] = why
    t1 = time.perf_counter()
    response, st = env.present(r.phone_id)
    while not (verdict := env.reader_verdict(response, st))[0]:  # until the cache moves on
        _require(time.perf_counter() - t1 < env.ttl + 30, f"found phone refused: {verdict[1]}")
        time.sleep(POLL_S)
    rep.final["release_reader_s"] = time.perf_counter() - t1
    _accepted(env, r.phone_id, r.password, "found phone")
    auth_ok, auth_why = env.rp_verdict(env.sign(r.phone_id, r.pin, "auth"), "auth")
    _require(auth_ok, f"released user-auth certificate refused: {auth_why}")
    rep.final["found_phone"] = "accepted (auth released, signing re-issued, mdoc VALID)"
    return rep


def _lost_then_confirmed(env: Env, rep: SubjectReport, r: ProvisionResult,
                         captured: tuple[bytes, Any, bytes]) -> None:
    """The loss reported (``lost_hold``: SUSPENDED, certificateHold, timed into ``rep``) and
    then confirmed (``lost_confirmed``: revoked, cessationOfOperation, timed into
    ``rep.final``'s ``confirmed_reader_s`` and ``confirmed_ocsp_s``), each seen by the reader,
    OCSP and the CRL watch."""
    t0 = time.perf_counter()
    _run_workflow(env, rep, "lost_hold", r.holder_id, old=r.phone_id)
    _propagate(env, rep, captured, t0, "SUSPENDED", "certificateHold")
    t1 = time.perf_counter()
    _run_workflow(env, rep, "lost_confirmed", r.holder_id, old=r.phone_id)
    confirmed = SubjectReport(phone=r.phone_id)
    _propagate(env, confirmed, captured, t1, "revoked (INVALID)", "cessationOfOperation")
    rep.final["confirmed_reader_s"] = confirmed.reader_propagation_s
    rep.final["confirmed_ocsp_s"] = confirmed.ocsp_propagation_s


def lost_not_found(env: Env, i: int) -> SubjectReport:
    rep = SubjectReport(phone="")
    r = _new_subject(env, rep, i, "ln")
    captured = _capture(env, rep, r)
    _lost_then_confirmed(env, rep, r, captured)
    rep.final["fresh_presentation"] = _fresh_refused(env, r.phone_id, "INVALID")
    return rep


def stolen(env: Env, i: int) -> SubjectReport:
    """盗難: the phone is taken, and whoever took it, knowing the signing password, signs a
    document with a time-stamp before the holder reports the loss (a hold), which is then
    confirmed (``lost_confirmed``: cessationOfOperation). The relying party accepts the
    thief's signature: it was time-stamped before the certificate became invalid (the
    hold's time is its invalidity date). Then the theft and its time come to light, and the
    operator amends the revocation (``mcred revoke --reason keyCompromise --invalid-since``;
    specs/revocation.md, "Amending a revocation"): the relying party refuses the thief's
    signature (OCSP: keyCompromise, invalid since the theft) and its CRL watch reports the
    amendment, each measured from the amendment; the revocation's time stays that of the
    confirmation. The mdoc, INVALID since the confirmation, stays so."""
    from issuer import revocation

    rep = SubjectReport(phone="")
    r = _new_subject(env, rep, i, "st")
    captured = _capture(env, rep, r)
    stolen_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    time.sleep(1.0)  # the thief's time-stamp in a second after the theft's (the CRL says seconds)
    thief = rep.timed("the thief signs, with a time-stamp", lambda: env.sign(r.phone_id, r.password, timestamp=True))
    wait_clear_of_stamp(time.monotonic())  # the hold, later, is told apart from the thief's stamp
    _lost_then_confirmed(env, rep, r, captured)
    ok, why = env.rp_revocation(thief)
    _require(ok and "after the signature's time-stamp" in why,
             f"{r.phone_id}: the thief's signature, stamped before the hold, is not accepted before the "
             f"amendment: {why}")
    rep.final["thief_signature_before_amendment"] = "accepted: time-stamped before the hold (its invalidity date)"
    t2 = time.perf_counter()
    changes = rep.timed("amend to keyCompromise (mcred revoke --invalid-since)", lambda: revocation.revoke(
        env.ctx.sessions, r.phone_id, "keyCompromise", "all", actor="drill", invalid_since=stolen_at))
    _require(changes and all(c.amended_from == "cessationOfOperation" for c in changes),
             f"{r.phone_id}: the amendment changed {[(c.kind, c.amended_from, c.reason) for c in changes]}")
    sub = SubjectReport(phone=r.phone_id)
    # the thief's signature is the one shown now: refused once the amendment is seen
    response, st, _cms = captured
    _propagate(env, sub, (response, st, thief), t2, None, "keyCompromise")
    rep.final["amended_ocsp_s"] = sub.ocsp_propagation_s
    rep.final["amended_watch_s"] = sub.watch_propagation_s
    rep.final["thief_signature_after_amendment"] = sub.ocsp_reason
    rep.final["watch_after_amendment"] = sub.watch_reason
    ok, why = env.reader_verdict(response, st)
    _require(not ok and "INVALID" in why, f"{r.phone_id}: the captured presentation after the amendment: {why}")
    return rep


def renewal(env: Env, i: int) -> SubjectReport:
    """カードの更新: the holder gets a new card (new number, new expiry); everything on the
    phone is superseded and issued anew from it (mcred.handover_actions.renew_card)."""
    rep = SubjectReport(phone="")
    r = _new_subject(env, rep, i, "rn")
    captured = _capture(env, rep, r)
    account = _open_account(env, r.phone_id, r.pin)
    actions = HandoverActions(env.ctx, key_type=env.key_type, mdoc_batch=env.mdoc_batch)
    t0 = time.perf_counter()
    out = renew_card(env.ctx, r.holder_id, reason="drill: カードの更新", key_type=env.key_type,
                     actor="drill", actions=actions)
    _steps(env, rep, "renewal", out["handover"])
    _propagate(env, rep, captured, t0, "revoked (INVALID)", "superseded")
    _accepted(env, r.phone_id, out["secrets"]["password"], "renewed phone")
    rep.new_phone = r.phone_id
    rep.final["renewed_phone"] = "accepted with new credentials"
    rep.final["new_card"] = f"card {out['card']['card_number']} until {out['card']['card_expiry']}"
    _account_follows(env, rep, account, r.phone_id, out["secrets"].get("pin", r.pin))
    return rep


#: Why the certificate-renewal drill renews early (it is audited with the renewal)
CERT_RENEWAL_REASON = "drill: 電子証明書の更新"


def cert_renewal(env: Env, i: int) -> SubjectReport:
    """電子証明書の更新: the holder renews the JPKI certificates alone, the card staying (``mcred
    jpki renew``, a TSM ``renew-jpki`` job): new keys born in the SE, new certificates, the old
    ones superseded; the PIN and the password as the holder set them, the mdoc untouched. On
    today's card (RSA-2048: certificates to the 5th birthday after issue, the card to the
    10th; a next card's run to the card's expiry, which no renewal passes), renewed early with
    its reason (an operator's drill: a phone just provisioned is years from the window). The
    relying party refuses the signature captured before (OCSP and its CRL watch:
    ``superseded``) and accepts one made with the new certificate, both within the drill's
    deadline from the renewal request; the login works, the presentation captured before is
    still VALID, and the account keyed by the login certificate follows."""
    from issuer.db import Credential
    from protocols.jpki.cms import verify_detached_signature

    rep = SubjectReport(phone="")
    pid = env.ctx.new_phone()
    rep.phone = pid
    r = rep.timed("provision (RSA-2048: today's card)", lambda: provision(
        env.ctx, pid, _holder(env, i, "cr"), key_type="rsa2048", mdoc_batch=env.mdoc_batch))
    captured = _capture(env, rep, r)
    account = _open_account(env, pid, r.pin)
    t0 = time.perf_counter()
    out = rep.timed("renew (mcred jpki renew --early)", lambda: renew_jpki(
        env.ctx, pid, early=True, reason=CERT_RENEWAL_REASON, actor="drill"))
    renewed = {slot: format(x509.load_der_x509_certificate(der).serial_number, "x") for slot, _, der in out.renewed}
    _require(sorted(renewed) == ["auth", "sign"], f"{pid}: renewed {sorted(renewed)}, not both certificates")
    _propagate(env, rep, captured, t0, None, "superseded")
    while True:  # a signature with the new certificate: accepted (OCSP good) within the deadline
        cms = env.sign(pid, r.password)
        ok, why = env.rp_verdict(cms)
        if ok:
            break
        _require(time.perf_counter() - t0 < _deadline(env), f"{pid}: the new signature refused: {why}")
        time.sleep(POLL_S)
    signer = format(verify_detached_signature(cms, CONTENT).signer_certificate.serial_number, "x")
    _require(signer == renewed["sign"], f"{pid}: signed with certificate {signer}, not the new {renewed['sign']}")
    rep.final["new_signature_s"] = time.perf_counter() - t0
    rep.final["new_signature"] = f"accepted: signed with the new certificate {signer[:8]}, the password kept"
    ok, why = env.login(pid, r.pin)
    _require(ok, f"{pid}: login refused after the renewal: {why}")
    rep.final["login"] = "accepted with the new user-authentication certificate, the PIN kept"
    ok, why = env.reader_verdict(captured[0], captured[1])
    _require(ok, f"{pid}: the presentation captured before refused after a certificate renewal: {why}")
    rep.final["mdoc"] = "untouched: the presentation captured before still VALID"
    with env.ctx.sessions() as s:
        superseded = s.scalar(select(func.count()).select_from(Credential).where(
            Credential.phone_id == pid, Credential.reason == "superseded"))
    _require(superseded == 2, f"{pid}: {superseded} credential(s) superseded, not the two old certificates")
    _account_follows(env, rep, account, pid, r.pin)
    return rep


def _steps(env: Env, rep: SubjectReport, kind: str, handover_id: str) -> None:
    """:func:`_record_steps` of a workflow another function ran."""
    with env.ctx.sessions() as s:
        _record_steps(rep, kind, s.get(wf.Handover, handover_id))


def moved(env: Env, i: int) -> SubjectReport:
    """転居 (異動): the holder moves to another municipality. The signing certificate (it
    carries the address) is superseded and re-issued with the new address on a new SE key,
    the mdoc re-issued; the user-authentication certificate, which carries no basic four
    data, keeps working, and so does a lease signed with a time-stamp before the move (and
    an XML filing, XAdES B-T, where the xml extra is installed)."""
    from protocols.jpki.cms import verify_detached_signature
    from protocols.jpki.parse import read_basic_four

    rep = SubjectReport(phone="")
    r = _new_subject(env, rep, i, "mv")
    captured = _capture(env, rep, r)
    # a lease signed before the move, with a signature time-stamp (CAdES-T)
    stamped = rep.timed("sign with a time-stamp", lambda: env.sign(r.phone_id, r.password, timestamp=True))
    # and a filing (XAdES B-T), where the xml extra is installed
    filing = rep.timed("sign a filing with a time-stamp", lambda: env.sign_xml(r.phone_id, r.password))
    stamped_at = time.monotonic()
    address = f"大阪府大阪市北区中之島1-3-20 mv-{i}"
    actions = HandoverActions(env.ctx, key_type=env.key_type, mdoc_batch=env.mdoc_batch)
    wait_clear_of_stamp(stamped_at)  # else the move's revocation could not be told from one before the lease
    t0 = time.perf_counter()
    out = change_basic_four(env.ctx, r.holder_id, {"address": address, "prefecture": "大阪府",
                                                   "municipality": "大阪市"},
                            reason="drill: 転居届", actor="drill", actions=actions)
    _steps(env, rep, "moved", out["handover"])
    _propagate(env, rep, captured, t0, "revoked (INVALID)", "superseded")
    ok, why = env.login(r.phone_id, r.pin)
    _require(ok, f"{r.phone_id}: user authentication refused after the move: {why}")
    rep.final["login_after_move"] = "accepted (user-authentication certificate kept)"
    ok, why = env.rp_revocation(stamped)
    _require(ok and "after the signature's time-stamp" in why,
             f"{r.phone_id}: the lease time-stamped before the move is refused: {why}")
    rep.final["signed_before_move"] = "accepted: its time-stamp is before the certificate's revocation"
    if filing is not None:
        ok, why = env.rp_xml_verdict(filing)
        _require(ok, f"{r.phone_id}: the filing (XAdES B-T) signed before the move is refused: {why}")
        rep.final["filing_signed_before_move"] = "accepted: XAdES B-T, stamped before the revocation"
    _accepted(env, r.phone_id, r.password, "moved phone")
    signer = verify_detached_signature(env.sign(r.phone_id, r.password), CONTENT).signer_certificate
    got = read_basic_four(signer).address
    _require(got == address, f"{r.phone_id}: the new signing certificate says {got!r}, not the new address")
    rep.final["new_signing_certificate"] = "carries the new address"
    return rep


def death(env: Env, i: int) -> SubjectReport:
    rep = SubjectReport(phone="")
    r = _new_subject(env, rep, i, "dt")
    captured = _capture(env, rep, r)
    t0 = time.perf_counter()
    _run_workflow(env, rep, "death", r.holder_id, old=r.phone_id)
    _propagate(env, rep, captured, t0, "revoked (INVALID)", "affiliationChanged")
    rep.final["fresh_presentation"] = _fresh_refused(env, r.phone_id, "INVALID")
    return rep


def pin_lock(env: Env, i: int) -> SubjectReport:
    """Wrong user-auth PIN three times during an authentication attempt and wrong signing
    password five times during a signing attempt: the keys lock (6984); the PUK unlocks
    (RESET RETRY COUNTER); both work again. Nothing is revoked."""
    rep = SubjectReport(phone="")
    r = _new_subject(env, rep, i, "pl")
    _capture(env, rep, r)
    wrong = {"auth": "0000" if r.pin != "0000" else "1111",
             "sign": "WRONG000" if r.password != "WRONG000" else "WRONG111"}
    right = {"auth": r.pin, "sign": r.password}
    for slot, tries in (("auth", 3), ("sign", 5)):
        sws = rep.timed(f"{slot}: {tries} wrong PINs", lambda slot=slot, tries=tries: _refusals(
            lambda: env.sign(r.phone_id, wrong[slot], slot), tries + 1))
        _require(sws[tries - 1] == 0x63C0 and sws[tries] == 0x6984,
                 f"{slot}: status words {[hex(s) for s in sws]}")
        try:
            env.sign(r.phone_id, right[slot], slot)
            raise DrillFailure(f"{slot}: a locked key signed")
        except SeError as exc:
            _require(exc.sw == 0x6984, f"{slot}: locked key answered {exc.sw:04X}")
            rep.final[f"{slot}_locked"] = str(exc)
        rep.timed(f"{slot}: PUK unlock", lambda slot=slot: _puk_unlock(env, r, slot))
        ok, why = env.rp_verdict(env.sign(r.phone_id, right[slot], slot), slot)
        _require(ok, f"{slot}: refused after the PUK unlock: {why}")
        rep.final[f"{slot}_after_puk"] = "accepted"
    _accepted(env, r.phone_id, r.password, "phone after PUK")
    return rep


def _refusals(attempt: Callable[[], Any], n: int) -> list[int]:
    """The status words of the SE's refusals over ``n`` calls of ``attempt`` (a wrong PIN,
    a wrong PUK)."""
    sws = []
    for _ in range(n):
        try:
            attempt()
        except SeError as exc:
            sws.append(exc.sw)
    return sws


def _puk_unlock(env: Env, r: ProvisionResult, slot: str) -> None:
    se = wallet_sim.open_secure_element(r.phone_id, env.ctx.home)
    unblock_pin(se.transmit, slot, r.puk.encode())


def puk_lock(env: Env, i: int) -> SubjectReport:
    """The user-authentication PIN locked (three wrong tries at a login), then the PUK too
    (ten wrong PUKs): only the issuer can help. It resets the PIN and the PUK through the
    TSM (a reset-secrets job); the same keys and certificates log in again. Nothing is
    revoked."""
    rep = SubjectReport(phone="")
    r = _new_subject(env, rep, i, "pk")
    _capture(env, rep, r)
    transmit = wallet_sim.open_secure_element(r.phone_id, env.ctx.home).transmit
    wrong_pin = "0000" if r.pin != "0000" else "1111"
    wrong_puk = "00000000" if r.puk != "00000000" else "11111111"
    sws = rep.timed("auth: 3 wrong PINs at a login",
                    lambda: _refusals(lambda: sign_challenge(transmit, wrong_pin.encode(), b"n" * 32), 4))
    _require(sws[2:] == [0x63C0, 0x6984], f"PIN: status words {[hex(s) for s in sws]}")
    sws = rep.timed("10 wrong PUKs", lambda: _refusals(lambda: unblock_pin(transmit, "auth", wrong_puk.encode()), 11))
    _require(sws[9:] == [0x63C0, 0x6984], f"PUK: status words {[hex(s) for s in sws]}")
    try:
        unblock_pin(transmit, "auth", r.puk.encode())
        raise DrillFailure("a locked PUK unblocked the PIN")
    except SeError as exc:
        _require(exc.sw == 0x6984, f"the right PUK, locked, answered {exc.sw:04X}")
    rep.final["puk_locked"] = "the right PUK refused (6984)"
    try:
        env.login(r.phone_id, r.pin)
        raise DrillFailure("the right PIN, locked, logged in")
    except SeError as exc:
        _require(exc.sw == 0x6984, f"the right PIN, locked, answered {exc.sw:04X}")
    reset = rep.timed("issuer reset (TSM reset-secrets)",
                      lambda: reset_secrets(env.ctx, r.phone_id, slots=("auth",), puk=True, actor="drill"))
    ok, why = env.login(r.phone_id, reset.values["pin"])
    _require(ok, f"refused after the reset: {why}")
    unblock_pin(transmit, "auth", reset.values["puk"].encode())  # the new PUK works
    rep.final["after_reset"] = "login accepted with the new PIN; the new PUK unblocks"
    from issuer.db import Credential

    with env.ctx.sessions() as s:
        revoked = s.scalar(select(func.count()).select_from(Credential).where(
            Credential.phone_id == r.phone_id, Credential.status != "valid"))
    _require(revoked == 0, f"{revoked} credential(s) of {r.phone_id} not valid after a reset")
    rep.final["revoked"] = "none"
    _accepted(env, r.phone_id, r.password, "phone after the reset")
    return rep


def _ds_compromise(env: Env, report: DrillReport, workers: int,
                   progress: Callable[[int], None] | None) -> None:
    """Document-signer key compromise (issuer-wide, not one subject at a time): every
    subject's MSO is signed by the active DS; the issuer revokes that DS; a reader checking
    the IACA CRL refuses each captured presentation (``ds_revocation``; propagation measured
    from the revocation request), and each phone's own fresh one; JPKI is untouched; each
    phone gets fresh MSOs under a new DS generation (``mcred mdoc refresh``) and is accepted."""
    from issuer.db import Credential

    def setup(i: int) -> tuple[SubjectReport, ProvisionResult, tuple[bytes, Any], bytes]:
        rep = SubjectReport(phone="")
        r = _new_subject(env, rep, i, "ds")
        response, st = rep.timed("present (valid)", lambda: env.present(r.phone_id))
        ok, why = env.reader_verdict(response, st, ds_crl=True)
        _require(ok, f"{r.phone_id}: fresh presentation refused: {why}")
        cms = rep.timed("sign (valid)", lambda: env.sign(r.phone_id, r.password))
        return rep, r, (response, st), cms

    with ThreadPoolExecutor(max_workers=workers) as pool:
        subjects = list(pool.map(setup, range(1, report.phones + 1)))
    with env.ctx.sessions() as s:
        labels = sorted({label for (label,) in s.query(Credential.issuer_key).filter(
            Credential.phone_id.in_([r.phone_id for _, r, _, _ in subjects]),
            Credential.kind == "mdoc", Credential.status == "valid")})
    svc = mdoc_service(env.ctx)
    t0 = time.perf_counter()
    for label in labels:
        svc.revoke_signer(label, "keyCompromise", actor="drill")
    timeout = env.ttl + 30
    for rep, r, (response, st), _cms in subjects:
        while True:
            ok, why = env.reader_verdict(response, st, ds_crl=True)
            if not ok and "ds_revocation" in why and "keyCompromise" in why:
                rep.reader_propagation_s, rep.reader_reason = time.perf_counter() - t0, why
                break
            if time.perf_counter() - t0 > timeout:
                raise DrillFailure(f"{r.phone_id}: not refused for the revoked DS {timeout:.0f} s "
                                   f"after the request: {why}")
            time.sleep(POLL_S)
    report.bystander = {"phone": "-", "result": f"document signer(s) {', '.join(labels)} revoked "
                                                "(keyCompromise): every phone affected"}

    def recover(item: tuple[SubjectReport, ProvisionResult, tuple[bytes, Any], bytes]) -> None:
        rep, r, _captured, cms = item
        try:
            response, st = env.present(r.phone_id)
            ok, why = env.reader_verdict(response, st, ds_crl=True)
            _require(not ok and "ds_revocation" in why, f"{r.phone_id}: fresh presentation "
                     f"before the refresh not refused: {why}")
            rep.final["before_refresh"] = why
            ok, why = env.rp_verdict(cms)
            _require(ok, f"{r.phone_id}: the JPKI signature was disturbed: {why}")
            rep.final["jpki"] = "unaffected (OCSP good)"
            done = rep.timed("refresh mdocs", lambda: refresh_mdocs(env.ctx, r.phone_id, actor="drill"))
            response, st = env.present(r.phone_id)
            ok, why = env.reader_verdict(response, st, ds_crl=True)
            _require(ok, f"{r.phone_id}: refused after the refresh: {why}")
            rep.final["after_refresh"] = (f"accepted ({len(done.issued)} new MSO(s), "
                                          f"{done.rotated} new device key(s))")
        finally:
            if progress:
                progress(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(recover, subjects))
    report.subjects.extend(rep for rep, _, _, _ in subjects)


def _iaca_rollover(env: Env, report: DrillReport, workers: int,
                   progress: Callable[[int], None] | None) -> None:
    """IACA rollover, published before use (issuer-wide; specs/issuer-keys.md "Publish
    before use"): every subject holds mdocs of the current IACA; the issuer stages the next
    IACA; a reader takes the VICAL (/trust/vical under /trust/vical-ca.pem) after the staging,
    another took it before; the rollover starts the staged IACA and each phone gets fresh
    MSOs under it (``mcred mdoc refresh``). The reader that took the VICAL after the staging
    accepts the captured (old IACA) presentations and the new ones alike; the one that took
    it before refuses the new ones on the chain: why the staging comes first."""
    svc = mdoc_service(env.ctx)

    subjects = _presented_subjects(env, report, workers, "iaca")
    early = _vical_reader(env)  # took the VICAL before the staging: the current IACA alone
    t0 = time.perf_counter()
    staged = svc.stage_iaca(actor="drill")
    stage_s = time.perf_counter() - t0
    late = _vical_reader(env)
    _require(staged.certificate in late.trust.certificates,
             f"the staged IACA {staged.label} is not in the VICAL taken after the staging")
    t0 = time.perf_counter()
    rolled = svc.rollover(actor="drill")
    rollover_s = time.perf_counter() - t0
    _require(rolled.iaca.certificate == staged.certificate,
             f"the rollover started {rolled.iaca.label}, not the staged {staged.label}")
    env.reader.trust.add(rolled.iaca.certificate, source="drill")  # the drill's own readers follow
    report.bystander = {"phone": "-", "result": f"IACA {staged.label} staged ({stage_s:.3f} s) and started "
                                                f"({rollover_s:.3f} s): every phone refreshed under it"}

    def recover(item: tuple[SubjectReport, ProvisionResult, tuple[bytes, Any]]) -> None:
        rep, r, (captured, captured_st) = item
        try:
            ok, why = verdict_of(late, captured, captured_st)
            _require(ok, f"{r.phone_id}: its mdoc of the older IACA refused after the rollover: {why}")
            done = rep.timed("refresh mdocs", lambda: refresh_mdocs(env.ctx, r.phone_id, actor="drill"))
            response, st = env.present(r.phone_id)
            ok, why = verdict_of(late, response, st)
            _require(ok, f"{r.phone_id}: its mdoc of the new IACA refused by a reader that took the VICAL "
                         f"after the staging: {why}")
            ok, stale = verdict_of(early, response, st)
            _require(not ok and "issuer_certificate_chain" in stale,
                     f"{r.phone_id}: a reader that took the VICAL before the staging did not refuse the new "
                     f"IACA's mdoc on its chain: {stale}")
            rep.final["after_rollover"] = (f"accepted by the reader that took the VICAL after the staging "
                                           f"({len(done.issued)} new MSO(s) under {rolled.iaca.label})")
            rep.final["stale_reader"] = stale
        finally:
            if progress:
                progress(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(recover, subjects))
    report.subjects.extend(rep for rep, _, _ in subjects)


def _vical_reader(env: Env) -> Any:  # noqa: ANN401 - a ReaderPipeline
    """A reader that takes the issuer's VICAL now (under /trust/vical-ca.pem), as a reader
    following a VICAL does at each reload, and trusts what it lists."""
    from reader.pipeline import HttpxFetcher, ReaderPipeline, StatusListCache
    from reader.trust import TrustStore

    cas = x509.load_pem_x509_certificates(env.http.get("/trust/vical-ca.pem").content)
    trust = TrustStore()
    trust.import_vical(env.http.get("/trust/vical").content, vical_anchors=cas, now=dt.datetime.now(dt.UTC))
    return ReaderPipeline(trust, status=StatusListCache(HttpxFetcher(client=env.http)))


def _iaca_compromise(env: Env, report: DrillReport, workers: int,
                     progress: Callable[[int], None] | None) -> None:
    """IACA key compromise (issuer-wide; specs/issuer-keys.md "An IACA revoked"): every
    subject holds mdocs of the current IACA, and the operator had staged the next one (a
    reader took the VICAL since). The issuer revokes the current IACA (cACompromise): the
    staged one starts at once; a reader taking the VICAL again refuses each captured
    presentation on its chain (propagation measured from the revocation request); one
    ``mcred mdoc reissue --signer`` gives every phone new MSOs under the staged IACA, which
    the reader that took the VICAL before the compromise accepts without a trust update, as a
    reader taking it afresh does; JPKI is untouched."""
    from mcred.reissue import reissue_signed_by

    svc = mdoc_service(env.ctx)

    def setup(i: int) -> tuple[SubjectReport, ProvisionResult, tuple[bytes, Any], bytes]:
        rep = SubjectReport(phone="")
        r = _new_subject(env, rep, i, "iacax")
        response, st = rep.timed("present (valid)", lambda: env.present(r.phone_id))
        ok, why = env.reader_verdict(response, st)
        _require(ok, f"{r.phone_id}: fresh presentation refused: {why}")
        cms = rep.timed("sign (valid)", lambda: env.sign(r.phone_id, r.password))
        return rep, r, (response, st), cms

    with ThreadPoolExecutor(max_workers=workers) as pool:
        subjects = list(pool.map(setup, range(1, report.phones + 1)))
    if svc.staged_iaca() is None:  # staged ahead, as the operator does (specs/issuer-keys.md "Publish before use")
        svc.stage(actor="drill")
    held = _vical_reader(env)  # took the VICAL after the staging, never again
    compromised = svc.iaca_certificate()
    _require(compromised in held.trust.certificates, "the current IACA is not in the VICAL")
    for _rep, r, (response, st), _cms in subjects:
        ok, why = verdict_of(held, response, st)
        _require(ok, f"{r.phone_id}: refused by the reader of the VICAL before the compromise: {why}")
    t0 = time.perf_counter()
    done = svc.revoke_iaca(next(i.label for i in svc.signers("iaca") if i.active), "cACompromise", actor="drill")
    revoke_s = time.perf_counter() - t0
    successor = done.successor
    _require(successor is not None and successor.staged_since is not None,
             f"the revocation did not start the staged IACA: {successor}")
    env.reader.trust.add(successor.iaca.certificate, source="drill")  # the drill's own readers follow
    timeout = env.ttl + 30
    for rep, r, (response, st), _cms in subjects:
        while True:
            ok, why = verdict_of(_vical_reader(env), response, st)  # the VICAL taken again
            if not ok and "issuer_certificate_chain" in why:
                rep.reader_propagation_s, rep.reader_reason = time.perf_counter() - t0, why
                break
            if time.perf_counter() - t0 > timeout:
                raise DrillFailure(f"{r.phone_id}: not refused by a reader of the VICAL {timeout:.0f} s "
                                   f"after the IACA's revocation: {why}")
            time.sleep(POLL_S)
    t1 = time.perf_counter()
    reissued = reissue_signed_by(env.ctx, done.info.label, actor="drill", workers=workers)
    reissue_s = time.perf_counter() - t1
    mine = {r.phone_id for _, r, _, _ in subjects}
    left = [p for p in reissued.phones if p.phone_id in mine and p.outcome != "reissued"]
    _require(not left, f"not re-issued: {[(p.phone_id, p.outcome, p.detail) for p in left]}")
    # the procedure's last step (specs/issuer-keys.md "A signer's key destroyed"): the
    # compromised key goes; what readers hold of the IACA, its certificate, stays published
    gone = svc.destroy_key(done.info.label, actor="drill")
    _require(gone.changed and not svc.pki.keystore.has(done.info.label),
             f"the compromised key {done.info.label} is still in the key store")
    _require(svc.iaca_certificate(done.info.label).serial_number == compromised.serial_number,
             f"the certificate of {done.info.label} is no longer served once its key is destroyed")
    report.bystander = {"phone": "-", "result": (
        f"IACA {done.info.label} revoked (cACompromise) in {revoke_s:.3f} s, the staged {successor.iaca.label} "
        f"started with it; {len(reissued.phones)} phone(s) re-issued in {reissue_s:.3f} s "
        f"(mcred mdoc reissue --signer {done.info.label}); then its key destroyed, its certificate still served "
        f"(mcred mdoc key destroy {done.info.label})")}
    fresh = _vical_reader(env)

    def recover(item: tuple[SubjectReport, ProvisionResult, tuple[bytes, Any], bytes]) -> None:
        rep, r, _captured, cms = item
        try:
            response, st = env.present(r.phone_id)
            for who, reader in (("the reader that took the VICAL before the compromise", held),
                                ("a reader taking the VICAL afresh", fresh)):
                ok, why = verdict_of(reader, response, st)
                _require(ok, f"{r.phone_id}: its new MSO refused by {who}: {why}")
            ok, why = env.rp_verdict(cms)
            _require(ok, f"{r.phone_id}: the JPKI signature was disturbed: {why}")
            rep.final["jpki"] = "unaffected (OCSP good)"
            rep.final["after_reissue"] = (f"accepted under {successor.iaca.label}, by the reader of the VICAL "
                                          "taken before the compromise (no trust update) and afresh")
        finally:
            if progress:
                progress(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(recover, subjects))
    report.subjects.extend(rep for rep, _, _, _ in subjects)


def _vical_taken(env: Env, vical: bytes, anchors: list[x509.Certificate]) -> Any:  # noqa: ANN401 - a TrustStore
    """The IACAs a reader trusting ``anchors`` for VICALs takes from ``vical`` now, its signer
    looked up on the CRL its certificate names (over the issuer's HTTP routes), as ``mcred
    reader serve --vical`` does; raises :class:`reader.trust.TrustError` saying why not."""
    from reader.ds_crl import HttpCrlFetcher
    from reader.trust import TrustStore
    from reader.vical_crl import VicalSignerCheck

    trust = TrustStore()
    trust.import_vical(vical, vical_anchors=anchors, now=dt.datetime.now(dt.UTC),
                       signer_revocation=VicalSignerCheck(HttpCrlFetcher(env.http)))
    return trust


def _vical_thief(env: Env, ca_label: str) -> tuple[bytes, x509.Certificate]:
    """What whoever holds the leaked key of VICAL CA ``ca_label`` makes with it (the drill
    takes the key from the installation's key store, as it would have leaked): a VICAL signer
    of their own (naming the CA's CRL, as the issuer's do) and, signed by it, a VICAL listing
    the issuer's IACAs and one of their own, its issue ID ahead of the issuer's. The VICAL
    and the thief's IACA."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    from issuer.db import IssuerKey
    from protocols import cbor, iaca
    from protocols.cose import Sign1, key_signer
    from protocols.mdoc.vical import VicalEntry, sign_vical, vical_payload

    svc = mdoc_service(env.ctx)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with env.ctx.sessions() as s:
        ca = x509.load_der_x509_certificate(s.get(IssuerKey, ca_label).certificate)
    mine = ec.generate_private_key(ec.SECP256R1())
    rogue = iaca.sign(iaca.iaca_builder(mine.public_key(), common_name="thief's IACA", not_before=now,
                                        not_after=now + dt.timedelta(days=365),
                                        issuer_alt_name_uri="http://thief.test/iaca",
                                        crl_uri="http://thief.test/iaca.crl"), mine)
    signer = env.ctx.keystore.signer(ca_label).sign_certificate(iaca.vical_signer_builder(
        mine.public_key(), ca, common_name="thief's VICAL signer", not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(days=30), crl_uri=svc.pki.vical_crl_uri_for(ca_label)))
    published = cbor.loads(Sign1.decode(cbor.loads(env.http.get("/trust/vical").content)).payload)
    entries = [VicalEntry(c, (svc.issuer.policy.names.doctype,), svc.pki.config.organization)
               for c in [*svc.trusted_iacas(), rogue]]
    payload = vical_payload(published["vicalProvider"], now, entries, issue_id=published["vicalIssueID"] + 1000,
                            next_update=now + dt.timedelta(hours=24))
    return sign_vical(payload, key_signer(mine), [signer.public_bytes(Encoding.DER)]), rogue


def _vical_ca_compromise(env: Env, report: DrillReport, workers: int,
                         progress: Callable[[int], None] | None) -> None:
    """VICAL CA key compromise (issuer-wide; specs/issuer-keys.md "The VICAL CA rolled over
    or withdrawn"): every subject's mdoc is accepted by a reader of the VICAL. Whoever holds
    the VICAL CA's key certifies a VICAL signer of their own and signs a VICAL listing an IACA
    of theirs, which that reader takes (the threat). The issuer rolls the VICAL CA over as
    compromised (``mcred mdoc vical-ca rollover --compromised``): a reader that takes
    /trust/vical-ca.pem again refuses the thief's VICAL on its chain (measured from the
    request) and takes the issuer's new one; one that kept the old anchor refuses the new
    VICAL, naming the CA it lacks, and the thief's too (the old CA's CRL is gone: it cannot
    be looked up); every phone is accepted as before (the IACAs did not change: nothing is
    re-issued); the withdrawn CA's key is destroyed."""
    from reader.trust import TrustError, VicalAnchorMissing

    svc = mdoc_service(env.ctx)

    def cas() -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(env.http.get("/trust/vical-ca.pem").content)

    subjects = _presented_subjects(env, report, workers, "vicalca")
    old_anchors = cas()
    held = _vical_taken(env, env.http.get("/trust/vical").content, old_anchors)
    ca_label = next(c.label for c in svc.vical_ca_list() if c.state == "current")
    forged, rogue = _vical_thief(env, ca_label)
    _require(rogue in _vical_taken(env, forged, old_anchors).certificates,
             f"the VICAL signed with the leaked key of {ca_label} was not taken before the rollover")
    t0 = time.perf_counter()
    done = svc.rollover_vical_ca(compromised=True, actor="drill")
    rollover_s = time.perf_counter() - t0
    timeout = env.ttl + 30
    while True:  # a reader taking the VICAL CAs again, as its operator does after the notice
        try:
            _vical_taken(env, forged, cas())
            why = "taken"
        except VicalAnchorMissing as exc:
            refused_s, refused_why = time.perf_counter() - t0, str(exc)
            break
        except TrustError as exc:
            why = str(exc)
        if time.perf_counter() - t0 > timeout:
            raise DrillFailure(f"the thief's VICAL not refused by a reader of /trust/vical-ca.pem {timeout:.0f} s "
                               f"after the rollover: {why}")
        time.sleep(POLL_S)
    new_anchors = cas()
    _require(old_anchors[0] not in new_anchors, f"{ca_label} is still in /trust/vical-ca.pem")
    fresh_vical = env.http.get("/trust/vical").content
    fresh = _vical_taken(env, fresh_vical, new_anchors)
    try:
        _vical_taken(env, fresh_vical, old_anchors)
        stale = "taken"
    except VicalAnchorMissing as exc:
        stale = str(exc)
    _require(stale != "taken", f"a reader keeping the withdrawn anchor took the VICAL under {done.current.label}")
    try:
        _vical_taken(env, forged, old_anchors)
        thief_old = "taken"
    except TrustError as exc:
        thief_old = str(exc)
    _require("cannot be looked up" in thief_old,
             f"a reader keeping the withdrawn anchor did not refuse the thief's VICAL for its CRL: {thief_old}")
    gone = svc.destroy_key(ca_label, actor="drill")
    _require(gone.changed and not svc.pki.keystore.has(ca_label), f"the withdrawn key {ca_label} is still kept")
    r = env.http.get(svc.pki.vical_crl_uri_for(ca_label))
    _require(r.status_code == 410, f"the withdrawn CA's CRL answered {r.status_code}")
    report.bystander = {"phone": "-", "result": (
        f"VICAL CA {ca_label} withdrawn (cACompromise) in {rollover_s:.3f} s, {done.current.label} signing the "
        f"VICAL (vicalIssueID {done.vical_issue_id}); the thief's VICAL refused by a reader of /trust/vical-ca.pem "
        f"{refused_s:.3f} s after the request; {ca_label}'s key then destroyed (mcred mdoc key destroy {ca_label})")}

    from reader.pipeline import HttpxFetcher, ReaderPipeline, StatusListCache

    readers = [(who, ReaderPipeline(trust, status=StatusListCache(HttpxFetcher(client=env.http))))
               for who, trust in (("a reader of the VICAL under the new CA", fresh),
                                  ("the reader that kept the trust it had", held))]

    def recover(item: tuple[SubjectReport, ProvisionResult, tuple[bytes, Any]]) -> None:
        rep, r, (captured, captured_st) = item
        try:
            response, st = env.present(r.phone_id)
            for who, reader in readers:
                for what, (resp, transcript) in (("captured", (captured, captured_st)), ("new", (response, st))):
                    ok, why = verdict_of(reader, resp, transcript)
                    _require(ok, f"{r.phone_id}: its {what} presentation refused by {who}: {why}")
            rep.final["after_rollover"] = ("accepted by a reader of the VICAL under the new CA and by the one that "
                                           "kept its trust (nothing re-issued)")
            rep.final["thief_to_fresh_reader"] = refused_why
            rep.final["stale_reader"] = stale
            rep.final["thief_to_stale_reader"] = thief_old
        finally:
            if progress:
                progress(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(recover, subjects))
    report.subjects.extend(rep for rep, _, _ in subjects)


class _Thief:
    """Whoever holds a leaked KLOC CA key: an OCE certificate of their own from it (the
    drill reads the key from ``<home>/tsm-oce/ca-key.pem`` before the rotation deletes it,
    as it would have leaked), shown to an SE over SCP11a as the genuine TSM shows its own."""

    def __init__(self, home: Any) -> None:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        from tsm.oce import CA_FILE, CA_KEY_FILE, oce_dir

        d = oce_dir(home)
        ca_key = serialization.load_pem_private_key((d / CA_KEY_FILE).read_bytes(), None)
        ca = x509.load_pem_x509_certificate((d / CA_FILE).read_bytes())
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        ku = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                           data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                           encipher_only=False, decipher_only=False)
        self.chain = [(x509.CertificateBuilder()
                       .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the TSM")]))
                       .issuer_name(ca.subject).public_key(self.key.public_key())
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                       .add_extension(ku, critical=True)
                       .sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))]

    def opens(self, home: Any, phone_id: str) -> tuple[bool, str]:
        """Whether the SE opens SCP11a to this OCE (from there PUT KEY would replace its
        keys: the drill stops at the open and changes nothing), and what it answered."""
        from cryptography.hazmat.primitives.asymmetric import ec

        from protocols.gp.apdu import CommandApdu
        from protocols.gp.errors import GpError
        from protocols.gp.scp11 import (
            KLOC_KID,
            SCP11A_KID,
            TAG_CA_KLOC_IDENTIFIERS,
            TAG_CERTIFICATE_STORE,
            Scp11aHost,
            certificate_store_query,
            parse_ca_identifiers,
            parse_certificate_bundle,
        )
        from tsm.gp_commands import ISD_AID, get_data, select

        se = wallet_sim.open_secure_element(phone_id, home)
        se.transmit(select(ISD_AID).to_bytes())
        r = se.transmit(CommandApdu(0x80, 0xCA, TAG_CERTIFICATE_STORE >> 8, TAG_CERTIFICATE_STORE & 0xFF,
                                    certificate_store_query(SCP11A_KID, 0x01), 65536).to_bytes())
        sd_key = parse_certificate_bundle(r[:-2])[-1].public_key()
        named = se.transmit(get_data(TAG_CA_KLOC_IDENTIFIERS).to_bytes())
        kvn = next(v for _, kid, v in parse_ca_identifiers(named[:-2]) if kid == KLOC_KID)
        host = Scp11aHost(sd_key, 0x01, oce_certificates=self.chain,
                          oce_exchange=lambda peer: self.key.exchange(ec.ECDH(), peer), kloc_kvn=kvn)
        try:
            for apdu in host.certificate_commands():
                host.on_certificate_response(se.transmit(apdu))
            host.on_mutual_authenticate_response(se.transmit(host.mutual_authenticate()))
        except GpError as exc:
            return False, str(exc)
        finally:
            se.transmit(select(ISD_AID).to_bytes())  # ends the session
        return True, "SCP11a opened: the SE would take its keys"


def _kloc_compromise(env: Env, report: DrillReport, workers: int,
                     progress: Callable[[int], None] | None) -> None:
    """The TSM's KLOC CA key leaks (issuer-wide, every SE that names the CA): whoever holds
    it certifies an OCE key of their own and opens SCP11a on each SE, with the right to
    replace its keys. The operator rotates the CA (``mcred tsm oce-ca --rotate``) and moves
    every SE it reaches (``mcred tsm rotate-kloc``): measured from the rotation to each SE
    refusing the thief's chain; the credentials are untouched (present VALID, sign good); a
    phone from stock, made before the rotation, is moved at its first contact."""
    from mcred.kloc import move_se, rotate_ca
    from tsm.oce import ca_ski

    def setup(i: int) -> tuple[SubjectReport, ProvisionResult]:
        rep = SubjectReport(phone="")
        return rep, _new_subject(env, rep, i, "kloc")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        subjects = list(pool.map(setup, range(1, report.phones + 1)))
    stock = env.ctx.new_phone()  # factory-fresh: its SE names the CA about to leak
    thief = _Thief(env.ctx.home)
    for rep, r in subjects:
        opened, why = thief.opens(env.ctx.home, r.phone_id)
        _require(opened, f"{r.phone_id}: the leaked CA's OCE should open SCP11a before the rotation: {why}")
        rep.final["before_rotation"] = "the leaked CA's OCE opens SCP11a"
    t0 = time.perf_counter()
    old, new = rotate_ca(env.ctx)
    report.bystander = {"phone": "-", "result": f"KLOC CA {ca_ski(old).hex()} leaked: every SE that names it "
                                                f"exposed; rotated to {ca_ski(new).hex()}"}

    def move(item: tuple[SubjectReport, ProvisionResult]) -> None:
        rep, r = item
        try:
            m = rep.timed("move SE to the new KLOC CA", lambda: move_se(env.ctx, r.phone_id, actor="drill"))
            _require(m.kloc == "replaced", f"{r.phone_id}: rotate-kloc said {m.kloc}, not replaced")
            opened, why = thief.opens(env.ctx.home, r.phone_id)
            _require(not opened, f"{r.phone_id}: the leaked CA's OCE still opens SCP11a after the move")
            rep.se_propagation_s, rep.se_reason = time.perf_counter() - t0, f"refused: {why}"
            response, st = env.present(r.phone_id)
            ok, said = env.reader_verdict(response, st)
            _require(ok, f"{r.phone_id}: refused after the move: {said}")
            ok, said = env.rp_verdict(env.sign(r.phone_id, r.password))
            _require(ok, f"{r.phone_id}: signature refused after the move: {said}")
            rep.final["after_move"] = "credentials untouched: present VALID, sign good"
        finally:
            if progress:
                progress(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(move, subjects))
    rep = SubjectReport(phone=stock)
    rep.timed("provision (stock: moved at first contact)",
              lambda: provision(env.ctx, stock, _holder(env, 0, "kloc-stock"), key_type=env.key_type,
                                mdoc_batch=env.mdoc_batch))
    opened, why = thief.opens(env.ctx.home, stock)
    _require(not opened, f"{stock}: the phone from stock still takes the leaked CA's OCE after its first contact")
    rep.se_propagation_s, rep.se_reason = time.perf_counter() - t0, f"refused: {why}"
    rep.final["stock"] = "moved at its first contact (the TSM's retired chain, then PUT KEY of its CA-KLOC key)"
    report.subjects.extend([*(r for r, _ in subjects), rep])


class _WorkerDied(Exception):
    """The drill's stand-in for a TSM worker that died between a step and its commit."""


#: The secrets of the abandoned drill's provisioning (its run never shows generated ones)
_PIN, _PASSWORD = "2468", "DRILL246"


def _holder_of(env: Env, phone_id: str) -> str:
    from issuer.db import Phone

    with env.ctx.sessions() as s:
        holder_id = s.scalar(select(Phone.holder_id).where(Phone.id == phone_id))
    _require(holder_id is not None, f"{phone_id}: no holder")
    return holder_id


def abandoned(env: Env, i: int) -> SubjectReport:
    """A provisioning that never finished: the TSM wrote everything into the phone but the
    job stopped before its last step (here the worker died), and the operator gives it up
    (`mcred tsm abandon`). What the job issued is revoked (cessationOfOperation) and readers
    and relying parties refuse what the phone presented before; the SE is wiped; the holder,
    still registered, is provisioned onto a new phone and accepted there."""
    rep = SubjectReport(phone="")
    pid = env.ctx.new_phone()
    rep.phone = pid

    def stop_before_done(step: str) -> None:
        if step == "write-mdoc":
            raise _WorkerDied(step)

    def provision_until_it_dies() -> bool:
        try:
            provision(env.ctx, pid, _holder(env, i, "ab"), key_type=env.key_type, mdoc_batch=env.mdoc_batch,
                      pin=_PIN, password=_PASSWORD, after_step=stop_before_done)
        except _WorkerDied:
            return True
        return False

    _require(rep.timed("provision (dies before its last step)", provision_until_it_dies),
             f"{pid}: the provisioning did not stop")
    job = unfinished_job(env.ctx, pid)
    _require(job is not None, f"{pid}: no unfinished job")
    holder_id = _holder_of(env, pid)
    captured = _capture_phone(env, rep, pid, _PASSWORD)
    t0 = time.perf_counter()
    gone = rep.timed("abandon (revoke, wipe, let go)", lambda: abandon(env.ctx, job.id, "drill", actor="drill"))
    _require(gone.wiped and gone.released_holder == holder_id, f"{pid}: abandon left {gone.summary()}")
    _propagate(env, rep, captured, t0, "revoked (INVALID)", "cessationOfOperation")
    rep.final["revoked"] = f"{len(gone.revoked)} credential(s) issued by the job"
    rep.final["old_after_wipe"] = _holds_nothing(env, pid)
    new = env.ctx.new_phone()
    rep.new_phone = new
    again = rep.timed("provision the holder onto a new phone",
                      lambda: provision(env.ctx, new, holder_id, key_type=env.key_type, mdoc_batch=env.mdoc_batch))
    _accepted(env, new, again.password, "new phone")
    rep.final["new_phone"] = "accepted"
    return rep


SUBJECTS: dict[str, Callable[[Env, int], SubjectReport]] = {
    "model_change": model_change, "resale": resale, "lost_found": lost_found,
    "lost_not_found": lost_not_found, "stolen": stolen, "renewal": renewal, "cert_renewal": cert_renewal, "moved": moved,
    "death": death,
    "pin_lock": pin_lock,
    "puk_lock": puk_lock, "abandoned": abandoned,
}


# --- running a drill --------------------------------------------------------------------------


def run_drill(ctx: Context, scenario: str, *, phones: int = 1, workers: int | None = None,
              ttl: int = DRILL_TTL, key_type: str = "p384", env: Env | None = None,
              progress: Callable[[int], None] | None = None) -> DrillReport:
    """Run ``scenario`` on ``phones`` subject phones in parallel workers; never raises for a
    failed assertion (the report says ``passed`` and ``error``)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    t0 = time.perf_counter()
    if env is None:
        env = Env(ctx, ttl=ttl, key_type=key_type)
        try:
            return run_drill(ctx, scenario, phones=phones, workers=workers, env=env, progress=progress)
        finally:
            env.close()
    report = DrillReport(scenario, phones, env.ttl)
    if scenario in WHOLE:
        whole = {"ds_compromise": _ds_compromise, "kloc_compromise": _kloc_compromise,
                 "iaca_rollover": _iaca_rollover, "iaca_compromise": _iaca_compromise,
                 "vical_ca_compromise": _vical_ca_compromise}[scenario]
        try:
            whole(env, report, workers or min(phones, 4), progress)
            report.passed = True
        except Exception as exc:  # noqa: BLE001 - reported
            report.error = f"{type(exc).__name__}: {exc}"
        report.seconds = time.perf_counter() - t0
        return report
    try:
        bystander = _new_subject(env, SubjectReport(phone=""), 0, f"by-{scenario}")
        _capture(env, SubjectReport(phone=""), bystander)
        fn = SUBJECTS[scenario]
        errors: list[str] = []

        def one(i: int) -> SubjectReport | None:
            try:
                return fn(env, i)
            except Exception as exc:  # noqa: BLE001 - reported, the drill goes on
                errors.append(f"subject {i}: {type(exc).__name__}: {exc}")
                return None
            finally:
                if progress:
                    progress(1)

        with ThreadPoolExecutor(max_workers=workers or min(phones, 4)) as pool:
            for rep in pool.map(one, range(1, phones + 1)):
                if rep is not None:
                    report.subjects.append(rep)
        _accepted(env, bystander.phone_id, bystander.password, "bystander")
        report.bystander = {"phone": bystander.phone_id, "result": "accepted, undisturbed"}
        report.error = "; ".join(errors) or None
        report.passed = not errors
    except Exception as exc:  # noqa: BLE001
        report.error = f"{type(exc).__name__}: {exc}"
    report.seconds = time.perf_counter() - t0
    return report


def render_markdown(reports: list[DrillReport]) -> str:
    lines = ["# mcred drill report", ""]
    for r in reports:
        lines += [f"## {r.scenario}: {'PASSED' if r.passed else 'FAILED'}", "",
                  f"- phones: {r.phones}; wall time {r.seconds:.2f} s",
                  f"- published TTLs: status list {r.status_list_ttl_s} s; OCSP {r.ocsp_ttl_s} s "
                  "(live responder)"]
        prop = r.propagation()
        for who in ("reader", "ocsp", "watch", "se"):
            s = prop[who]
            if s:
                lines.append(f"- propagation to the {'SEs' if who == 'se' else who}: min {s['min']:.3f} s, median "
                             f"{s['median']:.3f} s, p95 {s['p95']:.3f} s, max {s['max']:.3f} s")
        if r.error:
            lines.append(f"- error: {r.error}")
        if r.bystander and r.bystander.get("phone", "-") != "-":
            lines.append(f"- bystander {r.bystander['phone']}: {r.bystander['result']}")
        elif r.bystander:  # an issuer-wide scenario (ds_compromise): every phone is a subject
            lines.append(f"- scope: {r.bystander['result']}")
        lines += ["", "| phone | step | seconds |", "|---|---|---|"]
        for s in r.subjects:
            for st in s.steps:
                lines.append(f"| {s.phone} | {st.name} | {st.seconds:.3f} |")
        relying = [s for s in r.subjects if any(v is not None for v in (
            s.reader_propagation_s, s.ocsp_propagation_s, s.watch_propagation_s))]
        if relying:
            lines += ["", "| phone | reader propagation s | reader reason | OCSP propagation s | OCSP reason "
                      "| watch (CRL sweep) propagation s | watch reason |",
                      "|---|---|---|---|---|---|---|"]
        for s in relying:
            rp, op, wp = ("" if v is None else f"{v:.3f}" for v in
                          (s.reader_propagation_s, s.ocsp_propagation_s, s.watch_propagation_s))
            lines.append(f"| {s.phone} | {rp} | {_cell(s.reader_reason)} | {op} | "
                         f"{_cell(s.ocsp_reason)} | {wp} | {_cell(s.watch_reason)} |")
        if any(s.se_propagation_s is not None for s in r.subjects):
            lines += ["", "| phone | SE propagation s | SE's answer |", "|---|---|---|"]
            lines += [f"| {s.phone} | {s.se_propagation_s:.3f} | {_cell(s.se_reason)} |"
                      for s in r.subjects if s.se_propagation_s is not None]
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")[:160]
