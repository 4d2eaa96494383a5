"""The issuer service's resources as its OpenAPI document declares them: documentation only.

The routes of :mod:`mcred.api_routes` build their bodies as dicts and send them as built
(``response_model=Any``: nothing is filtered, reordered or re-encoded); these models, given
as ``responses={200: {"model": ...}}``, name their members, so that a client generated from
the document reads typed phones, holders, credentials, workflows, jobs (one schema per kind,
:class:`Job`) and audit events, and the schema-driven fuzz (tests/test_api_fuzz.py) checks
every body it gets against them. Closed
(``additionalProperties: false``) where the route builds every member itself; the free-form
parts (a holder's registered data, a workflow's or an audit event's detail, the SE's
description) stay objects.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import SkipJsonSchema

from issuer.api.jobs import JobBody

_DATE_TIME = {"format": "date-time"}
#: The TSM's job kinds (tsm.jobs.KINDS) and states, written out (a test holds them to the TSM's)
TsmKind = Literal["provision", "provision-mdoc", "refresh-mdoc", "delete-credentials", "rotate-keys",
                  "reset-secrets", "rotate-kloc", "issue-sign", "renew-jpki", "read-jpki"]
TsmState = Literal["pending", "running", "interrupted", "done", "abandoned"]
KeyType = Literal["rsa2048", "p384"]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Page(_Closed):
    limit: int
    offset: int


# -- phones ------------------------------------------------------------------------------


class PhoneCreated(_Closed):
    id: str
    model: str
    nvm_bytes: int


class PhoneList(_Page):
    phones: list[str] = Field(description="the phones' ids, sorted")


class PhoneDetail(_Closed):
    id: str
    model: str
    app_data_files: list[str] = Field(description="the wallet app's files, relative to its data directory")
    secure_element: dict[str, Any] = Field(description="CPLC, security domains, applets")


class PhoneReset(_Closed):
    id: str
    reset: Literal[True]
    secure_element: Literal["untouched"]


# -- holders -----------------------------------------------------------------------------


class HolderPhone(_Closed):
    id: str
    state: str


class HolderSummary(_Closed):
    id: str
    name: str = Field(description="family and given name, or (erased)")
    erased: bool
    card_number: str
    card_expiry: str = Field(json_schema_extra={"format": "date"})
    registered_at: str = Field(json_schema_extra=_DATE_TIME)
    phones: list[HolderPhone]
    credentials: dict[str, int] = Field(description="how many credentials by kind:status (jpki-sign:valid, ...)")
    live: int = Field(description="credentials valid or on hold")


class RenewalNeeded(_Closed):
    """A JPKI slot an abandoned renewal left without a usable certificate."""

    phone: str
    slot: Literal["sign", "auth"]
    job: str = Field(description="the renew-jpki TSM job that was abandoned")


class SignIssueNeeded(_Closed):
    """A phone an abandoned issue-sign left without a signing certificate."""

    phone: str
    job: str = Field(description="the issue-sign TSM job that was abandoned")


class HolderDetail(HolderSummary):
    data: dict[str, Any] = Field(description="the registered card-substitute data, without the portrait")
    signing_certificate_from: str | None = Field(json_schema_extra={"format": "date"}, description=(
        "the first day a signing certificate may be issued to the holder (the 15th birthday: none is issued "
        "under 15); null when the birth date is not known (erased)"))
    renewal_needed: list[RenewalNeeded] = Field(description=(
        "the slots of the holder's active phones that an abandoned certificate renewal (POST "
        "/tsm-jobs/{id}/abandon of a renew-jpki job) left without a usable certificate: POST "
        "/certificate-renewals renews each, whatever its old certificate's expiry"))
    sign_issue_needed: list[SignIssueNeeded] = Field(description=(
        "the holder's active phones that an abandoned first signing-certificate issuance (POST "
        "/tsm-jobs/{id}/abandon of an issue-sign job) left without a signing certificate: POST "
        "/sign-issuances (mcred jpki issue-sign) issues one again"))


class HolderList(_Page):
    holders: list[HolderSummary]


# -- credentials and their status changes ------------------------------------------------


class CredentialOut(_Closed):
    """A credential's metadata (never its body)."""

    model_config = ConfigDict(title="Credential")

    id: str
    holder_id: str
    phone_id: str
    kind: Literal["jpki-sign", "jpki-auth", "mdoc"]
    status: Literal["valid", "hold", "revoked"]
    reason: str | None
    revoked_at: str | None = Field(json_schema_extra=_DATE_TIME)
    invalid_since: str | None = Field(
        json_schema_extra=_DATE_TIME,
        description="of a credential revoked for good while it was on hold: when the hold began, since when "
        "it is known to have been out of the holder's control (a JPKI certificate's CRL entry and OCSP answer "
        "carry it as invalidityDate, RFC 5280 5.3.2); null otherwise")
    issued_at: str = Field(json_schema_extra=_DATE_TIME)
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    serial: str | None = Field(description="a certificate's serial (JPKI)")
    issuer_key: str
    partition: str | None = Field(description="the CRL partition (JPKI)")
    status_list_id: str | None = Field(description="the status list (mdoc)")
    status_idx: int | None
    job_ref: str | None
    renewal_needed: bool = Field(description=(
        "a JPKI certificate revoked with an abandoned certificate renewal whose slot is still to be renewed: the "
        "slot's newest certificate, on an active phone, the holder left without a usable one (POST "
        "/certificate-renewals renews it, whatever its old expiry; specs/tsm.md \"Abandoning a job\"); false "
        "otherwise, and once a newer certificate is issued to the slot"))
    sign_issue_needed: bool = Field(description=(
        "a signing certificate revoked with an abandoned issue-sign (the holder's first, at 15) whose phone is "
        "still to be issued one: the slot's newest certificate, on an active phone (POST /sign-issuances, mcred "
        "jpki issue-sign, issues it; specs/tsm.md \"Abandoning a job\"); false otherwise, and once a newer "
        "signing certificate is issued to the phone"))


class CredentialList(_Page):
    credentials: list[CredentialOut]


class StatusChange(_Closed):
    credential_id: str
    kind: str
    serial: str | None
    before: str = Field(description="the status before: valid, hold, revoked")
    after: str
    reason: str | None
    amended_from: str | None = Field(
        None, description="a credential revoked already whose revocation this call amended (keyCompromise "
        "replacing another reason, or an earlier invalidity date): the reason it had")


class StatusChanges(_Closed):
    """What a revocation, hold or release did: one entry per credential whose status changed."""

    changes: list[StatusChange]


# -- workflows, TSM jobs, audit ----------------------------------------------------------


class HandoverRunner(_Closed):
    runner: str = Field(description="who runs it: the actor, host, process and run id")
    since: str | None = Field(json_schema_extra=_DATE_TIME)
    until: str = Field(description="its lease ends then unless that run renews it", json_schema_extra=_DATE_TIME)


class HandoverOut(_Closed):
    model_config = ConfigDict(title="Handover")

    id: str
    kind: str
    holder_id: str
    old_phone_id: str | None
    new_phone_id: str | None
    reason: str | None
    step: str
    state: str
    detail: dict[str, Any]
    created_at: str = Field(json_schema_extra=_DATE_TIME)
    updated_at: str = Field(json_schema_extra=_DATE_TIME)
    runner: HandoverRunner | None = Field(description="the run that holds the workflow while its lease "
                                          "lasts (specs/handover.md \"One run at a time\"); null when none does")


class HandoverList(_Page):
    handovers: list[HandoverOut]


class TsmJob(_Closed):
    id: str
    phone_id: str
    kind: TsmKind
    state: TsmState
    next_step: str | None = Field(description="the step it stopped before; null once all ran")
    steps_done: int
    steps: int
    attempts: int
    actor: str
    error: str | None
    created_at: str | None = Field(json_schema_extra=_DATE_TIME, description="when it was made (UTC)")
    updated_at: str | None = Field(json_schema_extra=_DATE_TIME,
                                   description="when it last moved: a step done, a failure, a run started (UTC)")


class TsmJobList(_Page):
    jobs: list[TsmJob]


# -- jobs: one schema per kind, a union on ``kind`` -------------------------------------------
#
# GET /jobs/{id} answers any kind of job, so its schema is :class:`Job`, a union of one schema
# per kind discriminated by ``kind`` (OpenAPI ``oneOf`` + ``discriminator``): a client generated
# from the document reads a provisioning's result as a ProvisionJobResult, a drill's as a
# DrillReport, by the kind it got, and each route that makes a job declares its 202 as that
# kind's schema alone. Each kind's ``params`` and ``result`` are closed: the work functions and
# routes of mcred.api_routes build every member, and a secret (PIN, password, PUK) cannot be
# one of them unnoticed. ``params`` members a later version added carry the default an older
# job had in effect (``over_the_air`` false), so a job recorded before them is still one the
# document declares.

_OVER_THE_AIR = "the phone was reached through its GP SERAM Local Agent (specs/tsm.md \"Over the air\")"


class SeramSession(_Closed):
    """The GP SERAM session a phone's Local Agent is to join (a job made over the air)."""

    session: str
    endpoint: str
    wait_s: float


class _OverTheAir(JobBody):
    seram: SeramSession | SkipJsonSchema[None] = Field(
        None, description="in the 202 answer of a job made over the air only: the session the phone is to join")


class CertificateFacts(_Closed):
    serial: str = Field(pattern="^[0-9a-f]+$", description="hexadecimal")
    subject: str = Field(description="RFC 4514")
    not_after: str = Field(json_schema_extra=_DATE_TIME)


class ProvisionJobParams(_Closed):
    phone_id: str
    holder_id: str | None = Field(description="the registered holder provisioned; null for a holder given inline")
    holder: Literal["inline"] | None = Field(description="inline: the holder record was in the request "
                                             "(never stored here); null with holder_id")
    key_type: KeyType
    mdoc_batch: int
    over_the_air: bool = Field(False, description=_OVER_THE_AIR)


class ProvisionJobResult(_Closed):
    """What a provisioning issued (never a secret)."""

    phone_id: str
    holder_id: str
    tsm_job_id: str = Field(description="the TSM's job that wrote the SE (GET /tsm-jobs)")
    key_type: KeyType
    mdocs: int = Field(description="how many mdocs (MSOs) it wrote")
    seconds: float
    sign_certificate: CertificateFacts | None = Field(description=(
        "null: no signing certificate was issued (a holder under 15 gets none; the SE's signing slot is "
        "left empty and its password unset: the request gave none, POST /sign-issuances adds both from the "
        "holder's 15th birthday)"))
    auth_certificate: CertificateFacts
    sign_withheld: str | None = Field(None, description="why no signing certificate was issued, with "
                                      "sign_certificate null")


class ProvisionJob(_OverTheAir):
    """POST /provisioning: both credentials into a phone."""

    kind: Literal["provision"]
    params: ProvisionJobParams
    result: ProvisionJobResult | None


class PinResetJobParams(_Closed):
    phone_id: str
    slots: list[Literal["auth", "sign"]] = Field(description="auth: the user-auth PIN; sign: the signing password")
    puk: bool = Field(description="whether the PUK was reset too (its value is never stored)")
    over_the_air: bool = Field(False, description=_OVER_THE_AIR)


class PinResetJobResult(_Closed):
    """What a reset of the holder's secrets set (never the values)."""

    phone: str
    job: str = Field(description="the TSM's reset-secrets job")
    reset: list[Literal["auth", "sign", "puk"]]


class PinResetJob(_OverTheAir):
    """POST /pin-resets: new JPKI secrets on the phone."""

    kind: Literal["pin-reset"]
    params: PinResetJobParams
    result: PinResetJobResult | None


class IssuedMdoc(_Closed):
    credential: str
    slot: int
    valid_until: str = Field(json_schema_extra=_DATE_TIME)


class MdocRefreshJobParams(_Closed):
    phone_id: str
    mdoc_batch: int | None = Field(description="the slots asked for; null: every slot holding a valid mdoc")
    keep_keys: bool
    actor: str
    over_the_air: bool = Field(False, description=_OVER_THE_AIR)


class MdocRefreshJobResult(_Closed):
    """What an MSO refresh put into the phone."""

    phone: str
    job: str = Field(description="the TSM's refresh-mdoc job")
    resumed: bool = Field(description="it finished a refresh of the phone that had stopped")
    rotated_keys: int = Field(description="slots whose device key was generated anew (0: kept)")
    issued: list[IssuedMdoc]
    superseded: list[str] = Field(description="the credentials of the MSOs replaced (revoked, superseded)")
    seconds: float


class MdocRefreshJob(_OverTheAir):
    """POST /mdoc-refreshes: fresh MSOs into a provisioned phone."""

    kind: Literal["mdoc-refresh"]
    params: MdocRefreshJobParams
    result: MdocRefreshJobResult | None


class IssueSignJobParams(_Closed):
    phone_id: str
    over_the_air: bool = Field(False, description=_OVER_THE_AIR)


class IssueSignJobResult(_Closed):
    """What an issue-sign job put into the phone: the signing certificate (never the password)."""

    phone_id: str
    holder_id: str
    tsm_job_id: str = Field(description="the TSM's issue-sign job that wrote the SE (GET /tsm-jobs)")
    resumed: bool = Field(description="it finished an issue-sign job of the phone that had stopped")
    sign_certificate: CertificateFacts
    seconds: float


class IssueSignJob(_OverTheAir):
    """POST /sign-issuances: a signing certificate, its key and password onto the provisioned
    phone of a holder who has turned 15."""

    kind: Literal["issue-sign"]
    params: IssueSignJobParams
    result: IssueSignJobResult | None


class RenewJobParams(_Closed):
    phone_id: str
    slot: Literal["auth", "sign", "both"] = Field(description="the certificates asked for; both: what the phone "
                                                  "holds (a holder under 15's phone: the user-authentication one)")
    early: bool = Field(description="renewed before the window (3 months before the expiry): an operator's drill")
    reason: str | None = Field(description="why, for an early renewal (audited); null otherwise")
    over_the_air: bool = Field(False, description=_OVER_THE_AIR)


class RenewedCertificate(_Closed):
    slot: Literal["sign", "auth"]
    old_serial: str | None = Field(pattern="^[0-9a-f]+$", description="the certificate it replaced (revoked, "
                                   "superseded), hexadecimal")
    serial: str = Field(pattern="^[0-9a-f]+$", description="hexadecimal")
    subject: str = Field(description="RFC 4514")
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME)


class RenewJobResult(_Closed):
    """What a renew-jpki job put into the phone: the new certificates and the serials they
    replaced (the PIN and password are the holder's, unchanged: none is ever set or returned)."""

    phone_id: str
    holder_id: str
    tsm_job_id: str = Field(description="the TSM's renew-jpki job that wrote the SE (GET /tsm-jobs)")
    resumed: bool = Field(description="it finished a renew-jpki job of the phone that had stopped")
    renewed: list[RenewedCertificate]
    sign_withheld: str | None = Field(description="why no signing certificate was renewed (a holder under 15, "
                                      "none on the phone); null when one was, or the phone holds one")
    seconds: float


class RenewJob(_OverTheAir):
    """POST /certificate-renewals: the phone's JPKI certificates renewed (電子証明書の更新), new keys in
    its SE, the old certificates superseded."""

    kind: Literal["renew-jpki"]
    params: RenewJobParams
    result: RenewJobResult | None


class TsmResumeJobParams(_Closed):
    tsm_job_id: str
    kind: Literal["provision", "refresh-mdoc", "reset-secrets", "issue-sign", "renew-jpki"] = Field(
        description="the TSM job's kind: which result the job gives")
    phone_id: str
    over_the_air: bool = Field(False, description=_OVER_THE_AIR)


class TsmResumeJob(_OverTheAir):
    """POST /tsm-jobs/{id}/resume: a stopped TSM job finished; its result is the one of the job
    it finishes (params.kind): provision a ProvisionJobResult, refresh-mdoc an
    MdocRefreshJobResult, reset-secrets a PinResetJobResult, issue-sign an IssueSignJobResult,
    renew-jpki a RenewJobResult."""

    kind: Literal["tsm-resume"]
    params: TsmResumeJobParams
    result: (ProvisionJobResult | MdocRefreshJobResult | PinResetJobResult | IssueSignJobResult | RenewJobResult
             | None)


class RevokedCredential(_Closed):
    credential: str
    kind: Literal["jpki-sign", "jpki-auth", "mdoc"]


class TsmAbandonJobParams(_Closed):
    tsm_job_id: str
    phone_id: str
    reason: str
    actor: str
    over_the_air: Literal[True]


class SlotCheckOut(_Closed):
    """What an abandon found in the phone's JPKI slots where the job stopped at a step that may have run."""

    job: str | None = Field(description="the read-jpki TSM job that read the slots (null: the phone not reachable "
                            "from this installation, nothing made)")
    slots: dict[Literal["sign", "auth"], Literal["unchanged", "written", "password_unset", "replaced", "unknown"]] = (
        Field(description=(
            "per slot checked: unchanged (the certificate from before the job and its key, still live: it stays "
            "valid), written (the job's new certificate and its key, and for an issue-sign the signing password set: "
            "it stays valid), password_unset (an issue-sign's certificate and key with no password: revoked), "
            "replaced (a key with no certificate of its own: the slot's live certificate is revoked), unknown (not "
            "read: taken as replaced)")))
    error: str | None = Field(description="why the SE could not be read, or null")


class TsmJobAbandoned(_Closed):
    """What abandoning a TSM job undid (POST /tsm-jobs/{id}/abandon, at once or as a job)."""

    job: str = Field(description="the TSM job abandoned")
    phone: str
    kind: TsmKind
    revoked: list[RevokedCredential] = Field(description=(
        "what it had issued that was live (cessationOfOperation); of a certificate renewal, the live certificates of "
        "the slots in renewal_needed only (a slot whose new certificate was written, or whose old key and "
        "certificate the SE still holds, keeps it: se_check)"))
    wipe_job: str | None = Field(description="the TSM's delete-credentials job that wipes the SE (a provisioning)")
    wiped: bool
    wipe_error: str | None = Field(description="why the SE was not wiped")
    released_holder: str | None = Field(description="the holder the phone was let go of")
    renewal_needed: list[Literal["sign", "auth"]] = Field(description=(
        "a certificate renewal's (renew-jpki) slots it left without a usable certificate: its GENERATE KEY ran "
        "(or may have run) and the new certificate's write is not recorded; their live certificate (the new one, "
        "never installed, or else the old one, whose key was replaced) is among revoked. POST "
        "/certificate-renewals renews them, whatever the old expiry; empty for any other job"))
    se_check: SlotCheckOut | None = Field(description=(
        "a JPKI job stopped at a step that may have run (its command sent, the answer lost): what the phone's SE "
        "was found to hold (a read-jpki TSM job reads each slot's key and certificate digests over a new session), "
        "which decided what was revoked; null when nothing needed reading (specs/tsm.md \"Abandoning a job\")"))
    sign_issue_needed: bool = Field(description=(
        "an issue-sign job left the phone with no live signing certificate (none issued, or the one issued revoked: "
        "never installed, or installed with no password the holder knows): POST /sign-issuances issues one again; "
        "false when its certificate is in use, and for any other job"))


class TsmAbandonJob(_OverTheAir):
    """POST /tsm-jobs/{id}/abandon with over_the_air: the provisioning's SE wiped through the
    phone's Local Agent."""

    kind: Literal["tsm-abandon"]
    params: TsmAbandonJobParams
    result: TsmJobAbandoned | None


class KlocMoveJobParams(_Closed):
    phone_id: str
    over_the_air: bool = Field(False, description=_OVER_THE_AIR)
    check: bool = Field(False, description="only read which CA the SE names")


class KlocMoveJobResult(_Closed):
    """What a rotate-kloc job found and did."""

    phone: str
    job: str = Field(description="the TSM's rotate-kloc job")
    kloc: Literal["replaced", "current", "stale", "none"] = Field(
        description="replaced; current: there already; stale: a check found another CA; none: the SE's "
                    "issuer named no OCE")
    old_ca_ski: str | None = Field(pattern="^[0-9a-f]*$")
    ca_ski: str | None = Field(pattern="^[0-9a-f]*$")


class KlocMoveJob(_OverTheAir):
    """POST /kloc-moves: a phone's SE moved to the TSM's current KLOC CA."""

    kind: Literal["kloc-move"]
    params: KlocMoveJobParams
    result: KlocMoveJobResult | None


class HandoverJobParams(_Closed):
    handover_id: str
    over_the_air: bool = Field(False, description="the new phone was reached through its GP SERAM Local Agent")
    wipe_over_the_air: bool = Field(False, description="the old phone was wiped through its own Local Agent")


class HandoverJobResult(_Closed):
    handover_id: str
    step: str
    state: str = Field(description="the workflow's state: done, or where it stopped")
    new_phones_with_generated_secrets: list[str] = Field(
        description="phones provisioned with secrets nobody was shown (POST /pin-resets sets new ones)")


class HandoverJob(_OverTheAir):
    """POST /handovers/{id}/run, POST /holders/{id}/changes: a workflow's remaining steps."""

    kind: Literal["handover"]
    params: HandoverJobParams
    result: HandoverJobResult | None
    seram_old: SeramSession | SkipJsonSchema[None] = Field(
        None, description="in the 202 answer of a run with wipe_over_the_air only: the old phone's session")


class CardRenewalJobParams(_Closed):
    handover_id: str
    phone_id: str
    key_type: KeyType
    mdoc_batch: int


class CardRenewalJobResult(_Closed):
    handover_id: str
    step: str
    state: str


class CardRenewalJob(JobBody):
    """POST /holders/{id}/card-renewals: the renewal workflow, with the secrets the request gave."""

    kind: Literal["card-renewal"]
    params: CardRenewalJobParams
    result: CardRenewalJobResult | None


class DrillJobParams(_Closed):
    scenario: str
    phones: int


class DrillStep(_Closed):
    name: str
    seconds: float
    started: str = Field(json_schema_extra=_DATE_TIME)


class DrillSubject(_Closed):
    phone: str
    new_phone: str | None
    steps: list[DrillStep]
    reader_propagation_s: float | None
    ocsp_propagation_s: float | None
    watch_propagation_s: float | None
    se_propagation_s: float | None
    reader_reason: str
    ocsp_reason: str
    watch_reason: str
    se_reason: str
    final: dict[str, Any] = Field(description="what each party said at the end")


class PropagationStats(_Closed):
    min: float
    median: float
    max: float
    p95: float


class DrillPropagation(_Closed):
    """Seconds from the revocation to the first refusal, over the subjects (null: none measured)."""

    reader: PropagationStats | None
    ocsp: PropagationStats | None
    watch: PropagationStats | None
    se: PropagationStats | None


class DrillReport(_Closed):
    scenario: str
    phones: int
    status_list_ttl_s: int
    ocsp_ttl_s: int
    seconds: float
    subjects: list[DrillSubject]
    bystander: dict[str, Any]
    passed: bool
    error: str | None
    propagation_s: DrillPropagation


class DrillJob(JobBody):
    """POST /drills: a revocation drill, its report as result."""

    kind: Literal["drill"]
    params: DrillJobParams
    result: DrillReport | None


class MdocReissueJobParams(_Closed):
    signer: str = Field(description="the document signer or IACA whose phones get new MSOs, as given")
    workers: int
    actor: str
    over_the_air: bool = Field(False, description="the phones whose SE is not in this installation were reached "
                               "through their GP SERAM Local Agents (specs/tsm.md \"Over the air\")")


class PhoneReissued(_Closed):
    phone: str
    outcome: Literal["reissued", "refused", "not-here", "on-hold", "unreached"] = Field(description=(
        "reissued: new MSOs (the old ones superseded); refused: the refresh was refused, or failed over the "
        "air (detail says why); not-here: its SE is not in this installation (re-issue over the air: "
        "over_the_air); on-hold: its mdocs of the signer are on hold (a phone reported lost), left until they "
        "are released; unreached: over the air, its Local Agent did not join its session in time (nothing "
        "reached its SE; the same request again, with the phone on, goes on)"))
    job: str | None = Field(description="the TSM's refresh-mdoc job (reissued; unreached: the one that stopped, "
                            "finished by the next run)")
    mdocs: int = Field(description="the new MSOs")
    detail: str


class MdocReissueJobResult(_Closed):
    """Each phone that held a valid mdoc of the signer when the job ran."""

    signer: str = Field(description="the signer's label")
    purpose: Literal["ds", "iaca"]
    revoked: str | None = Field(description="the reason it was revoked for; null: retired, not revoked")
    done: bool = Field(description="every phone got new MSOs (else the same request again goes on with the rest)")
    reissued: int
    refused: int
    not_here: int
    on_hold: int
    unreached: int = Field(0, description="over the air: phones whose Local Agent did not join in time")
    phones: list[PhoneReissued]
    seconds: float


class PhoneSeramSession(SeramSession):
    """The GP SERAM session one phone's Local Agent is to join."""

    phone: str


class MdocReissueJob(JobBody):
    """POST /mdoc-reissues: new MSOs for every phone holding an mdoc of a signer taken out of use."""

    kind: Literal["mdoc-reissue"]
    params: MdocReissueJobParams
    result: MdocReissueJobResult | None
    seram_sessions: list[PhoneSeramSession] | SkipJsonSchema[None] = Field(
        None, description="in the 202 answer of a job made over the air only: a session for each phone whose SE "
                          "is not in this installation (none: an empty list), for its Local Agent to join")


_AnyJob = (ProvisionJob | PinResetJob | MdocRefreshJob | IssueSignJob | RenewJob | TsmResumeJob | TsmAbandonJob
           | KlocMoveJob | HandoverJob | CardRenewalJob | DrillJob | MdocReissueJob)


class Job(RootModel[Annotated[_AnyJob, Field(discriminator="kind")]]):
    """A job of any kind (GET /jobs/{id}): its ``kind`` says which schema it is."""


#: The kinds of job the API makes (``GET /jobs?kind=``): read from :class:`Job`'s union, so
#: that a kind added there is one a client can ask for, and no list is kept twice.
JobKind = Literal[tuple(get_args(m.model_fields["kind"].annotation)[0] for m in get_args(_AnyJob))]


class JobList(_Page):
    jobs: list[Job] = Field(description="newest first")


class HandoverJobAccepted(BaseModel):
    """A holder's change recorded, and its workflow queued as ``job``."""

    handover: str
    job: HandoverJob


class CardRenewalJobAccepted(BaseModel):
    """A holder's new card recorded, and its renewal workflow queued as ``job``."""

    handover: str
    job: CardRenewalJob


class AuditEventOut(_Closed):
    model_config = ConfigDict(title="AuditEvent")

    id: int
    at: str = Field(json_schema_extra=_DATE_TIME)
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]


class AuditEvents(_Page):
    events: list[AuditEventOut]


class TsmAuditRecord(_Closed):
    """One record of the TSM's audit trail: a command's header, length and status word,
    never its data."""

    id: int
    at: str = Field(json_schema_extra=_DATE_TIME)
    actor: str
    phone_id: str
    job: str | None
    step: str | None
    event: str
    command: str | None = Field(pattern="^[0-9A-F]{8}$", description="CLA INS P1 P2, hexadecimal")
    lc: int | None
    sw: str | None = Field(pattern="^[0-9A-F]{4}$", description="the status word, hexadecimal")
    what: str | None
    detail: dict[str, Any]


class TsmAuditRecords(_Page):
    records: list[TsmAuditRecord]


class HolderForgotten(_Closed):
    """A holder's personal data erased (or found erased already: the counts then absent)."""

    holder: str
    erased: Literal[True]
    already: bool
    mdoc_bodies_erased: int | SkipJsonSchema[None] = None
    certificates_kept: int | SkipJsonSchema[None] = None
    audit_details_redacted: int | SkipJsonSchema[None] = None


# -- trust material ----------------------------------------------------------------------


class DsRollover(_Closed):
    label: str = Field(description="the document signer now active")


class IacaRollover(_Closed):
    """The IACA generation now current, with the signers it issued at once."""

    label: str = Field(description="the IACA now current (mdoc-iaca-N)")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    ds: str = Field(description="the document signer it issued, now active")
    status_signer: str = Field(description="the status-list signer it issued, signing its lists")
    staged_since: str | None = Field(None, json_schema_extra=_DATE_TIME, description=(
        "when it was staged (POST /trust/iaca-stage) and joined the trust bundle; null: made "
        "by this rollover, so readers meet it with its first mdocs"))


class IacaStage(_Closed):
    """The next IACA generation, staged: in the trust bundle, vouching for nothing yet."""

    label: str = Field(description="the staged IACA (mdoc-iaca-N)")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    current: str = Field(description="the IACA still current, issuing until the rollover")


class KlocRotation(_Closed):
    retired_ca_ski: str = Field(pattern="^[0-9a-f]*$")
    ca_ski: str = Field(pattern="^[0-9a-f]*$")
    certificate: str = Field(description="the new KLOC CA certificate, PEM")


class SignerRevocation(_Closed):
    """A signer generation (never its key) after its revocation; ``changed`` false when it
    was revoked already."""

    label: str
    purpose: str
    serial: str
    subject: str
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    active: bool
    revoked_at: str | None = Field(json_schema_extra=_DATE_TIME)
    reason: str | None
    affected_mdocs: int
    iaca: str | None = Field(description="the IACA generation that issued it")
    key_destroyed_at: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "when its private key was destroyed (POST /trust/key-destructions, or destroy_key in the revocation); "
        "null while the key store holds it"))
    changed: bool


class VicalSigning(_Closed):
    """The VICAL signer that signs the VICAL published now."""

    label: str = Field(description="mdoc-vical-signer-N")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")


class VicalCa(_Closed):
    """A VICAL CA generation (never its key), as ``mcred mdoc vical-ca list --json`` shows it."""

    label: str = Field(description="mdoc-vical-ca-N")
    purpose: Literal["vical-ca"]
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    subject: str
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    state: Literal["current", "staged", "retired", "withdrawn"] = Field(description=(
        "current: it certifies the VICAL signer; staged: the next generation, listed in /trust/vical-ca.pem after "
        "the current one and certifying nothing until the rollover starts it; retired: rolled over, listed while "
        "a signer it certified is valid and not revoked; withdrawn: rolled over as compromised, out of trust, "
        "signing nothing more"))
    trusted: bool = Field(description="whether /trust/vical-ca.pem lists it (the anchors readers of the VICAL trust)")
    revoked_at: str | None = Field(json_schema_extra=_DATE_TIME, description="when it was withdrawn")
    reason: str | None = Field(description="cACompromise once withdrawn")
    crl: str = Field(description="the CRL distribution point its VICAL signers name (410 "
                                 "/problems/vical-ca-withdrawn once it is withdrawn)")
    signers: list[str] = Field(description="the VICAL signers it certified (mdoc-vical-signer-N), oldest first")
    key_destroyed_at: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "when its private key was destroyed (POST /trust/key-destructions); null while the key store holds it"))


class VicalCaRollover(_Closed):
    """A VICAL CA rollover: the CA before (retired, or withdrawn), the one now current, the
    signer of the VICAL published now under it, and that VICAL's issue ID."""

    previous: VicalCa
    current: VicalCa
    signing: VicalSigning = Field(description="the signer of the VICAL published now (/trust/vical), under the "
                                              "new VICAL CA")
    vical_issue_id: int = Field(description="the vicalIssueID of the VICAL published now (re-signed at once: "
                                            "higher than any before)")
    withdrawn: bool = Field(description="whether the CA before was withdrawn (compromised: true)")
    revoked_signers: list[str] = Field(description="the VICAL signers of the CA before revoked with it "
                                                   "(cACompromise; no CRL lists them: only its key could sign one)")
    retired_signers: list[str] = Field(description="the VICAL signers of the CA before retired by the new one")
    staged_since: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "when the CA now current was staged (POST /trust/vical-ca-stage, or by itself in the CA before's last "
        "months) and joined /trust/vical-ca.pem: readers that took it since take the new VICAL at once; null: made "
        "by this rollover, readers had no warning and refuse the new VICAL until they hold it"))
    withdrawn_staged: str | None = Field(description=(
        "the staged VICAL CA withdrawn with the CA before (compromised and fresh: its key shared the compromised "
        "environment), out of /trust/vical-ca.pem; null: none"))


class VicalCaStage(VicalCa):
    """The next VICAL CA generation, staged: in /trust/vical-ca.pem after the current one,
    certifying nothing until the rollover starts it."""

    current: str = Field(description="the VICAL CA still current, certifying the VICAL signer until the rollover")


class VicalSignerRevocation(_Closed):
    """A VICAL signer generation (never its key) after its revocation; ``changed`` false when
    it was revoked already (``amended_from``: the reason keyCompromise replaced)."""

    label: str
    purpose: Literal["vical-signer"]
    serial: str = Field(pattern="^[0-9a-f]+$")
    subject: str
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    active: bool = Field(description="whether it signs the VICALs signed from now on (false once revoked)")
    revoked_at: str | None = Field(json_schema_extra=_DATE_TIME)
    reason: str | None
    ca: str | None = Field(description="the VICAL CA generation that certified it (mdoc-vical-ca-N)")
    crl: str | None = Field(description="the CRL distribution point its certificate names (the VICAL CA's CRL, "
                                        "which lists it from now on); null for a signer made before they carried one")
    key_destroyed_at: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "when its private key was destroyed (POST /trust/key-destructions, or destroy_key in the revocation); "
        "null while the key store holds it"))
    changed: bool
    amended_from: str | None
    signing: VicalSigning = Field(description="the signer of the VICAL published now (/trust/vical): a new "
                                              "generation when the revoked one was signing")
    vical_issue_id: int = Field(description="the vicalIssueID of the VICAL published now (re-signed at once: "
                                            "higher than any before)")


class IacaRevocation(SignerRevocation):
    """An IACA generation after its revocation (out of trust); ``changed`` false when it was
    revoked already (``amended_from``: the reason a compromise replaced)."""

    purpose: Literal["iaca"]
    affected_mdocs: int = Field(description="valid mdocs its document signers signed, refused from now on")
    iaca: None = None
    amended_from: str | None
    successor: IacaRollover | None = Field(description="the IACA started in its place (it was the current one)")
    retired_signers: list[str] = Field(description="its document and status-list signers, retired with it")
    affected_phones: list[str] = Field(description="the phones holding those mdocs (POST /mdoc-reissues)")


class TsaRollover(_Closed):
    """The time-stamping authority's root rolled over: the new root generation and the unit it
    certified, which stamps from now on (as ``mcred tsa rollover --json``)."""

    root: str = Field(pattern=r"^tsa-root-g[1-9][0-9]*$", description="the root now current (tsa-root-gN)")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    unit: str = Field(pattern=r"^tsa-unit-[1-9][0-9]*$", description="the unit it certified, stamping from now on")
    unit_serial: str = Field(pattern="^[0-9a-f]+$", description="the unit's certificate serial, hex")
    unit_not_after: str = Field(json_schema_extra=_DATE_TIME, description="the unit's end (never after its root's)")
    previous: str | None = Field(description="the root it retired: it signs the CRL of its units until they have "
                                             "all expired (null: there was none)")
    crl: str | None = Field(description="the CRL distribution point the new unit names (/tsa/root-gN.crl under the "
                                        "public URL); null when the TSA has no public URL")
    automatic: bool = Field(description="false: asked for (true only for the rollover the TSA makes by itself in its "
                                        "root's last years)")
    staged_since: str | None = Field(None, json_schema_extra=_DATE_TIME, description=(
        "when the root was staged (POST /trust/tsa-stage, or by the TSA itself) and joined /tsa/root.pem; null: made "
        "by this rollover, so relying parties meet it with its first time-stamps"))


class TsaStage(_Closed):
    """The TSA's next root generation, staged: in /tsa/root.pem right after the current one,
    certifying nothing until the rollover starts it (as ``mcred tsa stage --json``)."""

    root: str = Field(pattern=r"^tsa-root-g[1-9][0-9]*$", description="the staged root (tsa-root-gN)")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    current: str = Field(pattern=r"^tsa-root-g[1-9][0-9]*$", description="the root still current, certifying the "
                         "unit that stamps until the rollover")
    automatic: bool = Field(description="false: asked for (true only for the staging the TSA does by itself a year "
                                        "before its root's last years)")


class JpkiRootRollover(_Closed):
    """A JPKI root rolled over: the generation issuing from now on (as ``mcred jpki rollover --json``)."""

    slot: Literal["sign", "auth"]
    label: str = Field(pattern=r"^jpki-(sign|auth)-root-g[1-9][0-9]*$", description="the generation issuing now")
    algorithm: KeyType
    key_id: str = Field(pattern="^[0-9a-f]+$", description="its subjectKeyIdentifier, hex (what its certificates' "
                                                          "authorityKeyIdentifier names)")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    previous: str | None = Field(description="the generation it retired: it signs the CRLs of its certificates and "
                                             "certifies their OCSP responder until they have all expired")
    staged_since: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "when it was staged (POST /trust/jpki-stage) and joined the trust bundle; null: made by this rollover, so "
        "relying parties meet it with its first certificates"))


class JpkiRootStage(_Closed):
    """The next JPKI root generation of a slot, staged: in the trust bundle, issuing nothing yet
    (as ``mcred jpki stage --json``)."""

    slot: Literal["sign", "auth"]
    label: str = Field(pattern=r"^jpki-(sign|auth)-root-g[1-9][0-9]*$", description="the staged generation")
    algorithm: KeyType
    key_id: str = Field(pattern="^[0-9a-f]+$", description="its subjectKeyIdentifier, hex")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    current: str = Field(description="the generation still issuing, until the rollover")


class JpkiOcspResponder(_Closed):
    """A delegated OCSP responder of a JPKI root generation (never its key)."""

    label: str = Field(pattern=r"^jpki-(sign|auth)-root-g[1-9][0-9]*-ocsp-[1-9][0-9]*$")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME, description="never after its root generation's")
    state: Literal["answering", "replaced", "expired"] = Field(description=(
        "answering: the newest of its generation, not expired, it signs the OCSP answers (renewed in its last 30 "
        "days); replaced: a newer one answers, its key may be destroyed; expired"))
    key_destroyed_at: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "when its private key was destroyed (POST /trust/key-destructions); null while the key store holds it"))


class JpkiRootGeneration(_Closed):
    """A JPKI root generation (never its key), as ``mcred jpki root list --json`` shows it."""

    slot: Literal["sign", "auth"]
    label: str = Field(pattern=r"^jpki-(sign|auth)-root-g[1-9][0-9]*$")
    algorithm: KeyType
    key_id: str = Field(pattern="^[0-9a-f]+$", description="its subjectKeyIdentifier, hex (what its certificates' "
                                                          "authorityKeyIdentifier names)")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    subject: str = Field(description="its subject (RFC 4514): every generation of a slot has the same")
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME, description=(
        "its end: a certificate that would outlive it is not issued (409 /problems/provisioning-refused naming the "
        "rollover)"))
    state: Literal["issuing", "staged", "retired"] = Field(description=(
        "issuing: it issues every certificate of the slot; staged: the next generation, in the trust bundle "
        "(/trust/jpki-<slot>-root.pem) and issuing nothing until POST /trust/jpki-rollover starts it; retired: "
        "rolled over (or staged and never started), it signs the CRLs of what it issued and certifies their OCSP "
        "responder until they have all expired"))
    created_at: str = Field(json_schema_extra=_DATE_TIME, description="when it was made (a staged one: staged)")
    key_destroyed_at: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "when its private key was destroyed (POST /trust/key-destructions); null while the key store holds it"))
    valid_certificates: int = Field(ge=0, description="certificates it issued that are valid now (not revoked, not "
                                                      "on hold, not expired)")
    duties_end_at: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "the end of the last certificate it issued that has not expired (valid, on hold or revoked): its CRLs and "
        "OCSP go on to then, and its key may be destroyed after; null: none"))
    crls: list[str] = Field(description="its CRLs: one URL per partition it issued in (/crl/<slot>/<partition>.crl"
                                        "?key_id=<its key_id>), oldest partition code first")
    responders: list[JpkiOcspResponder] = Field(description="its OCSP responders, oldest first (none while staged)")


class JpkiRoots(_Closed):
    """Every JPKI root generation of the slots asked for (each slot's oldest first)."""

    roots: list[JpkiRootGeneration]


class TsaUnitInfo(_Closed):
    """A TSA unit (never its key), under the root that certified it."""

    label: str = Field(pattern=r"^tsa-unit-[1-9][0-9]*$")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME, description="never after its root's")
    state: Literal["stamping", "retired", "revoked", "expired"] = Field(description=(
        "stamping: the newest unit, certified by the current root, it makes the time-stamps; retired: replaced (or "
        "retired with its root by a rollover), never used again; revoked: on its root's CRL; expired"))
    revoked_at: str | None = Field(json_schema_extra=_DATE_TIME)
    reason: str | None = Field(description="its revocation reason (RFC 5280 5.3.1 name)")
    key_destroyed_at: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "when its private key was destroyed (POST /trust/key-destructions); null while the key store holds it"))


class TsaRootInfo(_Closed):
    """A root generation of the time-stamping authority (never its key), as ``mcred tsa root
    list --json`` shows it."""

    label: str = Field(pattern=r"^tsa-root-g[1-9][0-9]*$")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    subject: str = Field(description="its subject (RFC 4514): generation N is mcred Time-Stamping Root GN")
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    state: Literal["current", "staged", "retired"] = Field(description=(
        "current: it certifies the unit that stamps; staged: the next root, in /tsa/root.pem and certifying "
        "nothing until the rollover (POST /trust/tsa-rollover, or the TSA's own) starts it; retired: rolled over "
        "(or staged and never started), it signs the CRL of its units until they have all expired"))
    created_at: str = Field(json_schema_extra=_DATE_TIME, description="when it was made (a staged one: staged)")
    key_destroyed_at: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "when its private key was destroyed (POST /trust/key-destructions); null while the key store holds it"))
    valid_units: int = Field(ge=0, description="units it certified that are valid now (not revoked, not expired)")
    duties_end_at: str | None = Field(json_schema_extra=_DATE_TIME, description=(
        "the end of the last unit it certified that has not expired (revoked or not): its CRL is signed to then, "
        "and its key may be destroyed after; null: none"))
    crl: str | None = Field(description="its CRL, the distribution point its units name (/tsa/root.crl for "
                                        "generation 1, /tsa/root-gN.crl)")
    units: list[TsaUnitInfo] = Field(description="the units it certified, oldest first")


class TsaRoots(_Closed):
    """Every root generation of the time-stamping authority, oldest first."""

    roots: list[TsaRootInfo]


class TsaRevocation(_Closed):
    """A TSA unit after its revocation (as ``mcred tsa revoke --json``): ``changed`` false when it
    was revoked already with nothing to amend; the members that do not apply are absent."""

    unit: str = Field(pattern=r"^tsa-unit-[1-9][0-9]*$")
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    reason: str = Field(description="its revocation reason now (RFC 5280 5.3.1 name)")
    changed: bool
    amended_from: str | SkipJsonSchema[None] = Field(None, description=(
        "the reason it had when this call amended its revocation (to keyCompromise, or to an earlier invalidity "
        "date)"))
    invalid_since: str | SkipJsonSchema[None] = Field(None, json_schema_extra=_DATE_TIME, description=(
        "its invalidity date now (its root CRL entry's invalidityDate)"))
    key_destroyed_at: str | SkipJsonSchema[None] = Field(None, json_schema_extra=_DATE_TIME, description=(
        "when its private key was destroyed (destroy_key)"))


class FinalCrl(_Closed):
    """A CA's final CRL, signed before its key was destroyed and served for good (nextUpdate
    9999-12-31T23:59:59Z; specs/revocation.md, "A CA's final CRL")."""

    crl: str = Field(description="where it is served, under the issuer's public URL (/trust/iaca-N.crl, "
                                 "/trust/vical-ca-N.crl, /crl/sign/P.crl?key_id=K, /tsa/root-gN.crl)")
    crl_number: int = Field(description="its cRLNumber, above any the CA signed before")
    this_update: str = Field(json_schema_extra=_DATE_TIME)
    entries: int = Field(description="the certificates it lists: every one the CA revoked, expired or not")


class KeyDestruction(_Closed):
    """A key of the issuer (an mdoc signer, a JPKI root generation or OCSP responder, a TSA
    unit or root; never the key itself) whose private key was destroyed: now, or before
    (``already``)."""

    label: str = Field(description="mdoc-iaca-N, mdoc-ds-N, mdoc-status-N, mdoc-vical-signer-N, mdoc-vical-ca-N; "
                                   "jpki-sign-root-gN, jpki-auth-root-gN, jpki-sign-root-gN-ocsp-M, ...; tsa-unit-N, "
                                   "tsa-root-gN")
    purpose: Literal["iaca", "ds", "status-signer", "vical-signer", "vical-ca", "jpki-sign-root", "jpki-auth-root",
                     "jpki-ocsp-sign", "jpki-ocsp-auth", "tsa-root", "tsa-unit"]
    serial: str = Field(pattern="^[0-9a-f]+$", description="its certificate serial, hex")
    subject: str
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    revoked_at: str | None = Field(json_schema_extra=_DATE_TIME, description="null: not revoked (its duties ended)")
    reason: str | None = Field(description="its revocation reason (RFC 5280 5.3.1 name)")
    key_destroyed_at: str = Field(json_schema_extra=_DATE_TIME, description="when its key was destroyed")
    changed: bool = Field(description="whether this request destroyed it")
    already: bool = Field(description="destroyed before this request (nothing changed)")
    found_absent: bool = Field(description="the key store held no key of it any more when asked (recorded as "
                                           "destroyed now)")
    restored: bool = Field(False, description="recorded destroyed before (already), yet the key store held its key "
                           "again (a backup of the store restored, a token's objects re-imported): destroyed again "
                           "now, audited with restored; key_destroyed_at stays the first destruction's")
    final_crls: list[FinalCrl] = Field([], description=(
        "a CA's (an IACA, a VICAL CA, a JPKI root generation: one per CRL partition, a TSA root): the final CRLs "
        "it signed before its key went, by this request or by one interrupted after signing them; empty for "
        "another key, a revoked or withdrawn CA, an IACA or VICAL CA past its end, a key the store no longer "
        "held, and when already"))


# -- the latest basic four data and the user-authentication linkage services -------------


class Consent(_Closed):
    """A holder's consent to the latest basic four data service, as registered."""

    id: str
    holder: str
    relying_party: str
    purpose: str
    signer_serial: str = Field(description="the serial of the signing certificate that signed the consent")
    granted_at: str = Field(json_schema_extra=_DATE_TIME)
    expires_at: str = Field(json_schema_extra=_DATE_TIME)
    withdrawn_at: str | None = Field(json_schema_extra=_DATE_TIME)
    state: Literal["active", "withdrawn", "expired"]


class ConsentRegistered(Consent):
    registered: bool = Field(description="false: registered before, the consent as it is")


class ConsentList(_Closed):
    consents: list[Consent]


class BasicFourNow(_Closed):
    """The holder's basic four data (基本4情報) as the registry holds it now."""

    name: str = Field(description="family and given name, an ideographic space between")
    birth_date: str = Field(json_schema_extra={"format": "date"})
    sex: int = Field(description="ISO/IEC 5218: 1 male, 2 female, 9 not applicable, 0 not known")
    address: str


class LatestBasicFour(_Closed):
    consent: str
    basic_four: BasicFourNow
    changed: list[Literal["name", "birth_date", "sex", "address"]] = Field(
        description="the fields that differ from the consent's signing certificate")
    signing_certificate: str | None = Field(description="the serial of the holder's valid signing certificate now")
    as_of: str = Field(json_schema_extra=_DATE_TIME)


class LinkageSuccessor(_Closed):
    serial: str
    issued_at: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    status: str = Field(description="valid, hold, revoked, expired")
    reason: str | None
    certificate: str = Field(json_schema_extra={"format": "byte"}, description="DER, base64")


class LinkageLink(_Closed):
    """The answer about one old serial."""

    serial: str
    found: bool = Field(description="false: not a user-authentication certificate of this issuer (problem says so)")
    successors: list[LinkageSuccessor]
    current: str | None = Field(description="the newest successor valid now")
    problem: str | None


class Linkage(_Closed):
    links: list[LinkageLink]
    as_of: str = Field(json_schema_extra=_DATE_TIME)


# -- probes ------------------------------------------------------------------------------


class Liveness(_Closed):
    status: Literal["ok"]


class ReadinessCheck(_Closed):
    ok: bool
    detail: str = Field(description="what was found (a failure: the exception's type and first line)")
    ms: float


class Readiness(_Closed):
    status: Literal["ready"]
    checks: dict[str, ReadinessCheck]
