"""The wiring of a presentation: a phone's wallet app over its SE (:func:`open_wallet`), a
reader's pipeline (:func:`reader_pipeline`), and a reader's settings as data
(:class:`ReaderServeConfig`: what ``mcred reader serve``, ``mcred reader nfc`` and ``mcred
reader ble`` are given). Nothing of the reader service's stack (web framework, session
database) is imported here: a command that verifies or reads in-process needs none of it,
and :meth:`ReaderServeConfig.build` imports it when a service is built. Public names are
also importable from :mod:`mcred.present`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocols import certs as x509certs
from protocols.mdoc import DocRequestInfo
from reader.ds_crl import DsCrlCheck
from reader.errors import ReaderSessionError
from reader.pipeline import PipelineConfig, ReaderPipeline, StatusListCache
from reader.session import DEFAULT_REQUEST, ReaderSession, RequestSpec
from reader.trust import TrustStore, VicalImport
from wallet_sim import app_dir, open_secure_element
from wallet_sim.consent import ConsentPolicy
from wallet_sim.reader_crls import ReaderCrlError, ReaderCrls
from wallet_sim.wallet import DeviceAuthMode, Wallet

if TYPE_CHECKING:
    from reader.http import ReaderService
    from reader.relying_party import RelyingPartyService
    from reader.sessions import AesGcmSealer
    from reader.vical_memory import SqlVicalMemory


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


# -- a reader's settings (the stand-alone service's, and a tap's) ---------------------------

#: The environment variable through which `mcred reader serve --workers N` hands its
#: settings (JSON of :class:`ReaderServeConfig`) to each uvicorn worker process.
READER_SERVE_ENV = "MCRED_READER_SERVE"


_DAY, _YEAR = 86_400, 366 * 86_400


class ReaderServeError(ValueError):
    """The reader service's settings are unusable (a file unreadable, a missing anchor, ...)."""


#: the largest VICAL a reader fetches (AAMVA's, with every jurisdiction's IACAs, is far smaller)
VICAL_MAX_BYTES = 4 * 1024 * 1024


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def read_vical(source: str) -> bytes:
    """The VICAL of ``--vical``: a file, or an issuer's URL (``/trust/vical``) fetched now
    (no redirect followed, at most :data:`VICAL_MAX_BYTES`). Its signature is what makes it
    trusted (``--vical-trust``, always local files), not the channel."""
    if not is_url(source):
        return Path(source).read_bytes()
    from reader.fetch import FetchError, fetch

    try:
        reply = fetch(None, "GET", source, max_bytes=VICAL_MAX_BYTES, timeout=10)
    except FetchError as exc:
        raise ValueError(f"--vical {source}: {exc}") from None
    if reply.status != 200:
        raise ValueError(f"--vical {source}: HTTP {reply.status}")
    return reply.body


class ReloadingVerifier:
    """A stand-alone reader's pipeline, built again when one of its trust files (``--trust``
    PEM bundles, ``--vical`` and ``--vical-trust``) changes: an operator puts the bundle an
    issuer publishes after an IACA rollover (``mcred export iaca``, ``/trust/iaca.pem``) in
    place, and the running reader trusts it, and no longer trusts an IACA the file dropped,
    without a restart. A ``--vical`` given as an issuer's URL (``/trust/vical``) is fetched
    again at the same pace, and taken when its bytes changed (a staged IACA, a rollover). The files are looked at (size and mtime) at most every
    :attr:`check_every` seconds, on a verification; a new pipeline starts with empty caches.
    A file that cannot be read or is no trust material keeps the pipeline as it was, and
    :attr:`last_error` says why (the reader goes on with the trust it had, not with none).

    ``build()`` gives the pipeline of the trust files as they are (fetching a VICAL URL
    itself). ``rebuild(fetched, held)``, when given, is used instead: it builds from the
    bytes of each VICAL URL fetched for the change check (``fetched``, URL -> bytes: one
    fetch per look, and the bytes found changed are the bytes imported) and refuses, with a
    :class:`ReaderServeError`, a VICAL that goes back from ``held``, the last one this
    verifier took (:func:`reader.trust.check_vical_succession`). That memory is kept here,
    not in a trust store, since every reload builds a new store: :attr:`vical` (``vical``:
    that of ``initial``) outlives them, in this process only. A reader with a database
    (``--db``) also has its ``rebuild`` judge the VICAL against the last one any reader of
    that database took and record it there (:class:`reader.vical_memory.SqlVicalMemory`,
    :meth:`ReaderServeConfig.parts`): what it goes back from is then the newer of the two, and
    a restarted reader or a new worker refuses a replayed VICAL too. ``fetch`` fetches a VICAL URL (:func:`read_vical`);
    ``fetched``: the bytes ``initial`` was built from, not fetched again."""

    def __init__(self, build: Callable[[], ReaderPipeline], files: Sequence[Path | str], *,
                 initial: ReaderPipeline | None = None, check_every: float = 30.0,
                 monotonic: Callable[[], float] | None = None,
                 rebuild: Callable[[Mapping[str, bytes], VicalImport | None], ReaderParts] | None = None,
                 fetch: Callable[[str], bytes] | None = None, fetched: Mapping[str, bytes] | None = None,
                 vical: VicalImport | None = None) -> None:
        import threading
        import time

        self._build = build
        self._rebuild = rebuild
        self._fetch = fetch or read_vical
        #: paths, and URLs (a ``--vical`` an issuer publishes) kept as text
        self._files: list[Path | str] = [f if isinstance(f, str) and is_url(f) else Path(f) for f in files]
        self.check_every = check_every
        self._monotonic = monotonic or time.monotonic
        self._lock = threading.Lock()
        self._stamps, got, failed = self._look(fetched or {})
        #: the last VICAL taken (provider, issue ID, date, content): a later one may not go back from it
        self.vical = vical
        if initial is not None:
            self.current = initial
        elif rebuild is not None:
            if failed:
                raise ReaderServeError("; ".join(failed))
            parts = rebuild(got, vical)
            self.current, self.vical = parts.pipeline, parts.vical or vical
        else:
            self.current = build()
        self._checked = self._monotonic()
        self.reloads = 0
        self.last_error: str | None = None
        #: the thread fetching a VICAL URL, while one is (None before the first)
        self.refresher = None

    def _look(self, known: Mapping[str, bytes] = MappingProxyType({})) -> tuple[tuple, dict[str, bytes], list[str]]:
        """The files' stamps (a VICAL URL's: its bytes' hash; None: unreadable), the bytes of
        each VICAL URL (fetched once, unless ``known``), and why a fetch failed."""
        import hashlib

        out: list = []
        fetched: dict[str, bytes] = {}
        failed: list[str] = []
        for f in self._files:
            if isinstance(f, str):  # a VICAL URL: fetched again, known by its bytes
                try:
                    fetched[f] = known[f] if f in known else self._fetch(f)
                except (OSError, ValueError) as exc:
                    out.append(None)
                    failed.append(str(exc))
                else:
                    out.append(hashlib.sha256(fetched[f]).digest())
                continue
            try:
                st = f.stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out), fetched, failed

    def fresh(self) -> ReaderPipeline:
        """The pipeline of the trust files as they are (looked at every ``check_every`` s).
        Files are looked at on the verification that finds the check due (a stat each); a
        VICAL URL is fetched in a thread of its own, so a slow issuer never holds up a
        verification: the pipeline in use serves until the fetched one is built."""
        if self._monotonic() - self._checked < self.check_every:
            return self.current
        with self._lock:
            current = self.current  # what this verification uses, whenever a fetch ends
            if self._monotonic() - self._checked >= self.check_every:
                self._checked = self._monotonic()
                if any(isinstance(f, str) for f in self._files):
                    if self.refresher is None or not self.refresher.is_alive():
                        import threading

                        self.refresher = threading.Thread(target=self._reload, name="mcred-trust-reload",
                                                          daemon=True)
                        self.refresher.start()
                    return current
                self._reload()
        return self.current

    def _reload(self) -> None:
        """Look at the trust files; build the pipeline again when one changed, from the
        VICAL bytes this look fetched."""
        stamps, fetched, failed = self._look()
        if stamps == self._stamps:
            return
        self._stamps = stamps
        vical = None
        try:
            if failed:  # the issuer did not answer: not fetched again, nothing to build from
                raise ReaderServeError("; ".join(failed))
            if self._rebuild is None:
                built = self._build()
            else:
                parts = self._rebuild(fetched, self.vical)
                built, vical = parts.pipeline, parts.vical
        except ReaderServeError as exc:
            self.last_error = f"trust files changed but were not taken: {exc}"
            logging.getLogger("mcred.reader").warning("%s", self.last_error)
        else:
            self.current = built
            if vical is not None:
                self.vical = vical
            self.reloads += 1
            self.last_error = None
            logging.getLogger("mcred.reader").info(
                "trust files changed: now trusting %d IACA(s)", len(self.current.trust))

    def trust(self) -> TrustStore:
        """The trust store of the current pipeline (a callable: it changes on a reload)."""
        return self.fresh().trust

    def verify(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return self.fresh().verify(*args, **kwargs)

    def __getattr__(self, name: str):  # noqa: ANN204
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.fresh(), name)


class ReaderParts(NamedTuple):
    """What a reader of given settings is made of (:meth:`ReaderServeConfig.parts`)."""

    pipeline: ReaderPipeline
    request: RequestSpec
    reader_signer: object | None
    reader_chain: list[bytes]
    jpki_roots: list
    reader_auth_all: bool = False
    #: the VICAL imported (``--vical``), None without one
    vical: VicalImport | None = None


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
    #: Without :attr:`db`: a SQLite file that keeps the last VICAL taken (its
    #: ``reader_vicals`` table alone is used), so that a restart does not take an older one
    #: (``--vical-memory``). None, without ``db``: kept in this process only.
    vical_memory: str | None = None
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

    def parts(self, *, vical_bytes: bytes | None = None, held_vical: VicalImport | None = None,
              vical_memory: SqlVicalMemory | None = None,
              vical_crl_fetch: Callable[[str], bytes] | None = None) -> ReaderParts:
        """The pipeline, the request, readerAuth's signer and chain, the JPKI roots and the
        VICAL imported, as every reader of these settings uses them (the service, and a tap
        over NFC). ``vical_bytes``: the ``--vical`` already read or fetched (not read again);
        ``held_vical``: the VICAL this process took before, which this one may not go back
        from (:func:`reader.trust.check_vical_succession`); ``vical_memory``: the reader's
        database, whose last VICAL taken (by any process on it) this one may not go back from
        either, and where it is recorded as taken, all else being usable (the row only moves
        forward; without one, this process's ``held_vical`` is the only memory). A VICAL whose
        signer's certificate names a CRL distribution point is taken only once that CRL (the
        VICAL CA's, fetched now: :class:`reader.vical_crl.VicalSignerCheck`) says the signer is
        not revoked: a revoked signer, or no usable CRL to be had, refuses it (at start the
        reader does not start; on a reload it keeps the trust it had); not looked up by an
        ``--offline`` reader, which fetches nothing. ``vical_crl_fetch``: fetches that CRL
        (default over HTTP, :class:`reader.ds_crl.HttpCrlFetcher`). Raises
        :class:`ReaderServeError` naming what is wrong."""
        from reader.trust import TrustError, VicalAnchorMissing

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
            vical = None
            if self.vical is not None:
                anchors = pem_certificates(self.vical_trust)
                data = read_vical(self.vical) if vical_bytes is None else vical_bytes
                revocation = None
                if not self.offline:
                    from reader.vical_crl import VicalSignerCheck

                    revocation = VicalSignerCheck(vical_crl_fetch)
                vical = store.import_vical(data, vical_anchors=anchors, now=dt.datetime.now(dt.UTC), held=held_vical,
                                           signer_revocation=revocation)
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
            rp_roots = []
            if self.jpki_roots:  # the relying party's module (and its database's) only when it is wanted
                from reader.relying_party import load_roots

                rp_roots = [c for p in self.jpki_roots for c in load_roots(Path(p).read_bytes())]
        except VicalAnchorMissing as exc:
            raise ReaderServeError(f"{exc}: {self.vical_anchor_hint()}") from exc
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
        if vical is not None and vical_memory is not None:
            vical = self._remember(vical, vical_memory)
        return ReaderParts(pipeline, spec, signer, chain, rp_roots, self.reader_auth_all, vical)

    def vical_anchor_hint(self) -> str:
        """Where the operator of a reader whose ``--vical-trust`` lacks the VICAL's CA gets the
        new one: an mcred issuer publishes its VICAL CAs at ``/trust/vical-ca.pem`` beside
        ``/trust/vical`` (the URL given as ``--vical``, when it is one), and ``mcred export
        vical --ca`` writes them."""
        files = ", ".join(self.vical_trust) or "a --vical-trust file"
        where = "/trust/vical-ca.pem"
        if self.vical is not None and is_url(self.vical) and self.vical.rstrip("/").endswith("/trust/vical"):
            where = self.vical.rstrip("/") + "-ca.pem"
        return (f"fetch the issuer's VICAL CA certificates ({where}; mcred export vical --ca on the issuer) "
                f"into {files} (a running reader takes them at its next look, without a restart)")

    def _remember(self, vical: VicalImport, memory: SqlVicalMemory) -> VicalImport:
        """``vical`` judged against the reader database's last VICAL of its provider and
        recorded there as taken (:meth:`reader.vical_memory.SqlVicalMemory.take`)."""
        from reader.trust import TrustError
        from reader.vical_memory import VicalMemoryError

        where = (f"--db {_redacted(self.db)}" if self.db else f"--vical-memory {self.vical_memory}" if self.vical_memory
                 else "the reader's database")
        try:
            return memory.take(vical)
        except TrustError as exc:
            try:
                taken = memory.taken_at(vical.provider)
            except VicalMemoryError:
                taken = None
            when = f" at {taken.isoformat()}" if taken is not None else ""
            raise ReaderServeError(f"--vical {self.vical}: {exc}; held in {where}, taken by a reader "
                                   f"on that database{when}") from None
        except VicalMemoryError as exc:
            raise ReaderServeError(f"{where}: {exc}") from None

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

    def build(self, *, vical_crl_fetch: Callable[[str], bytes] | None = None
              ) -> tuple[ReaderService, RelyingPartyService | None, str]:
        """The service, the relying party (with ``jpki_roots``) and a line saying what runs;
        ``vical_crl_fetch``: what fetches the VICAL CA's CRL, at start and at each reload
        (:meth:`parts`). Raises :class:`ReaderServeError` naming what is wrong."""
        from reader.http import ReaderService  # the service's stack: the web framework
        from reader.relying_party import RelyingPartyService, load_roots

        engine = None
        if self.db is not None:  # first: it keeps the last VICAL taken, which the one fetched may not go back from
            from mcred.db import make_engine, migrate

            try:
                engine = make_engine(self.db)
                migrate(engine, "reader@head")  # the reader's own table; no issuer's, no TSM's
            except Exception as exc:  # noqa: BLE001 - any driver's error: the URL is unusable
                raise ReaderServeError(f"--db {_redacted(self.db)}: {type(exc).__name__}: {exc}") from exc
        memory = None
        if self.vical_memory is not None and self.db is not None:
            raise ReaderServeError("--vical-memory keeps the last VICAL taken without --db; with --db it is kept "
                                   "in that database, beside the sessions: give one of them")
        if self.vical_memory is not None and self.vical is None:
            raise ReaderServeError("--vical-memory keeps the last VICAL taken: give --vical")
        memory_engine = engine
        if self.vical_memory is not None:
            from mcred.db import make_engine, migrate

            try:
                memory_engine = make_engine(f"sqlite:///{Path(self.vical_memory).resolve()}")
                migrate(memory_engine, "reader@head")
            except Exception as exc:  # noqa: BLE001 - any error: the file is unusable (a directory, no permission)
                raise ReaderServeError(f"--vical-memory {self.vical_memory}: {type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0]}") from None
        if memory_engine is not None and self.vical is not None:
            from reader.vical_memory import SqlVicalMemory

            memory = SqlVicalMemory(memory_engine)
        fetched: dict[str, bytes] = {}
        if self.vical is not None and is_url(self.vical):  # fetched once: what is built and what is watched
            try:
                fetched[self.vical] = read_vical(self.vical)
            except ValueError as exc:
                raise ReaderServeError(str(exc)) from exc
        parts = self.parts(vical_bytes=fetched.get(self.vical or ""), vical_memory=memory,
                           vical_crl_fetch=vical_crl_fetch)
        pipeline, spec, signer, chain, rp_roots = parts[:5]
        store = pipeline.trust
        files = [*self.trust, *([self.vical] if self.vical else []), *self.vical_trust]
        if files:  # trust files put in place while it runs are taken (ReloadingVerifier)
            def rebuild(got: Mapping[str, bytes], held: VicalImport | None) -> ReaderParts:
                return self.parts(vical_bytes=got.get(self.vical or ""), held_vical=held, vical_memory=memory,
                                  vical_crl_fetch=vical_crl_fetch)

            pipeline = ReloadingVerifier(lambda: self.parts(vical_memory=memory, vical_crl_fetch=vical_crl_fetch).pipeline,
                                         files, initial=pipeline,
                                         rebuild=rebuild, fetched=fetched, vical=parts.vical)
        sealer = None
        if engine is not None:
            from reader.sessions import AesGcmSealer

            sealer = (session_sealer(Path(self.session_key_file)) if self.session_key_file
                      else AesGcmSealer(secrets.token_bytes(32)))
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
        try:
            tsa_roots = [c for p in self.tsa_roots for c in load_roots(Path(p).read_bytes())]
        except (OSError, ValueError) as exc:
            raise ReaderServeError(f"--tsa-roots: {exc}") from exc
        rp = RelyingPartyService(rp_roots, challenges=challenges, tsa_roots=tsa_roots) if rp_roots else None
        where = f"sessions in {_redacted(self.db)}" if self.db else "sessions in memory"
        if self.vical is not None and self.db is None:
            where += (f", the last VICAL taken kept in {self.vical_memory}" if self.vical_memory else
                      ", the last VICAL taken kept in this process only (a restart would take an older one: "
                      "--vical-memory FILE or --db keeps it)")
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


def session_sealer(key_file: Path) -> AesGcmSealer:
    """The reader sessions' sealing key from ``key_file`` (64 hex digits; created, mode 0600,
    if absent): every process that shares a sessions database must read the same file."""
    from reader.sessions import AesGcmSealer
    from tsm.keys import load_key_file

    key_file = Path(key_file)
    try:
        key = load_key_file(key_file, 32)
    except ValueError as exc:
        raise ReaderServeError(f"session {exc}") from None
    try:
        return AesGcmSealer(key)
    except ValueError as exc:
        raise ReaderServeError(f"session key file {key_file}: {exc}") from None


def new_reader_session(pipeline: ReaderPipeline, requests: Sequence[RequestSpec] = (DEFAULT_REQUEST,),
                       **kwargs) -> ReaderSession:
    return ReaderSession(list(requests), pipeline, **kwargs)
