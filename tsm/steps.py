"""The steps of the TSM's job scripts (specs/tsm.md, "Job model and step ids").

Each step first reads the SE's state (GET STATUS, the applets' READ STATE) and sends a
changing command only if that state shows the step's effect is missing; so a step re-run
after a lost response or a crash finishes what the first run started and never does it
twice. A step records what later steps need (certificates, IssuerSigned, fingerprints) in
``ctx.results``, which the runner persists with the step's completion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.gp import codes, resources
from protocols.gp.apdu import CommandApdu
from protocols.gp.crypto import kcv
from protocols.gp.errors import GpError
from protocols.gp.keys import (
    parse_key_information_template,
    put_ec_public_key_command,
    put_key_command,
)
from protocols.gp.scp11 import (
    KLOC_KID,
    TAG_CA_KLOC_IDENTIFIERS,
    ca_issuer_data,
    parse_ca_identifiers,
)
from tsm import applets as ap
from tsm.errors import (
    CardDataError,
    CardStatusError,
    JobError,
    SeApplicationInUseError,
    SecretsRequiredError,
    SeMemoryError,
)
from tsm.gp_commands import (
    STATUS_APPS,
    delete,
    get_data,
    get_status,
    install_for_install,
    install_for_personalization,
    parse_status,
    store_data_blocks,
)
from tsm.keys import DIVERSIFIED_KVN, FACTORY_KVN

if TYPE_CHECKING:
    from protocols.gp.apdu import ResponseApdu
    from tsm.jobs import StepContext

SW_MORE_DATA = codes.SW_MORE_DATA_AVAILABLE
#: the life cycle INSTALL [for install and make selectable] leaves (GPCS 11.1.1)
APP_SELECTABLE = 0x07
SW_NOT_FOUND = codes.SW_REFERENCED_DATA_NOT_FOUND
#: DELETE of an application selected on a logical channel (GP Card Specification,
#: Application Removal; specs/secure-element.md)
SW_IN_USE = codes.SW_CONDITIONS_NOT_SATISFIED


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --- helpers -----------------------------------------------------------------------------

def registry(ctx: StepContext, *, reuse: bool = False, first: ResponseApdu | None = None) -> dict[bytes, int]:
    """Instance AID -> life cycle of every application on the SE (GET STATUS P1=40).

    ``reuse``: what this session's last complete GET STATUS showed, with the INSTALLs that
    answered 9000 since, when no other command came in between (the SE holds nothing this
    session did not see: one TSM worker per SE, under its lock); otherwise it is read.
    ``first``: the answer to the first GET STATUS, already sent (pipelined by the survey)."""
    s = ctx.session
    if reuse and s.known_registry is not None:
        return dict(s.known_registry)
    out: dict[bytes, int] = {}
    more = False
    known = s.known_keys
    while True:
        if first is not None:
            r, first = first, None
        else:
            r = s.send(get_status(STATUS_APPS, more), "GET STATUS applications",
                       expect=(0x9000, SW_MORE_DATA, SW_NOT_FOUND))
        s.known_keys = known  # GET STATUS changes nothing on the card
        if r.sw == SW_NOT_FOUND:
            break
        for e in parse_status(r.data):
            out[e.aid] = e.life_cycle
        if r.sw != SW_MORE_DATA:
            break
        more = True
    s.known_registry = dict(out)
    return out


_READ_STATE = {ap.JPKI.instance_aid: ap.JPKI_READ_STATE, ap.MDOC.instance_aid: ap.MDOC_READ_STATE}


def personalise(ctx: StepContext, applet: ap.AppletRef, stream: bytes, what: str,
                *, secret: bool = False, keeps_keys: bool = False, read_state: bool = False) -> bytes:
    """INSTALL [for personalization] then the STORE DATA blocks; the last answer's data.

    The INSTALL is left out when this session's last commands were that same INSTALL and
    STORE DATA sequences that all answered 9000: the card's target is still the applet
    (GPCS 11.5.2.3.5: until the session ends or another INSTALL [for personalization]),
    and block 00 starts a new sequence. Any other command, error or lost answer in
    between makes the TSM send it again.

    ``keeps_keys``: the stream holds no record that changes a key slot (READ STATE,
    PROVE, WRITE, SET PIN), so what the session knows of the applets' key slots
    (:attr:`~tsm.session.CardSession.known_keys`) holds after it; otherwise the caller
    sets it again from the answer (GENERATE) or it is forgotten. INSTALL [for
    personalization] changes no applet's content.

    ``read_state``: READ STATE ends the sequence (the applet runs a sequence's records in
    order, so it answers the state after the others), and its answer is kept for the next
    :func:`jpki_state` / :func:`mdoc_state` of this session, unless another command goes
    first (:attr:`~tsm.session.CardSession.known_state`): the step after this one, which
    must know the state before it acts, then reads it without a command of its own (over
    the air, one poll less). The returned data is the other records' answers."""
    s = ctx.session
    known = s.known_keys
    tag = _READ_STATE[applet.instance_aid]
    if read_state:
        what = f"{what} + READ STATE" if stream else f"{what} READ STATE"
        stream += ap.dgi(tag, b"")
    blocks = store_data_blocks(stream)
    cmds, whats = blocks, [f"STORE DATA {what}"] * len(blocks)
    if s.perso_target != applet.instance_aid:
        cmds = [install_for_personalization(applet.instance_aid), *blocks]
        whats = [f"INSTALL [for personalization] {applet.name}", *whats]
    # one sequence: the INSTALL and the blocks go one after the other whatever each answers
    # (a block that fails leaves the sequence to be sent again from block 00, and after a
    # failed INSTALL the card has no target for them), so a transport that pipelines carries
    # them in one exchange (over the air: one GP SERAM order)
    answers = s.send_many(cmds, whats, secret=secret)
    s.perso_target = applet.instance_aid  # every answer was 9000
    if keeps_keys:
        s.known_keys = known
    data = answers[-1].data
    if read_state:
        records = ap.parse_dgis(data)
        if not records or records[-1][0] != tag:
            raise CardDataError(f"SE {ctx.se_id}: {what} did not answer READ STATE last")
        s.known_state = {applet.instance_aid: records[-1][1]}
        data = b"".join(ap.dgi(t, v) for t, v in records[:-1])
    return data


def key_slots(ctx: StepContext, applet: ap.AppletRef) -> frozenset[int] | None:
    """The slots of ``applet`` that hold a key, if this session knows them exactly without
    asking (:attr:`~tsm.session.CardSession.known_keys`): it installed the instance, or
    read its state, and since then sent only commands whose effect on its key slots it
    accounted for, each answered 9000. None: read the state (as every new session does)."""
    return ctx.session.known_keys.get(applet.instance_aid)


def _know_keys(ctx: StepContext, applet: ap.AppletRef, known: dict[bytes, frozenset[int]],
               slots: frozenset[int] | None) -> None:
    """After a command to ``applet`` answered 9000: what the session knew before it
    (``known``: the other applets' slots are untouched), with ``applet``'s slots now
    ``slots`` (None: unknown)."""
    out = {aid: v for aid, v in known.items() if aid != applet.instance_aid}
    if slots is not None:
        out[applet.instance_aid] = slots
    ctx.session.known_keys = out


def _read_state(ctx: StepContext, applet: ap.AppletRef) -> bytes:
    """The applet's READ STATE answer: the one the session's last sequence ended with
    (:func:`personalise` ``read_state``), or read now."""
    kept = ctx.session.known_state.get(applet.instance_aid)
    if kept is not None:
        return kept
    data = personalise(ctx, applet, b"", applet.name, keeps_keys=True, read_state=True)
    if data:
        raise CardDataError(f"SE {ctx.se_id}: {applet.name} READ STATE answered more than its state")
    return ctx.session.known_state[applet.instance_aid]


def jpki_state(ctx: StepContext) -> ap.JpkiState:
    st = ap.parse_jpki_state(_read_state(ctx, ap.JPKI))
    _know_keys(ctx, ap.JPKI, ctx.session.known_keys, frozenset(st.keys))
    return st


def mdoc_state(ctx: StepContext) -> dict[int, ap.MdocSlotInfo]:
    st = ap.parse_mdoc_state(_read_state(ctx, ap.MDOC))
    _know_keys(ctx, ap.MDOC, ctx.session.known_keys, frozenset(st))
    return st


# --- generic steps -------------------------------------------------------------------------

def open_session(ctx: StepContext) -> None:
    """Authenticate (the runner opens the session before every run's first step); the
    session's records go into this step's commit, nothing being sent in between."""
    s = ctx.session_then_commit()
    ctx.results.update(kvn=s.kvn, counter=s.counter, scp=s.scp)


def rotate_keys(ctx: StepContext) -> None:
    """Replace the factory keyset 30 by the SE's diversified keyset 31 (PUT KEY), then
    reopen the session with it. Skipped when the session already runs on keyset 31."""
    s = ctx.session
    if s.kvn == DIVERSIFIED_KVN:
        ctx.results.update(rotated=False)
        return
    kdd = s.kdd  # checked against (or, at first contact, recorded in) the SE's record
    if kdd is None:
        raise JobError(f"SE {ctx.se_id}: no key diversification data on record")
    if s.kloc_stale:  # SCP11a with a retired KLOC CA's chain: the SE moves to the current CA first
        replace_kloc(ctx)
    new = ctx.link.se_keys(kdd)  # the master key object derives; the key never leaves it
    dek = s.host.key_dek  # the factory K-DEK under SCP03, the session's S-DEK under SCP11
    cmd = put_key_command(FACTORY_KVN, DIVERSIFIED_KVN, [new.enc, new.mac, new.dek], dek)
    try:
        # over a transport that pipelines, the next session's SELECT and INITIALIZE UPDATE on
        # keyset 31 ride with the PUT KEY: the reopen below starts from their answers
        r = s.send_then_reopen(cmd, "PUT KEY replace 30 by 31", DIVERSIFIED_KVN, new, secret=True)
    except CardStatusError as exc:
        if s.scp == "11b" and exc.sw == codes.SW_SECURITY_NOT_SATISFIED:
            if ctx.link.oce is not None:  # it said it had no SCP11a key, and wants one
                raise CardStatusError(
                    f"SE {ctx.se_id}: PUT KEY refused under SCP11b, though the SE answered that it has no "
                    "SCP11a key: it takes keys only from an OCE its issuer named, so that answer was forged "
                    "on the link (or the SE is damaged); nothing secret was sent. MCRED_TSM_FIRST_CONTACT=scp11a "
                    "refuses such an answer at once (specs/tsm.md \"First contact\")", exc.sw) from exc
            raise CardStatusError(
                f"SE {ctx.se_id}: PUT KEY refused under SCP11b: the SE takes keys only from an OCE "
                "its issuer named, over SCP11a; give this TSM its OCE identity (MCRED_TSM_FIRST_CONTACT=scp11 "
                "or scp11a; specs/tsm.md \"First contact\")", exc.sw) from exc
        raise
    if r.data[:1] != bytes([DIVERSIFIED_KVN]):
        raise CardDataError(f"SE {ctx.se_id}: PUT KEY answered {r.data.hex()}, expected KVN 31 first")
    # GPCS 11.8.3: the card answers each new key's check value; a mismatch means the card
    # holds other keys than the TSM derived (a corrupted block, a false card)
    expected = b"".join(kcv(k) for k in (new.enc, new.mac, new.dek))
    if r.data[1:] != expected:
        raise CardDataError(f"SE {ctx.se_id}: PUT KEY answered key check values {r.data[1:].hex().upper()}, "
                            f"expected {expected.hex().upper()} (ENC, MAC, DEK)")
    ctx.link.audit.event("keys-rotated", "factory keyset replaced", old_kvn=FACTORY_KVN,
                         new_kvn=DIVERSIFIED_KVN)
    # the new session opens with keyset 31 and records it (with its sequence counter) in
    # this step's commit, nothing being sent in between; should that fail, the record
    # still says 30, the SE answers 6A88 to it, and the next session tries 31
    # (specs/tsm.md, "Sessions")
    ctx.link.next_kvn = DIVERSIFIED_KVN
    ctx.reopen(then_commit=True)
    ctx.results.update(rotated=True)


def replace_kloc(ctx: StepContext) -> None:
    """Put the TSM's current KLOC CA into the SE as its CA-KLOC key (GPCS Amendment F; specs/
    tsm.md "Rotating the KLOC CA"): GET DATA FF33 names the CA the SE holds; when it is
    another, PUT KEY KID 10 replaces it (the next KVN) and STORE DATA names the new one by
    its Subject Key Identifier. From then on the SE takes SCP11a only from the new CA's OCEs;
    an OCE certificate from the old CA, and whoever holds the old CA's key, are refused.
    Idempotent: a run after a crash reads FF33 again. An SE whose issuer named no OCE (FF33
    answers 6A88) is left as it is. A job with input ``check`` only reads: ``stale`` for an
    SE that names another CA (the inventory of the SEs a leaked CA key still opens, read
    over the TSM's authenticated session)."""
    oce = ctx.link.oce
    if oce is None or oce.ca_key is None or oce.ca_ski is None:
        raise JobError("the TSM has no OCE identity (MCRED_TSM_FIRST_CONTACT scp11 or scp11a): no KLOC CA "
                       "to put into the SE")
    s = ctx.session
    r = s.send(get_data(TAG_CA_KLOC_IDENTIFIERS), "GET DATA CA-KLOC identifiers (FF33)",
               expect=(0x9000, codes.SW_REFERENCED_DATA_NOT_FOUND))
    if r.sw != 0x9000:
        ctx.results.update(kloc="none")
        return
    try:
        held = [(ski, kvn) for ski, kid, kvn in parse_ca_identifiers(r.data) if kid == KLOC_KID]
    except GpError as exc:
        raise CardDataError(f"SE {ctx.se_id}: GET DATA FF33: {exc}") from exc
    if len(held) != 1:
        raise CardDataError(f"SE {ctx.se_id}: GET DATA FF33 names {len(held)} CA-KLOC keys, expected one")
    ski, kvn = held[0]
    if oce.is_named_by(ski):
        ctx.results.update(kloc="current", ca_ski=ski.hex())
        return
    if ctx.input.get("check"):  # only a rotate-kloc job takes it
        ctx.results.update(kloc="stale", ca_ski=ski.hex(), kvn=kvn)
        return
    new_kvn = kvn % 0x7F + 1
    point = oce.ca_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    # one exchange over a transport that pipelines: a STORE DATA after a PUT KEY the SE
    # refused names a KVN it does not hold (6A88) and changes nothing; a retry reads FF33 again
    r, _ = s.send_many([put_ec_public_key_command(kvn, new_kvn, KLOC_KID, point),
                        CommandApdu(0x80, codes.INS_STORE_DATA, 0x90, 0x00,
                                    ca_issuer_data(KLOC_KID, new_kvn, oce.ca_ski))],
                       [f"PUT KEY CA-KLOC (KID 10, KVN {new_kvn:02X})", "STORE DATA CA-KLOC identifier"])
    if r.data != bytes([new_kvn]):
        raise CardDataError(f"SE {ctx.se_id}: PUT KEY CA-KLOC answered {r.data.hex()}, expected KVN {new_kvn:02X}")
    ctx.link.audit.event("kloc-replaced", "the SE's CA-KLOC key replaced by the TSM's current KLOC CA",
                         old=ski.hex(), new=oce.ca_ski.hex(), kvn=new_kvn)
    ctx.results.update(kloc="replaced", old_ca_ski=ski.hex(), ca_ski=oce.ca_ski.hex(), kvn=new_kvn)


def check_keys(ctx: StepContext) -> None:
    """Read the key information template: the diversified keyset is the only SCP03 keyset."""
    r = ctx.session.send(get_data(0x00E0), "GET DATA key information")
    try:
        kvns = sorted({k.kvn for k in parse_key_information_template(r.data)})
    except GpError as exc:
        raise CardDataError(f"SE {ctx.se_id}: key information template: {exc}") from exc
    ctx.results.update(kvns=kvns)


#: Lower bounds of the NVM a provisioning takes on an SE (bytes of the simulator's image, for
#: the shortest holder record without a portrait; measured, rounded down: tests check they
#: stay below what a provisioning really takes): the JPKI applet with both keys, both
#: certificates and the secrets, by key type; each mdoc slot (device key and IssuerSigned)
NVM_JPKI_AT_LEAST = {"p384": 5_000, "rsa2048": 7_500}
NVM_MDOC_AT_LEAST = 4_400


def free_memory(ctx: StepContext, answer: ResponseApdu | None = None) -> int | None:
    """Free non-volatile memory the SE reports (GET DATA FF21, Extended Card Resources
    Information: tag 82), or None when it does not say (6A88, or no 82 in the answer).
    ``answer``: GET DATA FF21's answer, already sent (pipelined by the survey)."""
    r = answer if answer is not None else \
        ctx.session.send(get_data(resources.TAG), "GET DATA FF21", expect=(0x9000, 0x6A88))
    if r.sw not in (0x9000, 0x6A88):
        raise CardStatusError(f"SE {ctx.se_id}: GET DATA FF21 refused", r.sw)
    if r.sw != 0x9000:
        return None
    try:
        return resources.parse_resources(r.data).get(resources.FREE_NON_VOLATILE)
    except GpError as exc:
        raise CardDataError(f"SE {ctx.se_id}: GET DATA FF21: {exc}") from None


def survey(ctx: StepContext) -> None:
    """Record which of our applets the SE holds before this job installs anything, and the
    free memory it reports. A provisioning whose applets, not yet on the SE, need more than
    the SE reports free (at least :data:`NVM_JPKI_AT_LEAST`, :data:`NVM_MDOC_AT_LEAST` per
    mdoc) stops here, before any credential is issued (:class:`SeMemoryError`)."""
    # both reads in one exchange (one poll over the air): they change nothing on the card, and
    # the registry read last is then reused by the installs
    s = ctx.session
    known = s.known_keys
    mem, status = s.send_many([get_data(resources.TAG), get_status(STATUS_APPS, False)],
                              ["GET DATA FF21", "GET STATUS applications"],
                              expect=(0x9000, 0x6A88, SW_MORE_DATA, SW_NOT_FOUND))
    s.known_keys = known
    free = free_memory(ctx, mem)
    reg = registry(ctx, first=status)
    jpki, mdoc = ap.JPKI.instance_aid in reg, ap.MDOC.instance_aid in reg
    ctx.results.update(jpki=jpki, mdoc=mdoc, nvm_free=free)
    if free is None or ctx.kind not in ("provision", "provision-mdoc"):
        return
    # what the job will add: the applets it installs (one already there is not counted, nor
    # what a resumed job already wrote into it)
    # one slot of two takes at least half of what both take (the applet's own share counted once)
    jpki_need = NVM_JPKI_AT_LEAST.get(ctx.input.get("algorithm", ""), 0) * len(jpki_slots(ctx)) // len(JPKI_SLOTS)
    need = (jpki_need if ctx.kind == "provision" and not jpki else 0) \
        + (NVM_MDOC_AT_LEAST * ctx.input.get("mdoc_count", 0) if not mdoc else 0)
    if need > free:
        raise SeMemoryError(f"SE {ctx.se_id} reports {free} bytes of free memory; this {ctx.kind} takes at "
                            f"least {need}: nothing was issued (free memory on the SE, or give the job up)",
                            0x6A84)


def _install(applet: ap.AppletRef) -> Callable[[StepContext], None]:
    def step(ctx: StepContext) -> None:
        before = ctx.results_of("survey")
        if before.get(applet.name):
            raise JobError(
                f"SE {ctx.se_id} already held a {applet.name} applet when this job started; "
                "run a delete-credentials job first")
        reg = registry(ctx, reuse=True)  # survey or the other install just read it
        if applet.instance_aid in reg:
            ctx.results.update(installed=False)
            return
        s = ctx.session
        known = s.known_keys
        s.send(install_for_install(applet.load_file_aid, applet.module_aid,
                                   applet.instance_aid),
               f"INSTALL [for install] {applet.name}")
        s.known_registry = {**reg, applet.instance_aid: APP_SELECTABLE}  # it answered 9000
        # a new instance (the card refuses an AID it holds), so with no key; the other
        # instances are untouched
        _know_keys(ctx, applet, known, frozenset())
        ctx.results.update(installed=True)

    return step


# --- JPKI ----------------------------------------------------------------------------------

def _generate_jpki(slot_name: str) -> Callable[[StepContext], None]:
    def step(ctx: StepContext) -> None:
        slot = ap.SLOTS[slot_name]
        alg = ctx.input["algorithm"]
        slots = key_slots(ctx, ap.JPKI)
        if slots is None or slot in slots:  # read what this session does not know
            st = jpki_state(ctx)
            if slot in st.keys:  # the instance is this job's own: any key in it is ours
                if st.keys[slot].algorithm != alg:
                    raise CardDataError(f"SE {ctx.se_id}: {slot_name} key is {st.keys[slot].algorithm}, not {alg}")
                ctx.results.update(generated=False, spki_sha256=st.keys[slot].spki_sha256.hex())
                return
            slots = frozenset(st.keys)
        known = ctx.session.known_keys
        data = personalise(ctx, ap.JPKI, ap.jpki_generate(slot, alg, ctx.rng(32)),
                           f"jpki GENERATE KEY {slot_name}")
        key = ap.parse_jpki_key(ap.answer_of(data, ap.JPKI_GENERATE, "JPKI GENERATE"))
        _know_keys(ctx, ap.JPKI, known, slots | {slot})
        ctx.results.update(generated=True, spki_sha256=_sha(key.spki))

    return step


def _issue_jpki(slot_name: str) -> Callable[[StepContext], None]:
    def step(ctx: StepContext) -> None:
        slot = ap.SLOTS[slot_name]
        challenge = ctx.issuer.jpki_challenge(ctx.job_ref, ctx.phone_id, slot_name)
        # READ STATE rides with PROVE: the write step after this one reads it from there
        data = personalise(ctx, ap.JPKI, ap.jpki_prove(slot, challenge), f"jpki PROVE KEY {slot_name}",
                           keeps_keys=True, read_state=True)
        key = ap.parse_jpki_key(ap.answer_of(data, ap.JPKI_PROVE, "JPKI PROVE"))
        cert, ca = ctx.issuer.issue_jpki_certificate(ctx.job_ref, ctx.phone_id, slot_name,
                                                     key.spki, key.proof)
        ctx.results.update(certificate=cert.hex(), ca=ca.hex(), certificate_sha256=_sha(cert))

    return step


def _write_jpki(slot_name: str) -> Callable[[StepContext], None]:
    def step(ctx: StepContext) -> None:
        issued = ctx.results_of(f"issue-{slot_name}-cert")
        cert, ca = bytes.fromhex(issued["certificate"]), bytes.fromhex(issued["ca"])
        ee_fid, ca_fid = ap.CERT_EFS[slot_name]
        st = jpki_state(ctx)
        stream = b""
        if st.certs.get(ee_fid) != hashlib.sha256(cert).digest():
            stream += ap.jpki_write_cert(ee_fid, cert)
        if st.certs.get(ca_fid) != hashlib.sha256(ca).digest():
            stream += ap.jpki_write_cert(ca_fid, ca)
        if stream:  # READ STATE after the writes: what set-pins reads (the secrets)
            personalise(ctx, ap.JPKI, stream, f"jpki WRITE CERT {slot_name}", keeps_keys=True, read_state=True)
        ctx.results.update(written=bool(stream))

    return step


def set_pins(ctx: StepContext) -> None:
    """Set the user-auth PIN, the signing password (when the job provisions the signing slot)
    and (if given) the PUK in one STORE DATA sequence (the applet commits a sequence all or
    nothing)."""
    st = jpki_state(ctx)
    sign = "sign" in jpki_slots(ctx)
    want = [ap.SLOT_AUTH] + ([ap.SLOT_SIGN] if sign else []) + ([ap.REF_PUK] if ctx.input.get("puk") else [])
    if all(st.secrets.get(r) and st.secrets[r].is_set for r in want):
        ctx.results.update(set=False)
        return
    sec = ctx.secrets
    if sec is None or (sign and sec.signing_password is None):
        raise SecretsRequiredError(f"job {ctx.job_id}: set-pins needs the PIN" + (" and password" if sign else ""))
    stream = ap.jpki_set_pin(ap.SLOT_AUTH, sec.user_auth_pin.encode("ascii"))
    if sign:  # a job without the signing slot leaves its password unset (no key to guard)
        stream += ap.jpki_set_pin(ap.SLOT_SIGN, sec.signing_password.encode("ascii"))
    if ap.REF_PUK in want:
        if not sec.puk:
            raise SecretsRequiredError(f"job {ctx.job_id}: set-pins needs the PUK")
        stream += ap.jpki_set_puk(sec.puk.encode("ascii"))
    personalise(ctx, ap.JPKI, stream, "jpki SET PINS", secret=True, keeps_keys=True)
    ctx.results.update(set=True)


def note_sign_key(ctx: StepContext) -> None:
    """``issue-sign``: the JPKI applet must be there (the phone provisioned); record the key
    the signing slot holds now (SHA-256 of its SPKI, or none), so that
    ``generate-sign-key-anew`` generates exactly once however often the job is retried."""
    if not ctx.results_of("survey").get("jpki"):
        raise JobError(f"SE {ctx.se_id} holds no JPKI applet: provision the phone first")
    key = jpki_state(ctx).keys.get(ap.SLOT_SIGN)
    ctx.results.update(spki_sha256=key.spki_sha256.hex() if key else None)


def note_jpki_keys(ctx: StepContext) -> None:
    """``renew-jpki``: the JPKI applet must be there (the phone provisioned); record the key
    each renewed slot holds now (SHA-256 of its SPKI, or none: the certificate's old key), so
    that each ``generate-<slot>-key-anew`` generates exactly once however often the job is
    retried."""
    if not ctx.results_of("survey").get("jpki"):
        raise JobError(f"SE {ctx.se_id} holds no JPKI applet: provision the phone first")
    keys = jpki_state(ctx).keys
    ctx.results.update(keys={name: (keys[ap.SLOTS[name]].spki_sha256.hex() if ap.SLOTS[name] in keys else None)
                             for name in ctx.input["slots"]})


def _noted_key(ctx: StepContext, slot_name: str) -> str | None:
    """The key the slot held before the job (``note-sign-key``'s, or ``note-jpki-keys``')."""
    if ctx.kind == "issue-sign":
        return ctx.results_of("note-sign-key").get("spki_sha256")
    return ctx.results_of("note-jpki-keys")["keys"].get(slot_name)


def _generate_anew(slot_name: str) -> Callable[[StepContext], None]:
    def step(ctx: StepContext) -> None:
        """``issue-sign`` / ``renew-jpki``: a new key in the slot, unless an interrupted try of
        this job made one already (the slot holds a key other than the one noted before). A
        key the slot held before the job (the renewed certificate's, a signing certificate
        revoked, or a key left by a stopped re-issue) is replaced: it is not the new
        certificate's. GENERATE KEY erases the slot's certificate and leaves the secrets as
        they are (specs/jpki-applet.md section 4): the holder's PIN and password stay."""
        slot = ap.SLOTS[slot_name]
        noted = _noted_key(ctx, slot_name)
        key = jpki_state(ctx).keys.get(slot)
        if key is not None and key.spki_sha256.hex() != noted:
            if key.algorithm != ctx.input["algorithm"]:
                raise CardDataError(f"SE {ctx.se_id}: {slot_name} key is {key.algorithm}, not {ctx.input['algorithm']}")
            ctx.results.update(generated=False, spki_sha256=key.spki_sha256.hex())
            return
        known = ctx.session.known_keys
        data = personalise(ctx, ap.JPKI, ap.jpki_generate(slot, ctx.input["algorithm"], ctx.rng(32)),
                           f"jpki GENERATE KEY {slot_name}")
        new = ap.parse_jpki_key(ap.answer_of(data, ap.JPKI_GENERATE, "JPKI GENERATE"))
        before = known.get(ap.JPKI.instance_aid)
        _know_keys(ctx, ap.JPKI, known, None if before is None else before | {slot})
        ctx.results.update(generated=True, spki_sha256=_sha(new.spki))

    return step


def read_jpki_state(ctx: StepContext) -> None:
    """``read-jpki``: what the JPKI applet holds, recorded, nothing changed (READ STATE only):
    per slot the key's algorithm and the SHA-256 of its SubjectPublicKeyInfo (none: no key),
    the SHA-256 of the certificate in its EF (none: none written) and whether its secret
    (PIN, password) is set; ``jpki`` false when the applet is not installed. Public values
    only (digests and flags). What an abandon compares with the registry, to know whether a
    step that may have run changed the slot (specs/tsm.md "Abandoning a job")."""
    if not registry(ctx).get(ap.JPKI.instance_aid):
        ctx.results.update(jpki=False, slots={})
        return
    st = jpki_state(ctx)
    slots = {}
    for name, slot in ap.SLOTS.items():
        key, cert, secret = st.keys.get(slot), st.certs.get(ap.CERT_EFS[name][0]), st.secrets.get(slot)
        slots[name] = {"algorithm": key.algorithm if key else None,
                       "spki_sha256": key.spki_sha256.hex() if key else None,
                       "certificate_sha256": cert.hex() if cert else None,
                       "secret_set": bool(secret and secret.is_set)}
    ctx.results.update(jpki=True, slots=slots)


def set_sign_password(ctx: StepContext) -> None:
    """``issue-sign``: the signing password set from the sealed value, with a fresh retry
    counter (one STORE DATA; a re-run sets the same value again)."""
    sec = ctx.secrets
    if sec is None or sec.signing_password is None:
        raise SecretsRequiredError(f"job {ctx.job_id}: set-sign-password needs the password")
    personalise(ctx, ap.JPKI, ap.jpki_set_pin(ap.SLOT_SIGN, sec.signing_password.encode("ascii")),
                "jpki SET PIN sign", secret=True, keeps_keys=True)
    ctx.results.update(set=True)


def reset_secrets(ctx: StepContext) -> None:
    """An issuer's reset of the holder's secrets (the counter, after the holder proved who
    they are): the secrets the job names (``slots``, and the PUK when ``puk``) set anew with
    fresh retry counters, in one STORE DATA sequence; the others are left as they are, and
    so are the keys and certificates. Run again, it sets the same values again."""
    sec = ctx.secrets
    if sec is None:
        raise SecretsRequiredError(f"job {ctx.job_id}: reset-secrets needs the new secrets")
    if not registry(ctx).get(ap.JPKI.instance_aid):
        raise JobError(f"SE {ctx.se_id} holds no JPKI applet: there is nothing to reset (provision it)")
    if "sign" in ctx.input["slots"] and sec.signing_password is None:
        raise SecretsRequiredError(f"job {ctx.job_id}: reset-secrets needs the new signing password")
    values = {"auth": (ap.SLOT_AUTH, sec.user_auth_pin), "sign": (ap.SLOT_SIGN, sec.signing_password or "")}
    stream = b"".join(ap.jpki_set_pin(values[s][0], values[s][1].encode("ascii")) for s in ctx.input["slots"])
    if ctx.input.get("puk"):
        if not sec.puk:
            raise SecretsRequiredError(f"job {ctx.job_id}: reset-secrets needs the PUK")
        stream += ap.jpki_set_puk(sec.puk.encode("ascii"))
    personalise(ctx, ap.JPKI, stream, "jpki SET PINS (reset)", secret=True, keeps_keys=True)
    ctx.results.update(reset=list(ctx.input["slots"]) + (["puk"] if ctx.input.get("puk") else []))


# --- mdoc ----------------------------------------------------------------------------------

def generate_device_keys(ctx: StepContext) -> None:
    """One P-256 device key per credential slot 0..N-1, in one atomic record."""
    n = ctx.input["mdoc_count"]
    slots = key_slots(ctx, ap.MDOC)
    if slots is None:
        slots = frozenset(mdoc_state(ctx))
    missing = [i for i in range(n) if i not in slots]
    _generate_keys(ctx, missing, f"mdoc GENERATE KEYS x{len(missing)}")
    ctx.results.update(generated=len(missing))


def _generate_keys(ctx: StepContext, slots: list[int], what: str) -> None:
    """A new device key in each of ``slots`` (one atomic GENERATE record; none if empty)."""
    if not slots:
        return
    known = ctx.session.known_keys
    data = personalise(ctx, ap.MDOC, ap.mdoc_generate(slots, ctx.rng(32)), what)
    got = ap.parse_mdoc_keys(ap.answer_of(data, ap.MDOC_GENERATE, "mdoc GENERATE"))
    if sorted(k.slot for k in got) != slots:
        raise CardDataError(f"SE {ctx.se_id}: mdoc GENERATE answered other slots")
    before = known.get(ap.MDOC.instance_aid)
    _know_keys(ctx, ap.MDOC, known, None if before is None else before | set(slots))


def note_device_keys(ctx: StepContext) -> None:
    """``refresh-mdoc``: the mdoc applet must be there; record which device key each slot
    0..N-1 holds now (SHA-256 of its SPKI), so that ``rotate-device-keys`` regenerates each
    slot exactly once, however often the job is retried."""
    if not ctx.results_of("survey").get("mdoc"):
        raise JobError(f"SE {ctx.se_id} holds no mdoc applet: nothing to refresh; provision first")
    st = mdoc_state(ctx)
    ctx.results.update(keys={str(i): st[i].spki_sha256.hex() for i in range(ctx.input["mdoc_count"])
                             if i in st})


def rotate_device_keys(ctx: StepContext) -> None:
    """``refresh-mdoc``: a fresh P-256 device key in every slot 0..N-1 that still holds the key
    noted before (or none), unless the job keeps the keys. Regenerating erases the slot's
    old credential; a slot already regenerated by an interrupted try is left alone."""
    n = ctx.input["mdoc_count"]
    noted = ctx.results_of("note-device-keys")["keys"]
    st = mdoc_state(ctx)
    rotate = ctx.input.get("rotate", True)
    stale = [i for i in range(n) if i not in st
             or (rotate and st[i].spki_sha256.hex() == noted.get(str(i)))]
    _generate_keys(ctx, stale, f"mdoc GENERATE KEYS x{len(stale)} (refresh)")
    # rotating, every slot 0..N-1 ends with a key this job made (now or in an interrupted try)
    ctx.results.update(generated=n if rotate else len(stale))


def issue_mdoc(ctx: StepContext) -> None:
    n = ctx.input["mdoc_count"]
    stream = b""
    for i in range(n):
        stream += ap.mdoc_prove(i, ctx.issuer.mdoc_challenge(ctx.job_ref, ctx.phone_id, i))
    # READ STATE rides with PROVE: write-mdoc reads it from there
    data = personalise(ctx, ap.MDOC, stream, f"mdoc PROVE KEYS x{n}", keeps_keys=True, read_state=True)
    proofs: dict[int, ap.KeyProof] = {}
    for tag, value in ap.parse_dgis(data):
        if tag != ap.MDOC_PROVE:
            raise CardDataError(f"SE {ctx.se_id}: mdoc PROVE answered DGI {tag:04X}")
        for kp in ap.parse_mdoc_keys(value):
            proofs[kp.slot] = kp
    if sorted(proofs) != list(range(n)):
        raise CardDataError(f"SE {ctx.se_id}: mdoc PROVE answered slots {sorted(proofs)}")
    creds = {}
    for i in range(n):
        kp = proofs[i]
        creds[str(i)] = ctx.issuer.issue_mdoc(ctx.job_ref, ctx.phone_id, i, kp.spki, kp.proof).hex()
    ctx.results.update(issuer_signed=creds)


def write_mdoc(ctx: StepContext) -> None:
    creds = {int(k): bytes.fromhex(v) for k, v in ctx.results_of("issue-mdoc")["issuer_signed"].items()}
    st = mdoc_state(ctx)
    written = 0
    for i, cred in sorted(creds.items()):
        if i in st and st[i].credential_sha256 == hashlib.sha256(cred).digest():
            continue
        personalise(ctx, ap.MDOC, ap.mdoc_write(i, cred), f"mdoc WRITE CREDENTIAL {i}",
                    keeps_keys=True)
        written += 1
    ctx.results.update(written=written)


# --- deletion ------------------------------------------------------------------------------

def _delete(applet: ap.AppletRef) -> Callable[[StepContext], None]:
    def step(ctx: StepContext) -> None:
        if applet.instance_aid not in registry(ctx):
            ctx.results.update(deleted=False)
            return
        r = ctx.session.send(delete(applet.instance_aid), f"DELETE {applet.name}",
                             expect=(0x9000, SW_NOT_FOUND, SW_IN_USE))
        if r.sw == SW_IN_USE:  # an instance AID is never the ISD's nor a load file's: in use
            aid = applet.instance_aid.hex().upper()
            raise SeApplicationInUseError(
                f"SE {ctx.se_id}: DELETE {applet.name} refused, the {applet.name} applet ({aid}) is selected "
                "on a logical channel of the SE (an app on the phone holds it open); nothing was deleted "
                "by this command: close that channel on the phone, then run the job again",
                r.sw, applet.instance_aid)
        ctx.results.update(deleted=r.sw == 0x9000)

    return step


def done(ctx: StepContext) -> None:
    """Final check: the applets the job put on the SE are there (GET STATUS)."""
    if ctx.kind in ("provision", "provision-mdoc", "refresh-mdoc", "issue-sign", "renew-jpki"):
        reg = registry(ctx)
        want = ([ap.JPKI] if ctx.kind in ("provision", "issue-sign", "renew-jpki") else []) + (
            [ap.MDOC] if ctx.input.get("mdoc_count") else [])
        for a in want:
            if a.instance_aid not in reg:
                raise CardStatusError(f"SE {ctx.se_id}: {a.name} applet missing at the end", 0x6A88)


STEPS: dict[str, Callable[[StepContext], None]] = {
    "open-session": open_session,
    "rotate-keys": rotate_keys,
    "check-keys": check_keys,
    "replace-kloc": replace_kloc,
    "survey": survey,
    "install-jpki": _install(ap.JPKI),
    "generate-sign-key": _generate_jpki("sign"),
    "issue-sign-cert": _issue_jpki("sign"),
    "write-sign-cert": _write_jpki("sign"),
    "generate-auth-key": _generate_jpki("auth"),
    "issue-auth-cert": _issue_jpki("auth"),
    "write-auth-cert": _write_jpki("auth"),
    "set-pins": set_pins,
    "reset-secrets": reset_secrets,
    "note-sign-key": note_sign_key,
    "note-jpki-keys": note_jpki_keys,
    "generate-sign-key-anew": _generate_anew("sign"),
    "generate-auth-key-anew": _generate_anew("auth"),
    "set-sign-password": set_sign_password,
    "read-jpki-state": read_jpki_state,
    "install-mdoc": _install(ap.MDOC),
    "generate-device-keys": generate_device_keys,
    "note-device-keys": note_device_keys,
    "rotate-device-keys": rotate_device_keys,
    "issue-mdoc": issue_mdoc,
    "write-mdoc": write_mdoc,
    "delete-jpki": _delete(ap.JPKI),
    "delete-mdoc": _delete(ap.MDOC),
    "done": done,
}

#: The JPKI slots a provisioning may write (input ``jpki_slots``), in the order it writes them
JPKI_SLOTS = ("sign", "auth")
JPKI_STEPS = ["install-jpki", "generate-sign-key", "issue-sign-cert", "write-sign-cert",
              "generate-auth-key", "issue-auth-cert", "write-auth-cert", "set-pins"]


def jpki_steps(slots: list[str] | tuple[str, ...]) -> list[str]:
    """The JPKI steps of a provisioning of ``slots`` (a holder under 15: auth only, the
    signing slot left empty and its password unset)."""
    return [s for s in JPKI_STEPS if not any(s.endswith(f"-{x}-key") or s.endswith(f"-{x}-cert")
                                             for x in JPKI_SLOTS if x not in slots)]


def jpki_slots(ctx: StepContext) -> list[str]:
    """The JPKI slots the job provisions (a job recorded before the input: both)."""
    return list(ctx.input.get("jpki_slots", JPKI_SLOTS))
MDOC_STEPS = ["install-mdoc", "generate-device-keys", "issue-mdoc", "write-mdoc"]
PREAMBLE = ["open-session", "rotate-keys", "check-keys"]


def script(kind: str, job_input: dict) -> list[str]:
    """The ordered step ids of a job of ``kind``."""
    if kind == "provision":
        mdoc = MDOC_STEPS if job_input.get("mdoc_count") else []
        return PREAMBLE + ["survey"] + jpki_steps(job_input.get("jpki_slots", JPKI_SLOTS)) + mdoc + ["done"]
    if kind == "provision-mdoc":
        return PREAMBLE + ["survey"] + MDOC_STEPS + ["done"]
    if kind == "refresh-mdoc":
        return PREAMBLE + ["survey", "note-device-keys", "rotate-device-keys", "issue-mdoc",
                           "write-mdoc", "done"]
    if kind == "delete-credentials":
        return PREAMBLE + ["delete-jpki", "delete-mdoc", "done"]
    if kind == "rotate-keys":
        return PREAMBLE + ["done"]
    if kind == "rotate-kloc":
        return PREAMBLE + ["replace-kloc", "done"]
    if kind == "reset-secrets":
        return PREAMBLE + ["reset-secrets", "done"]
    if kind == "issue-sign":
        return PREAMBLE + ["survey", "note-sign-key", "generate-sign-key-anew", "issue-sign-cert",
                           "write-sign-cert", "set-sign-password", "done"]
    if kind == "read-jpki":  # reads, changes nothing: what a JPKI slot holds (an abandon's check)
        return PREAMBLE + ["read-jpki-state", "done"]
    if kind == "renew-jpki":  # no secret set: the holder's PIN and password stay as they are
        slots = [x for x in JPKI_SLOTS if x in job_input.get("slots", JPKI_SLOTS)]
        return PREAMBLE + ["survey", "note-jpki-keys"] + [
            step for x in slots for step in (f"generate-{x}-key-anew", f"issue-{x}-cert", f"write-{x}-cert")] + ["done"]
    raise JobError(f"unknown job kind {kind!r}")
