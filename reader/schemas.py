"""The reader's verdicts as its OpenAPI document declares them (``responses={200: {"model":
...}}``): documentation only. The routes send the JSON the verifiers build
(:meth:`protocols.mdoc.VerificationResult.to_json`, :func:`reader.relying_party.verify`,
:func:`reader.jpki_pdf.verify_pdf`, :func:`reader.jpki_xml.verify_xml`) as it is; these
models name its members, so that a client generated from the document reads a typed
verdict, and the schema-driven fuzz checks every verdict it gets against them. Closed
(``additionalProperties: false``): a member added to a verdict must be declared here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from protocols.jpki.relying_party import CHECK_CODES, REVOCATION_REASONS
from protocols.mdoc.verify import CHECK_CODES as MDOC_CHECK_CODES


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VerdictCheck(_Closed):
    """One step of a verification, in the order it ran."""

    name: str = Field(description="the step: signature, chain, validity, revocation, device_auth, ...")
    passed: bool
    reason: str = Field(description="why it passed or failed, for a person")


class JpkiCheck(VerdictCheck):
    """One step of a JPKI verification, with its code for a script to branch on (the
    reason is for a person; specs/revocation.md 5, "Codes")."""

    code: Literal[CHECK_CODES] = Field(  # the tuple, one source for the enum
        description="ok when passed (good for revocation); else what failed: a closed vocabulary "
        "(revocation: revoked, on_hold, unknown, unavailable = no trustworthy answer, ask again later)")
    revoked_at: str | None = Field(
        None, json_schema_extra={"format": "date-time"},
        description="revocation, signature_timestamp and document_timestamp checks only (null on one that found "
        "no revocation): for a verified revoked, on_hold or revoked_after_signing, when, ISO 8601 in UTC (the OCSP "
        "answer's revocationTime or the CRL entry's revocationDate); for a signature_timestamp or a PDF's "
        "document_timestamp of code revoked, when the TSA unit that made the time-stamp was revoked (its root's "
        "CRL entry)")
    revocation_reason: Literal[REVOCATION_REASONS] | None = Field(
        None, description="revocation, signature_timestamp and document_timestamp checks only (null on one that "
        "found no revocation): for a verified revoked, on_hold or revoked_after_signing, the RFC 5280 CRLReason "
        "by its name (the J-LIS reasons affiliationChanged, cessationOfOperation, superseded, certificateHold "
        "among them); for a signature_timestamp or document_timestamp of code revoked, the TSA unit's")
    invalid_since: str | None = Field(
        None, json_schema_extra={"format": "date-time"},
        description="revocation checks (null unless the answer gives one): for a verified revoked or "
        "revoked_after_signing, the invalidity date of the OCSP answer (singleExtension) or the CRL entry "
        "(invalidityDate, RFC 5280 5.3.2), ISO 8601 in UTC: since when the certificate is known or suspected to "
        "have been invalid (the issuer gives the time a hold began when it revokes a held certificate for good). "
        "A signature time-stamped after it is refused (revoked), though revoked_at is later. Also a "
        "signature_timestamp or document_timestamp of code revoked whose TSA unit's CRL entry gives one (absent "
        "otherwise): a time-stamp the unit made at or after it is refused (for keyCompromise, every one)")


class MdocCheck(VerdictCheck):
    """One step of an mdoc verification, with its code for a script to branch on (the
    reason is for a person; specs/presentation.md 4, "Codes")."""

    code: Literal[MDOC_CHECK_CODES] = Field(  # the tuple, one source for the enum
        description="ok when passed; else what failed, from a closed vocabulary: revoked, suspended "
        "(the status list), unavailable (no trustworthy status list or IACA CRL: ask again later), "
        "ds_revoked, untrusted_issuer, tampered, device_auth_failed, expired, not_yet_valid, declined "
        "(nothing asked released: declined or not held, which a reader is not told), holder_ended (the phone "
        "ended the session before answering), not_requested, session_failed (present again), malformed, "
        "not_checked (an earlier check failed), failed")


class AgeOverAnswer(_Closed):
    """What a disclosed document says of one age_over_NN the reader asked (ISO/IEC 18013-5
    7.2.5): the mdoc answers an age_over_NN it does not hold with the nearest age_over_MM that
    answers it, TRUE above or FALSE below; any other age_over_MM is no answer."""

    namespace: str
    requested: str = Field(description="the age_over_NN asked")
    returned: str | None = Field(description="the age_over element disclosed that answers it (the one asked, or "
                                 "another in its place); null when none does")
    value: Any = Field(description="that element's value (null when none answers)")
    over: bool | None = Field(description="true: the holder is NN or over; false: under NN; null: not answered")
    meaning: str = Field(description="the same for a person (\"the holder is under 21 (answered by age_over_20 = "
                         "false, ISO/IEC 18013-5 7.2.5)\")")


class MdocDocument(_Closed):
    """A document the wallet disclosed: its data elements by namespace, each value in its
    JSON form (bytes as base64, full-date as YYYY-MM-DD, tdate as RFC 3339, another tag as
    {"tag", "value"}, NaN and the infinities as strings)."""

    docType: str  # noqa: N815 - the member as sent (ISO/IEC 18013-5's name)
    elements: dict[str, dict[str, Any]] = Field(description="namespace -> element identifier -> value")
    ageOver: list[AgeOverAnswer] | SkipJsonSchema[None] = Field(  # noqa: N815 - as the other members
        None, description="present when the reader asked for age_over_NN of this docType: what the document says "
        "of each (never an element of elements: an answer in place of the one asked names the element returned)")


class MdocVerdict(_Closed):
    """The verdict of an mdoc presentation (ISO/IEC 18013-5 9.3) or of an IssuerSigned:
    valid when there is at least one check and every check passed."""

    valid: bool
    checks: list[MdocCheck]
    documents: list[MdocDocument] = Field(description="what was disclosed (its checks may have failed: "
                                          "read valid first)")


class BasicFour(_Closed):
    """The basic four information (基本4情報) a JPKI signing certificate carries."""

    name: str
    sex: str
    birth_date: str = Field(json_schema_extra={"format": "date"})
    address: str


class XmlSignatureFacts(_Closed):
    """What an XML signature said of itself (``/rp/jpki/verify-xml`` only)."""

    root: str = Field(description="the document element's name")
    form: Literal["XML signature", "XAdES B-B", "XAdES B-T", "XAdES B-LT"]
    signature_method: str = Field(description="the SignatureMethod algorithm URI")
    claimed_signing_time: str | None = Field(json_schema_extra={"format": "date-time"})


class JpkiDocument(_Closed):
    """The signer's certificate, when the signature yielded one."""

    subject: str = Field(description="RFC 4514")
    serial: str = Field(pattern="^-?[0-9a-f]+$", description="the certificate's serial number, hexadecimal (negative as a hostile certificate may carry it)")
    purpose: Literal["sign", "auth"] | SkipJsonSchema[None] = Field(
        None, description="absent for a certificate of no JPKI profile")
    basic_four: BasicFour | SkipJsonSchema[None] = Field(None, description="signing certificates only")
    xml: XmlSignatureFacts | SkipJsonSchema[None] = None


class JpkiVerdict(_Closed):
    """The relying party's verdict on a JPKI signature (or a user authentication, whose
    first check is ``challenge``): valid when there is at least one check and every check
    passed."""

    valid: bool
    checks: list[JpkiCheck]
    documents: list[JpkiDocument]


class PdfSignatureVerdict(_Closed):
    """One signature field of a PDF, judged alone."""

    field: str
    kind: Literal["signature", "document_timestamp"]
    valid: bool
    checks: list[JpkiCheck]
    documents: list[JpkiDocument]


class PdfVerdict(JpkiVerdict):
    """Every signature of a PDF: ``checks`` and ``documents`` of them all (each reason
    prefixed with its field), and each field's own under ``signatures``."""

    signatures: list[PdfSignatureVerdict]
