"""The issuer service's resources as its OpenAPI document declares them: documentation only.

The routes of :mod:`mcred.api_routes` build their bodies as dicts and send them as built
(``response_model=Any``: nothing is filtered, reordered or re-encoded); these models, given
as ``responses={200: {"model": ...}}``, name their members, so that a client generated from
the document reads typed phones, holders, credentials, workflows and audit events, and the
schema-driven fuzz (tests/test_api_fuzz.py) checks every body it gets against them. Closed
(``additionalProperties: false``) where the route builds every member itself; the free-form
parts (a holder's registered data, a workflow's or an audit event's detail, the SE's
description) stay objects.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

_DATE_TIME = {"format": "date-time"}


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


class HolderDetail(HolderSummary):
    data: dict[str, Any] = Field(description="the registered card-substitute data, without the portrait")


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
    issued_at: str = Field(json_schema_extra=_DATE_TIME)
    not_before: str = Field(json_schema_extra=_DATE_TIME)
    not_after: str = Field(json_schema_extra=_DATE_TIME)
    serial: str | None = Field(description="a certificate's serial (JPKI)")
    issuer_key: str
    partition: str | None = Field(description="the CRL partition (JPKI)")
    status_list_id: str | None = Field(description="the status list (mdoc)")
    status_idx: int | None
    job_ref: str | None


class CredentialList(_Page):
    credentials: list[CredentialOut]


class StatusChange(_Closed):
    credential_id: str
    kind: str
    serial: str | None
    before: str = Field(description="the status before: valid, hold, revoked")
    after: str
    reason: str | None


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
    kind: str
    state: str
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
    changed: bool


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
