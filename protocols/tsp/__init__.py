"""RFC 3161 time-stamping (with RFC 5816's ESSCertIDv2), pure: no I/O, no clock of its own.

* :mod:`.messages`: TimeStampReq built and parsed (refusals typed with the PKIFailureInfo a
  TSA answers), TimeStampResp granted, refused and read;
* :mod:`.token`: the TimeStampToken (a CMS SignedData over a TSTInfo) signed through a
  callable and verified (signature, signing-certificate binding, the TSA certificate's
  critical id-kp-timeStamping, message imprint, nonce, issuer among given roots);
* :mod:`.certificates`: a time-stamping root and TSA unit certificate, for a lab TSA.

A token stamps a hash: of a document, or of a CMS signature value (RFC 3161 Appendix A,
the signature-time-stamp attribute of CAdES-T and PAdES B-T), which proves the signature
existed at the token's genTime.
"""

from .errors import FAILURES, RequestRefused, ResponseRefused, TokenInvalid, TspError
from .messages import (
    QUERY_MEDIA_TYPE,
    REPLY_MEDIA_TYPE,
    TimeStampRequest,
    build_request,
    grant,
    parse_request,
    reject,
    token_of_response,
)
from .token import (
    HASHES,
    TimeStamp,
    TsaUnit,
    build_token,
    check_imprint,
    digest,
    verify_token,
)

__all__ = [
    "FAILURES", "HASHES", "QUERY_MEDIA_TYPE", "REPLY_MEDIA_TYPE", "RequestRefused",
    "ResponseRefused", "TimeStamp", "TimeStampRequest", "TokenInvalid", "TsaUnit", "TspError",
    "build_request", "build_token", "check_imprint", "digest", "grant", "parse_request", "reject",
    "token_of_response", "verify_token",
]
