"""Opening an SCP03 session with an SE's ISD, and sending commands through it
(GPCS 2.3.1 Amendment D 7.1; specs/tsm.md "Sessions", "Sequence counters").

:func:`open_session` selects the ISD, picks the keyset the TSM's record names (factory
KVN 30 until rotated, then the diversified KVN 31), checks the SE's identity (its key
diversification data) and its sequence counter against the record, authenticates at the
requested security level (33 by default), and returns a :class:`CardSession`. Every
command and answer is audited by header, length and status word only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from protocols.gp.apdu import CommandApdu, ResponseApdu
from protocols.gp.codes import INS_STORE_DATA, SW_NOT_ENOUGH_MEMORY, SW_REFERENCED_DATA_NOT_FOUND
from protocols.gp.errors import GpError, Scp11AuthenticationError
from protocols.gp.scp03 import HostChannel, InitializeUpdateResponse, SecureHost, StaticKeys
from protocols.gp.scp11 import (
    KLOC_KID,
    SCP11A_KID,
    TAG_CA_KLOC_IDENTIFIERS,
    TAG_CERTIFICATE_STORE,
    Scp11aHost,
    Scp11bHost,
    certificate_store_query,
    parse_ca_identifiers,
    parse_certificate_bundle,
    verify_sd_certificate,
)
from tsm import records
from tsm.audit import AuditLog
from tsm.db import Bind, transaction
from tsm.errors import (
    CardStatusError,
    KeysetRollbackError,
    LinkError,
    MasterKeyMismatchError,
    SeAuthenticityError,
    SecureChannelError,
    SeIdentityError,
    SeMemoryError,
    SeQuarantinedError,
    SequenceCounterRegressionError,
    TransportError,
)
from tsm.gp_commands import ISD_AID, get_data, select
from tsm.keys import (
    DIVERSIFIED_KVN,
    FACTORY_KEYS,
    FACTORY_KVN,
    SCP11A_KVN,
    SCP11B_KID,
    SCP11B_KVN,
    MasterKey,
)
from tsm.oce import OceCredential
from tsm.trace import Sink, trace_plain

Transmit = Callable[[bytes], bytes]
DEFAULT_SECURITY_LEVEL = 0x33


@dataclass(frozen=True)
class Prefetched:
    """SELECT ISD and INITIALIZE UPDATE on ``kvn``, sent and answered ahead of
    :func:`open_session`, with the host that sent the INITIALIZE UPDATE."""

    kvn: int
    host: HostChannel
    select: ResponseApdu
    first: tuple[bytes, int]


@dataclass
class SeLink:
    """Everything needed to talk to one SE for one worker run."""

    #: where the TSM's records live: the engine, or the connection a run holds
    engine: Bind
    se_id: str
    transmit: Transmit
    master: MasterKey
    audit: AuditLog
    trace: Sink | None = None
    security_level: int = DEFAULT_SECURITY_LEVEL
    rng: Callable[[int], bytes] = field(default=os.urandom)
    #: the SE's record and sequence counters as this run last read or wrote them (the
    #: run holds the SE's lock, so nobody else changes them); None: read them again
    known: tuple[records.SeRecord, dict[int, int]] | None = None
    #: the keyset the next session opens with, once this run has just put it on the SE
    #: (the record follows when that session authenticates)
    next_kvn: int | None = None
    #: a session's counter and identity records left for the step's commit (see
    #: :func:`open_session` ``with_step``): (kvn, counter or None, record changes)
    pending_records: list[tuple[int, int | None, dict[str, object]]] = field(default_factory=list)
    #: the SE's diversified keyset, once this run derived it (rotate-keys derives it for
    #: PUT KEY, the session it reopens needs it again): same master, same KDD, same keys
    _keyset: tuple[bytes, StaticKeys] | None = field(default=None, repr=False)
    #: the SE makers this TSM trusts: when given, a factory-fresh SE is met with SCP11b
    #: (its certificate must chain to one of them) instead of the published factory keys
    se_roots: tuple[x509.Certificate, ...] | None = None
    #: the time the SE's certificate is checked at
    clock: Callable[[], float] = field(default=time.time)
    #: the TSM's SCP11a identity: with it (and ``se_roots``), a factory-fresh SE that offers
    #: SCP11a is met with it, the TSM proving itself too; one that does not, with SCP11b,
    #: unless ``require_scp11a``
    oce: OceCredential | None = None
    require_scp11a: bool = False
    #: the TSM's chains from KLOC CAs it rotated away from (:func:`tsm.oce.rotate_kloc_ca`):
    #: with any, SCP11a asks the SE which CA it names (GET DATA FF33) and shows that CA's
    #: chain; the session then replaces the SE's CA-KLOC key (:attr:`CardSession.kloc_stale`)
    retired_oce: tuple[OceCredential, ...] = ()
    #: the next session's opening, already answered: SELECT ISD and INITIALIZE UPDATE sent
    #: with the last command of the session before (see :meth:`CardSession.send_then_reopen`)
    prefetched: Prefetched | None = None

    def se_keys(self, kdd: bytes) -> StaticKeys:
        """``master.se_keys(kdd)``, derived once per run (an HSM master key derives each
        key with a token operation)."""
        known = self._keyset
        if known is not None and known[0] == kdd:
            return known[1]
        keys = self.master.se_keys(kdd)
        self._keyset = (kdd, keys)
        return keys

    def write_records(self, conn) -> None:
        """Write the pending session records on ``conn`` (inside the caller's transaction);
        the caller calls :meth:`records_written` once that transaction has committed."""
        for kvn, counter, changes in self.pending_records:
            if counter is not None:
                records.store_counter(conn, self.se_id, kvn, counter)
            if changes:
                records.update_se(conn, self.se_id, **changes)

    def records_written(self) -> None:
        self.pending_records.clear()

    def flush_records(self) -> None:
        """Write the pending session records in a transaction of their own (a run that
        ends before its step's commit: what the SE answered is still recorded)."""
        if self.pending_records:
            with transaction(self.engine) as conn:
                self.write_records(conn)
            self.records_written()

    def record(self) -> tuple[records.SeRecord, dict[int, int]]:
        if self.known is None:
            self.known = records.load_or_create_with_counters(self.engine, self.se_id)
        return self.known

    def mark_suspect(self) -> None:
        self.known = None
        records.update_se(self.engine, self.se_id, state="suspect")

    def xmit(self, apdu: bytes) -> bytes:
        """The raw transport; any failure becomes :class:`TransportError` (lost answer)."""
        try:
            resp = self.transmit(apdu)
        except Exception as exc:  # the transport is an edge: whatever it raises is a loss
            why = f"{type(exc).__name__}: {exc}" if isinstance(exc, LinkError) else type(exc).__name__
            raise TransportError(f"SE {self.se_id}: no answer to {apdu[:4].hex().upper()}: {why}") from exc
        if len(resp) < 2:
            raise TransportError(f"SE {self.se_id}: answer of {len(resp)} bytes has no status word")
        return resp

    @property
    def pipelines(self) -> bool:
        """The transport takes several commands in one exchange (``transmit.transmit_many``:
        over the air, one GP SERAM order for them all)."""
        return callable(getattr(self.transmit, "transmit_many", None))

    def xmit_many(self, apdus: list[bytes]) -> list[bytes]:
        """Several commands in one exchange (:attr:`pipelines` only); a failure is a
        :class:`TransportError` as in :meth:`xmit`, for all of them."""
        try:
            resps = list(self.transmit.transmit_many(apdus))  # type: ignore[attr-defined]
        except Exception as exc:  # the transport is an edge: whatever it raises is a loss
            why = f"{type(exc).__name__}: {exc}" if isinstance(exc, LinkError) else type(exc).__name__
            raise TransportError(f"SE {self.se_id}: no answer to {len(apdus)} commands from "
                                 f"{apdus[0][:4].hex().upper()}: {why}") from exc
        if len(resps) != len(apdus) or any(len(r) < 2 for r in resps):
            raise TransportError(f"SE {self.se_id}: {len(resps)} answers to {len(apdus)} commands, "
                                 "or one without a status word")
        return resps

    def plain(self, cmd: CommandApdu, what: str) -> ResponseApdu:
        """Send one command outside secure messaging (SELECT before the session)."""
        raw = cmd.to_bytes()
        try:
            resp = self.xmit(raw)
        except TransportError:
            self.audit.command(cmd, None, what, lost=True)
            raise
        if self.trace:
            trace_plain(self.trace, raw, resp)
        r = ResponseApdu.parse(resp)
        self.audit.command(cmd, r.sw, what)
        return r


class CardSession:
    """An open secure channel (SCP03, or SCP11 at an authenticated first contact): plain
    commands in, plain responses out."""

    def __init__(self, link: SeLink, host: SecureHost, kvn: int, counter: int | None,
                 kdd: bytes | None = None, *, scp: str = "03") -> None:
        self.link = link
        self.host = host
        #: the secure channel protocol: "03", or "11a" / "11b" at an authenticated first contact
        self.scp = scp
        self.kvn = kvn
        self.counter = counter
        #: the SE's key diversification data, as it answered and as the record has it
        self.kdd = kdd
        #: the SCP11a session was opened with a chain from a KLOC CA the TSM rotated away from
        #: (the SE names it): the first step replaces the SE's CA-KLOC key (tsm.steps.replace_kloc)
        self.kloc_stale = False
        #: the application INSTALL [for personalization] named in this session, while only
        #: STORE DATA commands answered 9000 followed it (see :func:`tsm.steps.personalise`)
        self.perso_target: bytes | None = None
        #: the SE's applications (instance AID -> life cycle) as the last complete GET STATUS
        #: of this session showed them, kept up to date by the INSTALLs that answered 9000
        #: since; any other command (or error, or lost answer) forgets it (see
        #: :func:`tsm.steps.registry`)
        self.known_registry: dict[bytes, int] | None = None
        #: the key slots of applet instances (instance AID -> the slots that hold a key),
        #: exactly, as this session made or read them: an instance its INSTALL [for
        #: install] created (a new instance holds no key), a READ STATE it sent, the
        #: GENERATEs it sent since; kept only across commands known to change no key slot
        #: (their callers set it again), forgotten by any other command, error or lost
        #: answer (see :func:`tsm.steps.key_slots`)
        self.known_keys: dict[bytes, frozenset[int]] = {}
        #: an applet instance's READ STATE answer (instance AID -> its value), read at the
        #: end of this session's last command sequence to it: exact until any other command
        #: goes to the SE (every send forgets it; see :func:`tsm.steps.personalise`
        #: ``read_state``)
        self.known_state: dict[bytes, bytes] = {}

    def send(self, cmd: CommandApdu, what: str, *, secret: bool = False,
             expect: tuple[int, ...] | None = (0x9000,)) -> ResponseApdu:
        """Wrap, transmit, unwrap. ``expect`` lists acceptable status words (None: any);
        another one raises :class:`CardStatusError`. ``secret`` hides the data from the
        plain trace (the audit log never has data)."""
        return self.send_many([cmd], what, secret=secret, expect=expect)[0]

    def send_then_reopen(self, cmd: CommandApdu, what: str, kvn: int, keys: StaticKeys, *,
                         secret: bool = False) -> ResponseApdu:
        """:meth:`send` of this session's last command, and with it, in the same exchange
        (a transport that pipelines), the next session's SELECT ISD and INITIALIZE UPDATE on
        keyset ``kvn`` (``keys``): :func:`open_session` then starts from their answers
        (:attr:`SeLink.prefetched`), one round trip less. The two change nothing on the card
        but a sequence counter value, and SELECT ends this session after ``cmd``; their
        answers are kept when ``cmd`` succeeded, and judged by the next session."""
        link = self.link
        if not link.pipelines:
            return self.send(cmd, what, secret=secret)
        host = HostChannel(keys, link.security_level, link.rng(8), kvn, sd_aid=ISD_AID)
        plain = [(select(ISD_AID).to_bytes(), "SELECT ISD", {}),
                 (host.initialize_update(), "INITIALIZE UPDATE", {"kvn": kvn})]
        (r,), (sel, iu) = self._exchange([cmd], [what], secret, (0x9000,), plain)
        # kept only when ``cmd`` succeeded (the caller reopens then; a failure ends the run)
        link.prefetched = Prefetched(kvn, host, ResponseApdu.parse(sel), (iu, int.from_bytes(iu[-2:], "big")))
        return r

    def send_many(self, cmds: list[CommandApdu], what: str | list[str], *, secret: bool = False,
                  expect: tuple[int, ...] | None = (0x9000,)) -> list[ResponseApdu]:
        """:meth:`send` for commands that go one after the other whatever the answers (the
        blocks of one STORE DATA sequence): when the transport pipelines, all are wrapped
        (SCP03 chains C-MACs only) and sent in one exchange, each answer then unwrapped and
        judged in order; otherwise one at a time. The first answer that is not expected
        raises, after every answer has been audited; a later command the SE took anyway
        changes nothing a retry of the step does not redo. ``what``: the audit's label, one for
        all or one a command."""
        whats = what if isinstance(what, list) else [what] * len(cmds)
        if len(cmds) > 1 and not self.link.pipelines:
            return [self.send(c, w, secret=secret, expect=expect) for c, w in zip(cmds, whats, strict=True)]
        return self._exchange(cmds, whats, secret, expect, [])[0]

    def _exchange(self, cmds: list[CommandApdu], whats: list[str], secret: bool, expect: tuple[int, ...] | None,
                  plain: list[tuple[bytes, str, dict]]) -> tuple[list[ResponseApdu], list[bytes]]:
        """One exchange: ``cmds`` wrapped, then the ``plain`` commands (APDU, audit label,
        audit detail) after them; the plain answers and the unwrapped ones, judged as
        :meth:`send_many` says."""
        link = self.link
        # anything but a STORE DATA that succeeds ends what we know of the card's
        # personalisation target (set again by the caller after INSTALL [for perso])
        target, self.perso_target = self.perso_target, None
        self.known_registry = None  # set again by the caller (a GET STATUS read, an INSTALL)
        self.known_keys = {}  # likewise, by a caller whose command changes no key slot
        self.known_state = {}  # likewise, by a sequence that ends in READ STATE
        try:
            batch = [self.host.wrap_pipelined(c) for c in cmds]
        except GpError as exc:
            raise SecureChannelError(f"SE {link.se_id}: cannot wrap {whats[0]}: {exc}") from exc
        try:
            raws = [link.xmit(batch[0].wrapped)] if len(cmds) == 1 and not plain else \
                link.xmit_many([b.wrapped for b in batch] + [p[0] for p in plain])
        except TransportError:
            for c, w in zip(cmds, whats, strict=True):
                link.audit.command(c, None, w, lost=True)
            for apdu, w, detail in plain:
                link.audit.command(CommandApdu.parse(apdu), None, w, lost=True, **detail)
            self.host.close()
            raise
        raws, after = raws[:len(cmds)], raws[len(cmds):]
        out: list[ResponseApdu] = []
        failure: Exception | None = None
        for cmd, b, raw, what in zip(cmds, batch, raws, whats, strict=True):  # noqa: B020 - one label each
            if failure is not None:  # answered after the first failure: audited, not judged
                link.audit.command(cmd, int.from_bytes(raw[-2:], "big"), what, unjudged=True)
                continue
            try:
                r = self.host.unwrap_apdu(raw, command=b)
            except GpError as exc:
                link.audit.command(cmd, int.from_bytes(raw[-2:], "big"), what, rmac="failed")
                failure = SecureChannelError(f"SE {link.se_id}: answer to {what} failed R-MAC/R-ENC: {exc}")
                failure.__cause__ = exc
                continue
            if link.trace:
                trace_plain(link.trace, cmd.to_bytes(), r.to_bytes(), secret)
            link.audit.command(cmd, r.sw, what)
            if expect is not None and r.sw not in expect:
                if r.sw == SW_NOT_ENOUGH_MEMORY:
                    failure = SeMemoryError(f"SE {link.se_id}: {what} refused, the SE is out of memory (`mcred "
                                            f"phone show {link.se_id}` gives what is free); free some, then "
                                            "resume the job, or give it up", r.sw)
                else:
                    failure = CardStatusError(f"SE {link.se_id}: {what} refused", r.sw)
                continue
            out.append(r)
        # plain commands after the session's (SELECT ISD and the next INITIALIZE UPDATE):
        # audited and traced in the order the card took them
        for (apdu, w, detail), raw in zip(plain, after, strict=True):
            link.audit.command(CommandApdu.parse(apdu), int.from_bytes(raw[-2:], "big"), w, **detail)
            if link.trace:
                trace_plain(link.trace, apdu, raw)
        if failure is not None:
            raise failure
        if all(c.ins == INS_STORE_DATA for c in cmds) and all(r.sw == 0x9000 for r in out):
            self.perso_target = target
        return out, after

    def close(self) -> None:
        self.host.close()


def _keys_for(link: SeLink, rec: records.SeRecord, kvn: int) -> StaticKeys:
    if kvn == FACTORY_KVN:
        return FACTORY_KEYS
    assert rec.kdd is not None
    return link.se_keys(rec.kdd)


def _authentication_command(link: SeLink, apdu: bytes, what: str, **detail: object) -> tuple[bytes, int]:
    """Send a command of the channel's opening (in plain: the channel is not open yet), audit
    it with ``detail`` (lost, or with its status word) and trace it. Returns the answer and
    its status word."""
    cmd = CommandApdu.parse(apdu)
    try:
        raw = link.xmit(apdu)
    except TransportError:
        link.audit.command(cmd, None, what, lost=True, **detail)
        raise
    sw = int.from_bytes(raw[-2:], "big")
    link.audit.command(cmd, sw, what, **detail)
    if link.trace:
        trace_plain(link.trace, apdu, raw)
    return raw, sw


def _initialize_update(link: SeLink, host: HostChannel, kvn: int, what: str) -> tuple[bytes, int]:
    return _authentication_command(link, host.initialize_update(), what, kvn=kvn)


def _authenticates_with_factory_keys(link: SeLink) -> bool:
    """INITIALIZE UPDATE on the factory keyset, and nothing after it: whether the card's
    answer authenticates with the factory keys (its card cryptogram, and a pseudo-random
    card challenge, verify). The factory keys are published, so this tells a card reset
    to them (or one that is not this SE) from a damaged answer, not from a forger that
    knows them; such a forger on the link could stop every session anyway."""
    host = HostChannel(FACTORY_KEYS, link.security_level, link.rng(8), FACTORY_KVN, sd_aid=ISD_AID)
    raw, sw = _initialize_update(link, host, FACTORY_KVN, "INITIALIZE UPDATE (factory keyset probe)")
    if sw != 0x9000:
        return False
    try:
        host.on_initialize_update_response(raw)
    except GpError:
        return False
    return True


def open_session(link: SeLink, *, with_step: bool = False) -> CardSession:
    """Select the ISD and authenticate (see module docstring).

    The authenticated session's sequence counter and the SE's identity are committed at
    once, before any command goes through the session. ``with_step``: the caller's step
    sends nothing more, so they go into the step's own commit instead
    (:attr:`SeLink.pending_records`), which follows the authentication with no command in
    between, as that commit of their own did: one commit less, the same crash windows (a
    run that ends before the step's commit still writes them, :meth:`SeLink.flush_records`)."""
    rec, counters = link.record()
    if rec.state == "suspect":
        raise SeQuarantinedError(f"SE {link.se_id} is quarantined; the TSM will not open a session")
    if link.next_kvn is not None:
        candidates, link.next_kvn = [link.next_kvn], None
    elif rec.kvn == FACTORY_KVN and link.se_roots is not None:
        # SCP11b does not tell whether keyset 30 is still there: a PUT KEY whose answer was
        # lost may have replaced it, so the diversified keyset is tried first
        candidates = ([DIVERSIFIED_KVN] if rec.kdd else []) + [FACTORY_KVN]
    elif rec.kvn == FACTORY_KVN:
        candidates = [FACTORY_KVN] + ([DIVERSIFIED_KVN] if rec.kdd else [])
    else:
        candidates = [rec.kvn]
    # Over a transport that pipelines, SELECT and the session's first command (INITIALIZE
    # UPDATE, or GET DATA BF21 at an SCP11b first contact) go in one exchange: one round trip
    # less a session. The first command is then sent whatever SELECT answers; it changes
    # nothing but a sequence counter value, and a failed SELECT still stops the session.
    first: tuple[bytes, int] | None = None
    named: tuple[bytes, int] | None = None
    first_host: HostChannel | None = None
    scp11_first = candidates[0] == FACTORY_KVN and link.se_roots is not None
    pre, link.prefetched = link.prefetched, None
    if pre is not None or link.pipelines:  # nothing goes to a keyset another master key made
        _check_master_key(link, rec, candidates[0])
    if pre is not None and pre.kvn == candidates[0]:
        r, first, first_host = pre.select, pre.first, pre.host
    elif link.pipelines:
        if scp11_first:
            kid = _first_scp11_kid(link)
            # while the TSM holds retired KLOC CA chains, the CA the SE names rides along too
            then = (_CA_IDENTIFIERS, _CA_IDENTIFIERS_WHAT) if kid == SCP11A_KID and link.retired_oce else None
            r, first, named = _select_with(link, _certificate_store_command(kid), _bf21_what(kid), then=then)
        else:
            first_host = HostChannel(_keys_for(link, rec, candidates[0]), link.security_level, link.rng(8),
                                     candidates[0], sd_aid=ISD_AID)
            r, first, _ = _select_with(link, first_host.initialize_update(), "INITIALIZE UPDATE",
                                       kvn=candidates[0])
    else:
        r = link.plain(select(ISD_AID), "SELECT ISD")
    if r.sw != 0x9000:
        raise CardStatusError(f"SE {link.se_id}: SELECT of the ISD refused", r.sw)
    for n, kvn in enumerate(candidates):
        _check_master_key(link, rec, kvn)
        if kvn == FACTORY_KVN and link.se_roots is not None:
            return _open_scp11(link, rec, counters, with_step=with_step, answered=first if n == 0 else None,
                               named=named if n == 0 else None)
        if n == 0 and first_host is not None and first is not None:
            host, (raw, sw) = first_host, first
        else:
            host = HostChannel(_keys_for(link, rec, kvn), link.security_level, link.rng(8), kvn,
                               sd_aid=ISD_AID)
            raw, sw = _initialize_update(link, host, kvn, "INITIALIZE UPDATE")
        if sw == SW_REFERENCED_DATA_NOT_FOUND and n + 1 < len(candidates):
            continue  # a PUT KEY whose answer was lost did land: try the new keyset
        if sw == SW_REFERENCED_DATA_NOT_FOUND and kvn != FACTORY_KVN:
            # a status word authenticates nothing: a forged 6A88, or a command whose key
            # version a link damaged, must not quarantine the SE. Only a card that
            # authenticates with the factory keyset shows the keyset was rolled back.
            if _authenticates_with_factory_keys(link):
                link.audit.event("keyset-rollback", f"keyset {kvn:02X} unknown to the SE, factory keys "
                                 "authenticate", kvn=kvn)
                link.mark_suspect()
                raise KeysetRollbackError(
                    f"SE {link.se_id} no longer knows keyset {kvn:02X} that the TSM put on it and "
                    "authenticates with the factory keys: a reset or replaced SE")
            link.audit.event("keyset-unknown", f"keyset {kvn:02X} unknown to the SE, factory keys do not "
                             "authenticate", kvn=kvn, outcome="not quarantined: nothing authenticated")
            raise SecureChannelError(
                f"SE {link.se_id} answered 6A88 (keyset {kvn:02X} not found) and does not authenticate "
                "with the factory keys either: a damaged or forged answer, or another card; the SE "
                "is not quarantined", sw)
        if sw != 0x9000:
            raise SecureChannelError(f"SE {link.se_id}: INITIALIZE UPDATE refused (SW {sw:04X})", sw)
        try:
            iu = InitializeUpdateResponse.parse(raw[:-2])
        except GpError as exc:
            raise SecureChannelError(f"SE {link.se_id}: INITIALIZE UPDATE answer: {exc}") from exc
        # Nothing in this answer is authenticated until the card cryptogram verifies (and,
        # with a pseudo-random card challenge, the challenge matches the sequence counter):
        # a damaged or forged answer must end the session, never quarantine the SE. The
        # keys come from the KDD on record, so a card that is not this SE fails the
        # cryptogram. The KDD field itself is covered by no cryptogram: a card that
        # authenticates with the keys of the recorded KDD is this SE whatever the field says
        # (a damaged answer now, or one at first contact that the record took: the keyset
        # was derived from it all the same), so the session goes on, audited.
        try:
            ea = host.on_initialize_update_response(raw)
            failed = None
        except GpError as exc:
            failed = exc
        if rec.kdd is not None and iu.key_diversification_data != rec.kdd:
            seen = iu.key_diversification_data.hex()
            if failed is not None:
                link.audit.event("identity-mismatch", "key diversification data differs, answer not "
                                 "authenticated", seen=seen)
                raise SeIdentityError(
                    f"SE {link.se_id} answered key diversification data {seen.upper()}, the record says "
                    f"{rec.kdd.hex().upper()}, and the answer does not authenticate with this SE's keys: another "
                    "card, or a damaged answer; nothing was sent after it") from failed
            link.audit.event("identity-mismatch", "key diversification data differs, card authenticated",
                             seen=seen, outcome="the card holds the recorded KDD's keys: the session goes on")
        if failed is not None:
            link.audit.event("session-failed", "card cryptogram", kvn=kvn, error=str(failed))
            raise SecureChannelError(f"SE {link.se_id}: {failed}") from failed
        counter = int.from_bytes(iu.sequence_counter, "big") if iu.sequence_counter else None
        last = counters.get(kvn)
        if counter is not None and last is not None and counter <= last:
            link.audit.event("counter-regression", "sequence counter went backwards",
                             kvn=kvn, last=last, seen=counter)
            link.audit.flush_now(link.engine)
            link.mark_suspect()
            raise SequenceCounterRegressionError(link.se_id, kvn, last, counter)
        raw, sw = _authentication_command(link, ea, "EXTERNAL AUTHENTICATE", level=link.security_level)
        try:
            host.on_external_authenticate_response(raw)
        except GpError as exc:
            raise SecureChannelError(f"SE {link.se_id}: {exc}", sw) from exc
        _record_session(link, rec, counters, kvn, counter, iu.key_diversification_data, with_step=with_step)
        link.audit.event("session-open", None, kvn=kvn, counter=counter, level=link.security_level)
        return CardSession(link, host, kvn, counter, iu.key_diversification_data)
    raise SecureChannelError(f"SE {link.se_id}: no keyset opened a session")  # pragma: no cover


def _record_session(link: SeLink, rec: records.SeRecord, counters: dict[int, int], kvn: int,
                    counter: int | None, kdd: bytes, *, with_step: bool) -> None:
    """What an authenticated session tells the record: its keyset, sequence counter and, at
    first contact, the SE's identity (its KDD and the master key's id), committed at once or
    with the step (see :func:`open_session`), and what this run now knows of the record."""
    changes: dict[str, object] = {}
    if rec.kdd is None:
        changes.update(kdd=kdd.hex(), master_key_id=link.master.key_id)
    if kvn != rec.kvn:
        changes.update(kvn=kvn)
    if rec.state == "new" or changes:
        changes.setdefault("state", "active")
    link.known = None  # until the commit below is known to have landed
    link.pending_records.append((kvn, counter, changes))
    if not with_step:
        link.flush_records()  # the counter and identity: one commit
    if counter is not None:
        counters = {**counters, kvn: max(counter, counters.get(kvn, counter))}
    link.known = (dataclasses.replace(
        rec, kvn=kvn, state=str(changes.get("state", rec.state)),
        kdd=rec.kdd if rec.kdd is not None else kdd,
        master_key_id=rec.master_key_id if rec.kdd is not None else link.master.key_id),
        counters)


def _check_master_key(link: SeLink, rec: records.SeRecord, kvn: int) -> None:
    """Stop before a diversified keyset's INITIALIZE UPDATE when the record says another
    master key diversified it: no cryptogram could match."""
    if kvn != FACTORY_KVN and rec.master_key_id and rec.master_key_id != link.master.key_id \
            and rec.master_key_id not in getattr(link.master, "also_known_as", ()):
        link.audit.event("master-key-mismatch", f"keyset {kvn:02X} diversified from {rec.master_key_id}",
                         kvn=kvn, held=link.master.key_id)
        raise MasterKeyMismatchError(
            f"SE {link.se_id}: keyset {kvn:02X} was diversified from master key {rec.master_key_id}, "
            f"this TSM holds {link.master.key_id} (MCRED_TSM_MASTER_KEY and its store must be the "
            "installation's own; specs/tsm.md)")


def _select_with(link: SeLink, apdu: bytes, what: str, *, then: tuple[bytes, str] | None = None,
                 **detail: object) -> tuple[ResponseApdu, tuple[bytes, int], tuple[bytes, int] | None]:
    """SELECT ISD and ``apdu`` (and ``then``: a command and its name, one that changes
    nothing) in one exchange (a pipelining transport); all audited (as lost together when
    the exchange fails). Returns SELECT's answer, and ``apdu``'s and ``then``'s (None
    without it) with their status words."""
    sel = select(ISD_AID)
    sent = [(sel.to_bytes(), "SELECT ISD", {}), (apdu, what, detail)] + ([(then[0], then[1], {})] if then else [])
    try:
        raws = link.xmit_many([a for a, _, _ in sent])
    except TransportError:
        for a, w, d in sent:
            link.audit.command(CommandApdu.parse(a), None, w, lost=True, **d)
        raise
    answers = [(raw, int.from_bytes(raw[-2:], "big")) for raw in raws]
    for (a, w, d), (raw, sw) in zip(sent, answers, strict=True):
        link.audit.command(CommandApdu.parse(a), sw, w, **d)
        if link.trace:
            trace_plain(link.trace, a, raw)
    return ResponseApdu.parse(raws[0]), answers[1], answers[2] if then else None


def _first_scp11_kid(link: SeLink) -> int:
    """The SCP11 key the TSM asks for first: SCP11a's when it has an OCE identity."""
    return SCP11A_KID if link.oce is not None else SCP11B_KID


def _bf21_what(kid: int) -> str:
    return f"GET DATA SE certificate (BF21, SCP11{'a' if kid == SCP11A_KID else 'b'})"


def _certificate_store_command(kid: int = SCP11B_KID) -> bytes:
    # an extended Le: the chain is longer than a short answer (256 bytes) carries
    kvn = SCP11A_KVN if kid == SCP11A_KID else SCP11B_KVN
    return CommandApdu(0x80, 0xCA, TAG_CERTIFICATE_STORE >> 8, TAG_CERTIFICATE_STORE & 0xFF,
                       certificate_store_query(kid, kvn), 65536).to_bytes()


def _refuse_authenticity(link: SeLink, reason: str, **detail: object) -> SeAuthenticityError:
    link.audit.event("se-authentication-failed", reason, **detail)
    return SeAuthenticityError(
        f"SE {link.se_id} did not prove it is a genuine SE of a trusted maker: {reason}; nothing secret "
        "was sent to it (specs/tsm.md, \"First contact\")")


def _open_scp11(link: SeLink, rec: records.SeRecord, counters: dict[int, int], *,
                with_step: bool, answered: tuple[bytes, int] | None = None,
                named: tuple[bytes, int] | None = None) -> CardSession:
    """First contact with a factory-fresh SE, authenticated (GPCS Amendment F): read the SE's
    SCP11 certificate, verify it against the trusted SE maker roots, take the SE's identity
    (its key diversification data) from it, and open SCP11 with the certified key: SCP11a
    when the TSM has an OCE identity and the SE offers it (the SE then knows the TSM too),
    SCP11b otherwise. The receipt proves the card holds the certified key; the session's
    S-DEK then enciphers the PUT KEY that replaces the published factory keys
    (tsm.steps.rotate_keys), so no link and no agent between the TSM and the SE learns the
    diversified keys. ``answered``, ``named``: the first certificate query's answer and
    GET DATA FF33's (see :func:`_choose_oce`), when they rode with
    SELECT (see :func:`open_session`)."""
    kid = _first_scp11_kid(link)
    if answered is not None:
        r = ResponseApdu.parse(answered[0])
    else:
        r = link.plain(CommandApdu.parse(_certificate_store_command(kid)), _bf21_what(kid))
    if kid == SCP11A_KID and r.sw == SW_REFERENCED_DATA_NOT_FOUND:
        if link.require_scp11a:
            raise _refuse_authenticity(link, "it offers no SCP11a key (BF21 for KID 11 answered 6A88), and this "
                                       "TSM meets SEs with SCP11a only (MCRED_TSM_FIRST_CONTACT=scp11a)", sw=r.sw)
        # an SE whose issuer named no key-loading OCE: SCP11b is all it offers. A forged
        # 6A88 gains a forger nothing: an SE that has a CA-KLOC key loads no key under SCP11b
        link.audit.event("scp11a-not-offered", "the SE has no SCP11a key: SCP11b")
        kid = SCP11B_KID
        r = link.plain(CommandApdu.parse(_certificate_store_command(kid)), _bf21_what(kid))
    if r.sw != 0x9000:
        raise _refuse_authenticity(link, f"it answered {r.sw:04X} to {_bf21_what(kid)}: no SCP11 certificate "
                                   "(an SE without SCP11 is met with the published factory keys only under "
                                   "MCRED_TSM_FIRST_CONTACT=factory-keys)", sw=r.sw)
    at = dt.datetime.fromtimestamp(link.clock(), dt.UTC)
    assert link.se_roots is not None
    try:
        leaf = verify_sd_certificate(parse_certificate_bundle(r.data), link.se_roots, at=at)
    except GpError as exc:
        raise _refuse_authenticity(link, f"{exc} (MCRED_SE_MAKER_ROOTS names the roots of the SE makers "
                                   "to trust)") from exc
    names = leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    try:
        kdd = bytes.fromhex(str(names[0].value)) if len(names) == 1 else b""
    except ValueError:
        kdd = b""
    if len(kdd) != 10:
        raise _refuse_authenticity(link, f"its certificate {leaf.subject.rfc4514_string()} does not name the SE's "
                                   "key diversification data (subject serialNumber, 20 hexadecimal digits)")
    fingerprint = hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()
    if rec.kdd is not None and kdd != rec.kdd:
        link.audit.event("identity-mismatch", "certificate names other key diversification data",
                         seen=kdd.hex(), certificate=fingerprint)
        raise SeIdentityError(
            f"SE {link.se_id}'s certificate names key diversification data {kdd.hex().upper()}, the record "
            f"says {rec.kdd.hex().upper()}: another card; nothing was sent after it")
    host: Scp11aHost | Scp11bHost
    stale = False
    if kid == SCP11A_KID:
        assert link.oce is not None
        oce, stale, kloc_kvn = (_choose_oce(link, named) if link.retired_oce
                                else (link.oce, False, link.oce.kloc_kvn))
        scp, host = "11a", Scp11aHost(leaf.public_key(), SCP11A_KVN, SCP11A_KID,
                                      oce_certificates=oce.certificates, oce_exchange=oce.exchange,
                                      kloc_kid=oce.kloc_kid, kloc_kvn=kloc_kvn)
        answer = _mutual_authenticate(link, host)
    else:
        scp, host = "11b", Scp11bHost(leaf.public_key(), SCP11B_KVN, SCP11B_KID)
        answer = _authentication_command(link, host.internal_authenticate(), "INTERNAL AUTHENTICATE (SCP11b)",
                                         kid=SCP11B_KID, kvn=SCP11B_KVN)
    try:
        if isinstance(host, Scp11aHost):
            host.on_mutual_authenticate_response(answer[0])
        else:
            host.on_internal_authenticate_response(answer[0])
    except Scp11AuthenticationError as exc:
        raise _refuse_authenticity(link, str(exc), certificate=fingerprint) from exc
    except GpError as exc:
        link.audit.event("session-failed", f"SCP{scp}", error=str(exc))
        raise SecureChannelError(f"SE {link.se_id}: {exc}", answer[1]) from exc
    _record_session(link, rec, counters, FACTORY_KVN, None, kdd, with_step=with_step)  # no counter in SCP11
    link.audit.event("se-authenticated", leaf.subject.rfc4514_string(), certificate=fingerprint)
    link.audit.event("session-open", None, kvn=FACTORY_KVN, scp=scp, level=host.security_level)
    session = CardSession(link, host, FACTORY_KVN, None, kdd, scp=scp)
    session.kloc_stale = stale
    return session


#: GET DATA FF33, the CA-KLOC identifiers
_CA_IDENTIFIERS = get_data(TAG_CA_KLOC_IDENTIFIERS).to_bytes()
_CA_IDENTIFIERS_WHAT = "GET DATA CA-KLOC identifiers (FF33)"


def _choose_oce(link: SeLink, named: tuple[bytes, int] | None = None) -> tuple[OceCredential, bool, int]:
    """The chain to show an SE while the TSM holds chains from more than one KLOC CA (a
    rotation under way): GET DATA FF33 names the CA whose OCEs the SE takes keys from, by
    its Subject Key Identifier. Returns that CA's credential, whether it is a retired one,
    and the version under which the SE holds the CA's key (a move to the current CA that
    stopped after its PUT KEY leaves a factory-fresh SE with version 02). ``named``: FF33's
    answer, when it rode with SELECT. An SE that does not answer FF33 is shown the current
    chain (it refuses it, named, if it names another CA); one that names none of the TSM's
    CAs is refused before any certificate goes out."""
    assert link.oce is not None
    r = (ResponseApdu.parse(named[0]) if named is not None
         else link.plain(CommandApdu.parse(_CA_IDENTIFIERS), _CA_IDENTIFIERS_WHAT))
    if r.sw != 0x9000:
        return link.oce, False, link.oce.kloc_kvn
    try:
        held = [(ski, kvn) for ski, kid, kvn in parse_ca_identifiers(r.data) if kid == KLOC_KID]
    except GpError as exc:
        raise SecureChannelError(f"SE {link.se_id}: GET DATA FF33: {exc}", r.sw) from exc
    named = [ski for ski, _ in held]
    for cred in (link.oce, *link.retired_oce):
        for ski, kvn in held:
            if cred.is_named_by(ski):
                return cred, cred is not link.oce, kvn
    link.audit.event("oce-refused", "the SE names none of the TSM's KLOC CAs",
                     named=",".join(n.hex() for n in named) or "none")
    raise SecureChannelError(
        f"SE {link.se_id} takes keys only from OCEs of the KLOC CA {', '.join(n.hex().upper() for n in named) or '(none)'} "
        "(its Subject Key Identifier, GET DATA FF33), which certifies none of this TSM's chains: its issuer named "
        "another TSM, or a CA this TSM no longer holds (specs/tsm.md \"Rotating the KLOC CA\"); nothing was sent",
        r.sw)


def _mutual_authenticate(link: SeLink, host: Scp11aHost) -> tuple[bytes, int]:
    """The OCE's certificates and MUTUAL AUTHENTICATE (in one exchange over a transport
    that pipelines: a refused certificate leaves the SE without the OCE's key, and it then
    refuses MUTUAL AUTHENTICATE); a refused certificate fails the session, named. Returns
    MUTUAL AUTHENTICATE's answer and status word."""
    certs = host.certificate_commands()
    whats = [f"PERFORM SECURITY OPERATION (TSM certificate {i + 1} of {len(certs)})" for i in range(len(certs))]
    ma_what = "MUTUAL AUTHENTICATE (SCP11a)"
    detail = {"kid": SCP11A_KID, "kvn": SCP11A_KVN}
    if link.pipelines:
        apdus = [*certs, host.mutual_authenticate_pipelined()]
        try:
            raws = link.xmit_many(apdus)
        except TransportError:
            for a, w in zip(apdus, [*whats, ma_what], strict=True):
                link.audit.command(CommandApdu.parse(a), None, w, lost=True)
            raise
        for a, raw, w in zip(apdus, raws, [*whats, ma_what], strict=True):
            link.audit.command(CommandApdu.parse(a), int.from_bytes(raw[-2:], "big"), w)
            if link.trace:
                trace_plain(link.trace, a, raw)
        answers = [(raw, int.from_bytes(raw[-2:], "big")) for raw in raws]
    else:
        answers = []
        for a, w in zip(certs, whats, strict=True):
            answers.append(_authentication_command(link, a, w))
            if answers[-1][1] != 0x9000:
                break
    for i, (raw, sw) in enumerate(answers[:len(certs)]):
        try:
            host.on_certificate_response(raw)
        except GpError as exc:
            link.audit.event("oce-refused", f"certificate {i + 1} answered {sw:04X}", sw=sw)
            raise SecureChannelError(
                f"SE {link.se_id} refused the TSM's certificate {i + 1} (SW {sw:04X}): the SE's issuer did not "
                "name this TSM's CA as one whose OCEs may load keys (its CA-KLOC key; specs/tsm.md \"First "
                "contact\"); nothing secret was sent", sw) from exc
    if link.pipelines:
        return answers[-1]
    return _authentication_command(link, host.mutual_authenticate(), ma_what, **detail)
