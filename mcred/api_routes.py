"""The routers of the HTTP API that no single party provides: they cross parties, so the
composition root builds them (specs/api.md lists every route with its scope).

* ``tsm``: phones and their SEs (create, list, show, factory reset) over :mod:`wallet_sim`;
* ``issuer``: provisioning jobs (:func:`mcred.provision.provision` in a job), credentials
  (registry view), revocations, holds and releases (:mod:`issuer.revocation`), and the job
  status resource ``/jobs/{id}`` (a job is visible only to tokens allowed its scope);
* ``operator``: handover workflows (:mod:`issuer.handover`), drills (jobs), the audit trail
  and the document-signer rollover (trust material; the public trust material itself is
  served by the issuer's own routers).

Secrets given to a provisioning job (PIN, password, PUK) and the inline holder record go
to the work function only: they are never stored in the job row nor returned.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import defer

import wallet_sim
from issuer.api import problems
from issuer.api.auth import principal_of
from issuer.api.jobs import JobRunner, JobView, accepted
from issuer.api.problems import (
    CONFLICT,
    FORBIDDEN,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    VALIDATION,
    ProblemException,
    merge,
    refusals,
)
from issuer.db import Credential, Handover, Phone, unindexed
from issuer.holders import PHONE_ID_PATTERN
from mcred.api_models import (
    AuditEvents,
    CardRenewalJobAccepted,
    Consent,
    ConsentList,
    ConsentRegistered,
    CredentialList,
    CredentialOut,
    DrillJob,
    DsRollover,
    HandoverJob,
    HandoverJobAccepted,
    HandoverList,
    HandoverOut,
    HolderDetail,
    HolderForgotten,
    HolderList,
    IacaRevocation,
    IacaRollover,
    IacaStage,
    IssueSignJob,
    Job,
    JobKind,
    JobList,
    JpkiRootRollover,
    JpkiRoots,
    JpkiRootStage,
    KeyDestruction,
    KlocMoveJob,
    KlocRotation,
    LatestBasicFour,
    Linkage,
    MdocRefreshJob,
    MdocReissueJob,
    PhoneCreated,
    PhoneDetail,
    PhoneList,
    PhoneReset,
    PinResetJob,
    ProvisionJob,
    RenewJob,
    SignerRevocation,
    StatusChanges,
    TsaRevocation,
    TsaRollover,
    TsaRoots,
    TsaStage,
    TsmAbandonJob,
    TsmAuditRecords,
    TsmJobAbandoned,
    TsmJobList,
    TsmResumeJob,
    VicalCaRollover,
    VicalCaStage,
    VicalSignerRevocation,
)
from mcred.context import Context
from mcred.db import setup_lock
from protocols.jpki.renewal import NOTICE_MAX_DAYS
from wallet_sim.phone import phone_dir
from wallet_sim.se.store import DEFAULT_NVM, NVM_MAX, NVM_MIN, SE_FILE

PhoneId = Annotated[str, Path(pattern=PHONE_ID_PATTERN, max_length=63)]
Hex32 = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
CredentialSel = Literal["sign", "auth", "mdoc", "jpki", "all"]
Reason = Literal["keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation",
                 "certificateHold"]


#: The JPKI secrets a body may carry, as the TSM takes them (tsm.jobs.JobSecrets): the user-auth
#: PIN, the signing password, the PIN unlock key.
PIN, PASSWORD, PUK = r"^[0-9]{4}$", r"^[A-Z0-9]{6,16}$", r"^[0-9]{8}$"
#: When a request that provisions a phone takes the signing password (the OpenAPI document
#: says it on each such member; :func:`_check_password` holds a request to it).
PASSWORD_RULE = ("signing password (never stored): required when the holder gets a signing certificate, "
                 "i.e. is 15 or older on the day of issue in Japan; refused (422, naming body.password) for a "
                 "holder under 15, who gets none: no signing key or password is set, and a password that nothing "
                 "would use is not taken silently. GET /holders/{holder_id} names the day (signing_certificate_from); "
                 "from then POST /sign-issuances adds the certificate and its password to the phone")


def _rfc3339_string(value: object) -> object:
    if value is not None and not isinstance(value, str):  # pydantic takes a number as a Unix time
        raise ValueError("give an RFC 3339 date-time string with its offset (2026-12-01T09:00:00+09:00)")
    return value


#: An ``invalid_since`` member (RFC 5280 invalidityDate): an RFC 3339 instant with its offset,
#: given as a string (not a number, which pydantic would take as a Unix time).
InvalidSince = Annotated[AwareDatetime | None, BeforeValidator(_rfc3339_string)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: What ``connect_timeout_s`` means on each request that may reach a phone over the air.
CONNECT_TIMEOUT_RULE = ("with over_the_air: how long, in seconds (1 to 3600), the phone's Local Agent has to join "
                        "its GP SERAM session before the job gives it up, nothing having reached its SE (the "
                        "answer's wait_s); the service's default (300, a Remote Agent's usual binding time) "
                        "unless given. Refused (422) without over_the_air, which opens no session")


class _Reaches(_Body):
    """A request that may reach a phone through its GP SERAM Local Agent (``over_the_air``,
    on each subclass, or ``wipe_over_the_air``), how long it waits for it to join given."""

    connect_timeout_s: float | None = Field(None, ge=1, le=3600, description=CONNECT_TIMEOUT_RULE)

    @model_validator(mode="after")
    def _timeout_with_a_session(self) -> _Reaches:
        if self.connect_timeout_s is not None and not (
                getattr(self, "over_the_air", False) or getattr(self, "wipe_over_the_air", False)):
            raise ValueError("connect_timeout_s goes with over_the_air: without it no GP SERAM session is "
                             "opened, and nothing waits for a phone to join one")
        return self


class NewPhone(_Body):
    model: str = Field("mcred-sim-1", min_length=1, max_length=64,
                       pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    #: The SE's non-volatile memory in bytes (a command that needs more is refused, 6A84).
    nvm_bytes: int = Field(DEFAULT_NVM, ge=NVM_MIN, le=NVM_MAX, strict=True)
    #: The SE's issuer names this installation's TSM as the OCE that may load keys (SCP11a);
    #: false: an SE that offers SCP11b only (specs/secure-element.md "SCP11a").
    scp11a: bool = Field(True, strict=True)


class ProvisionRequest(_Reaches):
    phone_id: str = Field(pattern=PHONE_ID_PATTERN)
    #: The holder record (issue 4 item 3 field names), or ``holder_id`` of a registered one.
    holder: dict[str, Any] | None = None
    holder_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")
    key_type: Literal["rsa2048", "p384"] = "rsa2048"
    mdoc_batch: int = Field(2, ge=1, le=16)
    pin: str = Field(pattern=PIN, description="user-auth PIN (never stored)")
    password: str | None = Field(None, pattern=PASSWORD, description=PASSWORD_RULE)
    puk: str = Field(pattern=PUK, description="PIN unlock key (never stored)")
    #: Reach the phone's SE through its GP SERAM Local Agent (the answer's ``seram``) instead
    #: of the simulator in this installation's data directory (specs/tsm.md, "Over the air").
    over_the_air: bool = False


class RefreshRequest(_Reaches):
    phone_id: str = Field(pattern=PHONE_ID_PATTERN)
    #: Slots 0..N-1 to refresh (default: every slot holding a valid mdoc).
    mdoc_batch: int | None = Field(None, ge=1, le=16)
    #: Re-sign over the slots' device keys instead of generating new ones in the SE.
    keep_keys: bool = False
    #: Reach the phone through its GP SERAM Local Agent (as ``POST /provisioning``).
    over_the_air: bool = False


class RevocationRequest(_Body):
    phone_id: str = Field(pattern=PHONE_ID_PATTERN)
    reason: Reason
    credential: CredentialSel = "all"
    invalid_since: InvalidSince = Field(None, description=(
        "since when the key is known or suspected to have been compromised (RFC 5280 5.3.2 invalidityDate; a "
        "keyCompromise's compromise time), an RFC 3339 instant with its offset: each credential revoked records "
        "it (GET /credentials invalid_since) and a JPKI certificate's CRL entry and OCSP answer carry it, so a "
        "relying party refuses a signature time-stamped after it. A credential on hold keeps the earlier of it and "
        "the hold's time. Any reason but certificateHold (400 revocation-refused, as a time after the "
        "revocation's); one with no offset, or no date-time string, is 422 naming body.invalid_since"))


class HoldRequest(_Body):
    phone_id: str = Field(pattern=PHONE_ID_PATTERN)
    credential: CredentialSel = "all"


class PinResetRequest(_Reaches):
    phone_id: str = Field(pattern=PHONE_ID_PATTERN)
    #: What to reset: the user-authentication PIN (auth), the signing password (sign).
    slots: list[Literal["auth", "sign"]] = Field(["auth", "sign"], min_length=1, max_length=2)
    pin: str | None = Field(None, pattern=PIN, description="the new user-auth PIN (never stored)")
    password: str | None = Field(None, pattern=PASSWORD,
                                 description="the new signing password (never stored)")
    puk: str | None = Field(None, pattern=PUK,
                            description="a new PUK: the PUK is reset too (never stored)")
    #: Reach the phone through its GP SERAM Local Agent (as ``POST /provisioning``).
    over_the_air: bool = False


class OverTheAirRequest(_Reaches):
    #: Reach the (new) phone through its GP SERAM Local Agent, in a new session (the answer's
    #: ``seram``).
    over_the_air: bool = False


class HandoverRunRequest(OverTheAirRequest):
    #: With ``over_the_air``: the old phone is at hand too (the holder brought both to the
    #: shop): its SE is wiped through its own Local Agent, in a second session (the answer's
    #: ``seram_old``).
    wipe_over_the_air: bool = False
    #: The secrets the holder chose for the phone the workflow provisions (a model change's
    #: new phone, a renewal's phone): pin and puk, with password when the holder gets a
    #: signing certificate (:data:`PASSWORD_RULE`), or none. Without them they are generated
    #: and, since an answer over HTTP cannot show them without storing them, nobody learns
    #: them (the job's ``new_phones_with_generated_secrets`` names the phone: a PIN reset,
    #: ``POST /pin-resets``, sets them).
    pin: str | None = Field(None, pattern=PIN, description="user-auth PIN (never stored); with puk, or "
                            "neither (generated, shown to nobody)")
    password: str | None = Field(None, pattern=PASSWORD, description="with pin and puk: " + PASSWORD_RULE)
    puk: str | None = Field(None, pattern=PUK, description="PIN unlock key (never stored); with pin")

    @model_validator(mode="after")
    def _all_or_none(self) -> HandoverRunRequest:
        given = {k for k in ("pin", "password", "puk") if getattr(self, k) is not None}
        if given and not {"pin", "puk"} <= given:
            missing = sorted({"pin", "puk"} - given)
            raise ValueError(f"pin and puk go together (password with them when the holder gets a signing "
                             f"certificate): {', '.join(missing)} missing")
        return self

    def secrets(self) -> dict[str, str] | None:
        return {"pin": self.pin, "password": self.password, "puk": self.puk} if self.pin is not None else None


class AbandonRequest(_Reaches):
    #: Why the job will not finish (audited with the job and the revocations).
    reason: str = Field(min_length=1, max_length=200,
                        pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")
    #: A provisioning's wipe reaches the phone through its GP SERAM Local Agent: the call
    #: then answers 202 with a job and the session (``seram``), as the other TSM routes do.
    over_the_air: bool = False


class ForgetRequest(_Body):
    #: Why the holder's personal data is erased (audited), e.g. the retention period ended.
    reason: str = Field(min_length=1, max_length=200,
                        pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")


class BasicFourChange(_Body):
    """異動: the holder's new card data (only the fields that change) and why."""

    reason: str = Field(min_length=1, max_length=200,
                        pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")
    family_name: str | None = Field(None, max_length=200)
    given_name: str | None = Field(None, max_length=200)
    family_name_kana: str | None = Field(None, max_length=200)
    given_name_kana: str | None = Field(None, max_length=200)
    family_name_roman: str | None = Field(None, max_length=200)
    given_name_roman: str | None = Field(None, max_length=200)
    address: str | None = Field(None, max_length=400)
    prefecture: str | None = Field(None, max_length=64)
    municipality: str | None = Field(None, max_length=128)
    municipality_code: str | None = Field(None, pattern=r"^[0-9]{6}$")
    birth_date: str | None = Field(None, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    sex: Literal[0, 1, 2, 9] | None = None


class CardRenewal(_Body):
    """カードの更新: the holder's new card, and the secrets its credentials get."""

    reason: str = Field(min_length=1, max_length=200,
                        pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")
    key_type: Literal["rsa2048", "p384"] = Field("p384", description="the new card's JPKI keys (p384: "
                                                 "the next card's)")
    card_number: str | None = Field(None, pattern=r"^[0-9]{16}$", description="default: a random one")
    pin: str = Field(pattern=PIN, description="user-auth PIN (never stored)")
    password: str | None = Field(None, pattern=PASSWORD, description=PASSWORD_RULE)
    puk: str = Field(pattern=PUK, description="PIN unlock key (never stored)")


class SignIssuance(_Reaches):
    """A signing certificate onto the provisioned phone of a holder who has turned 15."""

    phone_id: str = Field(pattern=PHONE_ID_PATTERN)
    password: str = Field(pattern=PASSWORD, description="the signing password the holder chose (never stored): "
                          "required, as for POST /provisioning, since a generated one could not be shown over "
                          "HTTP without storing it")
    #: Reach the phone through its GP SERAM Local Agent (as ``POST /provisioning``).
    over_the_air: bool = False


class CertificateRenewal(_Reaches):
    """The phone's JPKI certificates renewed (電子証明書の更新), the card staying."""

    phone_id: str = Field(pattern=PHONE_ID_PATTERN)
    slot: Literal["auth", "sign", "both"] = Field("both", description="auth, sign, or both: what the phone holds "
                                                  "(a holder under 15's phone: the user-authentication certificate)")
    early: bool = Field(False, description="renew before the window (3 months before the expiry): an operator's "
                        "drill, audited with its reason")
    reason: str | None = Field(None, min_length=1, max_length=500, description="why an early renewal (required "
                               "with early, refused without it)")
    #: Reach the phone through its GP SERAM Local Agent (as ``POST /provisioning``).
    over_the_air: bool = False


class ConsentRegistration(_Body):
    """A holder's consent to the latest basic four data service, as they signed it."""

    document: str = Field(max_length=8192, pattern=r"^[A-Za-z0-9+/]*={0,2}$",
                          description="the consent document (protocols.jpki.consent), base64")
    signature: str = Field(max_length=65536, pattern=r"^[A-Za-z0-9+/]*={0,2}$",
                           description="its detached CMS signature by the holder's signing certificate, base64")


class LinkageRequest(_Body):
    """Old user-authentication certificate serials whose successors a relying party asks for."""

    # issuer.jpki.linkage's SERIAL_MAX and MAX_BATCH, written out: importing the issuer's
    # JPKI package here would cost every service start ~40 ms before any route needs it. No
    # pattern: issuer.jpki.linkage.normal_serial reads each, and its refusal (422) names the
    # value, which a validation error of the body never does
    serials: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(
        min_length=1, max_length=1000,
        description="serial numbers (1 to 1000), each as relying parties copy it: hex (1a2b..., upper "
                    "case too), 0x1a2b..., openssl's serial=1A2B... and 1a:2b:..., octets spaced, or "
                    "decimal with more than 40 digits (one of 40 digits or fewer is read as hex); "
                    "a serial of another spelling is refused (422) naming it")


class WithdrawRequest(_Body):
    #: Why (audited): the holder's request, say.
    reason: str = Field(min_length=1, max_length=200,
                        pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")


class HandoverRequest(_Body):
    kind: Literal["model_change", "resale_report", "lost_hold", "found", "lost_confirmed",
                  "renewal", "death"]
    holder_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    old_phone_id: str | None = Field(None, pattern=PHONE_ID_PATTERN)
    new_phone_id: str | None = Field(None, pattern=PHONE_ID_PATTERN)
    #: The new phone is reached over the air when the workflow runs (``POST
    #: /handovers/{id}/run`` with ``{"over_the_air": true}``): not looked for here.
    over_the_air: bool = False


#: a signer's key label, or its serial as protocols.certs.parse_serial reads it: the longest,
#: ``serial=`` and 20 octets colon-separated, is 66 characters
SIGNER_NAME_MAX = 80
SIGNER_NAME_PATTERN = r"^[A-Za-z0-9:._= -]+$"


class SignerRevocationRequest(_Body):
    #: The document signer's key label (``mdoc-ds-2``) or certificate serial in hex, in any
    #: form the CLI takes (openssl's ``serial=0A1B...`` and ``0a:1b:...``, octets spaced).
    ds: str = Field(min_length=1, max_length=SIGNER_NAME_MAX, pattern=SIGNER_NAME_PATTERN)
    reason: Literal["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged",
                    "privilegeWithdrawn", "unspecified"]
    #: Destroy its private key once the revocation is committed (POST /trust/key-destructions):
    #: ``key_destroyed_at`` in the answer.
    destroy_key: bool = False


class KlocMoveRequest(_Reaches):
    phone_id: str = Field(pattern=PHONE_ID_PATTERN)
    #: Only read which CA the SE names (result ``kloc``: current or stale); change nothing.
    check: bool = False
    #: Reach the phone through its GP SERAM Local Agent (as ``POST /provisioning``).
    over_the_air: bool = False


class StatusSignerRevocationRequest(_Body):
    #: The status-list signer's key label (``mdoc-status-1``) or certificate serial in hex,
    #: in the forms ``ds`` takes.
    signer: str = Field(min_length=1, max_length=SIGNER_NAME_MAX, pattern=SIGNER_NAME_PATTERN)
    reason: Literal["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged",
                    "privilegeWithdrawn", "unspecified"]
    #: Destroy its private key once the revocation is committed (POST /trust/key-destructions):
    #: ``key_destroyed_at`` in the answer.
    destroy_key: bool = False


class VicalSignerRevocationRequest(_Body):
    #: The VICAL signer's key label (``mdoc-vical-signer-1``) or certificate serial in hex, in
    #: the forms ``ds`` takes.
    signer: str = Field(min_length=1, max_length=SIGNER_NAME_MAX, pattern=SIGNER_NAME_PATTERN)
    reason: Literal["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged",
                    "privilegeWithdrawn", "unspecified"]
    #: Destroy its private key once the revocation is committed (POST /trust/key-destructions):
    #: ``key_destroyed_at`` in the answer.
    destroy_key: bool = False


class VicalCaRolloverRequest(_Body):
    #: The VICAL CA before is known or suspected compromised (its key, or that of a VICAL
    #: signer readers cannot look up): withdrawn at once (out of /trust/vical-ca.pem, its CRL
    #: gone, its signers revoked), not retired. The staged CA is started in its place unless
    #: ``fresh``.
    compromised: bool = False
    #: With ``compromised`` only: the staged VICAL CA is withdrawn too and a new one made (the
    #: compromise is of the provider's environment, its key store, not of one key).
    fresh: bool = False

    @model_validator(mode="after")
    def _fresh_is_for_a_compromise(self) -> VicalCaRolloverRequest:
        if self.fresh and not self.compromised:
            raise ValueError("fresh withdraws the staged VICAL CA with a compromised one: give it with compromised")
        return self


class JpkiRootRequest(_Body):
    #: The root: sign (signing certificates) or auth (user authentication), as ``--slot``.
    slot: Literal["sign", "auth"]
    #: The key of a generation made by the request (default rsa2048, as ``--key-type``); a
    #: rollover that starts the staged generation refuses one other than its own (409
    #: /problems/jpki-error): it starts the certificate relying parties hold.
    key_type: Literal["rsa2048", "p384"] | None = None


class IacaRevocationRequest(_Body):
    #: The IACA generation: its number (``2``), key label (``mdoc-iaca-2``) or certificate
    #: serial in hex, in the forms ``ds`` takes.
    iaca: str = Field(min_length=1, max_length=SIGNER_NAME_MAX, pattern=SIGNER_NAME_PATTERN)
    #: cACompromise when the IACA's key is known or suspected in other hands.
    reason: Literal["cACompromise", "keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged",
                    "privilegeWithdrawn", "unspecified"]
    #: Destroy its private key once the revocation is committed (POST /trust/key-destructions):
    #: ``key_destroyed_at`` in the answer.
    destroy_key: bool = False


class KeyDestructionRequest(_Body):
    #: The key to destroy, as the revocations name it: an IACA's number (``2``), any issuer
    #: key's label (the mdoc signers' ``mdoc-iaca-2``, ``mdoc-ds-3``, ``mdoc-status-1``,
    #: ``mdoc-vical-signer-1``, ``mdoc-vical-ca-1``; the JPKI's ``jpki-sign-root-g1``,
    #: ``jpki-auth-root-g2-ocsp-1``; the TSA's ``tsa-unit-2``, ``tsa-root-g1``) or a certificate
    #: serial in hex.
    signer: str = Field(min_length=1, max_length=SIGNER_NAME_MAX, pattern=SIGNER_NAME_PATTERN)


class TsaRevocationRequest(_Body):
    #: The TSA unit: its label (``tsa-unit-2``) or certificate serial in hex, in the forms
    #: ``mcred tsa revoke`` takes.
    unit: str = Field(min_length=1, max_length=SIGNER_NAME_MAX, pattern=SIGNER_NAME_PATTERN)
    #: keyCompromise: relying parties rely on none of its time-stamps any more; another reason:
    #: on none made from its revocation (or invalid_since) on.
    reason: Literal["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged",
                    "privilegeWithdrawn", "cACompromise", "unspecified"]
    invalid_since: InvalidSince = Field(None, description=(
        "since when its key is known or suspected to have been compromised, or the unit otherwise invalid (its "
        "clock out of its accuracy, say): the CRL entry's invalidityDate (RFC 5280 5.3.2), an RFC 3339 instant with "
        "its offset, not after now (400 signer-revocation-refused); relying parties then refuse its time-stamps "
        "made from then on. One with no offset, or no date-time string, is 422 naming body.invalid_since"))
    #: Destroy its private key once the revocation is committed (POST /trust/key-destructions):
    #: ``key_destroyed_at`` in the answer.
    destroy_key: bool = False


class ReissueRequest(_Reaches):
    #: The signer taken out of use whose mdocs are replaced: a document signer (label or
    #: serial) or an IACA (number, label or serial).
    signer: str = Field(min_length=1, max_length=SIGNER_NAME_MAX, pattern=SIGNER_NAME_PATTERN)
    #: Phones refreshed at a time.
    workers: int = Field(4, ge=1, le=32)
    #: Reach each phone whose SE is not in this installation through its GP SERAM Local Agent,
    #: a session each (named in the answer's ``seram_sessions``); the others are refreshed here.
    over_the_air: bool = False


class DrillRequest(_Body):
    scenario: str = Field(pattern=r"^[a-z_]{1,32}$")
    phones: int = Field(1, ge=1, le=50)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None


def _credential(c: Credential, renewal_needed: bool, sign_issue_needed: bool) -> dict[str, Any]:
    """A credential's metadata; ``renewal_needed``: its slot is to be renewed after an
    abandoned renewal (:func:`issuer.revocation.needing_renewal`); ``sign_issue_needed``: its
    phone is to be issued a signing certificate after an abandoned issue-sign
    (:func:`issuer.revocation.needing_sign_issue`)."""
    return {"id": c.id, "holder_id": c.holder_id, "phone_id": c.phone_id, "kind": c.kind,
            "status": c.status, "reason": c.reason, "revoked_at": _iso(c.revoked_at),
            "invalid_since": _iso(c.invalid_since),
            "issued_at": _iso(c.issued_at), "not_before": _iso(c.not_before),
            "not_after": _iso(c.not_after), "serial": c.serial, "issuer_key": c.issuer_key,
            "partition": c.partition, "status_list_id": c.status_list_id,
            "status_idx": c.status_idx, "job_ref": c.job_ref, "renewal_needed": renewal_needed,
            "sign_issue_needed": sign_issue_needed}


def _handover(h: Handover) -> dict[str, Any]:
    from issuer.handover import lease_of

    return {"id": h.id, "kind": h.kind, "holder_id": h.holder_id,
            "old_phone_id": h.old_phone_id, "new_phone_id": h.new_phone_id,
            "reason": h.reason, "step": h.step, "state": h.state,
            "detail": _jsonable(h.detail), "created_at": _iso(h.created_at),
            "updated_at": _iso(h.updated_at), "runner": lease_of(h)}


def _claimed(ctx: Context, request: Request, handover_id: str,
             submit: Callable[[dict[str, Any]], JobView]) -> JobView:
    """Claim the workflow for the run a job is to make, in the name of that job (409
    ``/problems/workflow-busy`` while another run holds it, nothing submitted: :func:`_busy`),
    then ``submit(held)``, ``held`` the ``job_id`` and ``hold`` for ``JobRunner.submit`` and the
    ``run_as`` and ``lease`` its runner continues the claim with: the job runner keeps the
    claim alive while the job waits in the queue, however long, and releases it when the job
    ends (specs/handover.md "One run at a time"). Released if the job is not submitted."""
    from issuer import handover
    from issuer.db import new_id

    lease: float = request.app.state.workflow_lease
    job_id = new_id()
    run_as = handover.run_identity(_actor(request), job=job_id)
    try:
        handover.claim(ctx.sessions, handover_id, run_as, actor=_actor(request), lease=lease)
    except handover.WorkflowBusy as exc:
        raise ProblemException(problems.WORKFLOW_BUSY, _busy(request, exc)) from None
    hold = handover.Hold(ctx.sessions, handover_id, run_as, lease)
    try:
        return submit({"job_id": job_id, "hold": hold, "run_as": run_as, "lease": lease})
    except BaseException:
        hold.release()
        raise


def _busy(request: Request, exc: Exception) -> str:
    """A refused run's 409 detail: :class:`issuer.handover.WorkflowBusy`'s, and when the run
    holding the workflow is a job of this service, that job's state and where to follow it."""
    from issuer.handover import job_of

    job_id = job_of(getattr(exc, "runner", None))
    view = _jobs(request).get(job_id) if job_id else None
    if view is None:
        return str(exc)
    return f"{exc}; that run is job {job_id}, {view.state} (GET /jobs/{job_id})"


def _check_reach(ctx: Context, phone_id: str, over_the_air: bool) -> None:
    """Refuse now what a job could not reach: a 404 for a phone the simulator here lacks.
    Over the air, the phone's polls reach this process through any of the service's
    (``tsm.seram_relay`` under ``mcred serve --workers N``)."""
    if not over_the_air:
        _require_simulated_phone(ctx, phone_id)


def _refuse_beside_a_stopped_job(ctx: Context, phone_id: str, over_the_air: bool, kind: str,
                                 resumed_with: str = "") -> None:
    """Before a TSM job of ``kind`` (issue-sign, renew-jpki) on a provisioned phone: the
    phone reachable (:func:`_check_reach`; over the air, one the registry knows), and no job
    of that kind of the phone stopped, whose keys may be in the SE already: that one is
    resumed (``resumed_with`` says with what) or abandoned, not started anew."""
    from tsm.jobs import list_jobs

    _check_reach(ctx, phone_id, over_the_air)
    if over_the_air:
        with ctx.sessions() as s:
            if s.get(Phone, phone_id) is None:
                raise ProblemException(UNKNOWN_PHONE, f"the registry has no phone {phone_id!r}")
    left = list_jobs(ctx.engine, phone_id, kind=kind, unfinished=True)
    if left:
        job = left[-1].id
        article = "an" if kind[0] in "aeiou" else "a"
        raise ProblemException(PROVISIONING_REFUSED, f"phone {phone_id!r} has {article} {kind} TSM job {job} that "
                               f"stopped: POST /tsm-jobs/{job}/resume finishes it{resumed_with}, "
                               f"POST /tsm-jobs/{job}/abandon gives it up")


@contextlib.contextmanager
def _provisioning_refusals() -> Iterator[None]:
    """A composition-root check's refusal (:class:`mcred.provision.ProvisionError`) as a
    ``provisioning-refused`` problem, with the members a client acts on: the expiry and the
    first day of renewal (too early), the day a signing certificate becomes possible
    (under 15)."""
    from mcred.provision import ProvisionError, RenewalTooEarlyError, SigningNotYetError

    try:
        yield
    except RenewalTooEarlyError as exc:
        raise ProblemException(PROVISIONING_REFUSED, str(exc), not_after=exc.not_after.isoformat(),
                               renewable_from=exc.renewable_from.isoformat()) from None
    except SigningNotYetError as exc:
        raise ProblemException(PROVISIONING_REFUSED, str(exc),
                               signing_certificate_from=exc.eligible_from.isoformat()) from None
    except ProvisionError as exc:
        raise ProblemException(PROVISIONING_REFUSED, str(exc)) from None


def _open_session(request: Request, phone_id: str, over_the_air: bool,  # noqa: ANN202
                  wait_s: float | None = None):
    """The GP SERAM session a job will reach the phone by, opened now so that the answer can
    name it (:func:`_with_seram`); None for the simulator here. ``wait_s``: the request's
    ``connect_timeout_s`` (the hub's default when None)."""
    return request.app.state.seram_open(phone_id, connect_timeout_s=wait_s) if over_the_air else None


def _phone_link(request: Request, ctx: Context, phone_id: str, over_the_air: bool,  # noqa: ANN202
                wait_s: float | None = None):
    """:func:`_check_reach`, then :func:`_open_session`."""
    _check_reach(ctx, phone_id, over_the_air)
    return _open_session(request, phone_id, over_the_air, wait_s)


def _with_seram(ctx: Context, accepted: dict[str, Any], link, key: str = "seram") -> dict[str, Any]:  # noqa: ANN001
    """The 202 answer, with the session the phone is to join (``seram``, or ``key``) when
    there is one."""
    if link is not None:
        from mcred.ota import SERAM_PREFIX

        accepted[key] = {"session": link.session_id, "endpoint": ctx.public_url.rstrip("/") + SERAM_PREFIX,
                         "wait_s": link.connect_timeout_s}
    return accepted


def _reaching(params: dict, run, what: str):  # noqa: ANN001, ANN202
    """``run(transmit)``: over the job's GP SERAM session if it has one (ended with the
    outcome whatever it is), else with the simulator here (``transmit`` None)."""
    if params.get("seram") is None:
        return run(None)
    from mcred.ota import run_over

    return run_over(params["seram"], run, what=what)


def serve_workers() -> int:
    """How many processes ``mcred serve --workers N`` started (it says so in
    ``MCRED_SERVE_WORKERS``; 1 otherwise)."""
    raw = os.environ.get("MCRED_SERVE_WORKERS", "1")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def _jobs(request: Request) -> JobRunner:
    return request.app.state.jobs


def _actor(request: Request) -> str:
    p = principal_of(request)
    return p.actor if p else "anonymous"


def _accepted(view: JobView, response: Response) -> dict[str, Any]:
    response.status_code = 202
    response.headers["Location"] = f"/jobs/{view.id}"
    return view.as_dict()


def holder_workflow_responses(accepted_model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a holder's change or card renewal (:func:`operator_router`'s
    ``holder_workflow``): 200 with what was recorded when no phone needed re-issuing, else 202
    with that and the job (of ``accepted_model``'s ``job``) under ``job``, not the job alone."""
    return {
        200: {"description": "recorded; no phone of the holder's needed re-issuing (handover null)",
              "content": {"application/json": {"schema": {"type": "object", "required": ["handover"],
                                                          "properties": {"handover": {"type": "null"}}}}}},
        **accepted(accepted_model, "recorded, and the workflow that re-issues on the holder's phone queued as "
                   "the job under `job` (Location: /jobs/{id})"),
    }


_STATUS_REFUSALS = refusals((problems.UNKNOWN_PHONE, "the registry has no such phone"), problems.REVOCATION_REFUSED)
_HOLDER_WORKFLOW_REFUSALS = refusals(
    (NOT_FOUND, "no such holder"), (NOT_IMPLEMENTED, "not in this build"),
    (VALIDATION, "data the card cannot hold, or nothing to change"),
    (CONFLICT, "a card number taken, a phone of theirs on hold"),
    (problems.WORKFLOW_BUSY, "another run took the workflow just recorded (its id given to POST "
                             "/handovers/{id}/run before this job was handed it)"))
_SIGNER_KEY_REFUSALS = refusals(problems.MDOC_KEYS_MISSING, problems.KEYSTORE_ERROR, problems.KEY_NOT_FOUND)
#: What a route that makes or destroys a TSA key may answer besides its own: the key store.
_TSA_KEY_REFUSALS = refusals(problems.KEYSTORE_ERROR, problems.KEY_NOT_FOUND)
_SIGNER_REVOCATION_REFUSALS = merge(refusals(problems.UNKNOWN_SIGNER, problems.SIGNER_REVOCATION_REFUSED),
                                    _SIGNER_KEY_REFUSALS)


def typed(model: type[BaseModel], responses: dict[int | str, dict[str, Any]] | None = None,
          status: int = 200) -> dict[str, Any]:
    """The route's ``response_model=`` and ``responses=`` for a body built as a dict and
    declared by ``model`` (:mod:`mcred.api_models`): the model documents the ``status``
    answer only; the body is sent as built (``response_model=Any``: neither validated nor
    filtered, the same bytes as before), and the fuzz checks it against the model."""
    out = dict(responses or {})
    out[status] = {**out.get(status, {}), "model": model}
    return {"response_model": Any, "responses": out}


def queued(model: type[BaseModel], responses: dict[int | str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The route's ``response_model=`` and ``responses=`` for a job answered ``202`` with its
    ``Location``: the job declared by ``model``, its kind's schema (:mod:`mcred.api_models`),
    the body sent as built (as :func:`typed`)."""
    return {"response_model": Any, "responses": merge(accepted(model), responses or {})}


def created(pattern: str, what: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that answers ``201`` naming what it made in ``Location``."""
    return {201: {"description": f"created: {what}, named in Location",
                  "headers": {"Location": {"required": True, "description": what,
                                           "schema": {"type": "string", "pattern": pattern}}}}}


UNKNOWN_PHONE = problems.UNKNOWN_PHONE
_Kind = problems.ProblemType
#: The parties' typed errors as the service answers them (registered by
#: :func:`mcred.service._register_party_errors`, declared by the routes that may answer them).
TSM_ERROR = _Kind(409, "tsm-error", "TSM refused")
TSM_MASTER_KEY = _Kind(503, "tsm-master-key", "TSM master key unavailable")
SE_BUSY = _Kind(409, "se-busy", "The SE is busy with another job")
TSM_JOB_INPUT = _Kind(422, "tsm-job-input", "TSM job input refused")
SE_ERROR = _Kind(409, "se-error", "The secure element refused")
SE_STATE = _Kind(409, "se-state", "The secure element is not in a state for this")
PHONE_STATE = _Kind(409, "phone-state", "The phone's record cannot be read")
CONFIGURATION = _Kind(503, "configuration", "The service's configuration cannot work")
READER_REFUSED = _Kind(400, "reader-refused", "The reader refused")
READER_UNAVAILABLE = _Kind(503, "reader-unavailable", "The reader cannot start (its session key file)")
PROVISIONING_REFUSED = _Kind(409, "provisioning-refused", "Provisioning refused")
HOLDER_INVALID = _Kind(422, "holder-invalid", "Holder record invalid")
#: The JPKI secrets a CLI holder file may carry; over HTTP they are the body's own members.
HOLDER_SECRETS = ("pin", "password", "puk")


def _invalid(field: str, message: str) -> ProblemException:
    """A 422 validation problem about one member of the body, shaped as the request
    validation's (``errors``: location and message)."""
    return ProblemException(problems.VALIDATION, f"body.{field}: {message}",
                            errors=[{"location": f"body.{field}", "message": message}])


def _check_password(ctx: Context, holder: Any, password: str | None) -> None:
    """Hold a request that provisions ``holder`` (parsed, or a registered holder's id) to
    :data:`PASSWORD_RULE`: a 422 naming ``body.password`` when it is missing for a holder who
    gets a signing certificate today, or given for one under 15, who gets none."""
    from mcred.provision import holder_birth_date, jpki_slots_for
    from protocols.jpki.eligibility import signing_eligible_from

    if "sign" in jpki_slots_for(ctx, holder):
        if password is None:
            raise _invalid("password", "required: the holder is 15 or older and gets a signing certificate, "
                           "which the signing password protects (a generated one could not be shown over HTTP "
                           "without storing it)")
    elif password is not None:
        birth = holder_birth_date(ctx, holder)
        since = f" (from {signing_eligible_from(birth).isoformat()}, POST /sign-issuances adds it with its " \
                "password)" if birth is not None else ""
        raise _invalid("password", "not taken: the holder is under 15 and gets no signing certificate, so no "
                       f"signing password is set and nothing would use this one{since}; leave it out")


def _still_under_15(ctx: Context, holder: Any, then: str) -> None:
    """In a job accepted without a signing password for a holder under 15: refuse
    (:class:`mcred.provision.ProvisionError`, before anything is issued) if the holder has
    turned 15 since (a job queued over midnight in Japan on their birthday), rather than set a
    password nobody chose or learns; ``then`` says what to do."""
    from mcred.provision import ProvisionError, jpki_slots_for

    if "sign" in jpki_slots_for(ctx, holder):
        raise ProvisionError("the holder has turned 15 since the request was accepted without a signing "
                             f"password: a signing certificate is issued now, and needs one; {then}")


def _require_simulated_phone(ctx: Context, phone_id: str, detail: str | None = None) -> None:
    """A 404 problem unless the simulator has ``phone_id`` (its SE image): checked at the
    door, not as the job's failure."""
    if not (phone_dir(phone_id, ctx.home) / SE_FILE).is_file():
        raise ProblemException(UNKNOWN_PHONE, detail or f"no phone {phone_id!r}")


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # pragma: no cover
        return False


# --- tsm: phones and SEs -------------------------------------------------------------------


def phones_router(ctx: Context) -> APIRouter:
    router = APIRouter(tags=["phones"])

    @router.post("/phones", status_code=201, summary="Create a simulated phone with a "
                 "factory-fresh GP-SE", **typed(PhoneCreated, created(r"^/phones/[^/]+$", "the phone"), 201))
    def create_phone(response: Response, body: NewPhone | None = None) -> dict[str, Any]:
        body = body or NewPhone()
        phone_id = ctx.new_phone(scp11a=body.scp11a, model=body.model, nvm_bytes=body.nvm_bytes)
        response.headers["Location"] = f"/phones/{phone_id}"
        return {"id": phone_id, "model": body.model, "nvm_bytes": body.nvm_bytes}

    @router.get("/phones", summary="The installation's simulated phones by id (limit / offset; by default "
                "the first 1000: every one of a lab's installation, as before paging)", **typed(PhoneList))
    def list_phones(limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
                    offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> dict[str, Any]:
        return {"phones": wallet_sim.list_phones(ctx.home)[offset:offset + limit], "limit": limit, "offset": offset}

    @router.get("/phones/{phone_id}", summary="A phone: model, CPLC, security domains, applets",
                **typed(PhoneDetail, refusals(UNKNOWN_PHONE, (SE_STATE, "the phone's SE image cannot be read"),
                                              (PHONE_STATE, "the phone's record cannot be read"))))
    def show_phone(phone_id: PhoneId) -> dict[str, Any]:
        return _jsonable(wallet_sim.describe(phone_id, ctx.home))

    @router.post("/phones/{phone_id}/factory-reset",
                 summary="Wipe the phone's app data; the SE keeps its content",
                 **typed(PhoneReset, refusals(UNKNOWN_PHONE)))
    def reset_phone(phone_id: PhoneId) -> dict[str, Any]:
        wallet_sim.factory_reset(phone_id, ctx.home)
        return {"id": phone_id, "reset": True, "secure_element": "untouched"}

    return router


# --- issuer: provisioning, credentials, revocation, jobs -----------------------------------


_SETUP_LOCK = threading.Lock()
_SET_UP: set[tuple[str, str]] = set()


def _issuers_set_up(ctx: Context) -> None:
    """Set the CAs, the IACA and the TSM master key up once before jobs use them: their
    first-use setup is not safe when many jobs start at once (two threads, or two worker
    processes, both create the same root key; one reads the master key file empty). Serialised in this process by a lock and across processes
    by a PostgreSQL advisory lock (or, on SQLite, an exclusive lock on a file in the data
    directory); whoever comes second finds the CAs set up."""
    key = (str(ctx.home), ctx.database)
    if key in _SET_UP:
        return
    with _SETUP_LOCK:
        if key in _SET_UP:
            return
        from mcred.provision import issuer_port

        with setup_lock(ctx.engine, ctx.home):
            issuer_port(ctx)
            # The TSM master key is created on first use (a file, or keys in the token):
            # once, here, before jobs use it (found by the 200-job test).
            ctx.master_key  # noqa: B018
        _SET_UP.add(key)


def _provision_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.provision import (
            ProvisioningUnfinishedError,
            parse_holder,
            provision,
            unfinished_job,
        )
        from tsm.errors import MasterKeyError, TsmError

        def run(transmit):  # noqa: ANN001, ANN202 - None: the simulator here
            _issuers_set_up(ctx)
            holder = params["holder_id"] or parse_holder(params["holder"])
            if params["password"] is None:
                _still_under_15(ctx, holder, "provision again with a password")
            progress(0.05, "provisioning")
            return provision(ctx, params["phone_id"], holder, key_type=params["key_type"],
                             mdoc_batch=params["mdoc_batch"], pin=params["pin"],
                             password=params["password"], puk=params["puk"], transmit=transmit,
                             alone=params["holder_id"] is not None)

        try:
            res = _reaching(params, run, "provision")
        except (ProvisioningUnfinishedError, TsmError) as exc:
            job = unfinished_job(ctx, params["phone_id"])
            if job is not None and not isinstance(exc, MasterKeyError):  # the job's failure names it
                exc.add_note(f"TSM job {job.id} stopped: POST /tsm-jobs/{job.id}/resume finishes it, "
                             f"POST /tsm-jobs/{job.id}/abandon gives it up")
            raise
        return _provisioned(res)

    return work


def _provisioned(res) -> dict[str, Any]:  # noqa: ANN001 - mcred.provision.ProvisionResult
    """A provisioning job's result: what was issued, no secret."""
    summary = res.summary()
    return _jsonable({"phone_id": res.phone_id, "holder_id": res.holder_id,
                      "tsm_job_id": res.job_id, "key_type": res.key_type,
                      "mdocs": len(res.mdocs), "seconds": res.seconds,
                      **{k: v for k, v in summary.items() if k.endswith("_certificate")},
                      **({"sign_withheld": summary["sign_withheld"]} if summary.get("sign_withheld") else {})})


def _tsm_job(j) -> dict[str, Any]:  # noqa: ANN001 - tsm.jobs.JobView or JobLine
    return {"id": j.id, "phone_id": j.se_id, "kind": j.kind, "state": j.state,
            "next_step": j.current_step, "steps_done": j.next_step, "steps": len(j.steps),
            "attempts": j.attempts, "actor": j.actor, "error": j.error,
            "created_at": _iso(j.created_at), "updated_at": _iso(j.updated_at)}


def _tsm_job_or_404(ctx: Context, job_id: str):  # noqa: ANN202
    from tsm.errors import JobError
    from tsm.jobs import read_job

    try:
        return read_job(ctx.engine, job_id)
    except JobError:
        raise ProblemException(NOT_FOUND, f"no TSM job {job_id}") from None


def _resume_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.provision import issue_sign, refresh_mdocs, renew_jpki, resume, resume_reset

        def run(transmit):  # noqa: ANN001, ANN202
            _issuers_set_up(ctx)
            progress(0.05, f"resuming TSM job {params['tsm_job_id']}")
            if params["kind"] == "issue-sign":  # with the password it sealed, not returned
                return _sign_issued(issue_sign(ctx, params["phone_id"], job_id=params["tsm_job_id"],
                                               actor=params.get("actor", "api"), transmit=transmit))
            if params["kind"] == "renew-jpki":
                return _renewed(renew_jpki(ctx, params["phone_id"], job_id=params["tsm_job_id"],
                                           actor=params.get("actor", "api"), transmit=transmit))
            if params["kind"] == "refresh-mdoc":
                res = refresh_mdocs(ctx, params["phone_id"], job_id=params["tsm_job_id"], transmit=transmit)
                return _jsonable(res.summary())
            if params["kind"] == "reset-secrets":  # the values the client gave stay unreturned
                return resume_reset(ctx, params["tsm_job_id"], actor=params.get("actor", "api"),
                                    transmit=transmit).summary()
            return _provisioned(resume(ctx, params["tsm_job_id"], transmit=transmit))

        return _reaching(params, run, "resume")

    return work


def _abandon_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.provision import abandon

        progress(0.05, f"abandoning TSM job {params['tsm_job_id']}, its phone's SE wiped over the air")
        return _reaching(params, lambda transmit: abandon(ctx, params["tsm_job_id"], params["reason"],
                                                          actor=params.get("actor", "api"),
                                                          transmit=transmit).summary(), "abandon")

    return work


def _pin_reset_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.provision import reset_secrets

        progress(0.05, "resetting the holder's secrets")
        res = _reaching(params, lambda transmit: reset_secrets(
            ctx, params["phone_id"], slots=tuple(params["slots"]), puk=params["puk"], pin=params["pin"],
            password=params["password"], new_puk=params["puk_value"], actor=params.get("actor", "api"),
            transmit=transmit), "reset")
        return res.summary()

    return work


def _issue_sign_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.provision import issue_sign
        from tsm.errors import TsmError

        def run(transmit):  # noqa: ANN001, ANN202 - None: the simulator here
            _issuers_set_up(ctx)
            progress(0.05, "issuing a signing certificate onto the phone")
            return issue_sign(ctx, params["phone_id"], password=params["password"], actor=params.get("actor", "api"),
                              transmit=transmit)

        try:
            return _sign_issued(_reaching(params, run, "issue-sign"))
        except TsmError as exc:
            _name_stopped_job(ctx, exc, params["phone_id"], "issue-sign")
            raise

    return work


def _name_stopped_job(ctx: Context, exc: Exception, phone_id: str, kind: str) -> None:
    """Add to ``exc`` (a TSM error that stopped a job of ``kind``) the routes that resume or
    abandon the phone's unfinished job of that kind; a master-key error names none (no job
    of it can run until the key is back)."""
    from tsm.errors import MasterKeyError
    from tsm.jobs import list_jobs

    left = list_jobs(ctx.engine, phone_id, kind=kind, unfinished=True)
    if left and not isinstance(exc, MasterKeyError):  # the job's failure names it
        exc.add_note(f"TSM job {left[-1].id} stopped: POST /tsm-jobs/{left[-1].id}/resume finishes it, "
                     f"POST /tsm-jobs/{left[-1].id}/abandon gives it up")


def _sign_issued(res) -> dict[str, Any]:  # noqa: ANN001 - mcred.provision.IssueSignResult
    """An issue-sign job's result: the certificate issued, never the password."""
    summary = res.summary()
    return {"phone_id": res.phone_id, "holder_id": res.holder_id, "tsm_job_id": res.job_id,
            "resumed": res.resumed, "sign_certificate": summary["sign_certificate"], "seconds": res.seconds}


def _renew_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.provision import renew_jpki
        from tsm.errors import TsmError

        def run(transmit):  # noqa: ANN001, ANN202 - None: the simulator here
            _issuers_set_up(ctx)
            progress(0.05, "renewing the phone's JPKI certificates")
            return renew_jpki(ctx, params["phone_id"], slot=params["slot"], early=params["early"],
                              reason=params["reason"], actor=params.get("actor", "api"), transmit=transmit)

        try:
            return _renewed(_reaching(params, run, "renew"))
        except TsmError as exc:
            _name_stopped_job(ctx, exc, params["phone_id"], "renew-jpki")
            raise

    return work


def _renewed(res) -> dict[str, Any]:  # noqa: ANN001 - mcred.provision.RenewResult
    """A renew-jpki job's result: the certificates issued and those they replaced, no secret."""
    summary = res.summary()
    return {"phone_id": res.phone_id, "holder_id": res.holder_id, "tsm_job_id": res.job_id,
            "resumed": res.resumed, "renewed": summary["renewed"], "sign_withheld": res.sign_withheld,
            "seconds": res.seconds}


def _kloc_move_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.kloc import move_se

        progress(0.05, "moving the phone's SE to the TSM's current KLOC CA")
        return _reaching(params, lambda transmit: move_se(ctx, params["phone_id"], actor=params.get("actor", "api"),
                                                          check=params.get("check", False), transmit=transmit),
                         "rotate-kloc").summary()

    return work


def _refresh_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.provision import refresh_mdocs

        def run(transmit):  # noqa: ANN001, ANN202
            _issuers_set_up(ctx)
            progress(0.05, "refreshing the phone's MSOs")
            return refresh_mdocs(ctx, params["phone_id"], batch=params["mdoc_batch"],
                                 rotate=not params["keep_keys"], actor=params.get("actor", "api"),
                                 transmit=transmit)

        return _jsonable(_reaching(params, run, "refresh").summary())

    return work


def _reissue_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.reissue import reissue_signed_by

        _issuers_set_up(ctx)
        progress(0.05, "re-issuing the signer's phones")

        def each(p, done: int, total: int) -> None:  # noqa: ANN001 - a PhoneReissue
            progress(0.05 + 0.9 * done / total, f"{p.phone_id}: {p.outcome} ({done} of {total})")

        return reissue_signed_by(ctx, params["signer"], actor=params.get("actor", "api"),
                                 workers=params.get("workers", 4), progress=each,
                                 links=params.get("seram_sessions")).to_json()

    return work


#: The step of each workflow kind that provisions a phone (the one a run's secrets go to).
_PROVISIONING_STEP = {"model_change": "provision_new", "renewal": "reissue_all"}


def _handover_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.handover_actions import HandoverActions

        actions = HandoverActions(ctx, given=params.get("given") or {})
        if any(g.get("password") is None for g in actions.given.values()):
            _still_under_15(ctx, _workflow_holder(ctx, params["handover_id"]),
                            f"run it again (POST /handovers/{params['handover_id']}/run) giving a password")
        progress(0.05, "running the workflow's remaining steps")

        # the run the route claimed the workflow for (specs/handover.md "One run at a time")
        runner = actions.runner(params.get("actor", "api"), run_as=params.get("run_as"), lease=params.get("lease"))

        def run(*transmits):  # noqa: ANN002, ANN202 - the new phone's (and the old one's), over the air
            if transmits:  # over the air: the phones' sessions, the new one's first
                phones = (params["new_phone_id"], params.get("old_phone_id"))
                actions.reach.update(zip(phones, transmits, strict=False))
            return runner.run(params["handover_id"])

        links = [link for link in (params.get("seram"), params.get("seram_old")) if link is not None]
        with runner.holding(params["handover_id"]):  # also while the phones' agents are awaited
            if links:
                from mcred.ota import run_over_all

                h = run_over_all(links, run, what="handover")
            else:
                h = run()
        # New phones' generated secrets stay out of the job row (see specs/api.md).
        return {"handover_id": h.id, "step": h.step, "state": h.state,
                "new_phones_with_generated_secrets": sorted(p for p, r in actions.secrets.items() if r.generated)}

    return work


def _card_renewal_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.handover_actions import HandoverActions

        actions = HandoverActions(ctx, key_type=params["key_type"], mdoc_batch=params["mdoc_batch"],
                                  given={params["phone_id"]: {k: params[k] for k in ("pin", "password", "puk")}})
        if params["password"] is None:
            _still_under_15(ctx, _workflow_holder(ctx, params["handover_id"]),
                            f"run it (POST /handovers/{params['handover_id']}/run) giving pin, password and puk")
        progress(0.05, "re-issuing the phone's credentials from the new card")
        h = actions.runner(params.get("actor", "api"), run_as=params.get("run_as"),
                           lease=params.get("lease")).run(params["handover_id"])
        return {"handover_id": h.id, "step": h.step, "state": h.state}

    return work


def _workflow_holder(ctx: Context, handover_id: str) -> str:
    with ctx.sessions() as s:
        return s.get(Handover, handover_id).holder_id


def _drill_work(ctx: Context):  # noqa: ANN202
    def work(params: dict, progress) -> dict:  # noqa: ANN001
        from mcred.drills import run_drill

        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            progress(done[0] / max(1, params["phones"]), f"{done[0]} of {params['phones']}")

        report = run_drill(ctx, params["scenario"], phones=params["phones"], progress=tick)
        return _jsonable(report.to_json())

    return work


def issuer_router(ctx: Context) -> APIRouter:
    router = APIRouter(tags=["issuer"])

    @router.post("/provisioning", status_code=202, summary="Provision both credentials into a "
                 "phone (a job)", **queued(ProvisionJob, refusals(
                     (NOT_IMPLEMENTED, "not in this build"), (VALIDATION, "not exactly one of holder, holder_id; "
                                                              "a holder's portrait or secret; password missing "
                                                              "for a holder who gets a signing certificate, or "
                                                              "given for one under 15 (body.password)"),
                     (HOLDER_INVALID, "the holder record"), (UNKNOWN_PHONE, "no such simulated phone"),
                     (NOT_FOUND, "no holder holder_id"),
                     (CONFLICT, "the holder's phone (holder_id's, or the registered holder's the holder "
                                "record names: the same identity fields) has live credentials: a handover "
                                "moves them"))))
    def start_provisioning(body: ProvisionRequest, request: Request,
                           response: Response) -> dict[str, Any]:
        if not _available("mcred.provision"):
            raise ProblemException(NOT_IMPLEMENTED, "provisioning (mcred.provision) is not "
                                   "part of this build")
        from mcred.provision import parse_holder

        if (body.holder is None) == (body.holder_id is None):
            raise ProblemException(problems.VALIDATION, "give exactly one of holder, holder_id")
        if body.holder is not None:
            if "portrait" in body.holder:
                raise _invalid("holder.portrait", "portraits are not accepted over HTTP (a server path); "
                               "use the CLI")
            for name in HOLDER_SECRETS:  # a holder file's secrets: here the body's own, one place
                if name in body.holder:
                    raise _invalid(f"holder.{name}", f"the {name} goes at the top level of the body "
                                   f"({name!r} beside 'holder'"
                                   + (", when the holder gets a signing certificate" if name == "password" else
                                      ", required there")
                                   + "), not inside the holder record: one place for each secret, never two "
                                   "that could differ")
            parsed = parse_holder(body.holder)  # refuse a bad holder now, naming the field
        _check_reach(ctx, body.phone_id, body.over_the_air)
        from mcred.provision import (
            ProvisionError,
            ProvisioningUnfinishedError,
            UnknownHolderError,
            check_holder_for_new_phone,
            registered_holder,
        )

        try:  # now, not as the job's failure: a holder whose phone has live credentials moves by a
            # handover, the holder named by id or the same person given again (a registered holder)
            known = body.holder_id if body.holder is None else registered_holder(ctx, parsed)
            if known is not None:
                check_holder_for_new_phone(ctx, known, body.phone_id)
        except UnknownHolderError as exc:
            raise ProblemException(NOT_FOUND, str(exc)) from None
        except ProvisioningUnfinishedError as exc:  # the holder's own provisioning of the phone stopped
            raise ProblemException(problems.CONFLICT, f"{exc}; over the API: POST /tsm-jobs/{exc.job_id}/resume "
                                   f"finishes it, POST /tsm-jobs/{exc.job_id}/abandon gives it up") from None
        except ProvisionError as exc:
            raise ProblemException(problems.CONFLICT, str(exc)) from None
        _check_password(ctx, body.holder_id if body.holder is None else parsed, body.password)
        jobs = _jobs(request)
        jobs.register("provision", _provision_work(ctx))
        # The holder record and the secrets go to the work function, not into the job row.
        public = {"phone_id": body.phone_id, "holder_id": body.holder_id,
                  "holder": "inline" if body.holder is not None else None,
                  "key_type": body.key_type, "mdoc_batch": body.mdoc_batch}
        private = {"holder": body.holder, "pin": body.pin, "password": body.password,
                   "puk": body.puk}
        link = _open_session(request, body.phone_id, body.over_the_air, body.connect_timeout_s)  # reach checked above
        public["over_the_air"] = body.over_the_air
        view = jobs.submit("provision", public, private={**private, "seram": link}, scope="issuer",
                           actor=_actor(request))
        return _with_seram(ctx, _accepted(view, response), link)

    @router.post("/pin-resets", status_code=202, summary="Reset a holder's JPKI secrets on the "
                 "phone through the TSM (a job): new values, fresh retry counters; nothing revoked",
                 **queued(PinResetJob, refusals((VALIDATION, "a slot twice; pin or password not given "
                                                             "exactly when its slot is reset"),
                                                (UNKNOWN_PHONE, "no such simulated phone"))))
    def start_pin_reset(body: PinResetRequest, request: Request, response: Response) -> dict[str, Any]:
        if len(set(body.slots)) != len(body.slots):
            raise ProblemException(problems.VALIDATION, "slots: each of auth and sign at most once")
        for slot, value, name in (("auth", body.pin, "pin"), ("sign", body.password, "password")):
            if (slot in body.slots) != (value is not None):
                raise ProblemException(problems.VALIDATION, f"{name}: given exactly when {slot} is reset "
                                       "(a generated secret could not be shown over HTTP without storing it)")
        link = _phone_link(request, ctx, body.phone_id, body.over_the_air, body.connect_timeout_s)
        jobs = _jobs(request)
        jobs.register("pin-reset", _pin_reset_work(ctx))
        view = jobs.submit("pin-reset", {"phone_id": body.phone_id, "slots": list(body.slots),
                                         "puk": body.puk is not None, "over_the_air": body.over_the_air},
                           private={"pin": body.pin, "password": body.password, "puk_value": body.puk,
                                    "seram": link},
                           scope="issuer", actor=_actor(request))
        return _with_seram(ctx, _accepted(view, response), link)

    @router.get("/holders", summary="Registered holders, oldest first (limit / offset), or the one "
                "holding a card number: name, card, phones, credentials by kind and status",
                **typed(HolderList))
    def holders(card_number: Annotated[str | None, Query(pattern=r"^[0-9]{16}$")] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> dict[str, Any]:
        from issuer.holders import summaries

        return {"holders": summaries(ctx.sessions, card_number=card_number, limit=limit, offset=offset),
                "limit": limit, "offset": offset}

    @router.get("/holders/{holder_id}", summary="One holder, with the registered card-substitute "
                "data (no portrait)", **typed(HolderDetail, refusals((NOT_FOUND, "no such holder"))))
    def holder(holder_id: Hex32) -> dict[str, Any]:
        from issuer.holders import summaries

        rows = summaries(ctx.sessions, holder_id, with_data=True)
        if not rows:
            raise ProblemException(NOT_FOUND, f"no holder {holder_id}")
        return _jsonable(rows[0])

    @router.get("/tsm-jobs", summary="The TSM's jobs, oldest first (limit / offset): kind, "
                "state, the step it stopped before, attempts, error", **typed(TsmJobList))
    def tsm_jobs(phone_id: Annotated[str | None, Query(pattern=PHONE_ID_PATTERN, max_length=63)] = None,
                 unfinished: bool = False, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> dict[str, Any]:
        from tsm.jobs import job_lines

        jobs = job_lines(ctx.engine, phone_id, unfinished=unfinished, limit=limit, offset=offset)
        return {"jobs": [_tsm_job(j) for j in jobs], "limit": limit, "offset": offset}

    @router.post("/tsm-jobs/{job_id}/resume", status_code=202,
                 summary="Finish a provisioning, an mdoc refresh, a secrets reset, a signing certificate's "
                 "issuance or a certificate renewal whose TSM job stopped (a job)",
                 **queued(TsmResumeJob, refusals((NOT_FOUND, "no such TSM job"),
                                                 (CONFLICT, "a job of another kind, or ended"))))
    def resume_tsm_job(job_id: Hex32, request: Request, response: Response,
                       body: OverTheAirRequest | None = None) -> dict[str, Any]:
        from tsm.jobs import ENDED

        job = _tsm_job_or_404(ctx, job_id)
        if job.kind not in ("provision", "refresh-mdoc", "reset-secrets", "issue-sign", "renew-jpki"):
            raise ProblemException(problems.CONFLICT, f"TSM job {job_id} is a {job.kind}: it is "
                                   "resumed by the workflow that made it")
        if job.state in ENDED:
            raise ProblemException(problems.CONFLICT, f"TSM job {job_id} is {job.state}: nothing to resume")
        ota = body is not None and body.over_the_air
        link = _phone_link(request, ctx, job.se_id, True, body.connect_timeout_s) if ota else None
        jobs = _jobs(request)
        jobs.register("tsm-resume", _resume_work(ctx))
        view = jobs.submit("tsm-resume", {"tsm_job_id": job_id, "kind": job.kind, "phone_id": job.se_id,
                                          "over_the_air": ota},
                           private={"seram": link}, scope="issuer", actor=_actor(request))
        return _with_seram(ctx, _accepted(view, response), link)

    @router.post("/tsm-jobs/{job_id}/abandon", summary="Give up a TSM job that cannot finish: "
                 "revoke what it issued; a provisioning's SE is wiped and its phone let go",
                 **typed(TsmJobAbandoned, merge(accepted(TsmAbandonJob, "over_the_air: a job that wipes the SE "
                                                "through the phone's Local Agent (the answer's seram)"), refusals(
                     (NOT_FOUND, "no such TSM job"), (CONFLICT, "ended, or not a provisioning (over the air)"),
                     (TSM_ERROR, "the TSM could not wipe the SE"), (SE_BUSY, "another job holds the SE"),
                     (SE_ERROR, "the SE refused the wipe"), (SE_STATE, "the phone's SE image cannot be read"),
                     (TSM_MASTER_KEY, "the TSM's master key cannot be read")))))
    def abandon_tsm_job(job_id: Hex32, body: AbandonRequest, request: Request,
                        response: Response) -> dict[str, Any]:
        from mcred.provision import abandon
        from tsm.errors import JobInputError
        from tsm.jobs import ENDED

        job = _tsm_job_or_404(ctx, job_id)
        if body.over_the_air:
            if job.kind != "provision":
                raise ProblemException(problems.CONFLICT, f"TSM job {job_id} is a {job.kind}: only a "
                                       "provisioning's abandon wipes the phone, over the air or not")
            if job.state in ENDED:
                raise ProblemException(problems.CONFLICT, f"TSM job {job_id} is {job.state}: nothing to abandon")
            link = _phone_link(request, ctx, job.se_id, True, body.connect_timeout_s)
            jobs = _jobs(request)
            jobs.register("tsm-abandon", _abandon_work(ctx))
            view = jobs.submit("tsm-abandon", {"tsm_job_id": job_id, "phone_id": job.se_id, "reason": body.reason,
                                               "actor": _actor(request), "over_the_air": True},
                               private={"seram": link}, scope="issuer", actor=_actor(request))
            return _with_seram(ctx, _accepted(view, response), link)
        try:
            return abandon(ctx, job_id, body.reason, actor=_actor(request)).summary()
        except JobInputError as exc:  # done (or finished while this call waited for the SE)
            raise ProblemException(problems.CONFLICT, str(exc)) from None

    @router.post("/mdoc-refreshes", status_code=202, summary="Issue fresh MSOs into a "
                 "provisioned phone, new device keys in its SE (a job); the old MSOs are "
                 "superseded",
                 **queued(MdocRefreshJob, refusals((UNKNOWN_PHONE, "no such simulated phone"))))
    def start_refresh(body: RefreshRequest, request: Request, response: Response) -> dict[str, Any]:
        link = _phone_link(request, ctx, body.phone_id, body.over_the_air, body.connect_timeout_s)
        jobs = _jobs(request)
        jobs.register("mdoc-refresh", _refresh_work(ctx))
        view = jobs.submit("mdoc-refresh", {"phone_id": body.phone_id, "mdoc_batch": body.mdoc_batch,
                                            "keep_keys": body.keep_keys, "actor": _actor(request),
                                            "over_the_air": body.over_the_air},
                           private={"seram": link}, scope="issuer", actor=_actor(request))
        return _with_seram(ctx, _accepted(view, response), link)

    @router.post("/sign-issuances", status_code=202, summary="Issue a signing certificate onto the provisioned "
                 "phone of a holder who has turned 15 (a job): the TSM generates its key in the SE, writes the "
                 "certificate and sets the password given",
                 **queued(IssueSignJob, refusals(
                     (UNKNOWN_PHONE, "no such simulated phone (over the air: none the registry knows)"),
                     (PROVISIONING_REFUSED, "the holder is under 15 (the detail, and the member "
                                            "signing_certificate_from, name the first day one may be issued); "
                                            "the phone holds a live signing certificate already, or no live "
                                            "user-authentication certificate, or is not registered to a holder "
                                            "or not active; an issue-sign TSM job of the phone stopped (POST "
                                            "/tsm-jobs/{id}/resume finishes it)"))))
    def start_sign_issuance(body: SignIssuance, request: Request, response: Response) -> dict[str, Any]:
        from mcred.provision import check_issue_sign

        # its key may be in the SE already: finished with the password it sealed, not started anew
        _refuse_beside_a_stopped_job(ctx, body.phone_id, body.over_the_air, "issue-sign",
                                     " (with the password it was given)")
        with _provisioning_refusals():  # refused now, as the command line refuses, not as the job's failure
            check_issue_sign(ctx, body.phone_id)
        link = _open_session(request, body.phone_id, body.over_the_air, body.connect_timeout_s)
        jobs = _jobs(request)
        jobs.register("issue-sign", _issue_sign_work(ctx))
        view = jobs.submit("issue-sign", {"phone_id": body.phone_id, "over_the_air": body.over_the_air},
                           private={"password": body.password, "seram": link}, scope="issuer", actor=_actor(request))
        return _with_seram(ctx, _accepted(view, response), link)

    @router.post("/certificate-renewals", status_code=202, summary="Renew the JPKI certificates of a provisioned "
                 "phone (電子証明書の更新, a job): new keys generated in its SE, new certificates written, the old "
                 "ones superseded; the holder's PIN and password stay",
                 **queued(RenewJob, refusals(
                     (UNKNOWN_PHONE, "no such simulated phone (over the air: none the registry knows)"),
                     (VALIDATION, "early without a reason, or a reason without early"),
                     (PROVISIONING_REFUSED, "the certificate has more than 3 months left (the detail, and the "
                                            "members not_after and renewable_from, name its expiry and the first "
                                            "day it may be renewed; early with a reason drills it); the slot asked "
                                            "holds no certificate to renew, or one on hold; the signing "
                                            "certificate of a holder under 15 (signing_certificate_from); the card "
                                            "has expired or expires with the certificate (a card renewal); the "
                                            "phone is not registered to a holder or not active; a renew-jpki TSM "
                                            "job of the phone stopped (POST /tsm-jobs/{id}/resume finishes it)"))))
    def start_renewal(body: CertificateRenewal, request: Request, response: Response) -> dict[str, Any]:
        from mcred.provision import check_renew_jpki

        if body.early != (body.reason is not None):
            raise _invalid("reason", "an early renewal needs its reason (audited), and only an early one takes one")
        # its keys may be in the SE already: finished, not started anew
        _refuse_beside_a_stopped_job(ctx, body.phone_id, body.over_the_air, "renew-jpki")
        with _provisioning_refusals():  # refused now, as the command line refuses, not as the job's failure
            check_renew_jpki(ctx, body.phone_id, body.slot, early=body.early)
        link = _open_session(request, body.phone_id, body.over_the_air, body.connect_timeout_s)
        jobs = _jobs(request)
        jobs.register("renew-jpki", _renew_work(ctx))
        view = jobs.submit("renew-jpki", {"phone_id": body.phone_id, "slot": body.slot, "early": body.early,
                                          "reason": body.reason, "over_the_air": body.over_the_air},
                           private={"seram": link}, scope="issuer", actor=_actor(request))
        return _with_seram(ctx, _accepted(view, response), link)

    @router.get("/credentials", summary="Credentials in the registry, oldest first; with expiring_within, the "
                "valid JPKI certificates whose holders need an expiry notice, soonest expiry first",
                **typed(CredentialList))
    def list_credentials(phone_id: Annotated[str | None, Query(max_length=64)] = None,
                         kind: Literal["jpki-sign", "jpki-auth", "mdoc"] | None = None,
                         status: Literal["valid", "hold", "revoked"] | None = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                         offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                         expiring_within: Annotated[int | None, Query(ge=0, le=NOTICE_MAX_DAYS, description=(
                             "days: only the valid JPKI certificates whose expiry falls within this many days from "
                             "now, or has passed (not yet renewed), soonest expiry first (then by id): whose holders "
                             "need an expiry notice (有効期限通知書; 90, the renewal window: POST "
                             "/certificate-renewals), as `mcred credential list --expiring-within DAYS`. An integer "
                             f"0..{NOTICE_MAX_DAYS} (ten years: no certificate runs longer); refused (422) with kind "
                             "mdoc or a status other than valid"))] = None) -> dict[str, Any]:
        from issuer.expiry_notices import NoticeQueryError, check_filters, expiring

        # a stable order (issuance times can tie), so that pages neither skip nor repeat
        # read off ix_credential_issued; the bodies (certificates, IssuerSigned) are not shown
        q = (select(Credential).options(defer(Credential.body)).order_by(Credential.issued_at, Credential.id)
             .offset(offset).limit(limit))
        if phone_id:
            q = q.where(Credential.phone_id == phone_id)
        if expiring_within is not None:  # soonest first, as the notices go out (ix_credential_expiry)
            try:
                check_filters(kind, status)
            except NoticeQueryError as exc:
                raise ProblemException(problems.VALIDATION, f"query.expiring_within: {exc}", errors=[
                    {"location": "query.expiring_within", "message": str(exc)}]) from None
            q = expiring(q, expiring_within, kind)
        else:  # filters of the rows ix_credential_issued gives in order, not ix_credential_expiry's kind
            if kind:
                q = q.where(unindexed(Credential.kind) == kind)
            if status:
                q = q.where(Credential.status == status)
        from issuer.revocation import needing_renewal, needing_sign_issue

        with ctx.sessions() as s:
            rows = list(s.scalars(q))
            needed = needing_renewal(s, rows)  # a page with a certificate revoked by an abandoned renewal
            issue = needing_sign_issue(s, rows)  # ... or by an abandoned issue-sign
            return {"credentials": [_credential(c, c.id in needed, c.id in issue) for c in rows],
                    "limit": limit, "offset": offset}

    @router.get("/credentials/{credential_id}", summary="One credential (metadata)",
                **typed(CredentialOut, refusals((NOT_FOUND, "no such credential"))))
    def show_credential(credential_id: Hex32) -> dict[str, Any]:
        with ctx.sessions() as s:
            c = s.get(Credential, credential_id)
            if c is None:
                raise ProblemException(NOT_FOUND, f"no credential {credential_id}")
            from issuer.revocation import needing_renewal, needing_sign_issue

            return _credential(c, bool(needing_renewal(s, [c])), bool(needing_sign_issue(s, [c])))

    def _phone_known(phone_id: str) -> None:
        with ctx.sessions() as s:
            if s.get(Phone, phone_id) is None:
                raise ProblemException(UNKNOWN_PHONE, f"the registry has no phone {phone_id!r}")

    def _changes(changes: list) -> dict[str, Any]:
        return {"changes": [{"credential_id": c.credential_id, "kind": c.kind,
                             "serial": c.serial, "before": c.before, "after": c.after,
                             "reason": c.reason,
                             **({"amended_from": c.amended_from} if c.amended_from else {})}
                            for c in changes]}

    @router.post("/revocations", summary="Revoke (or hold) a phone's credentials",
                 **typed(StatusChanges, _STATUS_REFUSALS))
    def revoke(body: RevocationRequest, request: Request) -> dict[str, Any]:
        from issuer.revocation import revoke as do_revoke

        _phone_known(body.phone_id)
        return _changes(do_revoke(ctx.sessions, body.phone_id, body.reason, body.credential,
                                  actor=_actor(request), invalid_since=body.invalid_since))

    @router.post("/holds", summary="Put a phone's credentials on hold (certificateHold)",
                 **typed(StatusChanges, _STATUS_REFUSALS))
    def hold(body: HoldRequest, request: Request) -> dict[str, Any]:
        from issuer.revocation import hold as do_hold

        _phone_known(body.phone_id)
        return _changes(do_hold(ctx.sessions, body.phone_id, body.credential,
                                actor=_actor(request)))

    @router.post("/holds/release", summary="Lift a phone's holds (removeFromCRL)",
                 **typed(StatusChanges, _STATUS_REFUSALS))
    def release(body: HoldRequest, request: Request) -> dict[str, Any]:
        from issuer.revocation import release as do_release

        _phone_known(body.phone_id)
        return _changes(do_release(ctx.sessions, body.phone_id, body.credential,
                                   actor=_actor(request)))

    return router


def jobs_router() -> APIRouter:
    router = APIRouter(tags=["jobs"])

    def _visible(request: Request, view: JobView | None) -> bool:
        p = principal_of(request)
        return view is not None and p is not None and p.allows(view.scope)

    @router.get("/jobs/{job_id}", summary="A job's state, progress and result",
                **typed(Job, refusals((NOT_FOUND, "no such job visible to this token"))))
    def get_job(job_id: Hex32, request: Request) -> dict[str, Any]:
        view = _jobs(request).get(job_id)
        if not _visible(request, view):
            raise ProblemException(NOT_FOUND, f"no job {job_id} visible to this token")
        assert view is not None
        return view.as_dict()

    @router.get("/jobs", summary="Jobs visible to this token, newest first (limit / offset)",
                **typed(JobList))
    def list_jobs(request: Request,
                  kind: JobKind | None = None,
                  state: Literal["queued", "running", "succeeded", "failed",
                                 "interrupted"] | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> dict[str, Any]:
        p = principal_of(request)
        # the token's view in the query itself, so that a page is full and the next one follows it
        scopes = p.visible_scopes if p is not None else frozenset()
        views = _jobs(request).list(kind=kind, state=state, limit=limit, offset=offset, scopes=scopes)
        return {"jobs": [v.as_dict() for v in views], "limit": limit, "offset": offset}

    return router


# --- operator: handovers, drills, audit, trust material ------------------------------------


def operator_router(ctx: Context) -> APIRouter:
    router = APIRouter(tags=["operator"])

    @router.post("/handovers", status_code=201, summary="Record a handover / revocation "
                 "workflow (nothing runs yet)",
                 **typed(HandoverOut, merge(created(r"^/handovers/[0-9a-f]{32}$", "the handover"), refusals(
                     (NOT_FOUND, "no such holder"), (UNKNOWN_PHONE, "no simulated new phone to hand over to"),
                     (problems.WORKFLOW_ERROR, "the phones do not fit the kind of workflow"))), 201))
    def create_handover(body: HandoverRequest, request: Request, response: Response) -> dict[str, Any]:
        from issuer import handover
        from mcred.handover_actions import mdoc_refusal

        with ctx.sessions() as s:
            from issuer.db import Holder

            if s.get(Holder, body.holder_id) is None:
                raise ProblemException(NOT_FOUND, f"no holder {body.holder_id}")
        if body.new_phone_id and not body.over_the_air:  # its provisioning step would fail on it
            _require_simulated_phone(ctx, body.new_phone_id,
                                     f"no simulated phone {body.new_phone_id!r} to hand over to")
        hid = handover.create(ctx.sessions, kind=body.kind, holder_id=body.holder_id,
                              old_phone_id=body.old_phone_id, new_phone_id=body.new_phone_id,
                              actor=_actor(request), mdoc_refusal=mdoc_refusal(ctx))
        response.headers["Location"] = f"/handovers/{hid}"
        with ctx.sessions() as s:
            return _handover(s.get(Handover, hid))

    @router.get("/handovers", summary="Workflows, newest first (limit / offset), by state, kind and "
                "holder: state=failed lists those a step stopped, to run again", **typed(HandoverList))
    def list_handovers(state: Literal["running", "failed", "done"] | None = None,
                       kind: Literal["model_change", "resale_report", "lost_hold", "found", "lost_confirmed",
                                     "renewal", "death", "basic_four_change"] | None = None,
                       holder_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                       offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> dict[str, Any]:
        from issuer.handover import workflows

        rows = workflows(ctx.sessions, state=state, kind=kind, holder_id=holder_id, limit=limit, offset=offset)
        return {"handovers": [_handover(h) for h in rows], "limit": limit, "offset": offset}

    @router.get("/handovers/{handover_id}", summary="A workflow's step, state and timings",
                **typed(HandoverOut, refusals((NOT_FOUND, "no such handover"))))
    def show_handover(handover_id: Hex32) -> dict[str, Any]:
        with ctx.sessions() as s:
            h = s.get(Handover, handover_id)
            if h is None:
                raise ProblemException(NOT_FOUND, f"no handover {handover_id}")
            return _handover(h)

    @router.post("/handovers/{handover_id}/run", status_code=202,
                 summary="Run a workflow's remaining steps (a job)",
                 **queued(HandoverJob, refusals(
                     (NOT_FOUND, "no such handover"), (NOT_IMPLEMENTED, "not in this build"),
                     (CONFLICT, "no new phone to reach, or no old one to wipe, over the air; secrets for a "
                                "phone provisioned already"),
                     (problems.WORKFLOW_BUSY, "another run holds the workflow (a job of an earlier run, "
                                              "queued or running, or a command line's): the detail names "
                                              "it and since when, and an earlier run's job and its state"),
                     (VALIDATION, "wipe_over_the_air without over_the_air; secrets for a workflow that "
                                  "provisions no phone; password missing for a holder who gets a signing "
                                  "certificate, or given for one under 15 (body.password)"))))
    def run_handover(handover_id: Hex32, request: Request, response: Response,
                     body: HandoverRunRequest | None = None) -> dict[str, Any]:
        from issuer.handover import WORKFLOWS

        with ctx.sessions() as s:
            h = s.get(Handover, handover_id)
            if h is None:
                raise ProblemException(NOT_FOUND, f"no handover {handover_id}")
            new_phone, old_phone, kind, at, holder_id = h.new_phone_id, h.old_phone_id, h.kind, h.step, h.holder_id
        given = body.secrets() if body is not None else None
        if given is not None:
            step = _PROVISIONING_STEP.get(kind)
            if step is None:
                raise ProblemException(problems.VALIDATION, f"a {kind} workflow provisions no phone: "
                                       "pin, password and puk have nothing to go to")
            steps = WORKFLOWS[kind]
            if at != "created" and steps.index(at) >= steps.index(step):
                raise ProblemException(problems.CONFLICT, f"handover {handover_id} provisioned its phone "
                                       "already: its secrets are set (a PIN reset changes them: POST /pin-resets)")
            _check_password(ctx, holder_id, given["password"])
        if not _available("mcred.handover_actions"):
            raise ProblemException(NOT_IMPLEMENTED, "the handover step actions "
                                   "(mcred.handover_actions) are not part of this build")
        ota = body is not None and body.over_the_air
        if ota and new_phone is None:
            raise ProblemException(problems.CONFLICT, f"handover {handover_id} provisions no new phone: "
                                   "nothing to reach over the air")
        wipe = body is not None and body.wipe_over_the_air
        if wipe and not ota:
            raise ProblemException(problems.VALIDATION, "wipe_over_the_air goes with over_the_air")
        if wipe and old_phone is None:
            raise ProblemException(problems.CONFLICT, f"handover {handover_id} has no old phone to wipe")
        jobs = _jobs(request)
        jobs.register("handover", _handover_work(ctx))
        opened: dict[str, Any] = {}

        def submit(held: dict[str, Any]) -> JobView:  # the workflow is this run's: now the phones' sessions
            opened["link"] = _phone_link(request, ctx, new_phone, True, body.connect_timeout_s) if ota else None
            opened["old_link"] = _open_session(request, old_phone, True, body.connect_timeout_s) if wipe else None
            return jobs.submit("handover", {"handover_id": handover_id, "over_the_air": ota,
                                            "wipe_over_the_air": wipe},
                               private={"seram": opened["link"], "seram_old": opened["old_link"],
                                        "new_phone_id": new_phone, "old_phone_id": old_phone,
                                        "run_as": held["run_as"], "lease": held["lease"],
                                        "given": {(new_phone if kind == "model_change" else old_phone or new_phone):
                                                  given} if given else {}},
                               scope="operator", actor=_actor(request), job_id=held["job_id"], hold=held["hold"])

        view = _claimed(ctx, request, handover_id, submit)
        return _with_seram(ctx, _with_seram(ctx, _accepted(view, response), opened["link"]), opened["old_link"],
                           "seram_old")

    def holder_workflow(holder_id: str, request: Request, response: Response, record: Callable[[], dict],
                        submit: Callable[[dict], JobView]) -> dict[str, Any]:
        """A change of a registered holder that re-issues on their phone: ``record`` writes it
        (the registry and the workflow, refused before anything is written: 422, or 409 for a
        card number taken, a phone on hold), ``submit`` hands the workflow to a job; 202 with
        the job, or 200 when no phone of theirs needed one."""
        from issuer import handover
        from issuer.holders import CardNumberTaken, HolderError

        if not _available("mcred.handover_actions"):
            raise ProblemException(NOT_IMPLEMENTED, "the workflow actions (mcred.handover_actions) "
                                   "are not part of this build")
        with ctx.sessions() as s:
            from issuer.db import Holder

            if s.get(Holder, holder_id) is None:
                raise ProblemException(NOT_FOUND, f"no holder {holder_id}")
        try:
            out = record()
        except CardNumberTaken as exc:
            raise ProblemException(problems.CONFLICT, str(exc)) from None
        except HolderError as exc:
            raise ProblemException(problems.VALIDATION, str(exc)) from None
        except handover.WorkflowError as exc:
            raise ProblemException(problems.CONFLICT, str(exc)) from None
        if out["handover"] is None:
            response.status_code = 200
            return out
        return {**out, "job": _accepted(submit(out), response)}

    @router.post("/holders/{holder_id}/changes", status_code=202,
                 summary="異動: record a holder's new card data (a move, a change of name) and run the "
                 "workflow that re-issues their signing certificate and mdocs (a job); 200 when no phone "
                 "of theirs needed it", response_model=Any,
                 responses=merge(holder_workflow_responses(HandoverJobAccepted), _HOLDER_WORKFLOW_REFUSALS))
    def change_holder(holder_id: Hex32, body: BasicFourChange, request: Request,
                      response: Response) -> dict[str, Any]:
        def record() -> dict:
            from mcred.handover_actions import record_basic_four_change

            changes = body.model_dump(exclude_none=True, exclude={"reason"})
            if not changes:
                raise ProblemException(problems.VALIDATION, "give at least one field to change")
            return record_basic_four_change(ctx, holder_id, changes, reason=body.reason, actor=_actor(request))

        def submit(out: dict) -> JobView:
            jobs = _jobs(request)
            jobs.register("handover", _handover_work(ctx))
            return _claimed(ctx, request, out["handover"], lambda held: jobs.submit(
                "handover", {"handover_id": out["handover"]},
                private={"run_as": held["run_as"], "lease": held["lease"]}, scope="operator",
                actor=_actor(request), job_id=held["job_id"], hold=held["hold"]))

        return holder_workflow(holder_id, request, response, record, submit)

    @router.post("/holders/{holder_id}/card-renewals", status_code=202,
                 summary="カードの更新: record a holder's new card (number, expiry) and re-issue everything on "
                 "their phone from it with keys of key_type (a job); 200 when no phone of theirs needed it",
                 response_model=Any,
                 responses=merge(holder_workflow_responses(CardRenewalJobAccepted), _HOLDER_WORKFLOW_REFUSALS))
    def renew_holder_card(holder_id: Hex32, body: CardRenewal, request: Request,
                          response: Response) -> dict[str, Any]:
        def record() -> dict:
            from mcred.handover_actions import record_card_renewal

            _check_password(ctx, holder_id, body.password)  # before the new card is recorded
            return record_card_renewal(ctx, holder_id, reason=body.reason, card_number=body.card_number,
                                       actor=_actor(request), key_type=body.key_type)

        def submit(out: dict) -> JobView:
            jobs = _jobs(request)
            jobs.register("card-renewal", _card_renewal_work(ctx))
            return _claimed(ctx, request, out["handover"], lambda held: jobs.submit(
                "card-renewal", {"handover_id": out["handover"], "phone_id": out["phone"],
                                 "key_type": body.key_type, "mdoc_batch": out["mdoc_batch"]},
                private={"pin": body.pin, "password": body.password, "puk": body.puk,
                         "run_as": held["run_as"], "lease": held["lease"]},
                scope="operator", actor=_actor(request), job_id=held["job_id"], hold=held["hold"]))

        return holder_workflow(holder_id, request, response, record, submit)

    @router.post("/drills", status_code=202, summary="Run a revocation drill (a job)",
                 **queued(DrillJob, refusals((NOT_IMPLEMENTED, "not in this build"),
                                             (VALIDATION, "no such scenario"))))
    def start_drill(body: DrillRequest, request: Request, response: Response) -> dict[str, Any]:
        if not _available("mcred.drills"):
            raise ProblemException(NOT_IMPLEMENTED, "drills (mcred.drills) are not part of "
                                   "this build")
        from mcred.drills import SCENARIOS

        if body.scenario not in SCENARIOS:
            raise ProblemException(problems.VALIDATION, f"scenario {body.scenario!r} is not "
                                   f"one of {', '.join(SCENARIOS)}")
        jobs = _jobs(request)
        jobs.register("drill", _drill_work(ctx))
        view = jobs.submit("drill", {"scenario": body.scenario, "phones": body.phones},
                           scope="operator", actor=_actor(request))
        return _accepted(view, response)

    @router.get("/audit", summary="The issuer's audit trail (newest first): of a subject, of "
                "an action or its family (credential: credential.revoke, credential.hold, ...)",
                **typed(AuditEvents))
    def audit(subject: Annotated[str | None, Query(max_length=128)] = None,
              action: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
              actor: Annotated[str | None, Query(max_length=128)] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> dict[str, Any]:
        from issuer.audit import events

        return {"events": _jsonable(events(ctx.sessions, subject=subject or None, action=action,
                                           actor=actor or None, limit=limit, offset=offset)),
                "limit": limit, "offset": offset}

    @router.post("/holders/{holder_id}/forget", summary="Erase a holder's personal data once none of "
                 "their credentials is live (the card data, card number and mdoc bodies; certificates stay)",
                 **typed(HolderForgotten, refusals((NOT_FOUND, "no such holder"),
                                                   (CONFLICT, "a credential of theirs is live, or a TSM job "
                                                              "on their phones could still issue"))))
    def forget_holder_route(holder_id: Hex32, body: ForgetRequest, request: Request) -> dict[str, Any]:
        from issuer.holders import HolderBusyError, HolderError
        from mcred.provision import ProvisionError, forget_holder

        try:
            done = forget_holder(ctx, holder_id, actor=_actor(request), reason=body.reason)
        except HolderBusyError as exc:
            raise ProblemException(problems.CONFLICT, str(exc)) from None
        except HolderError as exc:
            raise ProblemException(NOT_FOUND, str(exc)) from None
        except ProvisionError as exc:
            raise ProblemException(problems.CONFLICT, str(exc)) from None
        return {"holder": holder_id, "erased": True, "already": done is None, **(done or {})}

    @router.get("/tsm-audit", summary="The TSM's audit trail, the last records in the order "
                "written: sessions, every command's header, length and status word (never its "
                "data), job events; of a phone, a job, an event", **typed(TsmAuditRecords))
    def tsm_audit(phone_id: Annotated[str | None, Query(pattern=PHONE_ID_PATTERN, max_length=63)] = None,
                  job_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
                  event: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z-]+$")] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                  offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> dict[str, Any]:
        from tsm.audit import recent

        return {"records": _jsonable(recent(ctx.engine, se_id=phone_id, job_id=job_id, event=event, limit=limit,
                                            offset=offset)), "limit": limit, "offset": offset}

    @router.post("/trust/ds-rollover", summary="Roll the mdoc document signer over to a new "
                 "key (trust material)", **typed(DsRollover, _SIGNER_KEY_REFUSALS))
    def ds_rollover(request: Request) -> dict[str, Any]:
        from mcred.mdoc_flow import mdoc_service

        svc = mdoc_service(ctx)
        svc.setup()
        active = svc.rollover_ds()
        return {"label": getattr(active, "label", str(active))}

    @router.post("/trust/iaca-rollover", summary="Roll the mdoc IACA over to the next generation "
                 "(the staged one, else a new one) with its document signer and status-list signer "
                 "(readers need the new IACA, /trust/iaca.pem, before it vouches for anything)",
                 **typed(IacaRollover, _SIGNER_KEY_REFUSALS))
    def iaca_rollover(request: Request) -> dict[str, Any]:
        from mcred.mdoc_flow import mdoc_service

        svc = mdoc_service(ctx)
        svc.setup()
        return svc.rollover(actor=_actor(request)).to_json()

    @router.post("/trust/iaca-stage", summary="Stage the next mdoc IACA generation: published in the "
                 "trust bundle (/trust/iaca.pem) at once, vouching for nothing until POST "
                 "/trust/iaca-rollover starts it", **typed(IacaStage, merge(
                     refusals(problems.IACA_ALREADY_STAGED), _SIGNER_KEY_REFUSALS)))
    def iaca_stage(request: Request) -> dict[str, Any]:
        from mcred.mdoc_flow import mdoc_service

        svc = mdoc_service(ctx)
        svc.setup()
        return svc.stage(actor=_actor(request)).to_json()

    @router.post("/trust/kloc-rotation", summary="Replace the TSM's KLOC CA (SCP11a): a new CA "
                 "certifies the TSM's key, the old chain is kept for SEs that still name it",
                 **typed(KlocRotation, refusals((CONFIGURATION, "the TSM has no OCE identity"))))
    def kloc_rotation(request: Request) -> dict[str, Any]:
        from cryptography.hazmat.primitives.serialization import Encoding

        from mcred.kloc import rotate_ca
        from tsm.oce import ca_ski

        old, new = rotate_ca(ctx)
        return {"retired_ca_ski": ca_ski(old).hex(), "ca_ski": ca_ski(new).hex(),
                "certificate": new.public_bytes(Encoding.PEM).decode()}

    @router.post("/kloc-moves", status_code=202, summary="Move a phone's SE to the TSM's current "
                 "KLOC CA (a rotate-kloc job): from then on it refuses the old CA's OCEs",
                 **queued(KlocMoveJob, refusals(
                     (UNKNOWN_PHONE, "no such simulated phone"),
                     (TSM_JOB_INPUT, "the TSM has not keyed the phone's SE: nothing to move"),
                     (CONFIGURATION, "the TSM has no OCE identity to move SEs to"))))
    def start_kloc_move(body: KlocMoveRequest, request: Request, response: Response) -> dict[str, Any]:
        from mcred.kloc import check_movable

        _check_reach(ctx, body.phone_id, body.over_the_air)
        check_movable(ctx, body.phone_id)  # before a session is opened for a phone that has nothing to move
        link = _open_session(request, body.phone_id, body.over_the_air, body.connect_timeout_s)
        jobs = _jobs(request)
        jobs.register("kloc-move", _kloc_move_work(ctx))
        view = jobs.submit("kloc-move", {"phone_id": body.phone_id, "over_the_air": body.over_the_air,
                                         "check": body.check},
                           private={"seram": link}, scope="operator", actor=_actor(request))
        return _with_seram(ctx, _accepted(view, response), link)

    @router.post("/trust/ds-revocations", summary="Revoke an mdoc document-signer "
                 "certificate: the IACA CRL lists it", **typed(SignerRevocation, _SIGNER_REVOCATION_REFUSALS))
    def ds_revocation(body: SignerRevocationRequest, request: Request) -> dict[str, Any]:
        from mcred.mdoc_flow import mdoc_service

        svc = mdoc_service(ctx)
        svc.setup()
        info, changed = svc.revoke_signer(body.ds, body.reason, actor=_actor(request), destroy_key=body.destroy_key)
        return {**info.to_json(), "changed": changed}

    @router.post("/trust/status-signer-revocations", summary="Revoke a status-list signer "
                 "certificate: the IACA CRL lists it, every list is re-signed by a new signer",
                 **typed(SignerRevocation, _SIGNER_REVOCATION_REFUSALS))
    def status_signer_revocation(body: StatusSignerRevocationRequest,
                                 request: Request) -> dict[str, Any]:
        from issuer.mdoc.pki import PURPOSE_STATUS
        from mcred.mdoc_flow import mdoc_service

        svc = mdoc_service(ctx)
        svc.setup()
        info, changed = svc.revoke_signer(body.signer, body.reason, actor=_actor(request),
                                          purposes=(PURPOSE_STATUS,), destroy_key=body.destroy_key)
        return {**info.to_json(), "changed": changed}

    @router.post("/trust/vical-signer-revocations", summary="Revoke a VICAL signer certificate: its VICAL "
                 "CA's CRL (/trust/vical-ca.crl) lists it, and the VICAL (/trust/vical) is re-signed at once "
                 "by a new signer generation", **typed(VicalSignerRevocation, merge(
                     refusals((problems.UNKNOWN_SIGNER, "no VICAL signer of that label or serial"),
                              problems.SIGNER_REVOCATION_REFUSED), _SIGNER_KEY_REFUSALS)))
    def vical_signer_revocation(body: VicalSignerRevocationRequest, request: Request) -> dict[str, Any]:
        from mcred.mdoc_flow import mdoc_service

        return mdoc_service(ctx).revoke_vical_signer(body.signer, body.reason, actor=_actor(request),
                                                     destroy_key=body.destroy_key).to_json()

    @router.post("/trust/vical-ca-rollover", summary="Roll the VICAL CA over to a new generation with a new "
                 "VICAL signer, the VICAL (/trust/vical) re-signed by it at once; with compromised the CA before is "
                 "withdrawn (out of /trust/vical-ca.pem, its CRL 410, its signers revoked), else retired. Readers "
                 "of the VICAL need the new CA (/trust/vical-ca.pem)", **typed(VicalCaRollover, merge(
                     refusals((problems.UNKNOWN_VICAL_CA, "no VICAL CA yet: the first is made with the first "
                                                          "VICAL (GET /trust/vical)")), _SIGNER_KEY_REFUSALS)))
    def vical_ca_rollover(request: Request, body: VicalCaRolloverRequest | None = None) -> dict[str, Any]:
        from mcred.mdoc_flow import mdoc_service

        body = body or VicalCaRolloverRequest()
        return mdoc_service(ctx).rollover_vical_ca(compromised=body.compromised, fresh=body.fresh,
                                                   actor=_actor(request)).to_json()

    @router.post("/trust/vical-ca-stage", summary="Stage the next VICAL CA generation: published in "
                 "/trust/vical-ca.pem at once, after the current one, certifying nothing until POST "
                 "/trust/vical-ca-rollover (or the automatic rollover in the current CA's last months) starts it",
                 **typed(VicalCaStage, merge(refusals(
                     (problems.UNKNOWN_VICAL_CA, "no VICAL CA yet: the first is made with the first VICAL (GET "
                                                 "/trust/vical)"),
                     problems.VICAL_CA_ALREADY_STAGED), _SIGNER_KEY_REFUSALS)))
    def vical_ca_stage(request: Request) -> dict[str, Any]:
        from mcred.mdoc_flow import mdoc_service

        return mdoc_service(ctx).stage_vical_ca(actor=_actor(request)).to_json()

    @router.post("/trust/iaca-revocations", summary="Revoke an mdoc IACA generation: out of the trust bundle "
                 "and the VICAL at once, its key signing nothing more; the current one is replaced at once by "
                 "the staged generation (else a new one); its phones are named (POST /mdoc-reissues gives them "
                 "new MSOs)", **typed(IacaRevocation, merge(refusals(problems.UNKNOWN_IACA,
                                                                      problems.SIGNER_REVOCATION_REFUSED),
                                                             _SIGNER_KEY_REFUSALS)))
    def iaca_revocation(body: IacaRevocationRequest, request: Request) -> dict[str, Any]:
        from mcred.mdoc_flow import mdoc_service

        svc = mdoc_service(ctx)
        svc.setup()
        return svc.revoke_iaca(body.iaca, body.reason, actor=_actor(request), destroy_key=body.destroy_key).to_json()

    @router.post("/trust/tsa-rollover", summary="Roll the time-stamping authority's root over: the next root "
                 "generation (the staged one, else a new one) and a unit it certifies, stamping from now on; the older root keeps signing the CRL of "
                 "its units until they have all expired (relying parties need the new root, /tsa/root.pem, before "
                 "they accept its unit's time-stamps)", **typed(TsaRollover, _TSA_KEY_REFUSALS))
    def tsa_rollover(request: Request) -> dict[str, Any]:
        from mcred.timestamps import time_stamp_authority

        return time_stamp_authority(ctx).rollover(actor=_actor(request)).to_json()

    @router.post("/trust/tsa-stage", summary="Stage the time-stamping authority's next root: listed in /tsa/root.pem "
                 "at once, right after the current one, certifying nothing until POST /trust/tsa-rollover (or the "
                 "TSA's own rollover in its root's last years) starts it", **typed(TsaStage, merge(
                     refusals((problems.ROOT_ALREADY_STAGED, "a next root is staged already: roll over to it first")),
                     _TSA_KEY_REFUSALS)))
    def tsa_stage(request: Request) -> dict[str, Any]:
        from mcred.timestamps import time_stamp_authority

        return time_stamp_authority(ctx).stage(actor=_actor(request)).to_json()

    @router.post("/trust/jpki-stage", summary="Stage the next JPKI root generation of a slot: in the trust bundle "
                 "(/trust/jpki-sign-root.pem, /trust/jpki-auth-root.pem) at once, after the issuing one, issuing "
                 "nothing until POST /trust/jpki-rollover starts it", **typed(JpkiRootStage, merge(
                     refusals((problems.ROOT_ALREADY_STAGED, "a next generation of the slot is staged already: roll "
                                                             "over to it first")), _TSA_KEY_REFUSALS)))
    def jpki_stage(body: JpkiRootRequest, request: Request) -> dict[str, Any]:
        from mcred.jpki_flow import jpki_issuer
        from protocols.jpki.profile import KeyType

        _issuers_set_up(ctx)  # the first generation of each slot, made once
        key_type = KeyType(body.key_type) if body.key_type else None
        return jpki_issuer(ctx).stage(body.slot, key_type, actor=_actor(request)).to_json()

    @router.post("/trust/jpki-rollover", summary="Roll a JPKI root over to the next generation (the staged one, else "
                 "a new one), issuing every certificate of the slot from now on; the one before keeps signing the CRLs "
                 "of its certificates (relying parties need the new root, /trust/jpki-sign-root.pem or "
                 "/trust/jpki-auth-root.pem, before they accept its certificates)", **typed(JpkiRootRollover, merge(
                     refusals((problems.JPKI_ERROR, "a key_type other than the staged generation's")),
                     _TSA_KEY_REFUSALS)))
    def jpki_rollover(body: JpkiRootRequest, request: Request) -> dict[str, Any]:
        from mcred.jpki_flow import jpki_issuer
        from protocols.jpki.profile import KeyType

        _issuers_set_up(ctx)
        key_type = KeyType(body.key_type) if body.key_type else None
        return jpki_issuer(ctx).rollover_detail(body.slot, key_type, actor=_actor(request)).to_json()

    @router.get("/trust/roots/jpki", summary="Every JPKI root generation of each slot (slot=sign or auth: that "
                "one), oldest first: serial, subject, validity, state (issuing, staged, retired), key destroyed, "
                "valid certificates it issued, its CRLs and OCSP responders; from the registry alone (as mcred jpki "
                "root list)", **typed(JpkiRoots))
    def jpki_roots(slot: Literal["sign", "auth", "all"] = "all") -> dict[str, Any]:
        from issuer.jpki.listing import list_roots
        from mcred.jpki_flow import jpki_registry

        roots = list_roots(jpki_registry(ctx), ("sign", "auth") if slot == "all" else (slot,))
        return {"roots": [r.to_json() for r in roots]}

    @router.get("/trust/roots/tsa", summary="Every root generation of the time-stamping authority, oldest first, "
                "with the units it certified: serial, subject, validity, state (current, staged, retired), key "
                "destroyed, its CRL; from the registry alone (as mcred tsa root list)", **typed(TsaRoots))
    def tsa_roots() -> dict[str, Any]:
        from issuer.tsa_listing import list_roots
        from mcred.timestamps import tsa_registry

        return {"roots": [r.to_json() for r in list_roots(tsa_registry(ctx))]}

    @router.post("/trust/tsa-revocations", summary="Revoke a TSA unit: its root's CRL lists it, a new unit stamps "
                 "from now on (as mcred tsa revoke)", **typed(TsaRevocation, merge(refusals(
                     (problems.UNKNOWN_SIGNER, "no TSA unit of that label or serial"),
                     (problems.SIGNER_REVOCATION_REFUSED, "an invalid_since after now")), _TSA_KEY_REFUSALS)))
    def tsa_revocation(body: TsaRevocationRequest, request: Request) -> dict[str, Any]:
        from issuer.revocation import InvalidSinceRefused
        from mcred.timestamps import time_stamp_authority

        try:
            done = time_stamp_authority(ctx).revoke_unit_detail(
                body.unit, body.reason, actor=_actor(request), invalid_since=body.invalid_since,
                destroy_key=body.destroy_key)
        except InvalidSinceRefused as exc:
            raise ProblemException(problems.SIGNER_REVOCATION_REFUSED, str(exc)) from None
        return done.to_json()

    @router.post("/trust/key-destructions", summary="Destroy the private key of an issuer key no duty needs any "
                 "more: an mdoc signer (a revoked one, whatever the reason, or one whose duties have all ended), "
                 "a JPKI root generation or OCSP responder out of use, a revoked or retired TSA unit; its "
                 "certificate stays published. Idempotent (already: destroyed before)", **typed(KeyDestruction, merge(
                     refusals(
                         (problems.UNKNOWN_SIGNER, "no key of the issuer of that label, serial or IACA number"),
                         (problems.SIGNER_STILL_SIGNING, "the key signs now (the current IACA, document signer, "
                                                         "status-list signer, VICAL signer or VICAL CA; the issuing "
                                                         "JPKI root generation, the OCSP responder answering for a "
                                                         "root generation; the TSA unit stamping, the TSA root) or, "
                                                         "staged, will: revoke it or roll it over first"),
                         (problems.CA_DUTIES_REMAIN, "a retired, unrevoked IACA or VICAL CA that still certifies "
                                                     "signers that have not expired, or an older JPKI root "
                                                     "generation with certificates that have not expired (their "
                                                     "CRL)")),
                     _SIGNER_KEY_REFUSALS)))
    def key_destruction(body: KeyDestructionRequest, request: Request) -> dict[str, Any]:
        from mcred.key_destruction import destroy_key

        return destroy_key(ctx, body.signer, actor=_actor(request)).to_json()

    @router.post("/mdoc-reissues", status_code=202, summary="Issue new MSOs into every phone holding a valid "
                 "mdoc of a revoked or retired signer (a document signer or an IACA), each as POST "
                 "/mdoc-refreshes does (a job; its result names each phone's outcome)",
                 **queued(MdocReissueJob, merge(refusals(
                     (problems.UNKNOWN_SIGNER, "no document signer or IACA of that label, number or serial"),
                     (PROVISIONING_REFUSED, "the signer is the one signing now (revoke it or roll it over "
                                            "first), or the current IACA can sign no MSO")), _SIGNER_KEY_REFUSALS)))
    def start_reissue(body: ReissueRequest, request: Request, response: Response) -> dict[str, Any]:
        from mcred.reissue import phones_away

        away = phones_away(ctx, body.signer)  # refused before a job is queued
        # over the air, a session for each phone not here, opened now so that the answer names them
        links = ({pid: _open_session(request, pid, True, body.connect_timeout_s) for pid in away}
                 if body.over_the_air else {})
        jobs = _jobs(request)
        jobs.register("mdoc-reissue", _reissue_work(ctx))
        try:
            view = jobs.submit("mdoc-reissue", {"signer": body.signer, "workers": body.workers,
                                                "actor": _actor(request), "over_the_air": body.over_the_air},
                               private={"seram_sessions": links}, scope="operator", actor=_actor(request))
        except BaseException:
            for link in links.values():  # no job will end them
                link.close()
            raise
        accepted = _accepted(view, response)
        if body.over_the_air:
            accepted["seram_sessions"] = [{"phone": pid, **_with_seram(ctx, {}, link)["seram"]}
                                          for pid, link in links.items()]
        return accepted

    return router


class _LazyReader:
    """The issuer service's reader (trusting the installation's IACAs), built on first use so
    that creating the app never generates keys (several workers start at once)."""

    #: how often the installation's IACAs are read again (an IACA rollover by another process)
    TRUST_REFRESH = 60.0

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._service = None
        self._store = None  # the sessions' table, before the service is built (_verdict_store)
        self._trusted: tuple[bytes, ...] = ()
        self._lock = threading.Lock()
        self._trusted_at = -float("inf")

    def _pipeline_if_changed(self):  # noqa: ANN202
        """A pipeline trusting every IACA the installation's readers need now (its current one
        and the older generations still vouching for mdocs: ``trusted_iacas``), or None when
        that set is the one trusted already. A new pipeline, not more anchors in the old
        store: its verifier takes the store's anchors when it is made, and an IACA that left
        the bundle must leave the reader too."""
        from cryptography.hazmat.primitives import hashes

        from mcred.mdoc_flow import mdoc_service
        from mcred.present import reader_pipeline
        from reader.trust import TrustStore

        certs = mdoc_service(self._ctx).trusted_iacas()
        self._trusted_at = time.monotonic()
        key = tuple(sorted(c.fingerprint(hashes.SHA256()) for c in certs))
        if key == self._trusted:
            return None
        store = TrustStore()
        for cert in certs:
            store.add(cert, source="installation")
        self._trusted = key
        # the checks of `mcred reader serve` online (status lists, the IACA CRL)
        return reader_pipeline(trust=store, ds_crl=True)

    def _get(self):  # noqa: ANN202
        with self._lock:
            if self._service is not None and time.monotonic() - self._trusted_at > self.TRUST_REFRESH:
                pipeline = self._pipeline_if_changed()
                if pipeline is not None:  # sessions opened from now on verify with it
                    self._service.verifier = pipeline
            if self._service is None:
                from mcred.present import reader_session_key_path, session_sealer
                from reader.http import ReaderService
                from reader.session import DEFAULT_REQUEST

                pipeline = self._pipeline_if_changed()
                # the sessions in the installation's database, so that any worker continues any
                # session, each EReaderKey sealed under <home>/reader/session.key
                from mcred.context import public_url
                from reader.online import origin_of

                self._service = ReaderService(pipeline, [DEFAULT_REQUEST],
                                              engine=self._ctx.engine,
                                              session_sealer=session_sealer(reader_session_key_path(self._ctx.home)),
                                              origin=origin_of(public_url()), public_url=public_url() + "/reader")
            return self._service

    def __getattr__(self, name: str):  # noqa: ANN204
        """Any other method of :class:`reader.http.ReaderService` (the cross-device routes'
        included), on the service built on first use: a route added to the reader cannot
        find this proxy short of a method (it once answered 500 for want of one)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._get(), name)

    def open(self, engagement):  # noqa: ANN001, ANN201
        return self._get().open(engagement)

    def open_online(self, protocol: str = "org-iso-mdoc"):  # noqa: ANN201
        return self._get().open_online(protocol)

    @property
    def origin(self) -> str | None:
        return self._get().origin

    def message(self, sid: str, data: bytes):  # noqa: ANN201
        return self._get().message(sid, data)

    def outcome(self, sid: str):  # noqa: ANN201
        return self._get().outcome(sid)

    def verify_issuer_signed(self, data: bytes):  # noqa: ANN201
        return self._get().verify_issuer_signed(data)

    #: The sessions are in the database: the result route looks verdicts up in the thread pool.
    verdict_blocks = True

    def verdict(self, sid: str):  # noqa: ANN201
        result = self.result(sid)
        return False if isinstance(result, str) else result

    def result(self, sid: str):  # noqa: ANN201
        # never build the service here (key store, IACA): another worker may have opened the
        # session, and its verdict is a row of the database, which needs only the engine
        service = self._service
        if service is not None:
            return service.result(sid)
        engine = getattr(self._ctx, "engine", None)  # no context: no database, no session
        if engine is None:
            return None
        import datetime as dt

        from reader.http import session_result

        return session_result(self._verdict_store(engine), sid, dt.datetime.now(dt.UTC))

    def _verdict_store(self, engine):  # noqa: ANN001, ANN202
        """The sessions' table, for the result route of a worker that has not built the
        service (made once: a store is the engine and three settings)."""
        if self._store is None:
            from reader.http import MAX_SESSIONS, SESSION_TTL
            from reader.sessions import SqlSessionStore

            self._store = SqlSessionStore(engine, SESSION_TTL, MAX_SESSIONS, resume=None)
        return self._store


def _installation_tsa_roots(ctx: Context):  # noqa: ANN202
    """The installation's time-stamping roots, read on each call (made on first use)."""

    def roots() -> list:
        from mcred.timestamps import time_stamp_authority

        return time_stamp_authority(ctx).roots()

    return roots


def _installation_jpki_roots(ctx: Context):  # noqa: ANN202
    """Every root generation of both JPKI purposes, read on each call (a rollover is seen)."""

    def roots() -> list:
        from mcred.jpki_flow import jpki_issuer

        _issuers_set_up(ctx)  # first use creates the roots: serialised like the jobs' setup
        issuer = jpki_issuer(ctx)
        return [*issuer.roots("sign"), *issuer.roots("auth")]

    return roots


def consents_router(ctx: Context) -> APIRouter:
    """The latest basic four data service for relying parties (scope ``reader``): a relying
    party is its token's name, and sees only the consents made out to that name."""
    import base64

    from issuer.jpki import consents

    router = APIRouter(tags=["latest basic four"])

    def party(request: Request) -> str:
        p = principal_of(request)
        if p is None or not p.name:
            raise ProblemException(problems.VALIDATION, "a relying party's token needs a name: the "
                                   "consent document names the relying party it is given to")
        return p.name

    def refused(exc: consents.ConsentRefused) -> ProblemException:
        kind = {404: NOT_FOUND, 403: problems.FORBIDDEN, 409: problems.CONFLICT}.get(exc.status,
                                                                                 problems.VALIDATION)
        return ProblemException(kind, str(exc))

    @router.post("/jpki/consents", status_code=201,
                 summary="Register a holder's signed consent to the latest basic four data service "
                 "(最新の利用者情報提供): the signature, its signing certificate (valid, of this issuer) "
                 "and the relying party it names (this token's name) are checked",
                 response_model=Any,
                 responses={200: {"description": "registered already (registered false): the consent as it is",
                                  "model": ConsentRegistered},
                            201: {"description": "registered: the consent", "model": ConsentRegistered},
                            **refusals((VALIDATION, "the token has no name; not base64; the signature, its "
                                                    "certificate or the document's age refused"),
                                       (FORBIDDEN, "the document names another relying party"))})
    def register_consent(body: ConsentRegistration, request: Request, response: Response) -> dict[str, Any]:
        try:
            document, signature = base64.b64decode(body.document), base64.b64decode(body.signature)
        except ValueError as exc:
            raise ProblemException(problems.VALIDATION, f"not base64: {exc}") from None
        try:
            view, registered = consents.register(ctx.sessions, document, signature, relying_party=party(request),
                                                 actor=_actor(request))
        except consents.ConsentRefused as exc:
            raise refused(exc) from None
        if not registered:
            response.status_code = 200
        return {**view.to_dict(), "registered": registered}

    @router.get("/jpki/consents/{consent_id}/basic-four",
                summary="A consenting holder's basic four data now (name, birth date, sex, address), "
                "what changed since the consent's certificate, and their signing certificate now",
                **typed(LatestBasicFour, refusals((VALIDATION, "the token has no name"),
                                                  (NOT_FOUND, "no such consent to this relying party"),
                                                  (FORBIDDEN, "the consent is withdrawn or expired"))))
    def basic_four(consent_id: Hex32, request: Request) -> dict[str, Any]:
        try:
            return consents.latest_basic_four(ctx.sessions, consent_id, relying_party=party(request),
                                              actor=_actor(request))
        except consents.ConsentRefused as exc:
            raise refused(exc) from None

    @router.post("/jpki/linkage", tags=["user-auth linkage"],
                 summary="The user-authentication certificate linkage service (利用者証明用電子証明書の"
                 "新旧紐付け): for each old serial, the holder's newer user-authentication certificates "
                 "(serial, state, certificate) and the one valid now",
                 **typed(Linkage, refusals((VALIDATION, "the batch empty or longer than 1000; a serial that "
                                            "is not one (the detail names it)"))))
    def linkage(body: LinkageRequest, request: Request) -> dict[str, Any]:
        from issuer.jpki import linkage as lk

        p = principal_of(request)
        try:
            return lk.answer(ctx.sessions, body.serials, actor=_actor(request),
                             relying_party=p.name if p and p.name else _actor(request))
        except lk.LinkageRefused as exc:
            raise ProblemException(problems.VALIDATION, str(exc)) from None

    return router


def holder_consents_router(ctx: Context) -> APIRouter:
    """The holder's side (scope ``issuer``): their consents, and withdrawing one."""
    from issuer.jpki import consents

    router = APIRouter(tags=["latest basic four"])

    @router.get("/holders/{holder_id}/consents", summary="A holder's consents to the latest basic four "
                "data service, with their state (active, withdrawn, expired)",
                **typed(ConsentList, refusals((NOT_FOUND, "no such holder"))))
    def list_consents(holder_id: Hex32) -> dict[str, Any]:
        try:
            return {"consents": [c.to_dict() for c in consents.of_holder(ctx.sessions, holder_id)]}
        except consents.ConsentRefused as exc:
            raise ProblemException(NOT_FOUND, str(exc)) from None

    @router.post("/holders/{holder_id}/consents/{consent_id}/withdraw",
                 summary="The holder withdraws a consent: its relying party is refused from then on",
                 **typed(Consent, refusals((NOT_FOUND, "the holder has no such consent"))))
    def withdraw_consent(holder_id: Hex32, consent_id: Hex32, body: WithdrawRequest,
                         request: Request) -> dict[str, Any]:
        try:
            view = consents.withdraw(ctx.sessions, consent_id, holder_id=holder_id,
                                     actor=_actor(request), reason=body.reason)
        except consents.ConsentRefused as exc:
            raise ProblemException(NOT_FOUND, str(exc)) from None
        return view.to_dict()

    return router


def api_mounts(ctx: Context) -> list:
    """The composition's own mounts, with their scopes."""
    from mcred.service import Mount

    return [
        Mount(phones_router(ctx), scope="tsm"),
        Mount(issuer_router(ctx), scope="issuer"),
        Mount(jobs_router(), scope="issuer"),
        Mount(operator_router(ctx), scope="operator"),
        Mount(consents_router(ctx), scope="reader"),
        Mount(holder_consents_router(ctx), scope="issuer"),
        *_reader_mounts(ctx),
    ]


def _also_refusing(router: APIRouter, responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    """``router`` with ``responses`` declared on each of its routes beside their own (a
    refusal the composition adds to a party's routes), before it is mounted."""
    from fastapi.routing import APIRoute

    for route in router.routes:
        if isinstance(route, APIRoute):
            route.responses = merge(route.responses, responses)
    return router


def _reader_mounts(ctx: Context) -> list:
    """The reader's verification endpoints under ``/reader`` (scope ``reader``): the mdoc
    sessions and the JPKI relying party (trusting the installation's JPKI roots, asking
    revocation over HTTP at the URLs the certificates carry)."""
    from mcred.service import Mount

    if not (_available("reader.http") and _available("mcred.present")):
        return []
    from reader.http import cross_device_router, reader_router, relying_party_router
    from reader.relying_party import RelyingPartyService
    from reader.rp_auth import SqlChallengeStore

    # challenges in the installation's database: any worker takes back what another handed out
    rp = RelyingPartyService(_installation_jpki_roots(ctx), challenges=SqlChallengeStore(ctx.engine),
                             tsa_roots=_installation_tsa_roots(ctx))
    reader = _LazyReader(ctx)
    # the reader is built on first use: its session key file may be unusable then
    unavailable = refusals((READER_UNAVAILABLE, "the reader cannot start: its session key file "
                                                "(<home>/reader/session.key) unreadable or not a key"))
    return [Mount(_also_refusing(reader_router(reader), unavailable), scope="reader", prefix="/reader"),
            # what a phone's wallet calls in a cross-device session: the session id is its capability
            Mount(_also_refusing(cross_device_router(reader), unavailable), scope=None, prefix="/reader"),
            Mount(relying_party_router(rp), scope="reader", prefix="/reader")]
