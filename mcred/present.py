"""Composition of a presentation (issue 6): a phone's wallet presents to a reader, in-process
or over HTTP (the reader service of :mod:`reader.http`), carrying the same
SessionEstablishment / SessionData bytes either way.

Also a drill shortcut used by tests and benchmarks while ``mcred provision`` is not wired:
:func:`personalise_mdoc_directly` opens SCP03 with the phone's factory keys, installs the
mdoc applet and writes IssuerSigned records made by the caller's issuer code through the
applet's own STORE DATA records (specs/mdoc-applet.md section 4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlencode, urljoin

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from protocols import cbor
from protocols import certs as x509certs
from protocols.gp import HostChannel, StaticKeys
from protocols.mdoc import (
    Check,
    DocRequestInfo,
    SessionTranscript,
    VerificationResult,
    dcapi,
    nfc,
    oid4vp,
)
from reader import sessions as reader_sessions
from reader.ds_crl import DsCrlCheck
from reader.errors import ReaderSessionError
from reader.fetch import SESSION_MAX_BYTES, FetchError, fetch, new_client
from reader.http import (
    CROSS_DEVICE,
    ReaderService,
    cross_device_router,
    online_page_router,
    reader_router,
    relying_party_router,
)
from reader.nfc import NfcReaderSession
from reader.nfc import tap as nfc_tap
from reader.online import (
    Oid4vpReaderSession,
    Oid4vpRedirectReaderSession,
    OnlineReaderSession,
    credential_message,
    origin_of,
)
from reader.pipeline import PipelineConfig, ReaderPipeline, StatusListCache
from reader.relying_party import RelyingPartyService
from reader.session import DEFAULT_REQUEST, ReaderOutcome, ReaderSession, RequestSpec
from reader.trust import TrustStore
from tsm import applets as tsm_applets
from tsm import gp_commands
from wallet_sim import app_dir, open_secure_element
from wallet_sim.consent import ConsentPolicy
from wallet_sim.engagement import Engagement
from wallet_sim.nfc import WALLET_AIDS, AidRouter, NfcTag
from wallet_sim.reader_crls import ReaderCrlError, ReaderCrls
from wallet_sim.wallet import (
    CrossDeviceWalletSession,
    DeviceAuthMode,
    HttpExchange,
    OnlineRequestError,
    Wallet,
    WalletEvent,
)

if TYPE_CHECKING:
    from reader.pcsc import PcscCard

WALLET_STATE_FILE = "wallet.json"


# -- wiring ----------------------------------------------------------------------------------


def pem_certificates(paths: Sequence[Path | str]) -> list[x509.Certificate]:
    """Every certificate of these PEM files (trust anchors given on the command line).
    Raises OSError or ValueError naming what could not be read."""
    return [c for p in paths for c in x509certs.load_pem_all(Path(p).read_bytes())]


def reader_crls(sources: Sequence[Path | str], *, fetch_crl: Callable[[str], bytes] | None = None
                ) -> ReaderCrls | None:
    """The reader CA CRLs a wallet is given (``--reader-crl``): files (DER or PEM), and
    http(s) URLs fetched now, bounded in time and size (``fetch_crl``: another fetcher);
    None when there are none. Its :meth:`~wallet_sim.reader_crls.ReaderCrls.refresh` reads
    and fetches them all again. Raises :class:`wallet_sim.reader_crls.ReaderCrlError` (a
    ValueError) naming the source that cannot be had or read, or OSError for a file."""
    if not sources:
        return None
    from reader.ds_crl import CrlFetchError, HttpCrlFetcher

    fetcher = fetch_crl or HttpCrlFetcher()

    def named() -> list[tuple[str, bytes]]:
        out = []
        for source in map(str, sources):
            if source.startswith(("http://", "https://")):
                try:
                    out.append((source, fetcher(source)))
                except CrlFetchError as exc:
                    raise ReaderCrlError(f"--reader-crl {source}: {exc}") from None
            else:
                out.append((source, Path(source).read_bytes()))
        return out

    return ReaderCrls.load(named(), reload=named)


def open_wallet(phone_id: str, home: Path | None, consent: ConsentPolicy, *,
                device_auth: DeviceAuthMode = "signature",
                clock: Callable[[], dt.datetime] | None = None,
                reader_trust_anchors: Sequence = (), fault: str | None = None,
                reader_revocation: ReaderCrls | None = None,
                wrap: Callable[[Callable[[bytes], bytes]], Callable[[bytes], bytes]] | None = None) -> Wallet:
    """The wallet app of a simulated phone, over its SE, its state in the app directory;
    ``fault``: a hostile phone on purpose (:data:`wallet_sim.faults.FAULTS`); ``wrap``: what
    the wallet's APDUs to its SE go through (``mcred --trace``);
    ``reader_revocation``: the reader CA CRLs it holds (:func:`reader_crls`)."""
    from wallet_sim.faults import fault as named_fault

    se = open_secure_element(phone_id, home)
    kwargs = {"clock": clock} if clock else {}
    return Wallet(wrap(se.transmit) if wrap is not None else se.transmit, consent, device_auth=device_auth, reader_trust_anchors=reader_trust_anchors,
                  state_path=app_dir(phone_id, home) / WALLET_STATE_FILE, fault=named_fault(fault),
                  reader_revocation=reader_revocation, **kwargs)


def reader_pipeline(trust_pems: Sequence[Path | str] = (), *, trust: TrustStore | None = None,
                    offline: bool = False, max_offline_age: dt.timedelta = dt.timedelta(hours=24),
                    skew: dt.timedelta = dt.timedelta(minutes=5), require_status: bool = False,
                    clock: Callable[[], dt.datetime] | None = None,
                    fetcher=None, ds_crl: bool | DsCrlCheck = False,
                    ds_crl_max_age: dt.timedelta | None = None) -> ReaderPipeline:
    """The reader's pipeline; ``ds_crl`` adds the ``ds_revocation`` check (the IACA CRL
    fetched from the DS certificate's distribution point, kept at most ``ds_crl_max_age``;
    a :class:`DsCrlCheck` to share or to give a fetcher) and looks the status-list signer up
    on the same CRL."""
    store = trust or TrustStore.from_pem_files(trust_pems)
    kwargs = {"clock": clock} if clock else {}
    if ds_crl is True:
        ds_crl = DsCrlCheck() if ds_crl_max_age is None else DsCrlCheck(max_age=ds_crl_max_age)
    return ReaderPipeline(store, config=PipelineConfig(skew=skew, require_status=require_status),
                          status=StatusListCache(fetcher, offline=offline, max_offline_age=max_offline_age),
                          extra_checks=[ds_crl] if ds_crl else [],
                          signer_revocation=ds_crl.signer_revoked if ds_crl else None, **kwargs)


#: The routes a relying party's web page calls on the reader (specs/presentation.md section
#: 10): open an online session, send it the browser's credential, poll a verdict (a
#: cross-device session's too). The only ones answered to another origin.
PAGE_ROUTES = re.compile(r"/online/sessions(/[^/]+)?|/sessions/[^/]+/result")


class PageCors:
    """CORS (Starlette's ``CORSMiddleware``) on :data:`PAGE_ROUTES` for the page's origin
    (``--origin``) alone: a page at https://rp.example may call a reader at another origin,
    its JSON POST's preflight answered; no credentials (the page sends none, and the reader
    has no cookie), never ``*``. Another origin gets no CORS header (its browser withholds the
    answer; a preflight is a 400), and no other route (in-person sessions, the relying party,
    metrics) answers any."""

    def __init__(self, app: ASGIApp, origin: str) -> None:
        from starlette.middleware.cors import CORSMiddleware

        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=[origin], allow_methods=["GET", "POST"],
                                   allow_headers=["Content-Type"], expose_headers=["Location", "X-Session-Id"],
                                   allow_credentials=False, max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and PAGE_ROUTES.fullmatch(scope.get("path", "")):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def reader_app(service: ReaderService, rp: RelyingPartyService | None = None) -> FastAPI:
    """The stand-alone reader service (``mcred reader serve``): the mdoc sessions, the JPKI
    relying party when ``rp`` is given, and ``/healthz``, ``/readyz``, ``/metrics``
    (:mod:`mcred.reader_ops`; the verdicts counted through ``service.on_outcome``). Errors
    are ``application/problem+json``. The page's routes answer CORS for the service's
    origin (:class:`PageCors`)."""
    from issuer.api import problems
    from mcred import reader_ops
    from mcred.service import (
        AllowEveryMethodMiddleware,
        HeadWithoutContentMiddleware,
        max_body_size,
    )

    app = FastAPI(title="mcred reader", version="0.1.0", max_body_size=max_body_size())
    problems.install(app)
    app.add_middleware(HeadWithoutContentMiddleware)
    app.add_middleware(AllowEveryMethodMiddleware)
    if service.origin:  # outermost of ours: the page reads the refusals (404, 409) too
        app.add_middleware(PageCors, origin=service.origin)
    app.include_router(reader_router(service))
    app.include_router(cross_device_router(service))
    app.include_router(online_page_router(service))
    if rp is not None:
        app.include_router(relying_party_router(rp))
    trust = getattr(service.verifier, "trust", None)  # a ReaderPipeline's store, on its clock
    clock = getattr(service.verifier, "clock", None)
    reader_ops.install(app, service, rp, trust if isinstance(trust, TrustStore) else None,
                       clock if callable(clock) else None)
    return app


# -- the stand-alone reader service ----------------------------------------------------------

#: The environment variable through which `mcred reader serve --workers N` hands its
#: settings (JSON of :class:`ReaderServeConfig`) to each uvicorn worker process.
READER_SERVE_ENV = "MCRED_READER_SERVE"


_DAY, _YEAR = 86_400, 366 * 86_400


class ReaderServeError(ValueError):
    """The reader service's settings are unusable (a file unreadable, a missing anchor, ...)."""


class ReaderParts(NamedTuple):
    """What a reader of given settings is made of (:meth:`ReaderServeConfig.parts`)."""

    pipeline: ReaderPipeline
    request: RequestSpec
    reader_signer: object | None
    reader_chain: list[bytes]
    jpki_roots: list
    reader_auth_all: bool = False


@dataclass(frozen=True)
class ReaderServeConfig:
    """What ``mcred reader serve`` runs: its options, as data (files by path), so that each
    worker process builds the same service (:func:`reader_app_from_env`)."""

    trust: tuple[str, ...] = ()
    vical: str | None = None
    vical_trust: tuple[str, ...] = ()
    request: tuple[str, ...] = ()
    doctype: str = "jp.mcred.mynumber.cardsub.1"
    offline: bool = False
    max_offline_age: int = 86400
    skew: int = 300
    save_dir: str | None = None
    require_status: bool = True
    reader_cert: str | None = None
    reader_key: str | None = None
    ds_crl: bool | None = None
    ds_crl_max_age: int = 3600
    jpki_roots: tuple[str, ...] = ()
    #: time-stamping roots (PEM files) a JPKI signature's time-stamp must chain to
    tsa_roots: tuple[str, ...] = ()
    #: SQLAlchemy URL of the database that keeps the sessions (reader branch only); None:
    #: this process's memory (one process).
    db: str | None = None
    #: The key that seals each session's EReaderKey in the database (a file every process
    #: on that database shares; created if absent). None: a key of this process's own.
    session_key_file: str | None = None
    #: The web origin of the page that makes online requests (ISO/IEC TS 18013-7 Annex C,
    #: POST /online/sessions); None: none are served.
    origin: str | None = None
    #: The URL a phone reaches this reader at (the base of a cross-device session's
    #: request_uri and response_uri); None: no cross-device sessions.
    public_url: str | None = None
    #: The PC/SC reader (a part of its name, or an index) whose taps POST /nfc/taps reads;
    #: None: no NFC reader.
    pcsc_reader: str | None = None
    #: The HCI transport of the Bluetooth controller whose reads POST /ble/reads makes;
    #: None: no BLE.
    ble_hci: str | None = None
    #: ISO/IEC 18013-5 second edition (DeviceRequest 1.1): one readerAuthAll signature over
    #: the whole request instead of a readerAuth per DocRequest (needs the reader's key)
    reader_auth_all: bool = False
    #: alternativeDataElements, ``NS:ID=NS:ID[+NS:ID][|NS:ID...]`` each
    alternatives: tuple[str, ...] = ()
    #: issuerIdentifiers: ask only for documents of the trusted IACAs (their key identifiers)
    issuer_identifiers: bool = False
    #: maximumResponseSize (bytes) of the document asked for; None: no limit
    max_response_size: int | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> ReaderServeConfig:
        m = json.loads(text)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items()})

    def parts(self) -> ReaderParts:
        """The pipeline, the request, readerAuth's signer and chain, and the JPKI roots, as
        every reader of these settings uses them (the service, and a tap over NFC). Raises
        :class:`ReaderServeError` naming what is wrong."""
        from reader.relying_party import load_roots
        from reader.trust import TrustError

        for name, value, most in (("--skew", self.skew, _DAY), ("--max-offline-age", self.max_offline_age, _YEAR),
                                  ("--ds-crl-max-age", self.ds_crl_max_age, _YEAR)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
                raise ReaderServeError(f"{name} {value!r}: seconds from 0 to {most}")
        if not self.doctype:
            raise ReaderServeError("--doctype: an empty docType")
        if self.doctype != DEFAULT_REQUEST.doc_type and not self.request:
            raise ReaderServeError(f"--doctype {self.doctype}: give the items to ask for with --request NS:ID "
                                   "(the default request asks for the card substitute's)")
        try:
            store = TrustStore.from_pem_files([Path(p) for p in self.trust])
            if self.vical is not None:
                anchors = pem_certificates(self.vical_trust)
                store.import_vical(Path(self.vical).read_bytes(), vical_anchors=anchors, now=dt.datetime.now(dt.UTC))
            spec = RequestSpec.parse(self.doctype, list(self.request)) if self.request else DEFAULT_REQUEST
            spec = self._second_edition(spec, store)
            signer, chain = None, []
            if (self.reader_cert is None) != (self.reader_key is None):
                raise ValueError("--reader-cert and --reader-key go together")
            if self.reader_cert is not None:
                from protocols.cose import key_signer

                chain = [c.public_bytes(serialization.Encoding.DER)
                         for c in x509certs.load_pem_all(Path(self.reader_cert).read_bytes())]
                signer = key_signer(serialization.load_pem_private_key(Path(self.reader_key).read_bytes(), None))
            rp_roots = [c for p in self.jpki_roots for c in load_roots(Path(p).read_bytes())]
        except (TrustError, OSError, ValueError, TypeError) as exc:
            raise ReaderServeError(str(exc)) from exc
        if not len(store) and not rp_roots:
            raise ReaderServeError("no trust anchor: give --trust IACA.pem (mcred export iaca) "
                                   "and/or --jpki-roots roots.pem (mcred export jpki-root)")
        if self.reader_auth_all and signer is None:
            raise ReaderServeError("--reader-auth-all signs the request: give --reader-cert and --reader-key")
        pipeline = reader_pipeline(trust=store, offline=self.offline,
                                   max_offline_age=dt.timedelta(seconds=self.max_offline_age),
                                   skew=dt.timedelta(seconds=self.skew), require_status=self.require_status,
                                   ds_crl=(not self.offline) if self.ds_crl is None else self.ds_crl,
                                   ds_crl_max_age=dt.timedelta(seconds=self.ds_crl_max_age))
        return ReaderParts(pipeline, spec, signer, chain, rp_roots, self.reader_auth_all)

    def _second_edition(self, spec: RequestSpec, store: TrustStore) -> RequestSpec:
        """``spec`` with the second edition's requestInfo these settings ask for."""
        if self.alternatives:
            spec = spec.with_alternatives(list(self.alternatives))
        if not self.issuer_identifiers and self.max_response_size is None:
            return spec
        ids: tuple[bytes, ...] = ()
        if self.issuer_identifiers:
            for cert in store.certificates:
                try:
                    ids += (cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest,)
                except x509.ExtensionNotFound:
                    raise ValueError(f"--issuer-identifiers: the IACA {cert.subject.rfc4514_string()} has no "
                                     "subjectKeyIdentifier to name it by") from None
            if not ids:
                raise ValueError("--issuer-identifiers names the trusted IACAs: give --trust IACA.pem")
        if self.max_response_size is not None and (isinstance(self.max_response_size, bool)
                                                   or not isinstance(self.max_response_size, int)
                                                   or self.max_response_size < 1):
            raise ValueError(f"--max-response-size {self.max_response_size!r}: a number of bytes, at least 1")
        info = spec.info or DocRequestInfo()
        return spec.with_info(dataclasses.replace(info, issuer_identifiers=ids,
                                                  maximum_response_size=self.max_response_size))

    def build(self) -> tuple[ReaderService, RelyingPartyService | None, str]:
        """The service, the relying party (with ``jpki_roots``) and a line saying what runs.
        Raises :class:`ReaderServeError` naming what is wrong."""
        parts = self.parts()
        pipeline, spec, signer, chain, rp_roots = parts[:5]
        store = pipeline.trust
        engine = None
        if self.db is not None:
            from mcred.db import make_engine, migrate

            try:
                engine = make_engine(self.db)
                migrate(engine, "reader@head")  # the reader's own table; no issuer's, no TSM's
            except Exception as exc:  # noqa: BLE001 - any driver's error: the URL is unusable
                raise ReaderServeError(f"--db {_redacted(self.db)}: {type(exc).__name__}: {exc}") from exc
        sealer = None
        if engine is not None:
            sealer = (session_sealer(Path(self.session_key_file)) if self.session_key_file
                      else reader_sessions.AesGcmSealer(secrets.token_bytes(32)))
        try:
            tapper = None
            if self.pcsc_reader is not None:
                from reader import pcsc

                tapper = pcsc.tapper(self.pcsc_reader)
            service = ReaderService(pipeline, [spec], save_dir=Path(self.save_dir) if self.save_dir else None,
                                    reader_signer=signer, reader_chain=chain, engine=engine,
                                    session_sealer=sealer, origin=self.origin, public_url=self.public_url,
                                    tapper=tapper, ble_hci=self.ble_hci, reader_auth_all=self.reader_auth_all)
        except ReaderSessionError as exc:
            raise ReaderServeError(f"--origin / --public-url: {exc}") from None
        challenges = None
        if engine is not None:  # shared by the workers, as the sessions are
            from reader.rp_auth import SqlChallengeStore

            challenges = SqlChallengeStore(engine)
        from reader.relying_party import load_roots

        try:
            tsa_roots = [c for p in self.tsa_roots for c in load_roots(Path(p).read_bytes())]
        except (OSError, ValueError) as exc:
            raise ReaderServeError(f"--tsa-roots: {exc}") from exc
        rp = RelyingPartyService(rp_roots, challenges=challenges, tsa_roots=tsa_roots) if rp_roots else None
        where = f"sessions in {_redacted(self.db)}" if self.db else "sessions in memory"
        if self.origin:
            where += f", online requests for {self.origin}"
        if self.pcsc_reader is not None:
            where += f", taps on the PC/SC reader {self.pcsc_reader!r} (POST /nfc/taps)"
        if self.ble_hci is not None:
            where += f", reads over Bluetooth LE on {self.ble_hci} (POST /ble/reads)"
        return service, rp, (f"trusting {len(store)} IACA(s), asking {spec.to_json()}, {where}"
                             + (f"; JPKI relying party trusting {len(rp_roots)} root(s)" if rp else ""))


def _redacted(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL at all: say so without echoing it
        return "(unparsable URL)"


def reader_session_key_path(home: Path) -> Path:
    """The installation's reader session key: ``<home>/reader/session.key``."""
    return Path(home) / "reader" / "session.key"


def session_sealer(key_file: Path) -> reader_sessions.AesGcmSealer:
    """The reader sessions' sealing key from ``key_file`` (64 hex digits; created, mode 0600,
    if absent): every process that shares a sessions database must read the same file."""
    from tsm.keys import load_key_file

    key_file = Path(key_file)
    try:
        key = load_key_file(key_file, 32)
    except ValueError as exc:
        raise ReaderServeError(f"session {exc}") from None
    try:
        return reader_sessions.AesGcmSealer(key)
    except ValueError as exc:
        raise ReaderServeError(f"session key file {key_file}: {exc}") from None


def reader_app_from_env() -> FastAPI:
    """``uvicorn --factory mcred.present:reader_app_from_env``: the stand-alone reader of the
    settings in ``$MCRED_READER_SERVE`` (what ``mcred reader serve --workers N`` runs in
    each worker). Settings that cannot work are one ``error:`` line and exit 2, not a
    traceback."""
    from mcred.fatal import unusable_exits

    with unusable_exits(ReaderServeError):
        text = os.environ.get(READER_SERVE_ENV)
        if not text:
            raise ReaderServeError(f"${READER_SERVE_ENV} is not set (mcred reader serve sets it)")
        service, rp, _ = ReaderServeConfig.from_json(text).build()
    return reader_app(service, rp)


# -- one presentation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Presentation:
    """What a presentation leaves behind: the verdict (result JSON shape), the wallet's view,
    and the bytes needed to verify it again (``mcred verify``)."""

    result: dict
    wallet_events: tuple[WalletEvent, ...] = field(default=())
    device_response: bytes | None = None
    session_transcript: bytes | None = None
    #: opens the session's messages (saved for ``mcred verify``): never in a repr
    e_reader_private_key: bytes | None = field(default=None, repr=False)

    @property
    def valid(self) -> bool:
        return bool(self.result.get("valid"))

    def saved(self) -> bytes:
        """The saved-transcript file (CBOR): what ``mcred verify`` reads."""
        m: dict = {"deviceResponse": self.device_response or b"",
                   "sessionTranscript": self.session_transcript or b""}
        if self.e_reader_private_key:
            m["eReaderPrivateKey"] = self.e_reader_private_key
        return cbor.dumps(m)


def _pkcs8(key) -> bytes | None:
    if key is None:
        return None
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def present_in_process(wallet: Wallet, reader: ReaderSession) -> Presentation:
    session = wallet.start()
    establishment = reader.start(session.engagement.bytes)
    reply = session.receive(establishment)
    outcome = reader.receive(reply or b"")
    session.receive(reader.terminate())
    return _from_outcome(outcome, session, _pkcs8(reader.e_reader_private_key))


def present_nfc_in_process(wallet: Wallet, reader: ReaderSession, *,
                           trace: Callable[[str, bytes], None] | None = None,
                           carrier: nfc.NfcCarrier | None = None, handover: str = "static",
                           on_steps: Callable[[list[str]], None] | None = None, **tap_options) -> Presentation:
    """A tap: the reader's NFC engagement and data retrieval against the phone's wallet,
    through the phone's NFC controller (:class:`wallet_sim.nfc.AidRouter`, the wallet's
    AIDs to its HCE service). ``trace(direction, apdu)`` sees every APDU (``">"`` to the
    phone, ``"<"`` back); ``handover``: the phone's NFC engagement, ``static`` or
    ``negotiated`` (TNEP); ``tap_options`` go to :class:`reader.nfc.NfcReaderSession`."""
    tag = NfcTag(wallet, carrier=carrier, handover=handover)
    route = AidRouter(_no_secure_element, {aid: tag.transmit for aid in WALLET_AIDS})

    tap_session = NfcReaderSession(reader, **tap_options)
    outcome = nfc_tap(_traced(route.transmit, trace), tap_session)
    tag.deactivate()
    if on_steps:
        on_steps(tap_session.steps)
    return _from_outcome(outcome, tag.session, _pkcs8(reader.e_reader_private_key))


def nfc_presentation(parts: ReaderParts, *, wallet: Wallet | None = None, pcsc_reader: str | None = None,
                     wait: float = 30.0, short: bool = False, handover: str = "static",
                     trace: Callable[[str, bytes], None] | None = None,
                     hostile: str | None = None, ble_hci: str | None = None,
                     on_card: Callable[[PcscCard], None] | None = None) -> tuple[Presentation, list[str]]:
    """``mcred reader nfc``: a reader of ``parts`` taps ``wallet`` in-process, or else the
    phone on the PC/SC reader ``pcsc_reader`` (:mod:`reader.pcsc`); the presentation and
    the tap's steps. :class:`reader.pcsc.PcscError` when no phone could be read.
    ``hostile``: a reader wrong on purpose (:data:`reader.hostile.HOSTILE`). ``ble_hci``:
    the reader also takes data retrieval over BLE (preferred), on this HCI transport: when
    the phone's Handover Select offers it, the session goes on over BLE after the tap.
    ``on_card``: given the PC/SC card once the phone is tapped (its reader's event count
    tells a reader loop whether the phone was taken away since)."""
    from reader.hostile import hostile as named_hostile

    session = ReaderSession([parts.request], parts.pipeline, reader_signer=parts.reader_signer,
                            reader_chain=parts.reader_chain, reader_auth_all=parts.reader_auth_all,
                            hostile=named_hostile(hostile))
    lengths = {"max_command": 255, "max_response": 256} if short else {}
    if wallet is not None:
        steps: list[str] = []
        out = present_nfc_in_process(wallet, session, trace=trace, on_steps=steps.extend, handover=handover,
                                     **lengths)
        return out, steps
    from reader.pcsc import tapped

    tap_session = NfcReaderSession(session, carriers=("ble", "nfc") if ble_hci else ("nfc",), **lengths)
    with tapped(pcsc_reader, wait=wait) as card:
        if on_card is not None:
            on_card(card)
        outcome = nfc_tap(_traced(card.transmit, trace), tap_session)
    steps = [f"phone on {card.reader} (ATR {card.atr.hex().upper()})", *tap_session.steps]
    if outcome is None:  # the phone's select settled BLE: the session goes on over the radio
        import asyncio

        from reader import ble as reader_ble

        assert ble_hci is not None and tap_session.handover_select is not None
        got = asyncio.run(reader_ble.read(session, tap_session.handover_select.device_engagement.encode(), ble_hci,
                                          options=tap_session.ble_options, handover=tap_session.handover,
                                          timeout=wait))
        outcome = got.outcome
        steps += [f"BLE: {s}" for s in got.steps]
    return _from_outcome(outcome, None, _pkcs8(session.e_reader_private_key)), steps


def _traced(transmit: Callable[[bytes], bytes],
            trace: Callable[[str, bytes], None] | None) -> Callable[[bytes], bytes]:
    """``transmit`` that shows each command (``">"``) and answer (``"<"``) to ``trace``."""
    if trace is None:
        return transmit

    def traced(apdu: bytes) -> bytes:
        trace(">", apdu)
        answer = transmit(apdu)
        trace("<", answer)
        return answer

    return traced


def _no_secure_element(apdu: bytes) -> bytes:
    """The default route of an in-process tap: no applet of the SE answers a reader of mdocs."""
    return b"\x6a\x82"


class PresentError(Exception):
    """The reader could not be reached or answered outside the protocol."""


def present_over_http(wallet: Wallet, reader_url: str, *, client: httpx.Client | None = None,
                      timeout: float = 30.0,
                      on_engagement: Callable[[Engagement], None] | None = None,
                      token: str | None = None) -> Presentation:
    """The phone side over HTTP: POST the engagement (``mdoc:`` URI), answer the
    SessionEstablishment, receive the reader's SessionData, fetch the verdict. ``token``:
    a bearer token, for the reader mounted in the issuer service (scope ``reader``)."""
    session = wallet.start()
    if on_engagement is not None:
        on_engagement(session.engagement)  # the QR code the holder shows
    with _at_reader(reader_url, client, timeout, token) as (client, base, auth):
        r = fetch(client, "POST", f"{base}/sessions", max_bytes=SESSION_MAX_BYTES,
                  content=session.engagement.uri.encode(), headers={"Content-Type": "text/plain", **auth})
        if r.status != 201:
            raise PresentError(f"reader refused the engagement: HTTP {r.status} {r.preview()}")
        sid = r.headers.get("x-session-id")
        location = r.headers.get("location") or (f"sessions/{sid}" if sid else None)
        if location is None:
            raise PresentError("reader created a session but named neither Location nor X-Session-Id")
        # a reference resolved against the request's URL (RFC 9110 10.2.2, RFC 3986 5): an
        # absolute path names the session wherever the reader is mounted (/reader/sessions/ID)
        url = urljoin(f"{base}/sessions", location)
        reply = session.receive(r.body)
        r = fetch(client, "POST", url, max_bytes=SESSION_MAX_BYTES, content=reply or b"",
                  headers={"Content-Type": "application/cbor", **auth})
        if session.state == "terminated":  # the wallet could not use the reader's first message
            why = next((e for e in reversed(session.events) if e.kind == "error"), None)
            raise PresentError(f"reader at {base}: its SessionEstablishment was not usable "
                               f"({why.detail if why else 'session ended'}); the wallet answered status "
                               f"{why.status if why else '?'} and ended the session")
        if r.status != 200:
            raise PresentError(f"reader refused SessionData: HTTP {r.status} {r.preview()}")
        session.receive(r.body)
        r = fetch(client, "GET", f"{url}/result", max_bytes=SESSION_MAX_BYTES, headers=auth)
        result = _verdict(r, base, "no verdict")
    return _presented(result, session)


@contextlib.contextmanager
def _at_reader(reader_url: str, client: httpx.Client | None, timeout: float, token: str | None):
    """``(client, base URL, auth headers)`` for talking to the reader at ``reader_url``: the
    given client, or one made here (the CA bundle loaded once per process) and closed after;
    a transport failure becomes :class:`PresentError` naming the reader."""
    own = client is None
    http = client or new_client(timeout=timeout)
    base = reader_url.rstrip("/")
    try:
        yield http, base, ({"Authorization": f"Bearer {token}"} if token else {})
    except FetchError as exc:
        raise PresentError(f"reader at {base}: {exc}") from exc
    finally:
        if own:
            http.close()


def _verdict(r, base: str, refused: str) -> dict:  # noqa: ANN001 - reader.fetch.HttpAnswer
    """The reader's verdict out of its answer ``r``; :class:`PresentError` naming ``refused``
    for another status than 200, or a body that is not JSON."""
    if r.status != 200:
        raise PresentError(f"{refused}: HTTP {r.status} {r.preview()}")
    try:
        return json.loads(r.body)
    except ValueError as exc:
        raise PresentError(f"reader at {base}: the verdict is not JSON: {exc}") from None


def _from_outcome(outcome: ReaderOutcome, session, key: bytes | None = None) -> Presentation:  # noqa: ANN001
    """A presentation from the reader's outcome and the wallet session's events (None: the
    wallet is not ours to see, or no session began)."""
    st = outcome.session_transcript
    return Presentation(outcome.result.to_json(), tuple(session.events) if session is not None else (),
                        outcome.device_response, st.raw if st else None, key)


def _presented(result: dict, session) -> Presentation:  # noqa: ANN001 - a WalletSession
    return Presentation(result, tuple(session.events), session.device_response,
                        session.transcript.raw if session.transcript else None)


def present_online_in_process(wallet: Wallet, reader: OnlineReaderSession | Oid4vpReaderSession, *,
                              origin: str | None = None) -> Presentation:
    """An online presentation (ISO/IEC TS 18013-7 Annex C, or OpenID4VP 1.0 with an
    :class:`Oid4vpReaderSession`) with the browser left out: the page's request goes to the
    wallet with ``origin`` (the reader's own unless given: a relaying site would give its
    own), the wallet's answer back to the reader."""
    request = reader.start()
    session = wallet.online(origin or reader.origin)
    answer = session.respond(request)
    outcome = reader.receive(credential_message(answer))
    return _from_outcome(outcome, session)


def present_online_over_http(wallet: Wallet, reader_url: str, *, origin: str | None = None,
                             client: httpx.Client | None = None, timeout: float = 30.0,
                             token: str | None = None, protocol: str = dcapi.PROTOCOL) -> Presentation:
    """An online presentation over HTTP, this process playing the browser: ``POST
    /online/sessions?protocol=...`` for the page's request (``org-iso-mdoc`` or
    ``openid4vp-v1-unsigned``), the wallet answers it for ``origin`` (default: the reader
    URL's own), ``POST /online/sessions/{id}`` with the credential, the verdict."""
    try:
        origin = origin or origin_of(reader_url.rstrip("/"))
    except ReaderSessionError as exc:
        raise PresentError(f"reader URL {exc}") from None
    with _at_reader(reader_url, client, timeout, token) as (client, base, auth):
        sid, request = _open_online_session(client, base, auth, protocol)
        session = wallet.online(origin)
        try:
            answer = session.respond(request)
        except OnlineRequestError as exc:
            raise PresentError(f"reader at {base}: the wallet cannot answer its request: {exc}") from None
        r = fetch(client, "POST", f"{base}/online/sessions/{sid}", max_bytes=SESSION_MAX_BYTES,
                  content=json.dumps(answer).encode(), headers={"Content-Type": "application/json", **auth})
        result = _verdict(r, base, "reader refused the credential")
    return _presented(result, session)


def present_cross_device_in_process(wallet: Wallet, reader: Oid4vpRedirectReaderSession) -> Presentation:
    """A cross-device OpenID4VP presentation with HTTP left out: the reader's authorization
    request URI (the QR code) to the wallet, its request object (signed by the reader, with
    the wallet's nonce when it asked with POST) when it goes by reference, the wallet's form
    back to the reader."""
    opened = reader.start()
    session = wallet.cross_device(opened["uri"])
    jws = None
    if session.fetch is not None:
        jws = reader.request_object(reader.request_claims, reader.reader_signer, reader.reader_chain,
                                    wallet_nonce=session.wallet_nonce)
    post = session.respond(jws)
    outcome = reader.receive(urlencode(post.form).encode())
    return _from_outcome(outcome, session)


@dataclass(frozen=True)
class CrossDeviceAnswer:
    """What the wallet app did with a scanned request: its session (events, transcript) and
    the verifier's answer to the POST (``redirect_uri`` when it sends the holder on)."""

    session: CrossDeviceWalletSession
    status: int
    answer: dict


def _exchange(client: httpx.Client, ex: HttpExchange):  # noqa: ANN202 - reader.fetch.HttpAnswer
    headers = {"Accept": ex.accept}
    content = None
    if ex.form is not None:
        content = urlencode(ex.form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return fetch(client, ex.method, ex.url, max_bytes=SESSION_MAX_BYTES, content=content, headers=headers)


def wallet_cross_device(wallet: Wallet, uri: str, *, client: httpx.Client | None = None,
                        timeout: float = 30.0) -> CrossDeviceAnswer:
    """The phone's wallet app with a verifier's QR code scanned (``openid4vp://?...``): it
    fetches the request object from ``request_uri`` (when the request is by reference),
    asks the holder, and posts its answer to the request's ``response_uri``; over real HTTP,
    with no credentials of its own. :class:`OnlineRequestError` for a request it refuses,
    :class:`PresentError` for a verifier that does not answer as OpenID4VP 1.0 says."""
    session = wallet.cross_device(uri)
    own = client is None
    http = client or new_client(timeout=timeout)
    try:
        body = None
        if session.fetch is not None:
            r = _exchange(http, session.fetch)
            if r.status != 200:  # OID4VP 1.0 5.10.2: the wallet MUST terminate
                raise PresentError(f"request_uri {session.fetch.url[:100]}: HTTP {r.status} {r.preview()}")
            kind = r.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/oauth-authz-req+jwt":
                raise PresentError(f"request_uri {session.fetch.url[:100]}: content type {kind!r}, not "
                                   "application/oauth-authz-req+jwt")
            body = r.body
        post = session.respond(body)
        r = _exchange(http, post)
        try:
            answer = json.loads(r.body) if r.body else {}
        except ValueError:
            answer = {}
        if r.status != 200:
            raise PresentError(f"response_uri {post.url[:100]}: the verifier refused the answer: HTTP {r.status} "
                               f"{r.preview()}")
        return CrossDeviceAnswer(session, r.status, answer if isinstance(answer, dict) else {})
    except FetchError as exc:
        raise PresentError(f"verifier: {exc}") from exc
    finally:
        if own:
            http.close()


def present_cross_device_over_http(wallet: Wallet, reader_url: str, *, client: httpx.Client | None = None,
                                   timeout: float = 30.0, token: str | None = None,
                                   on_uri: Callable[[str], None] | None = None) -> Presentation:
    """A cross-device OpenID4VP presentation over HTTP: this process plays the verifier's
    page (``POST /online/sessions?protocol=openid4vp-cross-device``, the URI shown through
    ``on_uri``, the verdict polled at ``GET /sessions/{id}/result``) and the phone, which
    scans the URI and talks to the reader's request_uri and response_uri itself."""
    with _at_reader(reader_url, client, timeout, token) as (client, base, auth):
        sid, request = _open_online_session(client, base, auth, CROSS_DEVICE)
        uri = request.get("uri") if isinstance(request, dict) else None
        if not isinstance(uri, str):
            raise PresentError(f"reader at {base}: its cross-device request names no authorization request URI")
        if on_uri is not None:
            on_uri(uri)
        try:
            done = wallet_cross_device(wallet, uri, client=client)
        except OnlineRequestError as exc:
            raise PresentError(f"reader at {base}: the wallet cannot answer its request: {exc}") from None
        r = fetch(client, "GET", f"{base}/sessions/{sid}/result", max_bytes=SESSION_MAX_BYTES, headers=auth)
        result = _verdict(r, base, "no verdict")
    return _presented(result, done.session)


def ask_cross_device(reader_url: str, *, on_uri: Callable[[str], None], token: str | None = None,
                     wait: float = 300.0, client: httpx.Client | None = None) -> dict:
    """The verifier's page without a page: opens a cross-device session at the reader, shows
    its authorization request URI through ``on_uri`` (for any wallet to scan), and waits up
    to ``wait`` seconds for the verdict (long polls of ``GET /sessions/{id}/result?wait=``).
    :class:`PresentError` when the reader refuses, or no wallet answered in time."""
    import time

    deadline = time.monotonic() + wait
    with _at_reader(reader_url, client, max(wait, 30.0) + 30.0, token) as (client, base, auth):
        sid, request = _open_online_session(client, base, auth, CROSS_DEVICE)
        uri = request.get("uri") if isinstance(request, dict) else None
        if not isinstance(uri, str):
            raise PresentError(f"reader at {base}: its cross-device request names no authorization request URI")
        on_uri(uri)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PresentError(f"no wallet answered within {wait:.0f} s (session {sid})")
            r = fetch(client, "GET", f"{base}/sessions/{sid}/result?wait={min(25.0, left):.1f}",
                      max_bytes=SESSION_MAX_BYTES, headers=auth, timeout=60.0)
            if r.status != 409:
                return _verdict(r, base, "no verdict")


def _open_online_session(client: httpx.Client, base: str, auth: dict, protocol: str) -> tuple[str, object]:
    """``POST /online/sessions?protocol=...`` at the reader: the session id and its request;
    :class:`PresentError` naming what is wrong with the reader's answer."""
    r = fetch(client, "POST", f"{base}/online/sessions?{urlencode({'protocol': protocol})}",
              max_bytes=SESSION_MAX_BYTES, headers=auth)
    if r.status != 201:
        raise PresentError(f"reader refused an online request: HTTP {r.status} {r.preview()}")
    try:
        opened = json.loads(r.body)
        sid, request = opened["session"], opened["request"]
        if not isinstance(sid, str) or not sid.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"session id {sid!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise PresentError(f"reader at {base}: its online request is not usable: {type(exc).__name__}: {exc}") \
            from None
    return sid, request


ONLINE_PROTOCOLS = (dcapi.PROTOCOL, oid4vp.SIGNED_PROTOCOL, oid4vp.PROTOCOL)
"""The Digital Credentials API protocols the wallet answers, in the order it prefers them."""


def pick_online_request(value, protocol: str | None = None) -> dict:  # noqa: ANN001 - JSON
    """One request the wallet can answer out of what a page passes to the Digital Credentials
    API: a request object (``{"protocol", "data"}``), or the argument of
    ``navigator.credentials.get`` (``{"digital": {"requests": [...]}}``, or ``{"requests":
    [...]}``), from which the first of ``protocol`` (or of :data:`ONLINE_PROTOCOLS`, in that
    order) is taken. :class:`OnlineRequestError` naming what was offered otherwise."""
    if isinstance(value, dict) and isinstance(value.get("digital"), dict):
        value = value["digital"]
    offered = value.get("requests") if isinstance(value, dict) and "protocol" not in value else [value]
    if not isinstance(offered, list) or not all(isinstance(r, dict) for r in offered):
        raise OnlineRequestError("not a Digital Credentials API request: expected {\"protocol\", \"data\"} or "
                                 "{\"digital\": {\"requests\": [...]}}")
    wanted = (protocol,) if protocol else ONLINE_PROTOCOLS
    for name in wanted:
        for request in offered:
            if request.get("protocol") == name:
                return request
    names = ", ".join(str(r.get("protocol"))[:40] for r in offered) or "none"
    raise OnlineRequestError(f"no request this wallet answers ({', '.join(wanted)}) among those offered: {names}")


def verify_saved(data: bytes, pipeline: ReaderPipeline, *, now: dt.datetime | None = None) -> VerificationResult:
    """Verify a saved transcript (see :meth:`Presentation.saved`) with the reader pipeline;
    or an IssuerSigned on its own (CBOR, or the base64url text OpenID4VCI carries), as
    issued: every check but device authentication, its status included."""
    from protocols.cbor import from_text_or_raw
    from protocols.mdoc import is_issuer_signed

    issued = from_text_or_raw(data)
    if is_issuer_signed(issued):
        return pipeline.verify_issuer_signed(issued, now=now)
    try:
        saved = read_saved(data)
        if saved is None:
            raise ValueError("not a saved presentation (a map of deviceResponse and sessionTranscript)")
        response, st, reader_key = saved
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one failed check
        return VerificationResult((Check("saved_transcript", False, f"unreadable: {type(exc).__name__}: {exc}",
                                         code="malformed"),))
    return pipeline.verify(response, session_transcript=st, reader_private_key=reader_key, now=now)


def read_saved(data: bytes) -> tuple[bytes, SessionTranscript, Any] | None:
    """A saved presentation (:meth:`Presentation.saved`): its DeviceResponse, SessionTranscript
    and the reader's ephemeral private key (None when it kept none); None for bytes that are
    no such map. Its parts that do not decode raise (``MdocError``, ``ValueError``)."""
    try:
        m = cbor.loads(data)
    except cbor.CborError:
        return None
    if not isinstance(m, dict) or not isinstance(m.get("deviceResponse"), bytes) or "sessionTranscript" not in m:
        return None
    key = m.get("eReaderPrivateKey")
    return (m["deviceResponse"], SessionTranscript.decode(m["sessionTranscript"]),
            serialization.load_der_private_key(key, None) if key else None)


def new_reader_session(pipeline: ReaderPipeline, requests: Sequence[RequestSpec] = (DEFAULT_REQUEST,),
                       **kwargs) -> ReaderSession:
    return ReaderSession(list(requests), pipeline, **kwargs)


# -- drill shortcut: personalise the mdoc applet directly -----------------------------------


FACTORY_KEYS = StaticKeys(*(bytes.fromhex("404142434445464748494A4B4C4D4E4F"),) * 3)


def _scp03(transmit: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    host = HostChannel(FACTORY_KEYS, 0x33, os.urandom(8), kvn=0, sd_aid=gp_commands.ISD_AID)
    select = gp_commands.select(gp_commands.ISD_AID).to_bytes()
    if transmit(select)[-2:] != b"\x90\x00":
        raise RuntimeError("ISD not selectable")
    r = transmit(host.initialize_update())
    r = transmit(host.on_initialize_update_response(r))
    host.on_external_authenticate_response(r)

    def send(apdu: bytes) -> bytes:
        out = host.unwrap(transmit(host.wrap(apdu)))
        if out[-2:] != b"\x90\x00":
            raise RuntimeError(f"SE answered {out[-2:].hex().upper()} to {apdu[:4].hex().upper()}")
        return out[:-2]

    return send


def personalise_mdoc_directly(
    transmit: Callable[[bytes], bytes],
    slots: Sequence[int],
    challenge_for: Callable[[int], bytes],
    issue: Callable[[int, bytes, bytes], bytes],
) -> dict[int, bytes]:
    """Install the mdoc applet, generate one device key per slot in the SE, have ``issue(slot,
    spki, proof)`` (proof over ``challenge_for(slot) || spki``) make each IssuerSigned, write
    them. Returns ``{slot: IssuerSigned}``. Uses the phone's factory SCP03 keys."""
    ref = tsm_applets.MDOC
    send = _scp03(transmit)
    send(gp_commands.install_for_install(ref.load_file_aid, ref.module_aid, ref.instance_aid).to_bytes())

    def perso(stream: bytes) -> bytes:
        send(gp_commands.install_for_personalization(ref.instance_aid).to_bytes())
        out = b""
        for cmd in gp_commands.store_data_blocks(stream):
            out = send(cmd.to_bytes())
        return out

    perso(tsm_applets.mdoc_generate(list(slots), os.urandom(32)))
    out: dict[int, bytes] = {}
    for slot in slots:
        answer = perso(tsm_applets.mdoc_prove(slot, challenge_for(slot)))
        (kp,) = tsm_applets.parse_mdoc_keys(tsm_applets.answer_of(answer, tsm_applets.MDOC_PROVE, "PROVE"))
        out[slot] = issue(slot, kp.spki, kp.proof)
        perso(tsm_applets.mdoc_write(slot, out[slot]))
    return out
