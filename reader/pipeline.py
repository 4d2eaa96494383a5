"""The reader's verification pipeline (ISO/IEC 18013-5:2021 §9.3; Annex B; draft-ietf-oauth-
status-list §8, §13.7) on top of :class:`protocols.mdoc.MdocVerifier`.

Built-in checks of protocols/mdoc (DS chain to a trusted IACA, issuer signature, MSO, docType,
digests, device authentication over this session's SessionTranscript) plus, named:

* ``validity``: validFrom/validUntil at the injectable clock with a configurable skew
  (replaces the strict built-in one); ``mso_signed_within_ds_validity``;
* ``iaca_profile`` / ``ds_profile``: Annex B Tables B.1 / B.3 (``protocols.iaca``);
* ``trust_anchor_scope``: the IACA may vouch for this docType (VICAL scope);
* ``key_authorizations``: the core's check (device-signed elements allowed by
  deviceKeyInfo.keyAuthorizations), reported as passed when nothing is declared or signed;
* ``status_list_signature``, ``status_list_freshness``, ``revocation_status``: the Status
  List Token is fetched by URI over HTTP (cache bounded by its ttl, the HTTP max-age and its
  exp, revalidated with If-None-Match), verified to the same IACA, and the MSO's index read.
  Offline, the cached list is used up to a configured maximum age and the reasons say so.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from protocols import cbor, iaca
from protocols.mdoc import (
    Check,
    DocumentContext,
    MdocDecodeError,
    MdocError,
    MdocVerifier,
    MobileSecurityObject,
    SessionTranscript,
    VerificationResult,
    VerifiedChain,
)
from protocols.mdoc.verify import (
    KEY_AUTHORIZATIONS,
    MSO_STRUCTURE,
    RESPONSE_STATUS,
    VALIDITY,
    key_authorizations_apply,
)
from protocols.status import (
    Status,
    StatusIndexError,
    StatusListError,
    StatusListToken,
    decode_status_list_token,
    verify_status_list_token,
)
from reader.fetch import STATUS_LIST_MAX_BYTES, FetchError, HttpAnswer, LazyClient, fetch
from reader.trust import TrustStore

if TYPE_CHECKING:
    import httpx

IACA_PROFILE = "iaca_profile"
DS_PROFILE = "ds_profile"
TRUST_ANCHOR_SCOPE = "trust_anchor_scope"
MSO_SIGNED_WITHIN_DS = "mso_signed_within_ds_validity"
STATUS_LIST_SIGNATURE = "status_list_signature"
STATUS_LIST_FRESHNESS = "status_list_freshness"
REVOCATION_STATUS = "revocation_status"
STATUS_CHECKS = (STATUS_LIST_SIGNATURE, STATUS_LIST_FRESHNESS, REVOCATION_STATUS)

DEFAULT_CACHE_SECONDS = 300  # when neither ttl nor max-age bounds a list
_IAT_SKEW = dt.timedelta(seconds=60)  # a list's iat may be this far ahead of the reader's clock
_STATUS_WORDS = {Status.VALID: "VALID", Status.INVALID: "revoked (INVALID)", Status.SUSPENDED: "SUSPENDED"}
#: The code of a failed ``revocation_status`` by the list's value (an application-specific
#: one: ``failed``); every failed status check of a list that cannot be trusted or had is
#: ``unavailable``: the status is not known (ask again later).
_STATUS_CODES = {Status.INVALID: "revoked", Status.SUSPENDED: "suspended"}
UNAVAILABLE = "unavailable"
_LIST_NOT_TRUSTED = Check(REVOCATION_STATUS, False, "not checked: list not trusted", code=UNAVAILABLE)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- fetching ------------------------------------------------------------------------------


Fetcher = Callable[[str, str | None], HttpAnswer]


class HttpxFetcher:
    """GET with ``If-None-Match``; the body read up to ``max_bytes`` (reader.fetch)."""

    def __init__(self, client: httpx.Client | None = None, *, timeout: float = 5.0,
                 max_bytes: int = STATUS_LIST_MAX_BYTES) -> None:
        self._client = LazyClient(client, timeout=timeout)  # made at the first fetch: offline, never
        self.max_bytes = max_bytes

    @property
    def client(self) -> httpx.Client:
        return self._client.get()

    def __call__(self, uri: str, etag: str | None) -> HttpAnswer:
        headers = {"Accept": "application/statuslist+cwt"}
        if etag:
            headers["If-None-Match"] = etag
        return fetch(self.client, "GET", uri, max_bytes=self.max_bytes, headers=headers)


_MAX_AGE = re.compile(r"max-age=(\d+)")
#: RFC 9111 1.2.2: a delta-seconds beyond what the cache can represent counts as 2**31
#: seconds (68 years). Applied to max-age and to the token's ttl alike, so that the fetch
#: time plus either is a datetime whatever digits the header (unsigned) or the token sent.
MAX_DELTA_SECONDS = 2**31


def _max_age(headers: Mapping[str, str]) -> int | None:
    m = _MAX_AGE.search(headers.get("cache-control", ""))
    if not m:
        return None
    digits = m.group(1).lstrip("0") or "0"  # int() of a thousand digits is slow; 11 are past 2**31
    return min(int(digits), MAX_DELTA_SECONDS) if len(digits) <= 10 else MAX_DELTA_SECONDS


# -- the status list cache -------------------------------------------------------------------


@dataclass
class CachedList:
    uri: str
    token_bytes: bytes
    etag: str | None
    fetched_at: dt.datetime
    max_age: int | None
    token: StatusListToken | None = None  # set once verified
    verified_with: x509.Certificate | None = None  # the trust anchor ``token`` chained to
    #: When that verification holds: the instants at which both the signer certificate and
    #: the trust anchor are valid (both ends included, as the chain check judged them).
    #: Verified at one time, the same bytes are verified at another only inside it.
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None

    def lifetime(self) -> int:
        bounds = [b for b in (self.token.header.ttl if self.token else None, self.max_age) if b is not None]
        return min(min(bounds), MAX_DELTA_SECONDS) if bounds else DEFAULT_CACHE_SECONDS

    def fresh(self, now: dt.datetime) -> bool:
        exp = self.token.header.exp if self.token else None
        return now < self.fetched_at + dt.timedelta(seconds=self.lifetime()) and (exp is None or now < exp)


@dataclass(frozen=True)
class StatusOutcome:
    checks: tuple[Check, ...]
    #: The list's signer certificate, when its signature and chain verified.
    signer: x509.Certificate | None = None

#: ``(signer certificate, IACA, now) -> why it must not be trusted, or None``: for example
#: :meth:`reader.ds_crl.DsCrlCheck.signer_revoked` (the IACA CRL).
SignerRevocation = Callable[[x509.Certificate, x509.Certificate, dt.datetime], "str | None"]


class _StatusMemo(NamedTuple):
    """A (uri, index)'s outcome of a verified, fresh list, with what it was worked out from:
    reused only while ``entry`` is still the cached one with the same ``fetched_at``,
    ``max_age`` and ``token``, ``anchor`` is among the anchors asked for, and
    ``since <= now < until``."""

    entry: CachedList
    fetched_at: dt.datetime
    max_age: int | None
    token: StatusListToken | None
    #: the trust anchor that verified the list
    anchor: x509.Certificate
    outcome: StatusOutcome
    #: the instant the outcome stops holding (``CachedList.fresh``, the token's exp, the
    #: certificates' end: worked out once), excluded
    until: dt.datetime
    #: the first instant it holds (the certificates' start, the token's iat less the skew)
    since: dt.datetime


class StatusListCache:
    """Status List Tokens by URI: fetched, verified, revalidated; offline use bounded."""

    def __init__(self, fetcher: Fetcher | None = None, *, offline: bool = False,
                 max_offline_age: dt.timedelta = dt.timedelta(hours=24)) -> None:
        self.fetcher = fetcher or HttpxFetcher()
        self.offline = offline
        self.max_offline_age = max_offline_age
        self._entries: dict[str, CachedList] = {}
        self._lock = threading.Lock()
        self.fetches = 0
        self.revalidations = 0
        self._memo: dict[tuple[str, int], _StatusMemo] = {}
        """Outcome per (uri, index) of a verified, fresh list (:class:`_StatusMemo`)."""
        self._refetched: set[tuple[str, bytes]] = set()
        """(uri, signer fingerprint) fetched again once their signer was found revoked."""

    def entry(self, uri: str) -> CachedList | None:
        return self._entries.get(uri)

    def _verify(self, entry: CachedList, anchors: list[x509.Certificate], now: dt.datetime) -> Check:
        """Signature and chain (trust) to one of ``anchors``, independent of the token's times.
        The bytes verified earlier are taken as verified only for the anchor they chained to,
        and only while the signer certificate and that anchor are still valid at the time
        judged: a list cached within its ttl whose signer certificate has since expired (or,
        the clock set back, is not yet valid) is verified again, and refused by name. A
        document of another IACA pointing at this URI has the list verified against its own
        anchors (and refused unless the list chains to one of them)."""
        try:
            header = entry.token.header if entry.token is not None else decode_status_list_token(
                entry.token_bytes).header
        except StatusListError as exc:
            return Check(STATUS_LIST_SIGNATURE, False, f"{entry.uri}: {exc}", code=UNAVAILABLE)
        # times are checked separately (freshness): verify the signature as of the token's iat
        at = now if header.exp is None or now < header.exp else header.iat
        if (entry.token is not None and entry.verified_with in anchors and entry.valid_from is not None
                and entry.valid_until is not None and entry.valid_from <= at <= entry.valid_until):
            return Check(STATUS_LIST_SIGNATURE, True, f"{entry.uri}: verified earlier (same bytes)")
        errors = []
        for anchor in anchors:
            try:
                token = verify_status_list_token(entry.token_bytes, trust_anchor=anchor, uri=entry.uri, now=at)
            except StatusListError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            entry.token = token
            entry.verified_with = anchor
            signer = token.header.signer
            entry.valid_from = max(signer.not_valid_before_utc, anchor.not_valid_before_utc)
            entry.valid_until = min(signer.not_valid_after_utc, anchor.not_valid_after_utc)
            return Check(STATUS_LIST_SIGNATURE, True,
                         f"{entry.uri}: signed by {token.header.signer.subject.rfc4514_string()} under "
                         f"{anchor.subject.rfc4514_string()}")
        return Check(STATUS_LIST_SIGNATURE, False, f"{entry.uri}: " + ("; ".join(errors) or "no trust anchor"),
                     code=UNAVAILABLE)

    def _freshness(self, entry: CachedList, now: dt.datetime, note: str) -> Check:
        try:
            header = entry.token.header if entry.token else decode_status_list_token(entry.token_bytes).header
        except StatusListError as exc:
            return Check(STATUS_LIST_FRESHNESS, False, f"{entry.uri}: {exc}", code=UNAVAILABLE)
        if header.iat > now + _IAT_SKEW:
            return Check(STATUS_LIST_FRESHNESS, False, f"iat {cbor.tdate_text(header.iat)} is in the future",
                         code=UNAVAILABLE)
        if header.exp is not None and now >= header.exp:
            return Check(STATUS_LIST_FRESHNESS, False, f"{note}list expired at {cbor.tdate_text(header.exp)}",
                         code=UNAVAILABLE)
        age = now - entry.fetched_at
        if self.offline:
            if age > self.max_offline_age:
                return Check(STATUS_LIST_FRESHNESS, False,
                             f"OFFLINE: cached list fetched {cbor.tdate_text(entry.fetched_at)} is {age} old, "
                             f"beyond the maximum offline age {self.max_offline_age}", code=UNAVAILABLE)
            return Check(STATUS_LIST_FRESHNESS, True,
                         f"OFFLINE: cached list fetched {cbor.tdate_text(entry.fetched_at)} ({age} old, "
                         f"max {self.max_offline_age})")
        if header.ttl is not None and age > dt.timedelta(seconds=min(header.ttl, MAX_DELTA_SECONDS)):
            return Check(STATUS_LIST_FRESHNESS, False,
                         f"{note}list fetched {cbor.tdate_text(entry.fetched_at)} is {age} old, beyond its "
                         f"ttl of {header.ttl} s", code=UNAVAILABLE)
        return Check(STATUS_LIST_FRESHNESS, True,
                     f"{note}fetched {cbor.tdate_text(entry.fetched_at)}, ttl {header.ttl} s"
                     + (f", exp {cbor.tdate_text(header.exp)}" if header.exp else ""))

    def _refresh(self, uri: str, entry: CachedList | None, now: dt.datetime) -> tuple[CachedList | None, str]:
        """Fetch or revalidate; on failure keep the old entry and say why."""
        try:
            answer = self.fetcher(uri, entry.etag if entry else None)
        except FetchError as exc:
            return entry, f"refresh failed ({exc}); "
        if answer.status == 304 and entry is not None:
            self.revalidations += 1
            entry.fetched_at = now
            entry.max_age = _max_age(answer.headers)
            return entry, "revalidated (304); "
        if answer.status != 200:
            return entry, f"refresh failed (HTTP {answer.status}); "
        self.fetches += 1
        if entry is not None and entry.token_bytes == answer.body:
            entry.fetched_at, entry.max_age = now, _max_age(answer.headers)
            entry.etag = answer.headers.get("etag")
            return entry, "refetched (unchanged); "
        new = CachedList(uri, answer.body, answer.headers.get("etag"), now, _max_age(answer.headers))
        self._entries[uri] = new
        return new, "new copy; "

    def refetch_once(self, uri: str, signer: x509.Certificate) -> bool:
        """Whether to fetch ``uri`` again, within its ttl, because the list cached for it is
        signed by ``signer``, which the reader has just found revoked: an issuer that revokes a
        list signer publishes its lists again under another. True once per (uri, signer), so
        an issuer still serving the old list is asked once, not at every verification (the
        list is then refused until its ttl runs out, as before); never offline."""
        if self.offline:
            return False
        key = (uri, signer.fingerprint(hashes.SHA256()))
        with self._lock:
            if key in self._refetched:
                return False
            if len(self._refetched) > 4096:
                self._refetched.clear()
            self._refetched.add(key)
            return True

    def lookup(self, uri: str, index: int, anchors: list[x509.Certificate], now: dt.datetime, *,
               refetch: bool = False) -> StatusOutcome:
        """The status at ``index`` of the list at ``uri``: the cached copy while fresh, else
        fetched or revalidated; ``refetch`` fetches (or revalidates) it now whatever its age
        (see :meth:`refetch_once`)."""
        with self._lock:
            entry = self._entries.get(uri)
            memo = self._memo.get((uri, index))
            if (memo is not None and not refetch and not self.offline and memo.entry is entry
                    and memo.fetched_at == entry.fetched_at
                    and memo.max_age == entry.max_age and memo.token is entry.token and memo.anchor in anchors
                    and memo.since <= now < memo.until):
                return memo.outcome  # same verified list, still within ttl / max-age / exp and its certificates
            note = ""
            if self.offline:
                if entry is None:
                    fail = f"OFFLINE: no cached list for {uri}"
                    return StatusOutcome(tuple(Check(n, False, fail, code=UNAVAILABLE) for n in STATUS_CHECKS))
            elif refetch or entry is None or not entry.fresh(now):
                entry, note = self._refresh(uri, entry, now)
                if entry is None:
                    fail = f"{note}no list for {uri}"
                    return StatusOutcome(tuple(Check(n, False, fail, code=UNAVAILABLE) for n in STATUS_CHECKS))
            sig = self._verify(entry, anchors, now)
            fresh = self._freshness(entry, now, note)
        if not sig.passed:
            return StatusOutcome((sig, fresh, _LIST_NOT_TRUSTED))
        try:
            value = entry.token.status(index)
        except StatusIndexError as exc:
            return StatusOutcome((sig, fresh, Check(REVOCATION_STATUS, False, f"index {index}: {exc}",
                                                    code=UNAVAILABLE)))
        word = _STATUS_WORDS.get(value, f"status {value} (application-specific)")
        prefix = "OFFLINE: " if self.offline else ""
        outcome = StatusOutcome((sig, fresh, Check(REVOCATION_STATUS, value == Status.VALID,
                                                   f"{prefix}index {index} of {uri}: {word}",
                                                   code=_STATUS_CODES.get(value, "failed"))),
                                entry.token.header.signer)
        if fresh.passed and not self.offline:
            anchor = entry.verified_with  # one of ``anchors`` when the check passed; read again outside the lock
            if anchor is not None and anchor in anchors:
                if len(self._memo) > 4096:
                    self._memo.clear()
                # fresh(now) == now < fetched_at + lifetime and (exp is None or now < exp); the
                # signature check holds while the signer certificate and the anchor are valid
                # (now < exp here, so judged at now), and freshness while iat is not beyond
                # now + 60 s: the outcome is kept for the instants where all of these hold
                until = entry.fetched_at + dt.timedelta(seconds=entry.lifetime())
                exp = entry.token.header.exp
                valid_until = entry.valid_until + dt.timedelta(microseconds=1)  # its last instant included
                since = max(entry.valid_from, entry.token.header.iat - _IAT_SKEW)
                self._memo[(uri, index)] = _StatusMemo(
                    entry, entry.fetched_at, entry.max_age, entry.token, anchor, outcome,
                    until=min(until, valid_until) if exp is None else min(until, exp, valid_until), since=since)
        return outcome


# -- the pipeline ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineConfig:
    skew: dt.timedelta = dt.timedelta(minutes=5)
    require_status: bool = False
    """Refuse an MSO without a status reference (default: say so and pass)."""
    check_profiles: bool = True


class ReaderPipeline:
    """Trust store + clock + status cache around a chain-caching :class:`MdocVerifier`."""

    def __init__(
        self,
        trust: TrustStore,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        config: PipelineConfig = PipelineConfig(),
        status: StatusListCache | None = None,
        extra_checks: Sequence[Callable[[DocumentContext], Check]] = (),
        signer_revocation: SignerRevocation | None = None,
    ) -> None:
        self.trust = trust
        #: Further checks per document, in order, after the Annex B profile checks (for
        #: example reader.ds_crl.DsCrlCheck: the IACA CRL).
        self.extra_checks = tuple(extra_checks)
        #: Asked about the status list's signer on every lookup: a revoked (or unknowable)
        #: signer fails ``status_list_signature`` and leaves ``revocation_status`` unchecked.
        self.signer_revocation = signer_revocation
        self.clock = clock
        self.config = config
        self.status = status or StatusListCache()
        self._verifier_of: tuple[int, MdocVerifier] | None = None
        self._profiles: dict[tuple[bytes, bytes], tuple[dt.datetime, dt.datetime, tuple[Check, Check]]] = {}
        """Annex B results per (DS DER, IACA DER), with the window of the chain they came from."""
        self._last_profile: tuple | None = None

    @property
    def _verifier(self) -> MdocVerifier:
        """The verifier over the trust store's anchors as they are now: built again when an
        anchor was added since (the installation's reader adds a rolled-over IACA to its
        store; a verifier built once on the store's first anchors never trusted it)."""
        built = self._verifier_of
        version = self.trust.version
        if built is None or built[0] != version:
            built = (version, MdocVerifier(self.trust.certificates, extra_checks=[self._extra],
                                           validity=self._validity))
            self._verifier_of = built
        return built[1]

    # -- entry point -----------------------------------------------------------------

    def verify(
        self,
        response: bytes,
        *,
        session_transcript: SessionTranscript | bytes | None,
        reader_private_key: ec.EllipticCurvePrivateKey | None = None,
        now: dt.datetime | None = None,
    ) -> VerificationResult:
        now = now or self.clock()
        try:
            return self._verifier.verify(response, session_transcript=session_transcript, now=now,
                                         reader_private_key=reader_private_key)
        except MdocDecodeError as exc:
            return VerificationResult((Check(RESPONSE_STATUS, False, f"not a DeviceResponse: {exc}",
                                             code="malformed"),))
        except MdocError as exc:
            return VerificationResult((Check(RESPONSE_STATUS, False, f"unverifiable: {exc}", code="malformed"),))
        except Exception as exc:  # noqa: BLE001 - the reader's boundary: a verifier bug on hostile
            # bytes (e.g. cryptography's UnsupportedAlgorithm from a mangled x5chain) is a refusal
            return VerificationResult((Check(RESPONSE_STATUS, False,
                                             f"unverifiable: {type(exc).__name__}: {exc}", code="malformed"),))

    def verify_issuer_signed(self, issuer_signed: bytes, *, now: dt.datetime | None = None,
                             doc_type: str | None = None) -> VerificationResult:
        """An IssuerSigned on its own (as issued, before any presentation) through the same
        pipeline: chain, signature, digests, validity with the skew, the MSO signed within
        the DS validity, the Annex B profiles, the trust anchor's scope and the revocation
        status. No device authentication: there is no presentation (see
        :meth:`MdocVerifier.verify_issuer_signed`)."""
        now = now or self.clock()
        try:
            return self._verifier.verify_issuer_signed(issuer_signed, now=now, doc_type=doc_type)
        except MdocError as exc:
            return VerificationResult((Check(MSO_STRUCTURE, False, f"not an IssuerSigned: {exc}", code="malformed"),))
        except Exception as exc:  # noqa: BLE001 - the reader's boundary, as in verify()
            return VerificationResult((Check(MSO_STRUCTURE, False, f"unverifiable: {type(exc).__name__}: {exc}",
                                             code="malformed"),))

    # -- checks, per document --------------------------------------------------------------

    def _validity(self, mso: MobileSecurityObject, chain: VerifiedChain | None, now: dt.datetime,
                  doc_type: str) -> Check:
        """``validity``, in place of the core's: validFrom/validUntil at ``now`` with the skew
        (the MSO signing time against the DS certificate is ``mso_signed_within_ds_validity``)."""
        v, skew = mso.validity_info, self.config.skew
        why = v.order_error()  # never valid: not "expired" nor "not yet valid"
        if why is not None:
            return Check(VALIDITY, False, f"{doc_type}: {why}", code="malformed")
        # the skew moves ``now``, never the MSO's times: an MSO valid until 9999-12-31T23:59:59Z
        # (or from 0001-01-01) is a time datetime cannot step past
        early, late = now + skew, now - skew
        ok = v.valid_from <= early and late <= v.valid_until
        key = (v.valid_from, v.valid_until, skew)
        window = _TEXTS.get(key)
        if window is None:
            window = _keep(key, f"validFrom {cbor.tdate_text(v.valid_from)} .. "
                                f"validUntil {cbor.tdate_text(v.valid_until)} (skew {skew})")
        # the text of now without its fraction (dropped by tdate_text anyway): the same few
        # seconds recur at a busy reader, and tdate_text keeps the texts it made
        now_text = cbor.tdate_text(now.replace(microsecond=0) if now.microsecond else now)
        return Check._of(VALIDITY, ok, f"{doc_type}: {now_text} {'within' if ok else 'outside'} {window}",
                         "not_yet_valid" if early < v.valid_from else "expired")

    def _extra(self, ctx: DocumentContext) -> list[Check]:
        out: list[Check] = []
        v = ctx.mso.validity_info
        chain = ctx.ds_chain
        if chain is None:
            out.append(Check(MSO_SIGNED_WITHIN_DS, False, "not checked: no trusted DS certificate", code="not_checked"))
        else:
            leaf_from, leaf_until = chain.leaf_validity
            inside = leaf_from <= v.signed <= leaf_until
            key = (MSO_SIGNED_WITHIN_DS, v.signed, leaf_from, leaf_until, inside)
            check = _TEXTS.get(key)
            if check is None:
                check = _keep(key, Check._of(
                    MSO_SIGNED_WITHIN_DS, inside,
                    f"signed {cbor.tdate_text(v.signed)} {'within' if inside else 'OUTSIDE'} "
                    f"DS validity {cbor.tdate_text(leaf_from)} .. {cbor.tdate_text(leaf_until)}", "untrusted_issuer"))
            out.append(check)
        out += self._profile_checks(ctx)
        out += [check(ctx) for check in self.extra_checks]
        out += self._key_authorizations(ctx)
        out += self._status(ctx)
        return out

    def _profile_checks(self, ctx: DocumentContext) -> list[Check]:
        chain = ctx.ds_chain
        if chain is None:
            why = "not checked: DS chain to a trusted IACA failed"
            return [Check(n, False, why, code="not_checked") for n in (IACA_PROFILE, DS_PROFILE, TRUST_ANCHOR_SCOPE)]
        doc_type = ctx.document.doc_type
        last = self._last_profile
        if (last is not None and last[0] is chain and last[1] == doc_type
                and chain.not_before <= ctx.now <= chain.not_after):
            return list(last[2])  # the same cached DS chain object: same certificates
        # always found: the verifier's anchors are this store's certificates, and the store
        # only grows (an anchor added again keeps its fingerprint: TrustStore.add)
        anchor = self.trust.anchor_for(chain.anchor)
        scope_ok = anchor.allows(doc_type)
        scope = Check(TRUST_ANCHOR_SCOPE, scope_ok,
                      f"{chain.anchor_subject} "
                      + ("may vouch for " if scope_ok else "is NOT trusted for ") + doc_type, code="untrusted_issuer")
        if not self.config.check_profiles:
            return [scope]
        key = (chain.leaf_der, chain.anchor_der)  # the exact certificates
        hit = self._profiles.get(key)
        if hit is None or not hit[0] <= ctx.now <= hit[1]:
            # the anchor's time-independent rules are kept with it (TrustAnchor.profile)
            iaca_rules = anchor.profile.at(ctx.now)
            # the chain check verified the DS signature by this anchor when the path was direct
            ds_rules = iaca.check_document_signer(chain.leaf, chain.anchor, ctx.now,
                                                  signature_verified=chain.leaf_issued_by_anchor)
            pair = (_summary(IACA_PROFILE, iaca_rules, "Annex B Table B.1"),
                    _summary(DS_PROFILE, ds_rules, "Annex B Table B.3"))
            hit = (chain.not_before, chain.not_after, pair)
            if len(self._profiles) > 256:
                self._profiles.clear()
            self._profiles[key] = hit
        out = [*hit[2], scope]
        self._last_profile = (chain, doc_type, tuple(out))
        return out

    @staticmethod
    def _key_authorizations(ctx: DocumentContext) -> list[Check]:
        """The core's ``key_authorizations`` check (protocols.mdoc) runs when keyAuthorizations
        is declared or anything is device-signed; otherwise say so, so that the reader's
        verdict always lists the check."""
        if key_authorizations_apply(ctx.document, ctx.mso) or ctx.document.device_signed is None:
            return []  # the core reported it, or an IssuerSigned alone: nothing is device-signed yet
        return [_NOTHING_TO_AUTHORIZE]

    def _status(self, ctx: DocumentContext) -> list[Check]:
        ref = ctx.mso.status.status_list if ctx.mso.status else None
        if ref is None:
            ok = not self.config.require_status
            return [Check._of(REVOCATION_STATUS, ok, "MSO carries no status_list reference"
                              + ("" if ok else " (required by this reader)"), "failed")]
        anchors = [ctx.ds_chain.anchor] if ctx.ds_chain else []
        if not anchors:
            why = "not checked: no trusted DS chain to anchor the status list"
            return [Check(n, False, why, code="not_checked") for n in STATUS_CHECKS]
        outcome = self.status.lookup(ref.uri, ref.idx, anchors, ctx.now)
        checks = list(outcome.checks)
        if self.signer_revocation is not None and outcome.signer is not None and checks[0].passed:
            why = self.signer_revocation(outcome.signer, anchors[0], ctx.now)
            if why is not None and self.status.refetch_once(ref.uri, outcome.signer):
                # the cached list's signer is revoked: its issuer has published the list again
                # under another signer, most likely; fetch it now rather than refuse every
                # mdoc on it until the cached copy's ttl runs out
                outcome = self.status.lookup(ref.uri, ref.idx, anchors, ctx.now, refetch=True)
                checks = list(outcome.checks)
                why = (None if outcome.signer is None or not checks[0].passed
                       else self.signer_revocation(outcome.signer, anchors[0], ctx.now))
            if why is not None:
                checks[0] = Check(STATUS_LIST_SIGNATURE, False, f"{ref.uri}: list signer {why}", code=UNAVAILABLE)
                checks[2] = _LIST_NOT_TRUSTED
        return checks


_TEXTS: dict[tuple, str | Check] = {}
"""The fixed part of the ``validity`` reason, and the ``mso_signed_within_ds_validity``
check, by the exact values they print and the outcome (a pure function of them; each
comparison runs at every verification, and picks the entry of its outcome); bounded."""

_NOTHING_TO_AUTHORIZE = Check(KEY_AUTHORIZATIONS, True, "none declared, nothing device-signed")


def _keep(key: tuple, value):
    if len(_TEXTS) >= 1024:
        _TEXTS.clear()
    _TEXTS[key] = value
    return value


def _summary(name: str, rules: list, what: str) -> Check:
    bad = [r for r in rules if not r.passed]
    if bad:
        return Check(name, False, "; ".join(f"{r.name}: {r.reason}" for r in bad), code="untrusted_issuer")
    return Check(name, True, f"{len(rules)} rules of {what} pass")

