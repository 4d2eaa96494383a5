"""The credential lifecycle against one model, under any sequence of what operators do
(hypothesis stateful testing): holders provisioned onto phones, phones reported lost
(hold), found, handed over (model change, resale, loss, death), certificates renewed, cards
renewed, holders moved, mdocs refreshed, credentials revoked, held and released by hand.

Every step goes through the entry points the CLI and the API call (``mcred.provision``,
``mcred.handover_actions``, ``issuer.handover``, ``issuer.revocation``); after each one
the model is held against what outside parties see, in bytes, over the service's HTTP
routes: each partition's CRL (parsed and checked with ``cryptography``) lists exactly the
certificates the model has revoked or held, with their reasons; the OCSP responder says the
same of every certificate; the Status List Token gives every mdoc the model's status; a
reader accepts a presentation from a phone whose mdoc the model has valid and refuses the
others; each phone's SE holds what the model says it holds; no holder has live credentials
on two phones. A step the model says must be refused raises one of the project's typed
errors, and (the invariants checked after it) changes nothing an outsider sees; any other
exception fails the test.

A presentation of each mdoc is made when it is issued and kept, so that the reader's verdict
on an old phone's mdoc is checked after the phone was wiped too. Phones get ids whose order
hypothesis draws (the registry orders a holder's phones by id in places). Each example runs
in a fresh data directory copied from one whose keys are made once; on PostgreSQL in a fresh
schema.

Time is in the model: every example runs under ``time_machine`` (the C-level clock, so every
``datetime.now`` / ``time.time`` the parties imported by name reads it; it ticks on from
where it was put), and a rule moves it forward by minutes to a year, across the status list's
ttl (300 s) and lifetime (24 h), the OCSP responses' nextUpdate (10 min), the CRLs' refresh
(1 h before) and nextUpdate (24 h), the MSOs' validity (30 days) and the DS and responder
certificates' rollover. ``time.monotonic`` is moved with it (an OCSP responder caches its
certificates for a minute of it). Then: a fresh reader refuses an expired mdoc on its
``validity`` check alone (code ``expired``, 5 minutes' skew), whatever the list says; a
reader kept across the example never takes a list older than its ttl (and until then gives
the verdict of the list it fetched) nor an IACA CRL older than an hour; a revoked or held
certificate is on the first CRL built after its end and on none after that (RFC 5280 3.3,
specs/revocation.md 2: a CRL lists those that had not ended at the thisUpdate of the CRL
before it, which the model knows when it saw that CRL) while OCSP still answers for them;
every CRL, OCSP answer (signed by a responder valid now) and status list token served
is current, whatever was cached when it was built; the expiry notices list the valid
certificates ending within 90 days or ended; a renewal without ``--early`` is taken from 3
months before the expiry day, an expired certificate's too. The issuer keeps its timestamps
in Python values (no database server clock), so PostgreSQL is the same.

The IACA's signers are in the model too (specs/revocation.md 6): a DS rollover (``mcred mdoc
ds rollover``), and the revocation of any document signer (``POST /trust/ds-revocations``)
or status-list signer (``mcred status-list signer revoke``) generation seen, named by label
or serial (idempotent; ``affected_mdocs`` counts the valid MSOs it signed). Each new MSO is
signed by the DS the model expects: the last rollover's or the last MSO's, a new generation
once that one is revoked or within 90 days of its end, never a revoked one; no status list
is served signed by a revoked signer. Both readers look the DS and the list's signer up on
the IACA CRL: the fresh one refuses an MSO whose DS the model revoked on ``ds_revocation``
(code ``ds_revoked``) and on that alone when the list says valid; the kept one (its CRL an
hour old at most) refuses by the CRL it holds an MSO of a DS listed there, and fetches
again, within its ttl, a list it cached signed by a signer listed there (the issuer has
re-signed it; a list by a listed signer fails ``status_list_signature``, its
``revocation_status`` unchecked). The IACA CRL lists exactly the revoked signers with their
reason and time, each until one CRL built after its end (RFC 5280 3.3, known from every IACA
CRL a reader or the model fetched). A JPKI relying party kept across the example checks the
unexpired certificates on their partition's CRL through its CRL cache (kept to nextUpdate):
never from a CRL past its nextUpdate, and as the model said when that CRL was fetched.

IACA generations are in the model too (specs/issuer-keys.md, "The mdoc IACA"): a rule rolls
the IACA over (``POST /trust/iaca-rollover``) at any time, its last months and past its end
included, up to three generations; the clock reaches (``advance_to_a_milestone``, within 11
years) the current IACA's last 90 days, its last hours and its end, and each card's last day
and end. Each MSO chains to the IACA current when it was signed, its DS naming that
generation's CRL; a reader holding only the IACAs before it refuses it on its chain; each
list is verified under its mdocs' IACA and signed by a signer it issued; each generation's
CRL (/trust/iaca.crl, /trust/iaca-N.crl) lists exactly its revoked signers (RFC 5280 3.3 as
above), and it and the lists answer 410 iaca-ended past its end; the bundle
(/trust/iaca.pem), which the fresh reader trusts and the kept reader is handed at each
rollover, holds the current IACA first and exactly the older ones not ended with a signer
within its validity. In the current IACA's last 90 days, and past its end, every issuance
of mdocs (a provisioning, a refresh, a model change, a renewal, a card renewal or a move of
a phone with an mdoc) and a DS rollover are refused before anything is done, naming the
rollover; on a card's last day everything is still issued (an MSO runs through it, as a
JPKI certificate does, and no credential outlives the end of that day in Japan); past it a
provisioning, a refresh, a model change, a renewal without a new card and a certificate
renewal are refused, and a card renewal goes through; a revocation and a hold go through
(never refused for the card's end), a found lifts the holds and revokes the signing
certificate without re-issuing it, and a move is recorded in the registry alone, nothing
re-issued (everything on the phone ended with the card).

Staging is in the model too (specs/issuer-keys.md, "Publish before use"): a rule stages the
next IACA (``POST /trust/iaca-stage``) when none is staged, and a staging while one is is
refused (``IacaAlreadyStaged``, 409 iaca-already-staged); the rollover starts the staged IACA
(the very certificate staged, ``staged_since``), or makes a new one when none is, or when the
staged one is in its own last 90 days (the clock reaches them: it can be started no more and
is staged no more). The bundle and the VICAL (``/trust/vical``, imported by
``TrustStore.import_vical`` under ``/trust/vical-ca.pem``) hold the current IACA, then the
staged one, then the older ones still vouching; the issuer has no signer under a staged IACA
and no MSO chains to it before its rollover. Readers take the bundle or the VICAL (with the
installation, right after each staging, and at any time) and are never told again: each
takes every new mdoc of an IACA it took (one it took while staged: its first mdocs verify
with no trust update) and refuses on its chain the mdocs of an IACA staged after it took it.

An IACA revoked is in the model too (specs/issuer-keys.md, "An IACA revoked"): a rule revokes
any generation, current, staged or retired (``POST /trust/iaca-revocations``, by number, label
or serial; cACompromise or another reason; again when revoked already: nothing changes but for
a compromise amending another reason, ``amended_from``). It leaves the bundle and the VICAL;
its CRL and its mdocs' status and identifier lists answer 410 iaca-withdrawn, whatever its end;
its signers are retired; a fresh reader refuses its mdocs on ``issuer_certificate_chain``; the
kept reader, handed each new IACA but never told of a revocation, takes them from the list and
the CRL it keeps until either has to be fetched again, then refuses them (fail closed). The
current one is replaced at once by the staged IACA (the very certificate) or, when none can be
started, a new one, with its signers, as a rollover does: issuance goes on under it. A rule
re-issues (``POST /mdoc-reissues``) the phones holding a valid mdoc of an IACA or document
signer, revoked or not: refused with 409 provisioning-refused for the signer signing now, and
while the current IACA can sign no MSO (its last months, its end) when it has phones; else a
job that refreshes each phone as an mdoc refresh does (re-issued or refused, by the model's
word on a refresh) and leaves a phone whose mdoc of it is on hold (``on-hold``).

A signer's key destroyed is in the model too (specs/issuer-keys.md, "A signer's key destroyed"):
a rule destroys the key of any revoked IACA, document signer or status-list signer (``POST
/trust/key-destructions``, by number, label or serial; again: ``already``) and is refused,
nothing changed, for the one signing now (the current IACA, the staged one, the DS of the next
MSO). Nothing an outsider sees changes: every invariant holds after it as before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509 import ocsp
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import wallet_sim
from issuer import handover as wf
from issuer import revocation
from issuer.holders import HolderError
from issuer.mdoc.errors import IacaAlreadyStaged, MdocKeyError
from issuer.mdoc.pki import PURPOSE_DS, PURPOSE_STATUS
from issuer.mdoc.pki import generation as _generation
from mcred.context import Context
from mcred.handover_actions import HandoverActions, change_basic_four, renew_card
from mcred.jpki_flow import EFS, JpkiCard, SeError
from mcred.provision import (
    ProvisionError,
    check_holder_for_new_phone,
    issuer_port,
    jpki_issuer,
    mdoc_service,
    provision,
    refresh_mdocs,
    renew_jpki,
)
from mcred.samples import HOLDER
from protocols import cose, mdoc
from protocols.birthdays import end_of_day_jst
from protocols.cardsub import parse_holder
from protocols.status.token import verify_status_list_token
from wallet_sim.wallet import SeMdocApplet, SeSigner, WalletError

PIN, PASSWORD, PUK = "1234", "ABC123", "12345678"
SECRETS = {"pin": PIN, "password": PASSWORD, "puk": PUK}
#: two made-up adults, of two municipalities
HOLDERS = (
    dict(HOLDER),
    dict(HOLDER, family_name="見本", given_name="花子", family_name_kana="みほん", given_name_kana="はなこ",
         birth_date="1979-02-03", sex=2, address="大阪府大阪市北区中之島1-3-20", prefecture="大阪府",
         municipality="大阪市北区"),
)
#: where a holder moves to (異動), alternately: another municipality (another CRL
#: partition), then another address in Chiyoda (holder 0's partition); neither is where a
#: holder lives at first, so that each move changes the data
MOVES = (
    {"address": "神奈川県横浜市中区港町1-1", "prefecture": "神奈川県", "municipality": "横浜市中区"},
    {"address": "東京都千代田区永田町1-7-1", "prefecture": "東京都", "municipality": "千代田区"},
)
#: what refuses a step: the project's own errors, each saying what was wrong
REFUSALS = (ProvisionError, wf.WorkflowError, revocation.RevocationError, HolderError)
HOLD = "certificateHold"
LIVE = ("valid", "hold")
KINDS = {"sign": ("sign",), "auth": ("auth",), "mdoc": ("mdoc",), "jpki": ("sign", "auth"),
         "all": ("sign", "auth", "mdoc")}
#: what the parties' clocks are held to (issuer.jpki.publication, issuer.jpki.ocsp,
#: issuer.mdoc.status_lists.StatusPolicy, reader.pipeline.PipelineConfig)
CRL_VALIDITY, CRL_REFRESH = dt.timedelta(hours=24), dt.timedelta(hours=1)
OCSP_VALIDITY = dt.timedelta(minutes=10)
STATUS_TTL, STATUS_LIFETIME = 300, dt.timedelta(seconds=86_400)
READER_SKEW = dt.timedelta(minutes=5)
KEPT_CRL_AGE = dt.timedelta(hours=1)  # reader.ds_crl.DEFAULT_MAX_AGE
#: a DS (and a status-list signer) is replaced this long before its end (MdocPkiConfig.rollover_margin)
DS_MARGIN = dt.timedelta(days=90)
#: the reasons a signer of the IACA is revoked with (issuer.mdoc.pki.SIGNER_REVOCATION_REASONS)
SIGNER_REASONS = ("keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged",
                  "privilegeWithdrawn", "unspecified")
#: the reasons an IACA is revoked with (issuer.mdoc.pki.IACA_REVOCATION_REASONS); a compromise
#: amends another reason recorded (COMPROMISE_REASONS)
IACA_REASONS = ("cACompromise", *SIGNER_REASONS)
COMPROMISES = ("cACompromise", "keyCompromise")
#: how far the clock runs on between what is served and the model's reading of it
SLACK = dt.timedelta(seconds=60)
#: within this of a credential's end, the model takes either verdict (the clock ticks on)
EDGE = dt.timedelta(minutes=2)
#: how far the clock moves in a step: within and past the status list's ttl (300 s), the
#: OCSP answers' nextUpdate (10 min), the CRLs' refresh (an hour before nextUpdate) and
#: nextUpdate (24 h; the status list's exp too), past a week, an MSO's validity (30 days)
CLOCK_STEPS = tuple(dt.timedelta(**kw) for kw in (
    {"minutes": 2}, {"minutes": 6}, {"minutes": 11}, {"hours": 2}, {"hours": 23, "minutes": 30},
    {"hours": 25}, {"days": 8}, {"days": 31}, {"days": 400}, {"days": 1600}))
#: and at most this far in all: past the DS and OCSP responder certificates' year (each
#: rolled over), past an RSA card's certificates (to the 5th birthday: the holders' are
#: 4 to 5 years away), past the cards' 10th birthday (9 to 10 years away) and the first
#: IACA's 10 years (MdocPkiConfig.iaca_validity)
MAX_TRAVEL = dt.timedelta(days=11 * 365)
#: no document signer is made within this of the current IACA's end: issuance is refused,
#: naming the IACA rollover (MdocPkiConfig.rollover_margin, as for the signers)
IACA_MARGIN = dt.timedelta(days=90)
#: IACA generations an example makes at most (each one more CRL and list partition to check)
MAX_IACAS = 3
#: readers kept that took the bundle or the VICAL once (the last ones: each judges every new mdoc)
KEPT_TAKERS = 3
#: how far past a credential's end :meth:`Lifecycle.advance_past_an_end` goes
PAST_END = READER_SKEW + dt.timedelta(minutes=5)
#: how far from the bounds of the travel left a time must be to be offered as a destination
#: (the real clock ticks between a run and its replay; seconds, not minutes)
CHOICE_MARGIN = dt.timedelta(minutes=2)
#: an expiry notice's horizon asked (days: the renewal window's 3 months, about)
NOTICE_WINDOW = dt.timedelta(days=90)
#: what ``time.monotonic`` is moved by (tests/test_lifecycle_model.quiet_disk patches it)
_MONOTONIC_SHIFT = [0.0]
WORKFLOW_REASONS = {"resale_report": "cessationOfOperation", "lost_confirmed": "cessationOfOperation",
                    "death": "affiliationChanged"}


@dataclass
class Cred:
    """One credential the model knows: a certificate (``serial``) or an mdoc (``uri``, ``idx``)."""

    kind: str  # sign | auth | mdoc
    phone: str
    holder: int
    status: str = "valid"
    reason: str | None = None
    serial: int = 0
    der: bytes = b""
    crl: str = ""  # the path of the certificate's CRL
    uri: str = ""
    idx: int = -1
    #: the certificate's notAfter, the MSO's validUntil
    not_after: dt.datetime | None = None
    #: an mdoc's DS certificate's notAfter and serial, and the generation of its IACA
    ds_until: dt.datetime | None = None
    ds_serial: int = 0
    gen: int = 1


@dataclass
class SignerModel:
    """A document signer or status-list signer certificate of the IACA the model knows."""

    purpose: str  # ds | status-signer
    label: str
    serial: int
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: str | None = None
    #: the generation of the IACA that issued it
    gen: int = 1


@dataclass
class TrustTaken:
    """A reader that took the IACAs a reader needs (the trust bundle, /trust/iaca.pem, or the
    VICAL, /trust/vical) once, and is never told again."""

    via: str  # bundle | vical
    at: dt.datetime
    #: the IACA generations it took, and the one staged then (None: none)
    gens: frozenset[int]
    staged: int | None
    trust: object  # reader.trust.TrustStore


@dataclass
class PhoneModel:
    holder: int
    key_type: str
    state: str = "active"  # active | lost | retired | revoked
    #: the credential of each kind the phone's SE holds (key into Machine.creds)
    held: dict | None = None


# --- the installation, made once and copied for each example --------------------------------

_TEMPLATE: dict[str, Path] = {}


def _template() -> Path:
    """A data directory whose issuer keys (JPKI CAs, IACA, DS, status-list signer), TSM keys
    and SE maker are made: copied for each example (making them takes most of a second)."""
    if "home" not in _TEMPLATE:
        import atexit

        where = Path(tempfile.mkdtemp(prefix="mcred-life-template-"))
        atexit.register(shutil.rmtree, where, ignore_errors=True)
        home = where / "home"
        home.mkdir()
        ctx = Context.open(home, f"sqlite:///{home / 'mcred.sqlite3'}")
        issuer_port(ctx)
        mdoc_service(ctx).setup()
        ctx.new_phone()  # the SE maker and the TSM's OCE identity
        ctx.engine.dispose()
        _TEMPLATE["home"] = home
        _TEMPLATE["at"] = dt.datetime.now(dt.UTC)
    return _TEMPLATE["home"]


#: the ids the next phones get (wallet_sim.phone draws them from secrets.token_hex): each
#: starts with a byte hypothesis draws, so that the order of a holder's phones by id, which
#: the registry's queries may meet, is explored and replayed, not left to chance
_IDS: list[str] = []


def _phone_id(nbytes: int) -> str:
    import secrets

    return _IDS.pop(0) if _IDS else secrets.token_hex(nbytes)


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def _crl_entries(crl: x509.CertificateRevocationList) -> dict[int, tuple[str, dt.datetime]]:
    """A CRL's entries: {serial: (CRLReason name, revocationDate)}, ``unspecified`` for an
    entry without a reason code (RFC 5280 5.3.1)."""
    out = {}
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        out[entry.serial_number] = (reason, entry.revocation_date_utc)
    return out


class Lifecycle(RuleBasedStateMachine):
    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mcred-life-"))
        home = self.dir / "home"
        self.schema = None
        if self.backend == "sqlite":
            shutil.copytree(_template(), home)
            database = f"sqlite:///{home / 'mcred.sqlite3'}"
        else:
            import sqlalchemy as sa
            from conftest import PG_URL

            home.mkdir()
            self.schema = f"t_{uuid.uuid4().hex[:12]}"
            admin = sa.create_engine(PG_URL)
            with admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
            admin.dispose()
            sep = "&" if "?" in PG_URL else "?"
            database = f"{PG_URL}{sep}options=-csearch_path%3D{self.schema}"
        self.ctx = Context.open(home, database)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from fastapi.testclient import TestClient
        from mcred.service import create_app

        self.http = TestClient(create_app(self.ctx), base_url=self.ctx.public_url)
        from issuer.api.auth import create_token

        _tid, token = create_token(self.ctx.sessions, ["operator", "issuer"], "model")
        self.auth = {"authorization": f"Bearer {token}"}
        jp = jpki_issuer(self.ctx)
        self.roots = {slot: jp.roots(slot) for slot in ("sign", "auth")}
        #: each slot's issuing JPKI root's end (the model rolls no JPKI root over): no
        #: certificate is issued that would outlive it (specs/issuer-keys.md, "The JPKI root
        #: generations"), which the clock's eleven years can reach for a next card's ten
        self.jpki_root_end = {slot: jp.root(slot).not_valid_after_utc for slot in ("sign", "auth")}
        #: every IACA generation made, by its number: the first made with the installation,
        #: then one per staging or rollover that made one (a staged IACA never started keeps
        #: its number); the current one's and the staged one's (None: none), and when that was
        #: staged
        self.iacas: list[x509.Certificate] = [mdoc_service(self.ctx).iaca_certificate()]
        self.current = 1
        self.staged: int | None = None
        self.staged_at: dt.datetime | None = None
        #: the IACA generations revoked (taken out of trust): their reason and when
        self.withdrawn: dict[int, tuple[str, dt.datetime]] = {}
        #: the signers whose private key was destroyed (:meth:`destroy_key`), by label: when
        self.destroyed: dict[str, dt.datetime] = {}
        self.holder_ids: dict[int, str] = {}
        self.phones: dict[str, PhoneModel] = {}
        self.creds: dict[object, Cred] = {}
        #: the thisUpdate of every CRL seen, by its path and number
        self.crls_seen: dict[str, dict[int, dt.datetime]] = {}
        self.moves: dict[int, int] = {}
        #: each holder's card's last day (the 10th birthday after it was issued)
        self.card_until: dict[int, dt.date] = {}
        self.made = 0
        #: a presentation of each mdoc made when it was issued: (DeviceResponse, transcript)
        self.captured: dict[object, tuple[bytes, object]] = {}
        from reader.ds_crl import DsCrlCheck
        from reader.pipeline import HttpxFetcher, StatusListCache

        #: a reader kept across the example, with its status-list cache and its IACA CRL
        #: cache (document and status-list signers looked up), and what the model said of
        #: each list's entries when that reader last fetched it: {uri: {idx: status}}
        from reader.trust import TrustStore

        self.kept_lists = StatusListCache(HttpxFetcher(client=self.http))
        self.kept_ds_crl = DsCrlCheck(self._iaca_fetcher())
        #: its trust store: the first IACA, and each new one as it is rolled over or started
        #: by a revocation (the operator hands readers the bundle, /trust/iaca.pem, with the
        #: rollover); it is never told of a revocation (it keeps a revoked IACA)
        self.kept_trust = TrustStore()
        self.kept_trust.add(self.iacas[0], source="test")
        self.kept_reader = self._reader(self.kept_lists, self.kept_ds_crl, self.kept_trust)
        self.kept_saw: dict[str, dict[int, str]] = {}
        #: readers that took the trust bundle or the VICAL once and are never told again
        #: (:meth:`take_trust`): the first took it with the installation (the first IACA)
        first = TrustStore()
        first.add(self.iacas[0], source="bundle")
        self.takers: list[TrustTaken] = [TrustTaken("bundle", dt.datetime.now(dt.UTC), frozenset({1}), None, first)]
        #: when the kept reader last fetched each IACA generation's CRL (the end of the
        #: verification that did), and the signers it listed then
        self.kept_crl_at: dict[int, dt.datetime] = {}
        self.kept_crl_revoked: dict[int, frozenset[int]] = {}
        #: the IACA's signers (DS and status-list signer generations) by serial: those made
        #: with the installation, then each as it is first seen (in an MSO, on a list, made
        #: by a rollover); the DS the next MSO is signed by (None: a new generation)
        svc = mdoc_service(self.ctx)
        self.signers: dict[int, SignerModel] = {}
        for purpose in (PURPOSE_DS, PURPOSE_STATUS):
            for info in svc.signers(purpose):
                self.signers[int(info.serial, 16)] = SignerModel(purpose, info.label, int(info.serial, 16),
                                                                 info.not_after, gen=_generation(info.iaca))
        # (none yet on PostgreSQL, whose installation is made afresh: the first MSO makes one)
        self.ds_expect: int | None = next((int(i.serial, 16) for i in svc.signers(PURPOSE_DS) if i.active), None)
        #: the thisUpdate of every IACA CRL seen (the model's own fetches and every reader's),
        #: by IACA generation and number
        self.iaca_seen: dict[int, dict[int, dt.datetime]] = {}
        #: the IACA CRLs a fresh reader of this invariant pass looks signers up on, and the
        #: trust bundle it holds (/trust/iaca.pem as served in that pass)
        self.fresh_ds_crl = None
        self.fresh_trust = None
        #: a relying party kept across the example, checking the JPKI certificates on their
        #: partition's CRL through its CRL cache, which keeps a CRL until its nextUpdate (no
        #: shorter max_age), and what the model said of each partition's certificates when it
        #: fetched that CRL: {path: {serial: (status, reason)}}
        from reader.crl_cache import CrlCache

        self.kept_rp = CrlCache(max_age=2 * CRL_VALIDITY)
        self.kept_rp_saw: dict[str, dict[int, tuple[str, str | None]]] = {}
        # the clock every party reads, from now on (ticking; started last, as teardown runs
        # only after __init__ returned); moved by the advance_* rules. It starts when the
        # installation's keys were made: a copied template's (the IACA's ten years, its
        # signers' year) as much as a fresh one's, whenever the example runs, so that an
        # example replayed later in a campaign meets the same dates (the IACA's end, a DS
        # rollover) at the same steps, and hypothesis the same choices
        _MONOTONIC_SHIFT[0] = 0.0
        start = _TEMPLATE["at"] if self.backend == "sqlite" else dt.datetime.now(dt.UTC)
        self.travel = time_machine.travel(start, tick=True)
        self.traveller = self.travel.start()
        self.travelled = dt.timedelta(0)

    def teardown(self) -> None:
        self.http.app.state.jobs.shutdown()  # POST /mdoc-reissues waited for each of its jobs
        self.travel.stop()
        _MONOTONIC_SHIFT[0] = 0.0
        self.http.close()
        self.ctx.engine.dispose()
        if self.schema is not None:
            import sqlalchemy as sa
            from conftest import PG_URL

            admin = sa.create_engine(PG_URL)
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            admin.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the model ---------------------------------------------------------------------------

    def _on(self, phone: str, kinds: tuple[str, ...] = ("sign", "auth", "mdoc"),
            status: tuple[str, ...] = LIVE) -> list[Cred]:
        return [c for c in self.creds.values() if c.phone == phone and c.kind in kinds and c.status in status]

    def _of_holder(self, h: int, status: tuple[str, ...] = LIVE) -> list[Cred]:
        return [c for c in self.creds.values() if c.holder == h and c.status in status]

    @staticmethod
    def _revoke(creds: list[Cred], reason: str) -> None:
        """issuer.revocation's state machine: revoked stays, but for keyCompromise, which
        amends another reason (its time kept: issuer.revocation._amend); hold again stays."""
        for c in creds:
            if c.status == "revoked":
                if reason == "keyCompromise" and c.reason != reason:
                    c.reason = reason
                    event("a revocation amended to keyCompromise")
                continue
            if c.status == "hold" and reason == HOLD:
                continue
            c.status, c.reason = ("hold" if reason == HOLD else "revoked"), reason

    @staticmethod
    def _release(creds: list[Cred]) -> None:
        for c in creds:
            if c.status == "hold":
                c.status, c.reason = "valid", None

    def _phone_out(self, phone: str, state: str) -> None:
        """revoke/hold with ``all``: an active or lost phone is out; the rest stay."""
        p = self.phones[phone]
        if p.state in ("active", "lost"):
            p.state = state

    def _learn(self, phone: str, new: set[str]) -> None:
        """Read what the phone's SE holds now: exactly the kinds ``new`` are new credentials
        (valid), the others what the model had there."""
        seen = self._se(phone)
        p = self.phones[phone]
        before = dict(p.held or {})
        held = {}
        for kind in ("sign", "auth", "mdoc"):
            key = seen.get(kind)
            if kind in new:
                assert key is not None, f"{phone}: no new {kind} credential in the SE"
                assert key not in self.creds, f"{phone}: expected a new {kind} credential, its SE holds one issued before"
                c = seen[f"{kind}:cred"]
                c.phone, c.holder = phone, p.holder
                # no credential outlives the card's last day in Japan, and an MSO ends where a
                # certificate does (it ended at the start of that day, a day early)
                assert c.not_after <= end_of_day_jst(self.card_until[p.holder]), (
                    f"{phone}: a new {kind} runs to {c.not_after}, past the card's last day "
                    f"{self.card_until[p.holder]}")
                self.creds[key] = c
                held[kind] = key
                if kind == "mdoc":
                    self._learn_ds(seen["mdoc:ds"])
                    self.captured[key] = self._presentation(phone)
                    self._older_readers_refuse(c)
                    self._takers_judge(c)
            else:
                assert key == before.get(kind), f"{phone}: the SE's {kind} changed ({before.get(kind)} -> {key})"
                if key is not None:
                    held[kind] = key
        p.held = held

    def _learn_ds(self, ds: x509.Certificate) -> None:
        """A new MSO is signed by the DS the model expects: the one the last rollover made or
        the last MSO had, until it is revoked or comes within its rollover margin (90 days)
        of its end; then by a new generation, never one seen before (a revoked DS signs
        nothing again)."""
        now, s = _now(), ds.serial_number
        if self.staged is not None:  # a staged IACA vouches for nothing before its rollover
            assert ds.issuer != self.iacas[self.staged - 1].subject, (
                f"an MSO at {now:%F %T} chains to the staged IACA {self.staged}, not started yet")
        ds.verify_directly_issued_by(self._current_iaca)  # the current IACA's, whatever came before
        expect = self.signers.get(self.ds_expect) if self.ds_expect is not None else None
        due = expect is None or now > expect.not_after - DS_MARGIN
        if expect is not None and abs(now - (expect.not_after - DS_MARGIN)) < EDGE:
            due = None  # at its rollover: either
        if s in self.signers:
            old = self.signers[s]
            assert old.purpose == PURPOSE_DS and old.revoked_at is None, f"an MSO signed by {old}"
            assert due is not True and s == self.ds_expect, (
                f"an MSO at {now:%F %T} signed by {old.label}, the model expected {expect}")
        else:
            assert due is not False, f"an MSO at {now:%F %T} signed by a new DS {s:x}, the model expected {expect}"
            assert ds.not_valid_before_utc <= now <= ds.not_valid_after_utc - DS_MARGIN, ds
            self.signers[s] = SignerModel(PURPOSE_DS, "", s, ds.not_valid_after_utc, gen=self.current)
        self.ds_expect = s

    def _learn_list_signer(self, signer: x509.Certificate, gen: int) -> None:
        """A status list served now is signed by a status-list signer of its mdocs' IACA
        (generation ``gen``) the model has not revoked (a revocation drops every token it
        signed)."""
        s = signer.serial_number
        signer.verify_directly_issued_by(self.iacas[gen - 1])
        known = self.signers.setdefault(s, SignerModel(PURPOSE_STATUS, "", s, signer.not_valid_after_utc, gen=gen))
        assert known.purpose == PURPOSE_STATUS and known.gen == gen, f"a list of IACA {gen}'s mdocs signed by {known}"
        assert known.revoked_at is None, f"a status list served at {_now():%F %T} signed by the revoked {known}"

    def _iaca_fetcher(self):  # noqa: ANN202
        """A reader's IACA CRL fetcher over the service's HTTP routes that shows the model
        every CRL it fetches (their numbers and thisUpdate: RFC 5280 3.3's retention)."""
        from reader.ds_crl import HttpCrlFetcher

        http = HttpCrlFetcher(self.http)

        def fetch(url: str) -> bytes:
            body = http(url)
            self._see_iaca_crl(x509.load_der_x509_crl(body))
            return body

        return fetch

    def _see_iaca_crl(self, crl: x509.CertificateRevocationList) -> int:
        """Note an IACA CRL's number and thisUpdate; its IACA generation (by its issuer)."""
        gen = next(n for n, cert in enumerate(self.iacas, 1) if cert.subject == crl.issuer)
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        this = crl.last_update_utc
        assert self.iaca_seen.setdefault(gen, {}).setdefault(number, this) == this, (
            f"IACA {gen}'s CRL #{number} changed")
        return gen

    def _revoked_signers(self, gen: int | None = None) -> frozenset[int]:
        return frozenset(s for s, m in self.signers.items() if m.revoked_at is not None and gen in (None, m.gen))

    def _gen_of(self, cert: x509.Certificate) -> int:
        """The generation of the IACA that issued ``cert``."""
        return next(n for n, iaca in enumerate(self.iacas, 1) if iaca.subject == cert.issuer)

    @property
    def _current_iaca(self) -> x509.Certificate:
        return self.iacas[self.current - 1]

    def _staged_now(self) -> tuple[int | None, bool]:
        """The staged IACA generation a rollover starts now (None: none, it makes a new
        one), and whether that is at an edge (either). A staged IACA is started while a
        document signer can be made under it: not in its own last 90 days (it could vouch
        for nothing), when it is no more staged: a rollover makes a new IACA, another
        staging is taken, and it leaves the bundle."""
        if self.staged is None:
            return None, False
        last = self.iacas[self.staged - 1].not_valid_after_utc - IACA_MARGIN
        now = _now()
        return (self.staged if now < last else None), abs(now - last) < EDGE

    def _iaca_state(self) -> str | None:
        """Whether the current IACA can have a document signer made now: ``open``, ``closing``
        (its last 90 days: issuance refused, naming the rollover) or ``ended``; None within
        two minutes of either edge (either)."""
        now, end = _now(), self._current_iaca.not_valid_after_utc
        if any(abs(now - edge) < EDGE for edge in (end - IACA_MARGIN, end)):
            return None
        return "ended" if now >= end else "closing" if now > end - IACA_MARGIN else "open"

    def _card_over(self, h: int) -> bool | None:
        """Whether holder ``h``'s card can back no new credential now: past its last day (a
        JPKI certificate and an MSO run through it, to 23:59:59 JST); None within two minutes
        of that (either)."""
        jst = dt.timezone(dt.timedelta(hours=9))
        start = dt.datetime.combine(self.card_until[h] + dt.timedelta(days=1), dt.time(0), jst)
        return None if abs(_now() - start) < EDGE else _now() > start

    def _no_mdoc(self, h: int) -> bool | None:
        """Whether an issuance of mdocs to holder ``h`` is refused now, before anything is
        done (mcred.provision.check_mdoc_issuance, issuer.handover.create_in): the IACA in
        its last months or ended, or the card over; None at an edge."""
        iaca, card = self._iaca_state(), self._card_over(h)
        if iaca in ("closing", "ended") or card:
            event(f"mdoc issuance refused: {'the card ended' if card else f'the IACA {iaca}'}")
            return True
        return None if iaca is None or card is None else False

    def _no_jpki(self, h: int, key_type: str, slots: tuple[str, ...] = ("sign", "auth"),
                 card: dt.date | None = None) -> bool | None:
        """Whether a JPKI certificate of ``slots`` for a ``key_type`` key, issued now to holder
        ``h`` (whose card runs through ``card``, default the one the model knows), would outlive
        its slot's issuing root: refused before anything is done, the SE untouched
        (mcred.provision.check_jpki_issuance, issuer.handover.create_in); None within two
        minutes of a midnight in Japan (the day of issue moves the certificate's end)."""
        from protocols.jpki.validity import CURRENT_CARD_RULE, NEXT_CARD_RULE, end_entity_validity

        now = _now()
        if abs(now - _jst_midnight_after(now)) < EDGE or abs(now - _jst_midnight_before(now)) < EDGE:
            return None
        card = card or self.card_until.get(h) or _card_expiry(h)
        if card < _jst_day(now):
            return False  # the card's end refuses it (another rule)
        rule = CURRENT_CARD_RULE if key_type == "rsa2048" else NEXT_CARD_RULE
        end = end_entity_validity(rule, now, dt.date.fromisoformat(HOLDERS[h]["birth_date"]), card).not_after
        refused = any(end > self.jpki_root_end[slot] for slot in slots)
        if refused:
            event(f"a {key_type} certificate refused: it would outlive its JPKI root")
        return refused

    def _older_readers_refuse(self, c: Cred) -> None:
        """A reader that holds only the IACAs before the mdoc's (one not handed the bundle
        since a rollover) refuses it on its chain, ``issuer_certificate_chain``."""
        if c.gen == 1:
            return
        from reader.pipeline import ReaderPipeline
        from reader.trust import TrustStore

        trust = TrustStore()
        for cert in self.iacas[:c.gen - 1]:
            trust.add(cert, source="test")
        result = self._present(c, ReaderPipeline(trust))
        assert not result.valid and not result.check("issuer_certificate_chain").passed, (
            f"a reader without IACA {c.gen} on the mdoc {c.uri}#{c.idx}: {result.failed()}")
        event("a reader holding only older IACAs refused an mdoc of a newer one")

    def _takers_judge(self, c: Cred) -> None:
        """Each reader that took the bundle or the VICAL once (:attr:`takers`) on a new mdoc:
        one that took it with the mdoc's IACA in it (staged then: published before use, or
        current) takes it as a fresh reader would (just issued: valid); one that took it
        before that IACA was staged refuses it on its chain, ``issuer_certificate_chain``."""
        from reader.ds_crl import DsCrlCheck
        from reader.pipeline import HttpxFetcher, StatusListCache

        for t in self.takers:
            who = f"a reader that took the {t.via} at {t.at:%F %T} (IACAs {sorted(t.gens)})"
            reader = self._reader(StatusListCache(HttpxFetcher(client=self.http)),
                                  DsCrlCheck(self._iaca_fetcher()), t.trust)
            result = self._present(c, reader)
            if c.gen in t.gens:
                self._judge(c, c.status, result, who, self._revoked_signers())
                if t.staged == c.gen:
                    event(f"a reader that took the {t.via} with the IACA staged took an mdoc of it")
            else:
                chain = result.check("issuer_certificate_chain")
                assert not result.valid and chain is not None and not chain.passed, (
                    f"{who} on the mdoc {c.uri}#{c.idx} of IACA {c.gen}: {result.failed()}")
                if c.gen > max(t.gens):
                    event(f"a reader that took the {t.via} before the IACA was staged refused its mdoc")

    # --- what outside parties see -----------------------------------------------------------

    def _se(self, phone: str) -> dict:
        """What the phone's SE holds: ``{kind: key, kind + ':cred': Cred}``."""
        se = wallet_sim.open_secure_element(phone, self.ctx.home)
        out: dict = {}
        card = JpkiCard(se.transmit)
        try:
            card.select_ap()
            applet = True
        except SeError:
            applet = False
        for slot, (pin_ef, cert_ef, _key_ef) in EFS.items() if applet else ():
            try:
                card.select_ap()
                card.verify(pin_ef, (PASSWORD if slot == "sign" else PIN).encode())
                der, cert, _ = card.read_certificate(cert_ef)
            except SeError:
                continue
            cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            url = next(n.value for dp in cdp for n in dp.full_name or () if isinstance(n, x509.UniformResourceIdentifier))
            out[slot] = ("cert", cert.serial_number)
            out[f"{slot}:cred"] = Cred(slot, phone, -1, serial=cert.serial_number, der=der, crl=_path(url),
                                       not_after=cert.not_valid_after_utc)
        applet = SeMdocApplet(se.transmit)
        try:
            held = [(slot, n) for slot, has, n in applet.slots() if has]
        except WalletError:
            held = []
        for slot, n in held[:1]:
            mso = mdoc.IssuerSigned.decode(applet.read(slot, n)).mso()
            ref = mso.status.status_list
            out["mdoc"] = ("mdoc", ref.uri, ref.idx)
            ds = x509.load_der_x509_certificate(mdoc.IssuerSigned.decode(applet.read(slot, n)).issuer_auth.x5chain[0])
            out["mdoc:cred"] = Cred("mdoc", phone, -1, uri=ref.uri, idx=ref.idx,
                                    not_after=mso.validity_info.valid_until, ds_until=ds.not_valid_after_utc,
                                    ds_serial=ds.serial_number, gen=self._gen_of(ds))
            out["mdoc:ds"] = ds
        return out

    def _presentation(self, phone: str) -> tuple[bytes, object]:
        """The phone's wallet answers a reader (its mdoc, device signature by the SE)."""
        se = wallet_sim.open_secure_element(phone, self.ctx.home)
        applet = SeMdocApplet(se.transmit)
        slot, n = next((slot, n) for slot, has, n in applet.slots() if has)
        issued = mdoc.IssuerSigned.decode(applet.read(slot, n))
        st = _transcript()
        doc = mdoc.build_document(issued, st, signer=SeSigner(applet, slot))
        return mdoc.DeviceResponse((doc,)).encode(), st

    def _reader(self, lists, ds_crl=None, trust=None):  # noqa: ANN001
        """A reader with the status-list cache ``lists``, the IACA CRL check ``ds_crl`` and
        the trust store ``trust`` (by default: the bundle served in this invariant pass)."""
        from reader.pipeline import ReaderPipeline

        trust = trust if trust is not None else self.fresh_trust
        if ds_crl is None:
            return ReaderPipeline(trust, status=lists)
        return ReaderPipeline(trust, status=lists, extra_checks=[ds_crl], signer_revocation=ds_crl.signer_revoked)

    def _present(self, c: Cred, reader=None):  # noqa: ANN001, ANN202
        """A reader's result on the presentation of ``c`` made when it was issued; by default
        a fresh reader's (no status list cached: it fetches the list over HTTP; it looks the
        DS and the list's signer up on the IACA CRL fetched in this invariant pass)."""
        from reader.pipeline import HttpxFetcher, StatusListCache

        if reader is None:
            reader = self._reader(StatusListCache(HttpxFetcher(client=self.http)), self.fresh_ds_crl)
        response, st = self.captured[_key(c)]
        return reader.verify(response, session_transcript=st)

    def _judge(self, c: Cred, status: str, result, who: str = "a fresh reader",  # noqa: ANN001
               revoked: frozenset[int] = frozenset(), list_signer: int | None = None, trusted: bool = True) -> None:
        """A reader's ``result`` on ``c`` held against the model: taken iff ``status`` (what
        the list it read says) is valid, the MSO has not expired (validUntil, then the
        reader's 5 minutes' skew; within 2 minutes of that either way), and neither its DS
        nor the list's signer is among ``revoked`` (what the IACA CRL the reader looked them
        up on listed). An expired MSO is refused on its ``validity`` (code ``expired``), a
        revoked DS on ``ds_revocation`` (code ``ds_revoked``), a list by a revoked signer on
        ``status_list_signature`` (its ``revocation_status`` not checked): on those alone
        when the list says valid (past the DS's end its chain fails too, and nothing is
        looked up). ``trusted`` False: the reader does not trust the mdoc's IACA (revoked, out
        of the bundle it took): refused on ``issuer_certificate_chain``, nothing looked up."""
        now = _now()
        past = now - READER_SKEW - c.not_after
        ds_bad, list_bad = c.ds_serial in revoked, list_signer in revoked
        what = (f"{who} on the mdoc {c.uri}#{c.idx} of {c.phone} ({status}, validUntil {c.not_after:%F %T}, "
                f"DS {c.ds_serial:x}{' revoked' * ds_bad}{', list signer revoked' * list_bad})")
        if abs(past) < dt.timedelta(minutes=2):
            return  # at the edge of its validity: either
        expired = past > dt.timedelta(0)
        validity = result.check("validity")
        assert validity is not None and validity.passed != expired, f"{what}: {validity}"
        if not trusted:  # its IACA revoked: out of the bundle, no chain to a trusted IACA
            chain = result.check("issuer_certificate_chain")
            assert not result.valid and chain is not None and not chain.passed, f"{what}, IACA {c.gen} " \
                f"revoked: {result.failed()}"
            assert result.check("ds_revocation").code == "not_checked", f"{what}: {result.check('ds_revocation')}"
            event(f"{who} refused on issuer_certificate_chain an mdoc of a revoked IACA")
            return
        if abs(now - c.ds_until) < EDGE:
            return  # its DS ending: the chain either way
        if now > c.ds_until:  # no trusted DS chain: nothing looked up
            assert not result.valid and expired, f"{what}: {result.failed()}"
            assert result.check("ds_revocation").code == "not_checked", f"{what}: {result.check('ds_revocation')}"
            return
        assert result.valid == (status == "valid" and not expired and not ds_bad and not list_bad), (
            f"{what}: {result.failed()}")
        ds = result.check("ds_revocation")
        assert ds.passed != ds_bad and ds.code == ("ds_revoked" if ds_bad else "ok"), f"{what}: {ds}"
        listed = result.check("status_list_signature")
        assert listed.passed != list_bad, f"{what}: {listed}"
        if list_bad:
            assert result.check("revocation_status").passed is False, f"{what}: {result.check('revocation_status')}"
        want = ({"validity"} if expired else set()) | ({"ds_revocation"} if ds_bad else set()) | (
            {"status_list_signature", "revocation_status"} if list_bad else set())
        if expired:
            assert validity.code == "expired", f"{what}: {validity}"
        if status == "valid" or list_bad:
            assert set(result.failed()) == want, f"{what}: {result.failed()}, the model {sorted(want)}"
        elif not ds_bad:  # revoked or suspended on a list it trusts: refused on that check alone
            code = {"revoked": "revoked", "hold": "suspended"}[status]
            assert set(result.failed()) == want | {"revocation_status"} and \
                result.check("revocation_status").code == code, f"{what}: {result.failed()}"
        for name in sorted(want - {"validity"}):
            event(f"{who} refused on {name}")
        if result.valid and c.ds_serial != self.ds_expect:
            event(f"{who} took an MSO of a DS rolled over or replaced")

    def _kept_reader_verdict(self, c: Cred) -> None:
        """The reader kept across the example: it takes the list it cached while that is
        younger than its ttl (the verdict of the statuses then), never once older."""
        if c.gen in self.withdrawn:
            self._kept_reader_on_a_revoked_iaca(c)
            return
        entry = self.kept_lists.entry(c.uri)
        before = entry.fetched_at if entry is not None else None
        held_by = entry.token.header.signer.serial_number if entry is not None and entry.token else None
        start = _now()
        # past its ttl, the cached list must be fetched again
        stale_ok = before is None or start - before <= dt.timedelta(seconds=STATUS_TTL)
        crls = self.kept_ds_crl.fetches
        result = self._present(c, self.kept_reader)
        end = _now()
        # the CRL of the mdoc's IACA it looks the DS up on is kept an hour at most
        # (DsCrlCheck's max_age); the list's signer is of the same IACA, on the same CRL
        if result.check("ds_revocation").code != "not_checked":
            if self.kept_ds_crl.fetches > crls:
                self.kept_crl_at[c.gen] = end
                self.kept_crl_revoked[c.gen] = self._revoked_signers(c.gen)
            else:
                assert start - self.kept_crl_at[c.gen] <= KEPT_CRL_AGE, (
                    f"the kept reader used IACA {c.gen}'s CRL fetched by {self.kept_crl_at[c.gen]:%F %T} "
                    f"at {start:%F %T}")
        kept_revoked = self.kept_crl_revoked.get(c.gen, frozenset())
        entry = self.kept_lists.entry(c.uri)
        fetched = entry is not None and entry.fetched_at != before
        if result.check("revocation_status").code == "not_checked":
            pass  # no list consulted (no trusted DS chain: expired), the verdict is on the MSO
        elif fetched:
            self.kept_saw[c.uri] = {x.idx: x.status for x in self.creds.values() if x.kind == "mdoc" and x.uri == c.uri}
            if held_by in kept_revoked and stale_ok:
                event("the kept reader fetched again, within its ttl, a list whose signer it found revoked")
        elif held_by in kept_revoked:
            # the issuer publishes its lists again under another signer when it revokes one:
            # the reader fetches the list rather than refuse every mdoc on it until its ttl ends
            raise AssertionError(f"the kept reader kept the list {c.uri} signed by the revoked signer {held_by:x}")
        else:
            assert stale_ok, f"the kept reader used the list {c.uri} fetched {before:%F %T} at {start:%F %T}"
            assert end - before <= dt.timedelta(seconds=STATUS_TTL, milliseconds=1), (
                f"the kept reader used the list {c.uri} fetched {before:%F %T} at {end:%F %T}, past its ttl")
        # an index taken after the list was fetched was 0 (VALID) on it: indices are not reused
        said = self.kept_saw[c.uri].get(c.idx, "valid") if c.uri in self.kept_saw else c.status
        signer = entry.token.header.signer.serial_number if entry is not None and entry.token else None
        self._judge(c, said, result, "the kept reader", kept_revoked, signer)

    def _kept_reader_on_a_revoked_iaca(self, c: Cred) -> None:
        """The kept reader is handed each new IACA, never told of a revocation: it still trusts
        a revoked IACA, and goes on with what it keeps of it, the list cached (within its ttl)
        and the IACA CRL (an hour), as it did before; once either has to be fetched again it
        is gone (410 iaca-withdrawn) and the reader refuses the mdoc, failing closed: on
        ``ds_revocation`` (code ``unavailable``) without a CRL, on the list's checks without
        a list (specs/issuer-keys.md, "An IACA revoked": a reader that never reloads)."""
        entry = self.kept_lists.entry(c.uri)
        start = _now()
        result = self._present(c, self.kept_reader)
        now, past = _now(), start - READER_SKEW - c.not_after
        what = (f"the kept reader on the mdoc {c.uri}#{c.idx} of the revoked IACA {c.gen} at {start:%F %T} "
                f"(validUntil {c.not_after:%F %T}, its list fetched {entry and f'{entry.fetched_at:%F %T}'}, "
                f"its CRL {self.kept_crl_at.get(c.gen) and f'{self.kept_crl_at[c.gen]:%F %T}'})")

        def kept(since: dt.datetime | None, age: dt.timedelta) -> bool | None:
            """Whether what was fetched at ``since`` is still kept: None at the edge (either)."""
            if since is None:
                return False
            return None if abs(start - since - age) < SLACK else start - since < age

        list_kept = kept(entry and entry.fetched_at, dt.timedelta(seconds=STATUS_TTL))
        crl_kept = kept(self.kept_crl_at.get(c.gen), KEPT_CRL_AGE)
        if abs(past) < EDGE or abs(now - c.ds_until) < EDGE or None in (list_kept, crl_kept):
            return  # at an edge: either
        if now > c.ds_until or past > dt.timedelta(0):
            assert not result.valid, f"{what}: taken, expired"
            return
        revoked = self.kept_crl_revoked.get(c.gen, frozenset())
        said = self.kept_saw.get(c.uri, {}).get(c.idx, "valid")
        signer = entry.token.header.signer.serial_number if entry is not None and entry.token else None
        taken = list_kept and crl_kept and said == "valid" and c.ds_serial not in revoked and signer not in revoked
        assert result.valid == taken, (f"{what}: {result.failed()}, the model: list kept {list_kept}, CRL kept "
                                       f"{crl_kept}, its list said {said}")
        if not crl_kept:
            ds = result.check("ds_revocation")
            assert ds.code == "unavailable", f"{what}: {ds}"
        if not list_kept:
            assert {"status_list_freshness", "revocation_status"} & set(result.failed()), f"{what}: {result.failed()}"
        event("the kept reader took an mdoc of a revoked IACA from what it kept" if taken else
              "the kept reader refused an mdoc of a revoked IACA, its CRL or list gone" if not (list_kept and crl_kept)
              else "the kept reader refused an mdoc of a revoked IACA on what it kept")

    def _root(self, slot: str, aki: bytes) -> x509.Certificate:
        return next(r for r in self.roots[slot] if r.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest == aki)

    def _crl(self, path: str, slot: str) -> tuple[dict[int, tuple[str, dt.datetime]], int, dt.datetime]:
        """The partition's CRL, fetched and verified: {serial: (reason, revocationDate)}, its
        number and its thisUpdate (kept in :attr:`crls_seen`)."""
        r = self.http.get(path)
        assert r.status_code == 200, (path, r.status_code)
        crl = x509.load_der_x509_crl(r.content)
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        assert crl.is_signature_valid(self._root(slot, aki).public_key()), path
        # current: built at most now, nextUpdate 24 h after, not served within an hour of it
        now = _now()
        this, nxt = crl.last_update_utc, crl.next_update_utc
        assert this <= now and nxt == this + CRL_VALIDITY, f"CRL {path}: thisUpdate {this}, nextUpdate {nxt} at {now}"
        assert nxt - now > CRL_REFRESH - SLACK, f"CRL {path} served at {now:%F %T}, its nextUpdate {nxt:%F %T}"
        out = _crl_entries(crl)
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert self.crls_seen.setdefault(path, {}).setdefault(number, this) == this, f"CRL {path} #{number} changed"
        return out, number, this

    def _ocsp(self, c: Cred) -> tuple[str, str | None, dt.datetime | None]:
        """The responder's answer on the certificate: (good | revoked, reason, revocationTime)."""
        cert = x509.load_der_x509_certificate(c.der)
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        req = ocsp.OCSPRequestBuilder().add_certificate(cert, self._root(c.kind, aki), hashes.SHA256()).build()
        r = self.http.post("/ocsp", content=req.public_bytes(serialization.Encoding.DER),
                           headers={"content-type": "application/ocsp-request"})
        resp = ocsp.load_der_ocsp_response(r.content)
        assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, resp.response_status
        assert resp.serial_number == c.serial
        now = _now()  # made now, current for 10 minutes
        for when in (resp.produced_at_utc, resp.this_update_utc):
            assert abs(when - now) < SLACK, f"OCSP on {c.serial:x}: made {when:%F %T} (producedAt, thisUpdate) at {now}"
        assert resp.next_update_utc == resp.this_update_utc + OCSP_VALIDITY, (resp.this_update_utc, resp.next_update_utc)
        # signed by the root's delegated responder, whose certificate is valid now (renewed
        # before its year ends, whatever was cached)
        root = self._root(c.kind, aki)
        responder = resp.certificates[0]
        responder.verify_directly_issued_by(root)
        assert responder.not_valid_before_utc <= now <= responder.not_valid_after_utc, (
            f"OCSP on {c.serial:x} at {now:%F %T} signed by a responder valid {responder.not_valid_before_utc:%F} "
            f"to {responder.not_valid_after_utc:%F}")
        key = responder.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))
        else:
            key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(), resp.signature_hash_algorithm)
        if resp.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return "good", None, None
        assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED, resp.certificate_status
        return ("revoked", resp.revocation_reason.value if resp.revocation_reason else "unspecified",
                resp.revocation_time_utc)

    def _status(self, c: Cred) -> int | None:
        """The mdoc's status on its list, verified under its own IACA (the list holds that
        generation's mdocs, signed by a signer that IACA issued); None past the IACA's end,
        when the list answers 410 iaca-ended (every MSO on it has ended by then), and once its
        IACA is revoked, when it and its identifier list answer 410 iaca-withdrawn (its key
        signs no list, whatever its end)."""
        r = self.http.get(_path(c.uri))
        if c.gen in self.withdrawn:
            ids = self.http.get(_path(c.uri).replace("/status/", "/identifiers/", 1))
            for got in (r, ids):
                assert got.status_code == 410 and got.json()["type"].endswith("/iaca-withdrawn") and \
                    f"mdoc-iaca-{c.gen}" in got.json()["detail"], (
                    f"a list {got.url} of the revoked IACA {c.gen}: {got.status_code} {got.text[:200]}")
            event("the lists of a revoked IACA: 410")
            return None
        now, end = _now(), self.iacas[c.gen - 1].not_valid_after_utc
        if abs(now - end) < EDGE and r.status_code in (200, 410):
            return None  # at the IACA's end: either
        if now > end:
            assert r.status_code == 410 and r.json()["type"].endswith("/iaca-ended"), (
                f"the list {c.uri} of IACA {c.gen} (ended {end:%F %T}) at {now:%F %T}: {r.status_code}")
            assert c.not_after < now, f"the mdoc {c.uri}#{c.idx} outlived its IACA"
            event("a status list of an ended IACA: 410")
            return None
        assert r.status_code == 200, (c.uri, r.status_code)
        token = verify_status_list_token(r.content, trust_anchor=self.iacas[c.gen - 1], uri=c.uri, now=now)
        self._learn_list_signer(token.header.signer, c.gen)
        # current: issued at most now, for another ttl at least (then rebuilt)
        iat, exp, ttl = token.header.iat, token.header.exp, token.header.ttl
        assert ttl == STATUS_TTL and exp - iat == STATUS_LIFETIME, (c.uri, iat, exp, ttl)
        assert iat <= now + SLACK and exp - now > dt.timedelta(seconds=ttl) - SLACK, (
            f"status list {c.uri} served at {now:%F %T}: iat {iat:%F %T}, exp {exp:%F %T}, ttl {ttl}")
        return token.status(c.idx)

    # --- steps -------------------------------------------------------------------------------

    def _attempt(self, what: str, call, refuse: bool | None) -> bool:  # noqa: ANN001
        """Run ``call``: True if it went through, False if it was refused with a typed error.
        ``refuse``: the model's word (True: must be refused; False: must go through; None:
        either, the model expecting no change either way). Any other exception propagates."""
        try:
            call()
        except REFUSALS as exc:
            assert not isinstance(exc, wf.StepFailed), f"{what}: a workflow stopped half-way: {exc}"
            assert refuse is not False, f"{what}: refused, but the model expected it to go through: {exc}"
            return False
        assert refuse is not True, f"{what}: went through, but the model expected a refusal"
        return True

    def _new_phone(self, data) -> str:  # noqa: ANN001
        _IDS[:] = [f"{data.draw(st.integers(0, 3), label='id order'):02x}{self.made:010x}"]
        self.made += 1
        return self.ctx.new_phone()

    def _phones(self, data) -> str:  # noqa: ANN001
        return data.draw(st.sampled_from(list(self.phones)))  # in the order made: replayable

    @precondition(lambda self: len(self.holder_ids) < len(HOLDERS))
    @rule(data=st.data(), key_type=st.sampled_from(["p384", "rsa2048"]))
    def enrol(self, data, key_type):
        """A holder's first provisioning, from their card's data (``mcred provision --holder``)."""
        h = data.draw(st.sampled_from([i for i in range(len(HOLDERS)) if i not in self.holder_ids]))
        pid = self._new_phone(data)
        made = []
        iaca = self._iaca_state()  # a new card: the IACA and the JPKI roots hold issuance back
        refuse = _both(None if iaca is None else iaca != "open", self._no_jpki(h, key_type, card=_card_expiry(h)))
        if not self._attempt(f"provision holder {h} on {pid}", lambda: made.append(provision(
                self.ctx, pid, parse_holder(HOLDERS[h]), key_type=key_type, mdoc_batch=1, **SECRETS)),
                refuse=refuse):
            return
        self.holder_ids[h] = made[0].holder_id
        self.card_until[h] = _card_expiry(h)
        self.phones[pid] = PhoneModel(h, key_type)
        self._learn(pid, {"sign", "auth", "mdoc"})

    @precondition(lambda self: self.holder_ids)
    @rule(data=st.data())
    def provision_again(self, data):
        """A registered holder provisioned onto a new phone (``mcred provision --holder-id``):
        refused while they have live credentials anywhere (that is a handover)."""
        h = data.draw(st.sampled_from(sorted(self.holder_ids)))
        hid = self.holder_ids[h]
        key_type = next(p.key_type for p in self.phones.values() if p.holder == h)
        pid = self._new_phone(data)

        def go():
            check_holder_for_new_phone(self.ctx, hid, pid)
            provision(self.ctx, pid, hid, key_type=key_type, mdoc_batch=1, alone=True, **SECRETS)

        if self._attempt(f"provision holder {h} on {pid}", go, refuse=_both(
                bool(self._of_holder(h)), self._no_mdoc(h), self._no_jpki(h, key_type))):
            self.phones[pid] = PhoneModel(h, key_type)
            self._learn(pid, {"sign", "auth", "mdoc"})

    @precondition(lambda self: self.phones)
    @rule(data=st.data(), kind=st.sampled_from(["model_change", "resale_report", "lost_hold", "found",
                                                 "lost_confirmed", "death", "renewal"]))
    def workflow(self, data, kind):
        """A handover / revocation workflow on one of a holder's phones (``mcred handover``,
        ``POST /handovers`` and its run; a ``renewal`` names its phone as the new one)."""
        old = self._phones(data)
        p = self.phones[old]
        h = p.holder
        new = self._new_phone(data) if kind == "model_change" else None
        actions = HandoverActions(self.ctx, key_type=p.key_type, mdoc_batch=1,
                                  given={new or old: dict(SECRETS)})

        def go():
            hid = wf.create(self.ctx.sessions, kind=kind, holder_id=self.holder_ids[h],
                            old_phone_id=None if kind == "renewal" else old,
                            new_phone_id=old if kind == "renewal" else new, actor="model",
                            jpki_key_type=p.key_type)
            actions.runner("model").run(hid)

        live = self._on(old)
        held = bool(self._on(old, status=("hold",)))
        if p.state == "retired":  # handed over already: its credentials moved on
            refuse = True
        elif kind == "found":  # only a phone reported lost is found
            refuse = not held
        elif kind == "renewal":  # of a phone in use, a loss settled first
            refuse = p.state != "active" or held
        else:
            refuse = False
        if kind in ("model_change", "renewal"):  # a phone provisioned anew: mdocs from the card
            refuse = _both(refuse, self._no_mdoc(h), self._no_jpki(h, p.key_type))
        # past the card's end a found issues no signing certificate (specs/handover.md, policy
        # 2): the holds lifted, the signing certificate revoked, the phone active
        ended = kind == "found" and refuse is False and bool([c for c in live if c.kind == "sign"]) \
            and self._card_over(h)
        if ended is None:
            event("a found at the card's end: either")  # the SE's signing key new or not
            return
        if kind == "found" and refuse is False and not ended and [c for c in live if c.kind == "sign"]:
            refuse = self._no_jpki(h, p.key_type, ("sign",))  # its signing certificate re-issued
        if not self._attempt(f"{kind} of {old} ({p.state})", go, refuse):
            return
        if kind == "model_change":
            self._revoke(self._of_holder(h), "cessationOfOperation")  # one phone per person
            p.state, p.held = "retired", {}  # wiped
            self.phones[new] = PhoneModel(h, p.key_type)
            self._learn(new, {"sign", "auth", "mdoc"})
        elif kind == "renewal":
            self._revoke(live, "superseded")
            self._revoke(self._of_holder(h), "cessationOfOperation")  # the holder's other phones
            self._learn(old, {"sign", "auth", "mdoc"})
        elif kind == "lost_hold":
            self._revoke(live, HOLD)
            self._phone_out(old, "lost")
        elif kind == "found":
            self._release([c for c in live if c.kind in ("auth", "mdoc")])
            sign = [c for c in live if c.kind == "sign"]
            self._revoke(sign, "cessationOfOperation")
            p.state = "active"
            if ended:
                event("a found past the card's end: no signing certificate re-issued")
            self._learn(old, {"sign"} if sign and not ended else set())
        else:
            self._revoke(live, WORKFLOW_REASONS[kind])
            self._phone_out(old, "revoked")

    @precondition(lambda self: self.phones)
    @rule(data=st.data(), reason=st.sampled_from(["keyCompromise", "cessationOfOperation", "affiliationChanged",
                                                   "superseded"]),
          credential=st.sampled_from(["all", "sign", "auth", "mdoc", "jpki", "each"]))
    def revoke(self, data, reason, credential):
        """An operator's revocation (``mcred revoke``, ``POST /revocations``); ``each``: of
        every kind, one call per kind (the phone is not put out as ``all`` puts it). A
        credential of the phone revoked already for another reason, revoked for keyCompromise,
        is amended: its CRL entry and OCSP say keyCompromise, at its revocation's time."""
        phone = self._phones(data)
        for what in ("sign", "auth", "mdoc") if credential == "each" else (credential,):
            revocation.revoke(self.ctx.sessions, phone, reason, what, actor="model")
            # every credential of the phone of those kinds: a revoked one amended by keyCompromise
            self._revoke(self._on(phone, KINDS[what], ("valid", "hold", "revoked")), reason)
        if credential == "all":
            self._phone_out(phone, "revoked")

    @precondition(lambda self: self.phones)
    @rule(data=st.data(), credential=st.sampled_from(["all", "sign", "auth", "mdoc"]))
    def hold(self, data, credential):
        phone = self._phones(data)
        revocation.hold(self.ctx.sessions, phone, credential, actor="model")
        self._revoke(self._on(phone, KINDS[credential]), HOLD)
        if credential == "all":
            self._phone_out(phone, "lost")

    @precondition(lambda self: self.phones)
    @rule(data=st.data(), credential=st.sampled_from(["all", "sign", "auth", "mdoc"]))
    def release(self, data, credential):
        """Lifting holds (``mcred release``): a credential not on hold is left as it is."""
        phone = self._phones(data)
        revocation.release(self.ctx.sessions, phone, credential, actor="model")
        self._release(self._on(phone, KINDS[credential]))
        if credential == "all" and self.phones[phone].state == "lost":
            self.phones[phone].state = "active"

    def _live_phone(self, h: int) -> str | None:
        """The holder's phone with valid credentials, if any (one per person)."""
        phones = {c.phone for c in self._of_holder(h, ("valid",)) if self.phones[c.phone].state == "active"}
        assert len(phones) <= 1, phones
        return phones.pop() if phones else None

    @precondition(lambda self: self.holder_ids)
    @rule(data=st.data())
    def renew_card(self, data):
        """カードの更新 (``mcred holder renew-card``): refused while a phone is on hold;
        everything on the live phone superseded and issued anew."""
        h = data.draw(st.sampled_from(sorted(self.holder_ids)))
        phone = self._live_phone(h)
        key_type = self.phones[phone].key_type if phone else "p384"
        actions = HandoverActions(self.ctx, key_type=key_type, given={phone: dict(SECRETS)} if phone else {})
        held = bool(self._of_holder(h, ("hold",)))
        # a new card, whatever the old one's end; its renewal workflow provisions the live
        # phone with new mdocs, which no IACA in its last months signs
        iaca = self._iaca_state()
        closed = False if phone is None else None if iaca is None else iaca != "open"
        if phone is not None:  # ... nor a JPKI root a certificate from the new card would outlive
            closed = _both(closed, self._no_jpki(h, key_type, card=_card_expiry(h)))
        if not self._attempt(f"renew holder {h}'s card", lambda: renew_card(
                self.ctx, self.holder_ids[h], reason="model", key_type=key_type, actor="model", actions=actions),
                refuse=_both(held, closed)):
            return
        self.card_until[h] = _card_expiry(h)
        if phone is not None:
            self._revoke(self._on(phone), "superseded")
            self._learn(phone, {"sign", "auth", "mdoc"})

    @precondition(lambda self: self.holder_ids)
    @rule(data=st.data())
    def move(self, data):
        """異動 (``mcred holder update``): the holder moves to another municipality; the
        signing certificate and the mdoc are re-issued, the user-auth one kept."""
        h = data.draw(st.sampled_from(sorted(self.holder_ids)))
        phone = self._live_phone(h)
        held = bool(self._of_holder(h, ("hold",)))
        changes = MOVES[self.moves.get(h, 0) % 2]
        # its workflow re-issues the live phone's mdoc, which no IACA in its last months signs
        iaca = self._iaca_state()
        closed = False if phone is None or not self._on(phone, ("mdoc",)) else None if iaca is None else iaca != "open"
        # past the card's end the move is recorded in the registry alone, nothing re-issued
        # (everything on the phone ended with the card: specs/handover.md, policy 2)
        ended = self._card_over(h)
        if phone is not None and not held and ended is None:
            event("a move at the card's end: either")
            return
        if phone is not None and not held and ended:
            closed = False  # no mdoc issued: the IACA holds nothing back
        elif phone is not None and not held and self._on(phone, ("sign",)):  # its signing certificate re-issued
            closed = _both(closed, self._no_jpki(h, self.phones[phone].key_type, ("sign",)))
        if not self._attempt(f"move holder {h}", lambda: change_basic_four(
                self.ctx, self.holder_ids[h], changes, reason="model", actor="model"), refuse=_both(held, closed)):
            return
        self.moves[h] = self.moves.get(h, 0) + 1
        if phone is not None and ended:
            event("a move past the card's end: the registry alone")
        elif phone is not None:
            renewed = {c.kind for c in self._on(phone, ("sign", "mdoc"))}  # what the phone had live
            self._revoke(self._on(phone, ("sign", "mdoc")), "superseded")
            self._learn(phone, renewed)

    @precondition(lambda self: self.phones)
    @rule(data=st.data(), early=st.booleans())
    def renew_certificates(self, data, early):
        """電子証明書の更新 (``mcred jpki renew --early``): both certificates on new SE keys,
        the old ones superseded; refused for a phone that is not active, a certificate on
        hold or revoked (auth), and a P-384 card's certificates (they run to the card's
        expiry)."""
        phone = self._phones(data)
        p = self.phones[phone]
        mine = {c.kind: c for c in self._on(phone, ("sign", "auth"), status=("valid", "hold", "revoked"))
                if p.held and p.held.get(c.kind) == _key(c)}
        ok = (p.state == "active" and p.key_type == "rsa2048" and "auth" in mine
              and mine["auth"].status == "valid" and mine.get("sign") is not None and mine["sign"].status != "hold"
              # a certificate that runs to the card's last day is not renewed: the card is
              and all(_jst_day(c.not_after) < self.card_until[p.holder] for c in mine.values() if c.status == "valid"))
        # nor the certificates of a card that has expired: the card is renewed
        # (specs/jpki-profile.md, "Certificate renewal")
        ok = _both(not ok, self._card_over(p.holder))
        ok = None if ok is None else not ok
        if ok and not early:  # from 3 calendar months before the first expiry day (JST), or after it
            today, first = _jst_day(_now()), min(_jst_day(c.not_after) for c in mine.values() if c.status == "valid")
            if abs(_now() - _jst_midnight_after(_now())) < EDGE or abs(_now() - _jst_midnight_before(_now())) < EDGE:
                ok = None  # at midnight in Japan: either day
            else:
                ok = today >= _months_before(first, 3)
        if ok:  # ... nor what would outlive its JPKI root
            refused = self._no_jpki(p.holder, p.key_type, tuple(k for k, c in mine.items() if c.status == "valid"))
            ok = None if refused is None else not refused
        if not self._attempt(f"renew {phone}'s certificates{' early' * early}", lambda: renew_jpki(
                self.ctx, phone, early=early, reason="model" if early else None, actor="model"),
                refuse=None if ok is None else not ok):
            return
        renewed = {k for k, c in mine.items() if c.status == "valid"}
        self._revoke([mine[k] for k in renewed], "superseded")
        self._learn(phone, renewed)

    @rule(data=st.data())
    def advance_clock(self, data):
        """Time passes, for every party at once (the issuer, the readers, the phones)."""
        step = data.draw(st.sampled_from([s for s in CLOCK_STEPS if self.travelled + s <= MAX_TRAVEL]))
        self.travelled += step
        self.traveller.shift(step)
        _MONOTONIC_SHIFT[0] += step.total_seconds()

    def _ends_ahead(self) -> list[dt.datetime]:
        """When the credentials still unexpired end, within the travel the model allows, and
        clear of both bounds by :data:`CHOICE_MARGIN`: the clock ticks in real time, and an
        end seconds from a bound could be in the list of a run and out of its replay
        (hypothesis then fails the run as flaky, whatever the product does)."""
        now, last = _now() + CHOICE_MARGIN, _now() - self.travelled + MAX_TRAVEL - PAST_END - CHOICE_MARGIN
        return sorted({c.not_after for c in self.creds.values() if now < c.not_after <= last})

    @precondition(lambda self: self._ends_ahead())
    @rule(data=st.data())
    def advance_past_an_end(self, data):
        """Time passes to just past a credential's end (an MSO's validUntil, a certificate's
        notAfter; the reader's 5 minutes' skew after): where expiry is seen."""
        ends = self._ends_ahead()  # an index drawn from a fixed range: the same draw in a replay
        end = ends[min(data.draw(st.integers(0, 15), label="to past (index)"), len(ends) - 1)]
        step = end + PAST_END - _now()
        self.travelled += step
        self.traveller.shift(step)
        _MONOTONIC_SHIFT[0] += step.total_seconds()

    def _milestones(self) -> list[tuple[str, dt.datetime]]:
        """Where :meth:`advance_to_a_milestone` may go, within the travel the model allows:
        into the current IACA's last 90 days (no DS made: issuance refused), its last hours
        (a status list signed then would outlive it), just past its end; into a staged
        IACA's last 90 days (it can be started no more); into each card's last day
        (everything still issued: it runs through that day) and just past it (nothing issued
        from it)."""
        now, last = _now(), _now() - self.travelled + MAX_TRAVEL
        jst = dt.timezone(dt.timedelta(hours=9))
        end = self._current_iaca.not_valid_after_utc
        out = [("the IACA's last months", end - IACA_MARGIN + dt.timedelta(days=1)),
               ("the IACA's last hours", end - dt.timedelta(hours=2)), ("past the IACA's end", end + PAST_END)]
        if self.staged is not None:  # where it can no more be started
            out.append(("the staged IACA's last months",
                        self.iacas[self.staged - 1].not_valid_after_utc - IACA_MARGIN + PAST_END))
        for day in sorted(self.card_until.values()):
            start = dt.datetime.combine(day, dt.time(0), jst)
            out += [("a card's last day", start + PAST_END),
                    ("past a card's end", start + dt.timedelta(days=1) + PAST_END)]
        # soonest first (hypothesis draws the first ones more often: one that passes the
        # others leaves them behind)
        now, last = now + CHOICE_MARGIN, last - CHOICE_MARGIN  # clear of both bounds (_ends_ahead)
        return sorted(((what, t) for what, t in out if now < t <= last), key=lambda x: x[1])

    @precondition(lambda self: self._milestones())
    @rule(data=st.data())
    def advance_to_a_milestone(self, data):
        """Time passes to a milestone of the IACA or of a card (:meth:`_milestones`)."""
        ahead = self._milestones()  # soonest first: low indices, drawn more often, are the nearest
        what, when = ahead[min(data.draw(st.integers(0, 15), label="to (index)"), len(ahead) - 1)]
        event(f"to {what}")
        step = when - _now()
        self.travelled += step
        self.traveller.shift(step)
        _MONOTONIC_SHIFT[0] += step.total_seconds()

    @precondition(lambda self: self.phones)
    @rule(data=st.data(), batch=st.sampled_from([None, 1]))
    def refresh_mdoc(self, data, batch):
        """Fresh MSOs (``mcred mdoc refresh [--batch 1]``): refused unless the phone is active,
        holds a valid mdoc (or the slots are named with ``--batch``) and nothing on hold, and
        its holder has nothing live on another phone (one phone per person)."""
        phone = self._phones(data)
        if not self._attempt(f"refresh {phone}'s mdoc (batch {batch})",
                             lambda: refresh_mdocs(self.ctx, phone, batch=batch, actor="model"),
                             refuse=self._refresh_refused(phone, batch)):
            return
        self._refreshed(phone)

    def _refresh_refused(self, phone: str, batch: int | None = None) -> bool | None:
        """The model's word on an mdoc refresh of ``phone`` (:meth:`refresh_mdoc`)."""
        p = self.phones[phone]
        elsewhere = [c for c in self._of_holder(p.holder) if c.phone != phone]
        ok = (p.state == "active" and not self._on(phone, status=("hold",)) and not elsewhere
              and (batch is not None or bool(self._on(phone, ("mdoc",), ("valid",)))))
        return _both(not ok, self._no_mdoc(p.holder))

    def _refreshed(self, phone: str) -> None:
        """An mdoc refresh of ``phone`` went through: its mdoc superseded, a new one in the SE."""
        self._revoke(self._on(phone, ("mdoc",)), "superseded")
        self._learn(phone, {"mdoc"})

    def _reissuable(self) -> list[tuple[str, int]]:
        """What :meth:`reissue` may name: every IACA generation (by number) and document signer
        (by serial) the model knows, in the order it learnt them (replayable, as
        :meth:`revoke_signer` draws)."""
        return [("iaca", g) for g in range(1, len(self.iacas) + 1)] + [
            ("ds", s) for s, m in self.signers.items() if m.purpose == PURPOSE_DS]

    @precondition(lambda self: self.creds)
    @rule(data=st.data(), out_of_use=st.booleans(), name=st.sampled_from(["label", "serial"]))
    def reissue(self, data, out_of_use, name):
        """New MSOs for every phone holding a valid mdoc of a signer (``mcred mdoc reissue
        --signer``, ``POST /mdoc-reissues``): an IACA or DS out of use (revoked, or retired:
        not the one signing now) with a phone still holding a valid or held mdoc of it
        (``out_of_use``, when there is one), else any IACA or DS.
        Refused before any job (409 provisioning-refused) for the signer signing now (the
        current IACA, the DS the next MSO is signed by) and, when it has phones, while the
        current IACA can sign no MSO (its last months, its end); else a job refreshing each
        phone as :meth:`refresh_mdoc` does (``reissued`` or ``refused``, a refusal stopping
        no other phone), a phone whose mdoc of it is on hold named and left (``on-hold``);
        ``done`` once every phone is re-issued."""
        live = [c for c in self.creds.values() if c.kind == "mdoc" and c.status in LIVE]
        out = [(what, n) for what, n in self._reissuable() if any(
            (c.gen if what == "iaca" else c.ds_serial) == n for c in live)
            and (n != self.current if what == "iaca" else n != self.ds_expect or self.signers[n].revoked_at)]
        what, n = data.draw(st.sampled_from(out if out_of_use and out else self._reissuable()), label="signer")
        if what == "iaca":
            label, cert = f"mdoc-iaca-{n}", self.iacas[n - 1]
            ref = label if name == "label" else format(cert.serial_number, "x")
            reason = self.withdrawn.get(n, (None,))[0]
            active = n == self.current
            of = [c for c in self.creds.values() if c.kind == "mdoc" and c.gen == n]
        else:
            m = self.signers[n]
            label, reason = m.label, m.reason
            ref = m.label if name == "label" and m.label else format(n, "x")
            # the DS signing now: the one the next MSO is signed by; in its last 90 days it may
            # have been replaced already by one not seen yet (any set-up of the issuer's keys)
            due = _now() > m.not_after - DS_MARGIN - EDGE
            active = n == self.ds_expect and m.revoked_at is None and (None if due else True)
            of = [c for c in self.creds.values() if c.kind == "mdoc" and c.ds_serial == n]
        phones = sorted({c.phone for c in of if c.status == "valid"})
        held = sorted({c.phone for c in of if c.status == "hold"} - set(phones))
        iaca = self._iaca_state()
        closed = False if not phones else None if iaca is None else iaca != "open"
        refuse = _both(active, closed)
        r = self.http.post("/mdoc-reissues", json={"signer": ref, "workers": 1}, headers=self.auth)
        said = f"re-issue of {what} {label or n} ({ref}; {reason or 'not revoked'}, IACA {iaca}, phones {phones})"
        if r.status_code == 409:
            assert refuse is not False, (said, r.text)
            assert r.json()["type"].endswith("/provisioning-refused"), r.text
            assert ("signing now" in r.json()["detail"]) == (active is True) or active is None, (said, r.text)
            event("re-issue refused: " + ("the signer signs now" if "signing now" in r.json()["detail"]
                                          else f"the IACA {iaca}"))
            return
        assert r.status_code == 202 and refuse is not True, (said, r.status_code, r.text)
        from api_helpers import wait_job

        job = wait_job(self.http, self.auth, r.json()["id"], 300)
        assert job["state"] == "succeeded", (said, job)
        got = job["result"]
        if what == "ds":  # its label, as the issuer knows it
            (info,) = [i for i in mdoc_service(self.ctx).signers(PURPOSE_DS) if i.label == got["signer"]]
            assert int(info.serial, 16) == n, (said, got)
            self.signers[n].label = label = got["signer"]
        assert (got["signer"], got["purpose"], got["revoked"]) == (label, what, reason), (said, got)
        outcomes = {x["phone"]: x for x in got["phones"]}
        assert sorted(outcomes) == sorted(phones + held), (said, got)
        for phone in phones:  # in the order the job took them (sorted)
            x = outcomes[phone]
            refused = self._refresh_refused(phone)
            if x["outcome"] == "reissued":
                assert refused is not True and x["mdocs"] == 1, (said, x, "the model: refused")
                self._refreshed(phone)
                event(f"re-issued a phone's mdoc of a {'revoked' if reason else 'retired'} {what}")
            else:
                assert x["outcome"] == "refused" and refused is not False, (said, x, "the model: re-issued")
                event("re-issue: a phone refused")
        for phone in held:
            assert outcomes[phone]["outcome"] == "on-hold", (said, outcomes[phone])
            event("re-issue: a phone on hold left")
        assert got["done"] == all(x["outcome"] == "reissued" for x in outcomes.values()), got

    @precondition(lambda self: self.creds)
    @rule()
    def ds_rollover(self):
        """A new document-signer generation (``mcred mdoc ds rollover``): the MSOs issued from
        now on are signed by it; those signed before still verify (until their DS is revoked)."""
        svc = mdoc_service(self.ctx)
        svc.setup()  # whatever the IACA's state: it makes what the IACA can still make
        state = self._iaca_state()
        try:
            key = svc.rollover_ds()
        except MdocKeyError as exc:
            # in the IACA's last months no DS is made (its MSOs would be cut short): the
            # refusal names the IACA rollover; past its end the IACA signs nothing
            assert state in ("closing", "ended", None), f"DS rollover refused with the IACA {state}: {exc}"
            assert ("mcred mdoc iaca rollover" in str(exc)) == (state == "closing") or state is None, exc
            event(f"DS rollover refused: the IACA {state}")
            return
        assert state in ("open", None), f"a DS made with the IACA {state}: {key.label}"
        s = key.certificate.serial_number
        assert s not in self.signers, f"a rollover made a DS seen before: {key.label}"
        key.certificate.verify_directly_issued_by(self._current_iaca)
        self.signers[s] = SignerModel(PURPOSE_DS, key.label, s, key.not_valid_after, gen=self.current)
        self.ds_expect = s

    @precondition(lambda self: len(self.iacas) < MAX_IACAS or self._staged_now()[0] is not None)
    @rule()
    def iaca_rollover(self):
        """The next IACA generation started (``mcred mdoc iaca rollover``, ``POST
        /trust/iaca-rollover``), at any time, in the current one's last months or past its
        end too: the staged IACA when there is one that can still be started (the very
        certificate the bundle published, ``staged_since`` when it was staged), else a new
        one made here; with its document signer and status-list signer, each naming the new
        generation's CRL (/trust/iaca-N.crl). The MSOs issued from now on chain to it and go
        on its lists; the older ones stay valid under their IACA. The kept reader is handed
        the new IACA (the bundle); a reader that is not, and did not take the bundle while it
        was staged, refuses the new generation's mdocs."""
        before = self._iaca_state()
        staged, edge = self._staged_now()
        r = self.http.post("/trust/iaca-rollover", headers=self.auth)
        assert r.status_code == 200, (f"IACA rollover with the IACA {before} (staged {self.staged}: "
                                      f"{'startable' if staged else 'not startable'})", r.status_code, r.text)
        self._iaca_succeeded(r.json(), staged, edge, before, _now(), "IACA rollover")

    def _iaca_succeeded(self, info: dict, staged: int | None, edge: bool, before: str | None, now: dt.datetime,
                        what: str) -> None:
        """The next IACA generation started by a rollover or a revocation of the current one
        (``info``: what ``POST /trust/iaca-rollover`` answers): the staged one ``staged``
        (:meth:`_staged_now`; ``edge``: either), else a new one; its signers."""
        if edge:  # the staged IACA at the start of its last months: started or not
            staged = self.staged if info["label"] == f"mdoc-iaca-{self.staged}" else None
        gen = staged or len(self.iacas) + 1
        assert info["label"] == f"mdoc-iaca-{gen}", (info, f"the model: mdoc-iaca-{gen} (staged {self.staged})")
        cert = x509.load_der_x509_certificate(self.http.get(f"/trust/iaca-{gen}.der").content)
        assert self.http.get("/trust/iaca.der").content == cert.public_bytes(serialization.Encoding.DER)
        assert format(cert.serial_number, "x") == info["serial"], info
        if staged:  # the certificate readers took from the bundle since its staging
            assert cert == self.iacas[gen - 1], f"IACA {gen} started is not the one staged"
            since = info["staged_since"] and dt.datetime.fromisoformat(info["staged_since"])
            assert since and abs(since - self.staged_at) < SLACK, (info, self.staged_at)
            event(f"{what} started the staged IACA, with the IACA {before}")
        else:
            assert info["staged_since"] is None, info
            assert cert.subject not in {c.subject for c in self.iacas}
            assert abs(cert.not_valid_after_utc - (now + dt.timedelta(days=10 * 365))) < SLACK, cert.not_valid_after_utc
            self.iacas.append(cert)
            if self.staged is not None:
                event(f"{what} past a staged IACA in its last months: a new one")
        # nothing staged after it (one that was, in its last months, is skipped: never started)
        self.current, self.staged, self.staged_at = gen, None, None
        svc = mdoc_service(self.ctx)
        ds = svc.document_signer().certificate
        ds.verify_directly_issued_by(cert)
        (dp,) = ds.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert _path(dp.full_name[0].value) == f"/trust/iaca-{gen}.crl", dp
        for purpose, label in ((PURPOSE_DS, info["ds"]), (PURPOSE_STATUS, info["status_signer"])):
            (made,) = [i for i in svc.signers(purpose) if i.label == label]
            serial = int(made.serial, 16)
            assert serial not in self.signers and made.iaca == info["label"] and made.active, made
            self.signers[serial] = SignerModel(purpose, label, serial, made.not_after, gen=gen)
        assert ds.serial_number == int(next(i.serial for i in svc.signers(PURPOSE_DS) if i.label == info["ds"]), 16)
        self.ds_expect = ds.serial_number
        self.kept_trust.add(cert, source="bundle")
        event(f"{what} with the IACA {before}")

    @precondition(lambda self: len(self.iacas) < MAX_IACAS or self.staged is not None)
    @rule(via=st.sampled_from(["bundle", "vical"]))
    def stage_iaca(self, via):
        """The next IACA generation staged (``mcred mdoc iaca stage``, ``POST
        /trust/iaca-stage``): made and published at once in the bundle and the VICAL, right
        after the current IACA, and at /trust/iaca-N.der, vouching for nothing until the
        rollover starts it; refused while one is staged that can still be started
        (``IacaAlreadyStaged``, 409 iaca-already-staged), nothing changed. A reader takes
        the bundle or the VICAL right after (:meth:`take_trust`): it will take the first
        mdocs of the staged IACA with no trust update."""
        staged, edge = self._staged_now()
        if edge:
            event("staging with the staged IACA at its last months: either")
            return
        if staged is not None:
            self._staging_refused()
            return
        if len(self.iacas) >= MAX_IACAS:
            return
        r = self.http.post("/trust/iaca-stage", headers=self.auth)
        assert r.status_code == 200, (r.status_code, r.text)
        info, gen, now = r.json(), len(self.iacas) + 1, _now()
        assert (info["label"], info["current"]) == (f"mdoc-iaca-{gen}", f"mdoc-iaca-{self.current}"), info
        cert = x509.load_der_x509_certificate(self.http.get(f"/trust/iaca-{gen}.der").content)
        assert format(cert.serial_number, "x") == info["serial"] and cert.subject not in {c.subject for c in self.iacas}
        assert abs(cert.not_valid_after_utc - (now + dt.timedelta(days=10 * 365))) < SLACK, cert.not_valid_after_utc
        # the current IACA goes on issuing
        assert self.http.get("/trust/iaca.der").content == self._current_iaca.public_bytes(serialization.Encoding.DER)
        if self.staged is not None:
            event("staged again past a staged IACA in its last months")
        self.iacas.append(cert)
        self.staged, self.staged_at = gen, now
        event(f"IACA staged with the IACA {self._iaca_state()}")
        self._staging_refused()
        self.take_trust(via)

    def _staging_refused(self) -> None:
        """Staging while one is staged: refused, naming it, over HTTP and in the service."""
        r = self.http.post("/trust/iaca-stage", headers=self.auth)
        assert r.status_code == 409 and r.json()["type"].endswith("/iaca-already-staged"), (r.status_code, r.text)
        assert f"mdoc-iaca-{self.staged}" in r.json()["detail"], r.json()
        with pytest.raises(IacaAlreadyStaged):
            mdoc_service(self.ctx).stage_iaca(actor="model")
        event("staging refused: one is staged")

    @rule(via=st.sampled_from(["bundle", "vical"]))
    def take_trust(self, via):
        """A reader takes the bundle (/trust/iaca.pem) or the VICAL (/trust/vical) now and
        keeps it, never told again (the last few kept): it takes each mdoc issued from then
        on whose IACA it took, current or staged then, and refuses on the chain those of an
        IACA staged after (:meth:`_takers_judge`)."""
        trust = self._taken(via)
        gens = frozenset(self._gen_of_iaca(c) for c in trust.certificates)
        assert all(isinstance(g, int) for g in gens), f"the {via} holds an IACA the model does not know: {gens}"
        staged, _edge = self._staged_now()
        self.takers.append(TrustTaken(via, _now(), gens, staged if staged in gens else None, trust))
        del self.takers[:-KEPT_TAKERS]

    def _revocable_iacas(self) -> list[int]:
        """The IACA generations :meth:`revoke_iaca` may name: any, revoked already or not,
        but the current one when its revocation would make a generation past
        :data:`MAX_IACAS` (no staged one to start)."""
        staged, edge = self._staged_now()
        full = len(self.iacas) >= MAX_IACAS and (staged is None or edge)
        return [g for g in range(1, len(self.iacas) + 1) if not (g == self.current and full)]

    @precondition(lambda self: self.creds and self._revocable_iacas())  # something signed: MSOs, lists
    @rule(data=st.data(), reason=st.sampled_from(IACA_REASONS), name=st.sampled_from(["number", "label", "serial"]))
    def revoke_iaca(self, data, reason, name):
        """An IACA generation revoked (``mcred mdoc iaca revoke``, ``POST
        /trust/iaca-revocations``): current, staged or retired, named by its number, label or
        serial; again when revoked already (idempotent, ``changed`` false, but a compromise,
        cACompromise or keyCompromise, amends another reason: ``amended_from``, its time kept).
        It leaves the bundle and the VICAL at once; its key signs nothing more (its CRL and its
        mdocs' lists answer 410 iaca-withdrawn), its signers are retired; a fresh reader refuses
        its mdocs on their chain; the kept reader, never told, until its list or CRL of it has
        to be fetched again. The current one is replaced in the same step by the staged IACA
        (the very certificate staged) when it can be started, else by a new generation, each
        with its document and status-list signers (as a rollover does): issuance goes on
        under it; the kept reader is handed it."""
        gen = data.draw(st.sampled_from(self._revocable_iacas()), label="IACA")
        cert = self.iacas[gen - 1]
        ref = {"number": str(gen), "label": f"mdoc-iaca-{gen}", "serial": format(cert.serial_number, "x")}[name]
        was, before = self.withdrawn.get(gen), self._iaca_state()
        staged, edge = self._staged_now() if gen == self.current else (None, False)
        mine = [c for c in self.creds.values() if c.kind == "mdoc" and c.gen == gen and c.status == "valid"]
        r = self.http.post("/trust/iaca-revocations", json={"iaca": ref, "reason": reason}, headers=self.auth)
        assert r.status_code == 200, (f"revoking IACA {gen} ({ref}) for {reason}", r.status_code, r.text)
        info, now = r.json(), _now()
        assert (info["label"], info["serial"], info["purpose"]) == (
            f"mdoc-iaca-{gen}", format(cert.serial_number, "x"), "iaca"), info
        assert info["active"] is False and info["revoked_at"] is not None, info
        # the valid mdocs its document signers signed, and their phones (they need new MSOs)
        assert info["affected_mdocs"] == len(mine), (info, [_key(c) for c in mine])
        assert info["affected_phones"] == sorted({c.phone for c in mine}), info
        amends = was is not None and reason in COMPROMISES and was[0] not in COMPROMISES
        assert info["changed"] == (was is None or amends), (f"IACA {gen} revoked {was}, again for {reason}", info)
        # amended_from: the reason a compromise replaced, and only then
        assert info["amended_from"] == (was[0] if amends else None), (f"IACA {gen} revoked {was}, {reason}", info)
        revoked_at = dt.datetime.fromisoformat(info["revoked_at"])
        if was is None:
            assert abs(revoked_at - now) < SLACK, (revoked_at, now)
            self.withdrawn[gen] = (reason, revoked_at)
            event(f"IACA revoked: the {'current' if gen == self.current else 'staged' if gen == self.staged else 'retired'}"
                  f" one{' (cACompromise)' * (reason == 'cACompromise')}")
        elif amends:
            self.withdrawn[gen] = (reason, was[1])
            event("an IACA's revocation amended to a compromise")
        else:
            event("an IACA revoked again: nothing changed")
        assert (info["reason"], revoked_at) == self.withdrawn[gen], (info, self.withdrawn[gen])
        svc = mdoc_service(self.ctx)
        # its signers retired: none of them active, and those the call retired are its own
        under = {i.label: i for p in (PURPOSE_DS, PURPOSE_STATUS) for i in svc.signers(p) if i.iaca == info["label"]}
        assert set(info["retired_signers"]) <= set(under) and not [i for i in under.values() if i.active], (
            info, under)
        if was is not None or gen != self.current:
            assert info["successor"] is None, info
            assert was is None or info["retired_signers"] == [], info
            if gen == self.staged:
                assert info["retired_signers"] == [], info
                self.staged, self.staged_at = None, None  # out of the bundle: never started
            return
        self._iaca_succeeded(info["successor"], staged, edge, before, now, "IACA revocation")

    @precondition(lambda self: self.creds)  # something signed: MSOs, lists
    @rule(data=st.data(), purpose=st.sampled_from([PURPOSE_DS, PURPOSE_STATUS]),
          reason=st.sampled_from(SIGNER_REASONS), name=st.sampled_from(["label", "serial", "openssl"]))
    def revoke_signer(self, data, purpose, reason, name):
        """A document signer (``mcred mdoc ds revoke``, ``POST /trust/ds-revocations``) or a
        status-list signer (``mcred status-list signer revoke``) revoked, named by its label
        or serial (as openssl prints it): any generation the model has seen, revoked already
        or not (idempotent, but keyCompromise amends another reason, its time kept). The IACA
        CRL lists it from the next build; readers refuse the MSOs it signed (``ds_revocation``)
        or the lists it signed (``status_list_signature``); the next MSO is signed by a new DS
        generation, the next list by a new signer."""
        # in the order the model learnt them, not by serial: the serials of the signers made
        # in an example are random, and the index drawn must name the same one in a replay
        known = [s for s, m in self.signers.items() if m.purpose == purpose]
        s = data.draw(st.sampled_from(known), label="signer")
        m = self.signers[s]
        octets = s.to_bytes((s.bit_length() + 7) // 8, "big")
        # openssl's forms: ``x509 -text`` (the route's pattern takes it), ``x509 -serial``
        openssl = ":".join(f"{b:02x}" for b in octets) if purpose == PURPOSE_DS else f"serial={octets.hex().upper()}"
        ref = m.label if name == "label" and m.label else openssl if name == "openssl" else format(s, "x")
        if purpose == PURPOSE_DS:
            r = self.http.post("/trust/ds-revocations", json={"ds": ref, "reason": reason}, headers=self.auth)
            assert r.status_code == 200, (r.status_code, r.text)
            info = r.json()
            changed, revoked_at = info["changed"], dt.datetime.fromisoformat(info["revoked_at"])
        else:
            got, changed = mdoc_service(self.ctx).revoke_signer(ref, reason, actor="model", purposes=(PURPOSE_STATUS,))
            info, revoked_at = got.to_json(), got.revoked_at
        assert int(info["serial"], 16) == s and info["purpose"] == purpose, info
        # revoked already: changed only by keyCompromise amending another reason (its time kept)
        amends = m.revoked_at is not None and reason == "keyCompromise" != m.reason
        assert changed == (m.revoked_at is None or amends), f"revoking {ref} ({m}) for {reason}: changed {changed}"
        m.label = info["label"]
        if amends:
            m.reason = reason
            event(f"a {purpose}'s revocation amended to keyCompromise")
        elif changed:
            assert abs(revoked_at - _now()) < SLACK, (revoked_at, _now())
            m.revoked_at, m.reason = revoked_at, reason
            event(f"revoked a {purpose}")
            if s == self.ds_expect:
                self.ds_expect = None  # a new generation signs the next MSO
        assert (revoked_at, info["reason"]) == (m.revoked_at, m.reason), (info, m)
        assert info["active"] is False, info
        if purpose == PURPOSE_DS:  # the valid mdocs it signed, which need new MSOs
            mine = [c for c in self.creds.values() if c.kind == "mdoc" and c.ds_serial == s and c.status == "valid"]
            assert info["affected_mdocs"] == len(mine), (info, [_key(c) for c in mine])

    @precondition(lambda self: self.creds)  # something signed: MSOs, lists
    @rule(data=st.data(), name=st.sampled_from(["label", "serial", "number"]))
    def destroy_key(self, data, name):
        """A signer's private key destroyed (``mcred mdoc key destroy``, ``POST
        /trust/key-destructions``; specs/issuer-keys.md, "A signer's key destroyed"): any
        revoked IACA, document signer or status-list signer the model knows (whatever the
        reason: destroyed, recorded, its certificate still published; again: ``already``,
        nothing changed), or one signing now, refused with 409 signer-still-signing and nothing
        changed: the current IACA, the staged one (while a rollover would start it), the DS the
        next MSO is signed by (in its last 90 days it may have been replaced already: either).
        What outsiders see does not change: the invariants hold after it as before (a revoked
        IACA's CRL and lists answer 410 iaca-withdrawn, its generation's certificate is served,
        the IACA CRL lists a revoked signer, its lists are re-signed by new signers)."""
        staged, edge = self._staged_now()
        targets = [("iaca", g) for g in range(1, len(self.iacas) + 1)
                   if g in self.withdrawn or g == self.current or (g == self.staged and staged is not None)]
        targets += [("signer", s) for s, m in self.signers.items()
                    if m.revoked_at is not None or (s == self.ds_expect and m.purpose == PURPOSE_DS)]
        what, n = data.draw(st.sampled_from(targets), label="key")
        if what == "iaca":
            cert, label = self.iacas[n - 1], f"mdoc-iaca-{n}"
            ref = {"number": str(n), "label": label, "serial": format(cert.serial_number, "x")}[name]
            refuse = None if n == self.staged and edge else n not in self.withdrawn
            said = f"IACA {n} ({'revoked' if n in self.withdrawn else 'current' if n == self.current else 'staged'})"
        else:
            m = self.signers[n]
            cert, label = None, m.label
            ref = m.label if name != "serial" and m.label else format(n, "x")
            due = _now() > m.not_after - DS_MARGIN - EDGE
            refuse = False if m.revoked_at is not None else None if due else True
            said = f"{m.purpose} {m.label or format(n, 'x')} ({'revoked' if m.revoked_at else 'the one signing'})"
        r = self.http.post("/trust/key-destructions", json={"signer": ref}, headers=self.auth)
        if r.status_code == 409:
            assert refuse is not False, (said, r.text)
            assert r.json()["type"] == "/problems/signer-still-signing", (said, r.text)
            event("key destruction refused: the signer signs now")
            return
        assert r.status_code == 200 and refuse is not True, (said, r.status_code, r.text)
        got = r.json()
        label = got["label"] if label is None else label
        assert got["label"] == label and int(got["serial"], 16) == (n if what == "signer" else cert.serial_number), got
        at = dt.datetime.fromisoformat(got["key_destroyed_at"])
        if label in self.destroyed:
            assert got["already"] and not got["changed"] and at == self.destroyed[label], (said, got)
            event("a key destroyed again: already")
        else:
            assert got["changed"] and not got["already"] and not got["found_absent"], (said, got)
            assert abs(at - _now()) < SLACK, (at, _now())
            self.destroyed[label] = at
            event(f"destroyed the key of a {'revoked' if refuse is False else 'retired'} {what}")
        if what == "signer":
            self.signers[n].label = label
        else:  # its certificate still served by its generation
            assert self.http.get(f"/trust/iaca-{n}.der").content == cert.public_bytes(serialization.Encoding.DER)

    # --- invariants ----------------------------------------------------------------------------

    def _iaca_crls_follow_the_model(self) -> None:
        """Each IACA generation's CRL (its document and status-list signers), at the URL its
        certificates carry (/trust/iaca.crl for the first, /trust/iaca-N.crl after), is
        signed by that IACA, current, and lists exactly the signers of that IACA the model
        revoked, with their reason and time, until one CRL built after a signer's end (RFC
        5280 3.3, specs/revocation.md 6: those not expired at the thisUpdate of the CRL
        before it, which the model knows when it (or a reader) saw that CRL; the first CRL it
        saw, of a template installation, may follow unseen ones). Past the IACA's end it
        answers 410 iaca-ended: no CRL is issued for it any more; once it is revoked, 410
        iaca-withdrawn, whatever its end (its key signs nothing more)."""
        for gen, iaca in enumerate(self.iacas, 1):
            url = "/trust/iaca.crl" if gen == 1 else f"/trust/iaca-{gen}.crl"
            r = self.http.get(url)
            if gen in self.withdrawn:  # revoked: its key signs no CRL, whatever its end
                assert r.status_code == 410 and r.json()["type"].endswith("/iaca-withdrawn"), (
                    f"{url} of the revoked IACA {gen}: {r.status_code}")
                event("the CRL of a revoked IACA: 410")
                continue
            now, end = _now(), iaca.not_valid_after_utc
            if abs(now - end) < EDGE:
                continue  # ending: either
            if now > end:
                assert r.status_code == 410 and r.json()["type"].endswith("/iaca-ended"), (
                    f"{url} at {now:%F %T}, its IACA ended {end:%F %T}: {r.status_code}")
                event("the CRL of an ended IACA: 410")
                continue
            assert r.status_code == 200, (url, r.status_code)
            self._iaca_crl_follows_the_model(gen, x509.load_der_x509_crl(r.content), now)

    def _iaca_crl_follows_the_model(self, gen: int, crl: x509.CertificateRevocationList, now: dt.datetime) -> None:
        assert crl.issuer == self.iacas[gen - 1].subject and crl.is_signature_valid(self.iacas[gen - 1].public_key())
        this, nxt = crl.last_update_utc, crl.next_update_utc
        assert this <= now and nxt == this + CRL_VALIDITY and nxt - now > CRL_REFRESH - SLACK, (
            f"IACA {gen}'s CRL served at {now:%F %T}: thisUpdate {this:%F %T}, nextUpdate {nxt:%F %T}")
        assert self._see_iaca_crl(crl) == gen
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        earlier = [n for n in self.iaca_seen[gen] if n < number]
        before = self.iaca_seen[gen][max(earlier)] if earlier else None
        listed = _crl_entries(crl)
        what = f"IACA {gen}'s CRL #{number} (thisUpdate {this:%F %T}, the one before {before and f'{before:%F %T}'})"
        mine = self._revoked_signers(gen)
        assert set(listed) <= mine, f"{what} lists {set(listed) - mine}"
        if gen > 1 and listed:
            event("a newer IACA's CRL lists a revoked signer")
        for s in mine:
            m = self.signers[s]
            want = (m.reason, m.revoked_at.replace(microsecond=0))
            if abs(this - m.not_after) < EDGE or (before is not None and abs(before - m.not_after) < EDGE):
                continue  # ending as a CRL was built: listed or not
            if this > m.not_after and before is None:
                if s not in listed:
                    continue  # the CRL before it unseen: gone already, or listed as it was revoked
            elif this > m.not_after and before > m.not_after:
                assert s not in listed, f"{what} lists {m.label or m.purpose} {s:x}, ended {m.not_after:%F %T}"
                event("IACA CRL: an ended revoked signer left off")
                continue
            if this > m.not_after:
                event("IACA CRL: an ended revoked signer on the first CRL after its end")
            assert listed.get(s) == want, f"{what}: {m.label or m.purpose} {s:x} {listed.get(s)}, the model {want}"

    def _bundle_follows_the_model(self):  # noqa: ANN202
        """The trust bundle readers are given (/trust/iaca.pem, ``MdocService.trusted_iacas``):
        the current IACA first, then the staged one (published before use, while it can still
        be started: :meth:`_staged_now`), then exactly the older generations, newest first,
        not ended, not revoked (:meth:`revoke_iaca`: out of trust) and with a document or
        status-list signer within its validity (an MSO or a list it signed may still be
        presented; the signer revoked or not, as the issuer records them:
        the model learns the signers it has not seen from ``signers()``). The VICAL
        (/trust/vical, imported by ``TrustStore.import_vical`` under /trust/vical-ca.pem)
        holds the same IACAs in the same order, each scoped to one docType. The issuer has
        no signer under the staged IACA (it vouches for nothing before its rollover). A
        trust store of the bundle."""
        bundle = self._taken("bundle")
        vical = self._taken("vical")
        now = _now()
        svc = mdoc_service(self.ctx)
        ends: dict[int, list[dt.datetime]] = {}
        for m in self.signers.values():
            ends.setdefault(m.gen, []).append(m.not_after)
        for purpose in (PURPOSE_DS, PURPOSE_STATUS):
            for info in svc.signers(purpose):
                if self.staged is not None:
                    assert _generation(info.iaca) != self.staged, (
                        f"{info.label} under the staged IACA {self.staged}, before its rollover")
                if int(info.serial, 16) not in self.signers:
                    ends.setdefault(_generation(info.iaca), []).append(info.not_after)
        edges = [e for gen in range(1, self.current) for e in (*ends.get(gen, ()), self.iacas[gen - 1].not_valid_after_utc)]
        staged, staged_edge = self._staged_now()
        if not staged_edge and all(abs(now - e) >= EDGE for e in edges):
            want = [self._current_iaca] + ([self.iacas[staged - 1]] if staged else []) + [
                self.iacas[gen - 1] for gen in range(self.current - 1, 0, -1) if gen not in self.withdrawn
                and now < self.iacas[gen - 1].not_valid_after_utc and any(now < e for e in ends.get(gen, ()))]
            for what, got in (("bundle", bundle.certificates), ("VICAL", vical.certificates)):
                assert got == want, (f"the {what} at {now:%F %T}: IACAs {[self._gen_of_iaca(c) for c in got]}, "
                                     f"the model {[self._gen_of_iaca(c) for c in want]} (staged {self.staged})")
            if len(want) > 1 + bool(staged):
                event("the bundle holds an older IACA")
            if any(self.iacas[gen - 1] not in want for gen in range(1, self.current)):
                event("an older IACA left the bundle")
            if staged:
                event("the bundle and the VICAL hold the staged IACA")
            elif self.staged is not None:
                event("a staged IACA in its last months left the bundle")
        return bundle

    def _taken(self, via: str):  # noqa: ANN202
        """A trust store of what a reader takes now: the bundle (/trust/iaca.pem) or the
        VICAL (/trust/vical, its signer's chain to /trust/vical-ca.pem)."""
        from reader.trust import TrustStore

        trust = TrustStore()
        if via == "bundle":
            r = self.http.get("/trust/iaca.pem")
            assert r.status_code == 200, r.status_code
            for cert in x509.load_pem_x509_certificates(r.content):
                trust.add(cert, source="bundle")
            return trust
        r, ca = self.http.get("/trust/vical"), self.http.get("/trust/vical-ca.pem")
        assert r.status_code == 200 and ca.status_code == 200, (r.status_code, ca.status_code)
        got = trust.import_vical(r.content, vical_anchors=x509.load_pem_x509_certificates(ca.content), now=_now())
        assert got.imported == len(trust) and not got.skipped, got
        assert len({a.doc_types for a in trust.anchors}) == 1 and all(len(a.doc_types) == 1 for a in trust.anchors), (
            [a.doc_types for a in trust.anchors])
        return trust

    def _gen_of_iaca(self, cert: x509.Certificate) -> int | str:
        return next((n for n, c in enumerate(self.iacas, 1) if c == cert), f"unknown {cert.subject.rfc4514_string()}")

    def _kept_relying_party(self, certs: list[Cred]) -> None:
        """A JPKI relying party kept across the example checks each unexpired certificate on
        its partition's CRL through its CRL cache, kept until the CRL's nextUpdate: never
        answered from a CRL past it (refetched once it passed), and the answer the model gave
        when that CRL was fetched (a revocation after it is seen at the next fetch)."""
        import re

        from reader.relying_party import check_revocation_crl

        for c in certs:
            now = _now()
            if c.not_after - now < EDGE:
                continue  # ended: RFC 5280 3.3 takes it off the CRLs
            cert = x509.load_der_x509_certificate(c.der)
            aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
            fetches = self.kept_rp.fetches
            check = check_revocation_crl(cert, self._root(c.kind, aki), now, client=self.http, cache=self.kept_rp)
            if self.kept_rp.fetches > fetches:
                self.kept_rp_saw[c.crl] = {x.serial: (x.status, x.reason) for x in certs if x.crl == c.crl}
            what = f"the kept relying party on {c.kind} certificate {c.serial:x} at {now:%F %T}: {check.reason}"
            used = re.search(r"thisUpdate (\S+)\)$", check.reason or "")
            assert check.code in ("good", "revoked", "on_hold") and used, what
            this = dt.datetime.fromisoformat(used.group(1))
            assert this <= now <= this + CRL_VALIDITY, f"{what}: a CRL past its nextUpdate"
            status, reason = self.kept_rp_saw[c.crl].get(c.serial, ("valid", None))
            want = {"valid": "good", "hold": "on_hold", "revoked": "revoked"}[status]
            assert check.code == want and (status != "revoked" or check.revocation_reason == reason), (
                f"{what}: the model said {status} ({reason}) when it fetched the CRL")
            if (c.status, c.reason) != (status, reason):
                event("kept relying party: a change since its CRL not seen yet")
            if now - this > CRL_VALIDITY - CRL_REFRESH:
                event("kept relying party: a CRL in its last hour")

    @invariant()
    def outsiders_see_the_model(self):
        if not hasattr(self, "creds"):
            return
        from reader.ds_crl import DsCrlCheck

        seen: dict[object, str] = {}  # what outsiders see of each credential: valid | hold | revoked
        certs = [c for c in self.creds.values() if c.kind in ("sign", "auth")]
        self.fresh_ds_crl = DsCrlCheck(self._iaca_fetcher())
        self.fresh_trust = self._bundle_follows_the_model()
        for path, slot in sorted({(c.crl, c.kind) for c in certs}):
            crl, number, this = self._crl(path, slot)
            before = 0 if number == 1 else self.crls_seen[path].get(number - 1)  # the CRL it follows
            mine = {c.serial: c for c in certs if c.crl == path}
            assert set(crl) <= set(mine), f"CRL {path} lists certificates of nobody: {set(crl) - set(mine)}"
            for serial, c in mine.items():
                # the OCSP responder answers for every certificate, expired or not
                ocsp_said, entry = self._ocsp(c), crl.get(serial)
                seen[_key(c)] = "valid" if ocsp_said[0] == "good" else "hold" if ocsp_said[1] == HOLD else "revoked"
                want = c.status if c.status != "revoked" else f"revoked ({c.reason})"
                got = seen[_key(c)] if seen[_key(c)] != "revoked" else f"revoked ({ocsp_said[1]})"
                assert got == want, f"{c.kind} certificate {serial:x} on {c.phone}: OCSP {got}, the model {want}"
                if abs(this - c.not_after) < EDGE:
                    continue  # expiring as the CRL was built: listed or not
                # RFC 5280 3.3: listed through its end and on the first CRL after it; the CRL
                # lists what had not ended at the thisUpdate of the CRL it follows (the first:
                # all), which the model knows when it saw that CRL
                if this > c.not_after and before is None:
                    if entry is None:
                        continue  # the CRL before it unseen: gone, or listed as OCSP says
                elif this > c.not_after and before != 0:
                    if abs(before - c.not_after) < EDGE:
                        continue
                    if before > c.not_after:
                        assert entry is None, (f"CRL {path} #{number} lists {c.kind} certificate {serial:x}, "
                                               f"ended {c.not_after} before the CRL it follows ({before})")
                        continue
                # the CRL agrees with OCSP: absent / listed with the same reason and time
                assert ocsp_said == (("good", None, None) if entry is None else ("revoked", *entry)), (
                    f"OCSP {ocsp_said} and CRL #{number} {entry} disagree on {c.kind} certificate {serial:x}")
        for c in self.creds.values():
            if c.kind == "mdoc":
                status = self._status(c)
                seen[_key(c)] = c.status if status is None else {0: "valid", 1: "revoked", 2: "hold"}[status]
                assert seen[_key(c)] == c.status, f"the mdoc {c.uri}#{c.idx} on {c.phone}: {seen[_key(c)]}, " \
                                                  f"the model {c.status}"
                # a reader takes a presentation of it (made when issued) iff it is valid,
                # unexpired and its DS not revoked
                self._judge(c, c.status, self._present(c), revoked=self._revoked_signers(),
                            trusted=c.gen not in self.withdrawn)
                self._kept_reader_verdict(c)
        self._iaca_crls_follow_the_model()
        self._kept_relying_party(certs)
        # the expiry notices (GET /credentials?expiring_within=90): the valid certificates
        # ending within the 3 months' renewal window, or ended, soonest first
        r = self.http.get("/credentials", params={"expiring_within": 90, "limit": 1000}, headers=self.auth)
        assert r.status_code == 200, (r.status_code, r.text)
        listed = [int(x["serial"], 16) for x in r.json()["credentials"]]
        horizon = _now() + NOTICE_WINDOW
        assert listed == sorted(listed, key=lambda x: next(c.not_after for c in certs if c.serial == x))
        for c in certs:
            if abs(c.not_after - horizon) >= EDGE:
                due = c.status == "valid" and c.not_after <= horizon
                assert (c.serial in listed) == due, (
                    f"{c.kind} certificate {c.serial:x} ({c.status}, notAfter {c.not_after:%F %T}): "
                    f"{'not ' * (c.serial not in listed)}in the expiry notices at {_now():%F %T}")
        # each phone's SE holds what the model says (nothing, once wiped)
        for pid, p in self.phones.items():
            held = {k: v for k, v in self._se(pid).items() if ":" not in k}
            assert held == (p.held or {}), f"SE of {pid}: {held}, the model {p.held}"
        # one phone per person: no holder has valid credentials on two phones
        for h in self.holder_ids:
            phones = {c.phone for c in self.creds.values() if c.holder == h and seen[_key(c)] == "valid"}
            assert len(phones) <= 1, f"holder {h} has valid credentials on {sorted(phones)}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)  # the travelled clock


def _both(*refusals: bool | None) -> bool | None:
    """The model's word on a step several rules judge: refused if one refuses it, through if
    every one lets it through, else either."""
    if any(r is True for r in refusals):
        return True
    return False if all(r is False for r in refusals) else None


def _jst_day(when: dt.datetime) -> dt.date:
    return when.astimezone(dt.timezone(dt.timedelta(hours=9))).date()


def _jst_midnight_before(when: dt.datetime) -> dt.datetime:
    jst = dt.timezone(dt.timedelta(hours=9))
    return dt.datetime.combine(_jst_day(when), dt.time(0), jst)


def _jst_midnight_after(when: dt.datetime) -> dt.datetime:
    return _jst_midnight_before(when) + dt.timedelta(days=1)


def _months_before(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` calendar months before (the month's last day if it has none)."""
    import calendar

    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    return dt.date(y, m + 1, min(day.day, calendar.monthrange(y, m + 1)[1]))


def _card_expiry(h: int) -> dt.date:
    """The last day of holder ``h``'s card issued today (an adult's: the 10th birthday after)."""
    from protocols.birthdays import card_expiry

    return card_expiry(dt.date.fromisoformat(HOLDERS[h]["birth_date"]), _jst_day(_now()))


def _key(c: Cred) -> object:
    return ("cert", c.serial) if c.kind != "mdoc" else ("mdoc", c.uri, c.idx)


def _transcript() -> mdoc.SessionTranscript:
    from cryptography.hazmat.primitives.asymmetric import ec

    e_dev = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    e_rdr = cose.CoseKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    return mdoc.SessionTranscript.build(mdoc.DeviceEngagement.build(e_dev).encode(), e_rdr, None)


#: ``MCRED_FUZZ_SCALE=N`` (tests/conftest.py) runs N times the examples: a fuzz campaign
_SCALE_TEXT = os.environ.get("MCRED_FUZZ_SCALE", "").strip()
SCALE = int(_SCALE_TEXT) if _SCALE_TEXT.isdigit() and int(_SCALE_TEXT) >= 1 else 1  # conftest refuses the rest
SETTINGS = settings(max_examples=12 * SCALE, stateful_step_count=9, deadline=None,
                    # no explain phase: its tracing slows every step of a failing run's shrink
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class LifecyclePostgres(Lifecycle):
    backend = "postgres"


@pytest.fixture
def quiet_disk(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(os, "fsync", lambda fd: None)  # SE images need not hit the disk here
    monkeypatch.delenv("MCRED_DATABASE_URL", raising=False)
    monkeypatch.setattr(wallet_sim.phone, "secrets", SimpleNamespace(token_hex=_phone_id))
    # time_machine leaves the monotonic clock alone: it moves with the travelled one here
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + _MONOTONIC_SHIFT[0])


# a failing run shrinks for up to 5 minutes (hypothesis' own limit): time to say what failed
@pytest.mark.slow
@pytest.mark.timeout(600 * SCALE)
def test_lifecycle_follows_the_model(quiet_disk):
    run_state_machine_as_test(Lifecycle, settings=SETTINGS)


class _Picks:
    """A rule's ``data`` with the values it draws given, in order (a scenario's steps)."""

    def __init__(self, *values: object) -> None:
        self.values = list(values)

    def draw(self, strategy, label=None):  # noqa: ANN001, ANN201, ARG002
        return self.values.pop(0)


@contextlib.contextmanager
def _scripted(monkeypatch) -> Iterator[tuple[Lifecycle, Callable[..., None], set[str]]]:  # noqa: ANN001
    """A scripted scenario's model: ``(m, step, seen)``, where ``step(rule, *args)`` runs a rule
    and then every invariant (``m.outsiders_see_the_model``), and ``seen`` collects what the
    invariants met; torn down at the end, whatever happened."""
    seen: set[str] = set()
    monkeypatch.setattr(f"{__name__}.event", seen.add)
    m = Lifecycle()

    def step(name: str, *args: object) -> None:
        getattr(m, name)(*args)
        m.outsiders_see_the_model()

    try:
        yield m, step, seen
    finally:
        m.teardown()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lifecycle_signer_scenario(quiet_disk, monkeypatch):
    """The IACA signer steps in the order the random runs seldom reach (one example has 9
    steps among 16 rules): two holders' MSOs under the first DS; a rollover, one refreshed
    under the new DS, the other still taken; that first DS revoked: the fresh reader refuses
    its MSO on ``ds_revocation``, the kept reader only once its IACA CRL (kept an hour) is
    fetched again; the status-list signer revoked while the kept reader holds a list it
    signed, fetched after its CRL: once that CRL is fetched again and lists the signer, the
    reader fetches the list again at once, within its ttl, and takes the re-signed copy; and the IACA CRL's entries for a revoked DS, through
    the first CRL after its end and off the next. Each step checked by the invariants."""
    with _scripted(monkeypatch) as (m, step, seen):
        def advance(delta: dt.timedelta) -> None:
            m.travelled += delta
            m.traveller.shift(delta)
            _MONOTONIC_SHIFT[0] += delta.total_seconds()
            m.outsiders_see_the_model()

        m.outsiders_see_the_model()
        step("enrol", _Picks(0, 0), "p384")
        step("enrol", _Picks(1, 1), "rsa2048")
        first = m.ds_expect
        step("ds_rollover")
        assert m.ds_expect != first
        phone0, phone1 = (next(p for p, x in m.phones.items() if x.holder == h) for h in (0, 1))
        step("refresh_mdoc", _Picks(phone0), None)  # under the new DS; holder 1's still under the first
        # the kept reader's IACA CRL is fetched now; its lists again in 58 minutes
        advance(dt.timedelta(minutes=58))
        step("revoke_signer", _Picks(first), PURPOSE_DS, "keyCompromise", "openssl")
        listed = m.kept_lists.entry(next(c.uri for c in m.creds.values() if c.kind == "mdoc"))
        signer = listed.token.header.signer.serial_number
        step("revoke_signer", _Picks(signer), PURPOSE_STATUS, "keyCompromise", "label")
        advance(dt.timedelta(minutes=3))  # the kept reader's CRL an hour old: fetched again
        assert {first, signer} <= m.kept_crl_revoked[1]
        step("revoke_signer", _Picks(first), PURPOSE_DS, "superseded", "serial")  # idempotent
        advance(dt.timedelta(minutes=6))  # the kept reader's lists fetched again
        step("refresh_mdoc", _Picks(phone1), None)  # a new MSO, not under the revoked DS
        advance(dt.timedelta(days=400))  # past the first DS's end
        advance(dt.timedelta(days=2))  # a CRL built after it, then the next
        advance(dt.timedelta(days=2))
    for what in ("a fresh reader refused on ds_revocation", "the kept reader refused on ds_revocation",
                 "the kept reader fetched again, within its ttl, a list whose signer it found revoked",
                 "a fresh reader took an MSO of a DS "
                 "rolled over or replaced", "IACA CRL: an ended revoked signer left off"):
        assert what in seen, (what, seen)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600 * SCALE)
def test_lifecycle_follows_the_model_on_postgresql(quiet_disk):
    from conftest import postgres_unavailable

    why = postgres_unavailable()
    if why:
        pytest.skip(why)
    run_state_machine_as_test(LifecyclePostgres, settings=settings(SETTINGS, max_examples=5 * SCALE))


def _travel(m: Lifecycle, to: dt.datetime) -> None:
    step = to - _now()
    m.travelled += step
    m.traveller.shift(step)
    _MONOTONIC_SHIFT[0] += step.total_seconds()


def _registered(m: Lifecycle, phone: str) -> str | None:
    from issuer.db import Phone

    with m.ctx.sessions() as s:
        row = s.get(Phone, phone)
    return row.holder_id if row is not None else None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mdoc_issuance_in_the_iacas_last_months_is_refused_before_anything_changes(quiet_disk, monkeypatch):
    """In the IACA's last 90 days no MSO is signed until it is rolled over. Each issuance
    that would need one is refused before it starts, naming the rollover: an mdoc refresh
    (its rotation had erased the phone's valid mdoc before the issuer refused the new one), a
    card renewal (its workflow had deleted the phone's applets), a change of address (it had
    re-issued the signing certificate, then stopped), a provisioning (it had issued the
    certificates, then stopped). Nothing changes; after the rollover each goes through."""
    monkeypatch.setattr(f"{__name__}.event", lambda *a: None)
    m = Lifecycle()
    try:
        m.enrol(_Picks(0, 0), "p384")
        (phone,) = m.phones
        end = m.iacas[-1].not_valid_after_utc
        _travel(m, end - dt.timedelta(days=120))
        m.renew_card(_Picks(0))  # a card running past the IACA's end
        _travel(m, end - dt.timedelta(days=30))
        held = m._se(phone)
        hid = m.holder_ids[0]
        with pytest.raises(ProvisionError, match="mcred mdoc iaca rollover"):
            refresh_mdocs(m.ctx, phone, actor="test")
        with pytest.raises(wf.WorkflowError, match="mcred mdoc iaca rollover"):
            renew_card(m.ctx, hid, reason="test", actor="test")
        with pytest.raises(wf.WorkflowError, match="mcred mdoc iaca rollover"):
            change_basic_four(m.ctx, hid, MOVES[0], reason="test", actor="test")
        other = m._new_phone(_Picks(0))
        with pytest.raises(ProvisionError, match="mcred mdoc iaca rollover"):
            provision(m.ctx, other, parse_holder(HOLDERS[1]), mdoc_batch=1, **SECRETS)
        assert _registered(m, other) is None
        assert {k: v for k, v in m._se(phone).items() if ":" not in k} == {
            k: v for k, v in held.items() if ":" not in k}
        with m.ctx.sessions() as s:
            from issuer.db import Holder

            assert s.get(Holder, hid).data["address"] == HOLDERS[0]["address"]
        assert not [j for j in wf.workflows(m.ctx.sessions) if j.holder_id == hid and j.state != "done"]
        m.iaca_rollover()  # POST /trust/iaca-rollover
        refresh_mdocs(m.ctx, phone, actor="test")
        assert m._se(phone)["mdoc"] != held["mdoc"] and m._se(phone)["mdoc:cred"].gen == 2
    finally:
        m.teardown()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_issuance_from_a_card_that_has_ended_is_refused_before_anything_changes(quiet_disk, monkeypatch):
    """An expired card's functions are not issued (specs/card-substitute-doctype.md). On the
    card's last day an mdoc is: it runs through that day, as the certificates do (it ended at
    the start of that day, so the refresh was refused then). Past
    the card's last day an mdoc refresh had erased the phone's mdoc before the issuer
    refused the new one, a renewal workflow without a new card had deleted the phone's
    applets, a model change had registered the new phone and stopped, a provisioning of the
    holder on a new phone had too: each is refused before it starts, naming the card's
    renewal, which goes through (a new card) and after which the phone is provisioned."""
    monkeypatch.setattr(f"{__name__}.event", lambda *a: None)
    m = Lifecycle()
    try:
        m.enrol(_Picks(1, 0), "rsa2048")
        (phone,) = m.phones
        hid = m.holder_ids[1]
        jst = dt.timezone(dt.timedelta(hours=9))
        _travel(m, dt.datetime.combine(m.card_until[1], dt.time(0), jst) + dt.timedelta(hours=1))
        refresh_mdocs(m.ctx, phone, actor="test")  # the card's last day: an MSO runs through it
        assert m._se(phone)["mdoc:cred"].not_after == end_of_day_jst(m.card_until[1])
        _travel(m, dt.datetime.combine(m.card_until[1], dt.time(0), jst) + dt.timedelta(days=1, hours=1))
        held = m._se(phone)
        with pytest.raises(ProvisionError, match="card expired"):
            refresh_mdocs(m.ctx, phone, actor="test")
        with pytest.raises(wf.WorkflowError, match="card expired"):
            wf.create(m.ctx.sessions, kind="renewal", holder_id=hid, new_phone_id=phone, actor="test")
        other = m._new_phone(_Picks(0))
        with pytest.raises(wf.WorkflowError, match="card expired"):
            wf.create(m.ctx.sessions, kind="model_change", holder_id=hid, old_phone_id=phone,
                      new_phone_id=other, actor="test")
        assert {k: v for k, v in m._se(phone).items() if ":" not in k} == {
            k: v for k, v in held.items() if ":" not in k}
        revocation.revoke(m.ctx.sessions, phone, "keyCompromise", "all", actor="test")
        check_holder_for_new_phone(m.ctx, hid, other)  # nothing live: a new phone is a provisioning
        with pytest.raises(ProvisionError, match="card expired"):
            provision(m.ctx, other, hid, mdoc_batch=1, alone=True, **SECRETS)
        assert _registered(m, other) is None
        renew_card(m.ctx, hid, reason="test", actor="test")  # no live phone: the registry's card alone
        provision(m.ctx, other, hid, mdoc_batch=1, alone=True, **SECRETS)
        assert set(m._se(other)) >= {"sign", "auth", "mdoc"}
    finally:
        m.teardown()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lifecycle_iaca_scenario(quiet_disk, monkeypatch):
    """The IACA generations in the order the random runs seldom reach, each step checked by
    the invariants: a rollover at once (two generations in the bundle, an mdoc refreshed under
    the new one, which a reader holding only the first refuses), a DS of the first revoked
    (on the first generation's CRL alone); a card's last day and its end (its mdoc refresh
    and renewal workflow refused; the card renewed); the current IACA's last months
    (issuance and a DS rollover refused, naming the IACA rollover), a rollover then, and the
    refresh under the third generation; the first IACA's last hours, then its end and the
    second's: their CRLs and lists answer 410 and they leave the bundle."""
    with _scripted(monkeypatch) as (m, step, seen):
        def advance(to: dt.datetime) -> None:
            _travel(m, to)
            m.outsiders_see_the_model()

        jst = dt.timezone(dt.timedelta(hours=9))
        m.outsiders_see_the_model()
        step("enrol", _Picks(0, 0), "p384")
        step("enrol", _Picks(1, 1), "rsa2048")
        phone0, phone1 = (next(p for p, x in m.phones.items() if x.holder == h) for h in (0, 1))
        first_ds = m.ds_expect
        step("iaca_rollover")
        step("refresh_mdoc", _Picks(phone0), None)  # under IACA 2; holder 1's under IACA 1
        step("revoke_signer", _Picks(first_ds), PURPOSE_DS, "keyCompromise", "label")
        advance(m.creds[m.phones[phone1].held["mdoc"]].not_after - dt.timedelta(hours=1))
        step("refresh_mdoc", _Picks(phone1), None)  # a new MSO, under IACA 2
        card = dt.datetime.combine(m.card_until[1], dt.time(0), jst)
        advance(card + PAST_END)  # the card's last day: an MSO runs through it
        step("refresh_mdoc", _Picks(phone1), None)
        advance(card + dt.timedelta(days=1) + PAST_END)
        step("refresh_mdoc", _Picks(phone1), None)
        step("workflow", _Picks(phone1), "renewal")
        step("renew_card", _Picks(1))  # a new card: everything anew, under IACA 2
        end = m.iacas[-1].not_valid_after_utc
        advance(end - IACA_MARGIN + dt.timedelta(days=1))  # IACA 2's last months
        for name, args in (("refresh_mdoc", (_Picks(phone1), None)), ("ds_rollover", ()),
                           ("renew_card", (_Picks(1),)), ("move", (_Picks(1),))):
            step(name, *args)
        step("iaca_rollover")  # in the last months
        step("refresh_mdoc", _Picks(phone1), None)  # under IACA 3
        advance(m.iacas[0].not_valid_after_utc - dt.timedelta(hours=2))  # lists of IACA 1 signed
        advance(m.iacas[0].not_valid_after_utc + PAST_END)
        advance(m.iacas[1].not_valid_after_utc + dt.timedelta(days=1))
        assert len(m.iacas) == 3 and m._bundle_follows_the_model() is not None
    for what in ("IACA rollover with the IACA open", "IACA rollover with the IACA closing",
                 "a reader holding only older IACAs refused an mdoc of a newer one", "the bundle holds an older IACA",
                 "an older IACA left the bundle", "the CRL of an ended IACA: 410", "a status list of an ended IACA: 410",
                 "mdoc issuance refused: the card ended", "mdoc issuance refused: the IACA closing",
                 "DS rollover refused: the IACA closing", "a fresh reader refused on ds_revocation"):
        assert what in seen, (what, sorted(seen))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_workflow_publishes_past_the_end_of_an_iaca_its_phone_had_mdocs_of(quiet_disk, monkeypatch):
    """A workflow's ``publish`` step re-signs the status lists of every credential its phones
    ever held; a list of an IACA past its end is signed no more (IacaEnded, 410), so every
    workflow on a phone that once held an mdoc of an ended IACA (ten years after it was
    made, rolled over or not) stopped there: a lost phone could not be put on hold."""
    monkeypatch.setattr(f"{__name__}.event", lambda *a: None)
    m = Lifecycle()
    try:
        m.enrol(_Picks(0, 0), "p384")
        (phone,) = m.phones
        m.iaca_rollover()
        _travel(m, m.iacas[0].not_valid_after_utc + PAST_END)
        m.workflow(_Picks(phone), "lost_hold")  # run to its end, or StepFailed
        assert m.phones[phone].state == "lost"
        m.outsiders_see_the_model()
    finally:
        m.teardown()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lifecycle_staging_scenario(quiet_disk, monkeypatch):
    """Publish before use (specs/issuer-keys.md), in the order the random runs seldom reach,
    each step checked by the invariants: the next IACA staged (in the bundle and the VICAL,
    vouching for nothing, a second staging refused); a reader takes the VICAL then and is
    never told again; weeks later the rollover starts the staged IACA (the same certificate,
    ``staged_since``); the first mdoc issued after it, presented to that reader, is valid,
    while the reader that took the bundle before the staging refuses it on its chain."""
    with _scripted(monkeypatch) as (m, step, seen):
        m.outsiders_see_the_model()
        step("enrol", _Picks(0, 0), "p384")
        (phone,) = m.phones
        before = m.takers[0]  # took the bundle with the installation
        step("stage_iaca", "bundle")
        staged = m.iacas[m.staged - 1]
        step("stage_iaca", "vical")  # refused: one is staged
        step("take_trust", "vical")
        vical = m.takers[-1]
        assert vical.via == "vical" and vical.gens == {1, 2} and vical.staged == 2
        step("refresh_mdoc", _Picks(phone), None)  # still under the current IACA
        assert m.creds[m.phones[phone].held["mdoc"]].gen == 1
        _travel(m, _now() + dt.timedelta(days=21))
        m.outsiders_see_the_model()
        step("iaca_rollover")
        assert (m.current, m.staged, m._current_iaca) == (2, None, staged)
        step("refresh_mdoc", _Picks(phone), None)  # the first mdoc of the staged IACA
        c = m.creds[m.phones[phone].held["mdoc"]]
        assert c.gen == 2
        from reader.pipeline import HttpxFetcher, ReaderPipeline, StatusListCache

        result = m._present(c, ReaderPipeline(vical.trust, status=StatusListCache(HttpxFetcher(client=m.http))))
        assert result.valid, result.failed()
        result = m._present(c, ReaderPipeline(before.trust, status=StatusListCache(HttpxFetcher(client=m.http))))
        assert not result.valid and not result.check("issuer_certificate_chain").passed, result.failed()
    for what in ("IACA staged with the IACA open", "staging refused: one is staged",
                 "the bundle and the VICAL hold the staged IACA",
                 "IACA rollover started the staged IACA, with the IACA open",
                 "a reader that took the vical with the IACA staged took an mdoc of it",
                 "a reader that took the bundle with the IACA staged took an mdoc of it",
                 "a reader that took the bundle before the IACA was staged refused its mdoc"):
        assert what in seen, (what, sorted(seen))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lifecycle_iaca_revocation_scenario(quiet_disk, monkeypatch):
    """An IACA's key compromised (specs/issuer-keys.md, "An IACA revoked", "Re-issuing after
    a compromise"), in the order the random runs seldom reach, each step checked by the
    invariants: two holders' mdocs under the first IACA; the next one staged, a reader takes
    the VICAL then; a re-issue of the first refused while it signs; the first revoked for
    cACompromise: the staged one starts at once with its signers, the first leaves the
    bundle and the VICAL, its CRL and lists answer 410 iaca-withdrawn, a fresh reader refuses
    its mdocs on their chain, the kept reader (never told) takes them from what it kept until
    its list has to be fetched again; one phone reported lost; the re-issue gives the other
    new MSOs under the staged IACA, which the reader of the VICAL takes with no trust update,
    and leaves the lost one on hold; found, it is re-issued by running again. Then a rollover,
    and the retired second IACA revoked (superseded), amended to cACompromise, asked again
    (nothing changes); its phones re-issued under the third. A document signer revoked, its
    phones re-issued; another revoked, and its re-issue refused in the IACA's last months. The
    first IACA's key destroyed (refused while it signed; once revoked, destroyed, then
    "already"), and the first document signer's once revoked: every invariant as before."""
    with _scripted(monkeypatch) as (m, step, seen):
        m.outsiders_see_the_model()
        step("enrol", _Picks(0, 0), "p384")
        step("enrol", _Picks(1, 1), "rsa2048")
        phone0, phone1 = (next(p for p, x in m.phones.items() if x.holder == h) for h in (0, 1))
        step("stage_iaca", "vical")  # and a reader takes the VICAL right after
        step("reissue", _Picks(("iaca", 1)), False, "label")  # refused: it signs now
        step("destroy_key", _Picks(("iaca", 1)), "number")  # refused: it signs now
        step("revoke_iaca", _Picks(1), "cACompromise", "serial")
        assert (m.current, m.staged, sorted(m.withdrawn)) == (2, None, [1])
        step("destroy_key", _Picks(("iaca", 1)), "serial")  # its key gone; the invariants as before
        step("destroy_key", _Picks(("iaca", 1)), "label")  # already
        assert "mdoc-iaca-1" in m.destroyed
        step("hold", _Picks(phone1), "all")
        _travel(m, _now() + dt.timedelta(seconds=STATUS_TTL + 60))  # the kept reader's lists: gone
        m.outsiders_see_the_model()
        step("reissue", _Picks(("iaca", 1)), True, "serial")
        assert m.creds[m.phones[phone0].held["mdoc"]].gen == 2
        step("release", _Picks(phone1), "all")
        step("reissue", _Picks(("iaca", 1)), True, "label")
        assert m.creds[m.phones[phone1].held["mdoc"]].gen == 2
        step("iaca_rollover")  # a new third generation; the second retired, its mdocs valid
        step("revoke_iaca", _Picks(2), "superseded", "label")
        step("revoke_iaca", _Picks(2), "cACompromise", "number")  # amended
        step("revoke_iaca", _Picks(2), "keyCompromise", "number")  # a compromise already
        assert m.withdrawn[2][0] == "cACompromise"
        step("reissue", _Picks(("iaca", 2)), True, "serial")
        assert {m.creds[p.held["mdoc"]].gen for p in m.phones.values()} == {3}
        ds = m.ds_expect  # a document signer revoked: its phones re-issued under the next one
        step("revoke_signer", _Picks(ds), PURPOSE_DS, "keyCompromise", "label")
        step("destroy_key", _Picks(("signer", ds)), "serial")  # still on the IACA CRL, its MSOs refused
        step("reissue", _Picks(("ds", ds)), True, "serial")
        assert {m.creds[p.held["mdoc"]].ds_serial for p in m.phones.values()} == {m.ds_expect} != {ds}
        ds = m.ds_expect
        step("revoke_signer", _Picks(ds), PURPOSE_DS, "superseded", "serial")
        _travel(m, m._current_iaca.not_valid_after_utc - IACA_MARGIN + dt.timedelta(days=1))
        m.outsiders_see_the_model()
        step("reissue", _Picks(("ds", ds)), True, "label")  # refused: no MSO can be signed
    for what in ("IACA revoked: the current one (cACompromise)", "IACA revoked: the retired one",
                 "IACA revocation started the staged IACA, with the IACA open", "re-issue refused: the signer signs now",
                 "an IACA's revocation amended to a compromise", "an IACA revoked again: nothing changed",
                 "the CRL of a revoked IACA: 410", "the lists of a revoked IACA: 410",
                 "a fresh reader refused on issuer_certificate_chain an mdoc of a revoked IACA",
                 "the kept reader took an mdoc of a revoked IACA from what it kept",
                 "the kept reader refused an mdoc of a revoked IACA, its CRL or list gone",
                 "re-issued a phone's mdoc of a revoked iaca", "re-issue: a phone on hold left",
                 "re-issued a phone's mdoc of a revoked ds", "re-issue refused: the IACA closing",
                 "a reader that took the vical with the IACA staged took an mdoc of it",
                 "key destruction refused: the signer signs now", "destroyed the key of a revoked iaca",
                 "a key destroyed again: already", "destroyed the key of a revoked signer"):
        assert what in seen, (what, sorted(seen))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lifecycle_jpki_root_scenario(quiet_disk, monkeypatch):
    """A JPKI certificate never outlives its root (specs/issuer-keys.md, "The JPKI root
    generations"), where the random runs seldom reach: ten years and a half on (the IACA rolled
    over, so that only the JPKI roots hold issuance back), with nine and a half left to the JPKI
    roots, a next card's enrolment (its certificates to the 10th birthday) is refused before
    anything is done, today's card's (to the 5th) goes through; each step checked by the
    invariants (nothing was registered, the phone's SE untouched)."""
    with _scripted(monkeypatch) as (m, step, seen):
        m.outsiders_see_the_model()
        _travel(m, m.jpki_root_end["sign"] - dt.timedelta(days=int(9.5 * 365)))
        m.outsiders_see_the_model()
        step("iaca_rollover")
        step("enrol", _Picks(1, 0), "p384")  # refused: the model expects it
        assert 1 not in m.holder_ids
        step("enrol", _Picks(1, 1), "rsa2048")
        assert 1 in m.holder_ids
    assert "a p384 certificate refused: it would outlive its JPKI root" in seen, sorted(seen)
